// Distributed training in the shim: c10d process groups and collectives (see ffi/ops_dist.ts).
#pragma once

#include "runtime.hpp"
