/**
 * `Tensor`: a LibTorch tensor behind an opaque handle, freed deterministically by `dispose()`,
 * `using`, or the scope it was created in.
 */
import { type Handle, ops, type RawOps } from "./ffi/library.ts";
import {
  type AnyTypedArray,
  type Device,
  deviceCode,
  deviceFromCode,
  type DType,
  DTYPE_CODES,
  DTYPE_SIZE,
  dtypeFromCode,
  dtypeOfArray,
  typedView,
} from "./dtype.ts";
import { DisposedTensorError } from "./errors.ts";
import { currentScope, type Owned, type Scope } from "./scope.ts";

let R: RawOps | null = null;
/** @internal The raw op wrappers (loads the shim on first use). */
export function raw(): RawOps {
  return R ??= ops();
}

const finalizer = new FinalizationRegistry<Handle>((h) => {
  try {
    raw().free(h);
  } catch { /* the process is shutting down */ }
});

// Unowned tensors waiting for their safety-net registration (see `Tensor._orphaned`).
let pending: Tensor[] = [];
let sweepQueued = false;
function sweep(): void {
  sweepQueued = false;
  const batch = pending;
  pending = [];
  for (const t of batch) t._net();
}
function deferNet(t: Tensor): void {
  pending.push(t);
  if (pending.length >= 1024) sweep();
  else if (!sweepQueued) {
    sweepQueued = true;
    queueMicrotask(sweep);
  }
}

const SHAPE_BUF = new BigInt64Array(64);

/** Reduction modes of loss functions. */
export type Reduction = "none" | "mean" | "sum";
const REDUCTION: Record<Reduction, number> = { none: 0, mean: 1, sum: 2 };
/** @internal */
export function reductionCode(r: Reduction): number {
  const c = REDUCTION[r];
  if (c === undefined) throw new TypeError(`unknown reduction '${r}' (expected none, mean or sum)`);
  return c;
}

/** Options for creating tensors. */
export interface TensorOptions {
  dtype?: DType;
  device?: Device;
  requiresGrad?: boolean;
}

type Dims = number | readonly number[];
const dimList = (d: Dims | undefined): number[] =>
  d === undefined ? [] : typeof d === "number" ? [d] : [...d];

/** A LibTorch tensor. */
export class Tensor implements Owned {
  #h: Handle | null;
  #shape: number[] | null = null;
  #netted = false;
  /** @internal The owning scope. */
  _scope: Scope | null = null;

  /** @internal Wraps a fresh handle; the new tensor joins the current scope. */
  constructor(handle: Handle) {
    this.#h = handle;
    const s = currentScope();
    if (s) s.adopt(this);
    else this._orphaned();
  }

  /**
   * @internal Arms the finalizer safety net once no scope owns this tensor. Registration is
   * deferred to the next sweep (a microtask, or every 1024 tensors), so temporaries disposed
   * right away never pay for it.
   */
  _orphaned(): void {
    if (this.#h === null || this.#netted) return;
    deferNet(this);
  }

  /** @internal Registers with the finalizer if still alive and unowned (called by sweeps). */
  _net(): void {
    if (this.#h === null || this.#netted || this._scope) return;
    finalizer.register(this, this.#h, this);
    this.#netted = true;
  }

  /** @internal The native handle; throws if disposed. */
  get ptr(): Handle {
    if (this.#h === null) throw new DisposedTensorError();
    return this.#h;
  }

  /** True once the handle has been freed. */
  get disposed(): boolean {
    return this.#h === null;
  }

  /** Frees the native handle now. Idempotent; later use throws `DisposedTensorError`. */
  dispose(): void {
    if (this.#h === null) return;
    const h = this.#h;
    this.#h = null;
    if (this.#netted) finalizer.unregister(this);
    this._scope?.release(this);
    raw().free(h);
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  /** Removes this tensor from its scope: it lives until disposed explicitly. */
  keep(): this {
    this._scope?.release(this);
    return this;
  }

  // ---- properties ----

  /** The sizes of each dimension. */
  get shape(): number[] {
    if (this.#shape) return this.#shape.slice();
    const n = raw().sizes(this.ptr, SHAPE_BUF, SHAPE_BUF.length);
    const s = new Array<number>(n);
    for (let i = 0; i < n; i++) s[i] = Number(SHAPE_BUF[i]);
    this.#shape = s;
    return s.slice();
  }
  /** Number of dimensions. */
  get ndim(): number {
    return raw().dim(this.ptr);
  }
  /** Number of elements. */
  get numel(): number {
    return raw().numel(this.ptr);
  }
  /** The element type. */
  get dtype(): DType {
    return dtypeFromCode(raw().dtype(this.ptr));
  }
  /** The device holding the data. */
  get device(): Device {
    return deviceFromCode(raw().device(this.ptr));
  }
  /** Element strides. */
  get strides(): number[] {
    const n = raw().strides(this.ptr, SHAPE_BUF, SHAPE_BUF.length);
    return Array.from(SHAPE_BUF.subarray(0, n), Number);
  }
  /** Whether autograd records operations on this tensor. */
  get requiresGrad(): boolean {
    return raw().requires_grad(this.ptr);
  }
  set requiresGrad(on: boolean) {
    raw().set_requires_grad(this.ptr, on);
  }
  /** Whether this tensor is a leaf of the autograd graph. */
  get isLeaf(): boolean {
    return raw().is_leaf(this.ptr);
  }
  /** Whether the memory is contiguous. */
  isContiguous(): boolean {
    return raw().is_contiguous(this.ptr);
  }
  /** Sets `requiresGrad` and returns this tensor. */
  requiresGrad_(on = true): this {
    raw().set_requires_grad(this.ptr, on);
    return this;
  }

  // ---- readback ----

  /** A copy of the data as a TypedArray (16-bit floats as raw bits, bool as Uint8Array). */
  toArray(): AnyTypedArray {
    const dtype = this.dtype;
    const bytes = this.numel * DTYPE_SIZE[dtype];
    const buf = new ArrayBuffer(bytes);
    raw().copy_to(this.ptr, new Uint8Array(buf), bytes);
    return typedView(dtype, buf);
  }
  /** A copy of the data as float32 values. */
  toFloat32Array(): Float32Array {
    if (this.dtype === "float32") return this.toArray() as Float32Array;
    using t = this.to("float32");
    return t.toArray() as Float32Array;
  }
  /** A copy of the data as little-endian bytes. */
  toBytes(): Uint8Array {
    const bytes = this.numel * DTYPE_SIZE[this.dtype];
    const out = new Uint8Array(bytes);
    raw().copy_to(this.ptr, out, bytes);
    return out;
  }
  /** The data as (nested) JavaScript numbers. */
  toList(): unknown {
    const shape = this.shape;
    const flat = Array.from(this.toArray() as ArrayLike<number | bigint>, Number);
    const build = (dim: number, offset: number): unknown => {
      if (dim === shape.length) return flat[offset];
      const stride = shape.slice(dim + 1).reduce((a, b) => a * b, 1);
      return Array.from({ length: shape[dim] }, (_, i) => build(dim + 1, offset + i * stride));
    };
    return build(0, 0);
  }
  /** The value of a one-element tensor. */
  item(): number {
    return raw().item(this.ptr);
  }
  /** LibTorch's printout. */
  toString(): string {
    return raw().to_string(this.ptr);
  }

  // ---- casts and copies ----

  /** Converts to a dtype or device (a new tensor; LibTorch may alias when nothing changes). */
  to(target: DType | Device, nonBlocking = false): Tensor {
    if (target in DTYPE_CODES) return wrap(raw().to_dtype(this.ptr, DTYPE_CODES[target as DType]));
    return wrap(raw().to_device(this.ptr, deviceCode(target as Device), nonBlocking));
  }
  /** Copies to page-locked memory for asynchronous host-to-device transfer. */
  pinMemory(): Tensor {
    return wrap(raw().pin_memory(this.ptr));
  }
  contiguous(memoryFormat: "contiguous" | "channels_last" = "contiguous"): Tensor {
    return wrap(
      memoryFormat === "channels_last"
        ? raw().contiguous_channels_last(this.ptr)
        : raw().contiguous(this.ptr),
    );
  }
  clone(): Tensor {
    return wrap(raw().clone(this.ptr));
  }
  /** A view that autograd does not track. */
  detach(): Tensor {
    return wrap(raw().detach(this.ptr));
  }
  /** Copies `src` into this tensor in place. */
  copy_(src: Tensor, nonBlocking = false): this {
    raw().copy_(this.ptr, src.ptr, nonBlocking);
    return this;
  }
  /** Overwrites the contents from a TypedArray of the same dtype and size. */
  set(data: AnyTypedArray): this {
    raw().copy_from(this.ptr, data, data.byteLength);
    return this;
  }

  // ---- views and shape ----

  reshape(...shape: number[]): Tensor {
    return wrap(raw().reshape(this.ptr, shape));
  }
  view(...shape: number[]): Tensor {
    return wrap(raw().view(this.ptr, shape));
  }
  permute(...dims: number[]): Tensor {
    return wrap(raw().permute(this.ptr, dims));
  }
  transpose(d0: number, d1: number): Tensor {
    return wrap(raw().transpose(this.ptr, d0, d1));
  }
  /** Transpose of a 2-D tensor. */
  t(): Tensor {
    return wrap(raw().t(this.ptr));
  }
  narrow(dim: number, start: number, length: number): Tensor {
    return wrap(raw().narrow(this.ptr, dim, start, length));
  }
  /** `x[start:end:step]` along `dim` (null for an open end). */
  slice(dim: number, start: number | null, end: number | null, step = 1): Tensor {
    return wrap(raw().slice(this.ptr, dim, start as number, end as number, step));
  }
  select(dim: number, index: number): Tensor {
    return wrap(raw().select(this.ptr, dim, index));
  }
  squeeze(dim?: number): Tensor {
    return wrap(dim === undefined ? raw().squeeze(this.ptr) : raw().squeeze_dim(this.ptr, dim));
  }
  unsqueeze(dim: number): Tensor {
    return wrap(raw().unsqueeze(this.ptr, dim));
  }
  expand(...shape: number[]): Tensor {
    return wrap(raw().expand(this.ptr, shape));
  }
  expandAs(other: Tensor): Tensor {
    return wrap(raw().expand_as(this.ptr, other.ptr));
  }
  flatten(start = 0, end = -1): Tensor {
    return wrap(raw().flatten(this.ptr, start, end));
  }
  repeat(...reps: number[]): Tensor {
    return wrap(raw().repeat(this.ptr, reps));
  }
  flip(...dims: number[]): Tensor {
    return wrap(raw().flip(this.ptr, dims));
  }
  roll(shifts: Dims, dims: Dims): Tensor {
    return wrap(raw().roll(this.ptr, dimList(shifts), dimList(dims)));
  }
  chunk(n: number, dim = 0): Tensor[] {
    return wrapList(raw().chunk(this.ptr, n, dim));
  }
  /** Splits into pieces of `size` (a number) or of the given sizes (an array). */
  split(size: number | readonly number[], dim = 0): Tensor[] {
    return wrapList(
      typeof size === "number"
        ? raw().split(this.ptr, size, dim)
        : raw().split_sizes(this.ptr, size, dim),
    );
  }
  unbind(dim = 0): Tensor[] {
    return wrapList(raw().unbind(this.ptr, dim));
  }
  tril(k = 0): Tensor {
    return wrap(raw().tril(this.ptr, k));
  }
  triu(k = 0): Tensor {
    return wrap(raw().triu(this.ptr, k));
  }
  diagonal(offset = 0, d0 = 0, d1 = 1): Tensor {
    return wrap(raw().diagonal(this.ptr, offset, d0, d1));
  }

  // ---- indexing ----

  indexSelect(dim: number, index: Tensor): Tensor {
    return wrap(raw().index_select(this.ptr, dim, index.ptr));
  }
  gather(dim: number, index: Tensor): Tensor {
    return wrap(raw().gather(this.ptr, dim, index.ptr));
  }
  scatter(dim: number, index: Tensor, src: Tensor | number): Tensor {
    return wrap(
      typeof src === "number"
        ? raw().scatter_value(this.ptr, dim, index.ptr, src)
        : raw().scatter(this.ptr, dim, index.ptr, src.ptr),
    );
  }
  scatterAdd(dim: number, index: Tensor, src: Tensor): Tensor {
    return wrap(raw().scatter_add(this.ptr, dim, index.ptr, src.ptr));
  }
  indexCopy(dim: number, index: Tensor, src: Tensor): Tensor {
    return wrap(raw().index_copy(this.ptr, dim, index.ptr, src.ptr));
  }
  indexCopy_(dim: number, index: Tensor, src: Tensor): this {
    raw().index_copy_(this.ptr, dim, index.ptr, src.ptr);
    return this;
  }
  /** `x[index] = values` (or `+=` with `accumulate`) along the first dimension. */
  indexPut_(index: Tensor, values: Tensor, accumulate = false): this {
    raw().index_put_(this.ptr, index.ptr, values.ptr, accumulate);
    return this;
  }
  maskedFill(mask: Tensor, value: number): Tensor {
    return wrap(raw().masked_fill(this.ptr, mask.ptr, value));
  }
  maskedFill_(mask: Tensor, value: number): this {
    raw().masked_fill_(this.ptr, mask.ptr, value);
    return this;
  }
  maskedSelect(mask: Tensor): Tensor {
    return wrap(raw().masked_select(this.ptr, mask.ptr));
  }
  nonzero(): Tensor {
    return wrap(raw().nonzero(this.ptr));
  }
  oneHot(numClasses: number): Tensor {
    return wrap(raw().one_hot(this.ptr, numClasses));
  }

  // ---- arithmetic ----

  add(other: Tensor | number, alpha = 1): Tensor {
    return wrap(
      typeof other === "number"
        ? raw().add_scalar(this.ptr, other * alpha)
        : raw().add(this.ptr, other.ptr, alpha),
    );
  }
  sub(other: Tensor | number, alpha = 1): Tensor {
    return wrap(
      typeof other === "number"
        ? raw().sub_scalar(this.ptr, other * alpha)
        : raw().sub(this.ptr, other.ptr, alpha),
    );
  }
  /** `value - this`. */
  rsub(value: number): Tensor {
    return wrap(raw().rsub_scalar(this.ptr, value));
  }
  mul(other: Tensor | number): Tensor {
    return wrap(
      typeof other === "number"
        ? raw().mul_scalar(this.ptr, other)
        : raw().mul(this.ptr, other.ptr),
    );
  }
  div(other: Tensor | number): Tensor {
    return wrap(
      typeof other === "number"
        ? raw().div_scalar(this.ptr, other)
        : raw().div(this.ptr, other.ptr),
    );
  }
  pow(exponent: Tensor | number): Tensor {
    return wrap(
      typeof exponent === "number"
        ? raw().pow_scalar(this.ptr, exponent)
        : raw().pow(this.ptr, exponent.ptr),
    );
  }
  remainder(divisor: number): Tensor {
    return wrap(raw().remainder_scalar(this.ptr, divisor));
  }
  maximum(other: Tensor): Tensor {
    return wrap(raw().maximum(this.ptr, other.ptr));
  }
  minimum(other: Tensor): Tensor {
    return wrap(raw().minimum(this.ptr, other.ptr));
  }
  lerp(end: Tensor, weight: number): Tensor {
    return wrap(raw().lerp(this.ptr, end.ptr, weight));
  }
  addcmul(a: Tensor, b: Tensor, value = 1): Tensor {
    return wrap(raw().addcmul(this.ptr, a.ptr, b.ptr, value));
  }
  addcdiv(a: Tensor, b: Tensor, value = 1): Tensor {
    return wrap(raw().addcdiv(this.ptr, a.ptr, b.ptr, value));
  }
  /** Clamps to `[min, max]`; either bound may be null. */
  clamp(min: number | null, max: number | null = null): Tensor {
    return wrap(raw().clamp(this.ptr, min as number, max as number));
  }
  exp(): Tensor {
    return wrap(raw().exp(this.ptr));
  }
  log(): Tensor {
    return wrap(raw().log(this.ptr));
  }
  log1p(): Tensor {
    return wrap(raw().log1p(this.ptr));
  }
  sqrt(): Tensor {
    return wrap(raw().sqrt(this.ptr));
  }
  rsqrt(): Tensor {
    return wrap(raw().rsqrt(this.ptr));
  }
  abs(): Tensor {
    return wrap(raw().abs(this.ptr));
  }
  neg(): Tensor {
    return wrap(raw().neg(this.ptr));
  }
  sign(): Tensor {
    return wrap(raw().sign(this.ptr));
  }
  sigmoid(): Tensor {
    return wrap(raw().sigmoid(this.ptr));
  }
  tanh(): Tensor {
    return wrap(raw().tanh(this.ptr));
  }
  relu(): Tensor {
    return wrap(raw().relu(this.ptr));
  }
  gelu(): Tensor {
    return wrap(raw().gelu(this.ptr));
  }
  sin(): Tensor {
    return wrap(raw().sin(this.ptr));
  }
  cos(): Tensor {
    return wrap(raw().cos(this.ptr));
  }
  floor(): Tensor {
    return wrap(raw().floor(this.ptr));
  }
  ceil(): Tensor {
    return wrap(raw().ceil(this.ptr));
  }
  round(): Tensor {
    return wrap(raw().round(this.ptr));
  }
  square(): Tensor {
    return wrap(raw().square(this.ptr));
  }
  reciprocal(): Tensor {
    return wrap(raw().reciprocal(this.ptr));
  }
  erf(): Tensor {
    return wrap(raw().erf(this.ptr));
  }

  // ---- in place ----

  add_(other: Tensor | number, alpha = 1): this {
    if (typeof other === "number") raw().add_scalar_(this.ptr, other * alpha);
    else raw().add_(this.ptr, other.ptr, alpha);
    return this;
  }
  sub_(other: Tensor | number): this {
    if (typeof other === "number") raw().add_scalar_(this.ptr, -other);
    else raw().sub_(this.ptr, other.ptr);
    return this;
  }
  mul_(other: Tensor | number): this {
    if (typeof other === "number") raw().mul_scalar_(this.ptr, other);
    else raw().mul_(this.ptr, other.ptr);
    return this;
  }
  div_(other: Tensor | number): this {
    if (typeof other === "number") raw().div_scalar_(this.ptr, other);
    else raw().div_(this.ptr, other.ptr);
    return this;
  }
  pow_(exponent: number): this {
    raw().pow_scalar_(this.ptr, exponent);
    return this;
  }
  clamp_(min: number | null, max: number | null = null): this {
    raw().clamp_(this.ptr, min as number, max as number);
    return this;
  }
  fill_(value: number): this {
    raw().fill_(this.ptr, value);
    return this;
  }
  zero_(): this {
    raw().zero_(this.ptr);
    return this;
  }
  relu_(): this {
    raw().relu_(this.ptr);
    return this;
  }
  neg_(): this {
    raw().neg_(this.ptr);
    return this;
  }
  exp_(): this {
    raw().exp_(this.ptr);
    return this;
  }
  sqrt_(): this {
    raw().sqrt_(this.ptr);
    return this;
  }
  lerp_(end: Tensor, weight: number): this {
    raw().lerp_(this.ptr, end.ptr, weight);
    return this;
  }
  /** Fills with N(mean, std) samples. */
  normal_(mean = 0, std = 1, generator: { ptr: Handle } | null = null): this {
    raw().normal_(this.ptr, mean, std, generator?.ptr ?? null);
    return this;
  }
  /** Fills with U(low, high) samples. */
  uniform_(low = 0, high = 1, generator: { ptr: Handle } | null = null): this {
    raw().uniform_(this.ptr, low, high, generator?.ptr ?? null);
    return this;
  }
  /** Bernoulli(p) samples shaped like this tensor. */
  bernoulli(p: number, generator: { ptr: Handle } | null = null): Tensor {
    return wrap(raw().bernoulli(this.ptr, p, generator?.ptr ?? null));
  }

  // ---- comparison ----

  eq(o: Tensor | number): Tensor {
    return wrap(typeof o === "number" ? raw().eq_scalar(this.ptr, o) : raw().eq(this.ptr, o.ptr));
  }
  ne(o: Tensor | number): Tensor {
    return wrap(typeof o === "number" ? raw().ne_scalar(this.ptr, o) : raw().ne(this.ptr, o.ptr));
  }
  lt(o: Tensor | number): Tensor {
    return wrap(typeof o === "number" ? raw().lt_scalar(this.ptr, o) : raw().lt(this.ptr, o.ptr));
  }
  le(o: Tensor | number): Tensor {
    return wrap(typeof o === "number" ? raw().le_scalar(this.ptr, o) : raw().le(this.ptr, o.ptr));
  }
  gt(o: Tensor | number): Tensor {
    return wrap(typeof o === "number" ? raw().gt_scalar(this.ptr, o) : raw().gt(this.ptr, o.ptr));
  }
  ge(o: Tensor | number): Tensor {
    return wrap(typeof o === "number" ? raw().ge_scalar(this.ptr, o) : raw().ge(this.ptr, o.ptr));
  }
  logicalAnd(o: Tensor): Tensor {
    return wrap(raw().logical_and(this.ptr, o.ptr));
  }
  logicalOr(o: Tensor): Tensor {
    return wrap(raw().logical_or(this.ptr, o.ptr));
  }
  logicalNot(): Tensor {
    return wrap(raw().logical_not(this.ptr));
  }
  isnan(): Tensor {
    return wrap(raw().isnan(this.ptr));
  }
  isfinite(): Tensor {
    return wrap(raw().isfinite(this.ptr));
  }
  /** Same shape and elements. */
  equal(o: Tensor): boolean {
    return raw().equal(this.ptr, o.ptr);
  }
  allclose(o: Tensor, rtol = 1e-5, atol = 1e-8, equalNan = false): boolean {
    return raw().allclose(this.ptr, o.ptr, rtol, atol, equalNan);
  }

  // ---- reductions ----

  sum(dims?: Dims, keepdim = false): Tensor {
    return wrap(
      dims === undefined ? raw().sum(this.ptr) : raw().sum_dim(this.ptr, dimList(dims), keepdim),
    );
  }
  mean(dims?: Dims, keepdim = false): Tensor {
    return wrap(
      dims === undefined ? raw().mean(this.ptr) : raw().mean_dim(this.ptr, dimList(dims), keepdim),
    );
  }
  prod(): Tensor {
    return wrap(raw().prod(this.ptr));
  }
  /** The maximum over all elements. */
  max(): Tensor {
    return wrap(raw().max(this.ptr));
  }
  /** The minimum over all elements. */
  min(): Tensor {
    return wrap(raw().min(this.ptr));
  }
  /** `[values, indices]` of the maximum along `dim`. */
  maxDim(dim: number, keepdim = false): [Tensor, Tensor] {
    return wrapList(raw().max_dim(this.ptr, dim, keepdim)) as [Tensor, Tensor];
  }
  /** `[values, indices]` of the minimum along `dim`. */
  minDim(dim: number, keepdim = false): [Tensor, Tensor] {
    return wrapList(raw().min_dim(this.ptr, dim, keepdim)) as [Tensor, Tensor];
  }
  argmax(dim?: number, keepdim = false): Tensor {
    return wrap(raw().argmax(this.ptr, dim as number, keepdim));
  }
  argmin(dim?: number, keepdim = false): Tensor {
    return wrap(raw().argmin(this.ptr, dim as number, keepdim));
  }
  /** `[values, indices]` of the k largest (or smallest) along `dim`. */
  topk(k: number, dim = -1, largest = true, sorted = true): [Tensor, Tensor] {
    return wrapList(raw().topk(this.ptr, k, dim, largest, sorted)) as [Tensor, Tensor];
  }
  /** `[values, indices]` sorted along `dim`. */
  sort(dim = -1, descending = false): [Tensor, Tensor] {
    return wrapList(raw().sort(this.ptr, dim, descending)) as [Tensor, Tensor];
  }
  argsort(dim = -1, descending = false): Tensor {
    return wrap(raw().argsort(this.ptr, dim, descending));
  }
  cumsum(dim: number): Tensor {
    return wrap(raw().cumsum(this.ptr, dim));
  }
  /** The p-norm over `dims` (all elements by default). */
  norm(p = 2, dims?: Dims, keepdim = false): Tensor {
    return wrap(raw().norm(this.ptr, p, dimList(dims), keepdim));
  }
  /** Variance with Bessel's correction by default. */
  var(dims?: Dims, correction = 1, keepdim = false): Tensor {
    return wrap(raw().var(this.ptr, dimList(dims), correction, keepdim));
  }
  std(dims?: Dims, correction = 1, keepdim = false): Tensor {
    return wrap(raw().std(this.ptr, dimList(dims), correction, keepdim));
  }
  logsumexp(dims: Dims, keepdim = false): Tensor {
    return wrap(raw().logsumexp(this.ptr, dimList(dims), keepdim));
  }
  any(): Tensor {
    return wrap(raw().any(this.ptr));
  }
  all(): Tensor {
    return wrap(raw().all(this.ptr));
  }

  // ---- linear algebra ----

  matmul(o: Tensor): Tensor {
    return wrap(raw().matmul(this.ptr, o.ptr));
  }
  mm(o: Tensor): Tensor {
    return wrap(raw().mm(this.ptr, o.ptr));
  }
  bmm(o: Tensor): Tensor {
    return wrap(raw().bmm(this.ptr, o.ptr));
  }
  outer(o: Tensor): Tensor {
    return wrap(raw().outer(this.ptr, o.ptr));
  }

  // ---- activations over a dimension ----

  softmax(dim: number): Tensor {
    return wrap(raw().softmax(this.ptr, dim));
  }
  logSoftmax(dim: number): Tensor {
    return wrap(raw().log_softmax(this.ptr, dim));
  }

  // ---- autograd ----

  /** The accumulated gradient, or null. */
  get grad(): Tensor | null {
    const h = raw().grad(this.ptr);
    return h ? new Tensor(h) : null;
  }
  /** Replaces (or with null clears) the accumulated gradient. */
  set grad(g: Tensor | null) {
    raw().set_grad(this.ptr, g ? g.ptr : null);
  }
  /** Back-propagates from this tensor (a scalar unless `gradient` is given). */
  backward(gradient: Tensor | null = null, retainGraph = false, createGraph = false): void {
    raw().backward(this.ptr, gradient?.ptr ?? null, retainGraph, createGraph);
  }
}

/** @internal Wraps a handle returned by the shim. */
export function wrap(h: Handle): Tensor {
  return new Tensor(h);
}

/** @internal Wraps a list of handles (null entries stay null only where typed so). */
export function wrapList(hs: (Handle | null)[]): Tensor[] {
  return hs.map((h) => {
    if (h === null) throw new TypeError("unexpected undefined tensor in a list result");
    return new Tensor(h);
  });
}

/** @internal Handles of a tensor list. */
export function handles(xs: readonly Tensor[]): Handle[] {
  return xs.map((x) => x.ptr);
}

/** The dtype/device code pair of creation options. */
function codes(o: TensorOptions | undefined, fallback: DType = "float32"): [number, number] {
  return [DTYPE_CODES[o?.dtype ?? fallback], deviceCode(o?.device ?? "cpu")];
}

function finish(t: Tensor, o: TensorOptions | undefined): Tensor {
  if (o?.requiresGrad) t.requiresGrad = true;
  return t;
}

/**
 * A tensor holding a copy of `data`. The dtype defaults to the array's (Float32Array → float32,
 * plain arrays → float32); `shape` defaults to 1-D.
 */
export function tensor(
  data: AnyTypedArray | readonly number[],
  shape?: readonly number[],
  options: TensorOptions = {},
): Tensor {
  const dtype = options.dtype ??
    (Array.isArray(data) ? "float32" : dtypeOfArray(data as AnyTypedArray));
  let arr: AnyTypedArray;
  if (Array.isArray(data)) {
    const xs = data as number[];
    if (dtype === "float16" || dtype === "bfloat16") {
      throw new TypeError(`tensor(): give ${dtype} data as raw bits in a Uint16Array`);
    }
    if (dtype === "int64") arr = BigInt64Array.from(xs, (x) => BigInt(x));
    else {
      arr = typedView(dtype, new ArrayBuffer(xs.length * DTYPE_SIZE[dtype]));
      (arr as Float64Array).set(xs);
    }
  } else {
    arr = data as AnyTypedArray;
    if (arr.BYTES_PER_ELEMENT !== DTYPE_SIZE[dtype]) {
      throw new TypeError(
        `tensor(): a ${arr.constructor.name} cannot hold ${dtype} data; convert with .to("${dtype}")`,
      );
    }
  }
  const n = arr.byteLength / DTYPE_SIZE[dtype];
  const dims = shape ? [...shape] : [n];
  const expected = dims.reduce((a, b) => a * b, 1);
  if (expected !== n) {
    throw new RangeError(`tensor(): shape [${dims}] needs ${expected} elements, data has ${n}`);
  }
  let t = wrap(raw().from_blob(arr, dims, DTYPE_CODES[dtype]));
  if (options.device && options.device !== "cpu") {
    const moved = t.to(options.device);
    t.dispose();
    t = moved;
  }
  return finish(t, options);
}

/** A tensor from little-endian bytes. */
export function fromBytes(bytes: Uint8Array, dtype: DType, shape: readonly number[]): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  if (bytes.byteLength !== n * DTYPE_SIZE[dtype]) {
    throw new RangeError(
      `fromBytes(): ${dtype}[${shape}] needs ${
        n * DTYPE_SIZE[dtype]
      } bytes, got ${bytes.byteLength}`,
    );
  }
  return wrap(raw().from_blob(bytes, [...shape], DTYPE_CODES[dtype]));
}

/** A 0-dimensional tensor. */
export function scalar(value: number, options: TensorOptions = {}): Tensor {
  return finish(wrap(raw().scalar_tensor(value, ...codes(options))), options);
}

export function empty(shape: readonly number[], options: TensorOptions = {}): Tensor {
  return finish(wrap(raw().empty(shape, ...codes(options))), options);
}
export function zeros(shape: readonly number[], options: TensorOptions = {}): Tensor {
  return finish(wrap(raw().zeros(shape, ...codes(options))), options);
}
export function ones(shape: readonly number[], options: TensorOptions = {}): Tensor {
  return finish(wrap(raw().ones(shape, ...codes(options))), options);
}
export function full(shape: readonly number[], value: number, options: TensorOptions = {}): Tensor {
  return finish(wrap(raw().full(shape, value, ...codes(options))), options);
}
/** `[start, end)` in steps; `arange(n)` counts from 0 (int64 unless a dtype is given). */
export function arange(
  start: number,
  end?: number,
  step = 1,
  options: TensorOptions = {},
): Tensor {
  const [s, e] = end === undefined ? [0, start] : [start, end];
  const integral = [s, e, step].every(Number.isInteger);
  return finish(
    wrap(raw().arange(s, e, step, ...codes(options, integral ? "int64" : "float32"))),
    options,
  );
}
export function linspace(
  start: number,
  end: number,
  steps: number,
  options: TensorOptions = {},
): Tensor {
  return finish(wrap(raw().linspace(start, end, steps, ...codes(options))), options);
}
export function eye(n: number, m = n, options: TensorOptions = {}): Tensor {
  return finish(wrap(raw().eye(n, m, ...codes(options))), options);
}
export function zerosLike(t: Tensor): Tensor {
  return wrap(raw().zeros_like(t.ptr));
}
export function onesLike(t: Tensor): Tensor {
  return wrap(raw().ones_like(t.ptr));
}
export function emptyLike(t: Tensor): Tensor {
  return wrap(raw().empty_like(t.ptr));
}
export function fullLike(t: Tensor, value: number): Tensor {
  return wrap(raw().full_like(t.ptr, value));
}

/** Concatenates along `dim`. */
export function cat(xs: readonly Tensor[], dim = 0): Tensor {
  return wrap(raw().cat(handles(xs), dim));
}
/** Stacks along a new `dim`. */
export function stack(xs: readonly Tensor[], dim = 0): Tensor {
  return wrap(raw().stack(handles(xs), dim));
}
/** Elementwise `cond ? a : b`. */
export function where(cond: Tensor, a: Tensor, b: Tensor): Tensor {
  return wrap(raw().where(cond.ptr, a.ptr, b.ptr));
}
/** Einstein summation. */
export function einsum(equation: string, ...xs: Tensor[]): Tensor {
  return wrap(raw().einsum(equation, handles(xs)));
}
/** `beta·a + alpha·(m1 @ m2)`. */
export function addmm(a: Tensor, m1: Tensor, m2: Tensor, beta = 1, alpha = 1): Tensor {
  return wrap(raw().addmm(a.ptr, m1.ptr, m2.ptr, beta, alpha));
}

/**
 * Live native tensor handles and the bytes they reference (views count their own extent), as
 * created minus freed on the calling thread: each Deno worker sees its own tensors. `process`
 * gives the whole process's counts.
 */
export function liveHandles(): {
  handles: number;
  bytes: number;
  process: { handles: number; bytes: number };
} {
  return {
    handles: raw().thread_live_handles(),
    bytes: raw().thread_live_bytes(),
    process: { handles: raw().live_handles(), bytes: raw().live_bytes() },
  };
}

/** The LibTorch version the shim was built against. */
export function torchVersion(): string {
  return raw().torch_version();
}
