/* SVFormer's neuron loops in C: see compiled.py, which builds this file (REAL = float or double) and
 * calls it on blocks of positions.
 *
 * Threads: built with OpenMP, a call with threads > 1 shares its blocks among that many threads of the
 * OpenMP runtime PyTorch already loaded (the same libgomp.so.1), so the threads that run PyTorch's ops run
 * these loops too, instead of spinning beside threads of our own; worker w uses the w-th per-thread
 * scratch. Without OpenMP (or with threads = 1) a call runs its range on the calling thread as worker
 * `worker`, and compiled.py runs several calls at once from a thread pool.
 *
 * Built with -ffp-contract=off: every operation rounds as PyTorch's element-wise ops do, so the spikes
 * and potentials are the same bits as the eager loops'. Tensors are (T, n) and dense; a call works on
 * the positions [lo, hi) in blocks of BLOCK, whose time loop stays in L1/L2.
 *
 * mode 0, PLIF: H = (X - V) * c + V (c = k);  1, LIF: H = (X - V) / c + V (c = tau);  2, IF: H = V + X.
 * Fire S = H >= v_th; reset V = H where not fired, else 0 (hard reset to 0).
 */
#include <stdint.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#ifndef REAL
#define REAL float
#endif
#define BLOCK 2048

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
/* One portable library: the loader picks the widest vector unit this CPU has. */
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CLONES
#endif

static inline REAL charge(int mode, REAL v, REAL x, REAL c) {
    if (mode == 0) return (x - v) * c + v;
    if (mode == 1) return (x - v) / c + v;
    return v + x;
}

/* Forward of the positions [lo, hi): v (n) holds V[-1] on entry and V[T-1] on exit; s receives the spikes. */
CLONES void forward_range(const REAL *x, REAL *v, REAL *s, int64_t steps, int64_t n, int64_t lo, int64_t hi,
                          REAL c, REAL vth, int mode) {
    for (int64_t b = lo; b < hi; b += BLOCK) {
        int64_t m = hi - b < BLOCK ? hi - b : BLOCK;
        REAL *vb = v + b;
        for (int64_t t = 0; t < steps; t++) {
            const REAL *xt = x + t * n + b;
            REAL *st = s + t * n + b;
            for (int64_t i = 0; i < m; i++) {
                REAL h = charge(mode, vb[i], xt[i], c);
                int fired = h >= vth;
                st[i] = fired ? (REAL)1 : (REAL)0;
                vb[i] = fired ? (REAL)0 : h;
            }
        }
    }
}

/* Backward of the forward above with the reset detached, from its inputs x and v0.
 * gv (n) holds dL/dV[T-1] on entry and dL/dV[-1] on exit; gx receives dL/dX. Per block, the forward
 * again keeps H[t] and D[t] = X[t] - V[t-1] in scratch (2 x steps x BLOCK), then
 *   dL/dH[t]   = dL/dS[t] g'(H[t] - v_th) + dL/dV[t] (1 - S[t]),   g'(u) = (alpha/2) / (slope2 u^2 + 1)
 *   dL/dV[t-1] = dL/dH[t] dh_dv,   dL/dX[t] = dL/dH[t] dh_dx,   partial[block] = sum dL/dH[t] D[t] (dL/dk)
 * with the last sum taken per position over time in REAL, then over the block's positions in double.
 * state: 4 x BLOCK (V, dL/dV, the per-position sums, X[t] made from a BatchNorm's input); channel: BLOCK.
 *
 * With scale != NULL the input is a per-step BatchNorm's output made again from the BN's input x:
 * X[t] = x[t] * scale[t, ch] + shift[t, ch], a multiply and an add each rounded once (as the BN kernel
 * wrote it), with ch = (i / inner) % channels for position i of a step. */
CLONES void backward_range(const REAL *x, const REAL *v0, const REAL *gs, REAL *gx, REAL *gv, REAL *scratch,
                           REAL *state, int64_t *channel, double *partial, int64_t steps, int64_t n, int64_t lo,
                           int64_t hi, REAL c, REAL vth, int mode, REAL slope2, REAL half_alpha, REAL dh_dv,
                           REAL dh_dx, const REAL *scale, const REAL *shift, int64_t channels, int64_t inner) {
    REAL *v = state, *g_v = state + BLOCK, *acc = state + 2 * BLOCK, *made = state + 3 * BLOCK;
    for (int64_t b = lo; b < hi; b += BLOCK) {
        int64_t m = hi - b < BLOCK ? hi - b : BLOCK;
        for (int64_t i = 0; i < m; i++) {
            v[i] = v0[b + i];
            g_v[i] = gv[b + i];
            acc[i] = 0;
        }
        if (scale)
            for (int64_t i = 0; i < m; i++) channel[i] = ((b + i) / inner) % channels;
        for (int64_t t = 0; t < steps; t++) {
            const REAL *xt = x + t * n + b;
            if (scale) {
                const REAL *sc = scale + t * channels, *sh = shift + t * channels;
                for (int64_t i = 0; i < m; i++) {
                    REAL y = xt[i] * sc[channel[i]];
                    made[i] = y + sh[channel[i]];
                }
                xt = made;
            }
            REAL *ht = scratch + t * BLOCK, *dt = scratch + (steps + t) * BLOCK;
            for (int64_t i = 0; i < m; i++) {
                REAL h, vi = v[i];
                if (mode == 2) {
                    h = vi + xt[i];
                } else {
                    REAL d = xt[i] - vi;
                    dt[i] = d;
                    h = mode == 0 ? d * c + vi : d / c + vi;
                }
                ht[i] = h;
                v[i] = h < vth ? h : (REAL)0;
            }
        }
        for (int64_t t = steps - 1; t >= 0; t--) {
            const REAL *ht = scratch + t * BLOCK, *dt = scratch + (steps + t) * BLOCK, *gst = gs + t * n + b;
            REAL *gxt = gx + t * n + b;
            for (int64_t i = 0; i < m; i++) {
                REAL h = ht[i], u = h - vth;
                REAL g = gst[i] / (slope2 * u * u + (REAL)1);
                if (half_alpha != (REAL)1) g = g * half_alpha;
                g = g + g_v[i] * (h < vth ? (REAL)1 : (REAL)0);
                if (mode == 0) acc[i] += g * dt[i];
                gxt[i] = g * dh_dx;
                g_v[i] = g * dh_dv;
            }
        }
        double total = 0;
        for (int64_t i = 0; i < m; i++) total += acc[i];
        partial[b / BLOCK] = total;
        for (int64_t i = 0; i < m; i++) gv[b + i] = g_v[i];
    }
}

/* Worker w of `workers` takes the w-th run of whole blocks of [lo, hi) (as compiled.py splits them). */
static void share(int64_t lo, int64_t hi, int w, int workers, int64_t *a, int64_t *b) {
    int64_t blocks = (hi - lo + BLOCK - 1) / BLOCK;
    *a = lo + blocks * w / workers * BLOCK;
    *b = lo + blocks * (w + 1) / workers * BLOCK;
    if (*a > hi) *a = hi;
    if (*b > hi) *b = hi;
}

int neuron_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

void neuron_forward(const REAL *x, REAL *v, REAL *s, int64_t steps, int64_t n, int64_t lo, int64_t hi, REAL c,
                    REAL vth, int mode, int threads) {
#ifdef _OPENMP
    if (threads > 1) {
#pragma omp parallel num_threads(threads)
        {
            int64_t a, b;
            share(lo, hi, omp_get_thread_num(), omp_get_num_threads(), &a, &b);
            forward_range(x, v, s, steps, n, a, b, c, vth, mode);
        }
        return;
    }
#endif
    forward_range(x, v, s, steps, n, lo, hi, c, vth, mode);
}

/* scratch and state: `scratch_size` and 4 x BLOCK values per worker; channel: BLOCK per worker. */
void neuron_backward(const REAL *x, const REAL *v0, const REAL *gs, REAL *gx, REAL *gv, REAL *scratch,
                     int64_t scratch_size, REAL *state, int64_t *channel, double *partial, int64_t steps,
                     int64_t n, int64_t lo, int64_t hi, REAL c, REAL vth, int mode, REAL slope2, REAL half_alpha,
                     REAL dh_dv, REAL dh_dx, const REAL *scale, const REAL *shift, int64_t channels,
                     int64_t inner, int worker, int threads) {
#ifdef _OPENMP
    if (threads > 1) {
#pragma omp parallel num_threads(threads)
        {
            int w = omp_get_thread_num();
            int64_t a, b;
            share(lo, hi, w, omp_get_num_threads(), &a, &b);
            backward_range(x, v0, gs, gx, gv, scratch + w * scratch_size, state + w * 4 * BLOCK,
                           channel + w * BLOCK, partial, steps, n, a, b, c, vth, mode, slope2, half_alpha, dh_dv,
                           dh_dx, scale, shift, channels, inner);
        }
        return;
    }
#endif
    backward_range(x, v0, gs, gx, gv, scratch + worker * scratch_size, state + worker * 4 * BLOCK,
                   channel + worker * BLOCK, partial, steps, n, lo, hi, c, vth, mode, slope2, half_alpha, dh_dv,
                   dh_dx, scale, shift, channels, inner);
}
