/* convtool.engine._native: compiled loops for the engine's hot paths.
 *
 * Each function takes bands the Python engine has already validated, planned and padded, and
 * writes into an output the caller provides: it does one thing, a multiply-add into output
 * rows. Planning, padding, validation of user input and error messages stay in Python; the
 * checks here only guard memory safety (shapes and strides that would read or write outside
 * the buffers raise ValueError). The numpy implementation beside it is the reference.
 *
 * Arrays come through the buffer protocol (no numpy at build time): (rows, columns) or
 * (channels, rows, columns), any strides in whole items, unit steps along columns.
 *
 * Geometry (the engine's Axis): output (j, i) reads src[c, row_step*j + a*row_gap,
 * col_first + col_step*i + b*col_gap] for tap (a, b). Only the kept outputs are computed.
 *
 * Speed: loops written for GCC's vectoriser (checked with -fopt-info-vec), compiled once per
 * SIMD level: x86-64-v4 (AVX-512 F/BW/DQ/VL: 16-bit lanes need BW), x86-64-v3 (AVX2) and the
 * baseline (SSE2), each kernel header included once per level under its own
 * `#pragma GCC target`, with register blocks of that level's register width (see "SIMD
 * levels" below). The module picks one level's table of kernels when it loads, by what the
 * CPU supports (select_level() can force a lower one), so one build never runs an instruction
 * the CPU lacks. -ffp-contract=off: no fused multiply-adds, so every level gives the same
 * bits. The GIL is released inside each call.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>
#include <time.h>
#if defined(_WIN32)
#define WIN32_LEAN_AND_MEAN
#define NOMINMAX
#include <windows.h>
#else
#include <sched.h>
#endif

/* SIMD levels: GCC on x86-64 builds the kernels for x86-64-v4, x86-64-v3 and the baseline
 * (CONVTOOL_NO_CLONES: the baseline alone, i.e. whatever -march says); any other compiler or
 * machine builds one portable level. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(CONVTOOL_NO_CLONES)
#define CLONES 1
#else
#define CLONES 0
#endif
#define HOT /* (the hot functions: one copy per level) */
#if defined(__GNUC__)
#define HAVE_VECTOR_TYPES 1
#define ALWAYS_INLINE static inline __attribute__((always_inline))
#else
#define ALWAYS_INLINE static inline
#endif

/* Box factors (all taps equal) of at least this many taps use running sums down the rows and
 * sums by doubling along them; shorter ones add their taps one by one. Measured: 4096x4096
 * float32 and float64, one thread: at 7 taps both ways cost the same, from 9 on the sums win
 * (box 15: 1.7x, 31: 2x, 127: 7x; see NOTES.md). */
#define RUNNING_MIN_TAPS 8
#define DOUBLING_MIN_TAPS 8
/* Bytes of the row buffer between the two passes of a separable kernel (L1 sized). 32 KiB:
 * one strip holds a 4096-wide float32 row (and its padding is then mirrored, not copied):
 * measured against 16 KiB, one process, 2 threads (min): binomial 5x5 float32 4096² 1.05-1.11x,
 * 2048² 1.04x, box 15 4096² 1.04x; 3840x2160 RGB uint8 binomial 1.09x, Sobel 1.04x. */
#ifndef MID_BYTES
#define MID_BYTES (32 << 10)
#endif
/* Bytes of the suffix rows of a running sum (L2 sized). */
#define RUNNING_BYTES (256 << 10)

enum { TAP_MUL, TAP_ONE, TAP_NEG, TAP_PAIR, TAP_PAIR1, TAP_PAIRNEG, TAP_DIFF, TAP_DIFF1 };
enum { PASS_TAPS, PASS_RUNNING, PASS_DOUBLING };

/* One term of a tap list: w * x[o1] (MUL, ONE: w = 1, NEG: w = -1), or a folded pair of
 * mirror taps with equal weights w * (x[o1] + x[o2]) (PAIR...) or opposite ones
 * w * (x[o1] - x[o2]) (DIFF...). The unit kinds skip a multiply by +-1, which changes no bit.
 * x[o] is read in row r of the rows an output row reads (rows[r]: its padded rows, one per
 * kernel row, or the one row buffer of a separable kernel's second pass). */
typedef struct {
    ptrdiff_t o1, o2; /* column offsets in elements from the output's first sample */
    int r1, r2;       /* which row each reads */
    double w;
    int32_t iw;       /* the weight as an integer (integer kernels) */
    int kind;
} tap_t;

/* Direct taps on pairs of output rows (unit steps, no row dilation): output rows j and j+1
 * read the kernel's rows from padded rows j .. j+kh, and each of those rows is loaded once
 * for both. The kernel's columns are cut into groups, the same in every kernel row: a mirror
 * pair of columns (b, kw-1-b) whose weights are equal in every row that uses it (SUM: one
 * term w * (x[b] + x[b']) per row), opposite in every such row (DIFF: w * (x[b] - x[b'])),
 * or neither (TWO: the two products in turn); the middle column (ONE). The sums and
 * differences are made once per loaded row for both outputs. Each output adds its terms in
 * a fixed order: kernel rows down, groups left to right, zero weights skipped; the same
 * whether its row is computed in a pair or alone, so the bits never depend on the bands. */
enum { G_SUM, G_DIFF, G_ONE, G_TWO };
enum { T_SKIP, T_ADD, T_SUB, T_MUL };

typedef struct {
    ptrdiff_t o1, o2; /* column offsets of the group's two columns (ONE: o1 only) */
    int kind;
} group_t;

typedef struct {
    int k1, k2;   /* how each of the group's terms is added (k2: TWO's second column) */
    double w1, w2;
} gterm_t;

typedef struct {
    int ngroups;
    const group_t *groups;
    const gterm_t *terms; /* terms[a * ngroups + g]: kernel row a, group g */
} pairs_t;

/* ------------------------------------------------------------------------- rows */

/* Where the kernels read their padded rows. Either a padded band the caller gathered (row p
 * at base + p*sr), or the unpadded image through the padding's index maps: padded row p is
 * source row row_map[p] (-1: the constant), and the padded columns are runs of source
 * columns (or of the constant). A padded row is then copied once, when first read, into a
 * ring of `slots` row buffers (L1/L2 sized: the kernel's rows), pads filled from the maps;
 * a row whose columns read lie in one run of source columns (no pads, unit column steps) is
 * read where it is, not copied. Output rows ask for padded rows in increasing order, at
 * most `slots` consecutive ones at once, so row p's slot is p mod slots. */
typedef struct {
    ptrdiff_t x0, len; /* padded columns x0 .. x0+len-1 */
    ptrdiff_t src;     /* read source columns src .. src+len-1; -1: the constant */
} run_t;

typedef struct {
    int image;            /* 0: a padded band; 1: the image through the maps */
    ptrdiff_t item;       /* bytes per sample the kernels read (the ring's samples) */
    ptrdiff_t src_item;   /* bytes per sample of the source: 1 with a float item is 8-bit
                           * samples converted as each row is copied (never read in place) */
    const char *base;     /* band row 0, column 0; or the image's channel 0, row 0, column 0 */
    ptrdiff_t sc, sr, sx; /* strides in bytes (image: any sign) */
    const int64_t *row_map;
    const run_t *runs;
    ptrdiff_t nruns;
    char *ring[3];        /* three banks of slots x slot_bytes[bank]: 0 and 2 for the few */
    int64_t *tags[3];     /* columns at the left and right border, 1 for whole rows; tags: */
    ptrdiff_t slots, slot_bytes[3]; /* per slot the padded row, channel, x0, len held */
    double cval;
    ptrdiff_t in0, in1;   /* padded columns in0 .. in1-1 can be read in place (one run of
                           * source columns, unit steps): kernels cut their columns there */
    ptrdiff_t in_src;     /* the source column of padded column in0 */
    const int64_t *col_map; /* source column of each padded column (-1: the constant) */
} rowsrc_t;

/* Cut columns [x0, x0+len) where the in-place columns start and end: cut[0] = x0 <= cut[1]
 * <= cut[2] <= cut[3] = x0+len, the middle piece in place. */
static inline void cut_columns(const rowsrc_t *rs, ptrdiff_t x0, ptrdiff_t len, ptrdiff_t cut[4])
{
    const ptrdiff_t end = x0 + len;
    ptrdiff_t a = rs->in0 < x0 ? x0 : rs->in0, b = rs->in1 > end ? end : rs->in1;
    if (a >= b) { /* nothing in place: one piece (the middle one, copied whole) */
        a = x0;
        b = end;
    }
    cut[0] = x0;
    cut[1] = a;
    cut[2] = b;
    cut[3] = end;
}

static void fill_constant(char *out, ptrdiff_t n, ptrdiff_t item, double cval)
{
    if (item == 1) memset(out, (int)(uint8_t)cval, (size_t)n);
    else if (item == 4) for (ptrdiff_t k = 0; k < n; k++) ((float *)out)[k] = (float)cval;
    else for (ptrdiff_t k = 0; k < n; k++) ((double *)out)[k] = cval;
}

static void copy_strided(char *out, const char *in, ptrdiff_t n, ptrdiff_t item, ptrdiff_t sx)
{
    if (sx == item && n * item >= 64) memcpy(out, in, (size_t)(n * item));
    else if (item == 4) for (ptrdiff_t k = 0; k < n; k++) ((float *)out)[k] = *(const float *)(in + k * sx);
    else if (item == 8) for (ptrdiff_t k = 0; k < n; k++) ((double *)out)[k] = *(const double *)(in + k * sx);
    else if (item == 1) for (ptrdiff_t k = 0; k < n; k++) out[k] = in[k * sx];
    else if (item == 4) for (ptrdiff_t k = 0; k < n; k++) memcpy(out + 4 * k, in + k * sx, 4);
    else for (ptrdiff_t k = 0; k < n; k++) memcpy(out + 8 * k, in + k * sx, 8);
}

/* n 8-bit samples `sx` bytes apart as floats (item 4) or doubles (item 8): exact. */
static void convert_strided(char *out, const char *in, ptrdiff_t n, ptrdiff_t item, ptrdiff_t sx)
{
    const uint8_t *u = (const uint8_t *)in;
    if (item == 4) {
        float *o = (float *)out;
        if (sx == 1) for (ptrdiff_t k = 0; k < n; k++) o[k] = (float)u[k];
        else for (ptrdiff_t k = 0; k < n; k++) o[k] = (float)u[k * sx];
    } else {
        double *o = (double *)out;
        if (sx == 1) for (ptrdiff_t k = 0; k < n; k++) o[k] = (double)u[k];
        else for (ptrdiff_t k = 0; k < n; k++) o[k] = (double)u[k * sx];
    }
}

/* Padded row p of channel c, columns x0 .. x0+len-1: a pointer to column x0. A copy goes to
 * ring bank `bank` (0, 2: a piece at the left, right border; 1: the middle or whole row). */
static inline const char *row_get(rowsrc_t *rs, ptrdiff_t c, ptrdiff_t p, ptrdiff_t x0,
                                  ptrdiff_t len, int bank)
{
    if (!rs->image) return rs->base + c * rs->sc + p * rs->sr + x0 * rs->item;
    const int64_t r = rs->row_map[p];
    const char *row = r >= 0 ? rs->base + c * rs->sc + (ptrdiff_t)r * rs->sr : NULL;
    if (row && x0 >= rs->in0 && x0 + len <= rs->in1)
        return row + (rs->in_src + x0 - rs->in0) * rs->src_item;
    const ptrdiff_t slot = p % rs->slots;
    int64_t *tag = rs->tags[bank] + 4 * slot;
    char *out = rs->ring[bank] + slot * rs->slot_bytes[bank];
    if (tag[0] == p && tag[1] == c && tag[2] == x0 && tag[3] == len) return out;
    if (!row) {
        fill_constant(out, len, rs->item, rs->cval);
    } else if (rs->src_item != rs->item && len <= 256 && rs->nruns > 8) {
        const int64_t *m = rs->col_map + x0;
        const ptrdiff_t sx = rs->sx;
        const uint8_t *u = (const uint8_t *)row;
        if (rs->item == 4)
            for (ptrdiff_t k = 0; k < len; k++)
                ((float *)out)[k] = m[k] < 0 ? (float)rs->cval : (float)u[m[k] * sx];
        else
            for (ptrdiff_t k = 0; k < len; k++)
                ((double *)out)[k] = m[k] < 0 ? rs->cval : (double)u[m[k] * sx];
    } else if (len <= 256 && rs->nruns > 8) {
        /* a few columns of many runs: through the column map (a few runs, as a mirrored
         * border, go by the runs below: memcpy; element by element was 5% of a 7x7's time) */
        const int64_t *m = rs->col_map + x0;
        const ptrdiff_t sx = rs->sx;
        if (rs->item == 1)
            for (ptrdiff_t k = 0; k < len; k++)
                out[k] = m[k] < 0 ? (char)(uint8_t)rs->cval : row[m[k] * sx];
        else if (rs->item == 4)
            for (ptrdiff_t k = 0; k < len; k++)
                ((float *)out)[k] = m[k] < 0 ? (float)rs->cval : *(const float *)(row + m[k] * sx);
        else
            for (ptrdiff_t k = 0; k < len; k++)
                ((double *)out)[k] = m[k] < 0 ? rs->cval : *(const double *)(row + m[k] * sx);
    } else {
        for (ptrdiff_t k = 0; k < rs->nruns; k++) {
            const run_t *u = rs->runs + k;
            const ptrdiff_t lo = u->x0 > x0 ? u->x0 : x0;
            const ptrdiff_t hi = u->x0 + u->len < x0 + len ? u->x0 + u->len : x0 + len;
            if (lo >= hi) continue;
            char *o = out + (lo - x0) * rs->item;
            const char *from = u->src < 0 ? NULL : row + (u->src + lo - u->x0) * rs->sx;
            if (!from) fill_constant(o, hi - lo, rs->item, rs->cval);
            else if (rs->src_item != rs->item) convert_strided(o, from, hi - lo, rs->item, rs->sx);
            else copy_strided(o, from, hi - lo, rs->item, rs->sx);
        }
    }
    tag[0] = p;
    tag[1] = c;
    tag[2] = x0;
    tag[3] = len;
    return out;
}

/* Box factors of 8-bit kernels (all ones) of at least this many taps are summed by running
 * sums down the rows and by doubling along them (exact integers: the same sums). */
#ifndef U8_BOX_MIN_TAPS
#define U8_BOX_MIN_TAPS 4
#endif
/* (the 8-bit kernels' chunk of outputs, I_CHUNK in _native_int.h) */
#define I_CHUNK_ALL 1024

/* ------------------------------------------------------------------------- SIMD levels */

/* Each level's kernels are the same source (_native_level.h) compiled for its instruction
 * set, with register blocks of its own register width: a generic vector of VEC_BYTES is one
 * register (64-byte vectors on AVX2 were pairs of ymm, and 8 accumulators of them with their
 * loads spilled: random 7x7 7.5x slower than on AVX-512, slower than the numpy engine).
 * F_VECS_*: the float blocks' accumulators, per level, by measurement (one process, one
 * thread, 2048x2048 float32, min of 15; 8 against 4): AVX-512 (32 zmm) 8, random 7x7 1.18x;
 * AVX2 and SSE2 (16 registers) 4, random 7x7 1.15x and 1.13x; the separable passes 0.97-1.07x
 * either way. Every level adds the same terms in the same order (no FMA): the same bits. */
#define CT_CAT_(a, b) a##b
#define CT_CAT(a, b) CT_CAT_(a, b)
#define L(name) CT_CAT(name, LEVEL)
#define F32(name) CT_CAT(name##_f32, LEVEL)
#define F64(name) CT_CAT(name##_f64, LEVEL)
#define U16(name) CT_CAT(name##_u16, LEVEL)
#define U32(name) CT_CAT(name##_u32, LEVEL)
/* the types every level shares (defined by the first level included) */
#define rtap_t_f32_base rtap_t_f32
#define rtap_t_f64_base rtap_t_f64
#define pass_t_f32_base pass_t_f32
#define pass_t_f64_base pass_t_f64
#define rtap_t_f32_v3 rtap_t_f32
#define rtap_t_f64_v3 rtap_t_f64
#define pass_t_f32_v3 pass_t_f32
#define pass_t_f64_v3 pass_t_f64
#define rtap_t_f32_v4 rtap_t_f32
#define rtap_t_f64_v4 rtap_t_f64
#define pass_t_f32_v4 pass_t_f32
#define pass_t_f64_v4 pass_t_f64

#ifndef F_VECS_BASE
#define F_VECS_BASE 4
#endif
#ifndef F_VECS_V3
#define F_VECS_V3 4
#endif
#ifndef F_VECS_V4
#define F_VECS_V4 8
#endif
/* bytes: at least every level's register block (F_SIDE in _native_float.h) */
#define F_SIDE_MOST (64 * F_VECS_V4 + 32 * F_VECS_V3 + 16 * F_VECS_BASE)

/* Streaming stores (F(stream) in _native_float.h): GCC's x86 builtins. */
#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__))
#define STREAMING 1
#else
#define STREAMING 0
#endif

/* Sums by doubling (doubling_run in _native_float.h) work on chunks of DOUBLING_CHUNK outputs
 * and keep one row of sums of 2^b samples for each b = 1 .. floor(log2 taps), so that the
 * output is one sweep over the rows its taps' binary digits name (and the whole chunk's rows
 * stay in L1). The scratch they need, in elements: */
#define DOUBLING_CHUNK 512
static inline ptrdiff_t doubling_levels(ptrdiff_t taps)
{
    ptrdiff_t top = 0;
    while (taps >> (top + 1)) top++;
    return top;
}
static inline ptrdiff_t doubling_level_len(ptrdiff_t taps, ptrdiff_t gap, ptrdiff_t step)
{
    return (step * (DOUBLING_CHUNK - 1) + 1 + taps * gap + 15) / 16 * 16;
}
static inline ptrdiff_t doubling_floats(ptrdiff_t taps, ptrdiff_t gap, ptrdiff_t step)
{
    return doubling_levels(taps) * doubling_level_len(taps, gap, step);
}

/* The baseline (or the one portable level): what the command line's flags give. 16-byte
 * vectors: SSE2's xmm, NEON's q registers. */
#define LEVEL _base
#define VEC_BYTES 16
#define F_VECS_N F_VECS_BASE
#define LEVEL_TYPES 1
#include "_native_level.h"
#undef LEVEL
#undef VEC_BYTES
#undef F_VECS_N
#undef LEVEL_TYPES

#if CLONES
#pragma GCC push_options
#pragma GCC target("arch=x86-64-v3")
#define LEVEL _v3
#define VEC_BYTES 32
#define F_VECS_N F_VECS_V3
#define LEVEL_TYPES 0
#include "_native_level.h"
#undef LEVEL
#undef VEC_BYTES
#undef F_VECS_N
#undef LEVEL_TYPES
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("arch=x86-64-v4")
#define LEVEL _v4
#define VEC_BYTES 64
#define F_VECS_N F_VECS_V4
#define LEVEL_TYPES 0
#include "_native_level.h"
#undef LEVEL
#undef VEC_BYTES
#undef F_VECS_N
#undef LEVEL_TYPES
#pragma GCC pop_options
#endif

/* The levels built, best first, and the one this process runs (chosen at module init). */
typedef struct {
    const char *name;     /* as select_level() and CONVTOOL_NATIVE_LEVEL take it */
    const char *simd;     /* in words, for reports */
    const char *needs;    /* what the CPU must have, in words */
    const kernels_t *kernels;
} level_t;

static const level_t levels[] = {
#if CLONES
    {"v4", "AVX-512, x86-64-v4", "AVX-512 F, BW, DQ and VL (x86-64-v4)", &kernels_v4},
    {"v3", "AVX2, x86-64-v3", "AVX2, FMA, BMI2 and the rest of x86-64-v3", &kernels_v3},
    {"baseline", "SSE2, x86-64 baseline", "nothing", &kernels_base},
#else
    {"baseline", "portable build, no runtime dispatch", "nothing", &kernels_base},
#endif
};
#define NLEVELS ((int)(sizeof levels / sizeof levels[0]))

static const kernels_t *kernels = &kernels_base;
static int level_chosen = NLEVELS - 1;

/* Whether this CPU (and its OS, which must save the wider registers: libgcc checks XGETBV)
 * runs level k. */
static int cpu_runs(int k)
{
#if CLONES
    __builtin_cpu_init();
    const int v3 = __builtin_cpu_supports("x86-64-v3") && __builtin_cpu_supports("avx2") &&
                   __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi2");
    if (k == 0)
        return v3 && __builtin_cpu_supports("x86-64-v4") && __builtin_cpu_supports("avx512f") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx512vl");
    if (k == 1) return v3;
#endif
    return 1;
}

/* ------------------------------------------------------------------------- tap lists */

static void single_tap(tap_t *t, ptrdiff_t o, int r, double w)
{
    t->o1 = t->o2 = o;
    t->r1 = t->r2 = r;
    t->w = w;
    t->iw = (int32_t)w;
    t->kind = w == 1 ? TAP_ONE : w == -1 ? TAP_NEG : TAP_MUL;
}

/* The terms of weights w[0..n-1] read at column offsets off[f] of rows rix[f]: zero weights
 * skipped, and mirror taps f and n-1-f folded when their weights are equal or opposite.
 * Returns the number of terms (at most n) in `out`, in a fixed order. */
static int build_taps(const double *w, ptrdiff_t n, const ptrdiff_t *off, const int *rix,
                      tap_t *out)
{
    int count = 0;
    for (ptrdiff_t f = 0; f < n - 1 - f; f++) {
        const ptrdiff_t g = n - 1 - f;
        const double a = w[f], b = w[g];
        tap_t *t = out + count;
        if (a == 0 && b == 0) continue;
        if (a == b) {
            t->o1 = off[f];
            t->o2 = off[g];
            t->r1 = rix[f];
            t->r2 = rix[g];
            t->w = a;
            t->iw = (int32_t)a;
            t->kind = a == 1 ? TAP_PAIR1 : a == -1 ? TAP_PAIRNEG : TAP_PAIR;
            count++;
        } else if (a == -b) { /* a*x[f] + b*x[g] = a*(x[f] - x[g]) */
            const int flip = a == -1;
            t->o1 = flip ? off[g] : off[f];
            t->o2 = flip ? off[f] : off[g];
            t->r1 = flip ? rix[g] : rix[f];
            t->r2 = flip ? rix[f] : rix[g];
            t->w = flip ? 1 : a;
            t->iw = (int32_t)t->w;
            t->kind = (a == 1 || a == -1) ? TAP_DIFF1 : TAP_DIFF;
            count++;
        } else {
            if (a != 0) single_tap(out + count++, off[f], rix[f], a);
            if (b != 0) single_tap(out + count++, off[g], rix[g], b);
        }
    }
    if (n % 2 == 1 && w[n / 2] != 0)
        single_tap(out + count++, off[n / 2], rix[n / 2], w[n / 2]);
    return count;
}

static int all_equal(const double *w, ptrdiff_t n)
{
    for (ptrdiff_t i = 1; i < n; i++)
        if (w[i] != w[0]) return 0;
    return w[0] != 0;
}

/* ------------------------------------------------------------------------- arguments */

typedef struct {
    Py_buffer view;
    int held;
    char kind;              /* 'f' float32, 'd' float64, 'B' uint8, 'i' int32, 'q' int64 */
    Py_ssize_t c, r, w;     /* channels, rows, columns */
    Py_ssize_t sc, sr, sx;  /* strides in items */
} array_t;

static void release(array_t *a)
{
    if (a->held) PyBuffer_Release(&a->view);
    a->held = 0;
}

static char format_kind(const char *format)
{
    if (format == NULL) return 'B';
    if (*format == '@' || *format == '=' || *format == '<') format++;
    if (format[0] && !format[1]) {
        switch (format[0]) {
        case 'f': return 'f';
        case 'd': return 'd';
        case 'B': return 'B';
        case 'i': case 'l':
            return 'i';
        }
    }
    return 0;
}

/* Fill `a` from an object with 1 to 3 dimensions (1: one row, 2: one channel). Strides:
 * positive, unit along columns; with `any_strides` (an image read through padding maps)
 * any whole items, of either sign. */
static int get_array_strides(PyObject *obj, array_t *a, int writable, const char *name,
                             int any_strides)
{
    memset(a, 0, sizeof(*a));
    int flags = PyBUF_STRIDES | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, &a->view, flags) < 0) return -1;
    a->held = 1;
    Py_buffer *v = &a->view;
    a->kind = format_kind(v->format);
    if (a->kind == 'i' && v->itemsize == 8) a->kind = 'q';
    if (!a->kind || (a->kind == 'i' && v->itemsize != 4)) {
        PyErr_Format(PyExc_TypeError, "%s: unsupported item format '%s'", name, v->format);
        return -1;
    }
    if (v->ndim < 1 || v->ndim > 3) {
        PyErr_Format(PyExc_ValueError, "%s: expected 1 to 3 dimensions, got %d", name, v->ndim);
        return -1;
    }
    Py_ssize_t shape[3] = {1, 1, 1}, strides[3] = {0, 0, 0};
    for (int i = 0; i < v->ndim; i++) {
        shape[3 - v->ndim + i] = v->shape[i];
        strides[3 - v->ndim + i] = v->shape[i] > 1 ? v->strides[i] : 0;
    }
    if (any_strides) {
        if ((uintptr_t)v->buf % (uintptr_t)v->itemsize || strides[0] % v->itemsize ||
            strides[1] % v->itemsize || strides[2] % v->itemsize) {
            PyErr_Format(PyExc_ValueError, "%s: samples must be aligned, strides whole items",
                         name);
            return -1;
        }
        for (int i = 0; i < 3; i++)
            if (shape[i] < 0) {
                PyErr_Format(PyExc_ValueError, "%s: negative shape", name);
                return -1;
            }
    } else if (shape[2] > 1 && strides[2] != v->itemsize) {
        PyErr_Format(PyExc_ValueError, "%s: columns must be contiguous", name);
        return -1;
    }
    for (int i = 0; i < 2 && !any_strides; i++)
        if (strides[i] % v->itemsize || (shape[i] > 1 && strides[i] <= 0)) {
            PyErr_Format(PyExc_ValueError, "%s: strides must be positive whole items", name);
            return -1;
        }
    a->c = shape[0];
    a->r = shape[1];
    a->w = shape[2];
    a->sc = strides[0] / v->itemsize;
    a->sr = strides[1] / v->itemsize;
    a->sx = strides[2] / v->itemsize;
    if (!any_strides) a->sx = 1;
    return 0;
}

static int get_array(PyObject *obj, array_t *a, int writable, const char *name)
{
    return get_array_strides(obj, a, writable, name, 0);
}

typedef struct {
    Py_ssize_t row_step, row_gap, col_step, col_gap, col_first;
} geometry_t;

/* Check that outputs (nr, nc) of a kh x kw kernel stay inside src (its padded rows and
 * columns: src->r, src->w), channels matching. */
static int check_geometry(const array_t *src, const array_t *dst, Py_ssize_t kh, Py_ssize_t kw,
                          const geometry_t *g)
{
    if (g->row_step < 1 || g->col_step < 1 || g->row_gap < 1 || g->col_gap < 1 ||
        g->col_first < 0) {
        PyErr_SetString(PyExc_ValueError, "steps and gaps must be >= 1, col_first >= 0");
        return -1;
    }
    if (src->c != dst->c) {
        PyErr_Format(PyExc_ValueError, "channels differ: src %zd, dst %zd", src->c, dst->c);
        return -1;
    }
    if (dst->r < 1 || dst->w < 1 || kh < 1 || kw < 1) {
        PyErr_SetString(PyExc_ValueError, "empty output or kernel");
        return -1;
    }
    Py_ssize_t rows = g->row_step * (dst->r - 1) + (kh - 1) * g->row_gap + 1;
    Py_ssize_t cols = g->col_first + g->col_step * (dst->w - 1) + (kw - 1) * g->col_gap + 1;
    if (rows > src->r || cols > src->w) {
        PyErr_Format(PyExc_ValueError,
                     "src too small: the outputs read %zd rows x %zd columns, src has %zd x %zd",
                     rows, cols, src->r, src->w);
        return -1;
    }
    return 0;
}

/* A 1-D or 2-D weight array as float64 values (from float64 or int32 items). */
static double *weights_of(const array_t *a, Py_ssize_t *n)
{
    *n = a->c * a->r * a->w;
    if (a->c != 1 || (a->r > 1 && a->sr != a->w)) {
        PyErr_SetString(PyExc_ValueError, "weights must be a C-contiguous 1-D or 2-D array");
        return NULL;
    }
    double *w = PyMem_Malloc(sizeof(double) * (*n > 0 ? *n : 1));
    if (!w) return (double *)PyErr_NoMemory();
    for (Py_ssize_t i = 0; i < *n; i++) {
        if (a->kind == 'd') w[i] = ((const double *)a->view.buf)[i];
        else if (a->kind == 'i') w[i] = ((const int32_t *)a->view.buf)[i];
        else {
            PyMem_Free(w);
            PyErr_SetString(PyExc_TypeError, "weights must be float64 (or int32 for 8-bit)");
            return NULL;
        }
    }
    return w;
}

static void *aligned(size_t bytes)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64)) return NULL;
    return p;
}

/* ------------------------------------------------------------------------- sources */

/* The rows a kernel reads (see rowsrc_t): `src` itself, a padded band; or, given row_map
 * and col_map (1-D int64: the source row of each padded row and the source column of each
 * padded column, -1 for the constant cval), the unpadded image. `shape` then gets the
 * padded rows and columns (what the geometry is checked against) and `src` keeps the
 * image's. Every map entry is checked to lie inside the image. */
typedef struct {
    array_t src, rm, cm;
    array_t shape;        /* channels, padded rows and columns (only c, r, w are set) */
    run_t *runs;
    char *ring[3];
    int64_t *tags[3];
    rowsrc_t rs;
} source_t;

static void source_free(source_t *so)
{
    release(&so->src);
    release(&so->rm);
    release(&so->cm);
    PyMem_Free(so->runs);
    so->runs = NULL;
    for (int b = 0; b < 3; b++) {
        free(so->ring[b]);
        PyMem_Free(so->tags[b]);
        so->ring[b] = NULL;
        so->tags[b] = NULL;
    }
}

/* A padding map: 1-D int64; with `check`, every entry in -1 .. limit-1 (else the caller
 * checks them). */
static int map_of(PyObject *obj, array_t *a, Py_ssize_t limit, const char *name, int check)
{
    if (get_array(obj, a, 0, name) < 0) return -1;
    if (a->kind != 'q' || a->c != 1 || a->r != 1) {
        PyErr_Format(PyExc_TypeError, "%s: a 1-D int64 array expected", name);
        return -1;
    }
    const int64_t *m = a->view.buf;
    for (Py_ssize_t k = 0; k < a->w && check; k++)
        if (m[k] < -1 || m[k] >= limit) {
            PyErr_Format(PyExc_ValueError, "%s[%zd] = %lld is outside -1..%zd", name, k,
                         (long long)m[k], limit - 1);
            return -1;
        }
    return 0;
}

/* `ring_item`: bytes per sample the kernels read, when they differ from the source's (8-bit
 * samples read as floats: only from the image, through the maps); 0: the source's. */
static int source_open(source_t *so, PyObject *o_src, PyObject *o_rows, PyObject *o_cols,
                       double cval, ptrdiff_t ring_item)
{
    memset(so, 0, sizeof(*so));
    const int image = o_rows != Py_None || o_cols != Py_None;
    if (image && (o_rows == Py_None || o_cols == Py_None)) {
        PyErr_SetString(PyExc_ValueError, "row_map and col_map go together");
        return -1;
    }
    if (get_array_strides(o_src, &so->src, 0, "src", image) < 0) return -1;
    const array_t *a = &so->src;
    const ptrdiff_t item = a->view.itemsize;
    so->shape.c = a->c;
    so->shape.r = a->r;
    so->shape.w = a->w;
    rowsrc_t *rs = &so->rs;
    rs->image = image;
    rs->src_item = item;
    rs->item = ring_item ? ring_item : item;
    if (rs->item != item && (!image || item != 1)) {
        PyErr_SetString(PyExc_TypeError,
                        "8-bit samples are read as floats only from the image (row_map, col_map)");
        return -1;
    }
    rs->base = a->view.buf;
    rs->sc = a->sc * item;
    rs->sr = a->sr * item;
    rs->sx = a->sx * item;
    rs->cval = cval;
    rs->in0 = 0;
    rs->in1 = PTRDIFF_MAX;
    if (!image) return 0;
    rs->in1 = 0;
    if (map_of(o_rows, &so->rm, a->r, "row_map", 1) < 0 ||
        map_of(o_cols, &so->cm, a->w, "col_map", 0) < 0)
        return -1;
    so->shape.r = so->rm.w;
    so->shape.w = so->cm.w;
    const int64_t *cm = so->cm.view.buf;
    const Py_ssize_t n = so->cm.w;
    if (!(so->runs = PyMem_Malloc(sizeof(run_t) * (n > 0 ? n : 1)))) {
        PyErr_NoMemory();
        return -1;
    }
    /* The runs of the column map: constants (-1), or source columns one apart. Each entry is
     * checked on the way: a run of consecutive columns lies inside the image when its first
     * and last do (a band's call costs ~1 ns per column this way, not ~2). */
    ptrdiff_t count = 0;
    for (Py_ssize_t x = 0; x < n;) {
        const int64_t v = cm[x];
        Py_ssize_t e = x + 1;
        if (v == -1)
            while (e < n && cm[e] == -1) e++;
        else
            while (e < n && cm[e] == v + (e - x)) e++;
        const Py_ssize_t bad = v < -1 || v >= a->w ? x : v >= 0 && v + (e - 1 - x) >= a->w ? e - 1 : -1;
        if (bad >= 0) {
            PyErr_Format(PyExc_ValueError, "col_map[%zd] = %lld is outside -1..%zd", bad,
                         (long long)cm[bad], a->w - 1);
            return -1;
        }
        so->runs[count++] = (run_t){x, e - x, v};
        x = e;
    }
    rs->row_map = so->rm.view.buf;
    rs->col_map = cm;
    rs->runs = so->runs;
    rs->nruns = count;
    if (rs->sx == item && rs->item == item) /* the longest run of source columns is read in place */
        for (ptrdiff_t k = 0; k < count; k++)
            if (so->runs[k].src >= 0 && so->runs[k].len > rs->in1 - rs->in0) {
                rs->in0 = so->runs[k].x0;
                rs->in1 = so->runs[k].x0 + so->runs[k].len;
                rs->in_src = so->runs[k].src;
            }
    return 0;
}

/* The ring of an image source (nothing for a band): `slots` rows in each bank, of the
 * columns x0 .. x0+width-1 a row reads (bank 1) and of the pieces of padding at either
 * side plus `reach` columns (banks 0 and 2: what the outputs next to the border read). */
static int source_ring(source_t *so, Py_ssize_t slots, Py_ssize_t at_once, Py_ssize_t x0,
                       Py_ssize_t width, Py_ssize_t reach)
{
    rowsrc_t *rs = &so->rs;
    if (!rs->image) return 0;
    /* More than 8 rows read at once whose stride is close to a multiple of 4 KiB (1024, 2048,
     * 4096 floats...) fall in the same sets of an 8-way L1 and evict each other: such rows
     * are copied (the ring's rows are spaced otherwise). Measured: a 31-row column pass on
     * 2048-wide float32 rows in place 1.55x the time of the same on copied rows. */
    const ptrdiff_t near = ((rs->sr % 4096) + 4096) % 4096;
    if (at_once > 8 && (near < 512 || near > 4096 - 512)) rs->in0 = rs->in1 = 0;
    ptrdiff_t cut[4];
    cut_columns(rs, x0, width, cut);
    Py_ssize_t side = cut[1] - cut[0] > cut[3] - cut[2] ? cut[1] - cut[0] : cut[3] - cut[2];
    side = side + reach > width ? width : side + reach;
    if (rs->in1 <= rs->in0) side = 1; /* (banks 0 and 2 unused) */
    const Py_ssize_t widths[3] = {side, width, side};
    slots = slots < 1 ? 1 : slots;
    rs->slots = slots;
    for (int b = 0; b < 3; b++) {
        rs->slot_bytes[b] = (widths[b] * rs->item + 63) / 64 * 64;
        if (rs->slot_bytes[b] % 4096 < 512 || rs->slot_bytes[b] % 4096 > 4096 - 512)
            rs->slot_bytes[b] += 640; /* (not a stride close to a multiple of 4 KiB: see above) */
        so->ring[b] = aligned((size_t)(slots * rs->slot_bytes[b]));
        so->tags[b] = PyMem_Malloc(sizeof(int64_t) * 4 * slots);
        if (!so->ring[b] || !so->tags[b]) {
            PyErr_NoMemory();
            return -1;
        }
        for (Py_ssize_t k = 0; k < 4 * slots; k++) so->tags[b][k] = -1;
        rs->ring[b] = so->ring[b];
        rs->tags[b] = so->tags[b];
    }
    return 0;
}

/* The source of a float kernel (see source_open) and `kind`, the float type its samples are
 * summed in ('f', 'd'): `real` if given, else the float array's (src's, then dst's). src
 * and dst are each of that type or uint8 (8-bit samples read through the maps, converted as
 * each row is copied; 8-bit outputs rounded as they are stored). */
static int open_float_source(source_t *so, PyObject *o_src, PyObject *o_rows, PyObject *o_cols,
                             double cval, const array_t *dst, int real, char *kind)
{
    memset(so, 0, sizeof(*so));
    *kind = (char)real;
    if (!*kind) {
        array_t peek;
        memset(&peek, 0, sizeof peek);
        if (get_array_strides(o_src, &peek, 0, "src", 1) < 0) return -1;
        *kind = peek.kind != 'B' ? peek.kind : dst->kind;
        release(&peek);
    }
    if (*kind != 'f' && *kind != 'd') {
        PyErr_SetString(PyExc_TypeError,
                        "src and dst must be float32 or float64 (or uint8, with real 'f' or 'd')");
        return -1;
    }
    if (source_open(so, o_src, o_rows, o_cols, cval, *kind == 'f' ? 4 : 8) < 0) return -1;
    const char s = so->src.kind, d = dst->kind;
    if ((s != *kind && s != 'B') || (d != *kind && d != 'B')) {
        PyErr_Format(PyExc_TypeError,
                     "src and dst must be %s or uint8", *kind == 'f' ? "float32" : "float64");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------- completion counts */

/* A call's completion, counted without the GIL: the band functions take done= (a writable
 * int64 array; its first item is incremented once the call's outputs are all stored), and
 * await_count() spins on it, also without the GIL. The thread that ran out of bands then
 * sees the last band of another thread end at once, instead of being woken from a lock by
 * a thread that first had to take the GIL back: 0.1-0.3 ms of a 1.3 ms call on this kind of
 * VM, where waking a sleeping CPU costs that much (see ARCHITECTURE.md). */
typedef struct {
    array_t a;
    int64_t *p;
} counter_t;

static int get_counter(PyObject *obj, counter_t *c)
{
    memset(c, 0, sizeof(*c));
    if (obj == Py_None) return 0;
    if (get_array(obj, &c->a, 1, "done") < 0) return -1;
    if (c->a.kind != 'q' || (uintptr_t)c->a.view.buf % 8 || c->a.view.len < 8) {
        PyErr_SetString(PyExc_TypeError, "done must be a writable, aligned int64 array");
        return -1;
    }
    c->p = (int64_t *)c->a.view.buf;
    return 0;
}

/* (without the GIL; after the call's stores, streamed ones included: the locked add is a
 * full barrier on x86, and __ATOMIC_SEQ_CST orders them on the others) */
static void count_done(const counter_t *c)
{
    if (c->p) __atomic_fetch_add(c->p, 1, __ATOMIC_SEQ_CST);
}

static void release_counter(counter_t *c)
{
    release(&c->a);
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

#if defined(_WIN32)
static double monotonic_seconds(void)
{
    LARGE_INTEGER frequency, now;
    QueryPerformanceFrequency(&frequency);
    QueryPerformanceCounter(&now);
    return (double)now.QuadPart / (double)frequency.QuadPart;
}

static void yield_cpu(void)
{
    SwitchToThread();
}
#else
static double monotonic_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* On a machine with more runnable threads than CPUs, the thread being waited for may be
 * waiting for this very CPU: yielding lets it run (spinning alone kept it off for a whole
 * time slice on a 2-CPU machine under a load of 3). */
static void yield_cpu(void)
{
    sched_yield();
}
#endif

PyDoc_STRVAR(await_count_doc,
"await_count(counts, target, seconds) -> bool\n--\n\n"
"Spin, without the GIL, until counts[0] (an int64 array of 3 the band functions count their\n"
"calls in, as done=) reaches target and counts[1] == counts[2] (the threads that entered the\n"
"work and those that left it: no thread is still in it): True; or False once `seconds`\n"
"have passed.");

static PyObject *await_count(PyObject *self, PyObject *args)
{
    PyObject *o;
    Py_ssize_t target;
    double seconds;
    if (!PyArg_ParseTuple(args, "Ond", &o, &target, &seconds)) return NULL;
    counter_t c;
    if (get_counter(o, &c) < 0 || !c.p || c.a.view.len < 3 * 8) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "counts must be an int64 array of 3");
        release_counter(&c);
        return NULL;
    }
    int reached = 0;
    Py_BEGIN_ALLOW_THREADS
    const double deadline = monotonic_seconds() + seconds;
    for (unsigned spins = 1;; spins++) {
        if (__atomic_load_n(c.p, __ATOMIC_ACQUIRE) >= target &&
            __atomic_load_n(c.p + 1, __ATOMIC_ACQUIRE) == __atomic_load_n(c.p + 2, __ATOMIC_ACQUIRE)) {
            reached = 1;
            break;
        }
        cpu_relax();
        if (spins % 64 == 0) {
            if (monotonic_seconds() >= deadline) break;
            yield_cpu();
        }
    }
    Py_END_ALLOW_THREADS
    release_counter(&c);
    return PyBool_FromLong(reached);
}

/* ------------------------------------------------------------------------- direct */

static const char *direct_kwlist[] = {"src", "dst", "weights", "row_step", "row_gap",
                                      "col_step", "col_gap", "col_first", "row_map",
                                      "col_map", "cval", "stream", "done", "real", NULL};

#define MAPS_DOC                                                                              \
    "row_map, col_map (1-D int64, both or neither): src is then the unpadded image, any\n"    \
    "strides, and padded row p (column x) reads its row row_map[p] (column col_map[x]), or\n" \
    "cval where the map holds -1; the geometry is in padded rows and columns. Each padded\n" \
    "row is copied once into a small ring of rows (pads filled from the maps), or read in\n" \
    "place when the columns read need no padding."

PyDoc_STRVAR(correlate_direct_doc,
"correlate_direct(src, dst, weights, row_step, row_gap, col_step, col_gap, col_first,\n"
"                 row_map=None, col_map=None, cval=0.0, stream=False, done=None,\n"
"                 real=None)\n--\n\n"
"dst[c, j, i] = sum_ab weights[a, b] * src[c, row_step*j + a*row_gap,\n"
"col_first + col_step*i + b*col_gap], computed in float32 or float64 (real: 'f' or 'd', by\n"
"default the float array's dtype); src and dst each of that type or uint8: uint8 src (read\n"
"through the maps) is converted as its rows are copied, uint8 dst gets the results rounded\n"
"half to even and clipped to 0..255 (a NaN: 0), never streamed. weights: float64 (kh, kw),\n"
"C-contiguous. Zero weights are skipped; mirror\n"
"weights (w[a,b] = +-w[-a,-b]) are folded. stream: store the outputs without reading\n"
"their lines into the cache (for outputs much larger than it; info()['streaming'] says\n"
"whether this build can: else ignored). Releases the GIL.\n" MAPS_DOC);

/* Offsets and rows of a kh x kw kernel's taps: row a, column b*col_gap. */
static int kernel_taps(const double *w, Py_ssize_t kh, Py_ssize_t kwid, Py_ssize_t col_gap,
                       tap_t **taps, int *ntaps)
{
    const Py_ssize_t n = kh * kwid;
    ptrdiff_t *off = PyMem_Malloc(sizeof(ptrdiff_t) * (n > 0 ? n : 1));
    int *rix = PyMem_Malloc(sizeof(int) * (n > 0 ? n : 1));
    *taps = PyMem_Malloc(sizeof(tap_t) * (n > 0 ? n : 1));
    if (!off || !rix || !*taps) {
        PyMem_Free(off);
        PyMem_Free(rix);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t a = 0; a < kh; a++)
        for (Py_ssize_t b = 0; b < kwid; b++) {
            off[a * kwid + b] = b * col_gap;
            rix[a * kwid + b] = (int)a;
        }
    *ntaps = build_taps(w, n, off, rix, *taps);
    PyMem_Free(off);
    PyMem_Free(rix);
    return 0;
}

static int term_kind(double w)
{
    return w == 0 ? T_SKIP : w == 1 ? T_ADD : w == -1 ? T_SUB : T_MUL;
}

/* The groups and terms of a kh x kw kernel for the row pairs (see pairs_t); columns b*col_gap.
 * A group whose weights are zero in every row is left out. -1: no memory. */
static int pairs_plan(const double *w, Py_ssize_t kh, Py_ssize_t kwid, Py_ssize_t col_gap,
                      pairs_t *pp, group_t **groups, gterm_t **terms)
{
    const Py_ssize_t most = kwid / 2 + kwid % 2;
    *groups = PyMem_Malloc(sizeof(group_t) * (most > 0 ? most : 1));
    *terms = PyMem_Malloc(sizeof(gterm_t) * (kh * most > 0 ? kh * most : 1));
    Py_ssize_t *first = PyMem_Malloc(sizeof(Py_ssize_t) * (most > 0 ? most : 1));
    if (!*groups || !*terms || !first) {
        PyMem_Free(first);
        PyErr_NoMemory();
        return -1;
    }
    int ng = 0;
    for (Py_ssize_t b = 0; b < most; b++) {
        const Py_ssize_t b2 = kwid - 1 - b;
        int sym = 1, anti = 1, used = 0;
        for (Py_ssize_t a = 0; a < kh; a++) {
            const double x = w[a * kwid + b], y = w[a * kwid + b2];
            if (x == 0 && y == 0) continue;
            used = 1;
            sym &= x == y;
            anti &= x == -y;
        }
        if (!used) continue;
        group_t *gr = *groups + ng;
        gr->o1 = b * col_gap;
        gr->o2 = b2 * col_gap;
        gr->kind = b == b2 ? G_ONE : sym ? G_SUM : anti ? G_DIFF : G_TWO;
        first[ng++] = b;
    }
    for (Py_ssize_t a = 0; a < kh; a++)
        for (int g = 0; g < ng; g++) {
            const Py_ssize_t b = first[g];
            const double x = w[a * kwid + b], y = w[a * kwid + kwid - 1 - b];
            gterm_t *t = *terms + a * ng + g;
            t->k1 = term_kind(x);
            t->w1 = x;
            /* SUM, DIFF: x*v1 + y*v2 = x*(v1 +- v2); TWO: the second product on its own */
            t->k2 = (*groups)[g].kind == G_TWO ? term_kind(y) : T_SKIP;
            t->w2 = y;
        }
    PyMem_Free(first);
    pp->ngroups = ng;
    pp->groups = *groups;
    pp->terms = *terms;
    return 0;
}

/* The columns one output row reads: from col_first, this many. */
static Py_ssize_t read_width(const array_t *dst, Py_ssize_t kw, const geometry_t *g)
{
    return g->col_step * (dst->w - 1) + (kw - 1) * g->col_gap + 1;
}

static PyObject *correlate_direct(PyObject *self, PyObject *args, PyObject *kw)
{
    PyObject *o_src, *o_dst, *o_w, *o_rows = Py_None, *o_cols = Py_None;
    geometry_t g;
    double cval = 0;
    int stream = 0, real = 0;
    PyObject *o_done = Py_None;
    counter_t counter;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOnnnnn|OOdpOC", (char **)direct_kwlist, &o_src,
                                     &o_dst, &o_w, &g.row_step, &g.row_gap, &g.col_step,
                                     &g.col_gap, &g.col_first, &o_rows, &o_cols, &cval, &stream,
                                     &o_done, &real))
        return NULL;
    if (get_counter(o_done, &counter) < 0) {
        release_counter(&counter);
        return NULL;
    }
    source_t so;
    array_t dst, wa;
    double *w = NULL;
    tap_t *taps = NULL;
    group_t *groups = NULL;
    gterm_t *gterms = NULL;
    const void **rows = NULL;
    void *rt = NULL, *tmp = NULL;
    PyObject *result = NULL;
    char kind;
    memset(&dst, 0, sizeof dst);
    memset(&wa, 0, sizeof wa);
    memset(&so, 0, sizeof so);
    if (get_array(o_dst, &dst, 1, "dst") < 0 || get_array(o_w, &wa, 0, "weights") < 0 ||
        open_float_source(&so, o_src, o_rows, o_cols, cval, &dst, real, &kind) < 0)
        goto done;
    /* 8-bit outputs: a row pair's results in floats first, stored rounded (never streamed) */
    uint8_t *d8 = dst.kind == 'B' ? (uint8_t *)dst.view.buf : NULL;
    stream = stream && !d8;
    if (d8 && !(tmp = aligned(2 * dst.w * (kind == 'f' ? 4 : 8)))) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t n, kh = wa.r, kwid = wa.w;
    if (!(w = weights_of(&wa, &n)) || check_geometry(&so.shape, &dst, kh, kwid, &g) < 0)
        goto done;
    int ntaps;
    const Py_ssize_t width = read_width(&dst, kwid, &g);
    /* Rows in pairs where the steps are 1 and the rows undilated (see pairs_t) */
    pairs_t pairs, *pp = NULL;
#ifdef HAVE_VECTOR_TYPES
    if (g.row_step == 1 && g.col_step == 1 && g.row_gap == 1 && kh >= 2) {
        if (pairs_plan(w, kh, kwid, g.col_gap, &pairs, &groups, &gterms) < 0) goto done;
        /* (an all-zero kernel: the taps' sweep writes +0, as the numpy engine does; a
         * pair's empty sum would be the -0 its blocks start from) */
        pp = pairs.ngroups > 0 ? &pairs : NULL;
    }
#endif
    if (kernel_taps(w, kh, kwid, g.col_gap, &taps, &ntaps) < 0 ||
        source_ring(&so, (kh - 1) * g.row_gap + 1 + (pp != NULL), kh, g.col_first, width,
                    (kwid - 1) * g.col_gap + 1 + g.col_step * (1 + F_SIDE_MOST / (kind == 'f' ? 4 : 8))) < 0)
        goto done;
    if (!(rows = PyMem_Malloc(sizeof(void *) * (kh + 1))) ||
        !(rt = PyMem_Malloc(sizeof(rtap_t_f64) * (ntaps + 1)))) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    if (kind == 'f')
        kernels->direct_band_f32(&so.rs, g.col_first, width, d8 ? NULL : (float *)dst.view.buf,
                                 dst.sc, dst.sr, dst.c, dst.r, dst.w, g.row_step, g.col_step, kh,
                                 g.row_gap, taps, ntaps, (const float **)rows, (rtap_t_f32 *)rt,
                                 pp, stream, d8, tmp);
    else
        kernels->direct_band_f64(&so.rs, g.col_first, width, d8 ? NULL : (double *)dst.view.buf,
                                 dst.sc, dst.sr, dst.c, dst.r, dst.w, g.row_step, g.col_step, kh,
                                 g.row_gap, taps, ntaps, (const double **)rows, (rtap_t_f64 *)rt,
                                 pp, stream, d8, tmp);
    count_done(&counter);
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    release_counter(&counter);
    PyMem_Free(w);
    PyMem_Free(groups);
    PyMem_Free(gterms);
    PyMem_Free(taps);
    PyMem_Free(rows);
    PyMem_Free(rt);
    free(tmp);
    source_free(&so);
    release(&dst);
    release(&wa);
    return result;
}

/* ------------------------------------------------------------------------- separable */

/* One factor's taps (offsets `unit` elements apart, `gap` taps apart) and how it is summed. */
typedef struct {
    tap_t *taps;
    int ntaps;
    double scale;
    Py_ssize_t count, gap;
    int mode;
} factor_t;

static int make_factor(factor_t *f, const double *w, Py_ssize_t n, int vertical,
                       Py_ssize_t gap, int sums_mode, int sums_ok)
{
    memset(f, 0, sizeof(*f));
    f->count = n;
    f->gap = gap;
    f->scale = 1;
    f->taps = PyMem_Malloc(sizeof(tap_t) * (n > 0 ? n : 1));
    ptrdiff_t *off = PyMem_Malloc(sizeof(ptrdiff_t) * (n > 0 ? n : 1));
    double *ones = PyMem_Malloc(sizeof(double) * (n > 0 ? n : 1));
    int *rix = PyMem_Malloc(sizeof(int) * (n > 0 ? n : 1));
    if (!f->taps || !off || !ones || !rix) {
        PyMem_Free(off);
        PyMem_Free(ones);
        PyMem_Free(rix);
        PyErr_NoMemory();
        return -1;
    }
    /* a column factor's tap t reads row t (of the rows gap apart), a row factor's column t*gap */
    for (Py_ssize_t t = 0; t < n; t++) {
        off[t] = vertical ? 0 : t * gap;
        rix[t] = vertical ? (int)t : 0;
    }
    if (n > 1 && all_equal(w, n)) { /* a box: sum, then one multiply */
        for (Py_ssize_t t = 0; t < n; t++) ones[t] = 1;
        f->scale = w[0];
        f->ntaps = build_taps(ones, n, off, rix, f->taps);
        if (sums_ok && (sums_mode == 1 || (sums_mode < 0 && n >= sums_ok))) f->mode = 1;
    } else {
        f->ntaps = build_taps(w, n, off, rix, f->taps);
    }
    PyMem_Free(off);
    PyMem_Free(ones);
    PyMem_Free(rix);
    return 0;
}

static const char *separable_kwlist[] = {"src", "dst", "column", "row", "row_step", "row_gap",
                                         "col_step", "col_gap", "col_first", "row_origin",
                                         "sums", "row_map", "col_map", "cval", "done", "real",
                                         NULL};

PyDoc_STRVAR(correlate_separable_doc,
"correlate_separable(src, dst, column, row, row_step, row_gap, col_step, col_gap, col_first,\n"
"                    row_origin=0, sums=-1, row_map=None, col_map=None, cval=0.0)\n--\n\n"
"As correlate_direct with weights = outer(column, row) (float64 1-D factors), fused per\n"
"output row: the column pass fills a row buffer, the row pass reads it. A box factor (all\n"
"taps equal) is summed and multiplied once; from 8 taps on (sums=-1; 1: always, 0: never)\n"
"by running sums down the rows (needs row_gap 1) and doubling along them. row_origin: the\n"
"row of the padded image that src row 0 is, so that running sums give the same bits however\n"
"the image is cut into bands. 8-bit samples: src uint8 (read through the maps) is summed in\n"
"floats; dst uint8 gets the results rounded half to even and clipped to 0..255, as a float\n"
"result rounded and cast would (a NaN: 0); real ('f' float32, 'd' float64) is what they are\n"
"summed in, by default the float array's dtype. Releases the GIL.\n" MAPS_DOC);

static PyObject *correlate_separable(PyObject *self, PyObject *args, PyObject *kw)
{
    PyObject *o_src, *o_dst, *o_col, *o_row, *o_rows = Py_None, *o_cols = Py_None;
    geometry_t g;
    Py_ssize_t origin = 0;
    int sums = -1;
    double cval = 0;
    PyObject *o_done = Py_None;
    int real = 0;
    counter_t counter;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOnnnnn|niOOdOC", (char **)separable_kwlist,
                                     &o_src, &o_dst, &o_col, &o_row, &g.row_step, &g.row_gap,
                                     &g.col_step, &g.col_gap, &g.col_first, &origin, &sums,
                                     &o_rows, &o_cols, &cval, &o_done, &real))
        return NULL;
    if (get_counter(o_done, &counter) < 0) {
        release_counter(&counter);
        return NULL;
    }
    source_t so;
    array_t dst, ca, ra;
    const void **rows = NULL;
    void *rt = NULL;
    memset(&dst, 0, sizeof dst);
    memset(&ca, 0, sizeof ca);
    memset(&ra, 0, sizeof ra);
    double *cw = NULL, *rw = NULL;
    factor_t v = {0}, h = {0};
    void *work = NULL, *tmp = NULL;
    PyObject *result = NULL;
    memset(&so, 0, sizeof so);
    if (get_array(o_dst, &dst, 1, "dst") < 0 || get_array(o_col, &ca, 0, "column") < 0 ||
        get_array(o_row, &ra, 0, "row") < 0)
        goto done;
    char kind;
    if (open_float_source(&so, o_src, o_rows, o_cols, cval, &dst, real, &kind) < 0) goto done;
    Py_ssize_t kh, kwid;
    if (!(cw = weights_of(&ca, &kh)) || !(rw = weights_of(&ra, &kwid)) ||
        check_geometry(&so.shape, &dst, kh, kwid, &g) < 0)
        goto done;
    /* A one-tap factor is a scale: fold it into the other factor. */
    if (kh == 1)
        for (Py_ssize_t t = 0; t < kwid; t++) rw[t] *= cw[0];
    else if (kwid == 1)
        for (Py_ssize_t t = 0; t < kh; t++) cw[t] *= rw[0];
    const size_t item = kind == 'f' ? 4 : 8;
    const Py_ssize_t span_x = (kwid - 1) * g.col_gap + 1;
    /* Running sums down the rows need consecutive rows (and, alone, consecutive columns). */
    int running_ok = g.row_gap == 1 && (kwid > 1 || g.col_step == 1) ? RUNNING_MIN_TAPS : 0;
    /* both passes, or the one with taps (a 1x1 kernel: the row "pass", one tap) */
    const int use_v = kh > 1, use_h = kwid > 1 || kh == 1;
    if (use_v && make_factor(&v, cw, kh, 1, g.row_gap, sums, running_ok) < 0) goto done;
    if (use_h && make_factor(&h, rw, kwid, 0, g.col_gap, sums, DOUBLING_MIN_TAPS) < 0)
        goto done;
    if (v.mode) v.mode = PASS_RUNNING;
    if (h.mode) h.mode = PASS_DOUBLING;

    Py_ssize_t strip, floats;
    if (kh > 1 && kwid > 1) {
        strip = ((Py_ssize_t)(MID_BYTES / item) - span_x) / g.col_step;
        if (v.mode == PASS_RUNNING)
            strip = ((Py_ssize_t)(RUNNING_BYTES / item) / (kh + 1) - span_x) / g.col_step;
        strip = strip < 64 ? 64 : strip;
        strip = strip > dst.w ? dst.w : strip;
        const Py_ssize_t mid_len = g.col_step * (strip - 1) + span_x;
        const Py_ssize_t doubling = h.mode == PASS_DOUBLING
                                    ? doubling_floats(kwid, g.col_gap, g.col_step) : 0;
        floats = mid_len + doubling + (v.mode == PASS_RUNNING ? (kh + 1) * mid_len : 0);
    } else if (kh > 1) {
        strip = (Py_ssize_t)(RUNNING_BYTES / item) / (kh + 1);
        strip = strip < 64 ? 64 : strip > dst.w ? dst.w : strip;
        floats = v.mode == PASS_RUNNING ? (kh + 1) * strip : 1;
    } else {
        strip = dst.w;
        floats = h.mode == PASS_DOUBLING ? doubling_floats(kwid, g.col_gap, g.col_step) : 1;
    }
    const Py_ssize_t width = read_width(&dst, kwid, &g);
    /* 8-bit outputs: each row's results in floats first (a strip of them, or a whole row) */
    uint8_t *d8 = dst.kind == 'B' ? (uint8_t *)dst.view.buf : NULL;
    if (d8 && !(tmp = aligned((strip > dst.w ? strip : dst.w) * item))) {
        PyErr_NoMemory();
        goto done;
    }
    if (!(work = aligned(floats * item)) || !(rows = PyMem_Malloc(sizeof(void *) * kh)) ||
        !(rt = PyMem_Malloc(sizeof(rtap_t_f64) * (3 * v.ntaps + h.ntaps + 1)))) {
        PyErr_NoMemory();
        goto done;
    }
    /* (running sums read a row or two at a time, taps all kh rows at once) */
    const Py_ssize_t ring_rows = use_v ? (kh - 1) * g.row_gap + 1 : 1;
    /* (a row factor alone reads the columns at either side from copies: see single_band) */
    if (source_ring(&so, ring_rows, v.mode == PASS_RUNNING ? 2 : kh, g.col_first, width,
                    use_v ? 0 : span_x) < 0)
        goto done;
    const Py_ssize_t first = g.col_first;
    Py_BEGIN_ALLOW_THREADS
#define PASS(F, R, f) {f.taps, f.ntaps, (R)f.scale, f.count, f.gap, f.mode}
    if (kind == 'f') {
        float *d = d8 ? NULL : (float *)dst.view.buf;
        pass_t_f32 pv = PASS(F32, float, v), ph = PASS(F32, float, h);
        if (kh > 1 && kwid > 1)
            kernels->separable_band_f32(&so.rs, first, width, d, dst.sc, dst.sr, dst.c, dst.r,
                                        dst.w, g.row_step, g.col_step, &pv, &ph, span_x, strip,
                                        origin, work, (const float **)rows, (rtap_t_f32 *)rt,
                                        d8, tmp);
        else
            kernels->single_band_f32(&so.rs, first, width, d, dst.sc, dst.sr, dst.c, dst.r,
                                     dst.w, g.row_step, g.col_step, use_v ? &pv : &ph, use_v,
                                     origin, strip, work, (const float **)rows,
                                     (rtap_t_f32 *)rt, d8, tmp);
    } else {
        double *d = d8 ? NULL : (double *)dst.view.buf;
        pass_t_f64 pv = PASS(F64, double, v), ph = PASS(F64, double, h);
        if (kh > 1 && kwid > 1)
            kernels->separable_band_f64(&so.rs, first, width, d, dst.sc, dst.sr, dst.c, dst.r,
                                        dst.w, g.row_step, g.col_step, &pv, &ph, span_x, strip,
                                        origin, work, (const double **)rows, (rtap_t_f64 *)rt,
                                        d8, tmp);
        else
            kernels->single_band_f64(&so.rs, first, width, d, dst.sc, dst.sr, dst.c, dst.r,
                                     dst.w, g.row_step, g.col_step, use_v ? &pv : &ph, use_v,
                                     origin, strip, work, (const double **)rows,
                                     (rtap_t_f64 *)rt, d8, tmp);
    }
#undef PASS
    count_done(&counter);
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    release_counter(&counter);
    PyMem_Free(cw);
    PyMem_Free(rw);
    PyMem_Free(v.taps);
    PyMem_Free(h.taps);
    free(work);
    free(tmp);
    PyMem_Free(rows);
    PyMem_Free(rt);
    source_free(&so);
    release(&dst);
    release(&ca);
    release(&ra);
    return result;
}

/* ------------------------------------------------------------------------- 8-bit integers */

/* The exact sum T of integer weights over 8-bit samples lies in [low, high]. It is computed
 * modulo 2^16 when high - low < 2^16 (16-bit lanes: twice as many per vector) and modulo 2^32
 * otherwise (then |T| < 2^31 is required). The final step, T * scale rounded half to even and
 * clipped to 0..255, is exact when T * scale is exact (scale a power of two, |T*scale*2^k| <
 * 2^24) or no tie is possible (scale = g/D with D odd < 2^14: T*g/D is then at least 1/(2D)
 * from a tie, more than float32's error of 256 * 2^-23 on values that round into 0..255;
 * with 32-bit sums it is done in float64: D < 2^43). The caller proves that. */
typedef struct {
    int bits;
    int32_t low;
    int32_t high;
} int_range_t;

/* An integer-only final step for the 16-bit path: scale = gain / 2^shift with gain an integer
 * and |T * gain| < 2^31 (then clip and round half to even are a clamp and a shift, exactly
 * what rounding the exact T * scale gives). Sets shift = -1 (the float step) otherwise. */
static void integer_scale(double scale, const int_range_t *r, int *shift, int32_t *gain)
{
    *shift = -1;
    *gain = 0;
    if (r->bits != 16 || !(scale > 0)) return;
    const int64_t reach = -(int64_t)r->low > r->high ? -(int64_t)r->low : r->high;
    for (int k = 0; k <= 24; k++) {
        const double v = ldexp(scale, k);
        if (v != floor(v)) continue;
        if (v >= 1 && v < 16777216.0 && reach * (int64_t)v < INT32_MAX) {
            *shift = k;
            *gain = (int32_t)v;
        }
        return;
    }
}

static int integer_range(const double *w, Py_ssize_t n, int_range_t *r)
{
    int64_t low = 0, high = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (w[i] != (double)(int32_t)w[i]) {
            PyErr_SetString(PyExc_ValueError, "integer weights expected");
            return -1;
        }
        if (w[i] > 0) high += 255 * (int64_t)w[i];
        else low += 255 * (int64_t)w[i];
        if (high > INT32_MAX || low < INT32_MIN) {
            PyErr_SetString(PyExc_ValueError, "integer weights too large: sums could exceed 2^31");
            return -1;
        }
    }
    r->bits = high - low < 65536 ? 16 : 32;
    r->low = (int32_t)low;
    r->high = (int32_t)high;
    return 0;
}

static int ones(const double *w, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++)
        if (w[i] != 1) return 0;
    return 1;
}

static int check_u8(const array_t *src, const array_t *dst)
{
    if (src->kind != 'B' || (dst->kind != 'B' && dst->kind != 'f')) {
        PyErr_SetString(PyExc_TypeError, "src must be uint8 and dst uint8 or float32");
        return -1;
    }
    return 0;
}

static int check_cval(double cval)
{
    if (!(cval >= 0 && cval <= 255 && cval == floor(cval))) {
        PyErr_SetString(PyExc_ValueError, "cval of an 8-bit image: a whole number 0..255");
        return -1;
    }
    return 0;
}

static const char *direct_u8_kwlist[] = {"src", "dst", "weights", "scale", "row_step",
                                         "row_gap", "col_step", "col_gap", "col_first",
                                         "row_map", "col_map", "cval", "done", NULL};

PyDoc_STRVAR(correlate_direct_u8_doc,
"correlate_direct_u8(src, dst, weights, scale, row_step, row_gap, col_step, col_gap,\n"
"                    col_first, row_map=None, col_map=None, cval=0.0)\n--\n\n"
"Integer direct taps: T = sum_ab weights[a, b] * src[...] exactly (weights: int32 (kh, kw);\n"
"src: uint8), then dst = T * scale: uint8 dst rounded half to even and clipped to 0..255, or\n"
"float32 dst. 16-bit sums when the range of T allows, else 32-bit. Geometry as\n"
"correlate_direct. Exact when scale is a power of two or 1/odd (see NOTES.md). No GIL.\n"
MAPS_DOC " cval: a sample 0..255.");

static PyObject *correlate_direct_u8(PyObject *self, PyObject *args, PyObject *kw)
{
    PyObject *o_src, *o_dst, *o_w, *o_rows = Py_None, *o_cols = Py_None;
    double scale, cval = 0;
    geometry_t g;
    PyObject *o_done = Py_None;
    counter_t counter;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOdnnnnn|OOdO", (char **)direct_u8_kwlist,
                                     &o_src, &o_dst, &o_w, &scale, &g.row_step, &g.row_gap,
                                     &g.col_step, &g.col_gap, &g.col_first, &o_rows, &o_cols,
                                     &cval, &o_done))
        return NULL;
    if (get_counter(o_done, &counter) < 0) {
        release_counter(&counter);
        return NULL;
    }
    source_t so;
    array_t dst, wa;
    memset(&dst, 0, sizeof dst);
    memset(&wa, 0, sizeof wa);
    double *w = NULL;
    tap_t *taps = NULL;
    const void **rows = NULL;
    void *rt = NULL;
    PyObject *result = NULL;
    int_range_t range;
    if (source_open(&so, o_src, o_rows, o_cols, cval, 0) < 0 ||
        get_array(o_dst, &dst, 1, "dst") < 0 || get_array(o_w, &wa, 0, "weights") < 0 ||
        check_u8(&so.src, &dst) < 0 || check_cval(cval) < 0)
        goto done;
    Py_ssize_t n, kh = wa.r, kwid = wa.w;
    if (!(w = weights_of(&wa, &n)) || check_geometry(&so.shape, &dst, kh, kwid, &g) < 0 ||
        integer_range(w, n, &range) < 0)
        goto done;
    int ntaps;
    const Py_ssize_t width = read_width(&dst, kwid, &g);
    if (kernel_taps(w, kh, kwid, g.col_gap, &taps, &ntaps) < 0 ||
        source_ring(&so, (kh - 1) * g.row_gap + 1, kh, g.col_first, width,
                    (kwid - 1) * g.col_gap + 1 + g.col_step * (1 + 64)) < 0) /* (I_SIDE) */
        goto done;
    if (!(rows = PyMem_Malloc(sizeof(void *) * kh)) ||
        !(rt = PyMem_Malloc(sizeof(rtap_u8_t_u32_base) * (ntaps + 1)))) {
        PyErr_NoMemory();
        goto done;
    }
    const int out_u8 = dst.kind == 'B';
    const ptrdiff_t item = out_u8 ? 1 : 4;
    int shift;
    int32_t gain;
    integer_scale(scale, &range, &shift, &gain);
    Py_BEGIN_ALLOW_THREADS
    if (range.bits == 16)
        kernels->direct_band_u16(&so.rs, g.col_first, width, dst.view.buf, dst.sc * item,
                        dst.sr * item, out_u8, dst.c, dst.r, dst.w, g.row_step, g.col_step, kh,
                        g.row_gap, taps, ntaps, range.low, (float)scale, shift, gain,
                        (const uint8_t **)rows, rt);
    else
        kernels->direct_band_u32(&so.rs, g.col_first, width, dst.view.buf, dst.sc * item,
                        dst.sr * item, out_u8, dst.c, dst.r, dst.w, g.row_step, g.col_step, kh,
                        g.row_gap, taps, ntaps, range.low, scale, -1, 0,
                        (const uint8_t **)rows, rt);
    count_done(&counter);
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    release_counter(&counter);
    PyMem_Free(w);
    PyMem_Free(taps);
    PyMem_Free(rows);
    PyMem_Free(rt);
    source_free(&so);
    release(&dst);
    release(&wa);
    return result;
}

static const char *separable_u8_kwlist[] = {"src", "dst", "column", "row", "scale",
                                            "row_step", "row_gap", "col_step", "col_gap",
                                            "col_first", "row_map", "col_map", "cval", "done",
                                            NULL};

PyDoc_STRVAR(correlate_separable_u8_doc,
"correlate_separable_u8(src, dst, column, row, scale, row_step, row_gap, col_step, col_gap,\n"
"                       col_first, row_map=None, col_map=None, cval=0.0)\n--\n\n"
"correlate_direct_u8 with weights = outer(column, row) (int32 1-D factors, both longer than\n"
"one tap), fused per output row through an integer row buffer; same T, same rounding.\n"
MAPS_DOC);

static PyObject *correlate_separable_u8(PyObject *self, PyObject *args, PyObject *kw)
{
    PyObject *o_src, *o_dst, *o_col, *o_row, *o_rows = Py_None, *o_cols = Py_None;
    double scale, cval = 0;
    geometry_t g;
    PyObject *o_done = Py_None;
    counter_t counter;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOdnnnnn|OOdO", (char **)separable_u8_kwlist,
                                     &o_src, &o_dst, &o_col, &o_row, &scale, &g.row_step,
                                     &g.row_gap, &g.col_step, &g.col_gap, &g.col_first, &o_rows,
                                     &o_cols, &cval, &o_done))
        return NULL;
    if (get_counter(o_done, &counter) < 0) {
        release_counter(&counter);
        return NULL;
    }
    source_t so;
    array_t dst, ca, ra;
    const void **rows = NULL;
    void *rt = NULL;
    memset(&dst, 0, sizeof dst);
    memset(&ca, 0, sizeof ca);
    memset(&ra, 0, sizeof ra);
    double *cw = NULL, *rw = NULL, *outer = NULL;
    tap_t *vt = NULL, *ht = NULL;
    ptrdiff_t *off = NULL;
    void *mid = NULL, *colsum = NULL, *scratch = NULL;
    PyObject *result = NULL;
    int_range_t range;
    if (source_open(&so, o_src, o_rows, o_cols, cval, 0) < 0 ||
        get_array(o_dst, &dst, 1, "dst") < 0 || get_array(o_col, &ca, 0, "column") < 0 ||
        get_array(o_row, &ra, 0, "row") < 0 || check_u8(&so.src, &dst) < 0 ||
        check_cval(cval) < 0)
        goto done;
    Py_ssize_t kh, kwid;
    if (!(cw = weights_of(&ca, &kh)) || !(rw = weights_of(&ra, &kwid)) ||
        check_geometry(&so.shape, &dst, kh, kwid, &g) < 0)
        goto done;
    if (kh < 2 || kwid < 2) {
        PyErr_SetString(PyExc_ValueError, "both factors need 2 taps or more (else: direct)");
        goto done;
    }
    Py_ssize_t most = kh > kwid ? kh : kwid;
    outer = PyMem_Malloc(sizeof(double) * kh * kwid);
    vt = PyMem_Malloc(sizeof(tap_t) * kh);
    ht = PyMem_Malloc(sizeof(tap_t) * kwid);
    off = PyMem_Malloc(sizeof(ptrdiff_t) * most);
    int *rix = PyMem_Malloc(sizeof(int) * most);
    rows = PyMem_Malloc(sizeof(void *) * kh);
    rt = PyMem_Malloc(sizeof(rtap_u8_t_u32_base) * (kh + kwid + 1));
    if (!outer || !vt || !ht || !off || !rix || !rows || !rt) {
        PyMem_Free(rix);
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t a = 0; a < kh; a++)
        for (Py_ssize_t b = 0; b < kwid; b++) outer[a * kwid + b] = cw[a] * rw[b];
    /* the sum is linear: its range follows from the 2-D weights, whatever wraps between passes */
    if (integer_range(outer, kh * kwid, &range) < 0 || integer_range(cw, kh, &(int_range_t){0}) < 0 ||
        integer_range(rw, kwid, &(int_range_t){0}) < 0)
        goto done;
    for (Py_ssize_t t = 0; t < kh; t++) {
        off[t] = 0; /* tap t reads row t of the kh rows row_gap apart */
        rix[t] = (int)t;
    }
    int nvt = build_taps(cw, kh, off, rix, vt);
    for (Py_ssize_t t = 0; t < kwid; t++) {
        off[t] = t * g.col_gap;
        rix[t] = 0;
    }
    int nht = build_taps(rw, kwid, off, rix, ht);
    PyMem_Free(rix);
    const Py_ssize_t span_x = (kwid - 1) * g.col_gap + 1;
    const size_t acc_item = range.bits == 16 ? 2 : 4;
    Py_ssize_t strip = ((Py_ssize_t)(MID_BYTES / acc_item) - span_x) / g.col_step;
    strip = strip < 64 ? 64 : strip > dst.w ? dst.w : strip;
    if (!(mid = aligned(acc_item * (g.col_step * (strip - 1) + span_x)))) {
        PyErr_NoMemory();
        goto done;
    }
    const Py_ssize_t width = read_width(&dst, kwid, &g);
    /* Boxes: running column sums (a column of ones, consecutive rows, row step 1) and sums
     * by doubling along the row (a row of ones, column step 1), from U8_BOX_MIN_TAPS on. */
    const int vbox = kh >= U8_BOX_MIN_TAPS && ones(cw, kh) && g.row_step == 1 && g.row_gap == 1;
    const Py_ssize_t hbox =
        kwid >= U8_BOX_MIN_TAPS && ones(rw, kwid) && g.col_step == 1 ? kwid : 0;
    if ((vbox && !(colsum = aligned(acc_item * width))) ||
        (hbox && !(scratch = aligned(acc_item * 2 * (I_CHUNK_ALL + span_x))))) {
        PyErr_NoMemory();
        goto done;
    }
    /* (the running column sums read two rows at a time, the taps all kh rows at once) */
    if (source_ring(&so, (kh - 1) * g.row_gap + 1 + vbox, vbox ? 2 : kh, g.col_first, width, 0) < 0)
        goto done;
    const int out_u8 = dst.kind == 'B';
    const ptrdiff_t item = out_u8 ? 1 : 4;
    int shift;
    int32_t gain;
    integer_scale(scale, &range, &shift, &gain);
    Py_BEGIN_ALLOW_THREADS
    if (range.bits == 16)
        kernels->separable_band_u16(&so.rs, g.col_first, width, dst.view.buf, dst.sc * item,
                           dst.sr * item, out_u8, dst.c, dst.r, dst.w, g.row_step, g.col_step,
                           kh, g.row_gap, vt, nvt, ht, nht, span_x, strip, range.low,
                           (float)scale, shift, gain, mid, (const uint8_t **)rows, rt, colsum,
                           hbox, g.col_gap, scratch);
    else
        kernels->separable_band_u32(&so.rs, g.col_first, width, dst.view.buf, dst.sc * item,
                           dst.sr * item, out_u8, dst.c, dst.r, dst.w, g.row_step, g.col_step,
                           kh, g.row_gap, vt, nvt, ht, nht, span_x, strip, range.low, scale,
                           -1, 0, mid, (const uint8_t **)rows, rt, colsum, hbox, g.col_gap,
                           scratch);
    count_done(&counter);
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    release_counter(&counter);
    PyMem_Free(cw);
    PyMem_Free(rw);
    PyMem_Free(outer);
    PyMem_Free(vt);
    PyMem_Free(ht);
    PyMem_Free(off);
    free(mid);
    free(colsum);
    free(scratch);
    PyMem_Free(rows);
    PyMem_Free(rt);
    source_free(&so);
    release(&dst);
    release(&ca);
    release(&ra);
    return result;
}

/* ------------------------------------------------------------------------- window sums */

static const char *window_kwlist[] = {"src", "sums", "squares", "height", "width",
                                      "row_origin", "method", NULL};

PyDoc_STRVAR(window_sums_doc,
"window_sums(src, sums, squares, height, width, row_origin=0, method=-1)\n--\n\n"
"float64: sums[j, i] = sum of src[j:j+height, i:i+width], squares[j, i] = the same of\n"
"src**2, for the outputs' (rows, columns). Running sums down the rows and doubling along them\n"
"from 8 taps on (method=-1; 1: always, 0: plain sums): every sum holds only its window's\n"
"terms (rounding error ~ taps * eps * max), the same bits however the rows are cut into bands\n"
"when row_origin gives src row 0's row in the image. Releases the GIL.");

static PyObject *window_sums(PyObject *self, PyObject *args, PyObject *kw)
{
    PyObject *o_src, *o_sums, *o_sq;
    Py_ssize_t h, w, origin = 0;
    int method = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOnn|ni", (char **)window_kwlist, &o_src,
                                     &o_sums, &o_sq, &h, &w, &origin, &method))
        return NULL;
    array_t src, sums, sq;
    memset(&sums, 0, sizeof sums);
    memset(&sq, 0, sizeof sq);
    void *work = NULL;
    PyObject *result = NULL;
    if (get_array(o_src, &src, 0, "src") < 0 || get_array(o_sums, &sums, 1, "sums") < 0 ||
        get_array(o_sq, &sq, 1, "squares") < 0)
        goto done;
    if (src.kind != 'd' || sums.kind != 'd' || sq.kind != 'd') {
        PyErr_SetString(PyExc_TypeError, "window_sums works on float64 arrays");
        goto done;
    }
    if (src.c != 1 || sums.c != 1 || sq.c != 1 || sums.r != sq.r || sums.w != sq.w || h < 1 ||
        w < 1 || sums.r < 1 || sums.w < 1 || sums.r + h - 1 > src.r || sums.w + w - 1 > src.w) {
        PyErr_SetString(PyExc_ValueError,
                        "window_sums: 2-D arrays with sums, squares (rows, cols) and src at "
                        "least (rows + height - 1, cols + width - 1) expected");
        goto done;
    }
    const int running = method == 1 || (method < 0 && h >= RUNNING_MIN_TAPS);
    const int doubling = method == 1 || (method < 0 && w >= DOUBLING_MIN_TAPS);
    Py_ssize_t strip = (Py_ssize_t)(RUNNING_BYTES / 8) / (h + 1) - w;
    strip = strip < 64 ? 64 : strip > sums.w ? sums.w : strip;
    const Py_ssize_t mid_len = strip + w - 1;
    if (!(work = aligned(8 * ((2 + 2 * (h + 1)) * mid_len + doubling_floats(w, 1, 1))))) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    kernels->window_sums_band_f64(src.view.buf, src.sr, sums.view.buf, sums.sr, sq.view.buf, sq.sr,
                         sums.r, sums.w, h, w, origin, running, doubling, strip, work);
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    free(work);
    release(&src);
    release(&sums);
    release(&sq);
    return result;
}

/* ------------------------------------------------------------------------- template matching */

#include "_native_match.h"

/* ------------------------------------------------------------------------- module */

PyDoc_STRVAR(info_doc,
"info()\n--\n\n"
"The build: {'simd': the SIMD level the kernels run, in words; 'level': its name; 'levels':\n"
"the names of the levels built that this CPU runs, best first; 'clones': 1 when several\n"
"levels are built; 'streaming': 1 when the kernels can store streaming (see\n"
"correlate_direct), ...}.");

static PyObject *info(PyObject *self, PyObject *unused)
{
    PyObject *names = PyTuple_New(0);
    for (int k = 0; names && k < NLEVELS; k++)
        if (cpu_runs(k)) {
            PyObject *name = PyUnicode_FromString(levels[k].name);
            if (!name || _PyTuple_Resize(&names, PyTuple_GET_SIZE(names) + 1) < 0) {
                Py_XDECREF(name);
                Py_XDECREF(names);
                return NULL;
            }
            PyTuple_SET_ITEM(names, PyTuple_GET_SIZE(names) - 1, name);
        }
    if (!names) return NULL;
    const level_t *chosen = levels + level_chosen;
    return Py_BuildValue("{s:s,s:s,s:N,s:i,s:i,s:i,s:i}", "simd", chosen->simd, "level",
                         chosen->name, "levels", names, "clones", CLONES, "running_min_taps",
                         RUNNING_MIN_TAPS, "doubling_min_taps", DOUBLING_MIN_TAPS, "streaming",
                         STREAMING);
}

PyDoc_STRVAR(select_level_doc,
"select_level(name)\n--\n\n"
"Run the kernels of SIMD level `name` ('v4', 'v3', 'baseline': see info()['levels']) from\n"
"now on, in this process. ValueError if it was not built or this CPU lacks what it needs.\n"
"Every level gives the same bits; this is for tests, benchmarks and CONVTOOL_NATIVE_LEVEL.");

static PyObject *select_level(PyObject *self, PyObject *arg)
{
    const char *name = PyUnicode_AsUTF8(arg);
    if (!name) return NULL;
    for (int k = 0; k < NLEVELS; k++) {
        if (strcmp(name, levels[k].name) != 0) continue;
        if (!cpu_runs(k)) {
            PyErr_Format(PyExc_ValueError, "this CPU cannot run the %s kernels: they need %s",
                         name, levels[k].needs);
            return NULL;
        }
        kernels = levels[k].kernels;
        level_chosen = k;
        Py_RETURN_NONE;
    }
    PyObject *built = PyUnicode_FromString("");
    for (int k = 0; built && k < NLEVELS; k++) {
        PyObject *more = PyUnicode_FromFormat("%U%s'%s'", built, k ? ", " : "", levels[k].name);
        Py_SETREF(built, more);
    }
    if (built) {
        PyErr_Format(PyExc_ValueError, "unknown SIMD level '%s': this build has %U", name, built);
        Py_DECREF(built);
    }
    return NULL;
}

static PyMethodDef methods[] = {
    {"correlate_direct", (PyCFunction)(void (*)(void))correlate_direct,
     METH_VARARGS | METH_KEYWORDS, correlate_direct_doc},
    {"correlate_separable", (PyCFunction)(void (*)(void))correlate_separable,
     METH_VARARGS | METH_KEYWORDS, correlate_separable_doc},
    {"correlate_direct_u8", (PyCFunction)(void (*)(void))correlate_direct_u8,
     METH_VARARGS | METH_KEYWORDS, correlate_direct_u8_doc},
    {"correlate_separable_u8", (PyCFunction)(void (*)(void))correlate_separable_u8,
     METH_VARARGS | METH_KEYWORDS, correlate_separable_u8_doc},
    {"window_sums", (PyCFunction)(void (*)(void))window_sums, METH_VARARGS | METH_KEYWORDS,
     window_sums_doc},
    {"await_count", await_count, METH_VARARGS, await_count_doc},
    {"info", info, METH_NOARGS, info_doc},
    {"select_level", select_level, METH_O, select_level_doc},
    MATCH_METHODS
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_native",
    "Compiled band kernels of convtool's engine (see convtool/engine/_native.c).", -1, methods,
};

PyMODINIT_FUNC PyInit__native(void)
{
    for (int k = 0; k < NLEVELS; k++) /* the best level this CPU runs */
        if (cpu_runs(k)) {
            kernels = levels[k].kernels;
            level_chosen = k;
            break;
        }
    return PyModule_Create(&module);
}
