/** Datasets whose images live in memory as one uint8 tensor [N, C, H, W]. */
import type { Tensor } from "../tensor.ts";
import { BaseDataset } from "./dataset.ts";
import { NativeSource } from "./native.ts";
import type { Stats } from "./recipes.ts";

/** A dataset over an in-memory uint8 image tensor; it owns the tensor. */
export class TensorDataset extends BaseDataset {
  readonly name: string;
  readonly classes: readonly string[];
  readonly channels: 1 | 3;
  override readonly stats?: Stats;
  protected readonly labels: Int32Array;
  readonly source: NativeSource;
  readonly #images: Tensor;
  /** The side of the images when they are square (else the height). */
  readonly imageSize: number;

  /** Takes ownership of `images` (uint8 [N, C, H, W]); `labels` has one entry per image. */
  constructor(
    name: string,
    images: Tensor,
    labels: Int32Array,
    classes: readonly string[],
    stats?: Stats,
  ) {
    super();
    const [n, c] = images.shape;
    if (images.dtype !== "uint8" || images.ndim !== 4) {
      throw new TypeError(`${name}: images must be uint8 [N, C, H, W]`);
    }
    if (n !== labels.length) {
      throw new RangeError(`${name}: ${n} images but ${labels.length} labels`);
    }
    this.name = name;
    this.#images = images.keep();
    this.labels = labels;
    this.classes = classes;
    this.channels = c === 1 ? 1 : 3;
    this.stats = stats;
    this.imageSize = images.shape[2];
    this.source = NativeSource.fromTensor(this.#images);
  }
  /** All images, uint8 [N, C, H, W] (owned by the dataset: do not dispose). */
  get images(): Tensor {
    return this.#images;
  }
  /** Image `i` as a new uint8 [C, H, W] tensor. */
  image(i: number): Tensor {
    this.check(i);
    using v = this.#images.select(0, i);
    return v.clone();
  }
  override dispose(): void {
    super.dispose();
    this.#images.dispose();
  }
}
