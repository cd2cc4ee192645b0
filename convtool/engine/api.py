"""Exact, fast 2-D correlation and convolution over the last two axes of an array.

Conventions (scipy.ndimage's): output pixel ``i`` of a correlation reads input pixels
``i - c + a*d`` for taps ``a = 0..k-1``, where ``c = K//2 + origin`` is the kernel centre
and ``K = (k-1)*d + 1`` the kernel's side once dilated by ``d``. Convolution is correlation
with the flipped kernel and the mirrored origin (``-origin``, and ``-1`` more on axes of even
``K``), exactly as ``scipy.ndimage.convolve``. ``valid`` reads no padding and shrinks the output
by ``K-1``; ``full`` pads ``K-1`` zeros on each side and grows it by ``K-1``. A stride ``s``
keeps output pixels ``0, s, 2s, ...``. :func:`carry` moves what is not filtered (alpha,
channels left alone) with the same geometry: one function (``plan.axes``) holds it.

The work is split into bands of output rows. Each band gathers only its own padded rows
(padding is an index map, the image is never padded as a whole), computes them with one of
the METHODS (direct and separable: ``bands`` over ``passes``; FFT: ``fftconv``), and writes
into the output; bands run on a thread pool (numpy and scipy.fft release the GIL), each
thread reusing one band's arrays. Peak memory is the input, the output and the bands in
flight, which are sized to stay within one more image (see plan.band_within_budget).

This module holds the public API and the call's path (normalise → plan → run); its
arguments are checked by ``arguments``; ``plan`` holds the geometry, the method choice and
the measured constants; ``schedule`` runs the bands. Past 400 lines by its public
docstrings (the conventions, ``out_dtype``, ``channel_axis``, ``work_dtype``), which are the
engine's reference.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from convtool.choices import Method, values
from convtool.engine import native
from convtool.engine.arguments import (
    as_image,
    as_integer,
    as_kernel,
    as_number,
    as_pair,
    short_repr,
)
from convtool.engine.bands import source_positions
from convtool.engine.integer import integer_factors, integer_weights
from convtool.engine.kept import Recent
from convtool.engine.plan import (
    MAX_STEP,
    MAX_THREADS,
    Axis,
    Plan,
    axes,
    choose_method,
    separable_factors,
    tuning,
)
from convtool.engine.schedule import run
from convtool.errors import UsageError
from convtool.padding import Padding, parse_padding

__all__ = ["METHODS", "carry", "choose_method", "convolve", "correlate", "separable_factors"]

METHODS = values(Method)


# ----------------------------------------------------------------------------- public API


def correlate(
    image,
    kernel,
    *,
    padding: Padding | str = Padding.REFLECT,
    cval: float = 0.0,
    stride=1,
    dilation=1,
    origin=None,
    method: str = "auto",
    threads: int | None = None,
    out_dtype=None,
    channel_axis: int | None = None,
    work_dtype=None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Correlate the last two axes of ``image`` with ``kernel`` (the kernel as written).

    ``out[i, j] = sum_ab w[a, b] * x[i - cy + a*dy, j - cx + b*dx]`` with ``c = K//2 + origin``
    (scipy.ndimage.correlate for the same-size paddings). Float32 and float64 images keep
    their dtype; other images are computed in float64. ``kernel`` is a 2-D array-like (1-D is
    one row) or an object with ``.weights`` and optional ``.factors`` (column, row) and
    ``.origin``; ``origin=None`` takes the kernel's own origin, if any. The image should be
    finite: a NaN or infinity may spread past the kernel's window on the running-sum and
    FFT paths (:class:`convtool.pipeline.Chain` and the CLI refuse such images).

    ``out_dtype=np.uint8``: return ``clip(rint(result), 0, 255)`` as uint8 (round half to
    even, as writing an 8-bit file with ``--range clip`` does). For uint8 images and kernels
    of small integers times a power-of-two or odd scale (Sobel, Prewitt, Scharr, Laplacian,
    sharpen, binomials, boxes with their divisor) the compiled integer kernels compute it
    without a float image, bit for bit equal to float64 then rounding (the bound:
    :mod:`convtool.engine.integer`); otherwise it is float64, then rounded, band by band
    (no float image is held). ``work_dtype=np.float32`` (or float64) instead computes in
    that dtype and rounds, never with the integer kernels: the same bytes as this call
    without ``out_dtype`` on the image converted to ``work_dtype``, then rounded.

    ``channel_axis=-1``: ``image`` is ``(..., H, W, C)``, channels interleaved as a decoded
    file holds them, and so is the result, each channel filtered on its own. With a column
    stride of 1 the rows are filtered as they lie in memory (``W*C`` samples, taps ``C``
    apart, padding by whole pixels): no copy changes the layout on the way in or out.

    ``out``: a writable array of the result's shape and dtype, which the result is written
    into and which is returned (scipy.ndimage's ``output`` array, OpenCV's ``dst``). A loop
    over frames of one size then makes no new array per call: the pages of a new one are
    zeroed by the system as they are first written, a third of a 4096² Sobel's time here.
    It may overlap ``image`` (the result is then computed aside and copied in).
    """
    return _filter(
        image,
        kernel,
        False,
        padding,
        cval,
        stride,
        dilation,
        origin,
        method,
        threads,
        out_dtype,
        channel_axis,
        work_dtype,
        out,
    )


def convolve(
    image,
    kernel,
    *,
    padding: Padding | str = Padding.REFLECT,
    cval: float = 0.0,
    stride=1,
    dilation=1,
    origin=None,
    method: str = "auto",
    threads: int | None = None,
    out_dtype=None,
    channel_axis: int | None = None,
    work_dtype=None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Convolve the last two axes of ``image`` with ``kernel`` (true convolution, kernel flipped).

    Equal to :func:`correlate` with ``kernel[::-1, ::-1]`` and the origin mirrored as
    scipy.ndimage.convolve mirrors it (``-origin``, minus 1 on axes of even size), so an
    impulse yields the kernel as written. Arguments as for :func:`correlate`.
    """
    return _filter(
        image,
        kernel,
        True,
        padding,
        cval,
        stride,
        dilation,
        origin,
        method,
        threads,
        out_dtype,
        channel_axis,
        work_dtype,
        out,
    )


def carry(
    image,
    kernel,
    *,
    convolve: bool = True,
    padding: Padding | str = Padding.REFLECT,
    cval: float = 0.0,
    stride=1,
    dilation=1,
    origin=None,
) -> np.ndarray:
    """Move ``image`` as filtering it with ``kernel`` would, without mixing its pixels.

    The result has the filtered shape, and each output pixel takes the input value it
    stands on: the one under the window's centre, position ``K//2 + origin`` of the kernel
    as written (``K`` its dilated side), in convolution and correlation alike (convolution
    flips the kernel and mirrors the origin, so that position stays on the output pixel).
    That is what alpha and unfiltered channels become beside filtered ones: the same crop
    (``valid``), padding (``full``, whose ring is 0) and stride, from the same window
    arithmetic as :func:`correlate` and :func:`convolve`. Only the kernel's shape and
    origin matter; ``convolve`` says which of the two the geometry is for. The dtype is kept.

    >>> carry(np.arange(5.0)[None], np.ones((1, 2)), padding="valid")  # correlating: 1 2 3 4
    array([[0., 1., 2., 3.]])
    """
    x = as_image(image)
    weights, _, kernel_origin = as_kernel(kernel)
    padding = parse_padding(padding)
    cval = as_number(cval, "cval") if padding is Padding.CONSTANT else 0.0  # the others fill 0
    origin = kernel_origin if origin is None else origin
    rows, cols = _axes(x.shape, weights.shape, convolve, padding, stride, dilation, origin)
    out = x
    for along, geometry in ((-2, rows), (-1, cols)):
        source = source_positions(geometry.anchors(), geometry.n, padding)  # -1: the constant
        out = np.take(out, np.maximum(source, 0), axis=along)
        if (source < 0).any():
            out[(slice(None),) * (out.ndim + along) + (source < 0,)] = cval
    return out


def _axes(shape, kernel_shape, flip, padding, stride, dilation, origin):
    """The validated pairs, then :func:`convtool.engine.plan.axes` on the image's last two axes."""
    stride = as_pair(stride, "stride", maximum=MAX_STEP)
    dilation = as_pair(dilation, "dilation", maximum=MAX_STEP)
    origin = as_pair(origin, "origin", minimum=None)
    return axes(shape[-2:], kernel_shape, flip, padding, stride, dilation, origin)


# ----------------------------------------------------------------------------- normalise, plan, run


@dataclass(frozen=True)
class _Request:
    """One call's arguments, checked and in canonical form (correlation, kernel flipped)."""

    x: np.ndarray
    weights: np.ndarray
    factors: tuple[np.ndarray, np.ndarray] | None
    padding: Padding
    cval: float
    rows: Axis
    cols: Axis
    method: str
    threads: int | None
    out_dtype: np.dtype | None
    # How the caller's channels lie: "planes" (..., H, W) as given; "interleaved" (..., H, W,
    # C) filtered as rows of W*C samples (unit C); "moved" (..., H, W, C) filtered as the
    # (..., C, H, W) view and moved back (a column stride: outputs are not every sample).
    layout: str = "planes"
    unit: int = 1
    work_dtype: np.dtype | None = None  # the float path's dtype for out_dtype (None: choose)
    out: np.ndarray | None = None  # the caller's array for the result


def _filter(*arguments) -> np.ndarray:
    """Normalise the arguments (those of :func:`_normalise`), plan the call, run it over
    bands of output rows; a call whose arguments are those of a recent one (a frame loop,
    a batch's images of one size, a chain's steps) takes its checked request and plan."""
    arguments += (None,) * (_ARGUMENTS - len(arguments))  # (_normalise's defaults)
    key = _arguments_key(arguments)
    found = _CALLS.get(key) if key is not None else None
    if found is None:
        request = _normalise(*arguments)
        plan, method = _plan(request)
        if key is not None:
            _CALLS.put(key, (replace(request, x=_NO_IMAGE, out=None), plan, method))
        return _run(request, plan, method)
    template, plan, method = found
    image, out = arguments[0], arguments[-1]
    if template.layout == "interleaved":
        image = image.reshape(image.shape[:-2] + (image.shape[-2] * image.shape[-1],))
    elif template.layout == "moved":
        image = np.moveaxis(image, -1, -3)
    request = _Request(
        image,
        template.weights,
        template.factors,
        template.padding,
        template.cval,
        template.rows,
        template.cols,
        template.method,
        template.threads,
        template.out_dtype,
        template.layout,
        template.unit,
        template.work_dtype,
        out,
    )
    return _run(request, plan, method)


# The checked requests and plans of recent calls, by their arguments as given: checking them
# and finding the plan (_normalise, _plan) took 0.1-0.13 ms of a 1.2 ms float32 2048^2
# Sobel on 2 threads, its code and data evicted by the image from the call before; the key
# ~10 us. Only for arguments whose every part the key holds, with its type (a stride of
# True is refused where 1 is not): ndarray image and kernel, plain numbers, strings, pairs.
_CALLS: Recent[tuple, tuple[_Request, Plan, str]] = Recent(32)
_NO_IMAGE = np.empty((0, 0))
_PLAIN = (int, float, str, bool, type(None), Padding)


def _arguments_key(arguments) -> tuple | None:
    """What decides a call's request and plan, from its arguments as given (those of
    :func:`_normalise`), or None when a part is not a plain value the key can hold."""
    image, kernel, *rest, out = arguments
    if type(image) is not np.ndarray or type(kernel) is not np.ndarray:
        return None
    if out is not None and not (type(out) is np.ndarray and out.flags.writeable):
        return None  # (the checks say what is wrong with it)
    if kernel.dtype.kind not in "biuf" or kernel.size > 4096:
        return None
    parts: list = [image.shape, image.dtype, kernel.shape, kernel.dtype, kernel.tobytes()]
    for value in rest:
        kind = type(value)
        if kind is tuple:
            if len(value) > 2 or any(type(v) not in (int, bool) for v in value):
                return None
            parts.append((kind, *((type(v), v) for v in value)))
        elif kind in _PLAIN or isinstance(value, (np.dtype, type)):
            parts.append((kind, value))
        else:
            return None
    parts.append(native.module() is not None)  # (CONVTOOL_NATIVE, read at each call)
    parts.append(tuning())
    return tuple(parts)


def _normalise(
    image,
    kernel,
    flip,
    padding,
    cval,
    stride,
    dilation,
    origin,
    method,
    threads,
    out_dtype,
    channel_axis=None,
    work_dtype=None,
    out=None,
) -> _Request:
    """Check every argument (one UsageError for the first wrong one) and flip for convolution."""
    x = as_image(image)
    if channel_axis is not None:
        if channel_axis not in (-1, x.ndim - 1) or x.ndim < 3:
            raise UsageError(
                f"channel_axis must be None or -1 (an (..., H, W, C) image), got "
                f"{short_repr(channel_axis)} for shape {x.shape}"
            )
        if x.shape[-3] == 0:
            raise UsageError(f"image is empty: shape {x.shape}")
    weights, factors, kernel_origin = as_kernel(kernel)
    padding = parse_padding(padding)
    origin = kernel_origin if origin is None else origin
    if method not in METHODS:
        raise UsageError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if threads is not None:
        threads = as_integer(threads, "threads", maximum=MAX_THREADS)
    cval = 0.0 if padding is Padding.ZERO else as_number(cval, "cval")
    if out_dtype is not None:
        out_dtype = np.dtype(out_dtype)
        if out_dtype != np.uint8:
            raise UsageError(f"out_dtype must be None or uint8, got {out_dtype}")
    if work_dtype is not None:
        work_dtype = np.dtype(work_dtype)
        if work_dtype not in (np.float32, np.float64) or out_dtype is None:
            raise UsageError(
                f"work_dtype must be None, float32 or float64, with out_dtype; got {work_dtype}"
            )
    pixels = x.shape if channel_axis is None else x.shape[:-1]
    rows, cols = _axes(pixels, weights.shape, flip, padding, stride, dilation, origin)
    if flip:  # correlation form (plan.correlation_form); _axes mirrored the origin
        weights = weights[::-1, ::-1]
        factors = None if factors is None else (factors[0][::-1], factors[1][::-1])
    if out is not None and not (isinstance(out, np.ndarray) and out.flags.writeable):
        raise UsageError(f"out must be a writable numpy array, got {short_repr(out)}")
    layout, unit = "planes", 1
    if channel_axis is not None:
        x, cols, layout, unit = _channels_last(x, cols)
    return _Request(
        x,
        weights,
        factors,
        padding,
        cval,
        rows,
        cols,
        method,
        threads,
        out_dtype,
        layout,
        unit,
        work_dtype,
        out,
    )


_ARGUMENTS = _normalise.__code__.co_argcount  # (a call's arguments, defaults included)


def _channels_last(x: np.ndarray, cols: Axis) -> tuple[np.ndarray, Axis, str, int]:
    """An (..., H, W, C) image as the engine filters it: rows of ``W*C`` samples whose
    taps lie ``C`` apart (output sample ``x*C + c`` reads input samples ``(x + ...)*C + c``:
    the pixel geometry times C), or, with a column stride, the (..., C, H, W) view."""
    c = x.shape[-1]
    if cols.stride != 1:
        return np.moveaxis(x, -1, -3), cols, "moved", 1
    rows_of_samples = x.reshape(x.shape[:-2] + (x.shape[-2] * c,))  # a view when it can be
    samples = Axis(
        n=cols.n * c,
        taps=cols.taps,
        dilation=cols.dilation * c,
        stride=1,
        offset=cols.offset * c,
        size=cols.size * c,
        centre=cols.centre * c,
    )
    return rows_of_samples, samples, "interleaved", c


def make_call(
    shape, dtype, kernel, flip, padding, cval, stride, dilation, origin, method
) -> tuple[Plan, str]:
    """The plan and method of a call on images of ``shape`` (its last two axes) and
    ``dtype``, without the images: how :func:`convtool.engine.rows.plan_rows` plans each
    piece of an image as the whole image's call (the same checks, the same plan)."""
    probe = np.empty((0, *tuple(shape)[-2:]), dtype=dtype)  # an empty stack: no pixels
    request = _normalise(
        probe, kernel, flip, padding, cval, stride, dilation, origin, method, None, None
    )
    return _plan(request)


# The plans of recent calls, by all that decides them: a batch's images, a chain's steps, a
# loop over frames plan each call alike. Planning took 0.1 ms of a 1.4-2.5 ms float32 2048²
# Sobel on 2 threads (its code and data are cold after each image has gone through the
# cache): the lookup saves 0.07-0.18 ms a call at 1024²-4096² (median, one process).
_PLANS: Recent[tuple, tuple[Plan, str]] = Recent(32)


def _plan(request: _Request) -> tuple[Plan, str]:
    """The plan (geometry, working dtype) and the method (direct, separable, fft) to run."""
    x, weights, factors = request.x, request.weights, request.factors
    key = (
        x.shape[-2:],
        x.dtype.str,
        weights.shape,
        weights.dtype.str,
        weights.tobytes(),
        None if factors is None else tuple(f.tobytes() for f in factors),
        request.method,
        request.rows,
        request.cols,
        request.padding,
        request.cval,
        request.out_dtype,
        request.work_dtype,
        request.unit,
        native.module() is not None,  # (CONVTOOL_NATIVE, read at each call)
        tuning(),
    )
    found = _PLANS.get(key)
    if found is None:
        plan, method = _planned(request)
        # the plan's own read-only copies: the caller's kernel array may change later
        weights = np.array(plan.weights)
        weights.flags.writeable = False
        copies = None
        if plan.factors is not None:
            column, row = np.array(plan.factors[0]), np.array(plan.factors[1])
            column.flags.writeable = row.flags.writeable = False
            copies = (column, row)
        found = (replace(plan, weights=weights, factors=copies), method)
        _PLANS.put(key, found)
    return found


def _planned(request: _Request) -> tuple[Plan, str]:
    x, weights, factors, method = request.x, request.weights, request.factors, request.method
    if method in ("auto", "separable") and factors is None:
        factors = separable_factors(weights)
    if method == "auto":
        method = choose_method(
            weights.shape, factors is not None, x.shape[-2:], _compiled_floats(request)
        )
    if method == "separable" and factors is None:
        raise UsageError("method 'separable' needs a rank-1 kernel; use direct, fft or auto")

    rows, cols = request.rows, request.cols
    dtype = np.dtype(np.float32 if x.dtype.itemsize <= 4 and x.dtype.kind == "f" else np.float64)
    if request.work_dtype is not None:
        dtype = request.work_dtype
    elif request.out_dtype is not None:
        method, dtype = _integer_method(request, method, factors)
    col_start = min(cols.offset, 0)
    col_end = max(cols.n, cols.offset + cols.reach)
    plan = Plan(
        weights=weights,
        factors=factors,
        rows=rows,
        cols=cols,
        padding=request.padding,
        cval=request.cval,
        dtype=dtype,
        col_start=col_start,
        col_count=col_end - col_start,
        tuning=tuning(),
        col_unit=request.unit,
    )
    return plan, method


def _compiled_floats(request: _Request) -> bool:
    """Whether the compiled float kernels will run this call (not the numpy engine, not
    the 8-bit integer kernels of a uint8 -> uint8 call), as :func:`choose_method` asks."""
    if native.module() is None:
        return False
    return (
        request.out_dtype is None or request.work_dtype is not None or request.x.dtype != np.uint8
    )


def _integer_method(request: _Request, method: str, factors) -> tuple[str, np.dtype]:
    """(method, uint8) when the exact integer kernels can run this uint8 -> uint8 call (see
    :mod:`convtool.engine.integer` for the bound), else (method, float64): the float path,
    rounded afterwards."""
    float_path = method, np.dtype(np.float64)
    if request.x.dtype != np.uint8 or native.module() is None or method == "fft":
        return float_path
    if request.padding is Padding.CONSTANT and request.cval != 0:
        return float_path  # the buffer would need the constant as a sample: keep it simple
    column, row = factors if factors is not None else (None, None)
    if method == "separable" and integer_factors(column, row, request.weights) is not None:
        return "separable", np.dtype(np.uint8)
    if integer_weights(request.weights) is not None:
        return "direct", np.dtype(np.uint8)
    return float_path


def _result_form(request: _Request, plan: Plan) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype of the call's result."""
    x = request.x
    shape = x.shape[:-2] + (plan.rows.size, plan.cols.size)
    if request.layout == "interleaved":
        shape = shape[:-1] + (shape[-1] // request.unit, request.unit)
    elif request.layout == "moved":
        shape = shape[:-3] + shape[-2:] + (shape[-3],)
    if request.out_dtype is not None:
        return shape, np.dtype(np.uint8)
    return shape, x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)


def _run(request: _Request, plan: Plan, method: str) -> np.ndarray:
    if request.out is None:
        return _computed(request, plan, method, None)
    given = request.out
    shape, dtype = _result_form(request, plan)
    if given.shape != shape or given.dtype != dtype:
        raise UsageError(
            f"out must have the result's shape {shape} and dtype {dtype}, got "
            f"{given.shape} and {given.dtype}"
        )
    # Written straight into when its bands are the plan's own: the plan's dtype, the
    # channels as the plan holds them, rows of the result in one piece, no overlap
    target = None
    straight = request.layout != "moved" and request.x.size > 0
    straight = straight and given.flags.c_contiguous and not np.may_share_memory(given, request.x)
    if straight and (plan.dtype == dtype or request.out_dtype is not None):
        target = given.reshape((-1, plan.rows.size, plan.cols.size))
    result = _computed(request, plan, method, target)
    if target is None:
        np.copyto(given, result)
    return given


def _computed(request: _Request, plan: Plan, method: str, target: np.ndarray | None) -> np.ndarray:
    x = request.x
    if x.size == 0:  # an empty stack of images (a leading axis of length 0)
        out = np.empty((0, plan.rows.size, plan.cols.size), dtype=plan.dtype)
    else:
        # out_dtype uint8 on the float path: each band rounded half to even and clipped, as
        # writing an 8-bit file does, as soon as it is computed (no float image is held)
        rounded = request.out_dtype is not None
        out = run(plan, x.reshape((-1,) + x.shape[-2:]), method, request.threads, rounded, target)
    out = out.reshape(x.shape[:-2] + out.shape[-2:])
    if request.out_dtype is not None:
        if out.dtype != np.uint8:  # (an empty stack)
            out = out.astype(np.uint8)
    elif x.dtype.kind == "f":
        out = out.astype(x.dtype, copy=False)
    if request.layout == "interleaved":
        return out.reshape(out.shape[:-1] + (out.shape[-1] // request.unit, request.unit))
    if request.layout == "moved":  # (a column stride: the smaller result interleaved)
        return np.ascontiguousarray(np.moveaxis(out, -3, -1))
    return out
