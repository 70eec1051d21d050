/* Runtime of the netlist evaluator (lgn_fpga.netlist.cbackend): thermometer encoding, score extraction and
 * the exported functions.  Not compiled on its own: the generated main.c defines LANES, the sizes
 * (ABI_VERSION, N_SLOTS, N_INPUTS, IMAGE_BYTES, PIXELS, LEVELS, N_CLASSES, MAX_PLANES), the tables (TH, IN_SLOT,
 * PLANES, PLANE_SLOT, BIAS) and run(), includes word.h, then this file. */
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__) && !defined(LGN_NO_SIMD)
#include <emmintrin.h>
#define LGN_SSE2 1
#endif
#define BLOCK (64 * LANES)
#define ACC_WORDS ((MAX_PLANES + 7) / 8 + 1)
typedef uint16_t u16a __attribute__((may_alias));

/* SPREAD[x] has byte i = bit i of x: eight images' bits of one score plane become eight byte counters. */
static uint64_t SPREAD[256];
static void init_spread(void) {
  for (int x = 0; x < 256; x++) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)((x >> i) & 1) << (8 * i);
    SPREAD[x] = v;
  }
}

#ifdef LGN_SSE2
/* 16x16 byte transpose: out[m] byte i = in[i] byte m (image i, image byte m). */
static inline void tr16(const __m128i in[16], __m128i out[16]) {
  __m128i a[16], b[16];
  for (int k = 0; k < 8; k++) {
    a[k] = _mm_unpacklo_epi8(in[2 * k], in[2 * k + 1]);
    a[k + 8] = _mm_unpackhi_epi8(in[2 * k], in[2 * k + 1]);
  }
  for (int h = 0; h < 2; h++)
    for (int k = 0; k < 4; k++) {
      b[h * 8 + k] = _mm_unpacklo_epi16(a[h * 8 + 2 * k], a[h * 8 + 2 * k + 1]);
      b[h * 8 + 4 + k] = _mm_unpackhi_epi16(a[h * 8 + 2 * k], a[h * 8 + 2 * k + 1]);
    }
  for (int q = 0; q < 4; q++)
    for (int k = 0; k < 2; k++) {
      a[q * 4 + 2 * k] = _mm_unpacklo_epi32(b[q * 4 + 2 * k], b[q * 4 + 2 * k + 1]);
      a[q * 4 + 2 * k + 1] = _mm_unpackhi_epi32(b[q * 4 + 2 * k], b[q * 4 + 2 * k + 1]);
    }
  for (int q = 0; q < 4; q++)
    for (int e = 0; e < 2; e++) {
      out[4 * q + 2 * e] = _mm_unpacklo_epi64(a[q * 4 + e], a[q * 4 + 2 + e]);
      out[4 * q + 2 * e + 1] = _mm_unpackhi_epi64(a[q * 4 + e], a[q * 4 + 2 + e]);
    }
}
#endif

/* Bits of image byte q for 16 images (rows of IMAGE_BYTES bytes from base), scalar. */
static void encode_byte_scalar(const uint8_t *base, int q, int g, w_t *restrict s) {
  const int c = q / PIXELS, p = q % PIXELS;
  for (int j = 0; j < LEVELS; j++) {
    const int32_t slot = IN_SLOT[(c * LEVELS + j) * PIXELS + p];
    if (slot < 0) continue;
    const uint8_t th = TH[c * LEVELS + j];
    uint16_t w = 0;
    for (int i = 0; i < 16; i++) w |= (uint16_t)(base[(int64_t)i * IMAGE_BYTES + q] > th) << i;
    ((u16a *)&s[slot])[g] = w;
  }
}

/* Thermometer bits of BLOCK row-major images into their slots: bit i of 16-bit chunk g is image 16g+i. */
static void encode(const uint8_t *img, w_t *restrict s) {
  for (int g = 0; g < BLOCK / 16; g++) {
    const uint8_t *base = img + (int64_t)g * 16 * IMAGE_BYTES;
    int q0 = 0;
#ifdef LGN_SSE2
    const __m128i flip = _mm_set1_epi8((char)0x80);
    for (; q0 + 16 <= IMAGE_BYTES; q0 += 16) {
      __m128i r[16], t[16];
      for (int i = 0; i < 16; i++) r[i] = _mm_loadu_si128((const __m128i *)(base + (int64_t)i * IMAGE_BYTES + q0));
      tr16(r, t);
      for (int m = 0; m < 16; m++) {
        const int q = q0 + m, c = q / PIXELS, p = q % PIXELS;
        const __m128i v = _mm_xor_si128(t[m], flip);  /* unsigned > as signed > after flipping the top bit */
        for (int j = 0; j < LEVELS; j++) {
          const int32_t slot = IN_SLOT[(c * LEVELS + j) * PIXELS + p];
          if (slot < 0) continue;
          const __m128i th = _mm_set1_epi8((char)(TH[c * LEVELS + j] ^ 0x80));
          ((u16a *)&s[slot])[g] = (uint16_t)_mm_movemask_epi8(_mm_cmpgt_epi8(v, th));
        }
      }
    }
#endif
    for (int q = q0; q < IMAGE_BYTES; q++) encode_byte_scalar(base, q, g, s);
  }
}

/* Scores of the block's images [0, nvalid) from the bit planes of every class count. */
static void extract(const w_t *restrict s, int32_t *restrict out, int64_t nvalid) {
  for (int k = 0; k < N_CLASSES; k++) {
    const int np = PLANES[k];
    for (int g = 0; g < BLOCK / 8 && 8 * g < nvalid; g++) {
      uint64_t acc[ACC_WORDS] = {0};
      for (int j = 0; j < np; j++)
        acc[j >> 3] += SPREAD[((const uint8_t *)&s[PLANE_SLOT[k * MAX_PLANES + j]])[g]] << (j & 7);
      for (int i = 0; i < 8 && 8 * g + i < nvalid; i++) {
        int32_t v = BIAS[k];
        for (int h = 0; h < (np + 7) / 8; h++) v += (int32_t)((acc[h] >> (8 * i)) & 0xFF) << (8 * h);
        out[(int64_t)(8 * g + i) * N_CLASSES + k] = v;
      }
    }
  }
}

int lgn_abi_version(void) { return ABI_VERSION; }
int lgn_lanes(void) { return LANES; }
int lgn_simd(void) {
#ifdef LGN_SSE2
  return 1;
#else
  return 0;
#endif
}

static w_t *alloc_slots(void) {
  return (w_t *)aligned_alloc(64, ((sizeof(w_t) * N_SLOTS + 63) / 64) * 64);
}

/* Scores [n, N_CLASSES] of n row-major uint8 images of IMAGE_BYTES bytes each. Returns 0, or -1 out of memory. */
int lgn_scores_images(const uint8_t *images, int64_t n, int32_t *out) {
  w_t *s = alloc_slots();
  uint8_t *tail = NULL;
  if (!s) return -1;
  init_spread();
  for (int64_t i = 0; i < n; i += BLOCK) {
    const int64_t m = n - i < BLOCK ? n - i : BLOCK;
    const uint8_t *src = images + i * IMAGE_BYTES;
    if (m < BLOCK) {  /* last, partial block: pad with zero images */
      tail = (uint8_t *)calloc(BLOCK, IMAGE_BYTES);
      if (!tail) { free(s); return -1; }
      memcpy(tail, src, (size_t)(m * IMAGE_BYTES));
      src = tail;
    }
    encode(src, s);
    run(s);
    extract(s, out + i * N_CLASSES, m);
  }
  free(tail);
  free(s);
  return 0;
}

/* Scores of n images given as packed bits: words[block][N_INPUTS][LANES], bit b of lane l is image 64l+b. */
int lgn_scores_words(const uint64_t *words, int64_t n, int32_t *out) {
  w_t *s = alloc_slots();
  if (!s) return -1;
  init_spread();
  for (int64_t i = 0, blk = 0; i < n; i += BLOCK, blk++) {
    const int64_t m = n - i < BLOCK ? n - i : BLOCK;
    for (int k = 0; k < N_INPUTS; k++)
      if (IN_SLOT[k] >= 0) memcpy(&s[IN_SLOT[k]], words + (blk * N_INPUTS + k) * LANES, sizeof(w_t));
    run(s);
    extract(s, out + i * N_CLASSES, m);
  }
  free(s);
  return 0;
}
