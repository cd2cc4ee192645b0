/* Integer kernels for 8-bit input, included twice by _native.c: ACC = uint16_t, I(x) = x##_u16
 * (SCALED = float), and ACC = uint32_t, I(x) = x##_u32 (SCALED = double).
 *
 * All arithmetic is modular (unsigned ACC: wrapping is defined, and every step is linear),
 * so the accumulator holds the exact sum T modulo 2^bits. The caller has proved that T lies
 * in [low, low + 2^bits) for any 8-bit input; T is recovered as low + (acc - low) mod 2^bits,
 * so partial sums may wrap freely. See exactness_bound() in _native.c for the rest.
 */

#define I_CHUNK I_CHUNK_ALL
/* Outputs next to the border computed from copied rows, at least (see direct_band). */
#define I_SIDE 64

#define TERM_MUL(i) ((ACC)(w * (uint32_t)p[i]))
#define TERM_ONE(i) ((ACC)p[i])
#define TERM_NEG(i) ((ACC)(0u - (uint32_t)p[i]))
#define TERM_PAIR(i) ((ACC)(w * ((uint32_t)p[i] + (uint32_t)q[i])))
#define TERM_PAIR1(i) ((ACC)((uint32_t)p[i] + (uint32_t)q[i]))
#define TERM_PAIRNEG(i) ((ACC)(0u - ((uint32_t)p[i] + (uint32_t)q[i])))
#define TERM_DIFF(i) ((ACC)(w * ((uint32_t)p[i] - (uint32_t)q[i])))
#define TERM_DIFF1(i) ((ACC)((uint32_t)p[i] - (uint32_t)q[i]))

#define I_RUN(OP, TERM)                                                                    \
    do {                                                                                   \
        if (step == 1) {                                                                   \
            for (ptrdiff_t k = 0; k < n; k++) acc[k] OP TERM(k);                           \
        } else {                                                                           \
            for (ptrdiff_t k = 0; k < n; k++) acc[k] OP TERM(k * step);                    \
        }                                                                                  \
    } while (0)

#define I_TAP_SWITCH(OP)                                                                   \
    switch (t->kind) {                                                                     \
    case TAP_MUL: I_RUN(OP, TERM_MUL); break;                                              \
    case TAP_ONE: I_RUN(OP, TERM_ONE); break;                                              \
    case TAP_NEG: I_RUN(OP, TERM_NEG); break;                                              \
    case TAP_PAIR: I_RUN(OP, TERM_PAIR); break;                                            \
    case TAP_PAIR1: I_RUN(OP, TERM_PAIR1); break;                                          \
    case TAP_PAIRNEG: I_RUN(OP, TERM_PAIRNEG); break;                                      \
    case TAP_DIFF: I_RUN(OP, TERM_DIFF); break;                                            \
    default: I_RUN(OP, TERM_DIFF1); break;                                                 \
    }

/* A tap resolved for one output row (see _native_float.h): reads p[at + k] and q[at + k]. */
typedef struct {
    const uint8_t *p, *q;
    uint32_t w;
    int kind;
} I(rtap_u8_t);
typedef struct {
    const ACC *p, *q;
    uint32_t w;
    int kind;
} I(rtap_acc_t);

#define I_DEFINE_RESOLVE(NAME, RT, SRC)                                                    \
    ALWAYS_INLINE void NAME(RT *rt, const tap_t *taps, int ntaps, const SRC *const *rows)  \
    {                                                                                      \
        for (int i = 0; i < ntaps; i++) {                                                  \
            rt[i].p = rows[taps[i].r1] + taps[i].o1;                                       \
            rt[i].q = rows[taps[i].r2] + taps[i].o2;                                       \
            rt[i].w = (uint32_t)taps[i].iw;                                                \
            rt[i].kind = taps[i].kind;                                                     \
        }                                                                                  \
    }
I_DEFINE_RESOLVE(I(resolve_u8), I(rtap_u8_t), uint8_t)
I_DEFINE_RESOLVE(I(resolve_acc), I(rtap_acc_t), ACC)

/* acc = sum of the taps over n outputs, reading 8-bit samples (SRC = uint8_t) or
 * accumulators of a first pass (SRC = ACC); output k reads p[at + k*step]. */
#define I_DEFINE_TAPS(NAME, SRC, RT)                                                       \
    ALWAYS_INLINE void NAME(ACC *restrict acc, const RT *taps, int ntaps, ptrdiff_t at,    \
                            ptrdiff_t step, ptrdiff_t n)                                   \
    {                                                                                      \
        if (ntaps == 0) {                                                                  \
            for (ptrdiff_t k = 0; k < n; k++) acc[k] = 0;                                  \
            return;                                                                        \
        }                                                                                  \
        for (int i = 0; i < ntaps; i++) {                                                  \
            const RT *t = taps + i;                                                        \
            const SRC *restrict p = t->p + at;                                             \
            const SRC *restrict q = t->q + at;                                             \
            const uint32_t w = t->w;                                                       \
            if (i == 0) {                                                                  \
                I_TAP_SWITCH(=)                                                            \
            } else {                                                                       \
                I_TAP_SWITCH(+=)                                                           \
            }                                                                              \
        }                                                                                  \
    }

I_DEFINE_TAPS(I(taps_sweep_u8), uint8_t, I(rtap_u8_t))
I_DEFINE_TAPS(I(taps_sweep_acc), ACC, I(rtap_acc_t))

#ifdef HAVE_VECTOR_TYPES
/* A block of I_LANES*4 consecutive outputs (unit step) whose sums stay in registers through
 * the whole tap list: each sample is widened once as it is loaded, and the sums are stored
 * once, instead of a load, widen, add and store of the accumulator row per tap. The same
 * modular sums as the sweep (integer sums: any order gives the same bits). */
typedef ACC I(vec) __attribute__((vector_size(I_VEC_BYTES)));
#define I_LANES ((ptrdiff_t)(I_VEC_BYTES / sizeof(ACC)))
typedef uint8_t I(bytes) __attribute__((vector_size(I_LANES)));
typedef ACC I(uvec) __attribute__((vector_size(I_VEC_BYTES), aligned(sizeof(ACC)), may_alias));

ALWAYS_INLINE I(vec) I(widen_u8)(const uint8_t *p)
{
    I(bytes) b;
    memcpy(&b, p, sizeof b);
    return __builtin_convertvector(b, I(vec));
}

ALWAYS_INLINE I(vec) I(widen_acc)(const ACC *p)
{
    I(vec) v;
    memcpy(&v, p, sizeof v);
    return v;
}

#define I_BLOCK_TERMS(TERM)                                                                \
    do {                                                                                   \
        a0 += TERM(0);                                                                     \
        a1 += TERM(I_LANES);                                                               \
        a2 += TERM(2 * I_LANES);                                                           \
        a3 += TERM(3 * I_LANES);                                                           \
    } while (0)
#define V_MUL(i) (wv * LOAD(p + (i)))
#define V_ONE(i) (LOAD(p + (i)))
#define V_NEG(i) (-LOAD(p + (i)))
#define V_PAIR(i) (wv * (LOAD(p + (i)) + LOAD(q + (i))))
#define V_PAIR1(i) (LOAD(p + (i)) + LOAD(q + (i)))
#define V_PAIRNEG(i) (-(LOAD(p + (i)) + LOAD(q + (i))))
#define V_DIFF(i) (wv * (LOAD(p + (i)) - LOAD(q + (i))))
#define V_DIFF1(i) (LOAD(p + (i)) - LOAD(q + (i)))

#define I_DEFINE_BLOCK(NAME, SRC, RT, LOADER)                                              \
    ALWAYS_INLINE void NAME(ACC *restrict acc, const RT *taps, int ntaps, ptrdiff_t at)    \
    {                                                                                      \
        I(vec) a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};                                     \
        for (int i = 0; i < ntaps; i++) {                                                  \
            const RT *t = taps + i;                                                        \
            const SRC *restrict p = t->p + at, *restrict q = t->q + at;                    \
            const ACC wv = (ACC)t->w;                                                      \
            switch (t->kind) {                                                             \
            case TAP_MUL: I_BLOCK_TERMS(V_MUL); break;                                     \
            case TAP_ONE: I_BLOCK_TERMS(V_ONE); break;                                     \
            case TAP_NEG: I_BLOCK_TERMS(V_NEG); break;                                     \
            case TAP_PAIR: I_BLOCK_TERMS(V_PAIR); break;                                   \
            case TAP_PAIR1: I_BLOCK_TERMS(V_PAIR1); break;                                 \
            case TAP_PAIRNEG: I_BLOCK_TERMS(V_PAIRNEG); break;                             \
            case TAP_DIFF: I_BLOCK_TERMS(V_DIFF); break;                                   \
            default: I_BLOCK_TERMS(V_DIFF1); break;                                        \
            }                                                                              \
        }                                                                                  \
        *(I(uvec) *)(acc) = a0;                                                            \
        *(I(uvec) *)(acc + I_LANES) = a1;                                                  \
        *(I(uvec) *)(acc + 2 * I_LANES) = a2;                                              \
        *(I(uvec) *)(acc + 3 * I_LANES) = a3;                                              \
    }
#define LOAD I(widen_u8)
I_DEFINE_BLOCK(I(taps_block_u8), uint8_t, I(rtap_u8_t), LOAD)
#undef LOAD
#define LOAD I(widen_acc)
I_DEFINE_BLOCK(I(taps_block_acc), ACC, I(rtap_acc_t), LOAD)
#undef LOAD
#undef V_MUL
#undef V_ONE
#undef V_NEG
#undef V_PAIR
#undef V_PAIR1
#undef V_PAIRNEG
#undef V_DIFF
#undef V_DIFF1
#undef I_BLOCK_TERMS
#undef I_DEFINE_BLOCK
#endif

/* acc = the tap list's sum at outputs k < n: register blocks where the step is 1, the sweep
 * for the rest (and for one or two terms, where it is as fast). */
#ifdef HAVE_VECTOR_TYPES
#define I_DEFINE_RUN(NAME, RT, BLOCK, SWEEP)                                               \
    ALWAYS_INLINE void NAME(ACC *restrict acc, const RT *taps, int ntaps, ptrdiff_t at,    \
                            ptrdiff_t step, ptrdiff_t n)                                   \
    {                                                                                      \
        ptrdiff_t k0 = 0;                                                                  \
        if (step == 1 && ntaps >= 2)                                                       \
            for (; k0 + 4 * I_LANES <= n; k0 += 4 * I_LANES) BLOCK(acc + k0, taps, ntaps, at + k0); \
        if (k0 < n) SWEEP(acc + k0, taps, ntaps, at + k0 * step, step, n - k0);            \
    }
#else
#define I_DEFINE_RUN(NAME, RT, BLOCK, SWEEP)                                               \
    ALWAYS_INLINE void NAME(ACC *restrict acc, const RT *taps, int ntaps, ptrdiff_t at,    \
                            ptrdiff_t step, ptrdiff_t n)                                   \
    {                                                                                      \
        SWEEP(acc, taps, ntaps, at, step, n);                                              \
    }
#endif
I_DEFINE_RUN(I(taps_u8), I(rtap_u8_t), I(taps_block_u8), I(taps_sweep_u8))
I_DEFINE_RUN(I(taps_acc), I(rtap_acc_t), I(taps_block_acc), I(taps_sweep_acc))
#undef I_DEFINE_RUN

/* The exact sum T from its residue, as SCALED. */
ALWAYS_INLINE SCALED I(value)(ACC acc, int32_t low)
{
    return (SCALED)(low + (int64_t)(ACC)(acc - (ACC)low));
}

/* out = clip(round_half_even(T * scale), 0, 255). Clipping first keeps |v| small for the
 * round-by-addition (adding 1.5 * 2^(mantissa bits) rounds to an integer, ties to even, in
 * the default rounding mode); clipping and rounding commute here. */
ALWAYS_INLINE void I(store_u8)(uint8_t *restrict out, const ACC *restrict acc, ptrdiff_t n,
                               int32_t low, SCALED scale, int shift, int32_t gain)
{
    if (shift == 0) { /* scale = gain: an integer. out = clip(T * gain), nothing to round */
        const int32_t top = 255;
        for (ptrdiff_t k = 0; k < n; k++) {
            int32_t t = (low + (int32_t)(ACC)(acc[k] - (ACC)low)) * gain;
            t = t < 0 ? 0 : t;
            out[k] = (uint8_t)(t > top ? top : t);
        }
        return;
    }
    if (shift > 0) {
        /* scale = gain / 2^shift, all in integers (the caller checked |T * gain| < 2^31):
         * clip to [0, 255 * 2^shift] first (values beyond round to 0 or 255 anyway), then
         * round half to even by a shift: (t + 2^(shift-1) - 1 + (q & 1)) >> shift with
         * q = t >> shift adds one exactly when the remainder is above half, or half and q odd. */
        const int32_t top = 255 << shift, half = (1 << (shift - 1)) - 1;
        for (ptrdiff_t k = 0; k < n; k++) {
            int32_t t = (low + (int32_t)(ACC)(acc[k] - (ACC)low)) * gain;
            t = t < 0 ? 0 : t;
            t = t > top ? top : t;
            out[k] = (uint8_t)((t + half + ((t >> shift) & 1)) >> shift);
        }
        return;
    }
    for (ptrdiff_t k = 0; k < n; k++) {
        SCALED v = I(value)(acc[k], low) * scale;
        v = v < 0 ? 0 : v;
        v = v > 255 ? 255 : v;
        v = (v + ROUNDER) - ROUNDER;
        out[k] = (uint8_t)(int32_t)v;
    }
}

ALWAYS_INLINE void I(store_f32)(float *restrict out, const ACC *restrict acc, ptrdiff_t n,
                                int32_t low, SCALED scale)
{
    for (ptrdiff_t k = 0; k < n; k++) out[k] = (float)(I(value)(acc[k], low) * scale);
}

ALWAYS_INLINE void I(store)(char *out, int out_u8, const ACC *acc, ptrdiff_t n, int32_t low,
                            SCALED scale, int shift, int32_t gain)
{
    if (out_u8) I(store_u8)((uint8_t *)out, acc, n, low, scale, shift, gain);
    else I(store_f32)((float *)out, acc, n, low, scale);
}

/* rt = taps resolved on the padded rows `first + t*gap` (t < count) of channel c, columns
 * x0 .. x0+len-1 (rows: room for count pointers). */
ALWAYS_INLINE void I(fetch)(rowsrc_t *rs, I(rtap_u8_t) *rt, const tap_t *taps, int ntaps,
                            const uint8_t **rows, ptrdiff_t c, ptrdiff_t first, ptrdiff_t gap,
                            ptrdiff_t count, ptrdiff_t x0, ptrdiff_t len, int bank)
{
    for (ptrdiff_t t = 0; t < count; t++)
        rows[t] = (const uint8_t *)row_get(rs, c, first + t * gap, x0, len, bank);
    I(resolve_u8)(rt, taps, ntaps, rows);
}

/* Direct taps over 8-bit rows from `rs` (see direct_band in _native_float.h): padded row
 * sy*j + r*gap, column x0 + sx*i + o. dst rows are uint8 (out_u8) or float32; d_c, d_r in
 * bytes. */
HOT static void I(direct_band)(rowsrc_t *rs, ptrdiff_t x0, ptrdiff_t width, char *dst,
                               ptrdiff_t d_c, ptrdiff_t d_r, int out_u8, ptrdiff_t channels,
                               ptrdiff_t nr, ptrdiff_t nc, ptrdiff_t sy, ptrdiff_t sx,
                               ptrdiff_t kh, ptrdiff_t gap, const tap_t *taps, int ntaps,
                               int32_t low, SCALED scale, int shift, int32_t gain,
                               const uint8_t **rows, void *work)
{
    ACC acc[I_CHUNK] __attribute__((aligned(64)));
    const ptrdiff_t item = out_u8 ? 1 : 4;
    I(rtap_u8_t) *rt = work;
    /* As direct_band in _native_float.h: outputs [in0, in1) read their rows in place, the few
     * at either side from copied rows (whole register blocks of them). */
    const ptrdiff_t span = width - sx * (nc - 1);
    ptrdiff_t cut[4];
    cut_columns(rs, x0, width, cut);
    ptrdiff_t in0 = (cut[1] - x0 + sx - 1) / sx, in1 = 0;
    if (cut[2] - x0 - span >= 0) in1 = (cut[2] - x0 - span) / sx + 1;
    in1 = in1 > nc ? nc : in1;
    in0 = (in0 + I_SIDE - 1) / I_SIDE * I_SIDE;
    in1 = nc - (nc - in1 + I_SIDE - 1) / I_SIDE * I_SIDE;
    if (in1 <= in0) {
        in0 = 0;
        in1 = nc;
    }
    const ptrdiff_t parts[4] = {0, in0, in1, nc};
    for (ptrdiff_t c = 0; c < channels; c++)
        for (ptrdiff_t j = 0; j < nr; j++) {
            char *out = dst + c * d_c + j * d_r;
            for (int k = 0; k < 3; k++) {
                const ptrdiff_t o0 = parts[k], no = parts[k + 1] - o0;
                if (no <= 0) continue;
                I(fetch)(rs, rt, taps, ntaps, rows, c, j * sy, gap, kh, x0 + sx * o0,
                         sx * (no - 1) + span, k);
                for (ptrdiff_t i0 = 0; i0 < no; i0 += I_CHUNK) {
                    const ptrdiff_t n = no - i0 < I_CHUNK ? no - i0 : I_CHUNK;
                    I(taps_u8)(acc, rt, ntaps, i0 * sx, sx, n);
                    I(store)(out + (o0 + i0) * item, out_u8, acc, n, low, scale, shift, gain);
                }
            }
        }
}

/* out[k] = sum_{t < taps} src[k + t*gap] for k < n, by doubling (O(log taps) passes over two
 * scratch rows of n + (taps - 2) * gap sums each): integer sums, so the same as in order. */
ALWAYS_INLINE void I(doubling)(ACC *restrict out, const ACC *restrict src, ptrdiff_t gap,
                               ptrdiff_t taps, ptrdiff_t n, ACC *restrict scratch0,
                               ACC *restrict scratch1)
{
    const ACC *sums = src;
    ACC *spare[2] = {scratch0, scratch1};
    ptrdiff_t width = 1, covered = 0, bits = taps;
    int first = 1;
    while (bits) {
        if (bits & 1) {
            const ACC *restrict part = sums + covered * gap;
            if (first) for (ptrdiff_t k = 0; k < n; k++) out[k] = part[k];
            else for (ptrdiff_t k = 0; k < n; k++) out[k] += part[k];
            first = 0;
            covered += width;
        }
        bits >>= 1;
        if (bits) {
            const ptrdiff_t length = n + (taps - 2 * width) * gap;
            ACC *restrict target = spare[0];
            const ACC *restrict a = sums, *restrict b = sums + width * gap;
            for (ptrdiff_t x = 0; x < length; x++) target[x] = a[x] + b[x];
            sums = target;
            spare[0] = spare[1];
            spare[1] = target;
            width *= 2;
        }
    }
}

/* A rank-1 integer kernel, fused per output row: the column factor (kh rows `gap` apart)
 * into an accumulator row `mid` (one strip at a time), the row factor from it, then one
 * rounding.
 *
 * Boxes (the caller decides): `colsum` (not NULL: a column factor of kh ones, consecutive
 * rows, row step 1) holds the column sums of the whole row read, updated from one output row
 * to the next by the row that enters and the row that leaves (the ring has kh + 1 slots, so
 * both are at hand); `hbox` (> 0: a row factor of hbox ones, column step 1) sums the row by
 * doubling through `scratch` (2 x (I_CHUNK + span_x)). The same exact sums as the taps. */
HOT static void I(separable_band)(rowsrc_t *rs, ptrdiff_t x0, ptrdiff_t width, char *dst,
                                  ptrdiff_t d_c, ptrdiff_t d_r, int out_u8, ptrdiff_t channels,
                                  ptrdiff_t nr, ptrdiff_t nc, ptrdiff_t sy, ptrdiff_t sx,
                                  ptrdiff_t kh, ptrdiff_t gap, const tap_t *vt, int nvt,
                                  const tap_t *ht, int nht, ptrdiff_t span_x, ptrdiff_t strip,
                                  int32_t low, SCALED scale, int shift, int32_t gain, ACC *mid,
                                  const uint8_t **rows, void *work, ACC *colsum, ptrdiff_t hbox,
                                  ptrdiff_t hgap, ACC *scratch)
{
    ACC acc[I_CHUNK] __attribute__((aligned(64)));
    const ptrdiff_t item = out_u8 ? 1 : 4;
    ACC *const row_in = colsum ? colsum : mid; /* what the row pass reads */
    const ACC *mids[1] = {row_in};
    I(rtap_u8_t) *rv = work;
    I(rtap_acc_t) *rh = (I(rtap_acc_t) *)(rv + nvt);
    I(resolve_acc)(rh, ht, nht, mids);
    ACC *scratch0 = scratch, *scratch1 = scratch ? scratch + I_CHUNK + span_x : NULL;
    /* the column pass reads its rows in pieces: padding, in place, padding (see cut_columns) */
    ptrdiff_t cut[4];
    cut_columns(rs, x0, width, cut);
    for (ptrdiff_t c = 0; c < channels; c++)
        for (ptrdiff_t j = 0; j < nr; j++) {
            char *out_row = dst + c * d_c + j * d_r;
            for (int k = 0; colsum && k < 3; k++) {
                const ptrdiff_t len = cut[k + 1] - cut[k];
                if (len <= 0) continue;
                ACC *restrict sums = colsum + (cut[k] - x0);
                if (j == 0) {
                    I(fetch)(rs, rv, vt, nvt, rows, c, 0, 1, kh, cut[k], len, k);
                    for (ptrdiff_t m0 = 0; m0 < len; m0 += I_CHUNK) {
                        const ptrdiff_t m = len - m0 < I_CHUNK ? len - m0 : I_CHUNK;
                        I(taps_u8)(sums + m0, rv, nvt, m0, 1, m);
                    }
                    continue;
                }
                const uint8_t *restrict gone = (const uint8_t *)row_get(rs, c, j - 1, cut[k], len, k);
                const uint8_t *restrict come = (const uint8_t *)row_get(rs, c, j + kh - 1, cut[k], len, k);
                for (ptrdiff_t m = 0; m < len; m++)
                    sums[m] = (ACC)(sums[m] + (ACC)come[m] - (ACC)gone[m]);
            }
            for (ptrdiff_t i0 = 0; i0 < nc; i0 += strip) {
                const ptrdiff_t n = nc - i0 < strip ? nc - i0 : strip;
                const ptrdiff_t len = sx * (n - 1) + span_x;
                /* mid[m] is padded column x0 + i0*sx + m, from the piece that holds it */
                for (int k = 0; !colsum && k < 3; k++) {
                    const ptrdiff_t lo0 = x0 + i0 * sx, lo = cut[k] > lo0 ? cut[k] : lo0;
                    const ptrdiff_t hi = cut[k + 1] < lo0 + len ? cut[k + 1] : lo0 + len;
                    if (hi <= lo) continue;
                    I(fetch)(rs, rv, vt, nvt, rows, c, j * sy, gap, kh, cut[k],
                             cut[k + 1] - cut[k], k);
                    for (ptrdiff_t m0 = lo; m0 < hi; m0 += I_CHUNK) {
                        const ptrdiff_t m = hi - m0 < I_CHUNK ? hi - m0 : I_CHUNK;
                        I(taps_u8)(mid + (m0 - lo0), rv, nvt, m0 - cut[k], 1, m);
                    }
                }
                const ptrdiff_t base = colsum ? i0 * sx : 0; /* row_in[base + m]: mid[m] */
                for (ptrdiff_t k0 = 0; k0 < n; k0 += I_CHUNK) {
                    const ptrdiff_t m = n - k0 < I_CHUNK ? n - k0 : I_CHUNK;
                    if (hbox)
                        I(doubling)(acc, row_in + base + k0, hgap, hbox, m, scratch0, scratch1);
                    else
                        I(taps_acc)(acc, rh, nht, base + k0 * sx, sx, m);
                    I(store)(out_row + (i0 + k0) * item, out_u8, acc, m, low, scale, shift,
                            gain);
                }
            }
        }
}

#undef TERM_MUL
#undef TERM_ONE
#undef TERM_NEG
#undef TERM_PAIR
#undef TERM_PAIR1
#undef TERM_PAIRNEG
#undef TERM_DIFF
#undef TERM_DIFF1
#undef I_RUN
#undef I_TAP_SWITCH
#undef I_DEFINE_TAPS
#undef I_DEFINE_RESOLVE
#undef I_CHUNK
#undef I_SIDE
#undef I_LANES
