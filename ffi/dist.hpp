// Distributed training in the shim: c10d process groups and collectives (see ffi/ops_dist.ts).
//
// A group is a heap-allocated DistGroup behind an opaque pointer: a TCPStore (non-libuv backend,
// since Deno's own libuv symbols collide with LibTorch's bundled copy), a c10d backend (Gloo when
// the build defines SLIMCLR_WITH_GLOO, NCCL when it defines SLIMCLR_WITH_NCCL on a CUDA build),
// and a heartbeat thread. Every collective counts itself; when one fails or times out, the rank
// reads the other ranks' heartbeats from the store and names the rank that died, froze or stalled.
#pragma once

#include "runtime.hpp"

#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#ifdef SLIMCLR_WITH_GLOO
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif

#if defined(SLIMCLR_WITH_NCCL) && defined(SLIMCLR_WITH_CUDA)
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL 1
#endif
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#define SLIMCLR_HAS_NCCL 1
#endif

#include <chrono>
#include <condition_variable>
#include <future>
#include <map>
#include <mutex>
#include <thread>

namespace slimclr {

namespace dist_detail {
using Clock = std::chrono::steady_clock;
using ms = std::chrono::milliseconds;

inline std::vector<uint8_t> bytes(const std::string& s) { return {s.begin(), s.end()}; }
inline std::string text(const std::vector<uint8_t>& v) { return {v.begin(), v.end()}; }

// An exception's message without LibTorch's C++ backtrace.
inline std::string brief(const std::exception& e) {
  if (auto* c = dynamic_cast<const c10::Error*>(&e)) return c->what_without_backtrace();
  return e.what();
}

// One heartbeat record: a counter that the heartbeat thread advances, the number of collectives
// the rank has entered and the name of the last one.
struct Beat {
  int64_t counter = -1;
  int64_t seq = -1;
  std::string op;
};
inline Beat parse_beat(const std::string& s) {
  Beat b;
  std::istringstream in(s);
  in >> b.counter >> b.seq >> b.op;
  return b;
}
inline std::string beat_key(int r) { return "hb/" + std::to_string(r); }

// Every other rank's heartbeat. Throws when the store cannot be reached.
inline std::map<int, Beat> read_beats(const c10::intrusive_ptr<c10d::Store>& store, int rank, int size) {
  std::map<int, Beat> out;
  for (int r = 0; r < size; ++r) {
    if (r == rank || !store->check({beat_key(r)})) continue;
    out[r] = parse_beat(text(store->get(beat_key(r))));
  }
  return out;
}

// read_beats on a helper thread, given up after `limit`: a frozen store host never answers. The
// helper owns its references, so it may outlive the group.
inline std::optional<std::map<int, Beat>> read_beats_within(c10::intrusive_ptr<c10d::Store> store, int rank,
                                                            int size, ms limit) {
  auto task = std::make_shared<std::packaged_task<std::map<int, Beat>()>>(
      [store, rank, size] { return read_beats(store, rank, size); });
  auto result = task->get_future();
  std::thread([task] { (*task)(); }).detach();
  if (result.wait_for(limit) != std::future_status::ready) return std::nullopt;
  return result.get();
}

// The heartbeat: a detached thread that publishes "<counter> <seq> <op>" under hb/<rank> every
// `period` until stopped. It shares this state with the group and owns its store connection, so
// a store that hangs can never block the group's teardown; a store that fails ends it quietly.
struct Heartbeat {
  c10::intrusive_ptr<c10d::Store> store;
  int rank = 0;
  ms period{1000};
  std::atomic<int64_t> seq{0};
  std::atomic<const char*> op{"init"};
  std::mutex m;
  std::condition_variable cv;
  bool stop = false, finished = false;

  static void start(const std::shared_ptr<Heartbeat>& hb) {
    std::thread([hb] {
      int64_t counter = 0;
      std::unique_lock<std::mutex> lock(hb->m);
      while (!hb->stop) {
        lock.unlock();
        try {
          const std::string v =
              std::to_string(++counter) + " " + std::to_string(hb->seq.load()) + " " + hb->op.load();
          hb->store->set(beat_key(hb->rank), bytes(v));
        } catch (...) {
          lock.lock();
          break;
        }
        lock.lock();
        hb->cv.wait_for(lock, hb->period, [&] { return hb->stop; });
      }
      hb->finished = true;
      hb->cv.notify_all();
    }).detach();
  }

  // Asks the thread to end and waits for it a little (it may be stuck on a frozen store).
  void halt() {
    std::unique_lock<std::mutex> lock(m);
    stop = true;
    cv.notify_all();
    cv.wait_for(lock, period * 2, [&] { return finished; });
  }
};
}  // namespace dist_detail

// Names of the backends this build can create.
inline bool dist_has_backend(const std::string& name) {
#ifdef SLIMCLR_WITH_GLOO
  if (name == "gloo") return true;
#endif
#ifdef SLIMCLR_HAS_NCCL
  if (name == "nccl") return true;
#endif
  return false;
}

struct DistGroup {
  c10::intrusive_ptr<c10d::Store> store;  // prefixed per run
  c10::intrusive_ptr<c10d::Backend> backend;
  std::shared_ptr<dist_detail::Heartbeat> hb;
  std::string backend_name, host;
  int port = 0, rank = 0, size = 1;
  dist_detail::ms timeout{0}, heartbeat{1000};
  std::string broken;  // set after a failed collective: the group refuses further work
  std::vector<Tensor> buffers;  // flat bucket buffers, reused across collectives

  std::string where() const {
    return "rank " + std::to_string(rank) + " of " + std::to_string(size) + " (" + backend_name + ")";
  }
  int64_t seq() const { return hb ? hb->seq.load() : 0; }

  // Explains a failed collective on one line (TorchError keeps the first line as its message):
  // which ranks stopped beating (died or froze), which are alive but have not entered collective
  // `mine`, or that rank 0's store is gone. The backend's own message follows on the next line.
  std::string diagnose(const char* name, int64_t mine, const std::string& cause) {
    std::ostringstream head;
    head << "slimclr.dist: " << name << " (collective #" << mine << ") failed on " << where() << ": ";
    const auto limit = std::max(dist_detail::ms(2000), heartbeat * 3);
    std::optional<std::map<int, dist_detail::Beat>> a, b;
    std::string store_error = "no answer within " + std::to_string(limit.count()) + " ms";
    try {
      a = dist_detail::read_beats_within(store, rank, size, limit);
      if (a) {
        std::this_thread::sleep_for(heartbeat * 5 / 2);
        b = dist_detail::read_beats_within(store, rank, size, limit);
      }
    } catch (const std::exception& e) {
      a.reset();
      store_error = dist_detail::brief(e);
    }
    if (!a || !b) {
      head << "rank 0 (host of the rendezvous store at " << host << ":" << port
           << ") is unreachable: it died, froze or its host is down\ncause: " << cause << "\nstore: " << store_error;
      return head.str();
    }
    std::vector<std::string> findings;
    const std::string silent = std::to_string(heartbeat.count() * 5 / 2);
    for (int r = 0; r < size; ++r) {
      if (r == rank) continue;
      const std::string who = "rank " + std::to_string(r);
      if (!b->count(r)) {
        findings.push_back(who + " never published a heartbeat");
        continue;
      }
      const auto& now = b->at(r);
      const std::string last = now.op + " #" + std::to_string(now.seq);
      if (a->count(r) && a->at(r).counter == now.counter) {
        findings.push_back(who + " stopped responding (no heartbeat for " + silent +
                           " ms: the process died or froze; its last heartbeat was in " + last + ")");
      } else if (now.seq < mine) {
        findings.push_back(who + " is alive but stalled: it has not entered " + name + " #" +
                           std::to_string(mine) + " (last entered " + last + ")");
      } else if (now.seq > mine) {
        findings.push_back(who + " is ahead, in " + last + " (the ranks called different collectives)");
      }
    }
    if (findings.empty()) findings.push_back("every other rank is alive and in the same collective");
    for (size_t i = 0; i < findings.size(); ++i) head << (i ? "; " : "") << findings[i];
    head << "\ncause: " << cause;
    return head.str();
  }

  // Runs one collective: counts it, publishes its name, waits for it and turns any failure into
  // an error that names the culprit. A group that failed once refuses further collectives.
  template <class F>
  void collective(const char* name, F&& body) {
    if (!broken.empty()) throw std::runtime_error("slimclr.dist: the process group failed earlier: " + broken);
    const int64_t mine = ++hb->seq;
    hb->op.store(name);
    try {
      body();
    } catch (const std::exception& e) {
      broken = diagnose(name, mine, dist_detail::brief(e));
      throw std::runtime_error(broken);
    }
  }

  static void wait(const c10::intrusive_ptr<c10d::Work>& work) {
    if (work) work->wait();
  }
};

inline DistGroup& group_ref(void* g) {
  if (!g) throw std::invalid_argument("null process group handle");
  return *static_cast<DistGroup*>(g);
}

inline bool is_loopback(const std::string& host) {
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1";
}

// Waits (server-side, one request) until every rank has published its join key; on timeout,
// names the ranks that never arrived.
inline void join_ranks(DistGroup& g) {
  std::vector<std::string> keys;
  for (int r = 0; r < g.size; ++r) keys.push_back("join/" + std::to_string(r));
  g.store->set(keys[g.rank], dist_detail::bytes("1"));
  try {
    g.store->wait(keys, g.timeout);
    return;
  } catch (const std::exception&) {
  }
  std::vector<int> missing;
  for (int r = 0; r < g.size; ++r) {
    if (!g.store->check({keys[r]})) missing.push_back(r);
  }
  std::ostringstream msg;
  msg << "slimclr.dist: rank " << g.rank << " waited " << g.timeout.count() << " ms at " << g.host << ":"
      << g.port << " but rank" << (missing.size() > 1 ? "s" : "");
  for (size_t i = 0; i < missing.size(); ++i) msg << (i ? ", " : " ") << missing[i];
  msg << " never joined (check WORLD_SIZE, MASTER_ADDR and MASTER_PORT, and that every rank started)";
  throw std::runtime_error(msg.str());
}

inline c10::intrusive_ptr<c10d::Backend> make_backend(DistGroup& g, int32_t device) {
  auto store = c10::make_intrusive<c10d::PrefixStore>(g.backend_name + "/", g.store);
#ifdef SLIMCLR_WITH_GLOO
  if (g.backend_name == "gloo") {
    (void)device;
    auto opts = c10d::ProcessGroupGloo::Options::create(g.timeout);
    const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
    if (ifname && *ifname) {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
    } else if (is_loopback(g.host)) {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    } else {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    return c10::make_intrusive<c10d::ProcessGroupGloo>(store, g.rank, g.size, opts);
  }
#endif
#ifdef SLIMCLR_HAS_NCCL
  if (g.backend_name == "nccl") {
    if (device < 0) throw std::invalid_argument("the nccl backend needs a CUDA device (LOCAL_RANK)");
    c10::cuda::set_device(static_cast<c10::DeviceIndex>(device));
    auto opts = c10d::ProcessGroupNCCL::Options::create();
    opts->timeout = g.timeout;
    return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, g.rank, g.size, opts);
  }
#endif
  (void)device;
  throw std::invalid_argument("slimclr.dist: this shim was built without the '" + g.backend_name +
                              "' backend (gloo needs the gloo headers at build time, nccl a CUDA "
                              "LibTorch and nccl.h)");
}

// Creates a group: store, heartbeat, join barrier, backend. `agent_store` makes rank 0 a client
// too (torchrun's agent already serves the store); `prefix` scopes the keys of this run.
inline void* dist_init(const std::string& backend, const std::string& host, int32_t port, int32_t rank,
                       int32_t world, int64_t timeout_ms, int64_t heartbeat_ms, bool agent_store,
                       const std::string& prefix, int32_t device) {
  if (world < 1 || rank < 0 || rank >= world) {
    throw std::invalid_argument("slimclr.dist: rank " + std::to_string(rank) + " is not in [0, " +
                                std::to_string(world) + ")");
  }
  if (!dist_has_backend(backend)) {
    DistGroup probe;
    probe.backend_name = backend;
    make_backend(probe, device);  // throws the explanation
  }
  auto g = std::make_unique<DistGroup>();
  g->backend_name = backend;
  g->host = host;
  g->port = port;
  g->rank = rank;
  g->size = world;
  g->timeout = dist_detail::ms(timeout_ms);
  g->heartbeat = dist_detail::ms(std::max<int64_t>(heartbeat_ms, 50));
  c10d::TCPStoreOptions so;
  so.port = static_cast<uint16_t>(port);
  so.isServer = rank == 0 && !agent_store;
  so.numWorkers = std::nullopt;
  so.waitWorkers = false;
  so.timeout = g->timeout;
  so.useLibUV = false;
  c10::intrusive_ptr<c10d::Store> tcp;
  try {
    tcp = c10::make_intrusive<c10d::TCPStore>(host, so);
  } catch (const std::exception& e) {
    throw std::runtime_error("slimclr.dist: rank " + std::to_string(rank) + " could not " +
                             (so.isServer ? "serve" : "reach") + " the rendezvous store at " + host +
                             ":" + std::to_string(port) + ": " + dist_detail::brief(e));
  }
  g->store = c10::make_intrusive<c10d::PrefixStore>(prefix, tcp);
  g->hb = std::make_shared<dist_detail::Heartbeat>();
  g->hb->store = c10::make_intrusive<c10d::PrefixStore>(prefix, tcp->clone());
  g->hb->rank = rank;
  g->hb->period = g->heartbeat;
  dist_detail::Heartbeat::start(g->hb);
  try {
    join_ranks(*g);
    g->backend = make_backend(*g, device);
  } catch (...) {
    g->hb->halt();
    throw;
  }
  return g.release();
}

inline void dist_destroy(void* p) {
  auto* g = static_cast<DistGroup*>(p);
  if (!g) return;
  g->hb->halt();
  g->backend.reset();
  g->store.reset();
  delete g;
}

// ---- collectives ----

// Consecutive runs of tensors with one dtype and device, each up to `bucket_bytes` (a tensor
// larger than a bucket gets one of its own).
inline std::vector<std::vector<size_t>> buckets_of(const std::vector<Tensor>& xs, int64_t bucket_bytes) {
  std::vector<std::vector<size_t>> out;
  int64_t filled = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const int64_t b = tensor_bytes(xs[i]);
    const bool fresh = out.empty() || filled + b > bucket_bytes ||
                       xs[out.back().front()].scalar_type() != xs[i].scalar_type() ||
                       xs[out.back().front()].device() != xs[i].device();
    if (fresh) {
      out.emplace_back();
      filled = 0;
    }
    out.back().push_back(i);
    filled += b;
  }
  return out;
}

// A contiguous buffer for bucket `k`: the tensor itself when it is alone and contiguous, else the
// group's cached buffer for that bucket (reallocated when the size, dtype or device changes), so
// that a training loop does not allocate and page in a gradient-sized buffer every step.
inline Tensor flatten_bucket(DistGroup& g, size_t k, const std::vector<Tensor>& xs, const std::vector<size_t>& idx) {
  if (idx.size() == 1 && xs[idx[0]].is_contiguous()) return xs[idx[0]].view({-1});
  std::vector<Tensor> flat;
  flat.reserve(idx.size());
  int64_t n = 0;
  for (size_t i : idx) {
    flat.push_back(xs[i].reshape({-1}));
    n += xs[i].numel();
  }
  if (g.buffers.size() <= k) g.buffers.resize(k + 1);
  Tensor& buf = g.buffers[k];
  const auto& like = xs[idx[0]];
  if (!buf.defined() || buf.numel() != n || buf.scalar_type() != like.scalar_type() || buf.device() != like.device()) {
    buf = at::empty({n}, like.options());
  }
  at::cat_out(buf, flat);
  return buf;
}

inline void unflatten_bucket(const Tensor& flat, const std::vector<Tensor>& xs, const std::vector<size_t>& idx) {
  if (idx.size() == 1 && xs[idx[0]].is_contiguous()) return;  // reduced in place
  int64_t offset = 0;
  for (size_t i : idx) {
    const int64_t n = xs[i].numel();
    const_cast<Tensor&>(xs[i]).copy_(flat.narrow(0, offset, n).view(xs[i].sizes()));
    offset += n;
  }
}

// All-reduces `xs` in place, one collective per bucket, all buckets in flight together.
inline void dist_all_reduce(void* p, const std::vector<Tensor>& xs, int32_t op, int64_t bucket_bytes) {
  auto& g = group_ref(p);
  if (op != 0 && op != 1) throw std::invalid_argument("all_reduce op must be 0 (sum) or 1 (avg)");
  at::NoGradGuard no_grad;
  const auto buckets = buckets_of(xs, bucket_bytes);
  g.collective("all_reduce", [&] {
    std::vector<Tensor> flats;
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    for (const auto& b : buckets) {
      std::vector<Tensor> one{flatten_bucket(g, flats.size(), xs, b)};
      works.push_back(g.backend->allreduce(one));
      flats.push_back(one[0]);
    }
    for (size_t k = 0; k < buckets.size(); ++k) {
      DistGroup::wait(works[k]);
      if (op == 1 && at::isIntegralType(flats[k].scalar_type(), /*includeBool=*/true)) {
        flats[k].div_(g.size, "trunc");  // integer average, rounded toward zero
      } else if (op == 1) {
        flats[k].div_(g.size);
      }
      unflatten_bucket(flats[k], xs, buckets[k]);
    }
  });
}

// All-reduces the gradients of `params` (averaged when `avg`). With `find_unused`, the ranks first
// agree on which parameters have a gradient anywhere; a rank without one contributes zeros.
inline void dist_all_reduce_grads(void* p, const std::vector<Tensor>& params, bool avg, bool find_unused,
                                  int64_t bucket_bytes) {
  auto& g = group_ref(p);
  std::vector<Tensor> grads;
  if (find_unused && !params.empty()) {
    at::NoGradGuard no_grad;
    auto mask = at::zeros({static_cast<int64_t>(params.size())}, at::TensorOptions().dtype(at::kFloat));
    auto* m = mask.data_ptr<float>();
    for (size_t i = 0; i < params.size(); ++i) m[i] = params[i].grad().defined() ? 1.f : 0.f;
    if (params[0].is_cuda() && g.backend_name == "nccl") mask = mask.to(params[0].device());
    g.collective("grad_mask", [&] {
      std::vector<Tensor> one{mask};
      DistGroup::wait(g.backend->allreduce(one));
    });
    mask = mask.cpu();
    m = mask.data_ptr<float>();
    for (size_t i = 0; i < params.size(); ++i) {
      if (m[i] == 0.f) continue;
      auto& slot = const_cast<Tensor&>(params[i]).mutable_grad();
      if (!slot.defined()) slot = at::zeros_like(params[i]);
      grads.push_back(slot);
    }
  } else {
    for (const auto& q : params) {
      if (q.grad().defined()) grads.push_back(q.grad());
    }
  }
  if (!grads.empty()) dist_all_reduce(p, grads, avg ? 1 : 0, bucket_bytes);
}

// Overwrites `xs` on every rank with rank `src`'s values, bucketed like all_reduce.
inline void dist_broadcast(void* p, const std::vector<Tensor>& xs, int64_t src, int64_t bucket_bytes) {
  auto& g = group_ref(p);
  if (src < 0 || src >= g.size) throw std::invalid_argument("broadcast source rank out of range");
  at::NoGradGuard no_grad;
  const auto buckets = buckets_of(xs, bucket_bytes);
  g.collective("broadcast", [&] {
    std::vector<Tensor> flats;
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    c10d::BroadcastOptions opts;
    opts.rootRank = src;
    for (const auto& b : buckets) {
      std::vector<Tensor> one{flatten_bucket(g, flats.size(), xs, b)};
      works.push_back(g.backend->broadcast(one, opts));
      flats.push_back(one[0]);
    }
    for (size_t k = 0; k < buckets.size(); ++k) {
      DistGroup::wait(works[k]);
      if (g.rank != src) unflatten_bucket(flats[k], xs, buckets[k]);
    }
  });
}

inline void dist_barrier(void* p) {
  auto& g = group_ref(p);
  g.collective("barrier", [&] { DistGroup::wait(g.backend->barrier()); });
}

// Every rank's `x` concatenated along dim 0 in rank order (equal shapes on every rank), detached.
inline Tensor dist_all_gather(void* p, const Tensor& x) {
  auto& g = group_ref(p);
  at::NoGradGuard no_grad;
  Tensor in = x.detach().contiguous();
  if (in.dim() == 0) in = in.reshape({1});
  std::vector<int64_t> shape(in.sizes().begin(), in.sizes().end());
  shape[0] *= g.size;
  Tensor out = at::empty(shape, in.options());
  g.collective("all_gather", [&] { DistGroup::wait(g.backend->_allgather_base(out, in)); });
  return out;
}

// As dist_all_gather, but this rank's slice is `x` itself, so the gradient flows into the local
// shard only (SimCLR's negatives).
inline Tensor dist_all_gather_grad(void* p, const Tensor& x) {
  auto& g = group_ref(p);
  Tensor all = dist_all_gather(p, x);
  if (x.dim() == 0) return all;
  const int64_t n = x.size(0);
  std::vector<Tensor> parts;
  if (g.rank > 0) parts.push_back(all.narrow(0, 0, n * g.rank));
  parts.push_back(x);
  if (g.rank + 1 < g.size) parts.push_back(all.narrow(0, n * (g.rank + 1), n * (g.size - g.rank - 1)));
  return at::cat(parts);
}

// ---- synchronized batch normalisation ----

// Batch norm over channel dim 1 with the statistics of the whole global batch: one all-reduce of
// per-channel [Σx, Σx², n] (float64) forward, one of [Σdy, Σdy·(x−μ)] backward. Weight and bias
// gradients stay local (the data-parallel gradient all-reduce averages them).
struct SyncBatchNormFn : public torch::autograd::Function<SyncBatchNormFn> {
  static std::vector<int64_t> reduce_dims(const Tensor& x) {
    std::vector<int64_t> d{0};
    for (int64_t i = 2; i < x.dim(); ++i) d.push_back(i);
    return d;
  }
  static std::vector<int64_t> channel_shape(const Tensor& x) {
    std::vector<int64_t> s(static_cast<size_t>(x.dim()), 1);
    s[1] = x.size(1);
    return s;
  }

  static Tensor forward(torch::autograd::AutogradContext* ctx, const Tensor& x, const Tensor& w,
                        const Tensor& b, const Tensor& rm, const Tensor& rv, double momentum, double eps,
                        int64_t group) {
    auto& g = *reinterpret_cast<DistGroup*>(group);
    if (x.dim() < 2) throw std::invalid_argument("sync batch norm needs an input of at least 2 dimensions");
    const int64_t C = x.size(1);
    const auto dims = reduce_dims(x);
    const double n = static_cast<double>(x.numel() / std::max<int64_t>(C, 1));
    auto [var_l, mean_l] = at::var_mean(x, dims, /*correction=*/0, /*keepdim=*/false);
    auto mean_d = mean_l.to(at::kDouble);
    auto stats = at::cat({mean_d * n, (var_l.to(at::kDouble) + mean_d * mean_d) * n,
                          at::full({1}, n, mean_d.options())});
    g.collective("sync_batch_norm", [&] {
      std::vector<Tensor> one{stats};
      DistGroup::wait(g.backend->allreduce(one));
    });
    auto count = stats.narrow(0, 2 * C, 1);
    auto mean = stats.narrow(0, 0, C) / count;
    auto var = (stats.narrow(0, C, C) / count - mean * mean).clamp_min(0);
    if (rm.defined()) {
      rm.mul_(1 - momentum).add_(mean.to(rm.scalar_type()), momentum);
      auto unbiased = var * count / (count - 1).clamp_min(1);
      rv.mul_(1 - momentum).add_(unbiased.to(rv.scalar_type()), momentum);
    }
    auto mean_x = mean.to(x.scalar_type());
    auto var_x = var.to(x.scalar_type());
    auto invstd = (var + eps).rsqrt().to(x.scalar_type());
    ctx->save_for_backward({x, w});
    ctx->saved_data["mean"] = mean_x;
    ctx->saved_data["invstd"] = invstd;
    ctx->saved_data["count"] = count;
    ctx->saved_data["group"] = group;
    return at::batch_norm(x, w.defined() ? std::optional<Tensor>(w) : std::nullopt,
                          b.defined() ? std::optional<Tensor>(b) : std::nullopt, mean_x, var_x,
                          /*training=*/false, 0.0, eps, /*cudnn_enabled=*/true);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const Tensor& x = saved[0];
    const Tensor& w = saved[1];
    const Tensor dy = grads[0].contiguous();
    const Tensor mean = ctx->saved_data["mean"].toTensor();
    const Tensor invstd = ctx->saved_data["invstd"].toTensor();
    const Tensor count = ctx->saved_data["count"].toTensor();
    auto& g = *reinterpret_cast<DistGroup*>(ctx->saved_data["group"].toInt());
    const int64_t C = x.size(1);
    const auto dims = reduce_dims(x);
    const auto cs = channel_shape(x);
    const Tensor xmu = x - mean.view(cs);
    const Tensor sum_dy = dy.sum(dims);
    const Tensor sum_dy_xmu = (dy * xmu).sum(dims);
    Tensor gx, gw, gb;
    if (ctx->needs_input_grad(0)) {
      auto red = at::cat({sum_dy, sum_dy_xmu}).to(at::kDouble);
      g.collective("sync_batch_norm_backward", [&] {
        std::vector<Tensor> one{red};
        DistGroup::wait(g.backend->allreduce(one));
      });
      red = (red / count).to(x.scalar_type());
      const Tensor mean_dy = red.narrow(0, 0, C).view(cs);
      const Tensor mean_dy_xmu = red.narrow(0, C, C).view(cs);
      const Tensor inv = invstd.view(cs);
      const Tensor scale = w.defined() ? (invstd * w).view(cs) : inv;
      gx = (dy - mean_dy - xmu * (inv * inv) * mean_dy_xmu) * scale;
    }
    if (w.defined() && ctx->needs_input_grad(1)) gw = sum_dy_xmu * invstd;
    if (ctx->needs_input_grad(2)) gb = sum_dy;
    return {gx, gw, gb, Tensor(), Tensor(), Tensor(), Tensor(), Tensor()};
  }
};

inline Tensor dist_sync_batch_norm(void* p, const Tensor& x, const std::optional<Tensor>& w,
                                   const std::optional<Tensor>& b, const std::optional<Tensor>& rm,
                                   const std::optional<Tensor>& rv, double momentum, double eps) {
  group_ref(p);
  if (rm.has_value() != rv.has_value()) throw std::invalid_argument("running mean and variance go together");
  return SyncBatchNormFn::apply(x, w.value_or(Tensor()), b.value_or(Tensor()), rm.value_or(Tensor()),
                                rv.value_or(Tensor()), momentum, eps,
                                static_cast<int64_t>(reinterpret_cast<intptr_t>(p)));
}

}  // namespace slimclr
