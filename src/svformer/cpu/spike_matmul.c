/* Convolutions and linear layers over spike inputs, computed from the active inputs only (`sparse.py`).

   A spike input holds only 0 and 1, so an output is its bias plus the sum of the weight rows of the inputs
   that fired: for each output position, the kernel lists the active inputs of its receptive field once,
   then adds their weight rows, MC output channels at a time, in the order of the list (increasing input
   index). Work is proportional to the number of spikes instead of the number of inputs. Each output is
   summed by one thread in that fixed order, so the result is the same for any number of threads.

   Layouts: input x (n, h, w, c) (channels last); weights wt (kh, kw, c, m); bias (m) or NULL; output y
   (n, oh, ow, m). A linear layer is the case kh = kw = h = 1.
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#define SPIKE_X86 1
#endif

#define MC 64 /* output channels per register tile: 8 AVX registers */
#define RB 16 /* output positions per block: their lists are built once for all tiles */

/* Nonzero elements among a sample of x[0, size): runs of SAMPLE elements, one in every `every` runs (all
   of x for every = 1). *counted gets the sample's size, *other how many of it are neither 0 nor 1. */
#define SAMPLE 64
int64_t spike_count(const float* x, int64_t size, int64_t every, int64_t* counted, int64_t* other, int threads) {
    int64_t runs = (size + SAMPLE - 1) / SAMPLE, nonzero = 0, bad = 0, seen = 0;
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) reduction(+ : nonzero, bad, seen) schedule(static)
#endif
    for (int64_t r = 0; r < runs; r += every) {
        int64_t end = (r + 1) * SAMPLE < size ? (r + 1) * SAMPLE : size;
        for (int64_t i = r * SAMPLE; i < end; i++) {
            nonzero += x[i] != 0.0f;
            bad += (x[i] != 0.0f) & (x[i] != 1.0f);
        }
        seen += end - r * SAMPLE;
    }
    *counted = seen;
    *other = bad;
    return nonzero;
}

/* Active inputs of output position r (weight-row indices, increasing); returns their number. */
static int32_t active(const float* x, int64_t h, int64_t w, int64_t c, int64_t kh, int64_t kw, int64_t sh,
                      int64_t sw, int64_t ph, int64_t pw, int64_t oh, int64_t ow, int64_t r, int32_t* list) {
    int64_t img = r / (oh * ow), oy = (r / ow) % oh, ox = r % ow;
    int32_t count = 0;
    for (int64_t i = 0; i < kh; i++) {
        int64_t iy = oy * sh - ph + i;
        if (iy < 0 || iy >= h) continue;
        for (int64_t j = 0; j < kw; j++) {
            int64_t ix = ox * sw - pw + j;
            if (ix < 0 || ix >= w) continue;
            const float* px = x + ((img * h + iy) * w + ix) * c;
            int32_t base = (int32_t)((i * kw + j) * c);
            for (int64_t ch = 0; ch < c; ch++) { /* branch-free: a spike is a coin flip to a predictor */
                list[count] = base + (int32_t)ch;
                count += px[ch] != 0.0f;
            }
        }
    }
    return count;
}

/* out[0, mc) = bias[0, mc) (or 0) + the sum of the rows list[0, count) of wt (row stride m), first mc
   columns; callers pass wt, bias and out already offset to their tile's first column. */
static void tile(const int32_t* list, int32_t count, const float* wt, int64_t m, const float* bias, int64_t mc,
                 float* out) {
    float acc[MC];
    for (int64_t i = 0; i < mc; i++) acc[i] = bias ? bias[i] : 0.0f;
    for (int32_t q = 0; q < count; q++) {
        const float* row = wt + (int64_t)list[q] * m;
        for (int64_t i = 0; i < mc; i++) acc[i] += row[i];
    }
    memcpy(out, acc, (size_t)mc * sizeof(float));
}

#ifdef SPIKE_X86
/* `tile` for mc = MC in eight AVX registers: the same additions in the same order. */
__attribute__((target("avx"))) static void tile_avx(const int32_t* list, int32_t count, const float* wt, int64_t m,
                                                    const float* bias, float* out) {
    __m256 a0, a1, a2, a3, a4, a5, a6, a7;
    if (bias) {
        a0 = _mm256_loadu_ps(bias); a1 = _mm256_loadu_ps(bias + 8); a2 = _mm256_loadu_ps(bias + 16);
        a3 = _mm256_loadu_ps(bias + 24); a4 = _mm256_loadu_ps(bias + 32); a5 = _mm256_loadu_ps(bias + 40);
        a6 = _mm256_loadu_ps(bias + 48); a7 = _mm256_loadu_ps(bias + 56);
    } else {
        a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = _mm256_setzero_ps();
    }
    for (int32_t q = 0; q < count; q++) {
        const float* row = wt + (int64_t)list[q] * m;
        a0 = _mm256_add_ps(a0, _mm256_loadu_ps(row)); a1 = _mm256_add_ps(a1, _mm256_loadu_ps(row + 8));
        a2 = _mm256_add_ps(a2, _mm256_loadu_ps(row + 16)); a3 = _mm256_add_ps(a3, _mm256_loadu_ps(row + 24));
        a4 = _mm256_add_ps(a4, _mm256_loadu_ps(row + 32)); a5 = _mm256_add_ps(a5, _mm256_loadu_ps(row + 40));
        a6 = _mm256_add_ps(a6, _mm256_loadu_ps(row + 48)); a7 = _mm256_add_ps(a7, _mm256_loadu_ps(row + 56));
    }
    _mm256_storeu_ps(out, a0); _mm256_storeu_ps(out + 8, a1); _mm256_storeu_ps(out + 16, a2);
    _mm256_storeu_ps(out + 24, a3); _mm256_storeu_ps(out + 32, a4); _mm256_storeu_ps(out + 40, a5);
    _mm256_storeu_ps(out + 48, a6); _mm256_storeu_ps(out + 56, a7);
}
#endif

/* y = conv(x, wt) + bias over spike inputs (layouts at the top). Returns 0, or -1 if out of memory. */
int spike_conv(const float* x, int64_t n, int64_t h, int64_t w, int64_t c, const float* wt, const float* bias,
               int64_t m, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t oh,
               int64_t ow, float* y, int threads) {
    int64_t rows = n * oh * ow, k = kh * kw * c, blocks = (rows + RB - 1) / RB;
    int failed = 0;
#ifdef SPIKE_X86
    int avx = __builtin_cpu_supports("avx");
#endif
#ifdef _OPENMP
#pragma omp parallel num_threads(threads) reduction(| : failed)
#endif
    {
        int32_t* lists = malloc(sizeof(int32_t) * (size_t)(RB * k));
        int32_t counts[RB];
        if (!lists) failed = 1;
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (int64_t b = 0; b < blocks; b++) {
            if (!lists) continue;
            int64_t r0 = b * RB, r1 = r0 + RB < rows ? r0 + RB : rows;
            for (int64_t r = r0; r < r1; r++)
                counts[r - r0] = active(x, h, w, c, kh, kw, sh, sw, ph, pw, oh, ow, r, lists + (r - r0) * k);
            for (int64_t m0 = 0; m0 < m; m0 += MC) { /* one tile's weight columns stay in cache for the block */
                int64_t mc = m - m0 < MC ? m - m0 : MC;
                for (int64_t r = r0; r < r1; r++) {
                    const int32_t* list = lists + (r - r0) * k;
                    float* out = y + r * m + m0;
#ifdef SPIKE_X86
                    if (avx && mc == MC) {
                        tile_avx(list, counts[r - r0], wt + m0, m, bias ? bias + m0 : NULL, out);
                        continue;
                    }
#endif
                    tile(list, counts[r - r0], wt + m0, m, bias ? bias + m0 : NULL, mc, out);
                }
            }
        }
        free(lists);
    }
    return failed ? -1 : 0;
}
