/* One SIMD level's kernels, included by _native.c once per level (each under its own
 * `#pragma GCC target`), with
 *   LEVEL        the names' suffix (_v4, _v3, _base): L(x) = x##LEVEL, F(x) = x##_f32##LEVEL...
 *   VEC_BYTES    the bytes of the generic vectors in the register blocks: the level's
 *                register width (64: zmm, 32: ymm, 16: xmm), so that a vector is one register
 *   F_VECS_N     the float register blocks' accumulators (8 or 4: see _native.c)
 *   LEVEL_TYPES  1 for the first level included: it defines the types all levels share
 *                (rtap_t_*, pass_t_*, kernels_t); the others reuse them.
 * and defines `kernels##LEVEL`, the level's table of entry points.
 */

#define F_VEC_BYTES VEC_BYTES
#define I_VEC_BYTES VEC_BYTES
#define F_TYPES LEVEL_TYPES

#define F(name) CT_CAT(name##_f32, LEVEL)
#define REAL float
#include "_native_float.h"
#undef REAL
#undef F
#define F(name) CT_CAT(name##_f64, LEVEL)
#define REAL double
#define F_WINDOW_SUMS
#include "_native_float.h"
#undef F_WINDOW_SUMS
#undef REAL
#undef F

#define I(name) CT_CAT(name##_u16, LEVEL)
#define ACC uint16_t
#define SCALED float
#define ROUNDER 0x1.8p23f
#include "_native_int.h"
#undef I
#undef ACC
#undef SCALED
#undef ROUNDER
#define I(name) CT_CAT(name##_u32, LEVEL)
#define ACC uint32_t
#define SCALED double
#define ROUNDER 0x1.8p52
#include "_native_int.h"
#undef I
#undef ACC
#undef SCALED
#undef ROUNDER

#define MATCH_KERNELS
#include "_native_match.h"
#undef MATCH_KERNELS

#if LEVEL_TYPES
/* The entry points of one level: what the Python functions of _native.c call. */
typedef struct {
    void (*direct_band_f32)(rowsrc_t *, ptrdiff_t, ptrdiff_t, float *, ptrdiff_t, ptrdiff_t,
                            ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t,
                            ptrdiff_t, const tap_t *, int, const float **, rtap_t_f32 *,
                            const pairs_t *, int, uint8_t *, float *);
    void (*direct_band_f64)(rowsrc_t *, ptrdiff_t, ptrdiff_t, double *, ptrdiff_t, ptrdiff_t,
                            ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t,
                            ptrdiff_t, const tap_t *, int, const double **, rtap_t_f64 *,
                            const pairs_t *, int, uint8_t *, double *);
    void (*separable_band_f32)(rowsrc_t *, ptrdiff_t, ptrdiff_t, float *, ptrdiff_t, ptrdiff_t,
                               ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t,
                               const pass_t_f32 *, const pass_t_f32 *, ptrdiff_t, ptrdiff_t,
                               ptrdiff_t, float *, const float **, rtap_t_f32 *, uint8_t *, float *);
    void (*separable_band_f64)(rowsrc_t *, ptrdiff_t, ptrdiff_t, double *, ptrdiff_t,
                               ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t,
                               ptrdiff_t, const pass_t_f64 *, const pass_t_f64 *, ptrdiff_t,
                               ptrdiff_t, ptrdiff_t, double *, const double **, rtap_t_f64 *, uint8_t *, double *);
    void (*single_band_f32)(rowsrc_t *, ptrdiff_t, ptrdiff_t, float *, ptrdiff_t, ptrdiff_t,
                            ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t,
                            const pass_t_f32 *, int, ptrdiff_t, ptrdiff_t, float *,
                            const float **, rtap_t_f32 *, uint8_t *, float *);
    void (*single_band_f64)(rowsrc_t *, ptrdiff_t, ptrdiff_t, double *, ptrdiff_t, ptrdiff_t,
                            ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t,
                            const pass_t_f64 *, int, ptrdiff_t, ptrdiff_t, double *,
                            const double **, rtap_t_f64 *, uint8_t *, double *);
    void (*window_sums_band_f64)(const double *, ptrdiff_t, double *, ptrdiff_t, double *,
                                 ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t,
                                 ptrdiff_t, int, int, ptrdiff_t, double *);
    void (*direct_band_u16)(rowsrc_t *, ptrdiff_t, ptrdiff_t, char *, ptrdiff_t, ptrdiff_t, int,
                            ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t,
                            ptrdiff_t, const tap_t *, int, int32_t, float, int, int32_t,
                            const uint8_t **, void *);
    void (*direct_band_u32)(rowsrc_t *, ptrdiff_t, ptrdiff_t, char *, ptrdiff_t, ptrdiff_t, int,
                            ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t,
                            ptrdiff_t, const tap_t *, int, int32_t, double, int, int32_t,
                            const uint8_t **, void *);
    void (*separable_band_u16)(rowsrc_t *, ptrdiff_t, ptrdiff_t, char *, ptrdiff_t, ptrdiff_t,
                               int, ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t,
                               ptrdiff_t, ptrdiff_t, const tap_t *, int, const tap_t *, int,
                               ptrdiff_t, ptrdiff_t, int32_t, float, int, int32_t, uint16_t *,
                               const uint8_t **, void *, uint16_t *, ptrdiff_t, ptrdiff_t,
                               uint16_t *);
    void (*separable_band_u32)(rowsrc_t *, ptrdiff_t, ptrdiff_t, char *, ptrdiff_t, ptrdiff_t,
                               int, ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t,
                               ptrdiff_t, ptrdiff_t, const tap_t *, int, const tap_t *, int,
                               ptrdiff_t, ptrdiff_t, int32_t, double, int, int32_t, uint32_t *,
                               const uint8_t **, void *, uint32_t *, ptrdiff_t, ptrdiff_t,
                               uint32_t *);
    void (*zncc_scores_rows)(const double *, ptrdiff_t, const double *, ptrdiff_t,
                             const double *, ptrdiff_t, double *, ptrdiff_t, ptrdiff_t,
                             ptrdiff_t, double, double, double);
    void (*zncc_tile_rows_f64)(const double *, ptrdiff_t, double, const double *, ptrdiff_t,
                               double *, ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t,
                               double, double, ptrdiff_t, double *);
    void (*zncc_tile_rows_f32)(const float *, ptrdiff_t, double, const double *, ptrdiff_t,
                               double *, ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t,
                               double, double, ptrdiff_t, double *);
} kernels_t;
#endif

static const kernels_t L(kernels) = {
    F32(direct_band), F64(direct_band), F32(separable_band), F64(separable_band),
    F32(single_band), F64(single_band), F64(window_sums_band), U16(direct_band),
    U32(direct_band), U16(separable_band), U32(separable_band), L(zncc_scores_rows),
    L(zncc_tile_rows_f64), L(zncc_tile_rows_f32),
};

#undef F_VEC_BYTES
#undef I_VEC_BYTES
#undef F_TYPES
