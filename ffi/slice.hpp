// Width slices of shared slimmable weights with a cheap backward pass.
//
// A sub-network uses the leading block w[o0:o0+olen, i0:i0+ilen] of a layer's full weight. With
// `narrow` in autograd, the backward pass of every slice materialises a zero tensor of the full
// weight's size, copies the slice's gradient into it and the engine then adds those full-size
// tensors together: for three sub-widths of a ResNet-50 that is several full copies of the model's
// gradient written and read per step, for gradients that cover 56%, 25% and 6% of it.
//
// `slice_weight` returns the same view, but its backward node adds the slice's gradient straight
// into the matching block of the parameter's `.grad` (creating it as zeros when absent) whenever
// the engine is running a plain `backward()` that accumulates into `.grad` anyway. Under
// `autograd::grad` or `backward(inputs=...)` (the engine then captures gradients instead of
// accumulating them) it falls back to returning the full-size gradient, so every caller sees the
// same values as with `narrow`; only the summation order differs. (Tensor hooks on the weight do
// not see these slice gradients: nothing in slimclr registers any.)
#pragma once

#include "runtime.hpp"

#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/autograd/graph_task.h>

namespace slimclr {

// The view t[o0:o0+olen, i0:i0+ilen] (the first dimension only for 1-D tensors).
inline at::Tensor weight_block(const at::Tensor& t, int64_t o0, int64_t olen, int64_t i0,
                               int64_t ilen) {
  auto b = t.narrow(0, o0, olen);
  return t.dim() > 1 ? b.narrow(1, i0, ilen) : b;
}

struct WeightSlice : public torch::autograd::Function<WeightSlice> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& weight,
                            int64_t o0, int64_t olen, int64_t i0, int64_t ilen) {
    ctx->saved_data["weight"] = weight;
    ctx->saved_data["range"] = std::vector<int64_t>{o0, olen, i0, ilen};
    return weight_block(weight, o0, olen, i0, ilen);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    at::Tensor weight = ctx->saved_data["weight"].toTensor();
    auto r = ctx->saved_data["range"].toIntVector();
    const at::Tensor& g = grads[0];
    torch::autograd::variable_list out(5);
    if (!g.defined()) return out;
    auto block = [&](const at::Tensor& full) { return weight_block(full, r[0], r[1], r[2], r[3]); };
    // A populated exec_info means the engine captures gradients (autograd::grad, backward with
    // inputs) rather than accumulating every leaf's: behave exactly like narrow then.
    const auto* exec = torch::autograd::get_current_graph_task_exec_info();
    const bool accumulating = exec && exec->empty() && weight.is_leaf() &&
                              !at::GradMode::is_enabled() && g.dtype() == weight.dtype();
    if (!accumulating) {
      auto full = at::zeros(weight.sizes(), g.options());
      block(full).copy_(g);
      out[0] = full;
      return out;
    }
    at::Tensor& acc = weight.mutable_grad();
    if (!acc.defined()) acc = at::zeros_like(weight);
    block(acc).add_(g);
    return out;
  }
};

inline at::Tensor slice_weight(const at::Tensor& w, int64_t o0, int64_t olen, int64_t i0,
                               int64_t ilen) {
  if (w.dim() < 1) throw std::invalid_argument("slice_weight: a 0-d tensor has no channels");
  if (!w.requires_grad() || !at::GradMode::is_enabled()) return weight_block(w, o0, olen, i0, ilen);
  return WeightSlice::apply(w, o0, olen, i0, ilen);
}

}  // namespace slimclr
