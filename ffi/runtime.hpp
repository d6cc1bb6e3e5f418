// slimclr shim runtime: handle bookkeeping, error capture and argument helpers shared by the
// generated entry points (build/gen/ops.cpp). Nothing here is exported on its own; every C
// symbol is declared in the op table (ffi/ops.ts) so that one table drives the C declarations,
// the Deno dlopen symbols and the TypeScript wrappers.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/Generator.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/autocast_mode.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/generated/variable_factories.h>

#include <malloc.h>

#include <atomic>
#include <cmath>
#include <sstream>
#include <stdexcept>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

namespace slimclr {

// glibc returns large freed blocks to the kernel and maps them again on the next step, so every
// training step pays page faults for its activations. Keep them in the heap instead (as
// jemalloc-style allocators do); SLIMCLR_SYSTEM_MALLOC=1 keeps glibc's defaults.
__attribute__((constructor)) static void tune_malloc() {
  if (std::getenv("SLIMCLR_SYSTEM_MALLOC")) return;
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  mallopt(M_TOP_PAD, 256 << 20);
}

using Tensor = at::Tensor;
using TensorHandle = at::Tensor*;

// ---- error state (thread-local so worker threads never clobber the caller's message) ----
inline thread_local std::string g_error;
inline thread_local bool g_has_error = false;
inline thread_local std::vector<Tensor> g_list;  // result of the last list-returning call
inline thread_local std::string g_string;        // result of the last string-returning call

inline void set_error(const char* what) {
  g_error = what ? what : "unknown error";
  g_has_error = true;
}
inline void clear_error() { g_has_error = false; }

// ---- live handle accounting ----
// Process-wide counts, plus per-thread counts (handles created minus freed on this thread) so that
// Deno workers sharing the process (e.g. `deno test --parallel`) can each check their own leaks.
inline std::atomic<int64_t> g_live_handles{0};
inline std::atomic<int64_t> g_live_bytes{0};
inline thread_local int64_t t_live_handles = 0;
inline thread_local int64_t t_live_bytes = 0;

struct Handle {
  Tensor tensor;
  int64_t bytes;
};

inline int64_t tensor_bytes(const Tensor& t) {
  return t.defined() ? static_cast<int64_t>(t.numel()) * static_cast<int64_t>(t.element_size()) : 0;
}

// A handle is a heap-allocated Handle whose first member is the tensor, so the pointer doubles as
// an at::Tensor* for the generated code.
inline TensorHandle wrap(Tensor t) {
  if (!t.defined()) throw std::runtime_error("operation returned an undefined tensor");
  auto* h = new Handle{std::move(t), 0};
  h->bytes = tensor_bytes(h->tensor);
  g_live_handles.fetch_add(1, std::memory_order_relaxed);
  g_live_bytes.fetch_add(h->bytes, std::memory_order_relaxed);
  t_live_handles += 1;
  t_live_bytes += h->bytes;
  return &h->tensor;
}
inline TensorHandle wrap_optional(Tensor t) { return t.defined() ? wrap(std::move(t)) : nullptr; }
inline void release(TensorHandle p) {
  if (!p) return;
  auto* h = reinterpret_cast<Handle*>(p);
  g_live_handles.fetch_sub(1, std::memory_order_relaxed);
  g_live_bytes.fetch_sub(h->bytes, std::memory_order_relaxed);
  t_live_handles -= 1;
  t_live_bytes -= h->bytes;
  delete h;
}

inline const Tensor& deref(TensorHandle p, const char* name) {
  if (!p) throw std::invalid_argument(std::string("null tensor handle for argument '") + name + "'");
  return *p;
}
inline std::optional<Tensor> deref_opt(TensorHandle p) {
  return p ? std::optional<Tensor>(*p) : std::nullopt;
}
inline std::vector<Tensor> deref_list(TensorHandle const* ptr, int64_t len, const char* name) {
  std::vector<Tensor> out;
  out.reserve(static_cast<size_t>(len));
  for (int64_t i = 0; i < len; ++i) {
    if (!ptr[i]) {
      throw std::invalid_argument(std::string("null tensor handle at index ") + std::to_string(i) +
                                  " of list argument '" + name + "'");
    }
    out.push_back(*ptr[i]);
  }
  return out;
}

// ---- list results: stored thread-locally, fetched by st_take_list in the same thread ----
inline int64_t stash_list(std::vector<Tensor> v) {
  g_list = std::move(v);
  return static_cast<int64_t>(g_list.size());
}
template <class... Ts>
inline std::vector<Tensor> tup(const std::tuple<Ts...>& t) {
  return std::apply([](const auto&... xs) { return std::vector<Tensor>{xs...}; }, t);
}

inline const char* stash_string(std::string s) {
  g_string = std::move(s);
  return g_string.c_str();
}

// ---- argument decoding ----
// Devices travel as one integer: -1 is the CPU, n >= 0 is cuda:n.
inline at::Device device_of(int32_t code) {
  return code < 0 ? at::Device(at::kCPU) : at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(code));
}
inline int32_t device_code(const at::Device& d) {
  if (d.is_cpu()) return -1;
  if (d.is_cuda()) return d.has_index() ? d.index() : 0;
  throw std::runtime_error("unsupported device type " + d.str());
}
inline at::ScalarType dtype_of(int32_t code) { return static_cast<at::ScalarType>(code); }
inline at::TensorOptions opts(at::ScalarType dtype, int32_t device) {
  return at::TensorOptions().dtype(dtype).device(device_of(device));
}
inline std::optional<at::Generator> gen_opt(at::Generator* g) {
  return g ? std::optional<at::Generator>(*g) : std::nullopt;
}
// Optional integers travel as int64 with INT64_MIN meaning "none".
inline std::optional<int64_t> int_opt(int64_t v) {
  return v == INT64_MIN ? std::nullopt : std::optional<int64_t>(v);
}
inline std::optional<double> float_opt(double v) {
  return std::isnan(v) ? std::nullopt : std::optional<double>(v);
}
// Numbers cross the boundary as doubles; integral values become integral Scalars so integer
// tensors keep their dtype under in-place and scalar arithmetic.
inline at::Scalar num(double v) {
  if (std::nearbyint(v) == v && std::fabs(v) < 9.007199254740992e15) return at::Scalar(static_cast<int64_t>(v));
  return at::Scalar(v);
}
inline std::optional<at::Scalar> scalar_opt(double v) {
  return std::isnan(v) ? std::nullopt : std::optional<at::Scalar>(at::Scalar(v));
}
inline at::OptionalIntArrayRef dims_opt(at::IntArrayRef dims) {
  return dims.empty() ? at::OptionalIntArrayRef() : at::OptionalIntArrayRef(dims);
}
inline int64_t reduction_of(int64_t r) { return r; }  // 0 none, 1 mean, 2 sum (at::Reduction)

// Reads a tensor's contents into caller memory as a contiguous CPU copy.
inline void copy_out(const Tensor& t, void* dst, int64_t nbytes) {
  auto c = t.detach().to(at::kCPU).contiguous();
  const int64_t have = tensor_bytes(c);
  if (nbytes != have) {
    throw std::invalid_argument("destination holds " + std::to_string(nbytes) + " bytes, tensor has " +
                                std::to_string(have));
  }
  if (have) std::memcpy(dst, c.data_ptr(), static_cast<size_t>(have));
}

}  // namespace slimclr
