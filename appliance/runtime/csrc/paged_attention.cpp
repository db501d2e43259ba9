// Paged decode attention for the CPU, reading K/V blocks in place through the block table.
//
// One task per (sequence, KV head[, KV split]): the whole GQA group of query heads that share the KV head is served by
// one pass over its keys and values (each K/V row is read once for all Hq/Hkv query heads). Online softmax per block,
// fp32 accumulation, fp32 or bf16 caches. When there are fewer (sequence, head) tasks than threads, long contexts are
// split into partitions whose partial results (max, sum, accumulator) are merged afterwards. With AVX-512 (head_dim
// 64 and 128) a group's accumulators stay in registers (attend_chunk_avx512); otherwise the general loop.
//
// Two more float32 operations of the decoder: rotary_write_kv (rotary of q and k with the reference's bits, K/V into
// the cache) and rms_norm (one pass per row). The module also binds linear.cpp's float32 linear for few rows.
//
// Cache layout: [num_blocks, block_size, Hkv, D] (the engine's; see docs/engine.md). Built by
// appliance/runtime/cpu_extension.py; never imported directly.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

inline float bf16_to_float(uint16_t bits) {
  uint32_t widened = static_cast<uint32_t>(bits) << 16;
  float out;
  std::memcpy(&out, &widened, sizeof(out));
  return out;
}

// A cache row as fp32: the row itself for an fp32 cache, converted into `scratch` for bf16.
inline const float* row_as_float(const float* row, float* /*scratch*/, int64_t /*dim*/) { return row; }

inline const float* row_as_float(const c10::BFloat16* row, float* scratch, int64_t dim) {
  const uint16_t* bits = reinterpret_cast<const uint16_t*>(row);
#pragma omp simd
  for (int64_t d = 0; d < dim; ++d) scratch[d] = bf16_to_float(bits[d]);
  return scratch;
}

// exp(x) for x <= 0 (scores minus their running max), vectorizable: 2^n * e^r with |r| <= ln2/2, Cephes' degree-6
// polynomial (relative error ~1e-7); inputs below -87 give ~1e-38 instead of a denormal or 0.
inline float exp_nonpositive(float x) {
  x = std::max(x, -87.0f);
  const int32_t n = static_cast<int32_t>(x * 1.44269504088896341f - 0.5f);
  const float nf = static_cast<float>(n);
  const float r = x - nf * 0.693359375f + nf * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.f;
  const int32_t bits = (n + 127) << 23;
  float two_n;
  std::memcpy(&two_n, &bits, sizeof(two_n));
  return p * two_n;
}

inline float dot(const float* a, const float* b, int64_t dim) {
  float sum = 0.f;
#pragma omp simd reduction(+ : sum)
  for (int64_t d = 0; d < dim; ++d) sum += a[d] * b[d];
  return sum;
}

// Four dot products of `q` with four rows at once: independent sums that share each load of q.
inline void dot4(const float* q, const float* const* r, int64_t dim, float* out) {
  float s0 = 0.f, s1 = 0.f, s2 = 0.f, s3 = 0.f;
  const float *r0 = r[0], *r1 = r[1], *r2 = r[2], *r3 = r[3];
#pragma omp simd reduction(+ : s0, s1, s2, s3)
  for (int64_t d = 0; d < dim; ++d) {
    s0 += q[d] * r0[d];
    s1 += q[d] * r1[d];
    s2 += q[d] * r2[d];
    s3 += q[d] * r3[d];
  }
  out[0] = s0;
  out[1] = s1;
  out[2] = s2;
  out[3] = s3;
}

// y += p0*r0 + p1*r1 + p2*r2 + p3*r3: one load and store of y for four value rows.
inline void axpy4(const float* p, const float* const* r, float* y, int64_t dim) {
  const float p0 = p[0], p1 = p[1], p2 = p[2], p3 = p[3];
  const float *r0 = r[0], *r1 = r[1], *r2 = r[2], *r3 = r[3];
#pragma omp simd
  for (int64_t d = 0; d < dim; ++d) y[d] += p0 * r0[d] + p1 * r1[d] + p2 * r2[d] + p3 * r3[d];
}

inline void axpy(float alpha, const float* x, float* y, int64_t dim) {
#pragma omp simd
  for (int64_t d = 0; d < dim; ++d) y[d] += alpha * x[d];
}

inline void scale_row(float alpha, float* y, int64_t dim) {
#pragma omp simd
  for (int64_t d = 0; d < dim; ++d) y[d] *= alpha;
}

struct Shapes {
  int64_t batch, q_heads, kv_heads, group, dim, block_size, table_width, num_blocks;
};

// Per-thread scratch: the scaled fp32 queries of the group, scores of one block, one block's K or V rows as fp32
// (bf16 caches only) and pointers to those rows.
struct Scratch {
  std::vector<float> q, scores, row;
  std::vector<const float*> rows;
  Scratch(const Shapes& s)
      : q(s.group * s.dim), scores(s.group * s.block_size), row(s.block_size * s.dim), rows(s.block_size) {}
};

// Ask for a later block's K/V rows of this head while this block is computed: blocks sit at random places in the
// cache, so the hardware prefetchers cannot guess them. Into L2 only (prefetcht2, locality 1) and two blocks ahead:
// a block's 128 lines asked into L1 fill its miss buffers and stall the loads of the block being computed (measured
// on a 2-core Zen 4, 64 sequences x ~450 tokens, 9:3 heads, fp32: 12 GB/s into L1 one block ahead, 16.5 GB/s into
// L2 two ahead, 15 GB/s three ahead).
constexpr int64_t kPrefetchBlocks = 2;

template <typename scalar_t>
inline void prefetch_block(const Shapes& s, const scalar_t* k_cache, const scalar_t* v_cache, int32_t block,
                           int64_t kv_head, int64_t dim) {
  const int64_t base = (static_cast<int64_t>(block) * s.block_size * s.kv_heads + kv_head) * dim;
  const int64_t row_bytes = dim * static_cast<int64_t>(sizeof(scalar_t));
  for (int64_t t = 0; t < s.block_size; ++t) {
    const char* k = reinterpret_cast<const char*>(k_cache + base + t * s.kv_heads * dim);
    const char* v = reinterpret_cast<const char*>(v_cache + base + t * s.kv_heads * dim);
    for (int64_t off = 0; off < row_bytes; off += 64) {
      __builtin_prefetch(k + off, 0, 1);
      __builtin_prefetch(v + off, 0, 1);
    }
  }
}

// At block blk: the block kPrefetchBlocks ahead (at the first block, every block up to it), within the range and ctx.
template <typename scalar_t>
inline void prefetch_ahead(const Shapes& s, const scalar_t* k_cache, const scalar_t* v_cache, const int32_t* table,
                           int64_t blk, int64_t first_block, int64_t last_block, int64_t ctx, int64_t kv_head,
                           int64_t dim) {
  for (int64_t j = blk == first_block ? 1 : kPrefetchBlocks; j <= kPrefetchBlocks; ++j)
    if (blk + j < last_block && (blk + j) * s.block_size < ctx)
      prefetch_block(s, k_cache, v_cache, table[blk + j], kv_head, dim);
}

// The query heads of one KV head's group as fp32, times the softmax scale, into q_out [group, dim].
template <typename scalar_t>
inline void scaled_group_queries(const scalar_t* q, int64_t kv_head, int64_t group, int64_t dim, float scale,
                                 float* q_out) {
  for (int64_t g = 0; g < group; ++g) {
    const scalar_t* qg = q + (kv_head * group + g) * dim;
    for (int64_t d = 0; d < dim; ++d) q_out[g * dim + d] = static_cast<float>(qg[d]) * scale;
  }
}

// Attention of one sequence's query group over blocks [first_block, last_block) of its table, for tokens < ctx.
// Writes the group's unnormalised accumulator acc[group, dim], running max m[group] and sum l[group].
template <typename scalar_t, int64_t kDim>
void attend_blocks(const Shapes& s, const scalar_t* q, const scalar_t* k_cache, const scalar_t* v_cache,
                   const int32_t* table, int64_t ctx, int64_t kv_head, int64_t first_block, int64_t last_block,
                   float scale, Scratch& scratch, float* acc, float* m, float* l) {
  const int64_t G = s.group, D = kDim ? kDim : s.dim, bs = s.block_size;  // a constant D unrolls the row loops
  const int64_t token_stride = s.kv_heads * D;
  scaled_group_queries(q, kv_head, G, D, scale, scratch.q.data());
  std::fill(m, m + G, kNegInf);
  std::fill(l, l + G, 0.f);
  std::fill(acc, acc + G * D, 0.f);
  float* scores = scratch.scores.data();
  for (int64_t blk = first_block; blk < last_block; ++blk) {
    const int64_t n = std::min(bs, ctx - blk * bs);
    if (n <= 0) break;
    const int64_t base = (static_cast<int64_t>(table[blk]) * bs * s.kv_heads + kv_head) * D;
    const scalar_t* kb = k_cache + base;
    const scalar_t* vb = v_cache + base;
    prefetch_ahead(s, k_cache, v_cache, table, blk, first_block, last_block, ctx, kv_head, D);
    const float** rows = scratch.rows.data();
    for (int64_t t = 0; t < n; ++t) rows[t] = row_as_float(kb + t * token_stride, scratch.row.data() + t * D, D);
    for (int64_t g = 0; g < G; ++g) {
      const float* qg = scratch.q.data() + g * D;
      int64_t t = 0;
      for (; t + 4 <= n; t += 4) dot4(qg, rows + t, D, scores + g * bs + t);
      for (; t < n; ++t) scores[g * bs + t] = dot(qg, rows[t], D);
    }
    for (int64_t g = 0; g < G; ++g) {
      float* sg = scores + g * bs;
      float block_max = kNegInf;
      for (int64_t t = 0; t < n; ++t) block_max = std::max(block_max, sg[t]);
      const float new_max = std::max(m[g], block_max);
      if (new_max > m[g]) {
        const float alpha = m[g] == kNegInf ? 0.f : std::exp(m[g] - new_max);
        l[g] *= alpha;
        scale_row(alpha, acc + g * D, D);
        m[g] = new_max;
      }
      float sum = 0.f;
#pragma omp simd reduction(+ : sum)
      for (int64_t t = 0; t < n; ++t) {
        sg[t] = exp_nonpositive(sg[t] - new_max);
        sum += sg[t];
      }
      l[g] += sum;
    }
    for (int64_t t = 0; t < n; ++t) rows[t] = row_as_float(vb + t * token_stride, scratch.row.data() + t * D, D);
    for (int64_t g = 0; g < G; ++g) {
      int64_t t = 0;
      for (; t + 4 <= n; t += 4) axpy4(scores + g * bs + t, rows + t, acc + g * D, D);
      for (; t < n; ++t) axpy(scores[g * bs + t], rows[t], acc + g * D, D);
    }
  }
}

#if defined(__AVX512F__)
// ---- AVX-512 path: a whole GQA group chunk's accumulators stay in registers across the sequence's blocks ----------
//
// Per tile of up to 16 tokens: each K row is loaded once (converted from bf16 once) and multiplied into every query
// head of the chunk, leaving one 16-lane partial per (head, token); a transpose-and-add tree turns 16 partials into
// one vector of 16 scores (no per-token horizontal sum). Online softmax on that vector, vectorized exp, then each V
// row is loaded once and accumulated into the chunk's GC x D/16 accumulator registers. Chunks are sized so the
// accumulators fit the 32 vector registers beside the K/V row being read (GC * D/16 <= 24).

inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }

inline __m512 load16(const c10::BFloat16* p) {
  const __m256i bits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bits), 16));
}

// v[16] -> one vector whose lane p is the sum of the lanes of v[(p % 4) * 4 + p / 4]: callers store token t's partial
// at slot tile_slot(t), so lane t holds token t's score.
inline __m512 hsum16(const float* v /* [16][16], 64-byte aligned */) {
  __m512 r[8];
  for (int i = 0; i < 8; ++i) {  // [a.Q0+a.Q2, a.Q1+a.Q3, b.Q0+b.Q2, b.Q1+b.Q3]
    const __m512 a = _mm512_load_ps(v + 32 * i), b = _mm512_load_ps(v + 32 * i + 16);
    r[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xEE));
  }
  __m512 s[4];
  for (int i = 0; i < 4; ++i)  // quarter k: 4 partials of input 4i + k
    s[i] = _mm512_add_ps(_mm512_shuffle_f32x4(r[2 * i], r[2 * i + 1], 0x88),
                         _mm512_shuffle_f32x4(r[2 * i], r[2 * i + 1], 0xDD));
  __m512 u[2];
  for (int i = 0; i < 2; ++i)
    u[i] = _mm512_add_ps(_mm512_shuffle_ps(s[2 * i], s[2 * i + 1], 0x44), _mm512_shuffle_ps(s[2 * i], s[2 * i + 1], 0xEE));
  return _mm512_add_ps(_mm512_shuffle_ps(u[0], u[1], 0x88), _mm512_shuffle_ps(u[0], u[1], 0xDD));
}

constexpr int tile_slot(int t) { return ((t & 3) << 2) | (t >> 2); }

// exp(x) for x <= 0, 16 lanes: exp_nonpositive's polynomial.
inline __m512 exp16_nonpositive(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
  const __m512 nf = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(nf, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fmadd_ps(nf, _mm512_set1_ps(2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.f)));
  const __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(nf), _mm512_set1_epi32(127)), 23);
  return _mm512_mul_ps(p, _mm512_castsi512_ps(e));
}

// Attention of query heads [g0, g0 + GC) of one KV head over blocks [first_block, last_block), tokens < ctx.
// qs: the chunk's scaled fp32 queries [GC, D]. Writes the unnormalised accumulator acc[GC, D], max m[GC], sum l[GC].
template <typename scalar_t, int NV, int GC>
void attend_chunk_avx512(const Shapes& s, const float* qs, const scalar_t* k_cache, const scalar_t* v_cache,
                         const int32_t* table, int64_t ctx, int64_t kv_head, int64_t first_block, int64_t last_block,
                         float* acc_out, float* m_out, float* l_out) {
  constexpr int D = NV * 16;
  const int64_t bs = s.block_size, token_stride = s.kv_heads * D;
  alignas(64) float part[GC][16 * 16];
  alignas(64) float probs[GC][16];
  __m512 acc[GC][NV];
  float m[GC], l[GC];
  for (int g = 0; g < GC; ++g) {
    m[g] = kNegInf;
    l[g] = 0.f;
    for (int v = 0; v < NV; ++v) acc[g][v] = _mm512_setzero_ps();
  }
  for (int64_t blk = first_block; blk < last_block; ++blk) {
    const int64_t n_blk = std::min(bs, ctx - blk * bs);
    if (n_blk <= 0) break;
    const int64_t base = (static_cast<int64_t>(table[blk]) * bs * s.kv_heads + kv_head) * D;
    prefetch_ahead(s, k_cache, v_cache, table, blk, first_block, last_block, ctx, kv_head, D);
    for (int64_t t0 = 0; t0 < n_blk; t0 += 16) {
      const int n = static_cast<int>(std::min<int64_t>(16, n_blk - t0));
      const scalar_t* kb = k_cache + base + t0 * token_stride;
      for (int t = 0; t < n; ++t) {
        __m512 k[NV];
        for (int v = 0; v < NV; ++v) k[v] = load16(kb + t * token_stride + 16 * v);
        for (int g = 0; g < GC; ++g) {
          __m512 x = _mm512_mul_ps(_mm512_loadu_ps(qs + g * D), k[0]);
          for (int v = 1; v < NV; ++v) x = _mm512_fmadd_ps(_mm512_loadu_ps(qs + g * D + 16 * v), k[v], x);
          _mm512_store_ps(part[g] + 16 * tile_slot(t), x);
        }
      }
      for (int t = n; t < 16; ++t)
        for (int g = 0; g < GC; ++g) _mm512_store_ps(part[g] + 16 * tile_slot(t), _mm512_setzero_ps());
      const __mmask16 valid = n == 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << n) - 1);
      for (int g = 0; g < GC; ++g) {
        const __m512 scores = _mm512_mask_blend_ps(valid, _mm512_set1_ps(kNegInf), hsum16(part[g]));
        const float tile_max = _mm512_reduce_max_ps(scores);
        if (tile_max > m[g]) {
          const __m512 alpha = _mm512_set1_ps(m[g] == kNegInf ? 0.f : std::exp(m[g] - tile_max));
          for (int v = 0; v < NV; ++v) acc[g][v] = _mm512_mul_ps(acc[g][v], alpha);
          l[g] *= m[g] == kNegInf ? 0.f : std::exp(m[g] - tile_max);
          m[g] = tile_max;
        }
        const __m512 p = _mm512_maskz_mov_ps(valid, exp16_nonpositive(_mm512_sub_ps(scores, _mm512_set1_ps(m[g]))));
        l[g] += _mm512_reduce_add_ps(p);
        _mm512_store_ps(probs[g], p);
      }
      const scalar_t* vb = v_cache + base + t0 * token_stride;
      for (int t = 0; t < n; ++t) {
        __m512 val[NV];
        for (int v = 0; v < NV; ++v) val[v] = load16(vb + t * token_stride + 16 * v);
        for (int g = 0; g < GC; ++g) {
          const __m512 w = _mm512_set1_ps(probs[g][t]);
          for (int v = 0; v < NV; ++v) acc[g][v] = _mm512_fmadd_ps(w, val[v], acc[g][v]);
        }
      }
    }
  }
  for (int g = 0; g < GC; ++g) {
    m_out[g] = m[g];
    l_out[g] = l[g];
    for (int v = 0; v < NV; ++v) _mm512_storeu_ps(acc_out + g * D + 16 * v, acc[g][v]);
  }
}

// The whole group of one KV head, in chunks of at most kMaxChunk heads (kMaxChunk * NV <= 24 registers).
template <typename scalar_t, int NV>
void attend_group_avx512(const Shapes& s, const scalar_t* q, const scalar_t* k_cache, const scalar_t* v_cache,
                         const int32_t* table, int64_t ctx, int64_t kv_head, int64_t first_block, int64_t last_block,
                         float scale, Scratch& scratch, float* acc, float* m, float* l) {
  constexpr int D = NV * 16;
  constexpr int kMaxChunk = 24 / NV;
  const int64_t G = s.group;
  scaled_group_queries(q, kv_head, G, D, scale, scratch.q.data());
  for (int64_t g0 = 0; g0 < G; g0 += kMaxChunk) {
    const int chunk = static_cast<int>(std::min<int64_t>(kMaxChunk, G - g0));
    const float* qs = scratch.q.data() + g0 * D;
    float *a = acc + g0 * D, *mm = m + g0, *ll = l + g0;
#define APPLIANCE_CHUNK(GC)                                                                                      \
  case GC:                                                                                                       \
    if constexpr (GC <= kMaxChunk)                                                                               \
      attend_chunk_avx512<scalar_t, NV, GC>(s, qs, k_cache, v_cache, table, ctx, kv_head, first_block, last_block, \
                                            a, mm, ll);                                                          \
    break;
    switch (chunk) {
      APPLIANCE_CHUNK(1)
      APPLIANCE_CHUNK(2)
      APPLIANCE_CHUNK(3)
      APPLIANCE_CHUNK(4)
      APPLIANCE_CHUNK(5)
      APPLIANCE_CHUNK(6)
    }
#undef APPLIANCE_CHUNK
  }
}
#endif  // __AVX512F__

template <typename scalar_t, int64_t kDim>
void decode(const Shapes& s, const scalar_t* q, const scalar_t* k_cache, const scalar_t* v_cache,
            const int32_t* tables, const int32_t* ctx_lens, float scale, int64_t splits, scalar_t* out) {
  const int64_t G = s.group, D = s.dim;
  const int64_t blocks_per_split = (s.table_width + splits - 1) / splits;
  const int64_t tasks = s.batch * s.kv_heads * splits;
  // With one split the accumulator goes straight to the output; with several, partials are merged below.
  std::vector<float> part_acc, part_m, part_l;
  if (splits > 1) {
    part_acc.resize(tasks * G * D);
    part_m.resize(tasks * G);
    part_l.resize(tasks * G);
  }
  // Tasks are handed out from the last (decodes come sorted by context length, so the longest first): a static split
  // of the range would give one thread all the long sequences. Without splits a thread takes all of a sequence's KV
  // heads at once: they share the cache lines of its blocks ([block, slot, head, D]), so what the hardware prefetches
  // for one head is read from this core's L2 for the next instead of again from memory by another core.
  const int64_t per_grab = splits == 1 ? s.kv_heads : 1;
  std::atomic<int64_t> next{0};
  at::parallel_for(0, std::min<int64_t>(tasks / per_grab, at::get_num_threads()), 1, [&](int64_t, int64_t) {
    Scratch scratch(s);
    std::vector<float> acc(G * D), m(G), l(G);
    for (int64_t taken; (taken = next.fetch_add(per_grab)) < tasks;) {
      for (int64_t j = per_grab - 1; j >= 0; --j) {  // the grab's tasks, the sequence's heads
        const int64_t task = tasks - per_grab - taken + j;
        const int64_t split = task % splits;
        const int64_t b = task / splits / s.kv_heads;
        const int64_t h = task / splits % s.kv_heads;
        const int64_t first = split * blocks_per_split;
        const int64_t last = std::min(s.table_width, first + blocks_per_split);
        float* a = splits > 1 ? part_acc.data() + task * G * D : acc.data();
        float* mm = splits > 1 ? part_m.data() + task * G : m.data();
        float* ll = splits > 1 ? part_l.data() + task * G : l.data();
#if defined(__AVX512F__)
        if constexpr (kDim == 64 || kDim == 128)
          attend_group_avx512<scalar_t, kDim / 16>(s, q + b * s.q_heads * D, k_cache, v_cache,
                                                   tables + b * s.table_width, ctx_lens[b], h, first, last, scale,
                                                   scratch, a, mm, ll);
        else
#endif
          attend_blocks<scalar_t, kDim>(s, q + b * s.q_heads * D, k_cache, v_cache, tables + b * s.table_width,
                                        ctx_lens[b], h, first, last, scale, scratch, a, mm, ll);
        if (splits == 1) {
          scalar_t* o = out + (b * s.q_heads + h * G) * D;
          for (int64_t g = 0; g < G; ++g) {
            const float inv = 1.f / ll[g];
            for (int64_t d = 0; d < D; ++d) o[g * D + d] = static_cast<scalar_t>(a[g * D + d] * inv);
          }
        }
      }
    }
  });
  if (splits == 1) return;
  at::parallel_for(0, s.batch * s.kv_heads, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> merged(D);
    for (int64_t bh = begin; bh < end; ++bh) {
      const int64_t b = bh / s.kv_heads, h = bh % s.kv_heads;
      for (int64_t g = 0; g < G; ++g) {
        float top = kNegInf;
        for (int64_t p = 0; p < splits; ++p) top = std::max(top, part_m[(bh * splits + p) * G + g]);
        std::fill(merged.begin(), merged.end(), 0.f);
        float total = 0.f;
        for (int64_t p = 0; p < splits; ++p) {
          const int64_t i = (bh * splits + p) * G + g;
          if (part_m[i] == kNegInf) continue;
          const float w = std::exp(part_m[i] - top);
          total += w * part_l[i];
          axpy(w, part_acc.data() + i * D, merged.data(), D);
        }
        scalar_t* o = out + (b * s.q_heads + h * G + g) * D;
        const float inv = 1.f / total;
        for (int64_t d = 0; d < D; ++d) o[d] = static_cast<scalar_t>(merged[d] * inv);
      }
    }
  });
}

// The common head sizes get a compile-time D (fully unrolled rows, no loop epilogues); others the general loop.
template <typename scalar_t>
void run_decode(const Shapes& s, const scalar_t* q, const scalar_t* k_cache, const scalar_t* v_cache,
                const int32_t* tables, const int32_t* ctx_lens, float scale, int64_t splits, scalar_t* out) {
  switch (s.dim) {
    case 64: return decode<scalar_t, 64>(s, q, k_cache, v_cache, tables, ctx_lens, scale, splits, out);
    case 128: return decode<scalar_t, 128>(s, q, k_cache, v_cache, tables, ctx_lens, scale, splits, out);
    default: return decode<scalar_t, 0>(s, q, k_cache, v_cache, tables, ctx_lens, scale, splits, out);
  }
}

// Splits per (sequence, KV head): enough tasks for every thread, each split at least `min_blocks` blocks long.
int64_t choose_splits(int64_t pairs, int64_t table_width, int64_t threads, int64_t min_blocks) {
  if (pairs >= threads || table_width < 2 * min_blocks) return 1;
  const int64_t wanted = (threads + pairs - 1) / pairs;
  return std::max<int64_t>(1, std::min(wanted, table_width / min_blocks));
}

// ---- Rotary embedding of q and k, and this step's K/V written into the cache, in one pass (float32) ----------------
//
// The reference's products and sum, each rounded on its own (no fused multiply-add, so the bits are
// model/llama.py rotate_qk's and Hugging Face's): out = x * cos + swap_halves(x) * sin_signed, where sin_signed holds
// -sin in its first half (rotate_half's sign).
__attribute__((optimize("fp-contract=off"), noinline)) void rotate_row(const float* x, const float* cos,
                                                                       const float* sin_signed, float* out,
                                                                       int64_t dim) {
  const int64_t half = dim / 2;
  for (int64_t d = 0; d < half; ++d) {
    const float a = x[d] * cos[d];
    const float b = x[d + half] * sin_signed[d];
    out[d] = a + b;
  }
  for (int64_t d = half; d < dim; ++d) {
    const float a = x[d] * cos[d];
    const float b = x[d - half] * sin_signed[d];
    out[d] = a + b;
  }
}

}  // namespace

std::vector<torch::Tensor> rotary_write_kv(torch::Tensor qkv, torch::Tensor cos, torch::Tensor sin_signed,
                                           torch::Tensor slots, torch::Tensor k_cache, torch::Tensor v_cache,
                                           int64_t q_heads) {
  TORCH_CHECK(qkv.device().is_cpu() && k_cache.device().is_cpu(), "rotary_write_kv: CPU tensors only");
  TORCH_CHECK(qkv.scalar_type() == at::kFloat && cos.scalar_type() == at::kFloat &&
                  sin_signed.scalar_type() == at::kFloat && k_cache.scalar_type() == at::kFloat &&
                  v_cache.scalar_type() == at::kFloat,
              "rotary_write_kv: float32 only");
  TORCH_CHECK(slots.scalar_type() == at::kLong, "rotary_write_kv: slot_mapping must be int64");
  TORCH_CHECK(k_cache.dim() == 4 && v_cache.sizes() == k_cache.sizes() && k_cache.is_contiguous() &&
                  v_cache.is_contiguous(),
              "rotary_write_kv: contiguous caches [N, bs, Hkv, D] of one shape");
  const int64_t kv_heads = k_cache.size(2), dim = k_cache.size(3), slots_total = k_cache.size(0) * k_cache.size(1);
  TORCH_CHECK(dim % 2 == 0, "rotary_write_kv: head_dim must be even");
  TORCH_CHECK(qkv.dim() == 2 && qkv.size(1) == (q_heads + 2 * kv_heads) * dim,
              "rotary_write_kv: qkv must be [T, (q_heads + 2 kv_heads) * head_dim]");
  const int64_t tokens = qkv.size(0);
  TORCH_CHECK(cos.dim() == 2 && cos.size(0) == tokens && cos.size(1) == dim && sin_signed.sizes() == cos.sizes(),
              "rotary_write_kv: cos and sin_signed must be [T, head_dim]");
  TORCH_CHECK(slots.dim() == 1 && slots.size(0) == tokens, "rotary_write_kv: one slot per token");
  auto x = qkv.contiguous();
  auto c = cos.contiguous();
  auto sn = sin_signed.contiguous();
  auto sl = slots.contiguous();
  const int64_t* slot = sl.data_ptr<int64_t>();
  for (int64_t t = 0; t < tokens; ++t)
    TORCH_CHECK(slot[t] >= 0 && slot[t] < slots_total, "rotary_write_kv: slot ", slot[t], " of token ", t,
                " is outside the cache's ", slots_total, " slots");
  auto q = torch::empty({tokens, q_heads, dim}, qkv.options());
  auto k = torch::empty({tokens, kv_heads, dim}, qkv.options());
  const float *xp = x.data_ptr<float>(), *cp = c.data_ptr<float>(), *sp = sn.data_ptr<float>();
  float *qp = q.data_ptr<float>(), *kp = k.data_ptr<float>();
  float *kc = k_cache.data_ptr<float>(), *vc = v_cache.data_ptr<float>();
  const int64_t width = qkv.size(1), kv_row = kv_heads * dim;
  // One thread up to 256 tokens (a few microseconds of work; waking a sleeping OpenMP thread costs more).
  at::parallel_for(0, tokens, 256, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const float* row = xp + t * width;
      const float *ct = cp + t * dim, *st = sp + t * dim;
      for (int64_t h = 0; h < q_heads; ++h) rotate_row(row + h * dim, ct, st, qp + (t * q_heads + h) * dim, dim);
      float* kt = kp + t * kv_row;
      for (int64_t h = 0; h < kv_heads; ++h) rotate_row(row + (q_heads + h) * dim, ct, st, kt + h * dim, dim);
      std::memcpy(kc + slot[t] * kv_row, kt, kv_row * sizeof(float));
      std::memcpy(vc + slot[t] * kv_row, row + (q_heads + kv_heads) * dim, kv_row * sizeof(float));
    }
  });
  return {q, k};
}

namespace {
// ---- RMSNorm (float32) ---------------------------------------------------------------------------------------------
//
// out = weight * (x * (1 / sqrt(mean(x^2) + eps))), Hugging Face's LlamaRMSNorm in float32 with the same products in
// the same order; the mean is a 16-lane sum, so it may differ from torch's reduction in the last bit.
void rms_norm_rows(const float* x, const float* w, float* out, int64_t rows, int64_t hidden, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * hidden;
    float* o = out + r * hidden;
    float lanes[16] = {0.f};
    int64_t d = 0;
    for (; d + 16 <= hidden; d += 16)
#pragma omp simd
      for (int i = 0; i < 16; ++i) lanes[i] += xr[d + i] * xr[d + i];
    float sum = 0.f;
    for (int i = 0; i < 16; ++i) sum += lanes[i];
    for (; d < hidden; ++d) sum += xr[d] * xr[d];
    const float inv = 1.f / std::sqrt(sum / static_cast<float>(hidden) + eps);
#pragma omp simd
    for (int64_t i = 0; i < hidden; ++i) o[i] = w[i] * (xr[i] * inv);
  }
}

}  // namespace

torch::Tensor rms_norm(torch::Tensor x, torch::Tensor weight, double eps) {
  TORCH_CHECK(x.device().is_cpu() && x.scalar_type() == at::kFloat && weight.scalar_type() == at::kFloat,
              "rms_norm: float32 CPU tensors only");
  TORCH_CHECK(x.dim() >= 1 && weight.dim() == 1 && x.size(-1) == weight.size(0),
              "rms_norm: weight must have x's last dimension");
  auto xc = x.contiguous();
  auto wc = weight.contiguous();
  auto out = torch::empty_like(xc);
  const int64_t hidden = x.size(-1), rows = hidden ? xc.numel() / hidden : 0;
  const float *xp = xc.data_ptr<float>(), *wp = wc.data_ptr<float>();
  float* op = out.data_ptr<float>();
  // One thread up to 256 rows: a few microseconds of work, less than waking a sleeping OpenMP thread.
  at::parallel_for(0, rows, 256, [&](int64_t begin, int64_t end) {
    rms_norm_rows(xp + begin * hidden, wp, op + begin * hidden, end - begin, hidden, static_cast<float>(eps));
  });
  return out;
}

torch::Tensor paged_decode_attention(torch::Tensor q, torch::Tensor k_cache, torch::Tensor v_cache,
                                     torch::Tensor block_tables, torch::Tensor context_lens, double scale,
                                     int64_t splits) {
  TORCH_CHECK(q.device().is_cpu() && k_cache.device().is_cpu(), "paged_decode_attention: CPU tensors only");
  TORCH_CHECK(q.dim() == 3 && k_cache.dim() == 4, "paged_decode_attention: q [B,Hq,D], caches [N,bs,Hkv,D]");
  TORCH_CHECK(v_cache.sizes() == k_cache.sizes(), "paged_decode_attention: v_cache must have k_cache's shape");
  TORCH_CHECK(q.scalar_type() == k_cache.scalar_type() && v_cache.scalar_type() == k_cache.scalar_type(),
              "paged_decode_attention: q and the caches must share a dtype");
  TORCH_CHECK(block_tables.scalar_type() == at::kInt && context_lens.scalar_type() == at::kInt,
              "paged_decode_attention: block_tables and context_lens must be int32");
  TORCH_CHECK(k_cache.is_contiguous() && v_cache.is_contiguous(), "paged_decode_attention: contiguous caches");
  Shapes s;
  s.batch = q.size(0);
  s.q_heads = q.size(1);
  s.dim = q.size(2);
  s.num_blocks = k_cache.size(0);
  s.block_size = k_cache.size(1);
  s.kv_heads = k_cache.size(2);
  TORCH_CHECK(k_cache.size(3) == s.dim, "paged_decode_attention: head_dim differs between q and the caches");
  TORCH_CHECK(s.q_heads % s.kv_heads == 0, "paged_decode_attention: query heads ", s.q_heads,
              " must be a multiple of kv heads ", s.kv_heads);
  s.group = s.q_heads / s.kv_heads;
  TORCH_CHECK(block_tables.dim() == 2 && block_tables.size(0) == s.batch && context_lens.dim() == 1 &&
                  context_lens.size(0) == s.batch,
              "paged_decode_attention: block_tables and context_lens need one row per sequence");
  s.table_width = block_tables.size(1);
  auto qc = q.contiguous();
  auto tables = block_tables.contiguous();
  auto lens = context_lens.contiguous();
  const int32_t* t = tables.data_ptr<int32_t>();
  const int32_t* c = lens.data_ptr<int32_t>();
  for (int64_t b = 0; b < s.batch; ++b) {
    TORCH_CHECK(c[b] >= 1 && c[b] <= s.table_width * s.block_size, "paged_decode_attention: context length ", c[b],
                " of sequence ", b, " is outside [1, ", s.table_width * s.block_size, "]");
    const int64_t used = (c[b] + s.block_size - 1) / s.block_size;
    for (int64_t i = 0; i < used; ++i)
      TORCH_CHECK(t[b * s.table_width + i] >= 0 && t[b * s.table_width + i] < s.num_blocks,
                  "paged_decode_attention: block id ", t[b * s.table_width + i], " out of range");
  }
  if (splits <= 0) splits = choose_splits(s.batch * s.kv_heads, s.table_width, at::get_num_threads(), 8);
  splits = std::max<int64_t>(1, std::min(splits, s.table_width));
  auto out = torch::empty({s.batch, s.q_heads, s.dim}, q.options());
  const float sc = static_cast<float>(scale);
  if (q.scalar_type() == at::kFloat) {
    run_decode<float>(s, qc.data_ptr<float>(), k_cache.data_ptr<float>(), v_cache.data_ptr<float>(), t, c, sc,
                      splits, out.data_ptr<float>());
  } else if (q.scalar_type() == at::kBFloat16) {
    run_decode<c10::BFloat16>(s, qc.data_ptr<c10::BFloat16>(), k_cache.data_ptr<c10::BFloat16>(),
                              v_cache.data_ptr<c10::BFloat16>(), t, c, sc, splits, out.data_ptr<c10::BFloat16>());
  } else {
    TORCH_CHECK(false, "paged_decode_attention: float32 and bfloat16 only, got ", q.scalar_type());
  }
  return out;
}

// linear.cpp
bool panel_linear_available();
torch::Tensor pack_panel_weight(torch::Tensor weight);
torch::Tensor panel_linear(torch::Tensor x, torch::Tensor packed, int64_t out_features,
                           c10::optional<torch::Tensor> bias, c10::optional<torch::Tensor> other, int64_t mode);

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("paged_decode_attention", &paged_decode_attention,
        "Decode attention over a paged KV cache read in place (splits <= 0: chosen from threads and lengths)",
        py::arg("q"), py::arg("k_cache"), py::arg("v_cache"), py::arg("block_tables"), py::arg("context_lens"),
        py::arg("scale"), py::arg("splits") = 0);
  m.def("rotary_write_kv", &rotary_write_kv,
        "Rotary embedding of qkv's query and key heads (float32, the reference's bits) into new q [T,Hq,D] and "
        "k [T,Hkv,D]; k and v written into the caches at slot_mapping",
        py::arg("qkv"), py::arg("cos"), py::arg("sin_signed"), py::arg("slot_mapping"), py::arg("k_cache"),
        py::arg("v_cache"), py::arg("q_heads"));
  m.def("rms_norm", &rms_norm, "RMSNorm over the last dimension, float32 (Hugging Face's order of products)",
        py::arg("x"), py::arg("weight"), py::arg("eps"));
  m.def("panel_linear_available", &panel_linear_available, "Whether panel_linear was built (it needs AVX-512)");
  m.def("pack_panel_weight", &pack_panel_weight, "A float32 [out, in] weight as panels [ceil(out/32), in, 32]",
        py::arg("weight"));
  m.def("panel_linear", &panel_linear,
        "x [rows, in] times a packed weight (+ bias), then mode 1: + other, 2: * other (float32, for few rows)",
        py::arg("x"), py::arg("packed"), py::arg("out_features"), py::arg("bias") = py::none(),
        py::arg("other") = py::none(), py::arg("mode") = 0);
}
