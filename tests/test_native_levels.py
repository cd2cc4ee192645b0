"""The compiled kernels give the same bits at every SIMD level this CPU runs (AVX-512, AVX2, SSE2).

Each level is the same C source compiled for its instruction set with register blocks of its
own width, so the blocks cut a row at other places; without fused multiply-adds every output
is still the same sum of the same terms in the same order. Here every case runs once per
level in one process (``select_level``, what ``CONVTOOL_NATIVE_LEVEL`` does at start-up) and
the bytes are compared with the best level's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from convtool import engine
from convtool.engine import native
from convtool.match import match_template

_native = native._load()
if _native is None:
    pytest.skip("the compiled kernels were not built", allow_module_level=True)

ROOT = Path(__file__).resolve().parent.parent
LEVELS = _native.info()["levels"]
RNG = np.random.default_rng(20250613)
# widths past every level's register block (AVX-512: 128 float32s) and chunk (512), and below
SHAPES = [(23, 1037), (64, 48), (9, 130)]
PADDINGS = ["reflect", "mirror", "nearest", "wrap", "constant", "valid"]


def _kernels() -> dict[str, np.ndarray]:
    g = np.exp(-((np.arange(31) - 15) ** 2) / 50.0)
    return {
        "random 7x7": RNG.standard_normal((7, 7)),
        "random 4x6": RNG.standard_normal((4, 6)),
        "sobel": np.outer([1.0, 2, 1], [-1.0, 0, 1]),
        "binomial 5x5": np.outer([1.0, 4, 6, 4, 1], [1.0, 4, 6, 4, 1]) / 256,
        "gaussian 31": np.outer(g, g) / g.sum() ** 2,
        "box 15": np.full((15, 15), 1 / 225),
        "row 9": RNG.standard_normal((1, 9)),
        "negative 3x3": -RNG.random((3, 3)) - 0.5,  # all-zero sums are -0: kept at every level
    }


KERNELS = _kernels()


def _image(shape, dtype, nan=False):
    if dtype == np.uint8:
        return RNG.integers(0, 256, shape, dtype=np.uint8)
    x = RNG.standard_normal(shape).astype(dtype)
    x[: shape[0] // 3, : shape[1] // 2] = 0  # a zero region: the sign of all-zero sums
    if nan:
        x[shape[0] // 2, shape[1] // 3] = np.nan
    return x


def _cases():
    """(name, function of nothing giving an array) for every path the levels compile."""
    cases = []
    for shape in SHAPES:
        for dtype in (np.float32, np.float64):
            x = _image(shape, dtype, nan=dtype == np.float32)
            for kname, w in KERNELS.items():
                for method in ("direct", "separable"):
                    if method == "separable" and kname.startswith(("random", "negative")):
                        continue
                    for padding in PADDINGS if kname in ("sobel", "random 7x7") else ["reflect"]:
                        cases.append(
                            (
                                f"{kname} {method} {padding} {np.dtype(dtype).name} {shape}",
                                lambda x=x, w=w, m=method, p=padding: engine.correlate(
                                    x, w, padding=p, method=m, threads=1
                                ),
                            )
                        )
            w = KERNELS["random 7x7"]
            for stride, dilation in (((2, 3), 1), (1, 2), (3, (2, 1))):
                cases.append(
                    (
                        f"random 7x7 stride {stride} dilation {dilation} {shape}",
                        lambda x=x, w=w, s=stride, d=dilation: engine.correlate(
                            x, w, stride=s, dilation=d, method="direct", threads=1
                        ),
                    )
                )
        gray = _image(shape, np.uint8)
        rgb = _image(shape + (3,), np.uint8)
        for kname in ("sobel", "binomial 5x5", "box 15"):
            for x, axis in ((gray, None), (rgb, -1)):
                for padding in ("reflect", "constant", "wrap"):
                    cases.append(
                        (
                            f"uint8 {kname} {padding} {x.shape}",
                            lambda x=x, w=KERNELS[kname], a=axis, p=padding: engine.correlate(
                                x, w, padding=p, out_dtype=np.uint8, channel_axis=a, threads=1
                            ),
                        )
                    )
    scene = RNG.random((90, 300))
    for t in (scene[10:42, 20:52], scene[5:13, 100:107]):
        cases.append((f"match {t.shape}", lambda t=t: match_template(scene, t, threads=1)))
    return cases


CASES = _cases()


@pytest.fixture
def restore_level():
    chosen = _native.info()["level"]
    yield
    _native.select_level(chosen)


@pytest.mark.skipif(len(LEVELS) < 2, reason="this build or CPU has one SIMD level")
def test_every_level_gives_the_same_bits(restore_level, monkeypatch):
    monkeypatch.delenv(native.NATIVE_ENV, raising=False)
    results = {}
    for level in LEVELS:
        _native.select_level(level)
        assert _native.info()["level"] == level
        results[level] = [f().tobytes() for _, f in CASES]
    best = LEVELS[0]
    for level in LEVELS[1:]:
        differ = [
            name
            for (name, _), a, b in zip(CASES, results[best], results[level], strict=True)
            if a != b
        ]
        assert not differ, f"{level} differs from {best} in {len(differ)} cases: {differ[:5]}"


def test_the_cases_reach_signed_zeros_and_nans():
    """The cases hold what could differ between levels: NaN windows and all-zero sums."""
    x = _image(SHAPES[0], np.float32, nan=True)
    out = engine.correlate(x, KERNELS["negative 3x3"], method="direct", threads=1)
    assert np.isnan(out).any()
    zeros = out == 0
    assert np.signbit(out[zeros]).all() and zeros.sum() > 200


def test_an_unknown_or_unrunnable_level_is_refused(restore_level):
    with pytest.raises(ValueError, match="unknown SIMD level 'v9'"):
        _native.select_level("v9")
    if "v4" not in LEVELS and _native.info()["clones"]:
        with pytest.raises(ValueError, match="AVX-512"):
            _native.select_level("v4")


@pytest.mark.parametrize("level", LEVELS)
def test_the_environment_forces_a_level_and_the_report_names_it(level, kernels_show):
    done = kernels_show(**{native.LEVEL_ENV: level, native.NATIVE_ENV: None})
    assert done.returncode == 0, done.stderr
    assert f"{native.LEVEL_ENV}={level})" in done.stdout


def test_a_level_that_cannot_run_is_one_line_and_exit_2(kernels_show):
    done = kernels_show(**{native.LEVEL_ENV: "avx1024", native.NATIVE_ENV: None})
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "convtool: error: CONVTOOL_NATIVE_LEVEL=avx1024: unknown SIMD level 'avx1024': "
        f"this build has {', '.join(repr(n) for n in _all_built())}; unset it to run the best"
    ]


def _all_built() -> list[str]:
    return ["v4", "v3", "baseline"] if _native.info()["clones"] else ["baseline"]
