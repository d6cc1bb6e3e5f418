/**
 * The op table: the single source of truth for the C API. Each entry gives the argument list,
 * the return kind and the C++ body; `ffi/codegen.ts` turns it into the C declarations and the
 * exception-safe C++ entry points, and `lib/ffi/library.ts` turns it into the `Deno.dlopen`
 * symbol table and typed TypeScript wrappers. Adding an op is one line here.
 *
 * Argument kinds: `T` tensor, `T?` optional tensor, `T[]` tensor list, `i64`, `i64?` (none is
 * INT64_MIN), `f64`, `f64?` (none is NaN), `S` (a number that becomes an integral at::Scalar
 * when it is an integer, so integer tensors keep their dtype), `bool`, `i32`, `dtype`, `device` (-1 cpu, n cuda:n),
 * `i64[]`, `f64[]`, `str`, `buf` (raw memory), `P` / `P?` (opaque object such as a generator or an
 * optimizer). Return kinds: `T`, `T?`, `T[]`, `void`, `i64`, `f64`, `bool`, `i32`, `str`, `P`.
 *
 * A body is a C++ expression (wrapped according to the return kind) or, when it starts with `{`,
 * a block that returns the raw value. Tensor arguments are `const at::Tensor&`, optional tensors
 * `std::optional<at::Tensor>`, lists `std::vector<at::Tensor>` / `at::IntArrayRef`, opaque
 * pointers `void*`, generators `std::optional<at::Generator>` via `gen_opt`.
 */

import { DATA_OPS } from "./ops_data.ts";
import { DIST_OPS } from "./ops_dist.ts";

/** Kinds an argument may have. */
export type ArgKind =
  | "T"
  | "T?"
  | "T[]"
  | "i64"
  | "i64?"
  | "f64"
  | "f64?"
  | "S"
  | "bool"
  | "i32"
  | "dtype"
  | "device"
  | "i64[]"
  | "f64[]"
  | "str"
  | "buf"
  | "P"
  | "P?";

/** Kinds a result may have. */
export type RetKind = "T" | "T?" | "T[]" | "void" | "i64" | "f64" | "bool" | "i32" | "str" | "P";

/** One op: `args` are `"kind name"` strings. */
export interface OpSpec {
  readonly args: readonly string[];
  readonly ret: RetKind;
  readonly body: string;
  /** Raw ops neither clear nor set the error state (used by the error accessors themselves). */
  readonly raw?: boolean;
}

/** Declares one op (exported for the table fragments in `ffi/ops_*.ts`). */
export function op<const A extends readonly `${ArgKind} ${string}`[], const R extends RetKind>(
  args: A,
  ret: R,
  body: string,
  raw = false,
): { args: A; ret: R; body: string; raw: boolean } {
  return { args, ret, body, raw };
}

const unary = (fn: string) => op(["T a"], "T", `at::${fn}(a)`);
const unaryInPlace = (fn: string) => op(["T a"], "void", `a.${fn}();`);
const binary = (fn: string) => op(["T a", "T b"], "T", `at::${fn}(a, b)`);
const binaryScalar = (fn: string) => op(["T a", "S b"], "T", `at::${fn}(a, b)`);
const inPlace = (fn: string) => op(["T a", "T b"], "void", `const_cast<at::Tensor&>(a).${fn}(b);`);
const inPlaceScalar = (fn: string) =>
  op(["T a", "S b"], "void", `const_cast<at::Tensor&>(a).${fn}(b);`);

/** The tensor and training part of the C API. */
const CORE_OPS = {
  // ---- runtime: errors, handles, lists, strings ----
  last_error: op([], "P", "(void*)slimclr::g_error.c_str()", true),
  error_flag: op([], "bool", "slimclr::g_has_error", true),
  free: op(["P h"], "void", "release(static_cast<at::Tensor*>(h));"),
  live_handles: op([], "i64", "g_live_handles.load()"),
  live_bytes: op([], "i64", "g_live_bytes.load()"),
  thread_live_handles: op([], "i64", "t_live_handles"),
  thread_live_bytes: op([], "i64", "t_live_bytes"),
  take_list: op(
    ["buf out", "i64 cap"],
    "i64",
    `{ if (cap < (int64_t)g_list.size()) throw std::invalid_argument("list buffer too small");
       auto** dst = static_cast<at::Tensor**>(out); int64_t n = (int64_t)g_list.size();
       for (int64_t i = 0; i < n; ++i) dst[i] = wrap_optional(g_list[i]);
       g_list.clear(); return n; }`,
  ),
  torch_version: op([], "str", "std::string(TORCH_VERSION)"),
  to_string: op(
    ["T a"],
    "str",
    "{ std::ostringstream ss; ss << a; return stash_string(ss.str()); }",
  ),

  // ---- properties and readback ----
  dim: op(["T a"], "i64", "a.dim()"),
  sizes: op(
    ["T a", "buf out", "i64 cap"],
    "i64",
    `{ auto s = a.sizes(); if ((int64_t)s.size() > cap) throw std::invalid_argument("shape buffer too small");
       std::memcpy(out, s.data(), s.size() * sizeof(int64_t)); return (int64_t)s.size(); }`,
  ),
  strides: op(
    ["T a", "buf out", "i64 cap"],
    "i64",
    `{ auto s = a.strides(); if ((int64_t)s.size() > cap) throw std::invalid_argument("stride buffer too small");
       std::memcpy(out, s.data(), s.size() * sizeof(int64_t)); return (int64_t)s.size(); }`,
  ),
  numel: op(["T a"], "i64", "a.numel()"),
  dtype: op(["T a"], "i32", "static_cast<int32_t>(a.scalar_type())"),
  device: op(["T a"], "i32", "device_code(a.device())"),
  is_contiguous: op(["T a"], "bool", "a.is_contiguous()"),
  item: op(["T a"], "f64", "a.item<double>()"),
  item_i64: op(["T a"], "i64", "a.item<int64_t>()"),
  copy_to: op(["T a", "buf dst", "i64 nbytes"], "void", "copy_out(a, dst, nbytes);"),
  equal: op(["T a", "T b"], "bool", "at::equal(a, b)"),
  allclose: op(
    ["T a", "T b", "f64 rtol", "f64 atol", "bool nan"],
    "bool",
    "at::allclose(a, b, rtol, atol, nan)",
  ),

  // ---- creation ----
  from_blob: op(
    ["buf data", "i64[] shape", "dtype dt"],
    "T",
    "at::from_blob(data, shape, at::TensorOptions().dtype(dt)).clone()",
  ),
  empty: op(["i64[] shape", "dtype dt", "device dev"], "T", "at::empty(shape, opts(dt, dev))"),
  zeros: op(["i64[] shape", "dtype dt", "device dev"], "T", "at::zeros(shape, opts(dt, dev))"),
  ones: op(["i64[] shape", "dtype dt", "device dev"], "T", "at::ones(shape, opts(dt, dev))"),
  full: op(
    ["i64[] shape", "S v", "dtype dt", "device dev"],
    "T",
    "at::full(shape, v, opts(dt, dev))",
  ),
  scalar_tensor: op(
    ["f64 v", "dtype dt", "device dev"],
    "T",
    "at::scalar_tensor(v, opts(dt, dev))",
  ),
  arange: op(
    ["f64 start", "f64 end", "f64 step", "dtype dt", "device dev"],
    "T",
    "at::arange(start, end, step, opts(dt, dev))",
  ),
  linspace: op(
    ["f64 start", "f64 end", "i64 steps", "dtype dt", "device dev"],
    "T",
    "at::linspace(start, end, steps, opts(dt, dev))",
  ),
  eye: op(["i64 n", "i64 m", "dtype dt", "device dev"], "T", "at::eye(n, m, opts(dt, dev))"),
  zeros_like: unary("zeros_like"),
  ones_like: unary("ones_like"),
  empty_like: unary("empty_like"),
  full_like: op(["T a", "S v"], "T", "at::full_like(a, v)"),
  randn: op(
    ["i64[] shape", "P? g", "dtype dt", "device dev"],
    "T",
    "at::randn(shape, gen_opt(static_cast<at::Generator*>(g)), opts(dt, dev))",
  ),
  rand: op(
    ["i64[] shape", "P? g", "dtype dt", "device dev"],
    "T",
    "at::rand(shape, gen_opt(static_cast<at::Generator*>(g)), opts(dt, dev))",
  ),
  randint: op(
    ["i64 low", "i64 high", "i64[] shape", "P? g", "dtype dt", "device dev"],
    "T",
    "at::randint(low, high, shape, gen_opt(static_cast<at::Generator*>(g)), opts(dt, dev))",
  ),
  randperm: op(
    ["i64 n", "P? g", "dtype dt", "device dev"],
    "T",
    "at::randperm(n, gen_opt(static_cast<at::Generator*>(g)), opts(dt, dev))",
  ),
  normal_: op(
    ["T a", "f64 mean", "f64 std", "P? g"],
    "void",
    "const_cast<at::Tensor&>(a).normal_(mean, std, gen_opt(static_cast<at::Generator*>(g)));",
  ),
  uniform_: op(
    ["T a", "f64 lo", "f64 hi", "P? g"],
    "void",
    "const_cast<at::Tensor&>(a).uniform_(lo, hi, gen_opt(static_cast<at::Generator*>(g)));",
  ),
  bernoulli: op(
    ["T a", "f64 p", "P? g"],
    "T",
    "at::bernoulli(a, p, gen_opt(static_cast<at::Generator*>(g)))",
  ),

  // ---- generators and seeds ----
  generator_new: op(
    ["i64 seed"],
    "P",
    "new at::Generator(at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(seed)))",
  ),
  generator_free: op(["P g"], "void", "delete static_cast<at::Generator*>(g);"),
  generator_get_state: op(["P g"], "T", "static_cast<at::Generator*>(g)->get_state()"),
  generator_set_state: op(["P g", "T s"], "void", "static_cast<at::Generator*>(g)->set_state(s);"),
  manual_seed: op(["i64 seed"], "void", "at::manual_seed(static_cast<uint64_t>(seed));"),
  default_generator_state: op([], "T", "at::detail::getDefaultCPUGenerator().get_state()"),
  set_default_generator_state: op(
    ["T s"],
    "void",
    "const_cast<at::Generator&>(at::detail::getDefaultCPUGenerator()).set_state(s);",
  ),

  // ---- device and threads ----
  cuda_is_available: op([], "bool", "torch::cuda::is_available()"),
  cuda_device_count: op([], "i64", "static_cast<int64_t>(torch::cuda::device_count())"),
  cuda_synchronize: op(["i64 dev"], "void", "torch::cuda::synchronize(dev);"),
  cuda_memory_stat: op(["i32 dev", "i32 which"], "i64", "cuda_memory_stat(dev, which)"),
  cuda_empty_cache: op([], "void", "cuda_empty_cache();"),
  cuda_reset_peak: op(["i32 dev"], "void", "cuda_reset_peak(dev);"),
  cudnn_set_benchmark: op(["bool on"], "void", "at::globalContext().setBenchmarkCuDNN(on);"),
  built_with_cuda: op([], "bool", "built_with_cuda()"),
  set_num_threads: op(["i64 n"], "void", "at::set_num_threads(static_cast<int>(n));"),
  get_num_threads: op([], "i64", "static_cast<int64_t>(at::get_num_threads())"),

  // ---- casts and copies ----
  to_dtype: op(["T a", "dtype dt"], "T", "a.to(dt)"),
  to_device: op(["T a", "device dev", "bool nb"], "T", "a.to(device_of(dev), nb)"),
  pin_memory: op(["T a"], "T", "a.pin_memory()"),
  contiguous: op(["T a"], "T", "a.contiguous()"),
  contiguous_channels_last: op(["T a"], "T", "a.contiguous(at::MemoryFormat::ChannelsLast)"),
  clone: op(["T a"], "T", "a.clone()"),
  detach: op(["T a"], "T", "a.detach()"),
  copy_: op(["T a", "T src", "bool nb"], "void", "const_cast<at::Tensor&>(a).copy_(src, nb);"),
  copy_from: op(
    ["T a", "buf src", "i64 nbytes"],
    "void",
    `{ if (nbytes != tensor_bytes(a)) throw std::invalid_argument("source holds " + std::to_string(nbytes) + " bytes, tensor needs " + std::to_string(tensor_bytes(a)));
       at::NoGradGuard g; const_cast<at::Tensor&>(a).copy_(at::from_blob(src, a.sizes(), at::TensorOptions().dtype(a.scalar_type()))); }`,
  ),

  // ---- views and shape ----
  reshape: op(["T a", "i64[] shape"], "T", "a.reshape(shape)"),
  view: op(["T a", "i64[] shape"], "T", "a.view(shape)"),
  permute: op(["T a", "i64[] dims"], "T", "a.permute(dims)"),
  transpose: op(["T a", "i64 d0", "i64 d1"], "T", "a.transpose(d0, d1)"),
  t: unary("t"),
  narrow: op(["T a", "i64 dim", "i64 start", "i64 len"], "T", "a.narrow(dim, start, len)"),
  /** w[o0:o0+olen, i0:i0+ilen] whose backward adds into w.grad's block (ffi/slice.hpp). */
  slice_weight: op(
    ["T w", "i64 o0", "i64 olen", "i64 i0", "i64 ilen"],
    "T",
    "slice_weight(w, o0, olen, i0, ilen)",
  ),
  slice: op(
    ["T a", "i64 dim", "i64? start", "i64? end", "i64 step"],
    "T",
    "a.slice(dim, int_opt(start), int_opt(end), step)",
  ),
  select: op(["T a", "i64 dim", "i64 index"], "T", "a.select(dim, index)"),
  squeeze: op(["T a"], "T", "a.squeeze()"),
  squeeze_dim: op(["T a", "i64 dim"], "T", "a.squeeze(dim)"),
  unsqueeze: op(["T a", "i64 dim"], "T", "a.unsqueeze(dim)"),
  expand: op(["T a", "i64[] shape"], "T", "a.expand(shape)"),
  expand_as: op(["T a", "T b"], "T", "a.expand_as(b)"),
  flatten: op(["T a", "i64 start", "i64 end"], "T", "a.flatten(start, end)"),
  repeat: op(["T a", "i64[] reps"], "T", "a.repeat(reps)"),
  flip: op(["T a", "i64[] dims"], "T", "a.flip(dims)"),
  roll: op(["T a", "i64[] shifts", "i64[] dims"], "T", "at::roll(a, shifts, dims)"),
  chunk: op(["T a", "i64 n", "i64 dim"], "T[]", "a.chunk(n, dim)"),
  split: op(["T a", "i64 size", "i64 dim"], "T[]", "a.split(size, dim)"),
  split_sizes: op(["T a", "i64[] sizes", "i64 dim"], "T[]", "a.split_with_sizes(sizes, dim)"),
  unbind: op(["T a", "i64 dim"], "T[]", "a.unbind(dim)"),
  cat: op(["T[] xs", "i64 dim"], "T", "at::cat(xs, dim)"),
  stack: op(["T[] xs", "i64 dim"], "T", "at::stack(xs, dim)"),
  pad: op(
    ["T a", "i64[] pad", "str mode", "f64 value"],
    "T",
    'at::pad(a, pad, mode, mode == std::string("constant") ? std::optional<double>(value) : std::nullopt)',
  ),
  tril: op(["T a", "i64 k"], "T", "at::tril(a, k)"),
  triu: op(["T a", "i64 k"], "T", "at::triu(a, k)"),
  diagonal: op(["T a", "i64 offset", "i64 d0", "i64 d1"], "T", "at::diagonal(a, offset, d0, d1)"),

  // ---- indexing ----
  index_select: op(["T a", "i64 dim", "T index"], "T", "at::index_select(a, dim, index)"),
  gather: op(["T a", "i64 dim", "T index"], "T", "at::gather(a, dim, index)"),
  scatter: op(["T a", "i64 dim", "T index", "T src"], "T", "at::scatter(a, dim, index, src)"),
  scatter_value: op(
    ["T a", "i64 dim", "T index", "S v"],
    "T",
    "at::scatter(a, dim, index, v)",
  ),
  scatter_add: op(
    ["T a", "i64 dim", "T index", "T src"],
    "T",
    "at::scatter_add(a, dim, index, src)",
  ),
  index_copy: op(["T a", "i64 dim", "T index", "T src"], "T", "at::index_copy(a, dim, index, src)"),
  index_copy_: op(
    ["T a", "i64 dim", "T index", "T src"],
    "void",
    "const_cast<at::Tensor&>(a).index_copy_(dim, index, src);",
  ),
  index_put_: op(
    ["T a", "T index", "T values", "bool acc"],
    "void",
    "{ c10::List<std::optional<at::Tensor>> idx; idx.push_back(index); const_cast<at::Tensor&>(a).index_put_(idx, values, acc); }",
  ),
  masked_fill: op(["T a", "T mask", "S v"], "T", "at::masked_fill(a, mask, v)"),
  masked_fill_: op(
    ["T a", "T mask", "S v"],
    "void",
    "const_cast<at::Tensor&>(a).masked_fill_(mask, v);",
  ),
  masked_select: op(["T a", "T mask"], "T", "at::masked_select(a, mask)"),
  where: op(["T cond", "T a", "T b"], "T", "at::where(cond, a, b)"),
  nonzero: unary("nonzero"),
  one_hot: op(["T a", "i64 n"], "T", "at::one_hot(a, n)"),

  // ---- elementwise arithmetic ----
  add: op(["T a", "T b", "f64 alpha"], "T", "at::add(a, b, alpha)"),
  add_scalar: op(["T a", "S b"], "T", "at::add(a, b)"),
  sub: op(["T a", "T b", "f64 alpha"], "T", "at::sub(a, b, alpha)"),
  sub_scalar: op(["T a", "S b"], "T", "at::sub(a, b)"),
  rsub_scalar: op(["T a", "S b"], "T", "at::rsub(a, b)"),
  mul: binary("mul"),
  mul_scalar: binaryScalar("mul"),
  div: binary("div"),
  div_scalar: binaryScalar("div"),
  pow: binary("pow"),
  pow_scalar: binaryScalar("pow"),
  remainder_scalar: binaryScalar("remainder"),
  maximum: binary("maximum"),
  minimum: binary("minimum"),
  lerp: op(["T a", "T b", "f64 w"], "T", "at::lerp(a, b, w)"),
  addcmul: op(["T a", "T b", "T c", "f64 v"], "T", "at::addcmul(a, b, c, v)"),
  addcdiv: op(["T a", "T b", "T c", "f64 v"], "T", "at::addcdiv(a, b, c, v)"),
  clamp: op(
    ["T a", "f64? lo", "f64? hi"],
    "T",
    "at::clamp(a, scalar_opt(lo), scalar_opt(hi))",
  ),
  exp: unary("exp"),
  log: unary("log"),
  log1p: unary("log1p"),
  sqrt: unary("sqrt"),
  rsqrt: unary("rsqrt"),
  abs: unary("abs"),
  neg: unary("neg"),
  sign: unary("sign"),
  sigmoid: unary("sigmoid"),
  tanh: unary("tanh"),
  relu: unary("relu"),
  gelu: unary("gelu"),
  sin: unary("sin"),
  cos: unary("cos"),
  floor: unary("floor"),
  ceil: unary("ceil"),
  round: unary("round"),
  square: unary("square"),
  reciprocal: unary("reciprocal"),
  erf: unary("erf"),

  // ---- in-place ----
  add_: op(["T a", "T b", "f64 alpha"], "void", "const_cast<at::Tensor&>(a).add_(b, alpha);"),
  add_scalar_: inPlaceScalar("add_"),
  sub_: inPlace("sub_"),
  mul_: inPlace("mul_"),
  mul_scalar_: inPlaceScalar("mul_"),
  div_: inPlace("div_"),
  div_scalar_: inPlaceScalar("div_"),
  pow_scalar_: inPlaceScalar("pow_"),
  clamp_: op(
    ["T a", "f64? lo", "f64? hi"],
    "void",
    "const_cast<at::Tensor&>(a).clamp_(scalar_opt(lo), scalar_opt(hi));",
  ),
  fill_: inPlaceScalar("fill_"),
  zero_: unaryInPlace("zero_"),
  relu_: unaryInPlace("relu_"),
  neg_: unaryInPlace("neg_"),
  exp_: unaryInPlace("exp_"),
  sqrt_: unaryInPlace("sqrt_"),
  lerp_: op(["T a", "T b", "f64 w"], "void", "const_cast<at::Tensor&>(a).lerp_(b, w);"),

  // ---- comparison and logic ----
  eq: binary("eq"),
  ne: binary("ne"),
  lt: binary("lt"),
  le: binary("le"),
  gt: binary("gt"),
  ge: binary("ge"),
  eq_scalar: binaryScalar("eq"),
  ne_scalar: binaryScalar("ne"),
  lt_scalar: binaryScalar("lt"),
  le_scalar: binaryScalar("le"),
  gt_scalar: binaryScalar("gt"),
  ge_scalar: binaryScalar("ge"),
  logical_and: binary("logical_and"),
  logical_or: binary("logical_or"),
  logical_not: unary("logical_not"),
  isnan: unary("isnan"),
  isfinite: unary("isfinite"),

  // ---- reductions ----
  sum: op(["T a"], "T", "at::sum(a)"),
  sum_dim: op(["T a", "i64[] dims", "bool keep"], "T", "at::sum(a, dims, keep)"),
  mean: op(["T a"], "T", "at::mean(a)"),
  mean_dim: op(["T a", "i64[] dims", "bool keep"], "T", "at::mean(a, dims, keep)"),
  prod: op(["T a"], "T", "at::prod(a)"),
  max: op(["T a"], "T", "at::max(a)"),
  min: op(["T a"], "T", "at::min(a)"),
  max_dim: op(["T a", "i64 dim", "bool keep"], "T[]", "tup(at::max(a, dim, keep))"),
  min_dim: op(["T a", "i64 dim", "bool keep"], "T[]", "tup(at::min(a, dim, keep))"),
  argmax: op(["T a", "i64? dim", "bool keep"], "T", "at::argmax(a, int_opt(dim), keep)"),
  argmin: op(["T a", "i64? dim", "bool keep"], "T", "at::argmin(a, int_opt(dim), keep)"),
  topk: op(
    ["T a", "i64 k", "i64 dim", "bool largest", "bool sorted"],
    "T[]",
    "tup(at::topk(a, k, dim, largest, sorted))",
  ),
  sort: op(["T a", "i64 dim", "bool desc"], "T[]", "tup(at::sort(a, dim, desc))"),
  argsort: op(["T a", "i64 dim", "bool desc"], "T", "at::argsort(a, dim, desc)"),
  cumsum: op(["T a", "i64 dim"], "T", "at::cumsum(a, dim)"),
  norm: op(
    ["T a", "f64 p", "i64[] dims", "bool keep"],
    "T",
    "at::linalg_vector_norm(a, p, dims_opt(dims), keep)",
  ),
  var: op(
    ["T a", "i64[] dims", "f64 correction", "bool keep"],
    "T",
    "at::var(a, dims_opt(dims), at::Scalar(correction), keep)",
  ),
  std: op(
    ["T a", "i64[] dims", "f64 correction", "bool keep"],
    "T",
    "at::std(a, dims_opt(dims), at::Scalar(correction), keep)",
  ),
  logsumexp: op(["T a", "i64[] dims", "bool keep"], "T", "at::logsumexp(a, dims, keep)"),
  any: unary("any"),
  all: unary("all"),

  // ---- linear algebra ----
  matmul: binary("matmul"),
  mm: binary("mm"),
  bmm: binary("bmm"),
  outer: binary("outer"),
  addmm: op(
    ["T a", "T m1", "T m2", "f64 beta", "f64 alpha"],
    "T",
    "at::addmm(a, m1, m2, beta, alpha)",
  ),
  einsum: op(["str eq", "T[] xs"], "T", "at::einsum(eq, xs)"),

  // ---- neural network functions ----
  conv2d: op(
    ["T x", "T w", "T? b", "i64[] stride", "i64[] padding", "i64[] dilation", "i64 groups"],
    "T",
    "at::conv2d(x, w, b, stride, padding, dilation, groups)",
  ),
  linear: op(["T x", "T w", "T? b"], "T", "at::linear(x, w, b)"),
  batch_norm: op(
    ["T x", "T? w", "T? b", "T? rm", "T? rv", "bool training", "f64 momentum", "f64 eps"],
    "T",
    "at::batch_norm(x, w, b, rm, rv, training, momentum, eps, true)",
  ),
  layer_norm: op(
    ["T x", "i64[] shape", "T? w", "T? b", "f64 eps"],
    "T",
    "at::layer_norm(x, shape, w, b, eps, true)",
  ),
  max_pool2d: op(
    ["T x", "i64[] k", "i64[] s", "i64[] p", "i64[] d", "bool ceil"],
    "T",
    "at::max_pool2d(x, k, s, p, d, ceil)",
  ),
  avg_pool2d: op(
    ["T x", "i64[] k", "i64[] s", "i64[] p", "bool ceil", "bool include_pad"],
    "T",
    "at::avg_pool2d(x, k, s, p, ceil, include_pad)",
  ),
  adaptive_avg_pool2d: op(["T x", "i64[] size"], "T", "at::adaptive_avg_pool2d(x, size)"),
  interpolate: op(
    ["T x", "i64[] size", "str mode", "bool align"],
    "T",
    `{ const std::string m(mode);
       if (m == "nearest") return wrap(at::upsample_nearest2d(x, size, std::nullopt, std::nullopt));
       if (m == "bilinear") return wrap(at::upsample_bilinear2d(x, size, align, std::nullopt, std::nullopt));
       if (m == "bicubic") return wrap(at::upsample_bicubic2d(x, size, align, std::nullopt, std::nullopt));
       throw std::invalid_argument("interpolate: unknown mode '" + m + "' (expected nearest, bilinear or bicubic)"); }`,
  ),
  grid_sample: op(
    ["T x", "T grid", "i64 mode", "i64 padding", "bool align"],
    "T",
    "at::grid_sampler(x, grid, mode, padding, align)",
  ),
  affine_grid: op(
    ["T theta", "i64[] size", "bool align"],
    "T",
    "at::affine_grid_generator(theta, size, align)",
  ),
  softmax: op(["T x", "i64 dim"], "T", "at::softmax(x, dim)"),
  log_softmax: op(["T x", "i64 dim"], "T", "at::log_softmax(x, dim)"),
  dropout: op(["T x", "f64 p", "bool train"], "T", "at::dropout(x, p, train)"),
  cross_entropy: op(
    ["T x", "T target", "T? w", "i64 reduction", "i64 ignore", "f64 smoothing"],
    "T",
    "at::cross_entropy_loss(x, target, w, reduction, ignore, smoothing)",
  ),
  nll_loss: op(
    ["T x", "T target", "T? w", "i64 reduction", "i64 ignore"],
    "T",
    "at::nll_loss(x, target, w, reduction, ignore)",
  ),
  kl_div: op(
    ["T x", "T target", "i64 reduction", "bool log_target"],
    "T",
    "at::kl_div(x, target, reduction, log_target)",
  ),
  mse_loss: op(["T x", "T target", "i64 reduction"], "T", "at::mse_loss(x, target, reduction)"),
  bce_with_logits: op(
    ["T x", "T target", "i64 reduction"],
    "T",
    "at::binary_cross_entropy_with_logits(x, target, std::nullopt, std::nullopt, reduction)",
  ),
  normalize: op(
    ["T x", "f64 p", "i64 dim", "f64 eps"],
    "T",
    "x / at::linalg_vector_norm(x, p, at::IntArrayRef{dim}, true).clamp_min(eps).expand_as(x)",
  ),
  cosine_similarity: op(
    ["T a", "T b", "i64 dim", "f64 eps"],
    "T",
    "at::cosine_similarity(a, b, dim, eps)",
  ),

  // ---- autograd ----
  requires_grad: op(["T a"], "bool", "a.requires_grad()"),
  set_requires_grad: op(
    ["T a", "bool on"],
    "void",
    "const_cast<at::Tensor&>(a).requires_grad_(on);",
  ),
  is_leaf: op(["T a"], "bool", "a.is_leaf()"),
  grad: op(["T a"], "T?", "a.grad()"),
  set_grad: op(
    ["T a", "T? g"],
    "void",
    "{ auto& slot = const_cast<at::Tensor&>(a).mutable_grad(); if (g) slot = *g; else slot.reset(); }",
  ),
  backward: op(
    ["T a", "T? g", "bool retain", "bool create"],
    "void",
    "a.backward(g.value_or(at::Tensor()), retain, create);",
  ),
  autograd_grad: op(
    ["T[] outs", "T[] ins", "T[] gouts", "bool retain", "bool create", "bool unused"],
    "T[]",
    "torch::autograd::grad(outs, ins, gouts, retain, create, unused)",
  ),
  set_grad_enabled: op(
    ["bool on"],
    "bool",
    "{ bool prev = at::GradMode::is_enabled(); at::GradMode::set_enabled(on); return prev; }",
  ),
  is_grad_enabled: op([], "bool", "at::GradMode::is_enabled()"),

  // ---- optimizers and EMA ----
  optim_new: op(["i32 kind", "T[] params"], "P", "optim_new(kind, params)"),
  optim_free: op(["P o"], "void", "delete static_cast<Optimizer*>(o);"),
  optim_sgd_step: op(
    ["P o", "f64 lr", "f64 momentum", "f64 dampening", "f64 wd", "bool nesterov"],
    "void",
    "sgd_step(optim_ref(o), lr, momentum, dampening, wd, nesterov);",
  ),
  optim_lars_step: op(
    ["P o", "f64 lr", "f64 momentum", "f64 wd", "f64 trust"],
    "void",
    "lars_step(optim_ref(o), lr, momentum, wd, trust);",
  ),
  optim_adamw_step: op(
    ["P o", "f64 lr", "f64 b1", "f64 b2", "f64 eps", "f64 wd"],
    "void",
    "adamw_step(optim_ref(o), lr, b1, b2, eps, wd);",
  ),
  optim_zero_grad: op(["P o"], "void", "zero_grad(optim_ref(o));"),
  optim_state: op(
    ["P o", "i64 slot"],
    "T[]",
    "slot == 0 ? optim_ref(o).state1 : optim_ref(o).state2",
  ),
  optim_steps: op(
    ["P o", "buf out", "i64 cap"],
    "void",
    `{ auto& s = optim_ref(o).steps; if ((int64_t)s.size() > cap) throw std::invalid_argument("step buffer too small");
       std::memcpy(out, s.data(), s.size() * sizeof(int64_t)); }`,
  ),
  optim_set_state: op(
    ["P o", "i64 index", "T? s1", "T? s2", "i64 step"],
    "void",
    `{ auto& op = optim_ref(o); if (index < 0 || index >= (int64_t)op.params.size()) throw std::out_of_range("optimizer state index " + std::to_string(index) + " out of range");
       op.state1[index] = s1 ? s1->detach().clone() : at::Tensor(); op.state2[index] = s2 ? s2->detach().clone() : at::Tensor(); op.steps[index] = step; }`,
  ),
  ema_update: op(["T[] k", "T[] q", "f64 m"], "void", "ema_update(k, q, m);"),
  clip_grad_norm: op(["T[] params", "f64 max_norm"], "f64", "clip_grad_norm(params, max_norm)"),

  // ---- mixed precision ----
  autocast_set: op(
    ["device dev", "bool on", "dtype dt"],
    "bool",
    `{ const auto type = device_of(dev).type(); const bool prev = at::autocast::is_autocast_enabled(type);
       at::autocast::set_autocast_enabled(type, on); if (on) at::autocast::set_autocast_dtype(type, dt);
       if (!on) at::autocast::clear_cache(); return prev; }`,
  ),
  amp_unscale_grads: op(
    ["T[] params", "f64 inv_scale"],
    "bool",
    "amp_unscale_grads(params, inv_scale)",
  ),
} as const;

/** The C API, in generation order. Every entry becomes the C symbol `st_<name>`. */
export const OPS = { ...CORE_OPS, ...DATA_OPS, ...DIST_OPS } as const;

/** The op table's type, used to derive typed wrappers. */
export type Ops = typeof OPS;
/** Prefix of every exported C symbol. */
export const SYMBOL_PREFIX = "st_";
