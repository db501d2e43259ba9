// Float32 linear layers for few rows (decode steps, the LM head): y = x W^T (+ bias) (+ or * other).
//
// With a handful of rows a linear layer is bound by streaming its weight from memory, not by arithmetic: oneDNN's
// GEMM reaches 90-170 GFLOP/s there on the 2-core AVX-512 machine, where the same weight streamed at memory speed
// allows about twice that (docs/engine.md, "Linear layers for few rows"). This kernel reads each weight element
// once per call for up to 14 rows and overlaps the read with the arithmetic:
//   - the weight is repacked once at load into panels of 32 output columns, [ceil(N/32), K, 32] (zero padded), so a
//     panel is one sequential stream and each k step is two 16-float vectors;
//   - a tile of up to 14 rows x 32 columns keeps its 28 accumulators in registers; every weight vector feeds 14
//     FMAs with x broadcast from L1;
//   - more than 14 rows: the rows are split into balanced tiles and K into blocks of 128, so a panel's block
//     (16 KiB) is read from memory by the first tile and from L1 by the others; partial sums wait in a small
//     per-thread buffer between blocks. The next block is prefetched while the first tile runs.
// Each output is one chain of FMAs over k = 0..K-1 in order (fp32), whatever the number of rows or threads, so a
// row's result does not depend on what else is in the batch. Panels are shared out among torch's threads.
// The engine uses it up to linear.SMALL_M_MAX rows and oneDNN above (appliance/runtime/model/linear.py).
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace {

constexpr int64_t kPanel = 32;   // output columns per panel: two 16-float vectors
constexpr int kMaxRows = 14;     // rows per register tile: 28 accumulators + 2 weight vectors + 1 broadcast
constexpr int64_t kBlock = 128;  // k per block when several row tiles share a panel: 32 x 128 floats = 16 KiB
constexpr int64_t kAhead = 24;   // one row tile: prefetch the weight this many k steps ahead

#if defined(__AVX512F__)
inline __mmask16 lane_mask(int64_t valid) {
  if (valid >= 16) return static_cast<__mmask16>(0xFFFF);
  return valid <= 0 ? static_cast<__mmask16>(0) : static_cast<__mmask16>((1u << valid) - 1);
}

struct Epilogue {
  float* y;
  int64_t ldy;
  int64_t valid;       // columns of this panel that exist (the last panel may be partial)
  const float* bias;   // this panel's bias, or null
  const float* other;  // this tile's rows of other, or null
  int64_t ldo;
  int mode;            // 0: none, 1: + other, 2: * other
};

// Rows [MR] of x times the panel's k in [k0, k1). Accumulators start at zero (first block) or from buf; they go back
// to buf, or (last block) through the epilogue to y. prefetch: where to prefetch two cache lines per k step, or null.
template <int MR>
inline void tile(const float* x, int64_t ldx, const float* panel, int64_t k0, int64_t k1, float* buf, bool first,
                 bool last, const Epilogue& e, const float* prefetch) {
  __m512 a0[MR], a1[MR];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) {
    a0[r] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(buf + r * kPanel);
    a1[r] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(buf + r * kPanel + 16);
  }
  for (int64_t k = k0; k < k1; ++k) {
    if (prefetch) {
      _mm_prefetch(reinterpret_cast<const char*>(prefetch + (k - k0) * kPanel), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(prefetch + (k - k0) * kPanel + 16), _MM_HINT_T0);
    }
    const __m512 w0 = _mm512_loadu_ps(panel + k * kPanel), w1 = _mm512_loadu_ps(panel + k * kPanel + 16);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      const __m512 xb = _mm512_set1_ps(x[r * ldx + k]);
      a0[r] = _mm512_fmadd_ps(xb, w0, a0[r]);
      a1[r] = _mm512_fmadd_ps(xb, w1, a1[r]);
    }
  }
  if (!last) {
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      _mm512_storeu_ps(buf + r * kPanel, a0[r]);
      _mm512_storeu_ps(buf + r * kPanel + 16, a1[r]);
    }
    return;
  }
  const __mmask16 m0 = lane_mask(e.valid), m1 = lane_mask(e.valid - 16);
  const __m512 b0 = e.bias ? _mm512_maskz_loadu_ps(m0, e.bias) : _mm512_setzero_ps();
  const __m512 b1 = e.bias ? _mm512_maskz_loadu_ps(m1, e.bias + 16) : _mm512_setzero_ps();
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) {
    __m512 v0 = a0[r], v1 = a1[r];
    if (e.bias) {
      v0 = _mm512_add_ps(v0, b0);
      v1 = _mm512_add_ps(v1, b1);
    }
    if (e.mode == 1) {
      v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, e.other + r * e.ldo));
      v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, e.other + r * e.ldo + 16));
    } else if (e.mode == 2) {
      v0 = _mm512_mul_ps(v0, _mm512_maskz_loadu_ps(m0, e.other + r * e.ldo));
      v1 = _mm512_mul_ps(v1, _mm512_maskz_loadu_ps(m1, e.other + r * e.ldo + 16));
    }
    _mm512_mask_storeu_ps(e.y + r * e.ldy, m0, v0);
    _mm512_mask_storeu_ps(e.y + r * e.ldy + 16, m1, v1);
  }
}

// tile<rows> for a runtime row count in [1, MR]
template <int MR>
inline void tile_rows(int rows, const float* x, int64_t ldx, const float* panel, int64_t k0, int64_t k1, float* buf,
                      bool first, bool last, const Epilogue& e, const float* prefetch) {
  if constexpr (MR >= 1) {
    if (rows == MR) return tile<MR>(x, ldx, panel, k0, k1, buf, first, last, e, prefetch);
    tile_rows<MR - 1>(rows, x, ldx, panel, k0, k1, buf, first, last, e, prefetch);
  }
}

void linear_panels(const float* x, const float* packed, const float* bias, const float* other, int mode, float* y,
                   int64_t rows, int64_t n, int64_t k, int64_t begin, int64_t end) {
  const int64_t tiles = (rows + kMaxRows - 1) / kMaxRows;
  const int64_t block = tiles == 1 ? k : kBlock;  // one tile: the whole of K in registers
  std::vector<float> buf(tiles > 1 ? rows * kPanel : 0);
  for (int64_t p = begin; p < end; ++p) {
    const float* panel = packed + p * k * kPanel;
    const int64_t n0 = p * kPanel;
    for (int64_t k0 = 0; k0 < k; k0 += block) {
      const int64_t k1 = std::min(k, k0 + block);
      const float* next = nullptr;  // what the first tile prefetches
      if (tiles == 1) next = panel + (k0 + kAhead) * kPanel;  // reads past a panel's end are harmless prefetches
      else if (k1 < k) next = panel + k1 * kPanel;            // this panel's next block
      else if (p + 1 < end) next = panel + k * kPanel;        // the next panel's first block
      for (int64_t t = 0; t < tiles; ++t) {
        const int64_t r0 = rows * t / tiles, r1 = rows * (t + 1) / tiles;
        const Epilogue e{y + r0 * n + n0, n, std::min(kPanel, n - n0), bias ? bias + n0 : nullptr,
                         other ? other + r0 * n + n0 : nullptr, n, mode};
        tile_rows<kMaxRows>(static_cast<int>(r1 - r0), x + r0 * k, k, panel, k0, k1, buf.data() + r0 * kPanel,
                            k0 == 0, k1 == k, e, t == 0 ? next : nullptr);
      }
    }
  }
}
#endif

}  // namespace

bool panel_linear_available() {
#if defined(__AVX512F__)
  return true;
#else
  return false;
#endif
}

torch::Tensor pack_panel_weight(torch::Tensor weight) {
  TORCH_CHECK(weight.device().is_cpu() && weight.scalar_type() == at::kFloat && weight.dim() == 2,
              "pack_panel_weight: a float32 CPU [out, in] weight");
  const int64_t n = weight.size(0), k = weight.size(1), panels = (n + kPanel - 1) / kPanel;
  auto w = weight.contiguous();
  auto out = torch::zeros({panels, k, kPanel}, w.options());
  const float* src = w.data_ptr<float>();
  float* dst = out.data_ptr<float>();
  at::parallel_for(0, panels, 1, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p)
      for (int64_t c = 0; c < kPanel && p * kPanel + c < n; ++c)
        for (int64_t i = 0; i < k; ++i) dst[(p * k + i) * kPanel + c] = src[(p * kPanel + c) * k + i];
  });
  return out;
}

torch::Tensor panel_linear(torch::Tensor x, torch::Tensor packed, int64_t out_features,
                           c10::optional<torch::Tensor> bias, c10::optional<torch::Tensor> other, int64_t mode) {
#if defined(__AVX512F__)
  TORCH_CHECK(x.device().is_cpu() && x.scalar_type() == at::kFloat && x.dim() == 2,
              "panel_linear: x must be a float32 CPU [rows, in] tensor");
  TORCH_CHECK(packed.scalar_type() == at::kFloat && packed.dim() == 3 && packed.size(2) == kPanel &&
                  packed.is_contiguous(),
              "panel_linear: packed must come from pack_panel_weight");
  const int64_t rows = x.size(0), k = x.size(1), n = out_features, panels = packed.size(0);
  TORCH_CHECK(packed.size(1) == k, "panel_linear: x has ", k, " features, the weight ", packed.size(1));
  TORCH_CHECK(n > (panels - 1) * kPanel && n <= panels * kPanel, "panel_linear: out_features ", n,
              " does not match ", panels, " panels");
  TORCH_CHECK(mode >= 0 && mode <= 2, "panel_linear: mode is 0 (none), 1 (add) or 2 (mul)");
  TORCH_CHECK((mode == 0) == !other.has_value(), "panel_linear: other is needed exactly for add and mul");
  auto xc = x.contiguous();
  torch::Tensor bc, oc;
  if (bias) {
    bc = bias->contiguous();
    TORCH_CHECK(bc.scalar_type() == at::kFloat && bc.numel() == n, "panel_linear: bias must be float32 [out]");
  }
  if (other) {
    oc = other->contiguous();
    TORCH_CHECK(oc.scalar_type() == at::kFloat && oc.dim() == 2 && oc.size(0) == rows && oc.size(1) == n,
                "panel_linear: other must be float32 [rows, out]");
  }
  auto y = torch::empty({rows, n}, xc.options());
  if (rows == 0 || n == 0) return y;
  const float* xp = xc.data_ptr<float>();
  const float* wp = packed.data_ptr<float>();
  const float* bp = bias ? bc.data_ptr<float>() : nullptr;
  const float* op = other ? oc.data_ptr<float>() : nullptr;
  float* yp = y.data_ptr<float>();
  at::parallel_for(0, panels, 1, [&](int64_t begin, int64_t end) {
    linear_panels(xp, wp, bp, op, static_cast<int>(mode), yp, rows, n, k, begin, end);
  });
  return y;
#else
  TORCH_CHECK(false, "panel_linear: built without AVX-512");
#endif
}
