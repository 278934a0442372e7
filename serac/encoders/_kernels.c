/* Small CPU kernels for the encoders' training step (serac.encoders.kernels builds this file with the system C
 * compiler on first use and calls it through ctypes). Plain C99 on contiguous float32 buffers, one thread, no
 * dependency beyond libc: the loops are written so that the compiler vectorises them over the channel axis.
 *
 * depthwise_input_grad: the padded input's gradient of a causal depthwise convolution in the time-major (N, T, C)
 *   layout, every tap a multiply-add over contiguous channel rows (oneDNN's takes ~80x longer with a dilation).
 * depthwise_weight_grad: the weight and bias gradients of a causal depthwise convolution in the time-major
 *   layout, every tap in one pass over the output gradient (ATen needs a multiply and a reduction per tap).
 * dropout_forward: dropout whose keep decision for element i is a counter-based draw,
 *   SplitMix64(seed, i), so the backward recomputes the mask from the seed instead of storing it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Row block of the partial sums: each block's sum is added to the running total, so the rounding error grows
 * with the number of blocks, not of rows. */
#define ROW_BLOCK 64

/* g: (n, t_out, c) output gradient; p: (n, t_pad, c) the padded input the forward read;
 * output t, tap k reads p[:, t * stride + k * dilation, :].
 * dw: (c, kernel) written; db: (c) written when not NULL. One pass over the rows, all channels at once (the rows
 * are read once, in order); the (kernel + 1) x c partial sums stay in the L1 cache.
 * Returns 0, or -1 when out of memory. */
int depthwise_weight_grad(const float *g, const float *p, float *dw, float *db, int64_t n, int64_t t_out,
                          int64_t t_pad, int64_t c, int64_t kernel, int64_t stride, int64_t dilation) {
    const int64_t size = (kernel + 1) * c;
    float *acc = calloc((size_t)(2 * size), sizeof(float));
    if (!acc) return -1;
    float *tot = acc + size;
    int64_t rows = 0;
    for (int64_t b = 0; b < n; ++b) {
        for (int64_t t = 0; t < t_out; ++t) {
            const float *gr = g + (b * t_out + t) * c;
            for (int64_t k = 0; k < kernel; ++k) {
                const float *pr = p + (b * t_pad + t * stride + k * dilation) * c;
                float *a = acc + k * c;
                for (int64_t j = 0; j < c; ++j) a[j] += gr[j] * pr[j];
            }
            float *a = acc + kernel * c;
            for (int64_t j = 0; j < c; ++j) a[j] += gr[j];
            if (++rows == ROW_BLOCK) {
                for (int64_t i = 0; i < size; ++i) { tot[i] += acc[i]; acc[i] = 0.0f; }
                rows = 0;
            }
        }
    }
    for (int64_t i = 0; i < size; ++i) tot[i] += acc[i];
    for (int64_t j = 0; j < c; ++j) {
        for (int64_t k = 0; k < kernel; ++k) dw[j * kernel + k] = tot[k * c + j];
        if (db) db[j] = tot[kernel * c + j];
    }
    free(acc);
    return 0;
}

/* w: (c, kernel) -> wt: (kernel, c), so that the channel loops read it contiguously. NULL if out of memory. */
static float *transpose_taps(const float *w, int64_t c, int64_t kernel) {
    float *wt = malloc(sizeof(float) * (size_t)(c * kernel));
    if (!wt) return NULL;
    for (int64_t j = 0; j < c; ++j)
        for (int64_t k = 0; k < kernel; ++k) wt[k * c + j] = w[j * kernel + k];
    return wt;
}

/* The gradient of the padded input: gp[b, t * stride + k * dilation, :] += w[:, k] * g[b, t, :] (gp written,
 * frames no tap reads are zero). Returns 0, or -1 when out of memory. */
int depthwise_input_grad(const float *g, const float *w, float *gp, int64_t n, int64_t t_out, int64_t t_pad,
                         int64_t c, int64_t kernel, int64_t stride, int64_t dilation) {
    float *wt = transpose_taps(w, c, kernel);
    if (!wt) return -1;
    memset(gp, 0, sizeof(float) * (size_t)(n * t_pad * c));
    for (int64_t b = 0; b < n; ++b) {
        for (int64_t t = 0; t < t_out; ++t) {
            const float *gr = g + (b * t_out + t) * c;
            for (int64_t k = 0; k < kernel; ++k) {
                float *pr = gp + (b * t_pad + t * stride + k * dilation) * c;
                const float *wk = wt + k * c;
                for (int64_t j = 0; j < c; ++j) pr[j] += wk[j] * gr[j];
            }
        }
    }
    free(wt);
    return 0;
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
