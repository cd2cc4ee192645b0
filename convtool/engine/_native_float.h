/* Floating-point kernels, included twice by _native.c: REAL = float, F(x) = x##_f32, and
 * REAL = double, F(x) = x##_f64.
 *
 * Every output is a sum of its own window's taps, in an order fixed by the tap list (and,
 * for the running sums, by the output's absolute row): never by where a band or a chunk
 * starts. No fused multiply-add (-ffp-contract=off): the vector body, its scalar tail and the
 * AVX-512/AVX2/baseline clones round every product and every sum alike, so the results are
 * the same bits on any x86-64 CPU and under any cutting into bands.
 */

/* Outputs (or mid-row columns) handled per sweep through the tap list: the accumulator
 * chunk (2-4 KiB) stays in L1 while every tap adds into it. */
#define F_CHUNK 512

#define TERM_MUL(i) (w * p[i])
#define TERM_ONE(i) (p[i])
#define TERM_NEG(i) (-p[i])
#define TERM_PAIR(i) (w * (p[i] + q[i]))
#define TERM_PAIR1(i) (p[i] + q[i])
#define TERM_PAIRNEG(i) (-(p[i] + q[i]))
#define TERM_DIFF(i) (w * (p[i] - q[i]))
#define TERM_DIFF1(i) (p[i] - q[i])

/* acc[k] (=, +=) tap terms for k < n; output k reads s + k*step (+ each tap's offsets). */
#define F_RUN(OP, TERM)                                                                    \
    do {                                                                                   \
        if (step == 1) {                                                                   \
            for (ptrdiff_t k = 0; k < n; k++) acc[k] OP TERM(k);                           \
        } else {                                                                           \
            for (ptrdiff_t k = 0; k < n; k++) acc[k] OP TERM(k * step);                    \
        }                                                                                  \
    } while (0)

#define F_TAP_SWITCH(OP)                                                                   \
    switch (t->kind) {                                                                     \
    case TAP_MUL: F_RUN(OP, TERM_MUL); break;                                              \
    case TAP_ONE: F_RUN(OP, TERM_ONE); break;                                              \
    case TAP_NEG: F_RUN(OP, TERM_NEG); break;                                              \
    case TAP_PAIR: F_RUN(OP, TERM_PAIR); break;                                            \
    case TAP_PAIR1: F_RUN(OP, TERM_PAIR1); break;                                          \
    case TAP_PAIRNEG: F_RUN(OP, TERM_PAIRNEG); break;                                      \
    case TAP_DIFF: F_RUN(OP, TERM_DIFF); break;                                            \
    default: F_RUN(OP, TERM_DIFF1); break;                                                 \
    }

/* Outputs next to the border computed from copied rows, at least (see direct_band). */
#define F_SIDE ((ptrdiff_t)(F_VEC_BYTES * F_VECS_N / sizeof(REAL)))

/* A tap resolved for one output row: it reads p[at + k] (and q[at + k]) for output k.
 * (F_TYPES: the first level's inclusion defines the types every level shares.) */
#if F_TYPES
typedef struct {
    const REAL *p, *q;
    REAL w;
    int kind;
} F(rtap_t);
#endif

/* rt = the taps with rows[r] + o resolved (once per output row: a tap then costs what an
 * offset from one pointer does). */
ALWAYS_INLINE void F(resolve)(F(rtap_t) *rt, const tap_t *taps, int ntaps,
                              const REAL *const *rows)
{
    for (int i = 0; i < ntaps; i++) {
        rt[i].p = rows[taps[i].r1] + taps[i].o1;
        rt[i].q = rows[taps[i].r2] + taps[i].o2;
        rt[i].w = (REAL)taps[i].w;
        rt[i].kind = taps[i].kind;
    }
}

#ifdef HAVE_VECTOR_TYPES
/* A block of F_LANES*F_VECS consecutive outputs whose partial sums are held in registers
 * through the whole tap list (a sweep over a chunk in L1 loads and stores the sums at every
 * tap: 2-2.5x slower for many taps). GCC's generic vector types (no intrinsics) are lowered
 * by each clone to its own registers: one zmm, two ymm or four xmm per vector. */
typedef REAL F(vec) __attribute__((vector_size(F_VEC_BYTES)));
#define F_LANES ((ptrdiff_t)(F_VEC_BYTES / sizeof(REAL)))
#define F_VECS F_VECS_N /* (the accumulators of taps_block: 8 or 4, per level: _native.c) */
typedef REAL F(uvec) __attribute__((vector_size(F_VEC_BYTES), aligned(sizeof(REAL)), may_alias));

/* Streaming (non-temporal) stores: outputs much larger than the last-level cache are written
 * to memory without first reading each line into the cache, as a large memcpy does; the
 * bits are those of plain stores (see pair_run). GCC on x86 only (its builtins). */
#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__))
#define F_STREAM 1
ALWAYS_INLINE void F(stream)(REAL *p, F(vec) v) /* p: F_VEC_BYTES-aligned */
{
    typedef float fv __attribute__((vector_size(F_VEC_BYTES)));
    typedef double dv __attribute__((vector_size(F_VEC_BYTES)));
#if F_VEC_BYTES == 64
    if (sizeof(REAL) == 4) __builtin_ia32_movntps512((float *)p, (fv)v);
    else __builtin_ia32_movntpd512((double *)p, (dv)v);
#elif F_VEC_BYTES == 32
    if (sizeof(REAL) == 4) __builtin_ia32_movntps256((float *)p, (fv)v);
    else __builtin_ia32_movntpd256((double *)p, (dv)v);
#else
    if (sizeof(REAL) == 4) __builtin_ia32_movntps((float *)p, (fv)v);
    else __builtin_ia32_movntpd((double *)p, (dv)v);
#endif
}
#else
#define F_STREAM 0
#endif

ALWAYS_INLINE F(vec) F(load)(const REAL *p)
{
    F(vec) v;
    memcpy(&v, p, sizeof v);
    return v;
}

#if F_VECS == 8
#define F_BLOCK_TERMS(TERM)                                                                \
    do {                                                                                   \
        a0 += TERM(0);                                                                     \
        a1 += TERM(F_LANES);                                                               \
        a2 += TERM(2 * F_LANES);                                                           \
        a3 += TERM(3 * F_LANES);                                                           \
        a4 += TERM(4 * F_LANES);                                                           \
        a5 += TERM(5 * F_LANES);                                                           \
        a6 += TERM(6 * F_LANES);                                                           \
        a7 += TERM(7 * F_LANES);                                                           \
    } while (0)
#else
#define F_BLOCK_TERMS(TERM)                                                                \
    do {                                                                                   \
        a0 += TERM(0);                                                                     \
        a1 += TERM(F_LANES);                                                               \
        a2 += TERM(2 * F_LANES);                                                           \
        a3 += TERM(3 * F_LANES);                                                           \
    } while (0)
#endif
#define V_MUL(i) (w * F(load)(p + (i)))
#define V_ONE(i) (F(load)(p + (i)))
#define V_NEG(i) (-F(load)(p + (i)))
#define V_PAIR(i) (w * (F(load)(p + (i)) + F(load)(q + (i))))
#define V_PAIR1(i) (F(load)(p + (i)) + F(load)(q + (i)))
#define V_PAIRNEG(i) (-(F(load)(p + (i)) + F(load)(q + (i))))
#define V_DIFF(i) (w * (F(load)(p + (i)) - F(load)(q + (i))))
#define V_DIFF1(i) (F(load)(p + (i)) - F(load)(q + (i)))

/* acc[0 .. F_LANES*F_VECS) = the tap list's sum at consecutive outputs (unit step), in list
 * order from -0 (-0 + x is x). A tap reads row rows[r] from column
 * at + o (see tap_t). */
ALWAYS_INLINE void F(taps_block)(REAL *restrict acc, const F(rtap_t) *taps, int ntaps,
                                 ptrdiff_t at, int products)
{
    /* named accumulators, stored through an unaligned vector type: their addresses are
     * never taken, so GCC keeps them in registers across the tap list */
    /* from -0: -0 + x is x for every x, so a block's sums are the sweep's to the last bit
     * (the sign of an all-zero sum too), wherever the level's block size cuts a row */
    const F(vec) z = -(F(vec)){0};
    F(vec) a0 = z, a1 = z, a2 = z, a3 = z;
#if F_VECS == 8
    F(vec) a4 = z, a5 = z, a6 = z, a7 = z;
#endif
    /* Every tap a plain product (a kernel without mirror symmetry): the same terms without
     * the switch, whose common loads GCC hoists above it, so that no load could be folded
     * into its multiply (random 7x7: 8 fewer instructions per tap and block). */
    for (int i = 0; products && i < ntaps; i++) {
        const REAL *restrict p = taps[i].p + at;
        const REAL w = taps[i].w;
        F_BLOCK_TERMS(V_MUL);
    }
    for (int i = 0; !products && i < ntaps; i++) {
        const F(rtap_t) *t = taps + i;
        /* restrict: the rows never alias the accumulators (else GCC keeps them in memory) */
        const REAL *restrict p = t->p + at, *restrict q = t->q + at;
        const REAL w = t->w;
        switch (t->kind) {
        case TAP_MUL: F_BLOCK_TERMS(V_MUL); break;
        case TAP_ONE: F_BLOCK_TERMS(V_ONE); break;
        case TAP_NEG: F_BLOCK_TERMS(V_NEG); break;
        case TAP_PAIR: F_BLOCK_TERMS(V_PAIR); break;
        case TAP_PAIR1: F_BLOCK_TERMS(V_PAIR1); break;
        case TAP_PAIRNEG: F_BLOCK_TERMS(V_PAIRNEG); break;
        case TAP_DIFF: F_BLOCK_TERMS(V_DIFF); break;
        default: F_BLOCK_TERMS(V_DIFF1); break;
        }
    }
    *(F(uvec) *)(acc) = a0;
    *(F(uvec) *)(acc + F_LANES) = a1;
    *(F(uvec) *)(acc + 2 * F_LANES) = a2;
    *(F(uvec) *)(acc + 3 * F_LANES) = a3;
#if F_VECS == 8
    *(F(uvec) *)(acc + 4 * F_LANES) = a4;
    *(F(uvec) *)(acc + 5 * F_LANES) = a5;
    *(F(uvec) *)(acc + 6 * F_LANES) = a6;
    *(F(uvec) *)(acc + 7 * F_LANES) = a7;
#endif
}
#undef V_MUL
#undef V_ONE
#undef V_NEG
#undef V_PAIR
#undef V_PAIR1
#undef V_PAIRNEG
#undef V_DIFF
#undef V_DIFF1
#undef F_BLOCK_TERMS
#endif

/* acc[k] (= or +=) one tap's term, k < n: restrict parameters, so that GCC vectorises it
 * without alias checks (it takes restrict from parameters, not from local pointers). */
ALWAYS_INLINE void F(tap_sweep)(REAL *restrict acc, const REAL *restrict p,
                                const REAL *restrict q, REAL w, int kind, int first,
                                ptrdiff_t step, ptrdiff_t n)
{
    const struct { int kind; } tap = {kind}, *t = &tap;
    if (first) {
        F_TAP_SWITCH(=)
    } else {
        F_TAP_SWITCH(+=)
    }
}

/* One sweep of a tap list over n outputs: acc = sum over taps, in list order; output k reads
 * p[at + k*step] (and q) of each resolved tap. */
ALWAYS_INLINE void F(taps_sweep)(REAL *restrict acc, const F(rtap_t) *taps, int ntaps,
                                 ptrdiff_t at, ptrdiff_t step, ptrdiff_t n)
{
    if (ntaps == 0) {
        for (ptrdiff_t k = 0; k < n; k++) acc[k] = 0;
        return;
    }
    for (int i = 0; i < ntaps; i++)
        F(tap_sweep)(acc, taps[i].p + at, taps[i].q + at, taps[i].w, taps[i].kind, i == 0, step,
                     n);
}

/* acc[k] = the tap list's sum at output k < n: register blocks where the step is 1, a sweep
 * in L1 for the rest. Both add the same terms in the same order: the same bits. */
ALWAYS_INLINE void F(taps_run)(REAL *restrict acc, const F(rtap_t) *taps, int ntaps,
                               ptrdiff_t at, ptrdiff_t step, ptrdiff_t n)
{
    ptrdiff_t k0 = 0;
#ifdef HAVE_VECTOR_TYPES
    if (step == 1 && ntaps >= 3 && n >= F_LANES * F_VECS) { /* (one or two terms: the sweep
                                                           * is as fast) */
        int products = 1;
        for (int i = 0; i < ntaps; i++) products &= taps[i].kind == TAP_MUL;
        for (; k0 + F_LANES * F_VECS <= n; k0 += F_LANES * F_VECS)
            F(taps_block)(acc + k0, taps, ntaps, at + k0, products);
        /* the rest: one more block ending at n, over outputs already made (the same bits
         * again), rather than a sweep */
        if (k0 < n) {
            F(taps_block)(acc + n - F_LANES * F_VECS, taps, ntaps, at + n - F_LANES * F_VECS,
                          products);
            k0 = n;
        }
    }
#endif
    if (k0 < n) F(taps_sweep)(acc + k0, taps, ntaps, at + k0 * step, step, n - k0);
}

/* rt = taps resolved on the padded rows `first + t*gap` (t < count) of channel c, columns
 * x0 .. x0+len-1 (rows: room for count pointers). */
ALWAYS_INLINE void F(fetch)(rowsrc_t *rs, F(rtap_t) *rt, const tap_t *taps, int ntaps,
                            const REAL **rows, ptrdiff_t c, ptrdiff_t first, ptrdiff_t gap,
                            ptrdiff_t count, ptrdiff_t x0, ptrdiff_t len, int bank)
{
    for (ptrdiff_t t = 0; t < count; t++)
        rows[t] = (const REAL *)row_get(rs, c, first + t * gap, x0, len, bank);
    F(resolve)(rt, taps, ntaps, rows);
}

ALWAYS_INLINE void F(scale_run)(REAL *restrict acc, REAL scale, ptrdiff_t n)
{
    if (scale != 1)
        for (ptrdiff_t k = 0; k < n; k++) acc[k] *= scale;
}

/* out[k] = ((t[0][k*step] + t[1][k*step]) + ...) * scale for k < n: one sweep per four terms
 * (the scale, unless 1, with the last). */
ALWAYS_INLINE void F(sum_sweep)(REAL *restrict out, const REAL *restrict a,
                                const REAL *restrict b, const REAL *restrict c,
                                const REAL *restrict d, ptrdiff_t n, int count, int first,
                                int scaled, REAL scale)
{
    for (ptrdiff_t k = 0; k < n; k++) {
        REAL v = first ? a[k] : out[k] + a[k];
        if (count > 1) v = v + b[k];
        if (count > 2) v = v + c[k];
        if (count > 3) v = v + d[k];
        out[k] = scaled ? v * scale : v;
    }
}

ALWAYS_INLINE void F(sum_terms)(REAL *restrict out, const REAL *const *t, ptrdiff_t nt,
                                ptrdiff_t step, ptrdiff_t n, REAL scale)
{
    if (step != 1) {
        for (ptrdiff_t k = 0; k < n; k++) {
            REAL v = t[0][k * step];
            for (ptrdiff_t i = 1; i < nt; i++) v = v + t[i][k * step];
            out[k] = scale != 1 ? v * scale : v;
        }
        return;
    }
    for (ptrdiff_t i = 0; i < nt; i += 4) {
        const int count = nt - i < 4 ? (int)(nt - i) : 4;
        const int how = (count - 1) * 4 + (i == 0) * 2 + (i + count == nt && scale != 1);
        const REAL *a = t[i], *b = t[i + (count > 1)], *c = t[i + 2 * (count > 2)];
        const REAL *d = t[i + 3 * (count > 3)];
#define F_SWEEP(COUNT, FIRST, SCALED)                                                           \
    case (COUNT - 1) * 4 + FIRST * 2 + SCALED:                                                  \
        F(sum_sweep)(out, a, b, c, d, n, COUNT, FIRST, SCALED, scale);                          \
        break;
        switch (how) {
            F_SWEEP(1, 0, 0) F_SWEEP(1, 0, 1) F_SWEEP(1, 1, 0) F_SWEEP(1, 1, 1)
            F_SWEEP(2, 0, 0) F_SWEEP(2, 0, 1) F_SWEEP(2, 1, 0) F_SWEEP(2, 1, 1)
            F_SWEEP(3, 0, 0) F_SWEEP(3, 0, 1) F_SWEEP(3, 1, 0) F_SWEEP(3, 1, 1)
            F_SWEEP(4, 0, 0) F_SWEEP(4, 0, 1) F_SWEEP(4, 1, 0) F_SWEEP(4, 1, 1)
        }
#undef F_SWEEP
    }
}

/* Sums of windows of `taps` samples `gap` apart, by doubling, times `scale`:
 * out[k] = scale * sum_t s[k*step + t*gap] for k < n. Row b of the scratch holds the sums of
 * 2^b samples (row 0: the source), each made of two of the row before; an output adds, left
 * to right, one sum from each row its taps' binary digits name (15 taps: 1 + 2 + 4 + 8). The
 * grouping depends only on `taps`, not on k or on the chunk (DOUBLING_CHUNK outputs at a
 * time; `scratch`: doubling_floats(taps, gap, step) elements). */
ALWAYS_INLINE void F(doubling_run)(REAL *restrict out, const REAL *src, ptrdiff_t step,
                                   ptrdiff_t gap, ptrdiff_t taps, ptrdiff_t n, REAL *scratch,
                                   REAL scale)
{
    const ptrdiff_t top = doubling_levels(taps), stride = doubling_level_len(taps, gap, step);
    for (ptrdiff_t k0 = 0; k0 < n; k0 += DOUBLING_CHUNK) {
        const ptrdiff_t m = n - k0 < DOUBLING_CHUNK ? n - k0 : DOUBLING_CHUNK;
        const ptrdiff_t last = step * (m - 1) + 1;
        const REAL *terms[8 * sizeof(ptrdiff_t)], *level = src + k0 * step;
        ptrdiff_t nt = 0, covered = 0;
        for (ptrdiff_t b = 0;; b++) {
            const ptrdiff_t width = (ptrdiff_t)1 << b;
            if ((taps >> b) & 1) {
                terms[nt++] = level + covered * gap;
                covered += width;
            }
            if (b == top) break;
            const ptrdiff_t length = last + (taps - 2 * width) * gap;
            REAL *restrict next = scratch + b * stride;
            const REAL *restrict p = level, *restrict q = level + width * gap;
            for (ptrdiff_t x = 0; x < length; x++) next[x] = p[x] + q[x];
            level = next;
        }
        F(sum_terms)(out + k0, terms, nt, step, m, scale);
    }
}

/* out[k] = v[k] rounded half to even and clipped to 0..255, for k < n: what rounding the
 * float results and casting them gives (np.clip(np.rint(v), 0, 255) cast to uint8; a NaN
 * gives 0, as that cast does). Clipped first, then rounded by adding and taking away
 * 1.5 * 2^(mantissa bits), which leaves the nearest integer, ties to even. */
ALWAYS_INLINE void F(store_u8)(uint8_t *restrict out, const REAL *restrict v, ptrdiff_t n)
{
    const REAL rounder = sizeof(REAL) == 4 ? (REAL)0x1.8p23 : (REAL)0x1.8p52;
    for (ptrdiff_t k = 0; k < n; k++) {
        REAL x = v[k] > 0 ? v[k] : 0;
        x = x < 255 ? x : 255;
        x = (x + rounder) - rounder;
        out[k] = (uint8_t)(int32_t)x;
    }
}

/* ---------------------------------------------------------------- direct taps, rows in pairs */

/* One term (see pairs_t) added to a scalar sum. */
ALWAYS_INLINE REAL F(pair_term)(REAL acc, int kind, double w, REAL u)
{
    switch (kind) {
    case T_ADD: return acc + u;
    case T_SUB: return acc - u;
    case T_MUL: return acc + (REAL)w * u;
    default: return acc;
    }
}

/* out0[0] (and out1[0] when `both`) from the rows (rows[R] + at: padded row j+R at the
 * output's first column), one output at a time: the terms, in the order of pair_block. */
ALWAYS_INLINE void F(pair_one)(REAL *out0, REAL *out1, const REAL *const *rows, int kh,
                               const pairs_t *pp, ptrdiff_t at, int both)
{
    const int ng = pp->ngroups;
    REAL s0 = -(REAL)0, s1 = -(REAL)0; /* (from -0, as taps_block: -0 + x is x) */
    for (int R = 0; R < kh + both; R++) {
        const REAL *row = rows[R] + at;
        const gterm_t *t0 = R < kh ? pp->terms + R * ng : NULL;
        const gterm_t *t1 = both && R >= 1 ? pp->terms + (R - 1) * ng : NULL;
        for (int g = 0; g < ng; g++) {
            const group_t *gr = pp->groups + g;
            const REAL v1 = row[gr->o1], v2 = row[gr->o2];
            const REAL u = gr->kind == G_SUM ? v1 + v2 : gr->kind == G_DIFF ? v1 - v2 : v1;
            if (t0) {
                s0 = F(pair_term)(s0, t0[g].k1, t0[g].w1, u);
                s0 = F(pair_term)(s0, t0[g].k2, t0[g].w2, v2);
            }
            if (t1) {
                s1 = F(pair_term)(s1, t1[g].k1, t1[g].w1, u);
                s1 = F(pair_term)(s1, t1[g].k2, t1[g].w2, v2);
            }
        }
    }
    out0[0] = s0;
    if (both) out1[0] = s1;
}

#ifdef HAVE_VECTOR_TYPES
/* Vectors per output row of a pair's register block: the block holds F_VECS in all. */
#define P_VECS (F_VECS / 2)
#if P_VECS == 4
#define P_EACH(X) do { X(0); X(1); X(2); X(3); } while (0)
#else
#define P_EACH(X) do { X(0); X(1); } while (0)
#endif
/* A (accumulators A0..) += the term of kind K, weight W, on U (vectors U0..) */
#define P_TERMS(A, K, W, U)                                                                 \
    do {                                                                                   \
        if ((K) == T_ADD) {                                                                \
            P_EACH(P_ADD_##A##_##U);                                                       \
        } else if ((K) == T_SUB) {                                                         \
            P_EACH(P_SUB_##A##_##U);                                                       \
        } else if ((K) == T_MUL) {                                                         \
            const REAL w_ = (REAL)(W);                                                     \
            P_EACH(P_MUL_##A##_##U);                                                       \
        }                                                                                  \
    } while (0)
#define P_ADD_a_u(k) a##k += u##k
#define P_SUB_a_u(k) a##k -= u##k
#define P_MUL_a_u(k) a##k += w_ * u##k
#define P_ADD_b_u(k) b##k += u##k
#define P_SUB_b_u(k) b##k -= u##k
#define P_MUL_b_u(k) b##k += w_ * u##k
#define P_ADD_a_v(k) a##k += v##k
#define P_SUB_a_v(k) a##k -= v##k
#define P_MUL_a_v(k) a##k += w_ * v##k
#define P_ADD_b_v(k) b##k += v##k
#define P_SUB_b_v(k) b##k -= v##k
#define P_MUL_b_v(k) b##k += w_ * v##k

/* out0[0 .. P_VECS*F_LANES) and, when `both`, out1[...]: pair_one's terms, in its order, for
 * a block of consecutive outputs, the sums in registers; each loaded row serves both. */
ALWAYS_INLINE void F(pair_block)(REAL *restrict out0, REAL *restrict out1,
                                 const REAL *const *rows, int kh, int ng, const pairs_t *pp,
                                 ptrdiff_t at, int both, int stream)
{
    const F(vec) z = -(F(vec)){0};
    F(vec) a0 = z, a1 = z, b0 = z, b1 = z;
#if P_VECS == 4
    F(vec) a2 = z, a3 = z, b2 = z, b3 = z;
#endif
    for (int R = 0; R < kh + both; R++) {
        const REAL *restrict row = rows[R] + at;
        const gterm_t *t0 = R < kh ? pp->terms + R * ng : NULL;
        const gterm_t *t1 = both && R >= 1 ? pp->terms + (R - 1) * ng : NULL;
        for (int g = 0; g < ng; g++) {
            const group_t *gr = pp->groups + g;
            const REAL *restrict p = row + gr->o1, *restrict q = row + gr->o2;
            F(vec) u0, u1, v0 = {0}, v1 = {0};
#if P_VECS == 4
            F(vec) u2, u3, v2 = {0}, v3 = {0};
#endif
#define P_LOAD_SUM(k) u##k = F(load)(p + k * F_LANES) + F(load)(q + k * F_LANES)
#define P_LOAD_DIFF(k) u##k = F(load)(p + k * F_LANES) - F(load)(q + k * F_LANES)
#define P_LOAD_ONE(k) u##k = F(load)(p + k * F_LANES)
#define P_LOAD_TWO(k) (u##k = F(load)(p + k * F_LANES), v##k = F(load)(q + k * F_LANES))
            switch (gr->kind) {
            case G_SUM: P_EACH(P_LOAD_SUM); break;
            case G_DIFF: P_EACH(P_LOAD_DIFF); break;
            case G_ONE: P_EACH(P_LOAD_ONE); break;
            default: P_EACH(P_LOAD_TWO); break;
            }
#undef P_LOAD_SUM
#undef P_LOAD_DIFF
#undef P_LOAD_ONE
#undef P_LOAD_TWO
            if (t0) {
                P_TERMS(a, t0[g].k1, t0[g].w1, u);
                P_TERMS(a, t0[g].k2, t0[g].w2, v);
            }
            if (t1) {
                P_TERMS(b, t1[g].k1, t1[g].w1, u);
                P_TERMS(b, t1[g].k2, t1[g].w2, v);
            }
        }
    }
#define P_STORE_A(k) *(F(uvec) *)(out0 + k * F_LANES) = a##k
#define P_STORE_B(k) *(F(uvec) *)(out1 + k * F_LANES) = b##k
#if F_STREAM
#define P_STREAM_A(k) F(stream)(out0 + k * F_LANES, a##k)
#define P_STREAM_B(k) F(stream)(out1 + k * F_LANES, b##k)
    if (stream) {
        P_EACH(P_STREAM_A);
        if (both) P_EACH(P_STREAM_B);
        return;
    }
#undef P_STREAM_A
#undef P_STREAM_B
#endif
    P_EACH(P_STORE_A);
    if (both) P_EACH(P_STORE_B);
#undef P_STORE_A
#undef P_STORE_B
}
#endif

/* The rows a pair of output rows reads first (the two last: the pair before read the
 * others), PAIR_AHEAD bytes past the block at `at`, asked into the cache. Only where the
 * pair streams its stores, that is where its data exceed the cache and come from memory
 * (native.streams): measured there, 4096² float32 into out=, 2 threads, medians of 25
 * alternated, Sobel 1.03-1.05x, Laplacian 1.04-1.07x, random 3x3 1.01-1.03x at 512, 1024
 * and 2048 bytes ahead (prefetchnta, which evicts the rows the next pair reads: 0.63x);
 * before plain stores, a wash at 2048² and 1.02-1.03x at 4096² (new outputs), so not
 * there. */
#ifndef PAIR_AHEAD
#define PAIR_AHEAD 2048
#endif
ALWAYS_INLINE void F(pair_ahead)(const REAL *const *rows, int kh, int both, ptrdiff_t at,
                                 ptrdiff_t block)
{
    /* (an address, not a pointer past the row: a prefetch never faults) */
    for (int R = kh + both >= 2 ? kh + both - 2 : 0; R < kh + both; R++)
        for (ptrdiff_t b = 0; b < block * (ptrdiff_t)sizeof(REAL); b += 64)
            __builtin_prefetch((const void *)((uintptr_t)(rows[R] + at) + PAIR_AHEAD + b), 0, 3);
}

/* out0[k] (and out1[k]) for k < n: register blocks, then one output at a time. `stream`:
 * the blocks from the first vector-aligned output on are stored streaming, after one block
 * stored as usual (the outputs before that address; blocks that overlap write the same bits
 * twice). Both rows must then be equally aligned. */
ALWAYS_INLINE void F(pair_run)(REAL *restrict out0, REAL *restrict out1,
                               const REAL *const *rows, int kh, int ng, const pairs_t *pp,
                               ptrdiff_t at, ptrdiff_t n, int both, int stream)
{
    ptrdiff_t k0 = 0;
#ifdef HAVE_VECTOR_TYPES
    const ptrdiff_t block = P_VECS * F_LANES;
#if F_STREAM
    const uintptr_t lead = (uintptr_t)out0 % F_VEC_BYTES;
    if (stream && n >= 2 * block && lead % sizeof(REAL) == 0 &&
        ((uintptr_t)out1 - (uintptr_t)out0) % F_VEC_BYTES == 0) {
        F(pair_block)(out0, out1, rows, kh, ng, pp, at, both, 0);
        for (k0 = (ptrdiff_t)((F_VEC_BYTES - lead) % F_VEC_BYTES / sizeof(REAL));
             k0 + block <= n; k0 += block) {
            F(pair_ahead)(rows, kh, both, at + k0, block);
            F(pair_block)(out0 + k0, out1 + k0, rows, kh, ng, pp, at + k0, both, 1);
        }
    }
#endif
    for (; k0 + block <= n; k0 += block)
        F(pair_block)(out0 + k0, out1 + k0, rows, kh, ng, pp, at + k0, both, 0);
    if (k0 < n && n >= block) { /* the rest: as in taps_run */
        k0 = n - block;
        F(pair_block)(out0 + k0, out1 + k0, rows, kh, ng, pp, at + k0, both, 0);
        k0 = n;
    }
#endif
    for (; k0 < n; k0++) F(pair_one)(out0 + k0, out1 + k0, rows, kh, pp, at + k0, both);
}
#ifdef HAVE_VECTOR_TYPES
#undef P_VECS
#undef P_EACH
#undef P_TERMS
#undef P_ADD_a_u
#undef P_SUB_a_u
#undef P_MUL_a_u
#undef P_ADD_b_u
#undef P_SUB_b_u
#undef P_MUL_b_u
#undef P_ADD_a_v
#undef P_SUB_a_v
#undef P_MUL_a_v
#undef P_ADD_b_v
#undef P_SUB_b_v
#undef P_MUL_b_v
#endif

/* direct_band's outputs (unit steps, no row dilation) two rows at a time: the parts of a row
 * (see direct_band) as there, with the kh+1 padded rows a pair reads fetched once. */
ALWAYS_INLINE void F(direct_pairs)(rowsrc_t *rs, ptrdiff_t x0, REAL *dst, ptrdiff_t d_c,
                                   ptrdiff_t d_r, ptrdiff_t channels, ptrdiff_t nr,
                                   ptrdiff_t span, ptrdiff_t kh, const ptrdiff_t parts[4],
                                   const pairs_t *pp, const REAL **rows, int stream,
                                   uint8_t *dst8, REAL *tmp)
{
    const ptrdiff_t nc = parts[3];
    for (ptrdiff_t c = 0; c < channels; c++)
        for (ptrdiff_t j = 0; j < nr; j += 2) {
            const int both = j + 1 < nr;
            REAL *out0 = dst8 ? tmp : dst + c * d_c + j * d_r;
            REAL *out1 = dst8 ? tmp + (both ? nc : 0) : out0 + (both ? d_r : 0);
            for (int k = 0; k < 3; k++) {
                const ptrdiff_t o0 = parts[k], no = parts[k + 1] - o0;
                if (no <= 0) continue;
                for (ptrdiff_t t = 0; t < kh + both; t++)
                    rows[t] = (const REAL *)row_get(rs, c, j + t, x0 + o0, no - 1 + span, k);
                /* (3 rows, one or two column groups: Sobel, Prewitt, Scharr, Laplacian... with
                 * the loops' bounds known, as fast as a loop written for the kernel) */
                const int ng = pp->ngroups;
                if (kh == 3 && ng == 1)
                    F(pair_run)(out0 + o0, out1 + o0, rows, 3, 1, pp, 0, no, both, stream);
                else if (kh == 3 && ng == 2)
                    F(pair_run)(out0 + o0, out1 + o0, rows, 3, 2, pp, 0, no, both, stream);
                else
                    F(pair_run)(out0 + o0, out1 + o0, rows, (int)kh, ng, pp, 0, no, both,
                                stream);
            }
            if (dst8) {
                F(store_u8)(dst8 + c * d_c + j * d_r, out0, nc);
                if (both) F(store_u8)(dst8 + c * d_c + (j + 1) * d_r, out1, nc);
            }
        }
}

/* ---------------------------------------------------------------- direct taps */

/* dst[c, j, i] = sum over the tap list of padded row sy*j + r*gap (tap row r), column
 * x0 + sx*i + o. The rows come from `rs` (a padded band, or the image through its padding
 * maps), `rows` holds kh row pointers; `width`: the columns one output row reads. */
HOT static void F(direct_band)(rowsrc_t *rs, ptrdiff_t x0, ptrdiff_t width, REAL *dst,
                               ptrdiff_t d_c, ptrdiff_t d_r, ptrdiff_t channels, ptrdiff_t nr,
                               ptrdiff_t nc, ptrdiff_t sy, ptrdiff_t sx, ptrdiff_t kh,
                               ptrdiff_t gap, const tap_t *taps, int ntaps, const REAL **rows,
                               F(rtap_t) *rt, const pairs_t *pp, int stream, uint8_t *dst8,
                               REAL *tmp)
{
    /* outputs [0, in0) and [in1, nc) read padding: their columns are copied (a few per row);
     * outputs [in0, in1) read only columns that are read in place */
    const ptrdiff_t span = width - sx * (nc - 1);
    ptrdiff_t cut[4];
    cut_columns(rs, x0, width, cut);
    ptrdiff_t in0 = (cut[1] - x0 + sx - 1) / sx, in1 = 0;
    if (cut[2] - x0 - span >= 0) in1 = (cut[2] - x0 - span) / sx + 1;
    in1 = in1 > nc ? nc : in1;
    /* The side pieces: for a kernel up to 3 columns wide, just the outputs that read
     * padding (one at either side, one at a time; the piece in place ends in a register
     * block that overlaps the one before it, see taps_run: 2048² float32 Sobel 1.1-1.18x
     * faster than copying a block's columns); wider, one register block at either side
     * (a row pair's, in pairs), from copied columns: 7x7 at 2048², one at a time 0.86x. */
    if (span > 3) {
        const ptrdiff_t side = pp ? F_SIDE / 2 : F_SIDE;
        in0 = (in0 + side - 1) / side * side;
        in1 = nc - (nc - in1 + side - 1) / side * side;
    }
    if (in1 <= in0) { /* no output reads only in place: all in one piece */
        in0 = 0;
        in1 = nc;
    }
    const ptrdiff_t parts[4] = {0, in0, in1, nc};
    if (pp) { /* (unit steps, no row dilation: see pairs_t) */
        F(direct_pairs)(rs, x0, dst, d_c, d_r, channels, nr, span, kh, parts, pp, rows, stream,
                        dst8, tmp);
#if F_STREAM
        if (stream) __builtin_ia32_sfence(); /* (the streamed stores, before any later one) */
#endif
        return;
    }
    for (ptrdiff_t c = 0; c < channels; c++)
        for (ptrdiff_t j = 0; j < nr; j++) {
            REAL *out = dst8 ? tmp : dst + c * d_c + j * d_r;
            for (int k = 0; k < 3; k++) {
                const ptrdiff_t o0 = parts[k], no = parts[k + 1] - o0;
                if (no <= 0) continue;
                F(fetch)(rs, rt, taps, ntaps, rows, c, j * sy, gap, kh, x0 + sx * o0,
                         sx * (no - 1) + span, k);
                for (ptrdiff_t i0 = 0; i0 < no; i0 += F_CHUNK) {
                    const ptrdiff_t n = no - i0 < F_CHUNK ? no - i0 : F_CHUNK;
                    F(taps_run)(out + o0 + i0, rt, ntaps, i0 * sx, sx, n);
                }
            }
            if (dst8) F(store_u8)(dst8 + c * d_c + j * d_r, out, nc);
        }
}

/* ---------------------------------------------------------------- running sums down the rows */

/* Sums of `taps` consecutive rows (van Herk / Gil-Werman): rows are cut into blocks of `taps`
 * at absolute positions (row r of the band is row `origin + r` of the padded image), and the
 * window starting at s is suffix(s) + prefix(s + taps - 1): the rest of s's block plus the
 * start of the next one. Each is a fixed-order sum over the window's own rows, so a result
 * depends only on the absolute row (bit-stable under cutting into bands) and a NaN or an
 * infinity reaches only the windows that hold it. About 3 adds per sample, whatever `taps`. */
typedef struct {
    const REAL *src;     /* band row 0, first column (when `rows` is NULL) */
    ptrdiff_t rs;        /* row stride (elements) */
    rowsrc_t *rows;      /* else: rows of channel `c`, columns x0 .. x0+width-1 */
    ptrdiff_t c, x0;
    ptrdiff_t taps, width, origin;
    int square;          /* sum the squares of the samples instead */
    REAL *suffix;        /* taps rows x width: suffix sums of the current block */
    REAL *prefix;        /* width: prefix sum of the next block up to prefix_end */
    ptrdiff_t block;     /* band row where the current block starts (may be < 0) */
    ptrdiff_t prefix_end;
    int started;
    int bank;            /* the ring bank of `rows` (0, 2: padding at either side; 1: the rest) */
} F(running_t);

ALWAYS_INLINE const REAL *F(running_in)(F(running_t) *g, ptrdiff_t r)
{
    if (g->rows) return (const REAL *)row_get(g->rows, g->c, r, g->x0, g->width, g->bank);
    return g->src + r * g->rs;
}

ALWAYS_INLINE ptrdiff_t F(floor_mod)(ptrdiff_t a, ptrdiff_t m)
{
    ptrdiff_t r = a % m;
    return r < 0 ? r + m : r;
}

ALWAYS_INLINE void F(row_value)(REAL *restrict out, const REAL *restrict in, ptrdiff_t n,
                                int square, int add)
{
    if (square) {
        if (add) for (ptrdiff_t x = 0; x < n; x++) out[x] = in[x] * in[x] + out[x];
        else for (ptrdiff_t x = 0; x < n; x++) out[x] = in[x] * in[x];
    } else {
        if (add) for (ptrdiff_t x = 0; x < n; x++) out[x] = in[x] + out[x];
        else for (ptrdiff_t x = 0; x < n; x++) out[x] = in[x];
    }
}

/* out = (prefix + row) * scale with prefix = (the first row ? 0 : prefix) + row, where row is
 * the sample or its square: the last step of a window, one sweep (the same operations, in the
 * same order, as a step, a sum and a scale one after the other). */
ALWAYS_INLINE void F(running_last)(REAL *restrict out, const REAL *restrict suffix,
                                   REAL *restrict prefix, const REAL *restrict in, ptrdiff_t n,
                                   int square, int first, REAL scale)
{
#define F_RUNNING_LAST(VALUE)                                                                   \
    do {                                                                                        \
        if (first && scale == 1)                                                                \
            for (ptrdiff_t x = 0; x < n; x++) out[x] = suffix[x] + (prefix[x] = VALUE);         \
        else if (first)                                                                         \
            for (ptrdiff_t x = 0; x < n; x++) out[x] = (suffix[x] + (prefix[x] = VALUE)) * scale; \
        else if (scale == 1)                                                                    \
            for (ptrdiff_t x = 0; x < n; x++) out[x] = suffix[x] + (prefix[x] = prefix[x] + VALUE); \
        else                                                                                    \
            for (ptrdiff_t x = 0; x < n; x++)                                                   \
                out[x] = (suffix[x] + (prefix[x] = prefix[x] + VALUE)) * scale;                 \
    } while (0)
    if (square) F_RUNNING_LAST(in[x] * in[x]);
    else F_RUNNING_LAST(in[x]);
#undef F_RUNNING_LAST
}

/* out = the sum of band rows s .. s+taps-1, times scale; calls must come with s increasing. */
ALWAYS_INLINE void F(running_row)(F(running_t) *g, ptrdiff_t s, REAL *restrict out, REAL scale)
{
    const ptrdiff_t k = g->taps, w = g->width, into = F(floor_mod)(g->origin + s, k);
    const ptrdiff_t block = s - into;
    if (!g->started || block != g->block) {
        /* Suffix sums of this block for the starts s .. block+k-1, from its end backwards:
         * suffix(r) = x[r] + suffix(r+1). */
        g->started = 1;
        g->block = block;
        g->prefix_end = block + k - 1;
        for (ptrdiff_t r = block + k - 1; r >= s; r--) {
            REAL *restrict row = g->suffix + (r - block) * w;
            const REAL *restrict in = F(running_in)(g, r);
            if (r == block + k - 1) {
                F(row_value)(row, in, w, g->square, 0);
            } else {
                /* row = x[r] + suffix(r+1), written as value + running sum */
                const REAL *restrict next = row + w;
                if (g->square) for (ptrdiff_t x = 0; x < w; x++) row[x] = in[x] * in[x] + next[x];
                else for (ptrdiff_t x = 0; x < w; x++) row[x] = in[x] + next[x];
            }
        }
    }
    const REAL *restrict suffix = g->suffix + into * w;
    if (into == 0) { /* the window is the whole block */
        if (scale == 1) for (ptrdiff_t x = 0; x < w; x++) out[x] = suffix[x];
        else for (ptrdiff_t x = 0; x < w; x++) out[x] = suffix[x] * scale;
        return;
    }
    /* prefix(e) = prefix(e-1) + x[e] over the next block, up to e = s + k - 1 (the last row of
     * the window: with the sum) */
    const ptrdiff_t last = s + k - 1;
    for (ptrdiff_t e = g->prefix_end + 1; e < last; e++) {
        const REAL *restrict in = F(running_in)(g, e);
        REAL *restrict prefix = g->prefix;
        if (e == block + k) {
            F(row_value)(prefix, in, w, g->square, 0);
        } else if (g->square) {
            for (ptrdiff_t x = 0; x < w; x++) prefix[x] = prefix[x] + in[x] * in[x];
        } else {
            for (ptrdiff_t x = 0; x < w; x++) prefix[x] = prefix[x] + in[x];
        }
    }
    F(running_last)(out, suffix, g->prefix, F(running_in)(g, last), w, g->square,
                    last == block + k, scale);
    g->prefix_end = last;
}

/* ---------------------------------------------------------------- separable, fused per row */

/* A 1-D factor as the band kernels apply it. */
#if F_TYPES
typedef struct {
    const tap_t *taps;   /* offsets: rows (vertical) or columns (horizontal), in elements */
    int ntaps;
    REAL scale;          /* applied after the taps (a box: its weight; else 1) */
    ptrdiff_t count;     /* taps of the factor (for sums) */
    ptrdiff_t gap;       /* dilation */
    int mode;            /* PASS_TAPS, PASS_RUNNING (vertical box), PASS_DOUBLING (horizontal box) */
} F(pass_t);
#endif

/* The row factor of a separable kernel (or a row kernel alone) over one row: out[k] for k < n
 * from src (mid-row or padded row, output k at src[k*step]), taps `rt` (resolved on src) or
 * sums by doubling, then the scale. In chunks of F_CHUNK outputs, so that the chunk, the
 * doubling's two scratch rows and the samples they read stay in L1 (a 4096-wide row's sweeps
 * went to L2: box 1x15 one thread 1.3x faster this way). Chunks change no bit: each output's
 * terms and their order do not depend on where a chunk starts. */
ALWAYS_INLINE void F(row_pass)(REAL *restrict out, const REAL *src, ptrdiff_t step,
                               const F(pass_t) *h, const F(rtap_t) *rt, ptrdiff_t n,
                               REAL *scratch)
{
    if (h->mode == PASS_DOUBLING) {
        F(doubling_run)(out, src, step, h->gap, h->count, n, scratch, h->scale);
        return;
    }
    for (ptrdiff_t k0 = 0; k0 < n; k0 += F_CHUNK) {
        const ptrdiff_t m = n - k0 < F_CHUNK ? n - k0 : F_CHUNK;
        F(taps_run)(out + k0, rt, h->ntaps, k0 * step, step, m);
        F(scale_run)(out + k0, h->scale, m);
    }
}


/* Where an output row's results go: dst's row, or (8-bit outputs) `tmp`, stored rounded into
 * dst8's row by F(store_u8) once the row's results are in it. */
#define F_OUT_ROW(c, j) (dst8 ? tmp : dst + (c) * d_c + (j) * d_r)

/* dst[c, j, i] = row pass (column pass (src)): for each output row, the column pass fills a
 * row buffer `mid` (one strip of columns at a time, so it stays in L1), the row pass reads it.
 * The rows come from `rs` (see direct_band), `rows` holds the column factor's row pointers.
 * The input is read once and each output written once. `span_x`: the row factor's span. */
HOT static void F(separable_band)(rowsrc_t *rs, ptrdiff_t x0, ptrdiff_t width, REAL *dst,
                                  ptrdiff_t d_c, ptrdiff_t d_r, ptrdiff_t channels,
                                  ptrdiff_t nr, ptrdiff_t nc, ptrdiff_t sy, ptrdiff_t sx,
                                  const F(pass_t) *v, const F(pass_t) *h, ptrdiff_t span_x,
                                  ptrdiff_t strip, ptrdiff_t origin, REAL *work,
                                  const REAL **rows, F(rtap_t) *rt, uint8_t *dst8, REAL *tmp)
{
    const ptrdiff_t mid_len = sx * (strip - 1) + span_x;
    REAL *mid = work, *scratch = work + mid_len; /* (for sums by doubling) */
    /* suffix rows + prefix row, for PASS_RUNNING */
    REAL *running = scratch + (h->mode == PASS_DOUBLING ? doubling_floats(h->count, h->gap, sx) : 0);
    const REAL *mids[1] = {mid};
    /* the column taps (per row and piece of columns: padding, in place, padding), the row taps */
    F(rtap_t) *rh = rt, *rv[3] = {rt + h->ntaps, rt + h->ntaps + v->ntaps,
                                  rt + h->ntaps + 2 * v->ntaps};
    F(resolve)(rh, h->taps, h->ntaps, mids);
    ptrdiff_t cut[4];
    cut_columns(rs, x0, width, cut);
    /* When one strip holds the row and the columns read in place hold every source column
     * the padding copies, the column pass runs on those columns only: a padded column that
     * copies source column m holds the same samples as column m in every row (constant rows
     * included), so its column sum is the same sum, copied; a constant column's sum is one
     * value (the column pass over cval), computed once. Same terms, same bits, no copies. */
    int mirror = rs->image && strip >= nc && cut[1] < cut[2] && v->mode != PASS_RUNNING;
    for (ptrdiff_t x = x0; mirror && x < x0 + width; x++) {
        if (x >= cut[1] && x < cut[2]) continue;
        const int64_t m = rs->col_map[x];
        const ptrdiff_t at = m - rs->in_src + rs->in0; /* the padded column reading m in place */
        if (m >= 0 && (at < cut[1] || at >= cut[2])) mirror = 0;
    }
    REAL column_of_cval = 0;
    if (mirror) {
        const REAL cval = (REAL)rs->cval;
        for (ptrdiff_t t = 0; t < v->count; t++) rows[t] = &cval;
        F(resolve)(rv[0], v->taps, v->ntaps, rows);
        F(taps_run)(&column_of_cval, rv[0], v->ntaps, 0, 1, 1);
        F(scale_run)(&column_of_cval, v->scale, 1);
    }
    for (ptrdiff_t c = 0; c < channels; c++) {
        if (v->mode == PASS_RUNNING) {
            /* strips outside, rows inside: the running sums walk down each strip, one sum per
             * piece of it (padding, in place, padding: the columns read in place are not
             * copied; each column's sum is the same whatever piece holds it) */
            for (ptrdiff_t i0 = 0; i0 < nc; i0 += strip) {
                const ptrdiff_t n = nc - i0 < strip ? nc - i0 : strip;
                const ptrdiff_t len = sx * (n - 1) + span_x, lo0 = x0 + i0 * sx;
                F(running_t) g[3];
                ptrdiff_t at[3], pieces = 0;
                REAL *buffer = running;
                for (int k = 0; k < 3; k++) {
                    const ptrdiff_t lo = cut[k] > lo0 ? cut[k] : lo0;
                    const ptrdiff_t hi = cut[k + 1] < lo0 + len ? cut[k + 1] : lo0 + len;
                    if (hi <= lo) continue;
                    g[pieces] = (F(running_t)){NULL, 0, rs, c, lo, v->count, hi - lo, origin, 0,
                                               buffer, buffer + v->count * (hi - lo), 0, 0, 0, k};
                    at[pieces++] = lo - lo0;
                    buffer += (v->count + 1) * (hi - lo);
                }
                for (ptrdiff_t j = 0; j < nr; j++) {
                    for (ptrdiff_t q = 0; q < pieces; q++)
                        F(running_row)(&g[q], j * sy, mid + at[q], v->scale);
                    F(row_pass)(F_OUT_ROW(c, j) + (dst8 ? 0 : i0), mid, sx, h, rh, n, scratch);
                    if (dst8) F(store_u8)(dst8 + c * d_c + j * d_r + i0, tmp, n);
                }
            }
            continue;
        }
        for (ptrdiff_t j = 0; j < nr; j++) {
            REAL *out_row = F_OUT_ROW(c, j);
            if (mirror) { /* (one strip: mid[m] is padded column x0 + m) */
                F(fetch)(rs, rv[1], v->taps, v->ntaps, rows, c, j * sy, v->gap, v->count,
                         cut[1], cut[2] - cut[1], 1);
                for (ptrdiff_t m0 = cut[1]; m0 < cut[2]; m0 += F_CHUNK) {
                    const ptrdiff_t m = cut[2] - m0 < F_CHUNK ? cut[2] - m0 : F_CHUNK;
                    F(taps_run)(mid + (m0 - x0), rv[1], v->ntaps, m0 - cut[1], 1, m);
                }
                F(scale_run)(mid + (cut[1] - x0), v->scale, cut[2] - cut[1]);
                const int64_t *map = rs->col_map;
                const ptrdiff_t shift = rs->in0 - rs->in_src - x0;
                for (ptrdiff_t x = x0; x < cut[1]; x++)
                    mid[x - x0] = map[x] < 0 ? column_of_cval : mid[map[x] + shift];
                for (ptrdiff_t x = cut[2]; x < x0 + width; x++)
                    mid[x - x0] = map[x] < 0 ? column_of_cval : mid[map[x] + shift];
            }
            for (ptrdiff_t i0 = 0; i0 < nc; i0 += strip) {
                const ptrdiff_t n = nc - i0 < strip ? nc - i0 : strip;
                const ptrdiff_t len = sx * (n - 1) + span_x;
                /* mid[m] is padded column x0 + i0*sx + m, from the piece that holds it */
                for (int k = 0; k < 3 && !mirror; k++) {
                    const ptrdiff_t lo0 = x0 + i0 * sx, lo = cut[k] > lo0 ? cut[k] : lo0;
                    const ptrdiff_t hi = cut[k + 1] < lo0 + len ? cut[k + 1] : lo0 + len;
                    if (hi <= lo) continue;
                    F(fetch)(rs, rv[k], v->taps, v->ntaps, rows, c, j * sy, v->gap, v->count,
                             cut[k], cut[k + 1] - cut[k], k);
                    for (ptrdiff_t m0 = lo; m0 < hi; m0 += F_CHUNK) {
                        const ptrdiff_t m = hi - m0 < F_CHUNK ? hi - m0 : F_CHUNK;
                        F(taps_run)(mid + (m0 - lo0), rv[k], v->ntaps, m0 - cut[k], 1, m);
                    }
                }
                if (!mirror) F(scale_run)(mid, v->scale, len);
                F(row_pass)(out_row + (dst8 ? 0 : i0), mid, sx, h, rh, n, scratch);
                if (dst8) F(store_u8)(dst8 + c * d_c + j * d_r + i0, tmp, n);
            }
        }
    }
}

/* One factor alone (a one-row or one-column kernel): dst[c, j, i] from padded rows sy*j on.
 * A column factor (`vertical`) reads its taps from p->count rows p->gap apart (tap row r),
 * output i at column x0 + sx*i; a row factor reads one row. */
HOT static void F(single_band)(rowsrc_t *rs, ptrdiff_t x0, ptrdiff_t width, REAL *dst,
                               ptrdiff_t d_c, ptrdiff_t d_r, ptrdiff_t channels, ptrdiff_t nr,
                               ptrdiff_t nc, ptrdiff_t sy, ptrdiff_t sx, const F(pass_t) *p,
                               int vertical, ptrdiff_t origin, ptrdiff_t strip, REAL *work,
                               const REAL **rows, F(rtap_t) *rt, uint8_t *dst8, REAL *tmp)
{
    for (ptrdiff_t c = 0; c < channels; c++) {
        if (p->mode == PASS_RUNNING) { /* a box column, unit column steps (sx == 1) */
            for (ptrdiff_t i0 = 0; i0 < nc; i0 += strip) {
                const ptrdiff_t n = nc - i0 < strip ? nc - i0 : strip;
                F(running_t) g = {NULL, 0, rs, c, x0 + i0, p->count, n, origin, 0,
                                  work, work + p->count * n, 0, 0, 0, 1};
                for (ptrdiff_t j = 0; j < nr; j++) {
                    F(running_row)(&g, j * sy, F_OUT_ROW(c, j) + (dst8 ? 0 : i0), p->scale);
                    if (dst8) F(store_u8)(dst8 + c * d_c + j * d_r + i0, tmp, n);
                }
            }
            continue;
        }
        /* A row factor: the outputs k_lo .. k_hi-1 read only columns in place and are computed
         * there; those at either side from copies of just the columns they read (banks 0, 2),
         * not from a copy of the whole padded row (box 1x15, 2048² float32: 1.4x). */
        ptrdiff_t k_lo = 0, k_hi = 0;
        if (!vertical && rs->image && rs->in1 > rs->in0) {
            const ptrdiff_t span = (p->count - 1) * p->gap + 1, room = rs->in1 - span - x0;
            k_lo = rs->in0 > x0 ? (rs->in0 - x0 + sx - 1) / sx : 0;
            k_lo = k_lo < nc ? k_lo : nc;
            k_hi = room < 0 ? 0 : room / sx + 1 < nc ? room / sx + 1 : nc;
            k_hi = k_hi > k_lo ? k_hi : k_lo;
        }
        for (ptrdiff_t j = 0; j < nr; j++) {
            REAL *out = F_OUT_ROW(c, j);
            if (k_hi == k_lo) {
                F(fetch)(rs, rt, p->taps, p->ntaps, rows, c, j * sy, p->gap,
                         vertical ? p->count : 1, x0, width, 1);
                F(row_pass)(out, rows[0], sx, p, rt, nc, work);
                if (dst8) F(store_u8)(dst8 + c * d_c + j * d_r, tmp, nc);
                continue;
            }
            const ptrdiff_t from[4] = {0, k_lo, k_hi, nc};
            for (int k = 0; k < 3; k++) {
                const ptrdiff_t n = from[k + 1] - from[k];
                if (n <= 0) continue;
                F(fetch)(rs, rt, p->taps, p->ntaps, rows, c, j * sy, p->gap, 1,
                         x0 + from[k] * sx, width - from[k] * sx - (nc - from[k + 1]) * sx, k);
                F(row_pass)(out + from[k], rows[0], sx, p, rt, n, work);
            }
            if (dst8) F(store_u8)(dst8 + c * d_c + j * d_r, tmp, nc);
        }
    }
}


#undef F_OUT_ROW

/* ---------------------------------------------------------------- window sums (matching) */
#ifdef F_WINDOW_SUMS /* float64 only */

/* out[k] = sum_{t < taps} in[k + t] for k < n, t ascending. */
ALWAYS_INLINE void F(box_run)(REAL *restrict out, const REAL *restrict in, ptrdiff_t taps,
                              ptrdiff_t n)
{
    for (ptrdiff_t k = 0; k < n; k++) out[k] = in[k];
    for (ptrdiff_t t = 1; t < taps; t++) {
        const REAL *restrict p = in + t;
        for (ptrdiff_t k = 0; k < n; k++) out[k] += p[k];
    }
}

/* sums[j, i] = sum of src over rows j..j+h-1, columns i..i+w-1; squares[j, i]: of src**2
 * (each square rounded, then summed). Column sums: running (see running_row) when `running`,
 * else row by row in order; row sums: by doubling when `doubling`, else in order. */
HOT static void F(window_sums_band)(const REAL *src, ptrdiff_t s_r, REAL *sums, ptrdiff_t u_r,
                                    REAL *squares, ptrdiff_t q_r, ptrdiff_t nr, ptrdiff_t nc,
                                    ptrdiff_t h, ptrdiff_t w, ptrdiff_t origin, int running,
                                    int doubling, ptrdiff_t strip, REAL *work)
{
    const ptrdiff_t mid_len = strip + w - 1;
    REAL *mid1 = work, *mid2 = mid1 + mid_len, *scratch = mid2 + mid_len;
    REAL *run1 = scratch + doubling_floats(w, 1, 1);
    REAL *run2 = run1 + (h + 1) * mid_len;
    for (ptrdiff_t i0 = 0; i0 < nc; i0 += strip) {
        const ptrdiff_t n = nc - i0 < strip ? nc - i0 : strip;
        const ptrdiff_t len = n + w - 1;
        F(running_t) g1 = {src + i0, s_r, NULL, 0, 0, h, len, origin, 0,
                           run1, run1 + h * len, 0, 0, 0, 1};
        F(running_t) g2 = {src + i0, s_r, NULL, 0, 0, h, len, origin, 1,
                           run2, run2 + h * len, 0, 0, 0, 1};
        for (ptrdiff_t j = 0; j < nr; j++) {
            if (running) {
                F(running_row)(&g1, j, mid1, 1);
                F(running_row)(&g2, j, mid2, 1);
            } else {
                for (ptrdiff_t t = 0; t < h; t++) {
                    const REAL *in = src + (j + t) * s_r + i0;
                    F(row_value)(mid1, in, len, 0, t > 0);
                    F(row_value)(mid2, in, len, 1, t > 0);
                }
            }
            REAL *out1 = sums + j * u_r + i0, *out2 = squares + j * q_r + i0;
            if (doubling) {
                F(doubling_run)(out1, mid1, 1, 1, w, n, scratch, 1);
                F(doubling_run)(out2, mid2, 1, 1, w, n, scratch, 1);
            } else {
                F(box_run)(out1, mid1, w, n);
                F(box_run)(out2, mid2, w, n);
            }
        }
    }
}

#endif /* F_WINDOW_SUMS */

#undef TERM_MUL
#undef TERM_ONE
#undef TERM_NEG
#undef TERM_PAIR
#undef TERM_PAIR1
#undef TERM_PAIRNEG
#undef TERM_DIFF
#undef TERM_DIFF1
#undef F_RUN
#undef F_TAP_SWITCH
#undef F_CHUNK
#undef F_SIDE
#undef F_STREAM
#undef F_LANES
#undef F_VECS
