/* Convolutions and linear layers over spike inputs, computed from the active inputs only (`sparse.py`).

   A spike input holds only 0 and 1, so an output is its bias plus the sum of the weight rows of the inputs
   that fired. The kernel first lists the channels that fired at each input pixel (once per pixel, however
   many receptive fields hold it); an output position's list of active weight rows is then its pixels'
   lists with their offsets in the kernel window, in increasing row order. The rows are added MC output
   channels at a time, in the order of the list, a chunk of KC rows at a time so that the chunk stays in
   cache while every position of a block adds from it (a partial sum is stored and reloaded exactly, so
   chunking does not change the additions). Work is proportional to the number of spikes instead of the
   number of inputs. Threads share out (block of positions, tile) items; each output is summed by one
   thread in that fixed order, so the result is the same for any number of threads.

   Layouts: input x (n, h, w, c) (channels last); weights wt (tiles, k, MC): tile t holds output channels
   [t MC, t MC + MC) of the rows (kh, kw, c) flattened to k, zero past m; bias (m) or NULL; output y
   (n, oh, ow, m). A linear layer is the case kh = kw = h = 1.
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#define SPIKE_X86 1
#endif

#define MC 64  /* output channels per register tile: 8 AVX or 4 AVX-512 registers */
#define RB 32  /* output positions per block (at most): they share each chunk of weight rows */
#define KC 128 /* weight rows per chunk: 32 KB of one tile */

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

/* The channels [from, c) of one pixel px that are not 0, increasing, into out; returns their number. */
static int32_t pixel_list(const float* px, int64_t from, int64_t c, int32_t* out) {
    int32_t count = 0;
    for (int64_t ch = from; ch < c; ch++) { /* branch-free: a spike is a coin flip to a predictor */
        out[count] = (int32_t)ch;
        count += px[ch] != 0.0f;
    }
    return count;
}

#ifdef SPIKE_X86
/* `pixel_list` eight channels at a time: the lanes that fired are packed to the front by a permutation
   looked up from their mask, and the next store starts after them. */
static int32_t pack_table[256][8];
static void pack_table_init(void) {
    for (int mask = 0; mask < 256; mask++) {
        int n = 0;
        for (int lane = 0; lane < 8; lane++)
            if (mask >> lane & 1) pack_table[mask][n++] = lane;
        while (n < 8) pack_table[mask][n++] = 0;
    }
}

__attribute__((target("avx2"))) static int32_t pixel_list_avx2(const float* px, int64_t c, int32_t* out) {
    int32_t count = 0;
    int64_t ch = 0;
    __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (; ch + 8 <= c; ch += 8) {
        __m256 v = _mm256_loadu_ps(px + ch);
        int mask = _mm256_movemask_ps(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_NEQ_UQ));
        __m256i perm = _mm256_loadu_si256((const __m256i*)pack_table[mask]);
        __m256i idx = _mm256_add_epi32(_mm256_permutevar8x32_epi32(lanes, perm), _mm256_set1_epi32((int)ch));
        _mm256_storeu_si256((__m256i*)(out + count), idx); /* count <= ch: within out[0, c) */
        count += __builtin_popcount((unsigned)mask);
    }
    return count + pixel_list(px, ch, c, out + count); /* the last channels, fewer than a vector */
}

/* `pixel_list` sixteen channels at a time: AVX-512 compresses the lanes that fired to the front. */
__attribute__((target("avx512f"))) static int32_t pixel_list_avx512(const float* px, int64_t c, int32_t* out) {
    int32_t count = 0;
    int64_t ch = 0;
    __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (; ch + 16 <= c; ch += 16) {
        __mmask16 mask = _mm512_cmp_ps_mask(_mm512_loadu_ps(px + ch), _mm512_setzero_ps(), _CMP_NEQ_UQ);
        __m512i idx = _mm512_maskz_compress_epi32(mask, _mm512_add_epi32(lanes, _mm512_set1_epi32((int)ch)));
        _mm512_storeu_si512((void*)(out + count), idx); /* count <= ch: within out[0, c) */
        count += __builtin_popcount((unsigned)mask);
    }
    return count + pixel_list(px, ch, c, out + count); /* the last channels, fewer than a vector */
}
#endif

/* The instruction set the routines below choose by: 0 plain C, 1 AVX, 2 AVX2, 3 AVX-512 (foundation). */
static int isa_limit = 3;
static int isa(void) {
    int level = 0, limit = __atomic_load_n(&isa_limit, __ATOMIC_RELAXED);
#ifdef SPIKE_X86
    level = __builtin_cpu_supports("avx512f") ? 3 : __builtin_cpu_supports("avx2") ? 2
          : __builtin_cpu_supports("avx") ? 1 : 0;
#endif
    return level < limit ? level : limit;
}

/* Use at most instruction set `limit` (levels above; every routine gives the same bits, so this changes the
   speed only: for tests and measurements); returns the level now in use. */
int spike_isa(int limit) {
    __atomic_store_n(&isa_limit, limit, __ATOMIC_RELAXED);
    return isa();
}

/* One pixel's list by the fastest routine allowed. */
static int32_t any_pixel_list(const float* px, int64_t c, int32_t* out, int level) {
#ifdef SPIKE_X86
    if (level >= 3) return pixel_list_avx512(px, c, out);
    if (level == 2) return pixel_list_avx2(px, c, out);
#endif
    (void)level;
    return pixel_list(px, 0, c, out);
}

/* The pixels of output position r's window, in window order: their indices into p[], their offsets in
   the window's rows into base[]; returns their number. */
static int64_t window(int64_t h, int64_t w, int64_t c, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
                      int64_t pw, int64_t oh, int64_t ow, int64_t r, int64_t* p, int32_t* base) {
    int64_t img = r / (oh * ow), oy = (r / ow) % oh, ox = r % ow, count = 0;
    for (int64_t i = 0; i < kh; i++) {
        int64_t iy = oy * sh - ph + i;
        if (iy < 0 || iy >= h) continue;
        for (int64_t j = 0; j < kw; j++) {
            int64_t ix = ox * sw - pw + j;
            if (ix < 0 || ix >= w) continue;
            p[count] = (img * h + iy) * w + ix;
            base[count++] = (int32_t)((i * kw + j) * c);
        }
    }
    return count;
}

/* to[0, MC) = from[0, MC) (zeros if NULL) + the rows list[0, count) of a tile (rows of MC), added in order. */
static void tile(const int32_t* list, int32_t count, const float* wt, const float* from, float* to) {
    float acc[MC];
    for (int64_t i = 0; i < MC; i++) acc[i] = from ? from[i] : 0.0f;
    for (int32_t q = 0; q < count; q++) {
        const float* row = wt + (int64_t)list[q] * MC;
        for (int64_t i = 0; i < MC; i++) acc[i] += row[i];
    }
    memcpy(to, acc, sizeof acc);
}

#ifdef SPIKE_X86
/* `tile` in eight AVX registers: the same additions in the same order. */
__attribute__((target("avx"))) static void tile_avx(const int32_t* list, int32_t count, const float* wt,
                                                    const float* from, float* to) {
    __m256 a0, a1, a2, a3, a4, a5, a6, a7;
    if (from) {
        a0 = _mm256_loadu_ps(from); a1 = _mm256_loadu_ps(from + 8); a2 = _mm256_loadu_ps(from + 16);
        a3 = _mm256_loadu_ps(from + 24); a4 = _mm256_loadu_ps(from + 32); a5 = _mm256_loadu_ps(from + 40);
        a6 = _mm256_loadu_ps(from + 48); a7 = _mm256_loadu_ps(from + 56);
    } else {
        a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = _mm256_setzero_ps();
    }
    for (int32_t q = 0; q < count; q++) {
        const float* row = wt + (int64_t)list[q] * MC;
        a0 = _mm256_add_ps(a0, _mm256_loadu_ps(row)); a1 = _mm256_add_ps(a1, _mm256_loadu_ps(row + 8));
        a2 = _mm256_add_ps(a2, _mm256_loadu_ps(row + 16)); a3 = _mm256_add_ps(a3, _mm256_loadu_ps(row + 24));
        a4 = _mm256_add_ps(a4, _mm256_loadu_ps(row + 32)); a5 = _mm256_add_ps(a5, _mm256_loadu_ps(row + 40));
        a6 = _mm256_add_ps(a6, _mm256_loadu_ps(row + 48)); a7 = _mm256_add_ps(a7, _mm256_loadu_ps(row + 56));
    }
    _mm256_storeu_ps(to, a0); _mm256_storeu_ps(to + 8, a1); _mm256_storeu_ps(to + 16, a2);
    _mm256_storeu_ps(to + 24, a3); _mm256_storeu_ps(to + 32, a4); _mm256_storeu_ps(to + 40, a5);
    _mm256_storeu_ps(to + 48, a6); _mm256_storeu_ps(to + 56, a7);
}

/* `tile` in four AVX-512 registers: the same additions in the same order. */
__attribute__((target("avx512f"))) static void tile_avx512(const int32_t* list, int32_t count, const float* wt,
                                                          const float* from, float* to) {
    __m512 a0, a1, a2, a3;
    if (from) {
        a0 = _mm512_loadu_ps(from); a1 = _mm512_loadu_ps(from + 16);
        a2 = _mm512_loadu_ps(from + 32); a3 = _mm512_loadu_ps(from + 48);
    } else {
        a0 = a1 = a2 = a3 = _mm512_setzero_ps();
    }
    for (int32_t q = 0; q < count; q++) {
        const float* row = wt + (int64_t)list[q] * MC;
        a0 = _mm512_add_ps(a0, _mm512_loadu_ps(row)); a1 = _mm512_add_ps(a1, _mm512_loadu_ps(row + 16));
        a2 = _mm512_add_ps(a2, _mm512_loadu_ps(row + 32)); a3 = _mm512_add_ps(a3, _mm512_loadu_ps(row + 48));
    }
    _mm512_storeu_ps(to, a0); _mm512_storeu_ps(to + 16, a1);
    _mm512_storeu_ps(to + 32, a2); _mm512_storeu_ps(to + 48, a3);
}
#endif

/* One tile's rows by the fastest routine allowed. */
static void any_tile(const int32_t* list, int32_t count, const float* wt, const float* from, float* to, int level) {
#ifdef SPIKE_X86
    if (level >= 3) {
        tile_avx512(list, count, wt, from, to);
        return;
    }
    if (level >= 1) {
        tile_avx(list, count, wt, from, to);
        return;
    }
#endif
    (void)level;
    tile(list, count, wt, from, to);
}

/* y = conv(x, wt) + bias over spike inputs (layouts at the top). Returns 0, or -1 if out of memory. */
int spike_conv(const float* x, int64_t n, int64_t h, int64_t w, int64_t c, const float* wt, const float* bias,
               int64_t m, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t oh,
               int64_t ow, float* y, int threads) {
    int64_t pixels = n * h * w, rows = n * oh * ow, k = kh * kw * c, tiles = (m + MC - 1) / MC;
    /* A position's window is its own pixel (1x1, stride 1, no padding: a linear layer too): its list is the
       pixel's. Else the positions' lists are made from their windows' pixel lists, one after another. */
    int same = kh == 1 && kw == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0;
    /* Work items are (block of positions, tile), blocks smaller where there are few items for the threads. */
    int64_t rb = RB;
    while (rb > 4 && (rows + rb - 1) / rb * tiles < 8 * (threads > 0 ? threads : 1)) rb /= 2;
    int64_t blocks = (rows + rb - 1) / rb, items = blocks * tiles;
    int level = isa(), failed = 0;
#ifdef SPIKE_X86
    if (level == 2) { /* the table is filled once, by the first caller; others wait for it (callers may be threads) */
        static int state = 0; /* 0 empty, 1 being filled, 2 ready */
        int empty = 0;
        if (__atomic_load_n(&state, __ATOMIC_ACQUIRE) != 2) {
            if (__atomic_compare_exchange_n(&state, &empty, 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
                pack_table_init();
                __atomic_store_n(&state, 2, __ATOMIC_RELEASE);
            }
            while (__atomic_load_n(&state, __ATOMIC_ACQUIRE) != 2) {
            }
        }
    }
#endif
    int32_t* cnt = malloc(sizeof(int32_t) * (size_t)pixels);
    int32_t* idx = malloc(sizeof(int32_t) * (size_t)(pixels * c));
    int64_t* start = same ? NULL : malloc(sizeof(int64_t) * (size_t)(rows + 1));
    float* padded = bias ? calloc((size_t)(tiles * MC), sizeof(float)) : NULL; /* partial sums start here */
    int32_t* lists = NULL;
    if (!cnt || !idx || (!same && !start) || (bias && !padded)) {
        failed = 1;
        goto done;
    }
    if (bias) memcpy(padded, bias, (size_t)m * sizeof(float));
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static)
#endif
    for (int64_t p = 0; p < pixels; p++) cnt[p] = any_pixel_list(x + p * c, c, idx + p * c, level);
    if (!same) {
        start[0] = 0;
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static)
#endif
        for (int64_t r = 0; r < rows; r++) {
            int64_t p[kh * kw], length = 0;
            int32_t base[kh * kw];
            for (int64_t q = window(h, w, c, kh, kw, sh, sw, ph, pw, oh, ow, r, p, base); q-- > 0;) length += cnt[p[q]];
            start[r + 1] = length;
        }
        for (int64_t r = 0; r < rows; r++) start[r + 1] += start[r];
        lists = malloc(sizeof(int32_t) * (size_t)(start[rows] > 0 ? start[rows] : 1));
        if (!lists) {
            failed = 1;
            goto done;
        }
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static)
#endif
        for (int64_t r = 0; r < rows; r++) {
            int64_t p[kh * kw];
            int32_t base[kh * kw], *list = lists + start[r];
            int64_t pixels_in = window(h, w, c, kh, kw, sh, sw, ph, pw, oh, ow, r, p, base);
            for (int64_t q = 0; q < pixels_in; q++) {
                const int32_t* src = idx + p[q] * c;
                for (int32_t e = 0; e < cnt[p[q]]; e++) *list++ = base[q] + src[e];
            }
        }
    }
#ifdef _OPENMP
#pragma omp parallel num_threads(threads) reduction(| : failed)
#endif
    {
        /* The block's partial sums of one tile; where each position's list enters each chunk (the same for
           every tile: made once per block). */
        int64_t chunks = (k + KC - 1) / KC, cut_block = -1;
        float* acc = malloc(sizeof(float) * (size_t)(RB * MC));
        int32_t* cuts = malloc(sizeof(int32_t) * (size_t)(RB * (chunks + 1)));
        if (!acc || !cuts) failed = 1;
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (int64_t item = 0; item < items; item++) {
            if (!acc || !cuts) continue;
            int64_t b = item / tiles, r0 = b * rb, r1 = r0 + rb < rows ? r0 + rb : rows, t = item % tiles;
            int64_t m0 = t * MC, mc = m - m0 < MC ? m - m0 : MC;
            const float* wtile = wt + t * k * MC;
            if (b != cut_block) {
                for (int64_t r = r0; r < r1; r++) {
                    const int32_t* list = same ? idx + r * c : lists + start[r];
                    int32_t count = same ? cnt[r] : (int32_t)(start[r + 1] - start[r]), at = 0;
                    int32_t* cut = cuts + (r - r0) * (chunks + 1);
                    for (int64_t j = 0; j < chunks; j++) {
                        cut[j] = at;
                        while (at < count && list[at] < (j + 1) * KC) at++;
                    }
                    cut[chunks] = count;
                }
                cut_block = b;
            }
            for (int64_t j = 0; j < chunks; j++) { /* one chunk of the tile's rows, in cache for the block */
                int first_chunk = j == 0, last_chunk = j == chunks - 1;
                for (int64_t r = r0; r < r1; r++) {
                    const int32_t* list = same ? idx + r * c : lists + start[r];
                    const int32_t* cut = cuts + (r - r0) * (chunks + 1);
                    int32_t from = cut[j], to = cut[j + 1];
                    float* part = acc + (r - r0) * MC;
                    const float* begin = first_chunk ? (padded ? padded + m0 : NULL) : part;
                    float* end = last_chunk && mc == MC ? y + r * m + m0 : part;
                    any_tile(list + from, to - from, wtile, begin, end, level);
                    if (last_chunk && mc < MC) memcpy(y + r * m + m0, part, (size_t)mc * sizeof(float));
                }
            }
        }
        free(acc);
        free(cuts);
    }
done:
    free(lists);
    free(start);
    free(padded);
    free(cnt);
    free(idx);
    return failed ? -1 : 0;
}
