// Data pipeline in the shim (see ffi/ops_data.ts): image decoding, batched augmentation with
// per-sample seeded parameters, LMDB and RecordIO access, and a background batch loader.
//
// Design notes
// - Codecs (libjpeg-turbo, libpng) and LMDB are loaded with dlopen at first use, so the shim links
//   nothing new and still loads where a library is missing: only the ops that need it fail, with a
//   message naming the Debian package. The libjpeg and libpng headers are optional at build time
//   (__has_include); without them the codec reports "not compiled in".
// - Augmentation kernels are plain C++ loops over raw memory (no ATen ops), so they can run on the
//   loader's std::threads without touching LibTorch's thread-local state, and on at::parallel_for
//   in the synchronous ops.
// - Every random parameter of a sample comes from its own counter-based stream, derived from
//   (seed, sample key, view): results do not depend on thread count or batch composition.
#pragma once

#include "runtime.hpp"

#include <dlfcn.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <condition_variable>
#include <csetjmp>
#include <cstdio>
#include <deque>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#if __has_include(<jpeglib.h>)
extern "C" {
#include <jpeglib.h>
#include <jerror.h>
}
#define SLIMCLR_HAVE_JPEG_H 1
#endif
#if __has_include(<png.h>)
#include <png.h>
#define SLIMCLR_HAVE_PNG_H 1
#endif

namespace slimclr::data {

// =============================================================================================
// Dynamic libraries
// =============================================================================================

/** Opens the first library of `names` that loads; returns null and fills `why` otherwise. */
inline void* open_library(std::initializer_list<const char*> names, std::string& why) {
  for (const char* n : names) {
    if (void* h = dlopen(n, RTLD_NOW | RTLD_LOCAL)) return h;
    const char* e = dlerror();
    why += std::string(why.empty() ? "" : "; ") + (e ? e : n);
  }
  return nullptr;
}

template <class F>
inline bool bind(void* lib, const char* name, F& out, std::string& why) {
  out = reinterpret_cast<F>(dlsym(lib, name));
  if (!out) why = std::string("symbol ") + name + " missing";
  return out != nullptr;
}

// =============================================================================================
// Random numbers: one xoshiro256** stream per (seed, key, view)
// =============================================================================================

inline uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

struct Rng {
  uint64_t s[4];
  Rng(uint64_t seed, uint64_t key, uint64_t view) {
    uint64_t x = seed;
    uint64_t a = splitmix64(x);
    x = key ^ (a * 0xD1B54A32D192ED03ull);
    uint64_t b = splitmix64(x);
    x = b ^ ((view + 1) * 0x8CB92BA72F3D8DD7ull);
    for (auto& v : s) v = splitmix64(x);
  }
  static uint64_t rotl(uint64_t v, int k) { return (v << k) | (v >> (64 - k)); }
  uint64_t next() {
    const uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0], s[3] ^= s[1], s[1] ^= s[2], s[0] ^= s[3], s[2] ^= t, s[3] = rotl(s[3], 45);
    return r;
  }
  /** U[0, 1). */
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  /** An integer in [lo, hi). */
  int64_t randint(int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(uniform() * static_cast<double>(hi - lo));
  }
  bool coin(double p) { return uniform() < p; }
};

// =============================================================================================
// Augmentation configuration (one f64[] per view) and sampled parameters (one row per sample)
// =============================================================================================

/** Index of each field of the f64[] configuration (mirrored in lib/data/augment.ts). */
enum Cfg : int {
  kVersion, kSize, kMode, kScaleLo, kScaleHi, kRatioLo, kRatioHi, kResize, kFlipP, kJitterP,
  kBrightness, kContrast, kSaturation, kHue, kGrayP, kBlurP, kSigmaLo, kSigmaHi, kBlurKernel,
  kSolarizeP, kSolarizeThr, kNormalize, kMean0, kMean1, kMean2, kStd0, kStd1, kStd2, kChannels,
  kFastDecode, kCfgLen
};
constexpr double kCfgVersion = 1;
/** Geometry modes: RandomResizedCrop; Resize(shorter side) + CenterCrop; resize the whole image. */
enum Mode : int { kModeRRC = 0, kModeResizeCrop = 1, kModeWhole = 2 };

/** Index of each field of a sampled parameter row. */
enum Par : int {
  pY0, pX0, pBH, pBW, pVH, pVW, pOY, pOX, pFlip, pJitter, pBright, pContrast, pSat, pHue, pOrder,
  pGray, pSigma, pSolarize, kParLen
};

struct AugConfig {
  std::array<double, kCfgLen> v{};
  double operator[](int i) const { return v[static_cast<size_t>(i)]; }
  int64_t size() const { return static_cast<int64_t>(v[kSize]); }
};

inline AugConfig parse_config(const double* p, int64_t n) {
  if (n != kCfgLen) {
    throw std::invalid_argument("augmentation config has " + std::to_string(n) + " numbers, expected " +
                                std::to_string(kCfgLen) + " (lib/data/augment.ts and ffi/data.hpp disagree)");
  }
  AugConfig c;
  std::copy(p, p + n, c.v.begin());
  if (c[kVersion] != kCfgVersion) throw std::invalid_argument("augmentation config version mismatch");
  if (c.size() < 1) throw std::invalid_argument("augmentation output size must be positive");
  const int mode = static_cast<int>(c[kMode]);
  if (mode < 0 || mode > 2) throw std::invalid_argument("unknown augmentation geometry mode");
  if (c[kScaleLo] <= 0 || c[kScaleLo] > c[kScaleHi] || c[kRatioLo] <= 0 || c[kRatioLo] > c[kRatioHi]) {
    throw std::invalid_argument("RandomResizedCrop needs 0 < scale[0] <= scale[1] and 0 < ratio[0] <= ratio[1]");
  }
  if (c[kHue] < 0 || c[kHue] > 0.5) throw std::invalid_argument("hue jitter must be in [0, 0.5] (a fraction of the colour wheel)");
  const int64_t k = static_cast<int64_t>(c[kBlurKernel]);
  if (k < 0 || (k > 0 && k % 2 == 0)) throw std::invalid_argument("blur kernel size must be odd (or 0 for automatic)");
  return c;
}

inline std::vector<AugConfig> parse_configs(at::ArrayRef<double> all) {
  if (all.empty() || all.size() % kCfgLen != 0) {
    throw std::invalid_argument("view configs must be a multiple of " + std::to_string(kCfgLen) + " numbers");
  }
  std::vector<AugConfig> out;
  for (size_t i = 0; i < all.size(); i += kCfgLen) out.push_back(parse_config(all.data() + i, kCfgLen));
  return out;
}

using Params = std::array<double, kParLen>;

/** torchvision's RandomResizedCrop.get_params: 10 tries, then the centre-crop fallback. */
inline void sample_rrc(Rng& r, int64_t H, int64_t W, const AugConfig& c, Params& p) {
  const double area = static_cast<double>(H) * static_cast<double>(W);
  const double lr0 = std::log(c[kRatioLo]), lr1 = std::log(c[kRatioHi]);
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target = area * r.uniform(c[kScaleLo], c[kScaleHi]);
    const double ar = std::exp(r.uniform(lr0, lr1));
    const int64_t w = static_cast<int64_t>(std::nearbyint(std::sqrt(target * ar)));
    const int64_t h = static_cast<int64_t>(std::nearbyint(std::sqrt(target / ar)));
    if (w > 0 && w <= W && h > 0 && h <= H) {
      p[pY0] = static_cast<double>(r.randint(0, H - h + 1));
      p[pX0] = static_cast<double>(r.randint(0, W - w + 1));
      p[pBH] = static_cast<double>(h), p[pBW] = static_cast<double>(w);
      return;
    }
  }
  const double in_ratio = static_cast<double>(W) / static_cast<double>(H);
  int64_t w = W, h = H;
  if (in_ratio < c[kRatioLo]) {
    h = static_cast<int64_t>(std::nearbyint(static_cast<double>(w) / c[kRatioLo]));
  } else if (in_ratio > c[kRatioHi]) {
    w = static_cast<int64_t>(std::nearbyint(static_cast<double>(h) * c[kRatioHi]));
  }
  p[pY0] = static_cast<double>((H - h) / 2), p[pX0] = static_cast<double>((W - w) / 2);
  p[pBH] = static_cast<double>(h), p[pBW] = static_cast<double>(w);
}

/** Samples every parameter of one view of one sample (a fixed number of draws per field). */
inline Params sample_params(uint64_t seed, int64_t key, int64_t view, int64_t H, int64_t W, const AugConfig& c) {
  if (H < 1 || W < 1) throw std::invalid_argument("image has an empty side");
  Rng r(seed, static_cast<uint64_t>(key), static_cast<uint64_t>(view));
  Params p{};
  const int64_t S = c.size();
  p[pVH] = p[pVW] = static_cast<double>(S);
  switch (static_cast<int>(c[kMode])) {
    case kModeRRC:
      sample_rrc(r, H, W, c, p);
      break;
    case kModeResizeCrop: {  // torchvision Resize(int) then CenterCrop(S)
      const double R = c[kResize];
      const int64_t shorter = std::min(H, W), longer = std::max(H, W);
      const int64_t rs = static_cast<int64_t>(R), rl = static_cast<int64_t>(R * static_cast<double>(longer) / static_cast<double>(shorter));
      const int64_t vh = H <= W ? rs : rl, vw = H <= W ? rl : rs;
      p[pY0] = p[pX0] = 0, p[pBH] = static_cast<double>(H), p[pBW] = static_cast<double>(W);
      p[pVH] = static_cast<double>(vh), p[pVW] = static_cast<double>(vw);
      p[pOY] = std::nearbyint(static_cast<double>(vh - S) / 2.0);
      p[pOX] = std::nearbyint(static_cast<double>(vw - S) / 2.0);
      if (vh < S || vw < S) throw std::invalid_argument("Resize smaller than the centre crop");
      break;
    }
    default:
      p[pY0] = p[pX0] = 0, p[pBH] = static_cast<double>(H), p[pBW] = static_cast<double>(W);
  }
  p[pFlip] = r.coin(c[kFlipP]) ? 1 : 0;
  p[pJitter] = r.coin(c[kJitterP]) ? 1 : 0;
  int order[4] = {0, 1, 2, 3};
  for (int i = 3; i > 0; --i) std::swap(order[i], order[r.randint(0, i + 1)]);
  p[pOrder] = order[0] * 64 + order[1] * 16 + order[2] * 4 + order[3];
  auto factor = [&](double s) { return r.uniform(std::max(0.0, 1 - s), 1 + s); };
  p[pBright] = factor(c[kBrightness]);
  p[pContrast] = factor(c[kContrast]);
  p[pSat] = factor(c[kSaturation]);
  p[pHue] = r.uniform(-c[kHue], c[kHue]);
  if (c[kBrightness] == 0) p[pBright] = 1;
  if (c[kContrast] == 0) p[pContrast] = 1;
  if (c[kSaturation] == 0) p[pSat] = 1;
  p[pGray] = r.coin(c[kGrayP]) ? 1 : 0;
  const bool blur = r.coin(c[kBlurP]);
  const double sigma = r.uniform(c[kSigmaLo], c[kSigmaHi]);
  p[pSigma] = blur ? sigma : 0;
  p[pSolarize] = r.coin(c[kSolarizeP]) ? 1 : 0;
  return p;
}

// =============================================================================================
// Resampling: crop box -> virtual resize -> output window, antialiased bilinear (torch's
// _upsample_bilinear2d_aa / PIL's triangle filter), separable, horizontal pass first
// =============================================================================================

/** A read-only image of any layout: uint8 (scaled by 1/255) or float. */
struct ImageView {
  const uint8_t* u8 = nullptr;
  const float* f32 = nullptr;
  int64_t c = 0, h = 0, w = 0, sc = 0, sy = 0, sx = 0;
  float at(int64_t ch, int64_t y, int64_t x) const {
    const int64_t o = ch * sc + y * sy + x * sx;
    return u8 ? static_cast<float>(u8[o]) * (1.0f / 255.0f) : f32[o];
  }
};

struct Taps {
  std::vector<int64_t> start, len;
  std::vector<float> w;
  int64_t stride = 0;
};

/**
 * Filter taps for `out` output samples at virtual positions offset..offset+out-1 of a `virt`-long
 * resize of the box [b0, b0+bn) of a `limit`-long axis.
 */
inline Taps make_taps(int64_t out, int64_t offset, double b0, double bn, double virt, int64_t limit, bool antialias) {
  const double scale = bn / virt;
  const double support = (antialias && scale >= 1.0) ? scale : 1.0;
  const double inv = (antialias && scale >= 1.0) ? 1.0 / scale : 1.0;
  const int64_t lo = std::max<int64_t>(0, static_cast<int64_t>(std::floor(b0)));
  const int64_t hi = std::min<int64_t>(limit, static_cast<int64_t>(std::ceil(b0 + bn - 1e-9)));
  const int64_t in = std::max<int64_t>(1, hi - lo);
  Taps t;
  t.stride = static_cast<int64_t>(std::ceil(support)) * 2 + 2;
  t.start.resize(out), t.len.resize(out), t.w.assign(static_cast<size_t>(out * t.stride), 0.f);
  for (int64_t i = 0; i < out; ++i) {
    const double center = (b0 - static_cast<double>(lo)) + scale * (static_cast<double>(i + offset) + 0.5);
    const int64_t xmin = std::max<int64_t>(static_cast<int64_t>(center - support + 0.5), 0);
    const int64_t xmax = std::min<int64_t>(static_cast<int64_t>(center + support + 0.5), in);
    int64_t n = std::min<int64_t>(std::max<int64_t>(xmax - xmin, 1), t.stride);
    double total = 0;
    float* w = &t.w[static_cast<size_t>(i * t.stride)];
    for (int64_t j = 0; j < n; ++j) {
      const double f = std::max(0.0, 1.0 - std::fabs((static_cast<double>(j + xmin) - center + 0.5) * inv));
      w[j] = static_cast<float>(f);
      total += f;
    }
    if (total > 0) {
      for (int64_t j = 0; j < n; ++j) w[j] = static_cast<float>(w[j] / total);
    } else {
      w[0] = 1, n = 1;
    }
    t.start[i] = lo + std::min(xmin, in - 1);
    t.len[i] = n;
  }
  return t;
}

/**
 * Resamples `src` into `dst` (C_out x S x S floats, values in [0, 1]) following the geometry of
 * `p`. `sy`, `sx`, `oy`, `ox` map full-image coordinates to this view's pixel grid (a decoded
 * image may be DCT-downscaled or a region of interest). C_out 3 from 1 channel replicates;
 * C_out 1 from 3 channels takes the luma (0.299, 0.587, 0.114).
 */
inline void resample(const ImageView& src, const Params& p, int64_t S, int64_t cout, float* dst,
                     double sy = 1, double sx = 1, double oy = 0, double ox = 0) {
  const Taps ty = make_taps(S, static_cast<int64_t>(p[pOY]), p[pY0] * sy - oy, p[pBH] * sy, p[pVH], src.h, true);
  Taps tx = make_taps(S, static_cast<int64_t>(p[pOX]), p[pX0] * sx - ox, p[pBW] * sx, p[pVW], src.w, true);
  if (p[pFlip] != 0) {  // mirror the output columns by reversing the tap table
    Taps f = tx;
    for (int64_t i = 0; i < S; ++i) {
      const int64_t j = S - 1 - i;
      f.start[i] = tx.start[j], f.len[i] = tx.len[j];
      std::copy_n(&tx.w[static_cast<size_t>(j * tx.stride)], tx.stride, &f.w[static_cast<size_t>(i * tx.stride)]);
    }
    tx = std::move(f);
  }
  int64_t r0 = src.h, r1 = 0;
  for (int64_t i = 0; i < S; ++i) r0 = std::min(r0, ty.start[i]), r1 = std::max(r1, ty.start[i] + ty.len[i]);
  const int64_t rows = r1 - r0;
  std::vector<float> tmp(static_cast<size_t>(rows * S));
  const bool to_gray = cout == 1 && src.c == 3;
  for (int64_t co = 0; co < cout; ++co) {
    const int64_t ci = src.c == 1 ? 0 : co;
    for (int64_t y = 0; y < rows; ++y) {  // horizontal pass over the rows the vertical taps need
      float* trow = &tmp[static_cast<size_t>(y * S)];
      for (int64_t x = 0; x < S; ++x) {
        const float* w = &tx.w[static_cast<size_t>(x * tx.stride)];
        float acc = 0;
        for (int64_t j = 0; j < tx.len[x]; ++j) {
          const int64_t xx = tx.start[x] + j;
          const float v = to_gray ? 0.299f * src.at(0, r0 + y, xx) + 0.587f * src.at(1, r0 + y, xx) + 0.114f * src.at(2, r0 + y, xx)
                                  : src.at(ci, r0 + y, xx);
          acc += w[j] * v;
        }
        trow[x] = acc;
      }
    }
    float* out = dst + co * S * S;
    for (int64_t y = 0; y < S; ++y) {  // vertical pass
      const float* w = &ty.w[static_cast<size_t>(y * ty.stride)];
      float* orow = out + y * S;
      std::fill_n(orow, S, 0.f);
      for (int64_t j = 0; j < ty.len[y]; ++j) {
        const float* trow = &tmp[static_cast<size_t>((ty.start[y] + j - r0) * S)];
        const float wj = w[j];
        for (int64_t x = 0; x < S; ++x) orow[x] += wj * trow[x];
      }
    }
  }
}

// =============================================================================================
// Colour and pixel operations on one C x S x S float image in [0, 1] (torchvision's tensor
// semantics: blend with clamping; hue as a fraction of the colour wheel)
// =============================================================================================

inline float clamp01(float v) { return v < 0.f ? 0.f : (v > 1.f ? 1.f : v); }

inline void gray_of(const float* img, int64_t n, float* g) {
  const float *r = img, *gg = img + n, *b = img + 2 * n;
  for (int64_t i = 0; i < n; ++i) g[i] = 0.2989f * r[i] + 0.587f * gg[i] + 0.114f * b[i];
}

inline void adjust_brightness(float* img, int64_t c, int64_t n, float f) {
  for (int64_t i = 0; i < c * n; ++i) img[i] = clamp01(img[i] * f);
}

inline void adjust_contrast(float* img, int64_t c, int64_t n, float f) {
  double sum = 0;
  if (c == 3) {
    std::vector<float> g(static_cast<size_t>(n));
    gray_of(img, n, g.data());
    for (float v : g) sum += v;
  } else {
    for (int64_t i = 0; i < c * n; ++i) sum += img[i];
    n *= c, c = 1;
  }
  const float mean = static_cast<float>(sum / static_cast<double>(n)), a = (1 - f) * mean;
  for (int64_t i = 0; i < c * n; ++i) img[i] = clamp01(f * img[i] + a);
}

inline void adjust_saturation(float* img, int64_t c, int64_t n, float f) {
  if (c != 3) return;
  std::vector<float> g(static_cast<size_t>(n));
  gray_of(img, n, g.data());
  for (int64_t ch = 0; ch < 3; ++ch) {
    float* p = img + ch * n;
    for (int64_t i = 0; i < n; ++i) p[i] = clamp01(f * p[i] + (1 - f) * g[i]);
  }
}

/** torchvision's _rgb2hsv / _hsv2rgb round trip with the hue shifted by `h` turns. */
inline void adjust_hue(float* img, int64_t c, int64_t n, float hf) {
  if (c != 3 || hf == 0) return;
  float *R = img, *G = img + n, *B = img + 2 * n;
  for (int64_t i = 0; i < n; ++i) {
    const float r = R[i], g = G[i], b = B[i];
    const float maxc = std::max(r, std::max(g, b)), minc = std::min(r, std::min(g, b));
    const bool eqc = maxc == minc;
    const float cr = maxc - minc;
    const float s = cr / (eqc ? 1.f : maxc);
    const float crd = eqc ? 1.f : cr;
    const float rc = (maxc - r) / crd, gc = (maxc - g) / crd, bc = (maxc - b) / crd;
    const float hr = (maxc == r) ? (bc - gc) : 0.f;
    const float hg = (maxc == g && maxc != r) ? (2.f + rc - bc) : 0.f;
    const float hb = (maxc != g && maxc != r) ? (4.f + gc - rc) : 0.f;
    float h = std::fmod((hr + hg + hb) / 6.f + 1.f, 1.f);
    h = h + hf;
    h = h - std::floor(h);  // Python's % 1.0
    const float v = maxc;
    const float h6 = h * 6.f;
    const float fi = std::floor(h6);
    const float fr = h6 - fi;
    const int k = static_cast<int>(fi) % 6;
    const float pp = clamp01(v * (1.f - s)), q = clamp01(v * (1.f - s * fr)), t = clamp01(v * (1.f - s * (1.f - fr)));
    const float rr[6] = {v, q, pp, pp, t, v}, gg[6] = {t, v, v, q, pp, pp}, bb[6] = {pp, pp, t, v, v, q};
    R[i] = rr[k], G[i] = gg[k], B[i] = bb[k];
  }
}

inline void to_grayscale(float* img, int64_t c, int64_t n) {
  if (c != 3) return;
  std::vector<float> g(static_cast<size_t>(n));
  gray_of(img, n, g.data());
  for (int64_t ch = 0; ch < 3; ++ch) std::copy(g.begin(), g.end(), img + ch * n);
}

/** torchvision's gaussian_blur: normalised 1-D kernel, reflect padding, separable. */
inline void gaussian_blur(float* img, int64_t c, int64_t S, double sigma, int64_t ksize) {
  if (ksize <= 0) ksize = 2 * static_cast<int64_t>(std::ceil(3.0 * sigma)) + 1;
  ksize = std::min<int64_t>(ksize, 2 * S - 1);
  if (ksize % 2 == 0) --ksize;
  if (ksize < 3) return;
  const int64_t half = ksize / 2;
  std::vector<float> k(static_cast<size_t>(ksize));
  double total = 0;
  for (int64_t i = 0; i < ksize; ++i) {
    const double x = static_cast<double>(i - half) / sigma;
    total += (k[static_cast<size_t>(i)] = static_cast<float>(std::exp(-0.5 * x * x)));
  }
  for (auto& v : k) v = static_cast<float>(v / total);
  auto reflect = [S](int64_t i) { return i < 0 ? -i : (i >= S ? 2 * S - 2 - i : i); };
  std::vector<float> tmp(static_cast<size_t>(S * S));
  for (int64_t ch = 0; ch < c; ++ch) {
    float* p = img + ch * S * S;
    for (int64_t y = 0; y < S; ++y) {
      for (int64_t x = 0; x < S; ++x) {
        float acc = 0;
        for (int64_t j = 0; j < ksize; ++j) acc += k[static_cast<size_t>(j)] * p[y * S + reflect(x + j - half)];
        tmp[static_cast<size_t>(y * S + x)] = acc;
      }
    }
    for (int64_t y = 0; y < S; ++y) {
      for (int64_t x = 0; x < S; ++x) {
        float acc = 0;
        for (int64_t j = 0; j < ksize; ++j) acc += k[static_cast<size_t>(j)] * tmp[static_cast<size_t>(reflect(y + j - half) * S + x)];
        p[y * S + x] = acc;
      }
    }
  }
}

/** Everything after the resample: colour jitter (random order), grayscale, blur, solarize, normalize. */
inline void finish_pixels(float* img, int64_t c, int64_t S, const Params& p, const AugConfig& cfg) {
  const int64_t n = S * S;
  if (p[pJitter] != 0) {
    const int order = static_cast<int>(p[pOrder]);
    for (int k = 3; k >= 0; --k) {
      switch ((order >> (2 * k)) & 3) {
        case 0: if (p[pBright] != 1) adjust_brightness(img, c, n, static_cast<float>(p[pBright])); break;
        case 1: if (p[pContrast] != 1) adjust_contrast(img, c, n, static_cast<float>(p[pContrast])); break;
        case 2: if (p[pSat] != 1) adjust_saturation(img, c, n, static_cast<float>(p[pSat])); break;
        default: adjust_hue(img, c, n, static_cast<float>(p[pHue]));
      }
    }
  }
  if (p[pGray] != 0) to_grayscale(img, c, n);
  if (p[pSigma] > 0) gaussian_blur(img, c, S, p[pSigma], static_cast<int64_t>(cfg[kBlurKernel]));
  if (p[pSolarize] != 0) {
    const float thr = static_cast<float>(cfg[kSolarizeThr]);
    for (int64_t i = 0; i < c * n; ++i) img[i] = img[i] >= thr ? 1.f - img[i] : img[i];
  }
  if (cfg[kNormalize] != 0) {
    for (int64_t ch = 0; ch < c; ++ch) {
      const int64_t k = c == 3 ? ch : 0;
      const float m = static_cast<float>(cfg[kMean0 + static_cast<int>(k)]);
      const float s = static_cast<float>(1.0 / cfg[kStd0 + static_cast<int>(k)]);
      float* q = img + ch * n;
      for (int64_t i = 0; i < n; ++i) q[i] = (q[i] - m) * s;
    }
  }
}

/** Resample + pixel pipeline for one view of one image into `dst` (C x S x S). */
inline void augment_one(const ImageView& src, const Params& p, const AugConfig& cfg, int64_t cout, float* dst,
                        double sy = 1, double sx = 1, double oy = 0, double ox = 0) {
  resample(src, p, cfg.size(), cout, dst, sy, sx, oy, ox);
  finish_pixels(dst, cout, cfg.size(), p, cfg);
}

// =============================================================================================
// Codecs: libjpeg-turbo (libjpeg 6.2 API) and libpng (simplified API), loaded with dlopen
// =============================================================================================

/** A decoded image, interleaved HWC uint8, possibly a scaled region of the full image. */
struct Decoded {
  int64_t c = 0, h = 0, w = 0;
  int64_t full_h = 0, full_w = 0;  // size of the full-resolution image
  double sy = 1, sx = 1;           // decoded pixels per full-resolution pixel
  int64_t oy = 0, ox = 0;          // origin of this buffer in the scaled full image
  std::vector<uint8_t> px;
  ImageView view() const {
    ImageView v;
    v.u8 = px.data(), v.c = c, v.h = h, v.w = w, v.sc = 1, v.sy = w * c, v.sx = c;
    return v;
  }
};

/** What to decode, chosen once the header is known: DCT scale 1/denom and a region (full-res). */
struct DecodePlan {
  int denom = 1;
  bool roi = false;
  int64_t y0 = 0, x0 = 0, h = 0, w = 0;
};
using Planner = std::function<DecodePlan(int64_t H, int64_t W)>;

enum class Format { kUnknown, kJpeg, kPng };
inline Format sniff(const uint8_t* d, size_t n) {
  if (n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF) return Format::kJpeg;
  if (n >= 8 && d[0] == 0x89 && d[1] == 'P' && d[2] == 'N' && d[3] == 'G') return Format::kPng;
  return Format::kUnknown;
}

#ifdef SLIMCLR_HAVE_JPEG_H
struct JpegApi {
  std::string why;
  bool ok = false;
  jpeg_error_mgr* (*std_error)(jpeg_error_mgr*) = nullptr;
  void (*create)(j_decompress_ptr, int, size_t) = nullptr;
  void (*destroy)(j_decompress_ptr) = nullptr;
  void (*mem_src)(j_decompress_ptr, const unsigned char*, unsigned long) = nullptr;
  int (*read_header)(j_decompress_ptr, boolean) = nullptr;
  boolean (*start)(j_decompress_ptr) = nullptr;
  JDIMENSION (*read_scanlines)(j_decompress_ptr, JSAMPARRAY, JDIMENSION) = nullptr;
  void (*abort)(j_decompress_ptr) = nullptr;
  void (*crop_scanline)(j_decompress_ptr, JDIMENSION*, JDIMENSION*) = nullptr;
  JDIMENSION (*skip_scanlines)(j_decompress_ptr, JDIMENSION) = nullptr;
};
inline const JpegApi& jpeg_api() {
  static const JpegApi api = [] {
    JpegApi a;
    void* lib = open_library({"libjpeg.so.62", "libjpeg.so"}, a.why);
    if (!lib) {
      a.why = "libjpeg-turbo not found (Debian package libjpeg62-turbo): " + a.why;
      return a;
    }
    a.ok = bind(lib, "jpeg_std_error", a.std_error, a.why) && bind(lib, "jpeg_CreateDecompress", a.create, a.why) &&
           bind(lib, "jpeg_destroy_decompress", a.destroy, a.why) && bind(lib, "jpeg_mem_src", a.mem_src, a.why) &&
           bind(lib, "jpeg_read_header", a.read_header, a.why) && bind(lib, "jpeg_start_decompress", a.start, a.why) &&
           bind(lib, "jpeg_read_scanlines", a.read_scanlines, a.why) && bind(lib, "jpeg_abort_decompress", a.abort, a.why);
    std::string ignore;  // the region-of-interest calls are libjpeg-turbo extensions
    bind(lib, "jpeg_crop_scanline", a.crop_scanline, ignore);
    bind(lib, "jpeg_skip_scanlines", a.skip_scanlines, ignore);
    return a;
  }();
  return api;
}

struct JpegErr {
  jpeg_error_mgr pub;
  jmp_buf jump;
  char msg[JMSG_LENGTH_MAX];
  bool truncated;
};
extern "C" inline void slimclr_jpeg_error_exit(j_common_ptr ci) {
  auto* e = reinterpret_cast<JpegErr*>(ci->err);
  e->pub.format_message(ci, e->msg);
  longjmp(e->jump, 1);
}
extern "C" inline void slimclr_jpeg_emit(j_common_ptr ci, int level) {
  auto* e = reinterpret_cast<JpegErr*>(ci->err);
  if (level < 0) {
    e->pub.num_warnings++;
    if (e->pub.msg_code == JWRN_JPEG_EOF && !e->truncated) {
      e->truncated = true;
      e->pub.format_message(ci, e->msg);
    }
  }
}

/** Decodes a JPEG; returns an error message or "" on success. No C++ object lives across setjmp. */
inline std::string decode_jpeg(const uint8_t* data, size_t n, int channels, const Planner& plan, Decoded& out) {
  const JpegApi& api = jpeg_api();
  if (!api.ok) return api.why;
  jpeg_decompress_struct ci;
  JpegErr err;
  std::memset(&ci, 0, sizeof(ci));
  ci.err = api.std_error(&err.pub);
  err.pub.error_exit = slimclr_jpeg_error_exit;
  err.pub.emit_message = slimclr_jpeg_emit;
  err.truncated = false;
  err.msg[0] = 0;
  JSAMPROW row[1];
  uint8_t* volatile cmyk_row = nullptr;
  if (setjmp(err.jump)) {
    std::free(cmyk_row);
    api.destroy(&ci);
    return std::string("corrupt JPEG: ") + err.msg;
  }
  api.create(&ci, JPEG_LIB_VERSION, sizeof(ci));
  api.mem_src(&ci, data, static_cast<unsigned long>(n));
  api.read_header(&ci, TRUE);
  const bool cmyk = ci.jpeg_color_space == JCS_CMYK || ci.jpeg_color_space == JCS_YCCK;
  ci.out_color_space = cmyk ? JCS_CMYK : (channels == 1 ? JCS_GRAYSCALE : JCS_RGB);
  const int64_t H = ci.image_height, W = ci.image_width;
  DecodePlan pl;
  if (plan) {
    std::string why;  // the planner may throw: release libjpeg's memory before passing it on
    try {
      pl = plan(H, W);
    } catch (const std::exception& e) {
      why = e.what();
    }
    if (!why.empty()) {
      api.destroy(&ci);
      throw std::invalid_argument(why);
    }
  }
  ci.scale_num = 1;
  ci.scale_denom = static_cast<unsigned>(pl.denom);
  api.start(&ci);
  const int64_t oh = ci.output_height, ow = ci.output_width;
  out.full_h = H, out.full_w = W;
  out.sy = static_cast<double>(oh) / static_cast<double>(H), out.sx = static_cast<double>(ow) / static_cast<double>(W);
  int64_t ry0 = 0, ry1 = oh;
  JDIMENSION xoff = 0, xw = static_cast<JDIMENSION>(ow);
  if (pl.roi && api.crop_scanline && api.skip_scanlines) {
    ry0 = std::clamp<int64_t>(static_cast<int64_t>(std::floor(static_cast<double>(pl.y0) * out.sy)) - 1, 0, oh - 1);
    ry1 = std::clamp<int64_t>(static_cast<int64_t>(std::ceil(static_cast<double>(pl.y0 + pl.h) * out.sy)) + 1, ry0 + 1, oh);
    const int64_t cx0 = std::clamp<int64_t>(static_cast<int64_t>(std::floor(static_cast<double>(pl.x0) * out.sx)) - 1, 0, ow - 1);
    const int64_t cx1 = std::clamp<int64_t>(static_cast<int64_t>(std::ceil(static_cast<double>(pl.x0 + pl.w) * out.sx)) + 1, cx0 + 1, ow);
    xoff = static_cast<JDIMENSION>(cx0), xw = static_cast<JDIMENSION>(cx1 - cx0);
    if (xoff != 0 || xw != static_cast<JDIMENSION>(ow)) api.crop_scanline(&ci, &xoff, &xw);
    if (ry0 > 0) api.skip_scanlines(&ci, static_cast<JDIMENSION>(ry0));
  }
  const int comps = ci.output_components;
  out.c = cmyk ? (channels == 1 ? 1 : 3) : comps;
  out.h = ry1 - ry0, out.w = xw, out.oy = ry0, out.ox = xoff;
  out.px.resize(static_cast<size_t>(out.h * out.w * out.c));
  if (cmyk) cmyk_row = static_cast<uint8_t*>(std::malloc(static_cast<size_t>(xw) * 4));
  const bool inverted = ci.saw_Adobe_marker;
  for (int64_t y = 0; y < out.h; ++y) {
    uint8_t* dst = out.px.data() + y * out.w * out.c;
    row[0] = cmyk ? cmyk_row : dst;
    if (api.read_scanlines(&ci, row, 1) != 1) break;
    if (cmyk) {  // PIL's CMYK -> RGB: r = 255 - min(255, c + k) on the (un-inverted) ink values
      for (int64_t x = 0; x < out.w; ++x) {
        int v[4];
        for (int k = 0; k < 4; ++k) v[k] = inverted ? cmyk_row[x * 4 + k] : 255 - cmyk_row[x * 4 + k];
        const int r = 255 - std::min(255, (255 - v[0]) + (255 - v[3]));
        const int g = 255 - std::min(255, (255 - v[1]) + (255 - v[3]));
        const int b = 255 - std::min(255, (255 - v[2]) + (255 - v[3]));
        if (out.c == 1) dst[x] = static_cast<uint8_t>((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16);
        else dst[x * 3] = static_cast<uint8_t>(r), dst[x * 3 + 1] = static_cast<uint8_t>(g), dst[x * 3 + 2] = static_cast<uint8_t>(b);
      }
    }
  }
  const bool truncated = err.truncated;
  api.abort(&ci);
  api.destroy(&ci);
  std::free(cmyk_row);
  if (truncated) return "corrupt JPEG: " + std::string(err.msg) + " (truncated file)";
  return "";
}
#else
inline std::string decode_jpeg(const uint8_t*, size_t, int, const Planner&, Decoded&) {
  return "JPEG support not compiled in (build the shim with libjpeg62-turbo-dev installed)";
}
#endif

#ifdef SLIMCLR_HAVE_PNG_H
struct PngApi {
  std::string why;
  bool ok = false;
  int (*begin)(png_imagep, png_const_voidp, size_t) = nullptr;
  int (*finish)(png_imagep, png_const_colorp, void*, png_int_32, void*) = nullptr;
  void (*free)(png_imagep) = nullptr;
};
inline const PngApi& png_api() {
  static const PngApi api = [] {
    PngApi a;
    void* lib = open_library({"libpng16.so.16", "libpng16.so"}, a.why);
    if (!lib) {
      a.why = "libpng not found (Debian package libpng16-16): " + a.why;
      return a;
    }
    a.ok = bind(lib, "png_image_begin_read_from_memory", a.begin, a.why) &&
           bind(lib, "png_image_finish_read", a.finish, a.why) && bind(lib, "png_image_free", a.free, a.why);
    return a;
  }();
  return api;
}

/** Decodes a PNG as PIL's convert('RGB'/'L') would: alpha dropped, luma 0.299/0.587/0.114. */
inline std::string decode_png(const uint8_t* data, size_t n, int channels, Decoded& out) {
  const PngApi& api = png_api();
  if (!api.ok) return api.why;
  png_image img;
  std::memset(&img, 0, sizeof(img));
  img.version = PNG_IMAGE_VERSION;
  if (!api.begin(&img, data, n)) return std::string("corrupt PNG: ") + img.message;
  img.format = PNG_FORMAT_RGBA;
  std::vector<uint8_t> rgba(PNG_IMAGE_SIZE(img));
  if (!api.finish(&img, nullptr, rgba.data(), 0, nullptr)) {
    std::string m = img.message;
    api.free(&img);
    return "corrupt PNG: " + m;
  }
  out.full_h = out.h = img.height, out.full_w = out.w = img.width, out.c = channels == 1 ? 1 : 3;
  const int64_t np = out.h * out.w;
  out.px.resize(static_cast<size_t>(np * out.c));
  for (int64_t i = 0; i < np; ++i) {
    const uint8_t* s = &rgba[static_cast<size_t>(i * 4)];
    if (out.c == 1) out.px[static_cast<size_t>(i)] = static_cast<uint8_t>((s[0] * 19595 + s[1] * 38470 + s[2] * 7471 + 0x8000) >> 16);
    else std::copy_n(s, 3, &out.px[static_cast<size_t>(i * 3)]);
  }
  return "";
}
#else
inline std::string decode_png(const uint8_t*, size_t, int, Decoded&) {
  return "PNG support not compiled in (build the shim with libpng-dev installed)";
}
#endif

/** Decodes JPEG or PNG bytes; throws std::runtime_error with the reason. */
inline void decode_any(const uint8_t* data, size_t n, int channels, const Planner& plan, Decoded& out) {
  std::string err;
  switch (sniff(data, n)) {
    case Format::kJpeg: err = decode_jpeg(data, n, channels, plan, out); break;
    case Format::kPng: err = decode_png(data, n, channels, out); break;
    default:
      throw std::runtime_error(n == 0 ? "empty file" : "not a JPEG or PNG image (unrecognised header bytes)");
  }
  if (!err.empty()) throw std::runtime_error(err);
}

inline std::string codec_status() {
  std::string s;
#ifdef SLIMCLR_HAVE_JPEG_H
  s += jpeg_api().ok ? "jpeg: ok" : "jpeg: " + jpeg_api().why;
#else
  s += "jpeg: not compiled in";
#endif
#ifdef SLIMCLR_HAVE_PNG_H
  s += png_api().ok ? "\npng: ok" : "\npng: " + png_api().why;
#else
  s += "\npng: not compiled in";
#endif
  return s;
}

// =============================================================================================
// LMDB (liblmdb 0.9, the data format py-lmdb reads and writes), declared here: no header needed
// =============================================================================================

struct MDB_env;
struct MDB_txn;
struct MDB_cursor;
struct MDB_val {
  size_t mv_size;
  void* mv_data;
};
using MDB_dbi = unsigned int;
constexpr unsigned kMdbNoSubdir = 0x4000, kMdbRdOnly = 0x20000, kMdbNoTls = 0x200000, kMdbNoLock = 0x400000,
                   kMdbNoRdAhead = 0x800000, kMdbNoMemInit = 0x1000000;
constexpr int kMdbNotFound = -30798;

struct LmdbApi {
  std::string why;
  bool ok = false;
  int (*env_create)(MDB_env**) = nullptr;
  int (*env_set_mapsize)(MDB_env*, size_t) = nullptr;
  int (*env_open)(MDB_env*, const char*, unsigned, unsigned) = nullptr;
  void (*env_close)(MDB_env*) = nullptr;
  int (*txn_begin)(MDB_env*, MDB_txn*, unsigned, MDB_txn**) = nullptr;
  int (*txn_commit)(MDB_txn*) = nullptr;
  void (*txn_abort)(MDB_txn*) = nullptr;
  int (*dbi_open)(MDB_txn*, const char*, unsigned, MDB_dbi*) = nullptr;
  int (*get)(MDB_txn*, MDB_dbi, MDB_val*, MDB_val*) = nullptr;
  int (*put)(MDB_txn*, MDB_dbi, MDB_val*, MDB_val*, unsigned) = nullptr;
  char* (*strerror)(int) = nullptr;
};
inline const LmdbApi& lmdb_api() {
  static const LmdbApi api = [] {
    LmdbApi a;
    void* lib = open_library({"liblmdb.so.0", "liblmdb.so"}, a.why);
    if (!lib) {
      a.why = "liblmdb not found (Debian package liblmdb0): " + a.why;
      return a;
    }
    a.ok = bind(lib, "mdb_env_create", a.env_create, a.why) && bind(lib, "mdb_env_set_mapsize", a.env_set_mapsize, a.why) &&
           bind(lib, "mdb_env_open", a.env_open, a.why) && bind(lib, "mdb_env_close", a.env_close, a.why) &&
           bind(lib, "mdb_txn_begin", a.txn_begin, a.why) && bind(lib, "mdb_txn_commit", a.txn_commit, a.why) &&
           bind(lib, "mdb_txn_abort", a.txn_abort, a.why) && bind(lib, "mdb_dbi_open", a.dbi_open, a.why) &&
           bind(lib, "mdb_get", a.get, a.why) && bind(lib, "mdb_put", a.put, a.why) &&
           bind(lib, "mdb_strerror", a.strerror, a.why);
    return a;
  }();
  return api;
}
inline const LmdbApi& lmdb_checked() {
  const LmdbApi& a = lmdb_api();
  if (!a.ok) throw std::runtime_error(a.why);
  return a;
}
inline void mdb_check(int rc, const std::string& what) {
  if (rc != 0) throw std::runtime_error(what + ": " + lmdb_api().strerror(rc));
}

/** An LMDB environment (single-file layout, as the reference's folder2lmdb writes it). */
struct LmdbEnv {
  MDB_env* env = nullptr;
  MDB_dbi dbi = 0;
  std::string path;
  bool writable = false;
  MDB_txn* wtxn = nullptr;
  int64_t pending = 0;

  LmdbEnv(const std::string& p, bool write, int64_t map_size) : path(p), writable(write) {
    const LmdbApi& a = lmdb_checked();
    mdb_check(a.env_create(&env), "mdb_env_create");
    try {
      mdb_check(a.env_set_mapsize(env, static_cast<size_t>(map_size)), "mdb_env_set_mapsize");
      const unsigned flags = kMdbNoSubdir | (write ? kMdbNoMemInit : (kMdbRdOnly | kMdbNoTls | kMdbNoLock | kMdbNoRdAhead));
      mdb_check(a.env_open(env, path.c_str(), flags, 0644), "cannot open LMDB " + path);
      MDB_txn* t = nullptr;
      mdb_check(a.txn_begin(env, nullptr, write ? 0 : kMdbRdOnly, &t), "mdb_txn_begin");
      const int rc = a.dbi_open(t, nullptr, 0, &dbi);
      if (rc) a.txn_abort(t);
      mdb_check(rc, "mdb_dbi_open");
      mdb_check(a.txn_commit(t), "mdb_txn_commit");
    } catch (...) {
      a.env_close(env);
      throw;
    }
  }
  ~LmdbEnv() {
    const LmdbApi& a = lmdb_api();
    if (wtxn) a.txn_abort(wtxn);
    if (env) a.env_close(env);
  }
  void put(const void* k, size_t kn, const void* v, size_t vn) {
    if (!writable) throw std::runtime_error("LMDB " + path + " was opened read-only");
    const LmdbApi& a = lmdb_checked();
    if (!wtxn) mdb_check(a.txn_begin(env, nullptr, 0, &wtxn), "mdb_txn_begin");
    MDB_val key{kn, const_cast<void*>(k)}, val{vn, const_cast<void*>(v)};
    mdb_check(a.put(wtxn, dbi, &key, &val, 0), "mdb_put into " + path);
    ++pending;
  }
  void commit() {
    if (!wtxn) return;
    MDB_txn* t = wtxn;
    wtxn = nullptr, pending = 0;
    mdb_check(lmdb_api().txn_commit(t), "mdb_txn_commit on " + path);
  }
  /** Calls fn with the value of `key` (memory valid during the call only). */
  template <class F>
  void get(const std::string& key, F&& fn) const {
    const LmdbApi& a = lmdb_checked();
    MDB_txn* t = nullptr;
    mdb_check(a.txn_begin(env, nullptr, kMdbRdOnly, &t), "mdb_txn_begin");
    MDB_val k{key.size(), const_cast<char*>(key.data())}, v{0, nullptr};
    const int rc = a.get(t, dbi, &k, &v);
    if (rc) {
      a.txn_abort(t);
      if (rc == kMdbNotFound) throw std::runtime_error("key '" + key + "' not found in LMDB " + path);
      mdb_check(rc, "mdb_get");
    }
    try {
      fn(static_cast<const uint8_t*>(v.mv_data), v.mv_size);
    } catch (...) {
      a.txn_abort(t);
      throw;
    }
    a.txn_abort(t);
  }
};

// =============================================================================================
// Sources: where sample i comes from (a uint8 tensor, files, an LMDB, a RecordIO file, a blob)
// =============================================================================================

using BytesFn = std::function<void(const uint8_t*, size_t)>;

struct Source {
  virtual ~Source() = default;
  virtual int64_t size() const = 0;
  /** The path, key or index that names sample i in messages. */
  virtual std::string describe(int64_t i) const = 0;
  /** Tensor sources return the image itself; encoded sources return false and use read(). */
  virtual bool view(int64_t, ImageView&) const { return false; }
  virtual void read(int64_t i, const BytesFn& fn) const = 0;
  void check(int64_t i) const {
    if (i < 0 || i >= size()) throw std::out_of_range("sample index " + std::to_string(i) + " out of range [0, " + std::to_string(size()) + ")");
  }
};
using SourcePtr = std::shared_ptr<Source>;
inline SourcePtr& source_ref(void* p) {
  if (!p) throw std::invalid_argument("null data source");
  return *static_cast<SourcePtr*>(p);
}

/** Images already in memory: a uint8 tensor [N, C, H, W]. */
struct TensorSource : Source {
  at::Tensor t;
  explicit TensorSource(const at::Tensor& images) {
    if (images.dim() != 4 || images.scalar_type() != at::kByte || !images.device().is_cpu()) {
      throw std::invalid_argument("a tensor source needs a CPU uint8 tensor [N, C, H, W]");
    }
    t = images.contiguous();
  }
  int64_t size() const override { return t.size(0); }
  std::string describe(int64_t i) const override { return "image " + std::to_string(i); }
  bool view(int64_t i, ImageView& v) const override {
    check(i);
    v.u8 = t.data_ptr<uint8_t>() + i * t.stride(0);
    v.c = t.size(1), v.h = t.size(2), v.w = t.size(3), v.sc = t.stride(1), v.sy = t.stride(2), v.sx = t.stride(3);
    return true;
  }
  void read(int64_t, const BytesFn&) const override { throw std::logic_error("tensor source has no encoded bytes"); }
};

inline void read_file(const std::string& path, int64_t offset, int64_t len, std::vector<uint8_t>& buf) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("cannot open " + path + ": " + std::strerror(errno));
  if (len < 0) {
    const off_t end = ::lseek(fd, 0, SEEK_END);
    len = end < offset ? 0 : end - offset;
  }
  buf.resize(static_cast<size_t>(len));
  int64_t got = 0;
  while (got < len) {
    const ssize_t r = ::pread(fd, buf.data() + got, static_cast<size_t>(len - got), offset + got);
    if (r <= 0) break;
    got += r;
  }
  ::close(fd);
  if (got != len) {
    throw std::runtime_error("short read of " + path + ": " + std::to_string(got) + " of " + std::to_string(len) + " bytes at offset " + std::to_string(offset));
  }
}

/** Splits a buffer of NUL-terminated UTF-8 strings (a missing last terminator is tolerated). */
inline std::vector<std::string> split_nul(const void* p, int64_t n) {
  std::vector<std::string> out;
  const char* s = static_cast<const char*>(p);
  int64_t a = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (s[i] == 0) out.emplace_back(s + a, static_cast<size_t>(i - a)), a = i + 1;
  }
  if (a < n) out.emplace_back(s + a, static_cast<size_t>(n - a));
  return out;
}

/** One image file per sample (ImageFolder). */
struct FileSource : Source {
  std::vector<std::string> paths;
  int64_t size() const override { return static_cast<int64_t>(paths.size()); }
  std::string describe(int64_t i) const override { return paths[static_cast<size_t>(i)]; }
  void read(int64_t i, const BytesFn& fn) const override {
    check(i);
    thread_local std::vector<uint8_t> buf;
    read_file(paths[static_cast<size_t>(i)], 0, -1, buf);
    fn(buf.data(), buf.size());
  }
};

/** Encoded images in one uint8 tensor with int64 offsets [N + 1]. */
struct BlobSource : Source {
  at::Tensor bytes, offsets;
  BlobSource(const at::Tensor& b, const at::Tensor& o) : bytes(b.contiguous()), offsets(o.to(at::kLong).contiguous()) {
    if (b.scalar_type() != at::kByte || b.dim() != 1) throw std::invalid_argument("blob bytes must be a 1-D uint8 tensor");
    if (offsets.dim() != 1 || offsets.size(0) < 1) throw std::invalid_argument("blob offsets must be 1-D with N + 1 entries");
  }
  int64_t size() const override { return offsets.size(0) - 1; }
  std::string describe(int64_t i) const override { return "blob item " + std::to_string(i); }
  void read(int64_t i, const BytesFn& fn) const override {
    check(i);
    const int64_t* o = offsets.data_ptr<int64_t>();
    if (o[i] < 0 || o[i + 1] < o[i] || o[i + 1] > bytes.numel()) throw std::out_of_range("blob offsets out of range");
    fn(bytes.data_ptr<uint8_t>() + o[i], static_cast<size_t>(o[i + 1] - o[i]));
  }
};

/** Values of an LMDB, looked up by key (the reference layout: key "<wnid>/<file>"). */
struct LmdbSource : Source {
  std::shared_ptr<LmdbEnv> env;
  std::vector<std::string> keys;
  int64_t size() const override { return static_cast<int64_t>(keys.size()); }
  std::string describe(int64_t i) const override { return env->path + ":" + keys[static_cast<size_t>(i)]; }
  void read(int64_t i, const BytesFn& fn) const override {
    check(i);
    env->get(keys[static_cast<size_t>(i)], fn);
  }
};

constexpr uint32_t kRecordMagic = 0xced7230a;

/** Reads the record at `offset` of an MXNet RecordIO file; returns the payload (IRHeader + data). */
inline void read_record(const std::string& path, int64_t offset, std::vector<uint8_t>& buf) {
  uint32_t head[2];
  std::vector<uint8_t> hb;
  read_file(path, offset, 8, hb);
  std::memcpy(head, hb.data(), 8);
  if (head[0] != kRecordMagic) {
    throw std::runtime_error(path + ": no RecordIO record at offset " + std::to_string(offset) + " (bad magic; is the .idx for this .rec?)");
  }
  const uint32_t cflag = head[1] >> 29, len = head[1] & ((1u << 29) - 1);
  if (cflag != 0) throw std::runtime_error(path + ": multi-part record at offset " + std::to_string(offset) + " is not supported");
  read_file(path, offset + 8, len, buf);
}

/** IRHeader: flag (u32), label (f32), id (u64), id2 (u64), then `flag` extra float labels. */
inline size_t record_image_start(const std::vector<uint8_t>& rec, const std::string& path, float* label) {
  if (rec.size() < 24) throw std::runtime_error(path + ": record shorter than its 24-byte header");
  uint32_t flag;
  std::memcpy(&flag, rec.data(), 4);
  std::memcpy(label, rec.data() + 4, 4);
  const size_t start = 24 + static_cast<size_t>(flag) * 4;
  if (flag > 0 && rec.size() >= 28) std::memcpy(label, rec.data() + 24, 4);
  if (start > rec.size()) throw std::runtime_error(path + ": record header claims more labels than the record holds");
  return start;
}

/** Images of an MXNet RecordIO file at the offsets of its .idx. */
struct RecordSource : Source {
  std::string path;
  std::vector<int64_t> offsets;
  int64_t size() const override { return static_cast<int64_t>(offsets.size()); }
  std::string describe(int64_t i) const override { return path + "@" + std::to_string(offsets[static_cast<size_t>(i)]); }
  void read(int64_t i, const BytesFn& fn) const override {
    check(i);
    thread_local std::vector<uint8_t> buf;
    read_record(path, offsets[static_cast<size_t>(i)], buf);
    float label;
    const size_t s = record_image_start(buf, path, &label);
    fn(buf.data() + s, buf.size() - s);
  }
};

// =============================================================================================
// One sample through every view
// =============================================================================================

/** The largest DCT downscale (1, 2, 4, 8) that keeps every view's crop at least its output size. */
inline int dct_denom(const std::vector<Params>& ps, const std::vector<AugConfig>& cfgs) {
  int best = 8;
  for (size_t v = 0; v < ps.size(); ++v) {
    if (cfgs[v][kFastDecode] == 0) return 1;
    const double ry = ps[v][pBH] / ps[v][pVH], rx = ps[v][pBW] / ps[v][pVW];
    int d = 1;
    while (d < 8 && std::min(ry, rx) / (d * 2) >= 1.0) d *= 2;
    best = std::min(best, d);
  }
  return best;
}

/**
 * Augments every view of sample `idx` (stream key `key`) into dst[v] (C x S_v x S_v floats).
 * Throws std::runtime_error on an unreadable or undecodable image.
 */
inline void process_sample(const Source& src, int64_t idx, int64_t key, uint64_t seed, const std::vector<AugConfig>& cfgs,
                           int64_t channels, const std::vector<float*>& dst) {
  ImageView v;
  if (src.view(idx, v)) {
    const int64_t cout = channels > 0 ? channels : v.c;
    for (size_t k = 0; k < cfgs.size(); ++k) {
      const Params p = sample_params(seed, key, static_cast<int64_t>(k), v.h, v.w, cfgs[k]);
      augment_one(v, p, cfgs[k], cout, dst[k]);
    }
    return;
  }
  const int ch = channels == 1 ? 1 : 3;
  src.read(idx, [&](const uint8_t* data, size_t n) {
    std::vector<Params> ps(cfgs.size());
    Decoded d;
    const Planner plan = [&](int64_t H, int64_t W) {
      for (size_t k = 0; k < cfgs.size(); ++k) ps[k] = sample_params(seed, key, static_cast<int64_t>(k), H, W, cfgs[k]);
      DecodePlan pl;
      pl.denom = dct_denom(ps, cfgs);
      if (ps.size() == 1 && cfgs[0][kFastDecode] != 0) {
        pl.roi = true;
        pl.y0 = static_cast<int64_t>(ps[0][pY0]), pl.x0 = static_cast<int64_t>(ps[0][pX0]);
        pl.h = static_cast<int64_t>(std::ceil(ps[0][pBH])), pl.w = static_cast<int64_t>(std::ceil(ps[0][pBW]));
      }
      return pl;
    };
    decode_any(data, n, ch, plan, d);
    if (sniff(data, n) != Format::kJpeg) plan(d.full_h, d.full_w);  // PNG: sample after the fact
    const ImageView iv = d.view();
    for (size_t k = 0; k < cfgs.size(); ++k) {
      augment_one(iv, ps[k], cfgs[k], ch, dst[k], d.sy, d.sx, static_cast<double>(d.oy), static_cast<double>(d.ox));
    }
  });
}

// =============================================================================================
// Background loader: C++ worker threads fill batches, the caller submits and takes in order
// =============================================================================================

struct Job {
  std::vector<int64_t> idx, labels;
  uint64_t seed = 0;
  std::vector<at::Tensor> outs;
  std::vector<std::string> errors;  // per sample; empty when fine
  int64_t next = 0, done = 0;
  int64_t n() const { return static_cast<int64_t>(idx.size()); }
};

struct Loader {
  SourcePtr src;
  std::vector<AugConfig> cfgs;
  int64_t channels = 0;
  bool pin = false, strict = false;
  int64_t chunk = 4;
  std::mutex m;
  std::condition_variable work_cv, done_cv;
  std::deque<std::shared_ptr<Job>> jobs;
  bool stopping = false;
  std::vector<std::thread> threads;
  std::atomic<int64_t> wait_ns{0};
  std::string last_errors;

  Loader(SourcePtr s, std::vector<AugConfig> c, int64_t ch, int64_t nthreads, bool pin_memory, bool strict_mode)
      : src(std::move(s)), cfgs(std::move(c)), channels(ch), pin(pin_memory), strict(strict_mode) {
    ImageView v;
    if (channels <= 0) {
      if (src->size() > 0 && src->view(0, v)) channels = v.c;
      else throw std::invalid_argument("the loader needs the channel count (1 or 3) for encoded images");
    }
    if (channels != 1 && channels != 3) throw std::invalid_argument("channels must be 1 or 3");
    const int64_t n = std::max<int64_t>(1, nthreads);
    for (int64_t i = 0; i < n; ++i) threads.emplace_back([this] { run(); });
  }
  ~Loader() {
    {
      std::lock_guard<std::mutex> g(m);
      stopping = true;
    }
    work_cv.notify_all();
    for (auto& t : threads) t.join();
  }

  void run() {
    for (;;) {
      std::shared_ptr<Job> job;
      int64_t a = 0, b = 0;
      {
        std::unique_lock<std::mutex> g(m);
        work_cv.wait(g, [&] {
          if (stopping) return true;
          for (auto& j : jobs) if (j->next < j->n()) return true;
          return false;
        });
        if (stopping) return;
        for (auto& j : jobs) {
          if (j->next < j->n()) {
            job = j, a = j->next, b = std::min(j->n(), a + chunk), j->next = b;
            break;
          }
        }
      }
      for (int64_t i = a; i < b; ++i) {
        std::vector<float*> dst;
        for (size_t k = 0; k < cfgs.size(); ++k) {
          const int64_t S = cfgs[k].size();
          dst.push_back(job->outs[k].data_ptr<float>() + i * channels * S * S);
        }
        try {
          process_sample(*src, job->idx[static_cast<size_t>(i)], job->idx[static_cast<size_t>(i)], job->seed, cfgs, channels, dst);
        } catch (const std::exception& e) {
          job->errors[static_cast<size_t>(i)] = src->describe(job->idx[static_cast<size_t>(i)]) + "\t" + e.what();
        } catch (...) {
          job->errors[static_cast<size_t>(i)] = src->describe(job->idx[static_cast<size_t>(i)]) + "\tunknown error";
        }
      }
      {
        std::lock_guard<std::mutex> g(m);
        job->done += b - a;
      }
      done_cv.notify_all();
    }
  }

  void submit(const at::Tensor& indices, const at::Tensor& labels, uint64_t seed) {
    auto job = std::make_shared<Job>();
    const at::Tensor idx = indices.to(at::kLong).contiguous(), lab = labels.to(at::kLong).contiguous();
    if (idx.dim() != 1 || lab.dim() != 1 || idx.numel() != lab.numel()) {
      throw std::invalid_argument("loader submit needs 1-D indices and labels of the same length");
    }
    job->idx.assign(idx.data_ptr<int64_t>(), idx.data_ptr<int64_t>() + idx.numel());
    job->labels.assign(lab.data_ptr<int64_t>(), lab.data_ptr<int64_t>() + lab.numel());
    for (int64_t i : job->idx) src->check(i);
    job->seed = seed;
    job->errors.resize(job->idx.size());
    for (auto& c : cfgs) {
      auto o = at::TensorOptions().dtype(at::kFloat).pinned_memory(pin);
      job->outs.push_back(at::empty({job->n(), channels, c.size(), c.size()}, o));
    }
    {
      std::lock_guard<std::mutex> g(m);
      jobs.push_back(std::move(job));
    }
    work_cv.notify_all();
  }

  int64_t pending() {
    std::lock_guard<std::mutex> g(m);
    return static_cast<int64_t>(jobs.size());
  }

  /** Waits for the oldest job; returns [indices, labels, view 0, view 1, ...] of its good samples. */
  std::vector<at::Tensor> take() {
    std::shared_ptr<Job> job;
    {
      std::unique_lock<std::mutex> g(m);
      if (jobs.empty()) throw std::runtime_error("loader take: nothing was submitted");
      const auto t0 = std::chrono::steady_clock::now();
      done_cv.wait(g, [&] { return jobs.front()->done == jobs.front()->n(); });
      wait_ns += std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count();
      job = jobs.front();
      jobs.pop_front();
    }
    last_errors.clear();
    std::vector<int64_t> keep;
    for (int64_t i = 0; i < job->n(); ++i) {
      const std::string& e = job->errors[static_cast<size_t>(i)];
      if (e.empty()) keep.push_back(i);
      else last_errors += e + "\n";
    }
    if (strict && !last_errors.empty()) {
      throw std::runtime_error("undecodable image (strict mode): " + last_errors.substr(0, last_errors.find('\n')));
    }
    auto i64 = at::TensorOptions().dtype(at::kLong);
    std::vector<at::Tensor> out;
    at::Tensor idx = at::from_blob(job->idx.data(), {job->n()}, i64).clone();
    at::Tensor lab = at::from_blob(job->labels.data(), {job->n()}, i64).clone();
    if (static_cast<int64_t>(keep.size()) == job->n()) {
      out = {idx, lab};
      for (auto& o : job->outs) out.push_back(o);
    } else {
      at::Tensor k = at::from_blob(keep.data(), {static_cast<int64_t>(keep.size())}, i64).clone();
      out = {idx.index_select(0, k), lab.index_select(0, k)};
      for (auto& o : job->outs) out.push_back(pin ? o.index_select(0, k).pin_memory() : o.index_select(0, k));
    }
    return out;
  }
};

inline Loader& loader_ref(void* p) {
  if (!p) throw std::invalid_argument("null loader");
  return *static_cast<Loader*>(p);
}

// =============================================================================================
// Synchronous entry points (the generated C API calls these)
// =============================================================================================

inline void* new_source(Source* s) { return new SourcePtr(s); }

inline void* tensor_source(const at::Tensor& t) { return new_source(new TensorSource(t)); }

inline void* file_source(const void* paths, int64_t nbytes) {
  auto* s = new FileSource();
  s->paths = split_nul(paths, nbytes);
  return new_source(s);
}

inline void* blob_source(const at::Tensor& bytes, const at::Tensor& offsets) { return new_source(new BlobSource(bytes, offsets)); }

inline void* lmdb_source(const std::string& path, const void* keys, int64_t nbytes) {
  auto* s = new LmdbSource();
  std::unique_ptr<LmdbSource> guard(s);
  s->env = std::make_shared<LmdbEnv>(path, false, int64_t(1) << 40);
  s->keys = split_nul(keys, nbytes);
  return new_source(guard.release());
}

inline void* record_source(const std::string& path, const at::Tensor& offsets) {
  auto* s = new RecordSource();
  s->path = path;
  const at::Tensor o = offsets.to(at::kLong).contiguous();
  s->offsets.assign(o.data_ptr<int64_t>(), o.data_ptr<int64_t>() + o.numel());
  return new_source(s);
}

inline at::Tensor vec_to_tensor(const std::vector<uint8_t>& v) {
  at::Tensor t = at::empty({static_cast<int64_t>(v.size())}, at::kByte);
  if (!v.empty()) std::memcpy(t.data_ptr<uint8_t>(), v.data(), v.size());
  return t;
}

/** The encoded bytes of sample i (a tensor source has none). */
inline at::Tensor source_bytes(void* p, int64_t i) {
  at::Tensor out;
  source_ref(p)->read(i, [&](const uint8_t* d, size_t n) {
    out = at::empty({static_cast<int64_t>(n)}, at::kByte);
    if (n) std::memcpy(out.data_ptr<uint8_t>(), d, n);
  });
  return out;
}

inline thread_local std::string g_data_errors;

/** Decodes samples `indices` to uint8 [C, H, W] tensors; failures give undefined entries. */
inline std::vector<at::Tensor> decode_source(void* p, const at::Tensor& indices, int64_t channels) {
  const Source& src = *source_ref(p);
  const at::Tensor idx = indices.to(at::kLong).contiguous();
  const int64_t n = idx.numel();
  const int64_t* ip = idx.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) src.check(ip[i]);
  std::vector<Decoded> dec(static_cast<size_t>(n));
  std::vector<std::string> errs(static_cast<size_t>(n));
  const int ch = channels == 1 ? 1 : 3;
  at::parallel_for(0, n, 1, [&](int64_t a, int64_t b) {
    for (int64_t i = a; i < b; ++i) {
      try {
        src.read(ip[i], [&](const uint8_t* d, size_t m) { decode_any(d, m, ch, nullptr, dec[static_cast<size_t>(i)]); });
      } catch (const std::exception& e) {
        errs[static_cast<size_t>(i)] = src.describe(ip[i]) + "\t" + e.what();
      }
    }
  });
  std::vector<at::Tensor> out;
  g_data_errors.clear();
  for (int64_t i = 0; i < n; ++i) {
    const Decoded& d = dec[static_cast<size_t>(i)];
    if (!errs[static_cast<size_t>(i)].empty()) {
      g_data_errors += std::to_string(i) + "\t" + errs[static_cast<size_t>(i)] + "\n";
      out.emplace_back();
      continue;
    }
    at::Tensor hwc = at::empty({d.h, d.w, d.c}, at::kByte);
    std::memcpy(hwc.data_ptr<uint8_t>(), d.px.data(), d.px.size());
    out.push_back(hwc.permute({2, 0, 1}).contiguous());
  }
  return out;
}

inline at::Tensor check_sizes(const at::Tensor& sizes) {
  if (sizes.dim() != 2 || sizes.size(1) != 2) throw std::invalid_argument("sizes must be [N, 2] (height, width)");
  return sizes.to(at::kLong).contiguous();
}

/** Samples the parameter rows [N, kParLen] of one view for images of the given sizes. */
inline at::Tensor aug_sample(const at::Tensor& sizes, at::ArrayRef<double> cfgv, int64_t seed, const at::Tensor& keys, int64_t view) {
  const AugConfig cfg = parse_config(cfgv.data(), static_cast<int64_t>(cfgv.size()));
  const at::Tensor s = check_sizes(sizes), k = keys.to(at::kLong).contiguous();
  const int64_t n = s.size(0);
  if (k.numel() != n) throw std::invalid_argument("keys must have one entry per image");
  at::Tensor out = at::empty({n, kParLen}, at::kDouble);
  double* o = out.data_ptr<double>();
  const int64_t *sp = s.data_ptr<int64_t>(), *kp = k.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    const Params p = sample_params(static_cast<uint64_t>(seed), kp[i], view, sp[2 * i], sp[2 * i + 1], cfg);
    std::copy(p.begin(), p.end(), o + i * kParLen);
  }
  return out;
}

/** Applies parameter rows to a batch [N, C, H, W] (uint8 or float in [0, 1]) -> float [N, C', S, S]. */
inline at::Tensor aug_apply(const at::Tensor& images, const at::Tensor& params, at::ArrayRef<double> cfgv) {
  const AugConfig cfg = parse_config(cfgv.data(), static_cast<int64_t>(cfgv.size()));
  if (images.dim() != 4) throw std::invalid_argument("augment needs images [N, C, H, W]");
  if (images.scalar_type() != at::kByte && images.scalar_type() != at::kFloat) {
    throw std::invalid_argument("augment needs uint8 or float32 images");
  }
  const at::Tensor x = images.to(at::kCPU).contiguous();
  const at::Tensor p = params.to(at::kDouble).contiguous();
  const int64_t n = x.size(0), c = x.size(1), S = cfg.size();
  if (c != 1 && c != 3) throw std::invalid_argument("augment needs 1 or 3 channels");
  if (p.dim() != 2 || p.size(0) != n || p.size(1) != kParLen) throw std::invalid_argument("params must be [N, " + std::to_string(kParLen) + "]");
  const int64_t cout = cfg[kChannels] > 0 ? static_cast<int64_t>(cfg[kChannels]) : c;
  at::Tensor out = at::empty({n, cout, S, S}, at::kFloat);
  float* o = out.data_ptr<float>();
  const double* pp = p.data_ptr<double>();
  for (int64_t i = 0; i < n; ++i) {
    const int order = static_cast<int>(pp[i * kParLen + pOrder]);
    int seen = 0;
    for (int k = 0; k < 4; ++k) seen |= 1 << ((order >> (2 * k)) & 3);
    if (seen != 15 || order < 0 || order > 255) {
      throw std::invalid_argument("params row " + std::to_string(i) + ": jitter order " + std::to_string(order) +
                                  " is not a permutation of the four ops (a·64 + b·16 + c·4 + d)");
    }
  }
  at::parallel_for(0, n, 1, [&](int64_t a, int64_t b) {
    for (int64_t i = a; i < b; ++i) {
      ImageView v;
      if (x.scalar_type() == at::kByte) v.u8 = x.data_ptr<uint8_t>() + i * x.stride(0);
      else v.f32 = x.data_ptr<float>() + i * x.stride(0);
      v.c = c, v.h = x.size(2), v.w = x.size(3), v.sc = x.stride(1), v.sy = x.stride(2), v.sx = x.stride(3);
      Params pr;
      std::copy_n(pp + i * kParLen, kParLen, pr.begin());
      augment_one(v, pr, cfg, cout, o + i * cout * S * S);
    }
  });
  return out;
}

/** Labels of the records at `offsets` of a RecordIO file (float, as IRHeader stores them). */
inline at::Tensor record_labels(const std::string& path, const at::Tensor& offsets) {
  const at::Tensor o = offsets.to(at::kLong).contiguous();
  at::Tensor out = at::empty({o.numel()}, at::kFloat);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("cannot open " + path + ": " + std::strerror(errno));
  std::unique_ptr<int, void (*)(int*)> closer(new int(fd), [](int* f) { ::close(*f), delete f; });
  uint8_t b[32];
  for (int64_t i = 0; i < o.numel(); ++i) {
    const int64_t off = o.data_ptr<int64_t>()[i];
    if (::pread(fd, b, 32, off) < 32) throw std::runtime_error(path + ": truncated record at offset " + std::to_string(off));
    uint32_t magic, lrec, flag;
    std::memcpy(&magic, b, 4), std::memcpy(&lrec, b + 4, 4), std::memcpy(&flag, b + 8, 4);
    if (magic != kRecordMagic) throw std::runtime_error(path + ": no RecordIO record at offset " + std::to_string(off) + " (bad magic)");
    float label;
    if (flag > 0) {  // the first extra label is the class (MXNet's multi-label layout)
      if (::pread(fd, &label, 4, off + 8 + 24) < 4) throw std::runtime_error(path + ": truncated record label");
    } else {
      std::memcpy(&label, b + 12, 4);
    }
    out.data_ptr<float>()[i] = label;
  }
  return out;
}

inline LmdbEnv& lmdb_ref(void* p) {
  if (!p) throw std::invalid_argument("null LMDB writer");
  return *static_cast<LmdbEnv*>(p);
}

}  // namespace slimclr::data
