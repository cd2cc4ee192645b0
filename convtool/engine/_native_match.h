/* Template matching's scores (convtool/match/tiled.py), included by _native.c: with
 * MATCH_KERNELS once per SIMD level (the loops, named L(...)), then once without (the Python
 * functions, after its helpers array_t, get_array, release, aligned and the kernel table).
 *
 * zncc_scores: out = numerator / sqrt((s2 - s1*s1/n) * t_energy), clipped to [-1, 1], and 0
 * where the window's energy s2 - s1*s1/n is at most `flat`: in one pass over a tile, instead
 * of numpy's eight. The same operations in the same order as the numpy fallback beside it
 * (square, divide, subtract, multiply, sqrt, divide, clip; -ffp-contract=off), so both give
 * the same bits.
 *
 * zncc_tile: the same scores, with the window sums s1 and s2 of the tile made on the way, a
 * row of outputs at a time (nothing of the tile's size is written but the scores). Column
 * sums of h rows run down the tile and start afresh every ZNCC_RESTART_ROWS rows (or 2h, if
 * more); along a row, the window sums run over segments of at least ZNCC_SEGMENT outputs,
 * each started by a plain sum of its first window, ZNCC_LANES segments side by side so that
 * the additions overlap. A running sum that adds and drops L terms has the rounding of a sum
 * of about 2L + taps terms: with these lengths that stays below the bound that
 * scores._flat_energy allows for (blocked prefix sums of 1024 outputs).
 */

#define ZNCC_RESTART_ROWS 512
#define ZNCC_SEGMENT 64
#define ZNCC_LANES 4

#ifdef MATCH_KERNELS
HOT static void L(zncc_scores_rows)(const double *num, ptrdiff_t num_r, const double *s1,
                                 ptrdiff_t s1_r, const double *s2, ptrdiff_t s2_r, double *out,
                                 ptrdiff_t out_r, ptrdiff_t rows, ptrdiff_t cols, double n,
                                 double t_energy, double flat)
{
    for (ptrdiff_t j = 0; j < rows; j++) {
        const double *restrict a = num + j * num_r, *restrict b = s1 + j * s1_r,
                               *restrict c = s2 + j * s2_r;
        double *restrict o = out + j * out_r;
        for (ptrdiff_t i = 0; i < cols; i++) {
            const double energy = c[i] - b[i] * b[i] / n;
            /* a flat window's energy may be negative: its sqrt is NaN, and unused */
            double score = a[i] / sqrt(energy * t_energy);
            score = score > 1.0 ? 1.0 : score < -1.0 ? -1.0 : score;
            o[i] = energy > flat ? score : 0.0;
        }
    }
}

/* The scores of one row of outputs from its column sums c1, c2 (cols + w - 1 of them, then
 * zero padding up to lanes * seg + w - 1): window sums into r1, r2 (lanes * seg), then the
 * scores. */
ALWAYS_INLINE void L(zncc_row)(const double *restrict c1, const double *restrict c2,
                               double *restrict r1, double *restrict r2, ptrdiff_t seg,
                               ptrdiff_t w)
{
    double a[ZNCC_LANES] = {0.0}, b[ZNCC_LANES] = {0.0};
    for (ptrdiff_t q = 0; q < w; q++) /* the lanes' first windows, side by side */
        for (int k = 0; k < ZNCC_LANES; k++) {
            a[k] += c1[k * seg + q];
            b[k] += c2[k * seg + q];
        }
    for (int k = 0; k < ZNCC_LANES; k++) {
        r1[k * seg] = a[k];
        r2[k * seg] = b[k];
    }
    for (ptrdiff_t i = 1; i < seg; i++)
        for (int k = 0; k < ZNCC_LANES; k++) {
            const ptrdiff_t o = k * seg + i;
            a[k] += c1[o + w - 1] - c1[o - 1];
            b[k] += c2[o + w - 1] - c2[o - 1];
            r1[o] = a[k];
            r2[o] = b[k];
        }
}

/* The column sums of h rows of (x - mean) start afresh at restart rows, else run on. */
#define ZNCC_TILE_ROWS(NAME, SRC)                                                             \
    HOT static void NAME(const SRC *x, ptrdiff_t x_r, double mean, const double *num,        \
                         ptrdiff_t num_r, double *out, ptrdiff_t out_r, ptrdiff_t rows,      \
                         ptrdiff_t cols, ptrdiff_t h, ptrdiff_t w, double t_energy,          \
                         double flat, ptrdiff_t seg, double *work)                           \
    {                                                                                         \
        const ptrdiff_t span = cols + w - 1, padded = ZNCC_LANES * seg + w - 1;              \
        const ptrdiff_t restart = 2 * h > ZNCC_RESTART_ROWS ? 2 * h : ZNCC_RESTART_ROWS;     \
        const double n = (double)(h * w);                                                     \
        double *c1 = work, *c2 = c1 + padded, *r1 = c2 + padded, *r2 = r1 + ZNCC_LANES * seg; \
        for (ptrdiff_t i = span; i < padded; i++) c1[i] = c2[i] = 0.0;                        \
        for (ptrdiff_t j = 0; j < rows; j++) {                                                \
            if (j % restart == 0) {                                                           \
                for (ptrdiff_t i = 0; i < span; i++) c1[i] = c2[i] = 0.0;                     \
                for (ptrdiff_t a = 0; a < h; a++) {                                           \
                    const SRC *restrict row = x + (j + a) * x_r;                              \
                    for (ptrdiff_t i = 0; i < span; i++) {                                    \
                        const double v = (double)row[i] - mean;                               \
                        c1[i] += v;                                                           \
                        c2[i] += v * v;                                                       \
                    }                                                                         \
                }                                                                             \
            } else {                                                                          \
                const SRC *restrict add = x + (j + h - 1) * x_r;                              \
                const SRC *restrict drop = x + (j - 1) * x_r;                                 \
                for (ptrdiff_t i = 0; i < span; i++) {                                        \
                    const double u = (double)add[i] - mean, v = (double)drop[i] - mean;       \
                    c1[i] += u - v;                                                           \
                    c2[i] += u * u - v * v;                                                   \
                }                                                                             \
            }                                                                                 \
            L(zncc_row)(c1, c2, r1, r2, seg, w);                                              \
            L(zncc_scores_rows)(num + j * num_r, 0, r1, 0, r2, 0, out + j * out_r, 0, 1,      \
                                cols, n, t_energy, flat);                                     \
        }                                                                                     \
    }

ZNCC_TILE_ROWS(L(zncc_tile_rows_f64), double)
ZNCC_TILE_ROWS(L(zncc_tile_rows_f32), float)
#undef ZNCC_TILE_ROWS

#else /* the Python functions */

static const char *zncc_kwlist[] = {"numerator", "sums", "squares", "out", "n", "t_energy",
                                    "flat", NULL};

PyDoc_STRVAR(zncc_scores_doc,
"zncc_scores(numerator, sums, squares, out, n, t_energy, flat)\n--\n\n"
"float64, 2-D, all of out's shape: out = numerator / sqrt((squares - sums**2 / n) *\n"
"t_energy) clipped to [-1, 1], and 0 where squares - sums**2 / n <= flat. Releases the GIL.");

static PyObject *zncc_scores(PyObject *self, PyObject *args, PyObject *kw)
{
    PyObject *o_num, *o_s1, *o_s2, *o_out;
    double n, t_energy, flat;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOddd", (char **)zncc_kwlist, &o_num, &o_s1,
                                     &o_s2, &o_out, &n, &t_energy, &flat))
        return NULL;
    array_t num, s1, s2, out;
    memset(&s1, 0, sizeof s1);
    memset(&s2, 0, sizeof s2);
    memset(&out, 0, sizeof out);
    PyObject *result = NULL;
    if (get_array(o_num, &num, 0, "numerator") < 0 || get_array(o_s1, &s1, 0, "sums") < 0 ||
        get_array(o_s2, &s2, 0, "squares") < 0 || get_array(o_out, &out, 1, "out") < 0)
        goto done;
    if (num.kind != 'd' || s1.kind != 'd' || s2.kind != 'd' || out.kind != 'd') {
        PyErr_SetString(PyExc_TypeError, "zncc_scores works on float64 arrays");
        goto done;
    }
    const array_t *all[3] = {&num, &s1, &s2};
    for (int k = 0; k < 3; k++)
        if (all[k]->c != 1 || all[k]->r != out.r || all[k]->w != out.w) {
            PyErr_SetString(PyExc_ValueError, "zncc_scores: 2-D arrays of out's shape expected");
            goto done;
        }
    if (out.c != 1) {
        PyErr_SetString(PyExc_ValueError, "zncc_scores: 2-D arrays of out's shape expected");
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    kernels->zncc_scores_rows(num.view.buf, num.sr, s1.view.buf, s1.sr, s2.view.buf, s2.sr,
                     out.view.buf, out.sr, out.r, out.w, n, t_energy, flat);
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    release(&num);
    release(&s1);
    release(&s2);
    release(&out);
    return result;
}


static const char *zncc_tile_kwlist[] = {"part", "numerator", "out", "height", "width",
                                         "t_energy", "flat", "mean", NULL};

PyDoc_STRVAR(zncc_tile_doc,
"zncc_tile(part, numerator, out, height, width, t_energy, flat, mean=0.0)\n--\n\n"
"2-D: the scores of zncc_scores (float64) for out's (rows, cols) windows of height x width\n"
"in part - mean (part float32 or float64, at least rows + height - 1 by cols + width - 1;\n"
"part - mean in float64), their sums and sums of squares made here by running sums (see\n"
"_native_match.h). Releases the GIL.");

static PyObject *zncc_tile(PyObject *self, PyObject *args, PyObject *kw)
{
    PyObject *o_x, *o_num, *o_out;
    Py_ssize_t h, w;
    double t_energy, flat, mean = 0.0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOnndd|d", (char **)zncc_tile_kwlist, &o_x,
                                     &o_num, &o_out, &h, &w, &t_energy, &flat, &mean))
        return NULL;
    array_t x, num, out;
    memset(&num, 0, sizeof num);
    memset(&out, 0, sizeof out);
    double *work = NULL;
    PyObject *result = NULL;
    if (get_array(o_x, &x, 0, "part") < 0 || get_array(o_num, &num, 0, "numerator") < 0 ||
        get_array(o_out, &out, 1, "out") < 0)
        goto done;
    if ((x.kind != 'd' && x.kind != 'f') || num.kind != 'd' || out.kind != 'd') {
        PyErr_SetString(PyExc_TypeError, "zncc_tile: part float32 or float64, the rest float64");
        goto done;
    }
    if (x.c != 1 || num.c != 1 || out.c != 1 || num.r != out.r || num.w != out.w || h < 1 ||
        w < 1 || out.r < 1 || out.w < 1 || out.r + h - 1 > x.r || out.w + w - 1 > x.w) {
        PyErr_SetString(PyExc_ValueError,
                        "zncc_tile: 2-D arrays with numerator, out (rows, cols) and part at "
                        "least (rows + height - 1, cols + width - 1) expected");
        goto done;
    }
    Py_ssize_t seg = (out.w + ZNCC_LANES - 1) / ZNCC_LANES;
    if (seg < ZNCC_SEGMENT) seg = ZNCC_SEGMENT;
    if (!(work = aligned(sizeof(double) * 4 * (ZNCC_LANES * seg + w)))) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    if (x.kind == 'd')
        kernels->zncc_tile_rows_f64(x.view.buf, x.sr, mean, num.view.buf, num.sr, out.view.buf, out.sr,
                           out.r, out.w, h, w, t_energy, flat, seg, work);
    else
        kernels->zncc_tile_rows_f32(x.view.buf, x.sr, mean, num.view.buf, num.sr, out.view.buf, out.sr,
                           out.r, out.w, h, w, t_energy, flat, seg, work);
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    free(work);
    release(&x);
    release(&num);
    release(&out);
    return result;
}

#define MATCH_METHODS                                                                         \
    {"zncc_scores", (PyCFunction)(void (*)(void))zncc_scores, METH_VARARGS | METH_KEYWORDS,  \
     zncc_scores_doc},                                                                        \
    {"zncc_tile", (PyCFunction)(void (*)(void))zncc_tile, METH_VARARGS | METH_KEYWORDS,      \
     zncc_tile_doc},

#endif /* MATCH_KERNELS */
