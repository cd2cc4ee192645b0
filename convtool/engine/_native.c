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
 * Speed: loops written for GCC's vectoriser (checked with -fopt-info-vec), compiled for
 * x86-64-v4 (AVX-512 F/BW/DQ/VL: 16-bit lanes need BW), x86-64-v3 (AVX2) and the baseline with
 * target_clones and chosen at load time by the CPU
 * (ifunc), so one build never runs an instruction the CPU lacks. -ffp-contract=off: no fused
 * multiply-adds, so every clone gives the same bits. The GIL is released inside each call.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(CONVTOOL_NO_CLONES)
#define HOT __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#define CLONES 1
#else
#define HOT
#define CLONES 0
#endif
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
/* Bytes of the row buffer between the two passes of a separable kernel (L1 sized). */
#define MID_BYTES (16 << 10)
/* Bytes of the suffix rows of a running sum (L2 sized). */
#define RUNNING_BYTES (256 << 10)

enum { TAP_MUL, TAP_ONE, TAP_NEG, TAP_PAIR, TAP_PAIR1, TAP_PAIRNEG, TAP_DIFF, TAP_DIFF1 };
enum { PASS_TAPS, PASS_RUNNING, PASS_DOUBLING };

/* One term of a tap list: w * x[o1] (MUL, ONE: w = 1, NEG: w = -1), or a folded pair of
 * mirror taps with equal weights w * (x[o1] + x[o2]) (PAIR...) or opposite ones
 * w * (x[o1] - x[o2]) (DIFF...). The unit kinds skip a multiply by +-1, which changes no bit. */
typedef struct {
    ptrdiff_t o1, o2; /* offsets in elements from the output's first sample */
    double w;
    int32_t iw;       /* the weight as an integer (integer kernels) */
    int kind;
} tap_t;

#define F(name) name##_f32
#define REAL float
#include "_native_float.h"
#undef REAL
#undef F
#define F(name) name##_f64
#define REAL double
#define F_WINDOW_SUMS
#include "_native_float.h"
#undef F_WINDOW_SUMS
#undef REAL
#undef F

#define I(name) name##_u16
#define ACC uint16_t
#define SCALED float
#define ROUNDER 0x1.8p23f
#include "_native_int.h"
#undef I
#undef ACC
#undef SCALED
#undef ROUNDER
#define I(name) name##_u32
#define ACC uint32_t
#define SCALED double
#define ROUNDER 0x1.8p52
#include "_native_int.h"
#undef I
#undef ACC
#undef SCALED
#undef ROUNDER

/* ------------------------------------------------------------------------- tap lists */

static void single_tap(tap_t *t, ptrdiff_t o, double w)
{
    t->o1 = t->o2 = o;
    t->w = w;
    t->iw = (int32_t)w;
    t->kind = w == 1 ? TAP_ONE : w == -1 ? TAP_NEG : TAP_MUL;
}

/* The terms of weights w[0..n-1] read at offsets off[f]: zero weights skipped, and mirror taps
 * f and n-1-f folded when their weights are equal or opposite. Returns the number of terms
 * (at most n) in `out`, in a fixed order. */
static int build_taps(const double *w, ptrdiff_t n, const ptrdiff_t *off, tap_t *out)
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
            t->w = a;
            t->iw = (int32_t)a;
            t->kind = a == 1 ? TAP_PAIR1 : a == -1 ? TAP_PAIRNEG : TAP_PAIR;
            count++;
        } else if (a == -b) { /* a*x[f] + b*x[g] = a*(x[f] - x[g]) */
            const int flip = a == -1;
            t->o1 = flip ? off[g] : off[f];
            t->o2 = flip ? off[f] : off[g];
            t->w = flip ? 1 : a;
            t->iw = (int32_t)t->w;
            t->kind = (a == 1 || a == -1) ? TAP_DIFF1 : TAP_DIFF;
            count++;
        } else {
            if (a != 0) single_tap(out + count++, off[f], a);
            if (b != 0) single_tap(out + count++, off[g], b);
        }
    }
    if (n % 2 == 1 && w[n / 2] != 0) single_tap(out + count++, off[n / 2], w[n / 2]);
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
    char kind;              /* 'f' float32, 'd' float64, 'B' uint8, 'i' int32 */
    Py_ssize_t c, r, w;     /* channels, rows, columns */
    Py_ssize_t sc, sr;      /* strides in items */
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

/* Fill `a` from an object with 1 to 3 dimensions (1: one row, 2: one channel). */
static int get_array(PyObject *obj, array_t *a, int writable, const char *name)
{
    memset(a, 0, sizeof(*a));
    int flags = PyBUF_STRIDES | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, &a->view, flags) < 0) return -1;
    a->held = 1;
    Py_buffer *v = &a->view;
    a->kind = format_kind(v->format);
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
        strides[3 - v->ndim + i] = v->strides[i];
    }
    if (shape[2] > 1 && strides[2] != v->itemsize) {
        PyErr_Format(PyExc_ValueError, "%s: columns must be contiguous", name);
        return -1;
    }
    for (int i = 0; i < 2; i++)
        if (strides[i] % v->itemsize || (shape[i] > 1 && strides[i] <= 0)) {
            PyErr_Format(PyExc_ValueError, "%s: strides must be positive whole items", name);
            return -1;
        }
    a->c = shape[0];
    a->r = shape[1];
    a->w = shape[2];
    a->sc = strides[0] / v->itemsize;
    a->sr = strides[1] / v->itemsize;
    return 0;
}

typedef struct {
    Py_ssize_t row_step, row_gap, col_step, col_gap, col_first;
} geometry_t;

/* Check that outputs (nr, nc) of a kh x kw kernel stay inside src, channels matching. */
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

/* ------------------------------------------------------------------------- direct */

static const char *direct_kwlist[] = {"src", "dst", "weights", "row_step", "row_gap",
                                      "col_step", "col_gap", "col_first", NULL};

PyDoc_STRVAR(correlate_direct_doc,
"correlate_direct(src, dst, weights, row_step, row_gap, col_step, col_gap, col_first)\n--\n\n"
"dst[c, j, i] = sum_ab weights[a, b] * src[c, row_step*j + a*row_gap,\n"
"col_first + col_step*i + b*col_gap], float32 or float64 (src and dst alike), computed in\n"
"that type. weights: float64 (kh, kw), C-contiguous. Zero weights are skipped; mirror\n"
"weights (w[a,b] = +-w[-a,-b]) are folded. Releases the GIL.");

static PyObject *correlate_direct(PyObject *self, PyObject *args, PyObject *kw)
{
    PyObject *o_src, *o_dst, *o_w;
    geometry_t g;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOnnnnn", (char **)direct_kwlist, &o_src,
                                     &o_dst, &o_w, &g.row_step, &g.row_gap, &g.col_step,
                                     &g.col_gap, &g.col_first))
        return NULL;
    array_t src, dst, wa;
    double *w = NULL;
    tap_t *taps = NULL;
    ptrdiff_t *off = NULL;
    PyObject *result = NULL;
    memset(&dst, 0, sizeof dst);
    memset(&wa, 0, sizeof wa);
    if (get_array(o_src, &src, 0, "src") < 0 || get_array(o_dst, &dst, 1, "dst") < 0 ||
        get_array(o_w, &wa, 0, "weights") < 0)
        goto done;
    if ((src.kind != 'f' && src.kind != 'd') || dst.kind != src.kind) {
        PyErr_SetString(PyExc_TypeError, "src and dst must both be float32 or both float64");
        goto done;
    }
    Py_ssize_t n, kh = wa.r, kwid = wa.w;
    if (!(w = weights_of(&wa, &n)) || check_geometry(&src, &dst, kh, kwid, &g) < 0) goto done;
    taps = PyMem_Malloc(sizeof(tap_t) * n);
    off = PyMem_Malloc(sizeof(ptrdiff_t) * n);
    if (!taps || !off) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t a = 0; a < kh; a++)
        for (Py_ssize_t b = 0; b < kwid; b++)
            off[a * kwid + b] = a * g.row_gap * src.sr + b * g.col_gap;
    int ntaps = build_taps(w, n, off, taps);
    Py_BEGIN_ALLOW_THREADS
    if (src.kind == 'f')
        direct_band_f32((const float *)src.view.buf + g.col_first, src.sc, src.sr,
                        (float *)dst.view.buf, dst.sc, dst.sr, dst.c, dst.r, dst.w, g.row_step,
                        g.col_step, taps, ntaps);
    else
        direct_band_f64((const double *)src.view.buf + g.col_first, src.sc, src.sr,
                        (double *)dst.view.buf, dst.sc, dst.sr, dst.c, dst.r, dst.w, g.row_step,
                        g.col_step, taps, ntaps);
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    PyMem_Free(w);
    PyMem_Free(taps);
    PyMem_Free(off);
    release(&src);
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

static int make_factor(factor_t *f, const double *w, Py_ssize_t n, Py_ssize_t unit,
                       Py_ssize_t gap, int sums_mode, int sums_ok)
{
    memset(f, 0, sizeof(*f));
    f->count = n;
    f->gap = gap;
    f->scale = 1;
    f->taps = PyMem_Malloc(sizeof(tap_t) * (n > 0 ? n : 1));
    ptrdiff_t *off = PyMem_Malloc(sizeof(ptrdiff_t) * (n > 0 ? n : 1));
    double *ones = PyMem_Malloc(sizeof(double) * (n > 0 ? n : 1));
    if (!f->taps || !off || !ones) {
        PyMem_Free(off);
        PyMem_Free(ones);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t t = 0; t < n; t++) off[t] = t * gap * unit;
    if (n > 1 && all_equal(w, n)) { /* a box: sum, then one multiply */
        for (Py_ssize_t t = 0; t < n; t++) ones[t] = 1;
        f->scale = w[0];
        f->ntaps = build_taps(ones, n, off, f->taps);
        if (sums_ok && (sums_mode == 1 || (sums_mode < 0 && n >= sums_ok))) f->mode = 1;
    } else {
        f->ntaps = build_taps(w, n, off, f->taps);
    }
    PyMem_Free(off);
    PyMem_Free(ones);
    return 0;
}

static const char *separable_kwlist[] = {"src", "dst", "column", "row", "row_step", "row_gap",
                                         "col_step", "col_gap", "col_first", "row_origin",
                                         "sums", NULL};

PyDoc_STRVAR(correlate_separable_doc,
"correlate_separable(src, dst, column, row, row_step, row_gap, col_step, col_gap, col_first,\n"
"                    row_origin=0, sums=-1)\n--\n\n"
"As correlate_direct with weights = outer(column, row) (float64 1-D factors), fused per\n"
"output row: the column pass fills a row buffer, the row pass reads it. A box factor (all\n"
"taps equal) is summed and multiplied once; from 8 taps on (sums=-1; 1: always, 0: never)\n"
"by running sums down the rows (needs row_gap 1) and doubling along them. row_origin: the\n"
"row of the padded image that src row 0 is, so that running sums give the same bits however\n"
"the image is cut into bands. Releases the GIL.");

static PyObject *correlate_separable(PyObject *self, PyObject *args, PyObject *kw)
{
    PyObject *o_src, *o_dst, *o_col, *o_row;
    geometry_t g;
    Py_ssize_t origin = 0;
    int sums = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOnnnnn|ni", (char **)separable_kwlist,
                                     &o_src, &o_dst, &o_col, &o_row, &g.row_step, &g.row_gap,
                                     &g.col_step, &g.col_gap, &g.col_first, &origin, &sums))
        return NULL;
    array_t src, dst, ca, ra;
    memset(&dst, 0, sizeof dst);
    memset(&ca, 0, sizeof ca);
    memset(&ra, 0, sizeof ra);
    double *cw = NULL, *rw = NULL;
    factor_t v = {0}, h = {0};
    void *work = NULL;
    PyObject *result = NULL;
    if (get_array(o_src, &src, 0, "src") < 0 || get_array(o_dst, &dst, 1, "dst") < 0 ||
        get_array(o_col, &ca, 0, "column") < 0 || get_array(o_row, &ra, 0, "row") < 0)
        goto done;
    if ((src.kind != 'f' && src.kind != 'd') || dst.kind != src.kind) {
        PyErr_SetString(PyExc_TypeError, "src and dst must both be float32 or both float64");
        goto done;
    }
    Py_ssize_t kh, kwid;
    if (!(cw = weights_of(&ca, &kh)) || !(rw = weights_of(&ra, &kwid)) ||
        check_geometry(&src, &dst, kh, kwid, &g) < 0)
        goto done;
    /* A one-tap factor is a scale: fold it into the other factor. */
    if (kh == 1)
        for (Py_ssize_t t = 0; t < kwid; t++) rw[t] *= cw[0];
    else if (kwid == 1)
        for (Py_ssize_t t = 0; t < kh; t++) cw[t] *= rw[0];
    const size_t item = src.kind == 'f' ? 4 : 8;
    const Py_ssize_t span_x = (kwid - 1) * g.col_gap + 1;
    /* Running sums down the rows need consecutive rows (and, alone, consecutive columns). */
    int running_ok = g.row_gap == 1 && (kwid > 1 || g.col_step == 1) ? RUNNING_MIN_TAPS : 0;
    /* both passes, or the one with taps (a 1x1 kernel: the row "pass", one tap) */
    const int use_v = kh > 1, use_h = kwid > 1 || kh == 1;
    if (use_v && make_factor(&v, cw, kh, src.sr, g.row_gap, sums, running_ok) < 0) goto done;
    if (use_h && make_factor(&h, rw, kwid, 1, g.col_gap, sums, DOUBLING_MIN_TAPS) < 0)
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
        floats = 3 * mid_len + (v.mode == PASS_RUNNING ? (kh + 1) * mid_len : 0);
    } else if (kh > 1) {
        strip = 512;
        floats = v.mode == PASS_RUNNING ? (kh + 1) * strip : 1;
    } else {
        strip = dst.w;
        floats = h.mode == PASS_DOUBLING ? 2 * (g.col_step * (dst.w - 1) + span_x) : 1;
    }
    if (!(work = aligned(floats * item))) {
        PyErr_NoMemory();
        goto done;
    }
    const Py_ssize_t first = g.col_first;
    Py_BEGIN_ALLOW_THREADS
#define PASS(F, R, f) {f.taps, f.ntaps, (R)f.scale, f.count, f.gap, f.mode}
    if (src.kind == 'f') {
        const float *s = (const float *)src.view.buf + first;
        float *d = (float *)dst.view.buf;
        pass_t_f32 pv = PASS(F32, float, v), ph = PASS(F32, float, h);
        if (kh > 1 && kwid > 1)
            separable_band_f32(s, src.sc, src.sr, d, dst.sc, dst.sr, dst.c, dst.r, dst.w,
                               g.row_step, g.col_step, &pv, &ph, span_x, strip, origin, work);
        else
            single_band_f32(s, src.sc, src.sr, d, dst.sc, dst.sr, dst.c, dst.r, dst.w,
                            g.row_step, g.col_step, use_v ? &pv : &ph, origin, work);
    } else {
        const double *s = (const double *)src.view.buf + first;
        double *d = (double *)dst.view.buf;
        pass_t_f64 pv = PASS(F64, double, v), ph = PASS(F64, double, h);
        if (kh > 1 && kwid > 1)
            separable_band_f64(s, src.sc, src.sr, d, dst.sc, dst.sr, dst.c, dst.r, dst.w,
                               g.row_step, g.col_step, &pv, &ph, span_x, strip, origin, work);
        else
            single_band_f64(s, src.sc, src.sr, d, dst.sc, dst.sr, dst.c, dst.r, dst.w,
                            g.row_step, g.col_step, use_v ? &pv : &ph, origin, work);
    }
#undef PASS
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    PyMem_Free(cw);
    PyMem_Free(rw);
    PyMem_Free(v.taps);
    PyMem_Free(h.taps);
    free(work);
    release(&src);
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

static int check_u8(const array_t *src, const array_t *dst)
{
    if (src->kind != 'B' || (dst->kind != 'B' && dst->kind != 'f')) {
        PyErr_SetString(PyExc_TypeError, "src must be uint8 and dst uint8 or float32");
        return -1;
    }
    return 0;
}

static const char *direct_u8_kwlist[] = {"src", "dst", "weights", "scale", "row_step",
                                         "row_gap", "col_step", "col_gap", "col_first", NULL};

PyDoc_STRVAR(correlate_direct_u8_doc,
"correlate_direct_u8(src, dst, weights, scale, row_step, row_gap, col_step, col_gap,\n"
"                    col_first)\n--\n\n"
"Integer direct taps: T = sum_ab weights[a, b] * src[...] exactly (weights: int32 (kh, kw);\n"
"src: uint8), then dst = T * scale: uint8 dst rounded half to even and clipped to 0..255, or\n"
"float32 dst. 16-bit sums when the range of T allows, else 32-bit. Geometry as\n"
"correlate_direct. Exact when scale is a power of two or 1/odd (see NOTES.md). No GIL.");

static PyObject *correlate_direct_u8(PyObject *self, PyObject *args, PyObject *kw)
{
    PyObject *o_src, *o_dst, *o_w;
    double scale;
    geometry_t g;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOdnnnnn", (char **)direct_u8_kwlist, &o_src,
                                     &o_dst, &o_w, &scale, &g.row_step, &g.row_gap, &g.col_step,
                                     &g.col_gap, &g.col_first))
        return NULL;
    array_t src, dst, wa;
    memset(&dst, 0, sizeof dst);
    memset(&wa, 0, sizeof wa);
    double *w = NULL;
    tap_t *taps = NULL;
    ptrdiff_t *off = NULL;
    PyObject *result = NULL;
    int_range_t range;
    if (get_array(o_src, &src, 0, "src") < 0 || get_array(o_dst, &dst, 1, "dst") < 0 ||
        get_array(o_w, &wa, 0, "weights") < 0 || check_u8(&src, &dst) < 0)
        goto done;
    Py_ssize_t n, kh = wa.r, kwid = wa.w;
    if (!(w = weights_of(&wa, &n)) || check_geometry(&src, &dst, kh, kwid, &g) < 0 ||
        integer_range(w, n, &range) < 0)
        goto done;
    taps = PyMem_Malloc(sizeof(tap_t) * n);
    off = PyMem_Malloc(sizeof(ptrdiff_t) * n);
    if (!taps || !off) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t a = 0; a < kh; a++)
        for (Py_ssize_t b = 0; b < kwid; b++)
            off[a * kwid + b] = a * g.row_gap * src.sr + b * g.col_gap;
    int ntaps = build_taps(w, n, off, taps);
    const int out_u8 = dst.kind == 'B';
    const ptrdiff_t item = out_u8 ? 1 : 4;
    int shift;
    int32_t gain;
    integer_scale(scale, &range, &shift, &gain);
    Py_BEGIN_ALLOW_THREADS
    const uint8_t *s = (const uint8_t *)src.view.buf + g.col_first;
    if (range.bits == 16)
        direct_band_u16(s, src.sc, src.sr, dst.view.buf, dst.sc * item, dst.sr * item, out_u8,
                        dst.c, dst.r, dst.w, g.row_step, g.col_step, taps, ntaps, range.low,
                        (float)scale, shift, gain);
    else
        direct_band_u32(s, src.sc, src.sr, dst.view.buf, dst.sc * item, dst.sr * item, out_u8,
                        dst.c, dst.r, dst.w, g.row_step, g.col_step, taps, ntaps, range.low,
                        scale, -1, 0);
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    PyMem_Free(w);
    PyMem_Free(taps);
    PyMem_Free(off);
    release(&src);
    release(&dst);
    release(&wa);
    return result;
}

static const char *separable_u8_kwlist[] = {"src", "dst", "column", "row", "scale",
                                            "row_step", "row_gap", "col_step", "col_gap",
                                            "col_first", NULL};

PyDoc_STRVAR(correlate_separable_u8_doc,
"correlate_separable_u8(src, dst, column, row, scale, row_step, row_gap, col_step, col_gap,\n"
"                       col_first)\n--\n\n"
"correlate_direct_u8 with weights = outer(column, row) (int32 1-D factors, both longer than\n"
"one tap), fused per output row through an integer row buffer; same T, same rounding.");

static PyObject *correlate_separable_u8(PyObject *self, PyObject *args, PyObject *kw)
{
    PyObject *o_src, *o_dst, *o_col, *o_row;
    double scale;
    geometry_t g;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOdnnnnn", (char **)separable_u8_kwlist,
                                     &o_src, &o_dst, &o_col, &o_row, &scale, &g.row_step,
                                     &g.row_gap, &g.col_step, &g.col_gap, &g.col_first))
        return NULL;
    array_t src, dst, ca, ra;
    memset(&dst, 0, sizeof dst);
    memset(&ca, 0, sizeof ca);
    memset(&ra, 0, sizeof ra);
    double *cw = NULL, *rw = NULL, *outer = NULL;
    tap_t *vt = NULL, *ht = NULL;
    ptrdiff_t *off = NULL;
    void *mid = NULL;
    PyObject *result = NULL;
    int_range_t range;
    if (get_array(o_src, &src, 0, "src") < 0 || get_array(o_dst, &dst, 1, "dst") < 0 ||
        get_array(o_col, &ca, 0, "column") < 0 || get_array(o_row, &ra, 0, "row") < 0 ||
        check_u8(&src, &dst) < 0)
        goto done;
    Py_ssize_t kh, kwid;
    if (!(cw = weights_of(&ca, &kh)) || !(rw = weights_of(&ra, &kwid)) ||
        check_geometry(&src, &dst, kh, kwid, &g) < 0)
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
    if (!outer || !vt || !ht || !off) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t a = 0; a < kh; a++)
        for (Py_ssize_t b = 0; b < kwid; b++) outer[a * kwid + b] = cw[a] * rw[b];
    /* the sum is linear: its range follows from the 2-D weights, whatever wraps between passes */
    if (integer_range(outer, kh * kwid, &range) < 0 || integer_range(cw, kh, &(int_range_t){0}) < 0 ||
        integer_range(rw, kwid, &(int_range_t){0}) < 0)
        goto done;
    for (Py_ssize_t t = 0; t < kh; t++) off[t] = t * g.row_gap * src.sr;
    int nvt = build_taps(cw, kh, off, vt);
    for (Py_ssize_t t = 0; t < kwid; t++) off[t] = t * g.col_gap;
    int nht = build_taps(rw, kwid, off, ht);
    const Py_ssize_t span_x = (kwid - 1) * g.col_gap + 1;
    const size_t acc_item = range.bits == 16 ? 2 : 4;
    Py_ssize_t strip = ((Py_ssize_t)(MID_BYTES / acc_item) - span_x) / g.col_step;
    strip = strip < 64 ? 64 : strip > dst.w ? dst.w : strip;
    if (!(mid = aligned(acc_item * (g.col_step * (strip - 1) + span_x)))) {
        PyErr_NoMemory();
        goto done;
    }
    const int out_u8 = dst.kind == 'B';
    const ptrdiff_t item = out_u8 ? 1 : 4;
    int shift;
    int32_t gain;
    integer_scale(scale, &range, &shift, &gain);
    Py_BEGIN_ALLOW_THREADS
    const uint8_t *s = (const uint8_t *)src.view.buf + g.col_first;
    if (range.bits == 16)
        separable_band_u16(s, src.sc, src.sr, dst.view.buf, dst.sc * item, dst.sr * item,
                           out_u8, dst.c, dst.r, dst.w, g.row_step, g.col_step, vt, nvt, ht,
                           nht, span_x, strip, range.low, (float)scale, shift, gain, mid);
    else
        separable_band_u32(s, src.sc, src.sr, dst.view.buf, dst.sc * item, dst.sr * item,
                           out_u8, dst.c, dst.r, dst.w, g.row_step, g.col_step, vt, nvt, ht,
                           nht, span_x, strip, range.low, scale, -1, 0, mid);
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    PyMem_Free(cw);
    PyMem_Free(rw);
    PyMem_Free(outer);
    PyMem_Free(vt);
    PyMem_Free(ht);
    PyMem_Free(off);
    free(mid);
    release(&src);
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
    if (!(work = aligned(8 * (4 + 2 * (h + 1)) * mid_len))) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    window_sums_band_f64(src.view.buf, src.sr, sums.view.buf, sums.sr, sq.view.buf, sq.sr,
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

PyDoc_STRVAR(info_doc, "info()\n--\n\nThe build: {'simd': the clone this CPU runs, ...}.");

static PyObject *info(PyObject *self, PyObject *unused)
{
    const char *simd = "baseline";
#if CLONES
    __builtin_cpu_init();
    if (__builtin_cpu_supports("x86-64-v4")) simd = "x86-64-v4 (AVX-512)";
    else if (__builtin_cpu_supports("x86-64-v3")) simd = "x86-64-v3 (AVX2)";
#endif
    return Py_BuildValue("{s:s,s:i,s:i,s:i}", "simd", simd, "clones", CLONES,
                         "running_min_taps", RUNNING_MIN_TAPS, "doubling_min_taps",
                         DOUBLING_MIN_TAPS);
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
    {"info", info, METH_NOARGS, info_doc},
    MATCH_METHODS
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_native",
    "Compiled band kernels of convtool's engine (see convtool/engine/_native.c).", -1, methods,
};

PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&module); }
