/* PNG row unfiltering (convtool.images._png): the one step of decoding a PNG's pixels that
 * neither zlib nor numpy does fast. The inflated IDAT stream is height rows, each a filter
 * type byte and row_bytes bytes; each row is reconstructed from its filtered bytes and the
 * row above (already reconstructed), as the PNG specification's section 7.3 says. The GIL is
 * released: nothing here touches a Python object. A filter byte over 4 stops with the row's
 * number, so a damaged file is refused, never decoded into garbage.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static inline uint8_t paeth(int a, int b, int c)
{
    int p = a + b - c;
    int pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
    if (pa <= pb && pa <= pc)
        return (uint8_t)a;
    return (uint8_t)(pb <= pc ? b : c);
}

/* One row: cur holds the filtered bytes on entry and the raw bytes on exit; prev is the raw
 * row above (zeros for the first row). bpp: bytes per complete pixel, at least 1. */
static int unfilter_row(int kind, const uint8_t *in, uint8_t *cur, const uint8_t *prev,
                        Py_ssize_t n, Py_ssize_t bpp)
{
    Py_ssize_t i;
    switch (kind) {
    case 0:
        memcpy(cur, in, (size_t)n);
        return 0;
    case 1: /* Sub */
        for (i = 0; i < n && i < bpp; i++)
            cur[i] = in[i];
        for (; i < n; i++)
            cur[i] = (uint8_t)(in[i] + cur[i - bpp]);
        return 0;
    case 2: /* Up */
        for (i = 0; i < n; i++)
            cur[i] = (uint8_t)(in[i] + prev[i]);
        return 0;
    case 3: /* Average */
        for (i = 0; i < n && i < bpp; i++)
            cur[i] = (uint8_t)(in[i] + (prev[i] >> 1));
        for (; i < n; i++)
            cur[i] = (uint8_t)(in[i] + ((cur[i - bpp] + prev[i]) >> 1));
        return 0;
    case 4: /* Paeth */
        for (i = 0; i < n && i < bpp; i++)
            cur[i] = (uint8_t)(in[i] + prev[i]); /* left and upper left are 0: Paeth = up */
        for (; i < n; i++)
            cur[i] = (uint8_t)(in[i] + paeth(cur[i - bpp], prev[i], prev[i - bpp]));
        return 0;
    default:
        return -1;
    }
}

static PyObject *unfilter(PyObject *self, PyObject *args)
{
    Py_buffer src, dst;
    Py_ssize_t height, row_bytes, bpp;
    if (!PyArg_ParseTuple(args, "y*w*nnn", &src, &dst, &height, &row_bytes, &bpp))
        return NULL;
    PyObject *result = NULL;
    if (height < 0 || row_bytes < 1 || bpp < 1 || bpp > 8) {
        PyErr_SetString(PyExc_ValueError, "unfilter: bad geometry");
        goto done;
    }
    if (height > 0 && (row_bytes + 1 > PY_SSIZE_T_MAX / height || src.len != height * (row_bytes + 1)
                       || dst.len != height * row_bytes)) {
        PyErr_SetString(PyExc_ValueError, "unfilter: buffer sizes do not match the geometry");
        goto done;
    }
    uint8_t *zeros = calloc((size_t)row_bytes, 1);
    if (zeros == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t bad = -1;
    Py_BEGIN_ALLOW_THREADS
    const uint8_t *in = src.buf;
    uint8_t *out = dst.buf;
    const uint8_t *prev = zeros;
    for (Py_ssize_t y = 0; y < height; y++) {
        const uint8_t *row = in + y * (row_bytes + 1);
        uint8_t *cur = out + y * row_bytes;
        if (unfilter_row(row[0], row + 1, cur, prev, row_bytes, bpp) < 0) {
            bad = y;
            break;
        }
        prev = cur;
    }
    Py_END_ALLOW_THREADS
    free(zeros);
    if (bad >= 0) {
        PyErr_Format(PyExc_ValueError, "row %zd has filter type %d (PNG knows 0 to 4)", bad,
                     (int)((const uint8_t *)src.buf)[bad * (row_bytes + 1)]);
        goto done;
    }
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&src);
    PyBuffer_Release(&dst);
    return result;
}

static PyMethodDef methods[] = {
    {"unfilter", unfilter, METH_VARARGS,
     "unfilter(raw, out, height, row_bytes, bpp): PNG rows (a filter byte and row_bytes "
     "bytes each) reconstructed into out (height * row_bytes bytes)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_png", NULL, -1, methods};

PyMODINIT_FUNC PyInit__png(void) { return PyModule_Create(&module); }
