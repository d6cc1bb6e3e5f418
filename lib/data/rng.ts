/** A small seeded PRNG for index-level work (shuffles, subsets); never used per pixel. */

/** Mixes integers into one 32-bit seed (order matters). */
export function mixSeed(...parts: number[]): number {
  let h = 0x9e3779b9;
  for (const p of parts) {
    let x = Math.floor(p) >>> 0;
    const hi = Math.floor(p / 2 ** 32) >>> 0;
    x ^= Math.imul(hi, 0x85ebca6b);
    h = Math.imul(h ^ x, 0xcc9e2d51);
    h = (h << 15) | (h >>> 17);
    h = Math.imul(h, 0x1b873593) + 0xe6546b64;
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  return (Math.imul(h, 0xc2b2ae35) ^ (h >>> 16)) >>> 0;
}

/** sfc32: fast, seedable, 32-bit state words. */
export class Prng {
  #a: number;
  #b: number;
  #c: number;
  #d = 1;
  constructor(seed: number) {
    this.#a = mixSeed(seed, 1);
    this.#b = mixSeed(seed, 2);
    this.#c = mixSeed(seed, 3);
    for (let i = 0; i < 12; i++) this.nextU32();
  }
  /** A uniform 32-bit unsigned integer. */
  nextU32(): number {
    const t = (this.#a + this.#b + this.#d) | 0;
    this.#d = (this.#d + 1) | 0;
    this.#a = this.#b ^ (this.#b >>> 9);
    this.#b = (this.#c + (this.#c << 3)) | 0;
    this.#c = (this.#c << 21) | (this.#c >>> 11);
    this.#c = (this.#c + t) | 0;
    return t >>> 0;
  }
  /** U[0, 1). */
  uniform(): number {
    return this.nextU32() / 2 ** 32;
  }
  /** An integer in [0, n). */
  below(n: number): number {
    return Math.floor(this.uniform() * n);
  }
}

/** A seeded random permutation of 0..n-1 (Fisher–Yates). */
export function permutation(n: number, seed: number): Int32Array {
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) out[i] = i;
  const r = new Prng(seed);
  for (let i = n - 1; i > 0; i--) {
    const j = r.below(i + 1);
    const t = out[i];
    out[i] = out[j];
    out[j] = t;
  }
  return out;
}
