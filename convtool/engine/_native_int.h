/* Integer kernels for 8-bit input, included twice by _native.c: ACC = uint16_t, I(x) = x##_u16
 * (SCALED = float), and ACC = uint32_t, I(x) = x##_u32 (SCALED = double).
 *
 * All arithmetic is modular (unsigned ACC: wrapping is defined, and every step is linear),
 * so the accumulator holds the exact sum T modulo 2^bits. The caller has proved that T lies
 * in [low, low + 2^bits) for any 8-bit input; T is recovered as low + (acc - low) mod 2^bits,
 * so partial sums may wrap freely. See exactness_bound() in _native.c for the rest.
 */

#define I_CHUNK 1024

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

I_DEFINE_TAPS(I(taps_u8), uint8_t, I(rtap_u8_t))
I_DEFINE_TAPS(I(taps_acc), ACC, I(rtap_acc_t))

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
                            ptrdiff_t count, ptrdiff_t x0, ptrdiff_t len)
{
    for (ptrdiff_t t = 0; t < count; t++)
        rows[t] = (const uint8_t *)row_get(rs, c, first + t * gap, x0, len, 1);
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
    for (ptrdiff_t c = 0; c < channels; c++)
        for (ptrdiff_t j = 0; j < nr; j++) {
            I(fetch)(rs, rt, taps, ntaps, rows, c, j * sy, gap, kh, x0, width);
            char *out = dst + c * d_c + j * d_r;
            for (ptrdiff_t i0 = 0; i0 < nc; i0 += I_CHUNK) {
                const ptrdiff_t n = nc - i0 < I_CHUNK ? nc - i0 : I_CHUNK;
                I(taps_u8)(acc, rt, ntaps, i0 * sx, sx, n);
                I(store)(out + i0 * item, out_u8, acc, n, low, scale, shift, gain);
            }
        }
}

/* A rank-1 integer kernel, fused per output row: the column factor (kh rows `gap` apart)
 * into an accumulator row `mid` (one strip at a time), the row factor from it, then one
 * rounding. */
HOT static void I(separable_band)(rowsrc_t *rs, ptrdiff_t x0, ptrdiff_t width, char *dst,
                                  ptrdiff_t d_c, ptrdiff_t d_r, int out_u8, ptrdiff_t channels,
                                  ptrdiff_t nr, ptrdiff_t nc, ptrdiff_t sy, ptrdiff_t sx,
                                  ptrdiff_t kh, ptrdiff_t gap, const tap_t *vt, int nvt,
                                  const tap_t *ht, int nht, ptrdiff_t span_x, ptrdiff_t strip,
                                  int32_t low, SCALED scale, int shift, int32_t gain, ACC *mid,
                                  const uint8_t **rows, void *work)
{
    ACC acc[I_CHUNK] __attribute__((aligned(64)));
    const ptrdiff_t item = out_u8 ? 1 : 4;
    const ACC *mids[1] = {mid};
    I(rtap_u8_t) *rv = work;
    I(rtap_acc_t) *rh = (I(rtap_acc_t) *)(rv + nvt);
    I(resolve_acc)(rh, ht, nht, mids);
    for (ptrdiff_t c = 0; c < channels; c++)
        for (ptrdiff_t j = 0; j < nr; j++) {
            I(fetch)(rs, rv, vt, nvt, rows, c, j * sy, gap, kh, x0, width);
            char *out_row = dst + c * d_c + j * d_r;
            for (ptrdiff_t i0 = 0; i0 < nc; i0 += strip) {
                const ptrdiff_t n = nc - i0 < strip ? nc - i0 : strip;
                const ptrdiff_t len = sx * (n - 1) + span_x;
                for (ptrdiff_t m0 = 0; m0 < len; m0 += I_CHUNK) {
                    const ptrdiff_t m = len - m0 < I_CHUNK ? len - m0 : I_CHUNK;
                    I(taps_u8)(mid + m0, rv, nvt, i0 * sx + m0, 1, m);
                }
                for (ptrdiff_t k0 = 0; k0 < n; k0 += I_CHUNK) {
                    const ptrdiff_t m = n - k0 < I_CHUNK ? n - k0 : I_CHUNK;
                    I(taps_acc)(acc, rh, nht, k0 * sx, sx, m);
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
