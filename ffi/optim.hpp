// Optimizers and EMA over parameter lists, one FFI call per step. Each optimizer keeps its
// parameters (sharing storage with the TypeScript-side parameters) and per-parameter state that
// is created lazily at a parameter's first gradient, exactly as torch.optim does.
#pragma once

#include "runtime.hpp"

namespace slimclr {

enum class OptimKind : int32_t { SGD = 0, LARS = 1, ADAMW = 2 };

struct Optimizer {
  OptimKind kind;
  std::vector<Tensor> params;
  std::vector<Tensor> state1;  // SGD momentum_buffer, LARS mu, AdamW exp_avg
  std::vector<Tensor> state2;  // AdamW exp_avg_sq
  std::vector<int64_t> steps;  // AdamW step per parameter
};

inline Optimizer* optim_new(int32_t kind, std::vector<Tensor> params) {
  if (kind < 0 || kind > 2) throw std::invalid_argument("unknown optimizer kind " + std::to_string(kind));
  auto* o = new Optimizer{static_cast<OptimKind>(kind), std::move(params), {}, {}, {}};
  o->state1.resize(o->params.size());
  o->state2.resize(o->params.size());
  o->steps.assign(o->params.size(), 0);
  return o;
}

inline Optimizer& optim_ref(void* p) {
  if (!p) throw std::invalid_argument("null optimizer handle");
  return *static_cast<Optimizer*>(p);
}

// Indices of parameters that have a gradient this step.
inline std::vector<size_t> active(const Optimizer& o) {
  std::vector<size_t> idx;
  for (size_t i = 0; i < o.params.size(); ++i)
    if (o.params[i].grad().defined()) idx.push_back(i);
  return idx;
}

// torch.optim.SGD: weight decay, momentum with dampening, Nesterov.
inline void sgd_step(Optimizer& o, double lr, double momentum, double dampening, double wd, bool nesterov) {
  at::NoGradGuard guard;
  const auto idx = active(o);
  if (idx.empty()) return;
  std::vector<Tensor> ps, gs;
  for (auto i : idx) {
    ps.push_back(o.params[i]);
    gs.push_back(o.params[i].grad());
  }
  if (wd != 0) gs = at::_foreach_add(gs, ps, wd);
  if (momentum != 0) {
    std::vector<Tensor> bufs, bgs;
    for (size_t k = 0; k < idx.size(); ++k) {
      auto& buf = o.state1[idx[k]];
      if (!buf.defined()) {
        buf = gs[k].clone().detach();
      } else {
        bufs.push_back(buf);
        bgs.push_back(gs[k]);
      }
    }
    if (!bufs.empty()) {
      at::_foreach_mul_(bufs, momentum);
      at::_foreach_add_(bufs, bgs, 1.0 - dampening);
    }
    std::vector<Tensor> all;
    for (auto i : idx) all.push_back(o.state1[i]);
    if (nesterov) {
      gs = at::_foreach_add(gs, all, momentum);
    } else {
      gs = all;
    }
  }
  at::_foreach_add_(ps, gs, -lr);
}

// LARS as in MoCo v3: parameters with more than one dimension get weight decay and the trust
// ratio; 1-D parameters (biases, norm affine) get neither.
inline void lars_step(Optimizer& o, double lr, double momentum, double wd, double trust) {
  at::NoGradGuard guard;
  const auto idx = active(o);
  if (idx.empty()) return;
  std::vector<Tensor> ps, dps, mus;
  for (auto i : idx) {
    auto& p = o.params[i];
    Tensor dp = p.grad();
    if (p.dim() > 1) {
      dp = dp.add(p, wd);
      auto pn = at::linalg_vector_norm(p);
      auto un = at::linalg_vector_norm(dp);
      auto one = at::ones_like(pn);
      auto q = at::where(pn > 0, at::where(un > 0, trust * pn / un, one), one);
      dp = dp.mul(q);
    }
    if (!o.state1[i].defined()) o.state1[i] = at::zeros_like(p);
    ps.push_back(p);
    dps.push_back(dp);
    mus.push_back(o.state1[i]);
  }
  at::_foreach_mul_(mus, momentum);
  at::_foreach_add_(mus, dps);
  at::_foreach_add_(ps, mus, -lr);
}

// torch.optim.AdamW (amsgrad off): decoupled weight decay, bias-corrected moments.
inline void adamw_step(Optimizer& o, double lr, double beta1, double beta2, double eps, double wd) {
  at::NoGradGuard guard;
  for (auto i : active(o)) {
    auto& p = o.params[i];
    const auto g = p.grad();
    if (!o.state1[i].defined()) {
      o.state1[i] = at::zeros_like(p);
      o.state2[i] = at::zeros_like(p);
    }
    auto& m = o.state1[i];
    auto& v = o.state2[i];
    const int64_t step = ++o.steps[i];
    p.mul_(1.0 - lr * wd);
    m.lerp_(g, 1.0 - beta1);
    v.mul_(beta2).addcmul_(g, g, 1.0 - beta2);
    const double bc1 = 1.0 - std::pow(beta1, static_cast<double>(step));
    const double bc2 = 1.0 - std::pow(beta2, static_cast<double>(step));
    auto denom = (v.sqrt() / std::sqrt(bc2)).add_(eps);
    p.addcdiv_(m, denom, -lr / bc1);
  }
}

// Zeroes (set_to_none) every parameter's gradient.
inline void zero_grad(Optimizer& o) {
  for (auto& p : o.params) p.mutable_grad().reset();
}

// Scales all gradients so their global L2 norm is at most max_norm (torch.nn.utils.clip_grad_norm_
// with its 1e-6 guard); returns the norm before clipping. Parameters without gradients are skipped.
inline double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  at::NoGradGuard guard;
  std::vector<Tensor> grads;
  for (const auto& p : params)
    if (p.grad().defined()) grads.push_back(p.grad());
  if (grads.empty()) return 0.0;
  auto norms = at::_foreach_norm(grads, 2);
  const double total = at::linalg_vector_norm(at::stack(norms), 2).item<double>();
  const double coef = max_norm / (total + 1e-6);
  if (coef < 1.0) at::_foreach_mul_(grads, coef);
  return total;
}

// Multiplies every gradient by inv_scale in place and reports whether any was inf or NaN (the
// unscale step of gradient scaling for fp16 training), in one pass over the parameter list.
inline bool amp_unscale_grads(const std::vector<Tensor>& params, double inv_scale) {
  at::NoGradGuard guard;
  std::vector<Tensor> grads;
  for (const auto& p : params)
    if (p.grad().defined()) grads.push_back(p.grad());
  if (grads.empty()) return false;
  auto found = at::zeros({1}, grads[0].options().dtype(at::kFloat));
  auto inv = at::full({1}, inv_scale, grads[0].options().dtype(at::kFloat));
  at::_amp_foreach_non_finite_check_and_unscale_(grads, found, inv);
  return found.item<float>() != 0.0f;
}

// k = m*k + (1-m)*q over two equally long lists, in place on k.
inline void ema_update(std::vector<Tensor> k, const std::vector<Tensor>& q, double m) {
  if (k.size() != q.size()) {
    throw std::invalid_argument("ema_update: target list has " + std::to_string(k.size()) +
                                " tensors, source list " + std::to_string(q.size()));
  }
  at::NoGradGuard guard;
  at::_foreach_mul_(k, m);
  at::_foreach_add_(k, q, 1.0 - m);
}

}  // namespace slimclr
