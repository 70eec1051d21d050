/*
 * Fused logic-layer kernels for CPUs (plain C, OpenMP, SIMD over the batch).
 *
 * Layout: neuron-major.  x is [F, B] (one contiguous row of B samples per
 * feature), y and g (= dL/dy) are [N, B], c is [N, 4], a/b are int64 [N].
 *
 *   y[n, s]  = c0 + c1*A + c2*Bv + c3*(A*Bv),   A = x[a[n], s], Bv = x[b[n], s]
 *   dc[n]    = sum_s g[n, s] * (1, A, Bv, A*Bv)
 *   dx[i, s] = sum over the consumers (n, slot) of input i of
 *              g[n, s] * (c1' + c3'*Bv)  if slot is a,   g[n, s] * (c2' + c3'*A)  if slot is b
 *
 * The input gradient is a gather over a reverse index (CSR: rev_off[F+1],
 * rev_idx[2N] = 2*n + slot, built once per layer by the Python side) so that
 * every row of dx is owned by one thread: no atomics, and the result does
 * not depend on the thread count.  dc is computed in the same pass, at the
 * a-slot visit of each neuron (its home row x[a[n]] is the row being reduced),
 * so backward reads g once.
 *
 * Rounding: the forward evaluates ((c0 + c1*A) + c2*Bv) + c3*(A*Bv) in that
 * order and the library is built with -ffp-contract=off, so the forward gives
 * the same bits on every machine, whatever FMA support the compiler finds.
 * With 0/1 inputs and the integer coefficients of a hard gate every step is
 * exact, so the output is exactly 0 or 1.  Sums over the batch use
 * OpenMP SIMD reductions (a fixed order for a given build and vector width),
 * and nothing depends on the thread count.
 *
 * No gate is written out here: the gate enters only through c (derived from
 * lgn_fpga.gates.COEFFS on the Python side).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__GNUC__) || defined(__clang__)
#define RESTRICT __restrict__
#define EXPORT __attribute__((visibility("default")))
#else
#define RESTRICT
#define EXPORT
#endif

/* Bumped whenever a signature below changes; checked by cpu.py after loading. */
#define LGN_ABI_VERSION 10

EXPORT int lgn_abi_version(void) { return LGN_ABI_VERSION; }

EXPORT int lgn_has_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

static inline int clamp_threads(int nthreads) { return nthreads < 1 ? 1 : nthreads; }

/* Rows are gathered in a random order, too short for the hardware prefetcher to learn: ask for the
 * next rows while working on the current ones. */
#if defined(__GNUC__) || defined(__clang__)
static inline void prefetch_row(const float *row, int64_t B) {
    for (int64_t s = 0; s < B; s += 16) __builtin_prefetch(row + s, 0, 3);
}
#else
static inline void prefetch_row(const float *row, int64_t B) { (void)row; (void)B; }
#endif
#define PREFETCH_AHEAD 4

/* All loops hand out work in small dynamic chunks: the number of consumers per input varies with the
 * wiring, and on a busy machine a descheduled thread must not hold a static share of the work hostage. */

/* y[n, :] for every neuron. */
EXPORT void lgn_forward(const float *RESTRICT x, int64_t B, const int64_t *RESTRICT a, const int64_t *RESTRICT b,
                        const float *RESTRICT c, float *RESTRICT y, int64_t N, int nthreads) {
    (void)nthreads;
#pragma omp parallel for num_threads(clamp_threads(nthreads)) schedule(dynamic, 128)
    for (int64_t n = 0; n < N; n++) {
        if (n + PREFETCH_AHEAD < N) {
            prefetch_row(x + a[n + PREFETCH_AHEAD] * B, B);
            prefetch_row(x + b[n + PREFETCH_AHEAD] * B, B);
        }
        const float *RESTRICT xa = x + a[n] * B;
        const float *RESTRICT xb = x + b[n] * B;
        float *RESTRICT yn = y + n * B;
        const float c0 = c[4 * n], c1 = c[4 * n + 1], c2 = c[4 * n + 2], c3 = c[4 * n + 3];
#pragma omp simd
        for (int64_t s = 0; s < B; s++) {
            const float A = xa[s], Bv = xb[s];
            yn[s] = ((c0 + c1 * A) + c2 * Bv) + c3 * (A * Bv);
        }
    }
}

/* dc only (the first layer, whose input needs no gradient): one neuron per iteration. */
EXPORT void lgn_backward_c(const float *RESTRICT x, int64_t B, const int64_t *RESTRICT a, const int64_t *RESTRICT b,
                           const float *RESTRICT g, float *RESTRICT dc, int64_t N, int nthreads) {
    (void)nthreads;
#pragma omp parallel for num_threads(clamp_threads(nthreads)) schedule(dynamic, 128)
    for (int64_t n = 0; n < N; n++) {
        if (n + PREFETCH_AHEAD < N) {
            prefetch_row(x + a[n + PREFETCH_AHEAD] * B, B);
            prefetch_row(x + b[n + PREFETCH_AHEAD] * B, B);
        }
        const float *RESTRICT xa = x + a[n] * B;
        const float *RESTRICT xb = x + b[n] * B;
        const float *RESTRICT gn = g + n * B;
        float s0 = 0.f, s1 = 0.f, s2 = 0.f, s3 = 0.f;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
        for (int64_t s = 0; s < B; s++) {
            const float gs = gn[s], A = xa[s], Bv = xb[s];
            const float gA = gs * A;
            s0 += gs;
            s1 += gA;
            s2 += gs * Bv;
            s3 += gA * Bv;
        }
        dc[4 * n] = s0;
        dc[4 * n + 1] = s1;
        dc[4 * n + 2] = s2;
        dc[4 * n + 3] = s3;
    }
}

/*
 * dx (and dc when dc != NULL) in one pass over the reverse index.
 * rev_off: int64 [F+1]; rev_idx: int64 [2N], entries 2*n + slot (slot 0: input is a[n], 1: input is b[n]).
 * cin: the coefficients the input gradient flows through ([N, 4]).
 * Every row of dx is written (zeros for inputs nobody reads).
 */
EXPORT void lgn_backward_xc(const float *RESTRICT x, int64_t F, int64_t B, const int64_t *RESTRICT a,
                            const int64_t *RESTRICT b, const float *RESTRICT cin, const float *RESTRICT g,
                            const int64_t *RESTRICT rev_off, const int64_t *RESTRICT rev_idx, float *RESTRICT dx,
                            float *RESTRICT dc, int nthreads) {
    (void)nthreads;
#pragma omp parallel for num_threads(clamp_threads(nthreads)) schedule(dynamic, 32)
    for (int64_t i = 0; i < F; i++) {
        float *RESTRICT acc = dx + i * B;
        const float *RESTRICT home = x + i * B;
        memset(acc, 0, (size_t)B * sizeof(float));
        const int64_t k_end = rev_off[i + 1], k_all = rev_off[F];
        for (int64_t k = rev_off[i]; k < k_end; k++) {
            /* The entries of all rows are contiguous: the next ones may belong to the next row. */
            if (k + PREFETCH_AHEAD < k_all) {
                const int64_t nc = rev_idx[k + PREFETCH_AHEAD], nn = nc >> 1;
                prefetch_row(g + nn * B, B);
                prefetch_row(x + ((nc & 1) ? a[nn] : b[nn]) * B, B);
            }
            const int64_t code = rev_idx[k];
            const int64_t n = code >> 1;
            const float *RESTRICT gn = g + n * B;
            const float c3 = cin[4 * n + 3];
            if ((code & 1) == 0) {
                /* input i is A of neuron n; the partner is B. */
                const float *RESTRICT pb = x + b[n] * B;
                const float c1 = cin[4 * n + 1];
                if (dc) {
                    float s0 = 0.f, s1 = 0.f, s2 = 0.f, s3 = 0.f;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
                    for (int64_t s = 0; s < B; s++) {
                        const float gs = gn[s], A = home[s], Bv = pb[s];
                        const float gA = gs * A;
                        acc[s] += gs * (c1 + c3 * Bv);
                        s0 += gs;
                        s1 += gA;
                        s2 += gs * Bv;
                        s3 += gA * Bv;
                    }
                    dc[4 * n] = s0;
                    dc[4 * n + 1] = s1;
                    dc[4 * n + 2] = s2;
                    dc[4 * n + 3] = s3;
                } else {
#pragma omp simd
                    for (int64_t s = 0; s < B; s++) acc[s] += gn[s] * (c1 + c3 * pb[s]);
                }
            } else {
                /* input i is B of neuron n; the partner is A. */
                const float *RESTRICT pa = x + a[n] * B;
                const float c2 = cin[4 * n + 2];
#pragma omp simd
                for (int64_t s = 0; s < B; s++) acc[s] += gn[s] * (c2 + c3 * pa[s]);
            }
        }
    }
}

/* ------------------------------------------------------------------------------------------------------------
 * Bit-packed hard forward.
 *
 * When every gate of a forward is hard (integer coefficients of one of the 16 gates: gumbel-ste, argmax) and
 * the inputs are 0/1, every activation is exactly 0 or 1.  Rows are then packed 64 samples per uint64 word
 * (sample s of a row is bit s % 64 of word s / 64; W = ceil(B / 64) words per row, the padding bits of the
 * last word are arbitrary and never read back), a gate is one bitwise operation per word, and the
 * activations saved for the backward are these bits.  Gates are named here by their truth table
 * tt = f(0,0) | f(1,0) << 1 | f(0,1) << 2 | f(1,1) << 3 (bit order: A first); the Python side derives tt
 * from c and checks that c is that gate's coefficient row.
 *
 * The backward reads bits: with A, B in {0, 1}, g*A is g or 0 and c1' + c3'*B is c1' or (c1' + c3'), so the
 * gradients are the float path's, up to the order of the float sums.
 * ------------------------------------------------------------------------------------------------------------ */

/* Below this many activations a bit-level pass takes microseconds: waking the other threads (on a busy machine,
 * waiting for a descheduled one) would cost more than it saves. */
#define SMALL_BITS (1 << 22)

/* Pack x [R, B] float into bits [R, W]; returns the number of values that are neither 0 nor 1 (then the
 * bits are meaningless and the caller must use the float path). */
EXPORT int64_t lgn_pack(const float *RESTRICT x, int64_t R, int64_t B, uint64_t *RESTRICT bits, int nthreads) {
    const int64_t W = (B + 63) / 64;
    int64_t bad = 0;
    (void)nthreads;
#pragma omp parallel for num_threads(clamp_threads(nthreads)) schedule(static) reduction(+ : bad) if (R * B >= SMALL_BITS)
    for (int64_t r = 0; r < R; r++) {
        const float *RESTRICT xr = x + r * B;
        uint64_t *RESTRICT br = bits + r * W;
        for (int64_t w = 0; w < W; w++) {
            const int64_t s0 = 64 * w, m = B - s0 < 64 ? B - s0 : 64;
            uint64_t word = 0;
            int64_t nb = 0;
            for (int64_t j = 0; j < m; j++) {
                const float v = xr[s0 + j];
                word |= (uint64_t)(v == 1.0f) << j;
                nb += (v != 0.0f) & (v != 1.0f);
            }
            br[w] = word;
            bad += nb;
        }
    }
    return bad;
}

/* tt[n] of every neuron whose coefficients c[n] are exactly those of a gate (c0 = f00, c1 = f10 - f00,
 * c2 = f01 - f00, c3 = f11 - f10 - f01 + f00 with every f in {0, 1}); returns the number of neurons that are
 * not hard (then tt is meaningless and the caller must use the float path). */
EXPORT int64_t lgn_truth_tables(const float *RESTRICT c, int64_t N, uint8_t *RESTRICT tt) {
    int64_t bad = 0;
    for (int64_t n = 0; n < N; n++) {
        const float c0 = c[4 * n], c1 = c[4 * n + 1], c2 = c[4 * n + 2], c3 = c[4 * n + 3];
        const int f00 = c0 == 1.0f, f10 = c0 + c1 == 1.0f, f01 = c0 + c2 == 1.0f, f11 = c0 + c1 + c2 + c3 == 1.0f;
        bad += c0 != (float)f00 || c1 != (float)(f10 - f00) || c2 != (float)(f01 - f00) ||
               c3 != (float)(f11 - f10 - f01 + f00);
        tt[n] = (uint8_t)(f00 | f10 << 1 | f01 << 2 | f11 << 3);
    }
    return bad;
}

/* y [R, B] float from bits [R, W]. */
EXPORT void lgn_unpack(const uint64_t *RESTRICT bits, int64_t R, int64_t B, float *RESTRICT y, int nthreads) {
    const int64_t W = (B + 63) / 64;
    (void)nthreads;
#pragma omp parallel for num_threads(clamp_threads(nthreads)) schedule(static) if (R * B >= SMALL_BITS)
    for (int64_t r = 0; r < R; r++) {
        const uint64_t *RESTRICT br = bits + r * W;
        float *RESTRICT yr = y + r * B;
        for (int64_t s0 = 0; s0 < B; s0 += 32) {
            const uint32_t h = (uint32_t)(br[s0 >> 6] >> (s0 & 63));
            if (B - s0 >= 32) {
#pragma omp simd
                for (int j = 0; j < 32; j++) yr[s0 + j] = (float)((h >> j) & 1u);
            } else {
                for (int j = 0; j < B - s0; j++) yr[s0 + j] = (float)((h >> j) & 1u);
            }
        }
    }
}

/* counts [k, B] float: the ones of each of k contiguous groups of rows of bits [N, W] (N a multiple of k), what
 * GroupSum sums, without unpacking the rows to floats.  Integer counts, so equal to the float sum of the unpacked
 * rows (both exact below 2^24). */
EXPORT void lgn_group_counts(const uint64_t *RESTRICT bits, int64_t N, int64_t B, int64_t k, float *RESTRICT counts,
                             int nthreads) {
    const int64_t W = (B + 63) / 64, per = k > 0 ? N / k : 0;
    (void)nthreads;
#pragma omp parallel for num_threads(clamp_threads(nthreads)) schedule(static) if (N * B >= SMALL_BITS)
    for (int64_t c = 0; c < k; c++) {
        for (int64_t s0 = 0; s0 < B; s0 += 64) {
            const int m = B - s0 < 64 ? (int)(B - s0) : 64;
            int32_t acc[64] = {0};
#if defined(__AVX512F__)
            /* the word's 4 x 16 bits are the lane masks of 4 masked adds */
            __m512i v[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(),
                            _mm512_setzero_si512()};
            const __m512i one = _mm512_set1_epi32(1);
            for (int64_t r = c * per; r < (c + 1) * per; r++) {
                const uint64_t w = bits[r * W + (s0 >> 6)];
                for (int q = 0; q < 4; q++) v[q] = _mm512_mask_add_epi32(v[q], (__mmask16)(w >> (16 * q)), v[q], one);
            }
            for (int q = 0; q < 4; q++) _mm512_storeu_si512((void *)(acc + 16 * q), v[q]);
#else
            for (int64_t r = c * per; r < (c + 1) * per; r++) {
                const uint64_t w = bits[r * W + (s0 >> 6)];
                for (int j = 0; j < 64; j++) acc[j] += (int32_t)((w >> j) & 1u);
            }
#endif
            for (int j = 0; j < m; j++) counts[c * B + s0 + j] = (float)acc[j];
        }
    }
}

/* ybits [N, W] = gate tt[n] of xbits rows a[n], b[n]: one bitwise operation per word. */
EXPORT void lgn_forward_bits(const uint64_t *RESTRICT x, int64_t W, const int64_t *RESTRICT a,
                             const int64_t *RESTRICT b, const uint8_t *RESTRICT tt, uint64_t *RESTRICT y,
                             int64_t N, int nthreads) {
    (void)nthreads;
#pragma omp parallel for num_threads(clamp_threads(nthreads)) schedule(static) if (N * W * 64 >= SMALL_BITS)
    for (int64_t n = 0; n < N; n++) {
        const uint64_t *RESTRICT xa = x + a[n] * W;
        const uint64_t *RESTRICT xb = x + b[n] * W;
        uint64_t *RESTRICT yn = y + n * W;
        if (W < 8) {
            /* Short rows (small batches): a branch-free sum of minterms beats a mispredicted switch. */
            const unsigned t = tt[n];
            const uint64_t m00 = -(uint64_t)(t & 1u), m10 = -(uint64_t)((t >> 1) & 1u);
            const uint64_t m01 = -(uint64_t)((t >> 2) & 1u), m11 = -(uint64_t)((t >> 3) & 1u);
            for (int64_t w = 0; w < W; w++) {
                const uint64_t A = xa[w], B = xb[w];
                yn[w] = (m00 & ~(A | B)) | (m10 & A & ~B) | (m01 & ~A & B) | (m11 & A & B);
            }
            continue;
        }
        switch (tt[n] & 15) {
#define GATE(code, expr) case code: for (int64_t w = 0; w < W; w++) { const uint64_t A = xa[w], B = xb[w]; \
                                        (void)A; (void)B; yn[w] = (expr); } break;
        GATE(0, 0)
        GATE(1, ~(A | B))
        GATE(2, A & ~B)
        GATE(3, ~B)
        GATE(4, ~A & B)
        GATE(5, ~A)
        GATE(6, A ^ B)
        GATE(7, ~(A & B))
        GATE(8, A & B)
        GATE(9, ~(A ^ B))
        GATE(10, A)
        GATE(11, A | ~B)
        GATE(12, B)
        GATE(13, ~A | B)
        GATE(14, A | B)
        GATE(15, ~(uint64_t)0)
#undef GATE
        }
    }
}

#if defined(__AVX512F__)
/* Whether the AVX-512 forms run (lgn_use_tiles: the tests compare them with the generic loops). */
static int use_tiles = 1;
#endif

/* Bit j (0..31) of h as a lane mask; the loops below are over 32-sample halves of a word, which vectorize. */
#define BIT(h, j) (((h) >> (j)) & 1u)

/* dc of one neuron, accumulated lane-wise over the half-words of its row (S[k][j]: term k of lane j) and
 * reduced once at the end: g * (1, A, B, A*B). */
typedef struct { float s[4][32]; } dc_acc;

static inline void dc_zero(dc_acc *RESTRICT d) { memset(d, 0, sizeof *d); }

#if defined(__AVX512F__)
/* The four dc sums of 16 samples, the bits as lane masks: s += g * (1, A, B, A*B). */
static inline void dc_add16(__m512 s[4], __m512 g, __mmask16 kA, __mmask16 kB) {
    s[0] = _mm512_add_ps(s[0], g);
    s[1] = _mm512_add_ps(s[1], _mm512_maskz_mov_ps(kA, g));
    s[2] = _mm512_add_ps(s[2], _mm512_maskz_mov_ps(kB, g));
    s[3] = _mm512_add_ps(s[3], _mm512_maskz_mov_ps(kA & kB, g));
}
#endif

static inline void dc_half(const float *RESTRICT gs, uint32_t ha, uint32_t hb, int m, dc_acc *RESTRICT d) {
    if (m == 32) {   /* else: the generic loop below */
#if defined(__AVX512F__)
        /* The bits are the lane masks: one k-register move per 16 samples. */
        for (int h = 0; h < 2; h++) {
            __m512 s[4];
            for (int k = 0; k < 4; k++) s[k] = _mm512_loadu_ps(d->s[k] + 16 * h);
            dc_add16(s, _mm512_loadu_ps(gs + 16 * h), (__mmask16)(ha >> (16 * h)), (__mmask16)(hb >> (16 * h)));
            for (int k = 0; k < 4; k++) _mm512_storeu_ps(d->s[k] + 16 * h, s[k]);
        }
        return;
#endif
    }
#pragma omp simd
    for (int j = 0; j < m; j++) {
        const float g = gs[j];
        const uint32_t A = BIT(ha, j), Bv = BIT(hb, j);
        d->s[0][j] += g;
        d->s[1][j] += A ? g : 0.f;
        d->s[2][j] += Bv ? g : 0.f;
        d->s[3][j] += (A & Bv) ? g : 0.f;
    }
}

static inline void dc_store(const dc_acc *RESTRICT d, float *RESTRICT out) {
    for (int k = 0; k < 4; k++) {
        float t = 0.f;
#pragma omp simd reduction(+ : t)
        for (int j = 0; j < 32; j++) t += d->s[k][j];
        out[k] = t;
    }
}

/* acc[j] += g[j] * (bit j of hp ? v1 : v0) over one half-word. */
static inline void dx_half(float *RESTRICT acc, const float *RESTRICT gs, uint32_t hp, int m, float v0, float v1) {
#if defined(__AVX512F__)
    if (m == 32) {
        const __m512 V0 = _mm512_set1_ps(v0), V1 = _mm512_set1_ps(v1);
        for (int h = 0; h < 2; h++) {
            const __m512 sel = _mm512_mask_blend_ps((__mmask16)(hp >> (16 * h)), V0, V1);
            /* mul then add, as the float path rounds it (no FMA) */
            _mm512_storeu_ps(acc + 16 * h, _mm512_add_ps(_mm512_loadu_ps(acc + 16 * h),
                                                         _mm512_mul_ps(_mm512_loadu_ps(gs + 16 * h), sel)));
        }
        return;
    }
#endif
    if (m == 32) {
#pragma omp simd
        for (int j = 0; j < 32; j++) acc[j] += gs[j] * (BIT(hp, j) ? v1 : v0);
    } else {
#pragma omp simd
        for (int j = 0; j < m; j++) acc[j] += gs[j] * (BIT(hp, j) ? v1 : v0);
    }
}

/* Walk the samples of one row pair as (offset, length, half-word of row p, half-word of row q). */
/* The row of g that neuron n reads: its own (gdiv 1), or its group's when every gdiv neurons share one row
 * (the class counts' gradient at the top of a stack); no division in the common case. */
static inline int64_t g_index(int64_t n, int64_t gdiv) { return gdiv == 1 ? n : n / gdiv; }

#define FOR_HALVES(B, rp, rq, body)                                                                   \
    for (int64_t s0 = 0; s0 < (B); s0 += 32) {                                                        \
        const int m = (B) - s0 < 32 ? (int)((B) - s0) : 32;                                           \
        const uint32_t hp = (uint32_t)((rp)[s0 >> 6] >> (s0 & 63));                                   \
        const uint32_t hq = (uint32_t)((rq)[s0 >> 6] >> (s0 & 63));                                   \
        (void)hp; (void)hq;                                                                           \
        body                                                                                          \
    }

/* dc only, from bits (the first layer, whose input needs no gradient). */
EXPORT void lgn_backward_c_bits(const uint64_t *RESTRICT x, int64_t B, const int64_t *RESTRICT a,
                                const int64_t *RESTRICT b, const float *RESTRICT g, int64_t gdiv, float *RESTRICT dc,
                                int64_t N, int nthreads) {
    const int64_t W = (B + 63) / 64;
    (void)nthreads;
#pragma omp parallel for num_threads(clamp_threads(nthreads)) schedule(dynamic, 256)
    for (int64_t n = 0; n < N; n++) {
        const uint64_t *RESTRICT xa = x + a[n] * W, *RESTRICT xb = x + b[n] * W;
        const float *RESTRICT gn = g + g_index(n, gdiv) * B;
        dc_acc d;
#if defined(__AVX512F__)
        if (use_tiles && B % 32 == 0) {
            /* dc_half's lane sums kept in 8 registers over the row (the generic form loads and stores them for
             * every half-word): the same additions in the same order, so the same bits. */
            __m512 s[2][4];
            for (int k = 0; k < 4; k++) s[0][k] = s[1][k] = _mm512_setzero_ps();
            for (int64_t s0 = 0; s0 < B; s0 += 32) {
                const uint32_t ha = (uint32_t)(xa[s0 >> 6] >> (s0 & 63)), hb = (uint32_t)(xb[s0 >> 6] >> (s0 & 63));
                for (int h = 0; h < 2; h++)
                    dc_add16(s[h], _mm512_loadu_ps(gn + s0 + 16 * h), (__mmask16)(ha >> (16 * h)),
                             (__mmask16)(hb >> (16 * h)));
            }
            for (int k = 0; k < 4; k++)
                for (int h = 0; h < 2; h++) _mm512_storeu_ps(d.s[k] + 16 * h, s[h][k]);
            dc_store(&d, dc + 4 * n);
            continue;
        }
#endif
        dc_zero(&d);
        FOR_HALVES(B, xa, xb, dc_half(gn + s0, hp, hq, m, &d);)
        dc_store(&d, dc + 4 * n);
    }
}

#if defined(__AVX512F__)
/* The AVX-512 form of lgn_backward_xc_bits below: a row of dx is done in tiles of 8 x 16 samples whose
 * accumulators stay in 8 registers over all the row's consumers (the generic form loads and stores the row
 * for every consumer), the bits are the lane masks, and each neuron's dc is summed in 8 registers (the two
 * 16-lane halves of a 32-sample word kept apart, as dc_half does) and reduced once per tile.  dx is the
 * generic form's bit for bit (the same multiply and add per element, consumers in the same order); dc adds
 * its partial sums in another order. */
#define TILE_CHUNKS 8
static inline __mmask16 bits16(const uint64_t *RESTRICT row, int64_t s) {
    return (__mmask16)(row[s >> 6] >> (s & 63));
}

/* Lanes of chunk q (16 samples) that lie in the batch, with `left` samples from the tile's start to its end. */
static inline __mmask16 chunk_mask(int64_t left, int q) {
    const int64_t r = left - 16 * (int64_t)q;
    return r >= 16 ? (__mmask16)0xFFFF : (r <= 0 ? (__mmask16)0 : (__mmask16)((1u << r) - 1));
}

/* Chunks of 16 samples in a tile with `left` samples to go (at most TILE_CHUNKS). */
static inline int tile_chunks(int64_t left) {
    return left >= 16 * TILE_CHUNKS ? TILE_CHUNKS : (int)((left + 15) / 16);
}

static void backward_xc_bits_avx512(const uint64_t *RESTRICT x, int64_t F, int64_t B, const int64_t *RESTRICT a,
                                    const int64_t *RESTRICT b, const float *RESTRICT cin, const float *RESTRICT g,
                                    int64_t gdiv, const int64_t *RESTRICT rev_off, const int64_t *RESTRICT rev_idx,
                                    float *RESTRICT dx, float *RESTRICT dc, int nthreads) {
    const int64_t W = (B + 63) / 64;
#pragma omp parallel for num_threads(clamp_threads(nthreads)) schedule(dynamic, 64)
    for (int64_t i = 0; i < F; i++) {
        const uint64_t *RESTRICT home = x + i * W;
        const int64_t k0 = rev_off[i], k_end = rev_off[i + 1], k_all = rev_off[F];
        for (int64_t t0 = 0; t0 < B; t0 += 16 * TILE_CHUNKS) {
            const int64_t left = B - t0;
            const int nch = tile_chunks(left);
            const int64_t tile = left < 16 * TILE_CHUNKS ? left : 16 * TILE_CHUNKS;
            __mmask16 valid[TILE_CHUNKS];
            __m512 acc[TILE_CHUNKS];
#pragma GCC unroll 8
            for (int c = 0; c < TILE_CHUNKS; c++) {
                valid[c] = chunk_mask(left, c);
                acc[c] = _mm512_setzero_ps();
            }
            for (int64_t k = k0; k < k_end; k++) {
                if (k + PREFETCH_AHEAD < k_all)
                    prefetch_row(g + g_index(rev_idx[k + PREFETCH_AHEAD] >> 1, gdiv) * B + t0, tile);
                const int64_t code = rev_idx[k], n = code >> 1;
                const float *RESTRICT gn = g + g_index(n, gdiv) * B + t0;
                const int is_a = (code & 1) == 0;
                const float c3 = cin[4 * n + 3], v0 = is_a ? cin[4 * n + 1] : cin[4 * n + 2];
                const __m512 V0 = _mm512_set1_ps(v0), V1 = _mm512_set1_ps(v0 + c3 * 1.0f);
                const uint64_t *RESTRICT partner = x + (is_a ? b[n] : a[n]) * W;
                if (is_a && dc) {
                    __m512 d[2][4];
#pragma GCC unroll 2
                    for (int h = 0; h < 2; h++)
                        for (int q = 0; q < 4; q++) d[h][q] = _mm512_setzero_ps();
#pragma GCC unroll 8
                    for (int c = 0; c < TILE_CHUNKS; c++) {
                        if (c >= nch) break;
                        const __mmask16 hp = bits16(partner, t0 + 16 * c), hh = bits16(home, t0 + 16 * c);
                        const __m512 gv = _mm512_maskz_loadu_ps(valid[c], gn + 16 * c);
                        acc[c] = _mm512_add_ps(acc[c], _mm512_mul_ps(gv, _mm512_mask_blend_ps(hp, V0, V1)));
                        dc_add16(d[c & 1], gv, hh, hp);
                    }
                    float *RESTRICT o = dc + 4 * n;
                    for (int q = 0; q < 4; q++) {
                        const float t = _mm512_reduce_add_ps(_mm512_add_ps(d[0][q], d[1][q]));
                        o[q] = t0 == 0 ? t : o[q] + t;
                    }
                } else {
#pragma GCC unroll 8
                    for (int c = 0; c < TILE_CHUNKS; c++) {
                        if (c >= nch) break;
                        const __mmask16 hp = bits16(partner, t0 + 16 * c);
                        const __m512 gv = _mm512_maskz_loadu_ps(valid[c], gn + 16 * c);
                        acc[c] = _mm512_add_ps(acc[c], _mm512_mul_ps(gv, _mm512_mask_blend_ps(hp, V0, V1)));
                    }
                }
            }
            float *RESTRICT out = dx + i * B + t0;
#pragma GCC unroll 8
            for (int c = 0; c < TILE_CHUNKS; c++)
                if (c < nch) _mm512_mask_storeu_ps(out + 16 * c, valid[c], acc[c]);
        }
    }
}
#endif

/* Whether lgn_backward_xc_bits, lgn_conn_grad and lgn_gumbel_coeffs take their AVX-512 forms (1, the default,
 * where the build has AVX-512) or the generic ones (0: for the tests, which compare the two); returns whether
 * the AVX-512 forms exist. */
EXPORT int lgn_use_tiles(int on) {
#if defined(__AVX512F__)
    use_tiles = on;
    return 1;
#else
    (void)on;
    return 0;
#endif
}

/* dx (and dc when dc != NULL) from bits, one pass over the reverse index (as lgn_backward_xc). */
EXPORT void lgn_backward_xc_bits(const uint64_t *RESTRICT x, int64_t F, int64_t B, const int64_t *RESTRICT a,
                                 const int64_t *RESTRICT b, const float *RESTRICT cin, const float *RESTRICT g,
                                 int64_t gdiv, const int64_t *RESTRICT rev_off, const int64_t *RESTRICT rev_idx,
                                 float *RESTRICT dx, float *RESTRICT dc, int nthreads) {
#if defined(__AVX512F__)
    if (use_tiles) {
        backward_xc_bits_avx512(x, F, B, a, b, cin, g, gdiv, rev_off, rev_idx, dx, dc, nthreads);
        return;
    }
#endif
    const int64_t W = (B + 63) / 64;
    (void)nthreads;
#pragma omp parallel for num_threads(clamp_threads(nthreads)) schedule(dynamic, 64)
    for (int64_t i = 0; i < F; i++) {
        float *RESTRICT acc = dx + i * B;
        const uint64_t *RESTRICT home = x + i * W;
        memset(acc, 0, (size_t)B * sizeof(float));
        const int64_t k_end = rev_off[i + 1], k_all = rev_off[F];
        for (int64_t k = rev_off[i]; k < k_end; k++) {
            if (k + PREFETCH_AHEAD < k_all) prefetch_row(g + g_index(rev_idx[k + PREFETCH_AHEAD] >> 1, gdiv) * B, B);
            const int64_t code = rev_idx[k];
            const int64_t n = code >> 1;
            const float *RESTRICT gn = g + g_index(n, gdiv) * B;
            const float c3 = cin[4 * n + 3];
            if ((code & 1) == 0) {
                /* input i is A of neuron n; the partner is B: d/dA = c1 + c3*B. */
                const float c1 = cin[4 * n + 1];
                const uint64_t *RESTRICT pb = x + b[n] * W;
                if (dc) {
                    dc_acc d;
                    dc_zero(&d);
                    FOR_HALVES(B, home, pb, { dx_half(acc + s0, gn + s0, hq, m, c1, c1 + c3 * 1.0f);
                                              dc_half(gn + s0, hp, hq, m, &d); })
                    dc_store(&d, dc + 4 * n);
                } else {
                    FOR_HALVES(B, home, pb, dx_half(acc + s0, gn + s0, hq, m, c1, c1 + c3 * 1.0f);)
                }
            } else {
                /* input i is B of neuron n; the partner is A: d/dB = c2 + c3*A. */
                const float c2 = cin[4 * n + 2];
                const uint64_t *RESTRICT pa = x + a[n] * W;
                FOR_HALVES(B, home, pa, dx_half(acc + s0, gn + s0, hq, m, c2, c2 + c3 * 1.0f);)
            }
        }
    }
}

/* ------------------------------------------------------------------------------------------------------------
 * Gumbel-STE coefficients of a layer in one pass (what lgn_fpga.train.model forms with a dozen torch ops):
 *   zs = z + scale * g          (g: the Gumbel noise [N, 16]; NULL for no noise; with keyed, g NULL: the
 *                                values of lgn_gumbel_noise's stream of key, made block by block where used)
 *   k  = argmax zs              (the first maximum, as torch.argmax)   c_hard[n] = M[k]
 *   p  = softmax(zs / tau)      c_soft[n] = p @ M                       (p saved for the backward)
 * zs and k are computed exactly as torch does (one multiply, one add), so the sampled gate is the reference's;
 * the softmax may differ from torch's in the last bits (another exp).  M: [16, 4] coefficient rows.
 *   tt[n] (when tt != NULL) = the truth table of gate k, as lgn_truth_tables derives it from M's row; returns 1
 *   when it wrote them, 0 when not (tt NULL, or M's rows not the 16 gates).
 * ------------------------------------------------------------------------------------------------------------ */
#include <math.h>

/* e^x for x <= 0 (x below -87 gives ~0), relative error below 2e-7: range reduction x = k ln2 + r, |r| <= ln2/2,
 * a degree-6 polynomial, 2^k from the exponent bits.  Written out so that the softmax vectorizes (libm's expf
 * is a call per element). */
#define EXP_LO -87.0f                          /* the one definition of both forms (exp_nonpos16 below) */
#define EXP_LOG2E 1.44269504088896341f
#define EXP_LN2_HI 0.693145751953125f
#define EXP_LN2_LO 1.428606765330187e-06f
static const float EXP_POLY[7] = {1.0f / 720.0f, 1.0f / 120.0f, 1.0f / 24.0f, 1.0f / 6.0f, 0.5f, 1.0f, 1.0f};

static inline float exp_nonpos(float x) {
    x = x < EXP_LO ? EXP_LO : x;
    const float k = __builtin_rintf(x * EXP_LOG2E);
    const float r = (x - k * EXP_LN2_HI) - k * EXP_LN2_LO;
    float p = EXP_POLY[0];
    for (int i = 1; i < 7; i++) p = p * r + EXP_POLY[i];
    union { uint32_t u; float f; } e = {(uint32_t)((int32_t)k + 127) << 23};
    return p * e.f;
}

/* ------------------------------------------------------------------------------------------------------------
 * Gumbel noise: out[i] = -log(-log(u_i)), u_i uniform in (0, 1), a pure function of (key, i).
 *
 * The stream is counter-based: pair j = i / 2 is splitmix64's output for the state key + (j + 1) * golden; its
 * top 23 bits give u of element 2j, bits 8..30 that of element 2j + 1, u = (v + 1/2) / 2^23 (exact in float:
 * 2^-24 <= u <= 1 - 2^-24, so both logs are finite; the tails beyond -2.81 and 16.6 have probability 1e-7).
 * The key is drawn from the run's torch generator (train/model.py gumbel_noise), so the noise is reproducible
 * from the checkpointed generator, identical on every process of a distributed run, independent of the
 * thread count, and it vectorizes: torch's -log(-log(rand)) took 10 ns a value on one core, half of a
 * 48k-gate Gumbel-STE step.  tests/kernels/test_noise.py checks every value against a numpy transcription.
 * ------------------------------------------------------------------------------------------------------------ */
static inline uint64_t splitmix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* log(x) for normal x > 0, relative error about 1e-7: x = m 2^e with m in [sqrt(1/2), sqrt(2)),
 * log m = 2 atanh(s), s = (m - 1) / (m + 1), |s| < 0.172, five terms of the series. */
#define LOG_SQRT2 1.41421356f                   /* the one definition of both forms (log_pos16 below) */
#define LOG_LN2 0.693147180559945f
static const float LOG_POLY[6] = {1.0f / 11.0f, 1.0f / 9.0f, 1.0f / 7.0f, 1.0f / 5.0f, 1.0f / 3.0f, 1.0f};

static inline float log_pos(float x) {
    union { float f; uint32_t u; } v = {x};
    int32_t e = (int32_t)(v.u >> 23) - 127;
    v.u = (v.u & 0x7fffffu) | 0x3f800000u;
    const int big = v.f > LOG_SQRT2;
    const float m = big ? v.f * 0.5f : v.f;
    e += big;
    const float f = m - 1.0f;
    const float s = f / (2.0f + f), z = s * s;
    float p = LOG_POLY[0];
    for (int i = 1; i < 6; i++) p = p * z + LOG_POLY[i];
    return (float)e * LOG_LN2 + 2.0f * s * p;
}

static inline float gumbel_of(uint32_t v23) {
    const float u = ((float)v23 + 0.5f) * (1.0f / 8388608.0f);
    return -log_pos(-log_pos(u));
}

#define GOLDEN 0x9E3779B97F4A7C15ULL
/* Pair j of the stream of key: its even value from the top 23 bits, its odd one from bits 8..30. */
static inline uint64_t stream_pair(uint64_t key, int64_t j) { return splitmix64(key + (uint64_t)(j + 1) * GOLDEN); }
static inline float stream_even(uint64_t h) { return gumbel_of((uint32_t)(h >> 41)); }
static inline float stream_odd(uint64_t h) { return gumbel_of((uint32_t)(h >> 8) & 0x7fffffu); }

/* The Gumbel-STE ops below (noise, coefficients and their backward) split a layer over the threads from this many
 * neurons (16 logits, 16 noise values each): below it a parallel region costs more than it saves. */
#define PAR_NEURONS 4096

#if defined(__AVX512F__) && defined(__AVX512DQ__)
/* log_pos on 16 lanes: the same operations in the same order (bit for bit). */
static inline __m512 log_pos16(__m512 x) {
    const __m512i v = _mm512_castps_si512(x);
    __m512i e = _mm512_sub_epi32(_mm512_srli_epi32(v, 23), _mm512_set1_epi32(127));
    __m512 m = _mm512_castsi512_ps(_mm512_or_si512(_mm512_and_si512(v, _mm512_set1_epi32(0x7fffff)),
                                                   _mm512_set1_epi32(0x3f800000)));
    const __mmask16 big = _mm512_cmp_ps_mask(m, _mm512_set1_ps(LOG_SQRT2), _CMP_GT_OQ);
    m = _mm512_mask_mul_ps(m, big, m, _mm512_set1_ps(0.5f));
    e = _mm512_mask_add_epi32(e, big, e, _mm512_set1_epi32(1));
    const __m512 f = _mm512_sub_ps(m, _mm512_set1_ps(1.0f));
    const __m512 s = _mm512_div_ps(f, _mm512_add_ps(_mm512_set1_ps(2.0f), f)), z = _mm512_mul_ps(s, s);
    __m512 p = _mm512_set1_ps(LOG_POLY[0]);
    for (int i = 1; i < 6; i++) p = _mm512_add_ps(_mm512_mul_ps(p, z), _mm512_set1_ps(LOG_POLY[i]));
    return _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(e), _mm512_set1_ps(LOG_LN2)),
                         _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(2.0f), s), p));
}

static inline __m512 gumbel16(__m512i v23) {
    const __m512 u = _mm512_mul_ps(_mm512_add_ps(_mm512_cvtepi32_ps(v23), _mm512_set1_ps(0.5f)),
                                   _mm512_set1_ps(1.0f / 8388608.0f));
    const __m512 sign = _mm512_set1_ps(-0.0f);
    return _mm512_xor_ps(log_pos16(_mm512_xor_ps(log_pos16(u), sign)), sign);
}

static inline __m512i splitmix64_8(__m512i z) {
    z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 30)), _mm512_set1_epi64((long long)0xBF58476D1CE4E5B9ULL));
    z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 27)), _mm512_set1_epi64((long long)0x94D049BB133111EBULL));
    return _mm512_xor_si512(z, _mm512_srli_epi64(z, 31));
}

/* Pairs j0 .. j0 + 15 of lgn_gumbel_noise (out: their 32 values), bit for bit the generic loop's: the two
 * values of a pair are computed 16 at a time (the generic loop compiled to 8-lane halves) and interleaved. */
static inline void gumbel_noise32(float *RESTRICT out, uint64_t key, int64_t j0) {
    const __m512i G = _mm512_set1_epi64((long long)GOLDEN);
    const __m512i j = _mm512_add_epi64(_mm512_set1_epi64(j0 + 1), _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0));
    const __m512i kk = _mm512_set1_epi64((long long)key);
    const __m512i h0 = splitmix64_8(_mm512_add_epi64(kk, _mm512_mullo_epi64(j, G)));
    const __m512i h1 = splitmix64_8(_mm512_add_epi64(kk, _mm512_mullo_epi64(_mm512_add_epi64(j, _mm512_set1_epi64(8)), G)));
    const __m512i mask = _mm512_set1_epi64(0x7fffff);
    const __m512i ev = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi64_epi32(_mm512_srli_epi64(h0, 41))),
                                          _mm512_cvtepi64_epi32(_mm512_srli_epi64(h1, 41)), 1);
    const __m512i od = _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm512_cvtepi64_epi32(_mm512_and_si512(_mm512_srli_epi64(h0, 8), mask))),
        _mm512_cvtepi64_epi32(_mm512_and_si512(_mm512_srli_epi64(h1, 8), mask)), 1);
    const __m512 ge = gumbel16(ev), go = gumbel16(od);
    const __m512i lo = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const __m512i hi = _mm512_add_epi32(lo, _mm512_set1_epi32(8));
    _mm512_storeu_ps(out, _mm512_permutex2var_ps(ge, lo, go));
    _mm512_storeu_ps(out + 16, _mm512_permutex2var_ps(ge, hi, go));
}
#endif

/* Values i0 .. i0 + count - 1 of the stream of key into out. */
static void noise_fill(float *RESTRICT out, int64_t i0, int64_t count, uint64_t key) {
    if (count <= 0) return;
    if (i0 & 1) {                      /* the odd half of a pair first */
        *out++ = stream_odd(stream_pair(key, i0 / 2));
        i0++;
        count--;
    }
    const int64_t j0 = i0 / 2, pairs = count / 2;
    int64_t q = 0;
#if defined(__AVX512F__) && defined(__AVX512DQ__)
    if (use_tiles)
        for (; q + 16 <= pairs; q += 16) gumbel_noise32(out + 2 * q, key, j0 + q);
#endif
    for (; q < pairs; q++) {
        const uint64_t h = stream_pair(key, j0 + q);
        out[2 * q] = stream_even(h);
        out[2 * q + 1] = stream_odd(h);
    }
    if (count & 1) out[count - 1] = stream_even(stream_pair(key, j0 + pairs));   /* the even half of a last pair */
}

/* The noise a block of values i0 .. i0 + count - 1 adds: g's (NULL: none), or with keyed the stream's, made into
 * buf (count floats). */
static inline const float *noise_at(const float *RESTRICT g, int keyed, uint64_t key, int64_t i0, int64_t count,
                                    float *RESTRICT buf) {
    if (!keyed) return g ? g + i0 : NULL;
    noise_fill(buf, i0, count, key);
    return buf;
}

EXPORT void lgn_gumbel_noise(float *RESTRICT out, int64_t n, uint64_t key, int nthreads) {
    const int64_t per = 4096, tasks = (n + per - 1) / per;   /* values per task (even: whole pairs) */
#pragma omp parallel for num_threads(clamp_threads(nthreads)) schedule(static) if (n >= 16 * PAR_NEURONS)
    for (int64_t t = 0; t < tasks; t++) {
        const int64_t i0 = t * per;
        noise_fill(out + i0, i0, i0 + per < n ? per : n - i0, key);
    }
}

/* One neuron (the tail of a block loop below). */
static int gumbel_one(const float *RESTRICT zn, const float *RESTRICT gn, float scale, float tau,
                      const float *RESTRICT M, float *RESTRICT ch, float *RESTRICT cs, float *RESTRICT pn) {
    float zs[16], y[16], e[16], best = -INFINITY, mx = -INFINITY, sum = 0.f;
    for (int j = 0; j < 16; j++) zs[j] = gn ? zn[j] + scale * gn[j] : zn[j];
    for (int j = 0; j < 16; j++) best = zs[j] > best ? zs[j] : best;
    int k = 0;
    while (k < 15 && !(zs[k] == best)) k++;   /* the first maximum, as torch.argmax */
    for (int j = 0; j < 16; j++) {
        y[j] = zs[j] / tau;
        mx = y[j] > mx ? y[j] : mx;
    }
    for (int j = 0; j < 16; j++) {
        e[j] = exp_nonpos(y[j] - mx);
        sum += e[j];
    }
    for (int j = 0; j < 16; j++) pn[j] = e[j] / sum;
    for (int i = 0; i < 4; i++) {
        float t = 0.f;
        for (int j = 0; j < 16; j++) t += pn[j] * M[4 * j + i];
        cs[i] = t;
        ch[i] = M[4 * k + i];
    }
    return k;
}

#define GBLK 16

/* One neuron of lgn_gumbel_coeffs_backward. */
static inline void gumbel_bwd_one(const float *RESTRICT pn, const float *RESTRICT dcn, float tau,
                                  const float *RESTRICT M, float *RESTRICT dzn) {
    float gp[16], dot = 0.f;
    const float d0 = dcn[0], d1 = dcn[1], d2 = dcn[2], d3 = dcn[3];
    for (int j = 0; j < 16; j++)
        gp[j] = ((0.f + M[4 * j] * d0) + M[4 * j + 1] * d1) + M[4 * j + 2] * d2 + M[4 * j + 3] * d3;
    for (int j = 0; j < 16; j++) dot += pn[j] * gp[j];   /* in order */
    for (int j = 0; j < 16; j++) dzn[j] = pn[j] * (gp[j] - dot) / tau;
}

#if defined(__AVX512F__)
/* The 16 x 16 transpose of r (row j, lane l -> row l, lane j): four rounds of two-source shuffles. */
static inline void transpose16(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4)
        for (int h = 0; h < 2; h++) {
            const __m512d u = _mm512_castps_pd(t[i + h]), v = _mm512_castps_pd(t[i + 2 + h]);
            r[i + 2 * h] = _mm512_castpd_ps(_mm512_unpacklo_pd(u, v));
            r[i + 2 * h + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(u, v));
        }
    for (int i = 0; i < 16; i += 8)
        for (int h = 0; h < 4; h++) {
            t[i + h] = _mm512_shuffle_f32x4(r[i + h], r[i + 4 + h], 0x88);
            t[i + 4 + h] = _mm512_shuffle_f32x4(r[i + h], r[i + 4 + h], 0xDD);
        }
    for (int h = 0; h < 8; h++) {
        r[h] = _mm512_shuffle_f32x4(t[h], t[h + 8], 0x88);
        r[h + 8] = _mm512_shuffle_f32x4(t[h], t[h + 8], 0xDD);
    }
}

/* exp_nonpos on 16 lanes: the same operations in the same order (bit for bit). */
static inline __m512 exp_nonpos16(__m512 x) {
    const __m512 lo = _mm512_set1_ps(EXP_LO);
    x = _mm512_mask_mov_ps(x, _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ), lo);
    const __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(EXP_LOG2E)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 r = _mm512_sub_ps(_mm512_sub_ps(x, _mm512_mul_ps(k, _mm512_set1_ps(EXP_LN2_HI))),
                                   _mm512_mul_ps(k, _mm512_set1_ps(EXP_LN2_LO)));
    __m512 p = _mm512_set1_ps(EXP_POLY[0]);
    for (int i = 1; i < 7; i++) p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(EXP_POLY[i]));
    const __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvttps_epi32(k), _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(p, _mm512_castsi512_ps(e));
}

/* One block of 16 neurons of lgn_gumbel_coeffs below, bit for bit its generic loop: the block's 16 x 16 logits
 * are loaded as rows and transposed in registers (the generic loop's strided reads compiled to scalar loads),
 * so that every step is the same vertical operation, in the same order, as there.  k: the sampled gates. */
static inline void gumbel_block_avx512(const float *RESTRICT z, const float *RESTRICT g, float scale, float tau,
                                       const float *RESTRICT M, float *RESTRICT c_hard, float *RESTRICT c_soft,
                                       float *RESTRICT p, int k_out[GBLK]) {
    __m512 zs[16];
    const __m512 vs = _mm512_set1_ps(scale), vt = _mm512_set1_ps(tau);
    for (int l = 0; l < 16; l++) {
        zs[l] = _mm512_loadu_ps(z + 16 * l);
        if (g) zs[l] = _mm512_add_ps(zs[l], _mm512_mul_ps(vs, _mm512_loadu_ps(g + 16 * l)));
    }
    transpose16(zs);                           /* zs[j]: logit j of the 16 neurons */
    /* y = zs / tau, once (the generic loop divides twice, the same quotient); x / 1 is x, bit for bit. */
    __m512 y[16];
    for (int j = 0; j < 16; j++) y[j] = tau == 1.0f ? zs[j] : _mm512_div_ps(zs[j], vt);
    __m512 best = zs[0], mx = y[0], sum = _mm512_setzero_ps();
    __m512i k = _mm512_setzero_si512();
    for (int j = 1; j < 16; j++) {
        const __mmask16 up = _mm512_cmp_ps_mask(zs[j], best, _CMP_GT_OQ);   /* strictly greater: the first max */
        k = _mm512_mask_mov_epi32(k, up, _mm512_set1_epi32(j));
        best = _mm512_mask_mov_ps(best, up, zs[j]);
        mx = _mm512_mask_mov_ps(mx, _mm512_cmp_ps_mask(y[j], mx, _CMP_GT_OQ), y[j]);
    }
    for (int j = 0; j < 16; j++) {
        zs[j] = exp_nonpos16(_mm512_sub_ps(y[j], mx));
        sum = _mm512_add_ps(sum, zs[j]);
    }
    __m512 cs[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    for (int j = 0; j < 16; j++) {
        zs[j] = _mm512_div_ps(zs[j], sum);
        for (int i = 0; i < 4; i++)
            cs[i] = _mm512_add_ps(cs[i], _mm512_mul_ps(zs[j], _mm512_set1_ps(M[4 * j + i])));
    }
    transpose16(zs);                           /* back to one row of 16 probabilities per neuron */
    for (int l = 0; l < 16; l++) _mm512_storeu_ps(p + 16 * l, zs[l]);
    float csl[4][GBLK];
    for (int i = 0; i < 4; i++) _mm512_storeu_ps(csl[i], cs[i]);
    _mm512_storeu_si512((void *)k_out, k);
    for (int l = 0; l < GBLK; l++)
        for (int i = 0; i < 4; i++) {
            c_soft[4 * l + i] = csl[i][l];
            c_hard[4 * l + i] = M[4 * k_out[l] + i];
        }
}
#endif

EXPORT int lgn_gumbel_coeffs(const float *RESTRICT z, const float *RESTRICT g, float scale, float tau,
                             const float *RESTRICT M, int64_t N, float *RESTRICT c_hard, float *RESTRICT c_soft,
                             float *RESTRICT p, uint8_t *RESTRICT tt, uint64_t key, int keyed, int nthreads) {
    const int64_t nblk = N / GBLK;
    uint8_t tt_of[16];   /* the truth table of each row of M, as lgn_truth_tables reads it */
    if (tt && lgn_truth_tables(M, 16, tt_of)) tt = NULL;   /* M is not 16 gates: no tables (returns 0) */
    (void)nthreads;
    /* Blocks of 16 neurons, one per SIMD lane, so that every step is a vertical vector operation (a neuron's
     * own 16 logits would need horizontal reductions at every step). */
#pragma omp parallel for num_threads(clamp_threads(nthreads)) schedule(static) if (N >= PAR_NEURONS)
    for (int64_t blk = 0; blk < nblk; blk++) {
        const int64_t n0 = blk * GBLK;
        int k[GBLK];
        float gbuf[16 * GBLK];             /* keyed: the block's noise, made here (no [N, 16] array written and read) */
        const float *RESTRICT gb = noise_at(g, keyed, key, 16 * n0, 16 * GBLK, gbuf);
#if defined(__AVX512F__)
        if (use_tiles) {
            gumbel_block_avx512(z + 16 * n0, gb, scale, tau, M, c_hard + 4 * n0, c_soft + 4 * n0, p + 16 * n0, k);
            if (tt)
                for (int l = 0; l < GBLK; l++) tt[n0 + l] = tt_of[k[l]];
            continue;
        }
#endif
        float zs[16][GBLK], best[GBLK], mx[GBLK], sum[GBLK], cs[4][GBLK];
        for (int j = 0; j < 16; j++) {
#pragma omp simd
            for (int l = 0; l < GBLK; l++) {
                const int64_t o = (n0 + l) * 16 + j;
                zs[j][l] = gb ? z[o] + scale * gb[16 * l + j] : z[o];
            }
        }
#pragma omp simd
        for (int l = 0; l < GBLK; l++) { best[l] = zs[0][l]; k[l] = 0; mx[l] = zs[0][l] / tau; sum[l] = 0.f; }
        for (int j = 1; j < 16; j++) {
#pragma omp simd
            for (int l = 0; l < GBLK; l++) {
                const int up = zs[j][l] > best[l];   /* strictly greater: the first maximum, as torch.argmax */
                k[l] = up ? j : k[l];
                best[l] = up ? zs[j][l] : best[l];
                const float yj = zs[j][l] / tau;
                mx[l] = yj > mx[l] ? yj : mx[l];
            }
        }
        for (int j = 0; j < 16; j++) {
#pragma omp simd
            for (int l = 0; l < GBLK; l++) {
                const float e = exp_nonpos(zs[j][l] / tau - mx[l]);
                zs[j][l] = e;
                sum[l] += e;
            }
        }
        for (int i = 0; i < 4; i++)
#pragma omp simd
            for (int l = 0; l < GBLK; l++) cs[i][l] = 0.f;
        for (int j = 0; j < 16; j++) {
            const float m0 = M[4 * j], m1 = M[4 * j + 1], m2 = M[4 * j + 2], m3 = M[4 * j + 3];
#pragma omp simd
            for (int l = 0; l < GBLK; l++) {
                const float pj = zs[j][l] / sum[l];
                p[(n0 + l) * 16 + j] = pj;
                cs[0][l] += pj * m0;
                cs[1][l] += pj * m1;
                cs[2][l] += pj * m2;
                cs[3][l] += pj * m3;
            }
        }
        for (int l = 0; l < GBLK; l++)
            for (int i = 0; i < 4; i++) {
                c_soft[4 * (n0 + l) + i] = cs[i][l];
                c_hard[4 * (n0 + l) + i] = M[4 * k[l] + i];
            }
        if (tt)
            for (int l = 0; l < GBLK; l++) tt[n0 + l] = tt_of[k[l]];
    }
    for (int64_t n = nblk * GBLK; n < N; n++) {
        float gbuf[16];
        const float *RESTRICT gn = noise_at(g, keyed, key, 16 * n, 16, gbuf);
        const int k = gumbel_one(z + 16 * n, gn, scale, tau, M, c_hard + 4 * n, c_soft + 4 * n, p + 16 * n);
        if (tt) tt[n] = tt_of[k];
    }
    return tt != NULL;
}

/* dz [N, 16] from dc [N, 4] through c_soft = softmax(zs / tau) @ M: dz = p * (gp - <p, gp>) / tau, gp = M dc. */
#if defined(__AVX512F__)
/* 16 neurons of lgn_gumbel_coeffs_backward below, one per lane (p and dz transposed in registers, dc gathered):
 * the same operations in the same order per neuron as the generic loop, so the same bits. */
static inline void gumbel_bwd_block_avx512(const float *RESTRICT p, const float *RESTRICT dc, float tau,
                                           const float *RESTRICT M, float *RESTRICT dz) {
    __m512 P[16], T[16], D[4];
    for (int l = 0; l < 16; l++) P[l] = _mm512_loadu_ps(p + 16 * l);
    transpose16(P);
    const __m512i four = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                            _mm512_set1_epi32(4));
    for (int i = 0; i < 4; i++) D[i] = _mm512_i32gather_ps(_mm512_add_epi32(four, _mm512_set1_epi32(i)), dc, 4);
    __m512 dot = _mm512_setzero_ps();
    for (int j = 0; j < 16; j++) {
        __m512 t = _mm512_add_ps(_mm512_setzero_ps(), _mm512_mul_ps(_mm512_set1_ps(M[4 * j]), D[0]));
        t = _mm512_add_ps(t, _mm512_mul_ps(_mm512_set1_ps(M[4 * j + 1]), D[1]));
        t = _mm512_add_ps(t, _mm512_mul_ps(_mm512_set1_ps(M[4 * j + 2]), D[2]));
        T[j] = _mm512_add_ps(t, _mm512_mul_ps(_mm512_set1_ps(M[4 * j + 3]), D[3]));
        dot = _mm512_add_ps(dot, _mm512_mul_ps(P[j], T[j]));
    }
    const __m512 vt = _mm512_set1_ps(tau);
    for (int j = 0; j < 16; j++) {
        T[j] = _mm512_mul_ps(P[j], _mm512_sub_ps(T[j], dot));
        if (tau != 1.0f) T[j] = _mm512_div_ps(T[j], vt);   /* x / 1 is x */
    }
    transpose16(T);
    for (int l = 0; l < 16; l++) _mm512_storeu_ps(dz + 16 * l, T[l]);
}
#endif

/* dz [N, 16] from dc [N, 4] through c_soft = softmax(zs / tau) @ M: dz = p * (gp - <p, gp>) / tau, gp = M dc.
 * <p, gp> is summed over the 16 gates in order (the same bits on every build and vector width). */
EXPORT void lgn_gumbel_coeffs_backward(const float *RESTRICT p, const float *RESTRICT dc, float tau,
                                       const float *RESTRICT M, int64_t N, float *RESTRICT dz, int nthreads) {
    (void)nthreads;
    const int64_t nblk = N / GBLK;
#pragma omp parallel for num_threads(clamp_threads(nthreads)) schedule(static) if (N >= PAR_NEURONS)
    for (int64_t blk = 0; blk < nblk; blk++) {
#if defined(__AVX512F__)
        if (use_tiles) {
            gumbel_bwd_block_avx512(p + 16 * GBLK * blk, dc + 4 * GBLK * blk, tau, M, dz + 16 * GBLK * blk);
            continue;
        }
#endif
        for (int64_t n = GBLK * blk; n < GBLK * (blk + 1); n++) gumbel_bwd_one(p + 16 * n, dc + 4 * n, tau, M, dz + 16 * n);
    }
    for (int64_t n = GBLK * nblk; n < N; n++) gumbel_bwd_one(p + 16 * n, dc + 4 * n, tau, M, dz + 16 * n);
}

/*
 * Learned connections (lgn_fpga.kernels.connections.ConnectionSTE; HardStack calls lgn_conn_grad in its
 * backward).  R = 2N rows (input A of every gate, then input B), K candidates each: w, ws [R, K] float,
 * cand [R, K] int64 (validated by the caller).
 *
 * lgn_conn_pick: ws = w + scale*noise (noise may be NULL: ws = w; with keyed, noise NULL: the values of
 * lgn_gumbel_noise's stream of key, made block by block), j = the first argmax of ws, sel[r] = cand[r, j] (the
 * signal read this step).  K <= 64.
 */
EXPORT void lgn_conn_pick(const float *RESTRICT w, const float *RESTRICT noise, float scale, const int64_t *RESTRICT cand,
                          int64_t R, int64_t K, float *RESTRICT ws, int64_t *RESTRICT sel, uint64_t key, int keyed,
                          int nthreads) {
    enum { RB = 64 };                 /* rows per block: the block's noise is made here when keyed */
    if (K <= 0 || (keyed && K > 64)) return;   /* no candidate to pick; the caller checks (conn_pick) */
    const int64_t nblk = (R + RB - 1) / RB;
#pragma omp parallel for num_threads(clamp_threads(nthreads)) schedule(static) if (R >= 64 * RB)
    for (int64_t blk = 0; blk < nblk; blk++) {
        float nbuf[RB * 64];
        const int64_t r0 = blk * RB, r1 = r0 + RB < R ? r0 + RB : R;
        const float *RESTRICT nz = noise_at(noise, keyed, key, r0 * K, (r1 - r0) * K, nbuf);
        for (int64_t r = r0; r < r1; r++) {
            const float *RESTRICT wr = w + r * K, *RESTRICT nr = nz ? nz + (r - r0) * K : NULL;
#if defined(__AVX512F__)
            if (use_tiles && K <= 16) {
                /* the row in one register: the same add per element, then the first NaN or else the first
                 * element equal to the maximum, which is what the loop below finds */
                const __mmask16 m = (__mmask16)((1u << K) - 1);
                __m512 v = _mm512_maskz_loadu_ps(m, wr);
                if (nr) v = _mm512_add_ps(v, _mm512_mul_ps(_mm512_set1_ps(scale), _mm512_maskz_loadu_ps(m, nr)));
                _mm512_mask_storeu_ps(ws + r * K, m, v);
                const __mmask16 nan = _mm512_mask_cmp_ps_mask(m, v, v, _CMP_UNORD_Q);
                const __mmask16 at = nan ? nan : _mm512_mask_cmp_ps_mask(m, v, _mm512_set1_ps(_mm512_mask_reduce_max_ps(m, v)),
                                                                         _CMP_EQ_OQ);
                sel[r] = cand[r * K + __builtin_ctz((unsigned)at)];
                continue;
            }
#endif
            int64_t best = 0;
            float bv = 0.f;
            for (int64_t k = 0; k < K; k++) {
                const float v = nr ? wr[k] + scale * nr[k] : wr[k];
                ws[r * K + k] = v;
                if (k == 0 || v > bv || (v != v && bv == bv)) { bv = v; best = k; }   /* NaN wins, as in torch */
            }
            sel[r] = cand[r * K + best];
        }
    }
}

/* dw[k] = p_k (h_k - <p, h>) / tau, p = softmax(ws / tau), for one gate input's K <= 64 candidates. */
static inline void conn_dw(const float *RESTRICT h, const float *RESTRICT wsr, float tau, int64_t K,
                           float *RESTRICT dwr) {
    float p[64], mx = 0.f, z = 0.f, ph = 0.f;
    for (int64_t k = 0; k < K; k++) { const float v = wsr[k] / tau; if (k == 0 || v > mx) mx = v; }
    for (int64_t k = 0; k < K; k++) { p[k] = exp_nonpos(wsr[k] / tau - mx); z += p[k]; }   /* not libm's: 20 ns a call */
    for (int64_t k = 0; k < K; k++) { p[k] /= z; ph += p[k] * h[k]; }
    for (int64_t k = 0; k < K; k++) dwr[k] = p[k] * (h[k] - ph) / tau;
}

/* sum_s d[s] * (bit s of row), over W words; d holds 64 W floats, zero beyond the batch. */
static inline float bits_dot(const float *RESTRICT d, const uint64_t *RESTRICT row, int64_t W) {
#if defined(__AVX512F__)
    __m512 v = _mm512_setzero_ps();
    for (int64_t wd = 0; wd < W; wd++)
        for (int q = 0; q < 4; q++)
            v = _mm512_add_ps(v, _mm512_maskz_loadu_ps((__mmask16)(row[wd] >> (16 * q)), d + 64 * wd + 16 * q));
    return _mm512_reduce_add_ps(v);
#else
    float acc = 0.f;
    for (int64_t wd = 0; wd < W; wd++)
        for (int j = 0; j < 64; j++) acc += ((row[wd] >> j) & 1u) ? d[64 * wd + j] : 0.f;
    return acc;
#endif
}

/*
 * The gradient of the connection logits.  With the layer's output gradient g [N, B], its input x, the picked
 * inputs a, b [N] and the coefficients c [N, 4] the input gradient flows through:
 *   dA = g * (c1 + c3*Bv), dB = g * (c2 + c3*A),
 *   h[r, k] = sum_s d_r[s] * x[cand[r, k], s]          (d_r = dA of gate r for r < N, dB of gate r - N after)
 *   dw[r, k] = p_k * (h_k - sum_j p_j h_j) / tau,      p = softmax(ws[r] / tau).
 * x is bits [F, W] (W = ceil(B/64) words per row, lgn_pack's layout) when packed, else floats [F, B]. One gate
 * per iteration, its dA and dB in a per-thread buffer; K <= 64.
 */
#if defined(__AVX512F__)
/* conn_grad on bits with AVX-512: per gate, a tile of 8 x 16 samples of dA and dB lives in 16 registers (no
 * buffer), each candidate's dot product is masked adds of them (the candidate's bits are the lane masks), and
 * the K partial sums of each side are reduced once at the end. */
/* conn_dw of 16 consecutive rows (lane l: row l; h[k][l]; wsr and dwr: 16 rows of K), the same operations in
 * the same order on every lane as conn_dw (bit for bit): the divisions and the exp of 16 rows at once. */
static inline void conn_dw16(const float h[64][16], const float *RESTRICT wsr, float tau, int64_t K,
                             float *RESTRICT dwr) {
    float wt[64][16];
    for (int64_t k = 0; k < K; k++)
        for (int l = 0; l < 16; l++) wt[k][l] = wsr[l * K + k];
    const __m512 vt = _mm512_set1_ps(tau);
    __m512 mx = _mm512_div_ps(_mm512_loadu_ps(wt[0]), vt), z = _mm512_setzero_ps(), ph = _mm512_setzero_ps();
    for (int64_t k = 1; k < K; k++) {
        const __m512 v = _mm512_div_ps(_mm512_loadu_ps(wt[k]), vt);
        mx = _mm512_mask_mov_ps(mx, _mm512_cmp_ps_mask(v, mx, _CMP_GT_OQ), v);
    }
    __m512 p[64];
    for (int64_t k = 0; k < K; k++) {
        p[k] = exp_nonpos16(_mm512_sub_ps(_mm512_div_ps(_mm512_loadu_ps(wt[k]), vt), mx));
        z = _mm512_add_ps(z, p[k]);
    }
    for (int64_t k = 0; k < K; k++) {
        p[k] = _mm512_div_ps(p[k], z);
        ph = _mm512_add_ps(ph, _mm512_mul_ps(p[k], _mm512_loadu_ps(h[k])));
    }
    for (int64_t k = 0; k < K; k++)
        _mm512_storeu_ps(wt[k], _mm512_div_ps(_mm512_mul_ps(p[k], _mm512_sub_ps(_mm512_loadu_ps(h[k]), ph)), vt));
    for (int64_t k = 0; k < K; k++)
        for (int l = 0; l < 16; l++) dwr[l * K + k] = wt[k][l];
}

static void conn_grad_bits_avx512(const uint64_t *RESTRICT xbits, int64_t B, const float *RESTRICT g, int64_t gdiv,
                                  const int64_t *RESTRICT a, const int64_t *RESTRICT b, const float *RESTRICT c,
                                  const int64_t *RESTRICT cand, const float *RESTRICT ws, float tau, int64_t N,
                                  int64_t K, float *RESTRICT dw, int nthreads) {
    const int64_t W = (B + 63) / 64, nblk = (N + 15) / 16;
#pragma omp parallel for num_threads(clamp_threads(nthreads)) schedule(dynamic, 4)
    for (int64_t blk = 0; blk < nblk; blk++) {
        const int64_t n0 = 16 * blk, n1 = n0 + 16 < N ? n0 + 16 : N;
        float hb[2][64][16];   /* h of the block's gates, [side][candidate][gate]: conn_dw16 reads it as lanes */
        for (int64_t n = n0; n < n1; n++) {
            const float *RESTRICT gn = g + g_index(n, gdiv) * B;
            if (n + PREFETCH_AHEAD < N) {   /* this gate's row is read once: ask for the next ones' */
                const int64_t m = n + PREFETCH_AHEAD;
                prefetch_row(g + g_index(m, gdiv) * B, B);
                const uint64_t *RESTRICT ra = xbits + a[m] * W, *RESTRICT rb = xbits + b[m] * W;
                __builtin_prefetch(ra, 0, 3);
                __builtin_prefetch(rb, 0, 3);
                for (int64_t k = 0; k < K; k++) {
                    __builtin_prefetch(xbits + cand[m * K + k] * W, 0, 3);
                    __builtin_prefetch(xbits + cand[(N + m) * K + k] * W, 0, 3);
                }
            }
            const float c1 = c[4 * n + 1], c2 = c[4 * n + 2], c3 = c[4 * n + 3];
            const __m512 A0 = _mm512_set1_ps(c1), A1 = _mm512_set1_ps(c1 + c3);
            const __m512 B0 = _mm512_set1_ps(c2), B1 = _mm512_set1_ps(c2 + c3);
            const uint64_t *RESTRICT xa = xbits + a[n] * W, *RESTRICT xb = xbits + b[n] * W;
            const int64_t *RESTRICT ca = cand + n * K, *RESTRICT cb = cand + (N + n) * K;
            __m512 hv[2][64];
            for (int64_t k = 0; k < K; k++) hv[0][k] = hv[1][k] = _mm512_setzero_ps();
            for (int64_t t0 = 0; t0 < B; t0 += 16 * TILE_CHUNKS) {
                const int64_t left = B - t0;
                const int nch = tile_chunks(left);
                __m512 dA[TILE_CHUNKS], dB[TILE_CHUNKS];
    #pragma GCC unroll 8
                for (int q = 0; q < TILE_CHUNKS; q++) {
                    const __m512 gv = q < nch ? _mm512_maskz_loadu_ps(chunk_mask(left, q), gn + t0 + 16 * q)
                                              : _mm512_setzero_ps();
                    const __mmask16 hA = q < nch ? bits16(xa, t0 + 16 * q) : 0, hB = q < nch ? bits16(xb, t0 + 16 * q) : 0;
                    dA[q] = _mm512_mul_ps(gv, _mm512_mask_blend_ps(hB, A0, A1));   /* dA = g (c1 + c3 B) */
                    dB[q] = _mm512_mul_ps(gv, _mm512_mask_blend_ps(hA, B0, B1));   /* dB = g (c2 + c3 A) */
                }
                const int64_t w0 = t0 >> 6;   /* the tile's first word: t0 is a multiple of 128 */
                for (int64_t k = 0; k < K; k++) {
                    const uint64_t *RESTRICT ra = xbits + ca[k] * W + w0, *RESTRICT rb = xbits + cb[k] * W + w0;
                    __m512 va = hv[0][k], vb = hv[1][k];
    #pragma GCC unroll 8
                    for (int q = 0; q < TILE_CHUNKS; q++) {
                        if (q >= nch) break;
                        /* one word gives the masks of 4 chunks; masked adds (lanes beyond the batch are 0 in dA, dB) */
                        const uint64_t wa = ra[q >> 2], wb = rb[q >> 2];
                        va = _mm512_mask_add_ps(va, (__mmask16)(wa >> (16 * (q & 3))), va, dA[q]);
                        vb = _mm512_mask_add_ps(vb, (__mmask16)(wb >> (16 * (q & 3))), vb, dB[q]);
                    }
                    hv[0][k] = va;
                    hv[1][k] = vb;
                }
            }
            for (int side = 0; side < 2; side++)
                for (int64_t k = 0; k < K; k++) hb[side][k][n - n0] = _mm512_reduce_add_ps(hv[side][k]);
        }
        for (int side = 0; side < 2; side++) {
            const int64_t r0 = (int64_t)side * N + n0;
            if (n1 - n0 == 16) {
                conn_dw16(hb[side], ws + r0 * K, tau, K, dw + r0 * K);
            } else {
                for (int64_t n = n0; n < n1; n++) {
                    float h[64];
                    for (int64_t k = 0; k < K; k++) h[k] = hb[side][k][n - n0];
                    conn_dw(h, ws + (r0 + n - n0) * K, tau, K, dw + (r0 + n - n0) * K);
                }
            }
        }
    }
}
#endif

static int conn_grad(const void *RESTRICT x, int packed, int64_t B, const float *RESTRICT g, int64_t gdiv,
                     const int64_t *RESTRICT a, const int64_t *RESTRICT b, const float *RESTRICT c,
                     const int64_t *RESTRICT cand, const float *RESTRICT ws, float tau, int64_t N, int64_t K,
                     float *RESTRICT dw, int nthreads) {
#if defined(__AVX512F__)
    if (packed && K <= 64 && use_tiles) {
        conn_grad_bits_avx512((const uint64_t *)x, B, g, gdiv, a, b, c, cand, ws, tau, N, K, dw, nthreads);
        return 0;
    }
#endif
    const int64_t W = (B + 63) / 64, S = packed ? 64 * W : B;   /* S: the stride of dA and dB */
    const uint64_t *RESTRICT xbits = (const uint64_t *)x;
    const float *RESTRICT xf = (const float *)x;
    int failed = K > 64;
    if (failed) return failed;
#pragma omp parallel num_threads(clamp_threads(nthreads)) reduction(| : failed)
    {
        float *buf = (float *)malloc(sizeof(float) * (size_t)(2 * S > 0 ? 2 * S : 1));
        if (!buf) failed = 1;
#pragma omp for schedule(dynamic, 64)
        for (int64_t n = 0; n < N; n++) {
            if (!buf) continue;
            float *RESTRICT dA = buf, *RESTRICT dB = buf + S;
            const float *RESTRICT gn = g + g_index(n, gdiv) * B;
            const float c1 = c[4 * n + 1], c2 = c[4 * n + 2], c3 = c[4 * n + 3];
            if (packed) {
                const uint64_t *RESTRICT xa = xbits + a[n] * W, *RESTRICT xb = xbits + b[n] * W;
                memset(buf, 0, sizeof(float) * (size_t)(2 * S));
                FOR_HALVES(B, xb, xa, {
                    dx_half(dA + s0, gn + s0, hp, m, c1, c1 + c3);   /* hp: B's bits */
                    dx_half(dB + s0, gn + s0, hq, m, c2, c2 + c3);   /* hq: A's bits */
                })
            } else {
                const float *RESTRICT xa = xf + a[n] * B, *RESTRICT xb = xf + b[n] * B;
#pragma omp simd
                for (int64_t s = 0; s < B; s++) {
                    dA[s] = gn[s] * (c1 + c3 * xb[s]);
                    dB[s] = gn[s] * (c2 + c3 * xa[s]);
                }
            }
            for (int side = 0; side < 2; side++) {
                const float *RESTRICT d = side ? dB : dA;
                const int64_t r = (int64_t)side * N + n;
                float h[64];
                for (int64_t k = 0; k < K; k++) {
                    const int64_t row = cand[r * K + k];
                    if (packed) {
                        h[k] = bits_dot(d, xbits + row * W, W);
                    } else {
                        const float *RESTRICT xr = xf + row * B;
                        float acc = 0.f;
#pragma omp simd reduction(+ : acc)
                        for (int64_t s = 0; s < B; s++) acc += d[s] * xr[s];
                        h[k] = acc;
                    }
                }
                conn_dw(h, ws + r * K, tau, K, dw + r * K);
            }
        }
        free(buf);
    }
    return failed;
}

/* conn_grad on the input bits the bit-packed stack keeps (HardStack's backward). */
EXPORT int lgn_conn_grad(const uint64_t *RESTRICT xbits, int64_t B, const float *RESTRICT g, int64_t gdiv,
                         const int64_t *RESTRICT a, const int64_t *RESTRICT b, const float *RESTRICT c,
                         const int64_t *RESTRICT cand, const float *RESTRICT ws, float tau, int64_t N, int64_t K,
                         float *RESTRICT dw, int nthreads) {
    return conn_grad(xbits, 1, B, g, gdiv, a, b, c, cand, ws, tau, N, K, dw, nthreads);
}

/* conn_grad on a float input x [F, B] (the softmax relaxation's soft activations). */
EXPORT int lgn_conn_grad_float(const float *RESTRICT x, int64_t B, const float *RESTRICT g, int64_t gdiv,
                               const int64_t *RESTRICT a, const int64_t *RESTRICT b, const float *RESTRICT c,
                               const int64_t *RESTRICT cand, const float *RESTRICT ws, float tau, int64_t N,
                               int64_t K, float *RESTRICT dw, int nthreads) {
    return conn_grad(x, 0, B, g, gdiv, a, b, c, cand, ws, tau, N, K, dw, nthreads);
}

/*
 * lgn_reverse_index: the CSR reverse index of a layer's wiring (kernels/reverse_index.py): a counting sort of
 * the keys a[0..N), b[0..N), stable, so each input's consumers are its a-slots then its b-slots, in neuron
 * order.  offsets [F+1], entries [2N] = 2n + slot.  Indices validated by the caller.
 */
EXPORT void lgn_reverse_index(const int64_t *RESTRICT a, const int64_t *RESTRICT b, int64_t N, int64_t F,
                              int64_t *RESTRICT offsets, int64_t *RESTRICT entries) {
    memset(offsets, 0, sizeof(int64_t) * (size_t)(F + 1));
    for (int64_t n = 0; n < N; n++) { offsets[a[n] + 1]++; offsets[b[n] + 1]++; }
    for (int64_t i = 0; i < F; i++) offsets[i + 1] += offsets[i];
    int64_t *fill = (int64_t *)malloc(sizeof(int64_t) * (size_t)(F > 0 ? F : 1));
    if (fill) memcpy(fill, offsets, sizeof(int64_t) * (size_t)F);
    for (int64_t n = 0; fill && n < N; n++) entries[fill[a[n]]++] = 2 * n;
    for (int64_t n = 0; fill && n < N; n++) entries[fill[b[n]]++] = 2 * n + 1;
    if (!fill) offsets[F] = -1;   /* out of memory: the caller checks */
    free(fill);
}
