/* Small CPU kernels for the encoders' training step (serac.encoders.kernels builds this file with the system C
 * compiler on first use and calls it through ctypes). C99 with GCC / Clang vector extensions on contiguous float32
 * buffers, one thread, no dependency beyond libc: vectors of 16 floats over the channel axis.
 *
 * depthwise_forward / _input_grad / _weight_grad: a causal depthwise convolution in the time-major (N, T, C) layout
 *   and its input, weight and bias gradients, the cached frames and the input read where they lie (no padded
 *   copy); the taps' weights or the gradient rows held in registers while the rows stream past.
 * dropout_forward: dropout whose keep decision for element i is a counter-based draw,
 *   SplitMix64(seed, i), so the backward recomputes the mask from the seed instead of storing it.
 * chunked_attention_forward / _backward: the chunked self-attention of the Conformer (block form) in one pass per
 *   block: scores, mask, relative bias, softmax, dropout and the weighted sum, and their gradients.
 * transpose_matrix: a transposed copy in 16 x 16 blocks transposed in registers (the linear layers' gradients).
 * im2col_nhwc: a channels-last 2-D convolution's tap matrix, row by row (the front end's weight gradient).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Row block of the partial sums: each block's sum is added to the running total, so the rounding error grows
 * with the number of blocks, not of rows. */
#define ROW_BLOCK 64

/* GCC / Clang vector extension: the compiler picks the instructions (-march=native). */
typedef float vf __attribute__((vector_size(64), aligned(4)));  /* 16 floats; unaligned loads and stores */
#define VL 16

static inline vf vload(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
static inline void vstore(float *p, vf v) { memcpy(p, &v, sizeof v); }
static inline vf vbroadcast(float x) { return (vf){0} + x; }
typedef int32_t vi __attribute__((vector_size(64)));  /* VL int32 lanes (shuffle masks) */

/* The causal depthwise convolutions read a padded input: `cf` cached frames followed by the (n, t_in, c) input x,
 * without the concatenation being formed (the callers' (n, c, cf) cache is copied time-major by cache_rows).
 * Output t, tap k reads padded frame t * stride + k * dilation. The loops are bound by loads (one 16-float vector a
 * cycle): the taps' weights and the output gradient's rows stay in registers while the rows stream past. */
static inline const float *padded_row(const float *x, const float *cache, int64_t b, int64_t p, int64_t t_in,
                                      int64_t cf, int64_t c) {
    return p >= cf ? x + (b * t_in + p - cf) * c : cache + (b * cf + p) * c;
}

/* The (n, c, cf) cache as (n, cf, c) rows (NULL: cf == 0, or out of memory: *failed set). */
static float *cache_rows(const float *cache, int64_t n, int64_t c, int64_t cf, int *failed) {
    if (cf == 0) return NULL;
    float *rows = malloc(sizeof(float) * (size_t)(n * cf * c));
    if (!rows) { *failed = 1; return NULL; }
    for (int64_t b = 0; b < n; ++b)
        for (int64_t j = 0; j < c; ++j)
            for (int64_t p = 0; p < cf; ++p) rows[(b * cf + p) * c + j] = cache[(b * c + j) * cf + p];
    return rows;
}

/* w: (c, kernel) -> wt: (kernel, c), so that the channel loops read it contiguously. NULL if out of memory. */
static float *transpose_taps(const float *w, int64_t c, int64_t kernel) {
    float *wt = malloc(sizeof(float) * (size_t)(c * kernel));
    if (!wt) return NULL;
    for (int64_t j = 0; j < c; ++j)
        for (int64_t k = 0; k < kernel; ++k) wt[k * c + j] = w[j * kernel + k];
    return wt;
}

/* out[j] = (init ? init[j] : 0) + sum_{i < m} w[i][j] * rows[i][j], j < c: one row, any taps (the rows that touch
 * the cache or the sequence's ends). */
static void weighted_rows(float *out, const float *init, const float *const *w, const float *const *rows, int64_t m,
                          int64_t c) {
    int64_t j = 0;
    for (; j + 2 * VL <= c; j += 2 * VL) {
        vf a0 = init ? vload(init + j) : (vf){0}, a1 = init ? vload(init + j + VL) : (vf){0};
        for (int64_t i = 0; i < m; ++i) {
            a0 += vload(w[i] + j) * vload(rows[i] + j);
            a1 += vload(w[i] + j + VL) * vload(rows[i] + j + VL);
        }
        vstore(out + j, a0);
        vstore(out + j + VL, a1);
    }
    for (; j < c; ++j) {
        float acc = init ? init[j] : 0.0f;
        for (int64_t i = 0; i < m; ++i) acc += w[i][j] * rows[i][j];
        out[j] = acc;
    }
}

#define TILE_TAPS 6  /* taps whose weights a tile holds in registers */

/* For r < rows, channels [j, j + VL): out[r * c] = (add ? out[r * c] : init or 0)
 *   + sum_{i < m} w[i] * src[r * step + i * tap_step]  (m <= TILE_TAPS; offsets in floats). */
static void taps_tile(float *out, const float *init, int add, const float *const *w, const float *src, int64_t step,
                      int64_t tap_step, int64_t rows, int64_t m, int64_t c) {
    vf wv[TILE_TAPS];
    for (int i = 0; i < TILE_TAPS; ++i) wv[i] = i < m ? vload(w[i]) : (vf){0};
    const vf i0 = init ? vload(init) : (vf){0};
    for (int64_t r = 0; r < rows; ++r) {
        float *o = out + r * c;
        const float *s = src + r * step;
        vf a = add ? vload(o) : i0;
        for (int i = 0; i < TILE_TAPS; ++i)
            if (i < m) a += wv[i] * vload(s + i * tap_step);
        vstore(o, a);
    }
}

/* out[r] = (init or 0) + sum_k w[:, k] * src[r * step + k * tap_step] for r < rows, all channels: tiles of a vector
 * of channels and TILE_TAPS taps, the channels past the last whole vector row by row. wt: (kernel, c). */
static void taps_rows(float *out, const float *init, const float *wt, const float *src, int64_t step,
                      int64_t tap_step, int64_t rows, int64_t kernel, int64_t c, const float **ptrs) {
    const int64_t jt = c / VL * VL;
    for (int64_t j = 0; j < jt; j += VL) {
        for (int64_t k0 = 0; k0 < kernel; k0 += TILE_TAPS) {
            const int64_t m = kernel - k0 < TILE_TAPS ? kernel - k0 : TILE_TAPS;
            for (int64_t i = 0; i < m; ++i) ptrs[i] = wt + (k0 + i) * c + j;
            taps_tile(out + j, init ? init + j : NULL, k0 > 0, ptrs, src + k0 * tap_step + j, step, tap_step, rows, m,
                      c);
        }
    }
    for (int64_t r = 0; r < rows && jt < c; ++r) {
        float *o = out + r * c;
        for (int64_t j = jt; j < c; ++j) {
            float acc = init ? init[j] : 0.0f;
            for (int64_t k = 0; k < kernel; ++k) acc += wt[k * c + j] * src[r * step + k * tap_step + j];
            o[j] = acc;
        }
    }
}

/* y: (n, t_out, c) = bias (or 0) + sum_k w[:, k] * padded frame (t * stride + k * dilation). w: (c, kernel);
 * cache_cm: (n, c, cf). Returns 0, or -1 when out of memory. */
int depthwise_forward(const float *x, const float *cache_cm, const float *w, const float *bias, float *y, int64_t n,
                      int64_t t_in, int64_t t_out, int64_t cf, int64_t c, int64_t kernel, int64_t stride,
                      int64_t dilation) {
    int failed = 0;
    float *wt = transpose_taps(w, c, kernel), *cache = cache_rows(cache_cm, n, c, cf, &failed);
    const float **ptrs = malloc(sizeof(float *) * (size_t)(2 * kernel + TILE_TAPS));
    if (!wt || !ptrs || failed) { free(wt); free(ptrs); free(cache); return -1; }
    const float **taps = ptrs, **rows = ptrs + kernel;
    for (int64_t k = 0; k < kernel; ++k) taps[k] = wt + k * c;
    const int64_t t_safe = (cf + stride - 1) / stride < t_out ? (cf + stride - 1) / stride : t_out;
    for (int64_t b = 0; b < n; ++b) {
        for (int64_t t = 0; t < t_safe; ++t) {  /* outputs that read cached frames */
            for (int64_t k = 0; k < kernel; ++k)
                rows[k] = padded_row(x, cache, b, t * stride + k * dilation, t_in, cf, c);
            weighted_rows(y + (b * t_out + t) * c, bias, taps, rows, kernel, c);
        }
        taps_rows(y + (b * t_out + t_safe) * c, bias, wt, x + (b * t_in + t_safe * stride - cf) * c, stride * c,
                  dilation * c, t_out - t_safe, kernel, c, rows + kernel);
    }
    free(wt);
    free(ptrs);
    free(cache);
    return 0;
}

/* g: (n, t_out, c) output gradient; x, cache_cm: the input the forward read (cache_cm (n, c, cf); NULL when
 * cf == 0).
 * dw: (c, kernel) written; db: (c) written when not NULL. Per block of ROW_BLOCK output rows, partial sums in
 * registers (a vector of channels, the rows' gradient loaded once for TILE_TAPS taps and the bias), then added
 * to the totals: the rounding error grows with the number of blocks, not of rows. Returns 0, or -1 when out of
 * memory. */
int depthwise_weight_grad(const float *g, const float *x, const float *cache_cm, float *dw, float *db, int64_t n,
                          int64_t t_out, int64_t t_in, int64_t cf, int64_t c, int64_t kernel, int64_t stride,
                          int64_t dilation) {
    const int64_t size = (kernel + 1) * c;  /* tap k's totals at k * c, the bias's at kernel * c */
    int failed = 0;
    float *tot = calloc((size_t)size, sizeof(float)), *cache = cache_rows(cache_cm, n, c, cf, &failed);
    if (!tot || failed) { free(tot); free(cache); return -1; }
    const int64_t jt = c / VL * VL, t_safe = (cf + stride - 1) / stride;
    for (int64_t b = 0; b < n; ++b) {
        const float *gb = g + b * t_out * c;
        for (int64_t t0 = 0; t0 < t_out; t0 += ROW_BLOCK) {
            const int64_t t1 = t0 + ROW_BLOCK < t_out ? t0 + ROW_BLOCK : t_out;
            for (int64_t j = 0; j < jt; j += VL) {
                for (int64_t k0 = 0; k0 < kernel; k0 += TILE_TAPS) {
                    const int64_t m = kernel - k0 < TILE_TAPS ? kernel - k0 : TILE_TAPS;
                    vf acc[TILE_TAPS] = {{0}}, sum = {0};
                    int64_t t = t0;
                    for (; t < t1 && t < t_safe; ++t) {  /* rows that read cached frames */
                        const vf gv = vload(gb + t * c + j);
                        sum += gv;
                        for (int i = 0; i < TILE_TAPS; ++i)
                            if (i < m)
                                acc[i] += gv * vload(padded_row(x, cache, b, t * stride + (k0 + i) * dilation, t_in, cf,
                                                                c) + j);
                    }
                    const float *xr = x + (b * t_in + t * stride + k0 * dilation - cf) * c + j;
                    for (; t < t1; ++t, xr += stride * c) {
                        const vf gv = vload(gb + t * c + j);
                        sum += gv;
                        for (int i = 0; i < TILE_TAPS; ++i)
                            if (i < m) acc[i] += gv * vload(xr + i * dilation * c);
                    }
                    for (int64_t i = 0; i < m; ++i) {
                        float *tk = tot + (k0 + i) * c + j;
                        vstore(tk, vload(tk) + acc[i]);
                    }
                    if (k0 == 0) vstore(tot + kernel * c + j, vload(tot + kernel * c + j) + sum);
                }
            }
            for (int64_t j = jt; j < c; ++j) {
                for (int64_t k = 0; k <= kernel; ++k) {
                    float acc = 0.0f;
                    for (int64_t t = t0; t < t1; ++t)
                        acc += gb[t * c + j] * (k == kernel ? 1.0f
                                                : padded_row(x, cache, b, t * stride + k * dilation, t_in, cf, c)[j]);
                    tot[k * c + j] += acc;
                }
            }
        }
    }
    for (int64_t j = 0; j < c; ++j) {
        for (int64_t k = 0; k < kernel; ++k) dw[j * kernel + k] = tot[k * c + j];
        if (db) db[j] = tot[kernel * c + j];
    }
    free(tot);
    free(cache);
    return 0;
}

/* The gradient gx (n, t_in, c) of the input read after cf cached frames, each row written once: padded row p = sum
 * over the taps k whose output t = (p - k * dilation) / stride exists of w[:, k] * g[t]. Without a stride, the rows
 * every tap reaches run in register tiles. Returns 0, or -1 when out of memory. */
int depthwise_input_grad(const float *g, const float *w, float *gx, int64_t n, int64_t t_out,
                         int64_t t_in, int64_t cf, int64_t c, int64_t kernel, int64_t stride, int64_t dilation) {
    float *wt = transpose_taps(w, c, kernel);
    const float **ptrs = malloc(sizeof(float *) * (size_t)(2 * kernel + TILE_TAPS));
    if (!wt || !ptrs) { free(wt); free(ptrs); return -1; }
    const float **taps = ptrs, **rows = ptrs + kernel;
    /* padded rows [full0, full1) read every tap's output (stride 1): p - (kernel - 1) * dilation >= 0, p < t_out */
    const int64_t full0 = (kernel - 1) * dilation > cf ? (kernel - 1) * dilation : cf;
    const int64_t full1 = stride == 1 ? (t_out < cf + t_in ? t_out : cf + t_in) : full0;
    for (int64_t b = 0; b < n; ++b) {
        for (int64_t p = cf; p < cf + t_in; ++p) {
            if (p == full0 && full1 > full0) {
                /* row p, tap k reads g[p - k * dilation] */
                taps_rows(gx + (b * t_in + p - cf) * c, NULL, wt, g + (b * t_out + p) * c, c, -dilation * c,
                          full1 - full0, kernel, c, rows + kernel);
                p = full1 - 1;
                continue;
            }
            int64_t m = 0;
            for (int64_t k = 0; k < kernel && p - k * dilation >= 0; ++k) {
                const int64_t q = p - k * dilation;
                if (q % stride || q / stride >= t_out) continue;
                taps[m] = wt + k * c;
                rows[m++] = g + (b * t_out + q / stride) * c;
            }
            weighted_rows(gx + (b * t_in + p - cf) * c, NULL, taps, rows, m, c);
        }
    }
    free(wt);
    free(ptrs);
    return 0;
}

/* ---- transpose: dst (cols x rows) = src (rows x cols)^T, both contiguous. Blocks of 16 x 16 are transposed in
 * registers by four rounds of two-source shuffles (round b swaps the off-diagonal b x b sub-blocks of every 2b x 2b
 * block: element (i, j) trades its row's and column's bit b); the rims one element at a time. ATen's strided copy
 * moves one element at a time everywhere (the linear layers' gradient transposes: ~5x a plain copy). */
#if defined(__clang__)
#define SHUFFLE(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define SHUFFLE(a, b, ...) __builtin_shuffle(a, b, (vi){__VA_ARGS__})
#endif
#define LO8 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23
#define HI8 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31
#define LO4 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27
#define HI4 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31
#define LO2 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29
#define HI2 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31
#define LO1 0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30
#define HI1 1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31
#define SWAP_ROUND(b, LO, HI)                                                        \
    for (int i = 0; i < VL; ++i)                                                     \
        if (!(i & (b))) {                                                            \
            const vf a = m[i], c = m[i + (b)];                                       \
            m[i] = SHUFFLE(a, c, LO);                                                \
            m[i + (b)] = SHUFFLE(a, c, HI);                                          \
        }

void transpose_matrix(const float *src, float *dst, int64_t rows, int64_t cols) {
    const int64_t rb = rows / VL * VL, cb = cols / VL * VL;
    for (int64_t i0 = 0; i0 < rb; i0 += VL) {
        for (int64_t j0 = 0; j0 < cb; j0 += VL) {
            vf m[VL];
            for (int i = 0; i < VL; ++i) m[i] = vload(src + (i0 + i) * cols + j0);
            SWAP_ROUND(8, LO8, HI8)
            SWAP_ROUND(4, LO4, HI4)
            SWAP_ROUND(2, LO2, HI2)
            SWAP_ROUND(1, LO1, HI1)
            for (int i = 0; i < VL; ++i) vstore(dst + (j0 + i) * rows + i0, m[i]);
        }
        for (int64_t i = i0; i < i0 + VL; ++i)
            for (int64_t j = cb; j < cols; ++j) dst[j * rows + i] = src[i * cols + j];
    }
    for (int64_t i = rb; i < rows; ++i)
        for (int64_t j = 0; j < cols; ++j) dst[j * rows + i] = src[i * cols + j];
}

/* ---- im2col of a channels-last 2-D convolution's input (the weight gradient's tap matrix): cols (n * t_out * f_out,
 * kt * kf * c), row (b, t, f), column block (i, j) = x[b, t * st + i - pt, f * sf + j - pf, :] (x: (n, t_in, f_in, c)),
 * zeros outside x; each row written once, in order (ATen's strided copy per tap crosses the whole matrix nine
 * times). */
void im2col_nhwc(const float *x, float *cols, int64_t n, int64_t t_in, int64_t f_in, int64_t c, int64_t kt,
                 int64_t kf, int64_t st, int64_t sf, int64_t pt, int64_t pf, int64_t t_out, int64_t f_out) {
    const size_t bytes = sizeof(float) * (size_t)c;
    float *out = cols;
    for (int64_t b = 0; b < n; ++b)
        for (int64_t t = 0; t < t_out; ++t)
            for (int64_t f = 0; f < f_out; ++f)
                for (int64_t i = 0; i < kt; ++i) {
                    const int64_t ti = t * st + i - pt;
                    for (int64_t j = 0; j < kf; ++j, out += c) {
                        const int64_t fj = f * sf + j - pf;
                        if (ti < 0 || ti >= t_in || fj < 0 || fj >= f_in) memset(out, 0, bytes);
                        else memcpy(out, x + ((b * t_in + ti) * f_in + fj) * c, bytes);
                    }
                }
}

/* SplitMix64 (Steele, Lea and Flood 2014): the i-th output of the generator started at `seed`. */
static inline uint64_t splitmix64(uint64_t seed, uint64_t i) {
    uint64_t z = seed + (i + 1) * 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Element i (of the flattened tensor) is kept when the top 32 bits of draw i are >= threshold
 * (threshold = p * 2^32, rounded): out = x * scale where kept, 0 elsewhere. The backward is the same call on
 * the gradient with the same seed (the same mask). */
void dropout_forward(const float *x, float *out, int64_t numel, uint64_t seed, uint32_t threshold, float scale) {
    for (int64_t i = 0; i < numel; ++i) {
        const uint32_t u = (uint32_t)(splitmix64(seed, (uint64_t)i) >> 32);
        out[i] = u >= threshold ? x[i] * scale : 0.0f;
    }
}

/* ---- chunked self-attention, block form (streaming.ChunkedSelfAttention._attend_blocks) ----
 * Per (utterance, head, block of `block` queries): the queries' scores against the `span` keys from the block's
 * first position, masked keys at the float minimum, plus the block bias (-inf outside each query's window), softmax,
 * dropout (the counter-based draws of dropout_forward, indexed as the ATen path's (n, heads, blocks, block, span)
 * weights tensor, so both paths drop the same weights), the weighted sum of the values. Everything for one block
 * stays in the L1/L2 cache; the products run in register tiles of 4 rows x 3 vectors. The backward recomputes the
 * dropout mask and reads the saved softmax. */

/* c (m x np, row stride ldc) = a (m x k; element (i, l) at a[i * lda + l * ka]: ka = 1 for a row-major a, a's
 * transpose with lda = 1) @ b (k x np, row stride ldb); np a multiple of VL. Tiles of 4 rows x 3 vectors keep 12
 * accumulators in registers. */
static void gemm(const float *a, int64_t lda, int64_t ka, const float *b, int64_t ldb, float *c, int64_t ldc,
                 int64_t m, int64_t k, int64_t np) {
    int64_t i = 0;
    for (; i + 4 <= m; i += 4) {
        const float *a0 = a + i * lda, *a1 = a0 + lda, *a2 = a1 + lda, *a3 = a2 + lda;
        int64_t j = 0;
        for (; j + 3 * VL <= np; j += 3 * VL) {
            vf c00 = {0}, c01 = {0}, c02 = {0}, c10 = {0}, c11 = {0}, c12 = {0};
            vf c20 = {0}, c21 = {0}, c22 = {0}, c30 = {0}, c31 = {0}, c32 = {0};
            for (int64_t l = 0; l < k; ++l) {
                const float *bl = b + l * ldb + j;
                const vf b0 = vload(bl), b1 = vload(bl + VL), b2 = vload(bl + 2 * VL);
                vf x = vbroadcast(a0[l * ka]);
                c00 += x * b0; c01 += x * b1; c02 += x * b2;
                x = vbroadcast(a1[l * ka]);
                c10 += x * b0; c11 += x * b1; c12 += x * b2;
                x = vbroadcast(a2[l * ka]);
                c20 += x * b0; c21 += x * b1; c22 += x * b2;
                x = vbroadcast(a3[l * ka]);
                c30 += x * b0; c31 += x * b1; c32 += x * b2;
            }
            float *c0 = c + i * ldc + j, *c1 = c0 + ldc, *c2 = c1 + ldc, *c3 = c2 + ldc;
            vstore(c0, c00); vstore(c0 + VL, c01); vstore(c0 + 2 * VL, c02);
            vstore(c1, c10); vstore(c1 + VL, c11); vstore(c1 + 2 * VL, c12);
            vstore(c2, c20); vstore(c2 + VL, c21); vstore(c2 + 2 * VL, c22);
            vstore(c3, c30); vstore(c3 + VL, c31); vstore(c3 + 2 * VL, c32);
        }
        for (; j + 2 * VL <= np; j += 2 * VL) {
            vf c00 = {0}, c01 = {0}, c10 = {0}, c11 = {0}, c20 = {0}, c21 = {0}, c30 = {0}, c31 = {0};
            for (int64_t l = 0; l < k; ++l) {
                const vf b0 = vload(b + l * ldb + j), b1 = vload(b + l * ldb + j + VL);
                const vf x0 = vbroadcast(a0[l * ka]), x1 = vbroadcast(a1[l * ka]), x2 = vbroadcast(a2[l * ka]),
                         x3 = vbroadcast(a3[l * ka]);
                c00 += x0 * b0; c01 += x0 * b1; c10 += x1 * b0; c11 += x1 * b1;
                c20 += x2 * b0; c21 += x2 * b1; c30 += x3 * b0; c31 += x3 * b1;
            }
            vstore(c + i * ldc + j, c00); vstore(c + i * ldc + j + VL, c01);
            vstore(c + (i + 1) * ldc + j, c10); vstore(c + (i + 1) * ldc + j + VL, c11);
            vstore(c + (i + 2) * ldc + j, c20); vstore(c + (i + 2) * ldc + j + VL, c21);
            vstore(c + (i + 3) * ldc + j, c30); vstore(c + (i + 3) * ldc + j + VL, c31);
        }
        for (; j < np; j += VL) {
            vf c0 = {0}, c1 = {0}, c2 = {0}, c3 = {0};
            for (int64_t l = 0; l < k; ++l) {
                const vf b0 = vload(b + l * ldb + j);
                c0 += vbroadcast(a0[l * ka]) * b0; c1 += vbroadcast(a1[l * ka]) * b0;
                c2 += vbroadcast(a2[l * ka]) * b0; c3 += vbroadcast(a3[l * ka]) * b0;
            }
            vstore(c + i * ldc + j, c0); vstore(c + (i + 1) * ldc + j, c1);
            vstore(c + (i + 2) * ldc + j, c2); vstore(c + (i + 3) * ldc + j, c3);
        }
    }
    for (; i < m; ++i) {
        const float *a0 = a + i * lda;
        for (int64_t j = 0; j < np; j += VL) {
            vf c0 = {0};
            for (int64_t l = 0; l < k; ++l) c0 += vbroadcast(a0[l * ka]) * vload(b + l * ldb + j);
            vstore(c + i * ldc + j, c0);
        }
    }
}

/* exp(x) for the softmax: Cody-Waite range reduction and a degree-6 polynomial (relative error ~2e-7), plain
 * float arithmetic and integer bit moves so that the loops vectorise; 0 below -87 (where expf is subnormal or 0:
 * a key outside the window, at -inf, gets exactly zero weight). */
static inline float exp_approx(float x) {
    const int under = x < -87.0f;
    x = under ? -87.0f : (x > 88.0f ? 88.0f : x);
    const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round to nearest */
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return under ? 0.0f : p * scale;
}

static inline int64_t round_up(int64_t x) { return (x + VL - 1) / VL * VL; }

/* Shapes shared by the forward and the backward. Queries: q[b, t, hd * dh + d] at b * q_sn + t * q_st + ...,
 * t < t_len; keys / values likewise with rows p < l_len (the cache-prefixed sequence, left + t_len frames).
 * Blocks of `block` queries: block `bl` holds query rows bl * block + i and scores the `span` keys from position
 * bl * block (span = block + left). valid: (n, l_len) bytes (keys past l_len count as invalid). bias: (heads,
 * block, span), -inf outside each query's window. probs: (n, heads, nb, block, span) softmax before dropout. */
typedef struct {
    int64_t n, heads, dh, t_len, l_len, block, nb, span;
    int64_t q_sn, q_st, k_sn, k_st, v_sn, v_st;
    float score_divisor; uint64_t seed; uint32_t threshold; float keep_scale; int dropout;
} att_shape;

/* rows [0, rows) of x (row stride ld) -> dst (rows x width, row stride ldd), zero padded to total_rows */
static void load_rows(const float *x, int64_t ld, int64_t rows, int64_t width, float *dst, int64_t ldd,
                      int64_t total_rows) {
    for (int64_t r = 0; r < total_rows; ++r) {
        float *d = dst + r * ldd;
        memset(d, 0, sizeof(float) * (size_t)ldd);
        if (r < rows) memcpy(d, x + r * ld, sizeof(float) * (size_t)width);
    }
}

/* dst (cols x ldd) = transpose of src (rows x cols, row stride lds), zero padded */
static void transpose(const float *src, int64_t lds, int64_t rows, int64_t cols, float *dst, int64_t ldd) {
    for (int64_t c = 0; c < cols; ++c) {
        float *d = dst + c * ldd;
        for (int64_t r = 0; r < rows; ++r) d[r] = src[r * lds + c];
        for (int64_t r = rows; r < ldd; ++r) d[r] = 0.0f;
    }
}

/* Block `bl` of utterance `b`, head `h`: its query rows (the last block may be partial), its key rows (the last
 * spans may run past the sequence), and its keys and values (S x ldkv) and queries (block x ldq) copied, zero
 * padded. */
static void load_block(const att_shape *s, const float *q, const float *k, const float *v, int64_t b, int64_t h,
                       int64_t bl, float *kk, float *vv, int64_t ldkv, float *qq, int64_t ldq, int64_t *rows,
                       int64_t *krows) {
    const int64_t B = s->block, S = s->span, D = s->dh, first = bl * B;
    *rows = s->t_len - first < B ? s->t_len - first : B;
    *krows = s->l_len - first < S ? s->l_len - first : S;
    load_rows(k + b * s->k_sn + first * s->k_st + h * D, s->k_st, *krows, D, kk, ldkv, S);
    load_rows(v + b * s->v_sn + first * s->v_st + h * D, s->v_st, *krows, D, vv, ldkv, S);
    load_rows(q + b * s->q_sn + first * s->q_st + h * D, s->q_st, *rows, D, qq, ldq, B);
}

/* dst rows (row stride ldd) = src (rows x width, row stride lds) */
static void store_rows(const float *src, int64_t lds, int64_t rows, int64_t width, float *dst, int64_t ldd) {
    for (int64_t r = 0; r < rows; ++r) memcpy(dst + r * ldd, src + r * lds, sizeof(float) * (size_t)width);
}

/* dst rows (row stride ldd) += src (rows x width, row stride lds) */
static void add_rows(const float *src, int64_t lds, int64_t rows, int64_t width, float *dst, int64_t ldd) {
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t d = 0; d < width; ++d) dst[r * ldd + d] += src[r * lds + d];
}

/* The first row of block `bl` of utterance `b`, head `h` in the (n, heads, nb, block, span) weights layout: where the
 * saved softmax lies and, counted from s->n0, which draws its dropout takes (the ATen path's weights tensor). */
static inline int64_t weights_row(const att_shape *s, int64_t b, int64_t h, int64_t bl) {
    return ((b * s->heads + h) * s->nb + bl) * s->block;
}

/* m[0, span) = the dropout mask of weights row `row` (0 or keep_scale) */
static inline void drop_mask(const att_shape *s, int64_t row, float *m) {
    const uint64_t seed = s->seed, base = (uint64_t)row * (uint64_t)s->span;
    const uint32_t threshold = s->threshold;
    const float keep = s->keep_scale;
    for (int64_t j = 0; j < s->span; ++j)
        m[j] = (uint32_t)(splitmix64(seed, base + (uint64_t)j) >> 32) >= threshold ? keep : 0.0f;
}

/* reductions over n (a multiple of VL) floats in VL lane partials, so that they vectorise */
static inline float row_max(const float *x, int64_t n) {
    float p[VL];
    for (int k = 0; k < VL; ++k) p[k] = x[k];
    for (int64_t j = VL; j < n; j += VL)
        for (int k = 0; k < VL; ++k) p[k] = x[j + k] > p[k] ? x[j + k] : p[k];
    float m = p[0];
    for (int k = 1; k < VL; ++k) m = p[k] > m ? p[k] : m;
    return m;
}

static inline float row_dot(const float *x, const float *y, int64_t n) {
    float p[VL] = {0};
    for (int64_t j = 0; j < n; j += VL)
        for (int k = 0; k < VL; ++k) p[k] += x[j + k] * y[j + k];
    float s = 0.0f;
    for (int k = 0; k < VL; ++k) s += p[k];
    return s;
}

static inline float row_sum(const float *x, int64_t n) {
    float p[VL] = {0};
    for (int64_t j = 0; j < n; j += VL)
        for (int k = 0; k < VL; ++k) p[k] += x[j + k];
    float s = 0.0f;
    for (int k = 0; k < VL; ++k) s += p[k];
    return s;
}

int chunked_attention_forward(const float *q, const float *k, const float *v, const uint8_t *valid,
                              const float *bias, float *out, float *probs, const att_shape *s) {
    const int64_t B = s->block, S = s->span, D = s->dh, Sp = round_up(S), Dp = round_up(D), Dm = s->heads * D;
    const float sd = s->score_divisor, lowest = -3.40282347e38f;
    float *buf = malloc(sizeof(float) * (size_t)(D * Sp + 2 * S * Dp + B * D + 2 * B * Sp + B * Dp + Sp));
    if (!buf) return -1;
    float *kt = buf, *vv = kt + D * Sp, *qq = vv + S * Dp, *sc = qq + B * D, *pd = sc + B * Sp, *o = pd + B * Sp,
          *mask = o + B * Dp, *kk = mask + Sp;
    for (int64_t b = 0; b < s->n; ++b)
        for (int64_t h = 0; h < s->heads; ++h)
            for (int64_t bl = 0; bl < s->nb; ++bl) {
                const int64_t first = bl * B;
                int64_t rows, krows;
                const uint8_t *val = valid + b * s->l_len + first;
                /* keys transposed (D x Sp), values (S x Dp), queries (B x D), zero padded */
                load_block(s, q, k, v, b, h, bl, kk, vv, Dp, qq, D, &rows, &krows);
                transpose(kk, Dp, S, D, kt, Sp);
                gemm(qq, D, 1, kt, Sp, sc, Sp, rows, D, Sp);
                const float *bh = bias + h * B * S;
                const int64_t row0 = weights_row(s, b, h, bl);
                float *pr = probs ? probs + row0 * S : NULL;
                for (int64_t i = 0; i < rows; ++i) {
                    float *row = sc + i * Sp, *prow = pd + i * Sp;
                    const float *bi = bh + i * S;
                    for (int64_t j = 0; j < krows; ++j) row[j] = (val[j] ? row[j] / sd : lowest) + bi[j];
                    for (int64_t j = krows; j < S; ++j) row[j] = lowest + bi[j];
                    for (int64_t j = S; j < Sp; ++j) row[j] = -INFINITY;
                    const float mx = row_max(row, Sp);
                    for (int64_t j = 0; j < Sp; ++j) row[j] = exp_approx(row[j] - mx);
                    const float rs = 1.0f / row_sum(row, Sp);
                    for (int64_t j = 0; j < Sp; ++j) prow[j] = row[j] * rs;
                    if (pr) memcpy(pr + i * S, prow, sizeof(float) * (size_t)S);
                    if (s->dropout) {
                        drop_mask(s, row0 + i, mask);
                        for (int64_t j = 0; j < S; ++j) prow[j] *= mask[j];
                    }
                }
                gemm(pd, Sp, 1, vv, Dp, o, Dp, rows, S, Dp);
                store_rows(o, Dp, rows, D, out + (b * s->t_len + first) * Dm + h * D, Dm);
            }
    free(buf);
    return 0;
}

/* Gradients of chunked_attention_forward: dq (n, t_len, heads * dh) written; dk, dv (n, l_len, heads * dh) and
 * dbias (heads, block, span) accumulated (the caller zeroes them). grad: (n, t_len, heads * dh) contiguous. */
int chunked_attention_backward(const float *q, const float *k, const float *v, const uint8_t *valid,
                               const float *probs, const float *grad, float *dq, float *dk, float *dv,
                               float *dbias, const att_shape *s) {
    const int64_t B = s->block, S = s->span, D = s->dh, Sp = round_up(S), Dp = round_up(D);
    const int64_t Dm = s->heads * D;
    const float sd = s->score_divisor;
    const size_t size = (size_t)(2 * S * Dp + D * Sp + 2 * B * Dp + 5 * B * Sp + S * Dp + B * Dp);
    float *buf = malloc(sizeof(float) * size);
    if (!buf) return -1;
    float *kk = buf, *vv = kk + S * Dp, *vt = vv + S * Dp, *qq = vt + D * Sp, *go = qq + B * Dp, *p = go + B * Dp,
          *pd = p + B * Sp, *dp = pd + B * Sp, *ds = dp + B * Sp, *acc = ds + B * Sp, *dqb = acc + S * Dp,
          *masks = dqb + B * Dp;
    for (int64_t b = 0; b < s->n; ++b)
        for (int64_t h = 0; h < s->heads; ++h)
            for (int64_t bl = 0; bl < s->nb; ++bl) {
                const int64_t first = bl * B;
                int64_t rows, krows;
                const uint8_t *val = valid + b * s->l_len + first;
                load_block(s, q, k, v, b, h, bl, kk, vv, Dp, qq, Dp, &rows, &krows);
                transpose(vv, Dp, S, D, vt, Sp);
                load_rows(grad + (b * s->t_len + first) * Dm + h * D, Dm, rows, D, go, Dp, B);
                const int64_t row0 = weights_row(s, b, h, bl);
                const float *pr = probs + row0 * S;
                for (int64_t i = 0; i < B; ++i) {
                    float *prow = p + i * Sp, *drow = pd + i * Sp;
                    if (i < rows) memcpy(prow, pr + i * S, sizeof(float) * (size_t)S);
                    else memset(prow, 0, sizeof(float) * (size_t)S);
                    for (int64_t j = S; j < Sp; ++j) prow[j] = 0.0f;
                    if (s->dropout) {
                        float *mask = masks + i * Sp;
                        drop_mask(s, row0 + i, mask);
                        for (int64_t j = 0; j < S; ++j) drow[j] = prow[j] * mask[j];
                        for (int64_t j = S; j < Sp; ++j) drow[j] = 0.0f;
                    } else {
                        memcpy(drow, prow, sizeof(float) * (size_t)Sp);
                    }
                }
                /* dv += pd^T go */
                gemm(pd, 1, Sp, go, Dp, acc, Dp, krows, rows, Dp);
                add_rows(acc, Dp, krows, D, dv + (b * s->l_len + first) * Dm + h * D, Dm);
                /* d(dropped weights) = go v^T; softmax backward; the bias gets dS, the raw scores dS / sqrt(dh)
                 * where the key is valid (masked_fill passes no gradient) */
                gemm(go, Dp, 1, vt, Sp, dp, Sp, rows, D, Sp);
                float *dbh = dbias + h * B * S;
                for (int64_t i = 0; i < B; ++i) {
                    float *drow = ds + i * Sp;
                    if (i >= rows) { memset(drow, 0, sizeof(float) * (size_t)Sp); continue; }
                    const float *prow = p + i * Sp;
                    float *g = dp + i * Sp;
                    if (s->dropout)
                        for (int64_t j = 0; j < S; ++j) g[j] *= masks[i * Sp + j];
                    for (int64_t j = S; j < Sp; ++j) g[j] = 0.0f;
                    const float dot = row_dot(prow, g, Sp);
                    for (int64_t j = 0; j < S; ++j) {
                        const float x = prow[j] * (g[j] - dot);
                        dbh[i * S + j] += x;
                        drow[j] = j < krows && val[j] ? x / sd : 0.0f;
                    }
                    for (int64_t j = S; j < Sp; ++j) drow[j] = 0.0f;
                }
                /* dq = dS k, dk += dS^T q */
                gemm(ds, Sp, 1, kk, Dp, dqb, Dp, rows, S, Dp);
                store_rows(dqb, Dp, rows, D, dq + (b * s->t_len + first) * Dm + h * D, Dm);
                gemm(ds, 1, Sp, qq, Dp, acc, Dp, krows, rows, Dp);
                add_rows(acc, Dp, krows, D, dk + (b * s->l_len + first) * Dm + h * D, Dm);
            }
    free(buf);
    return 0;
}
