// Data pipeline in the shim: image decoding and batched augmentation (see ffi/ops_data.ts).
#pragma once

#include "runtime.hpp"
