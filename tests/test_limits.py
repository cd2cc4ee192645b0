"""Memory limits: the estimate bounds what filtering really allocates, and too much is refused.

The reference is tracemalloc, which sees every numpy array (and scipy.fft's outputs) that a
call allocates; the estimate must be at least the measured peak (less a small constant for
Python's own objects, which ``limits.HEADROOM`` covers in :func:`check_memory`), and not
wildly above it.
"""

from __future__ import annotations

import io
import tracemalloc

import numpy as np
import pytest
import scipy.fft

from convtool import engine, images, resources
from convtool.errors import ResourceLimitError, UsageError
from convtool.pipeline import Chain, FilterOptions, parse_steps
from convtool.pipeline import memory as limits

SLACK = 256 << 10  # Python objects, thread pools, futures: constant, far below HEADROOM
RNG = np.random.default_rng(11)


@pytest.fixture(scope="module", autouse=True)
def warm_up():
    """Import scipy.fft and Pillow's PNG encoder before measuring: imports allocate too."""
    engine.convolve(np.ones((1, 200, 200), np.float32), RNG.random((31, 31)), method="fft")
    for channels in (1, 3):
        image = images.Image(np.zeros((8, 8, channels), np.float32), depth=8)
        images.write_image("-", image, stdout=io.BytesIO())


def measured_peak(call) -> int:
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        call()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


# (channels, height, width), kernel shape, method, padding, stride, dilation, threads
ENGINE_CASES = [
    ((3, 300, 400), (3, 3), "direct", "reflect", 1, 1, 2),
    ((1, 512, 512), (31, 31), "fft", "reflect", 1, 1, 2),
    ((3, 256, 300), (21, 21), "fft", "full", 1, 1, 2),
    ((1, 200, 200), (9, 9), "fft", "reflect", 1, 5, 2),
    ((1, 100, 120), (101, 101), "fft", "reflect", 1, 1, 1),  # kernel taller than the image
    ((1, 64, 64), (11, 11), "fft", "reflect", 1, 30, 2),  # dilated far past the image
    ((2, 300, 300), (41, 1), "separable", "reflect", 1, 1, 2),
    ((1, 400, 400), (25, 25), "separable", "symmetric", 2, 1, 2),
    ((1, 300, 300), (13, 17), "direct", "wrap", 3, 2, 2),
    ((3, 600, 800), (15, 15), "auto", "reflect", 1, 1, 2),
    ((1, 700, 700), (7, 7), "direct", "valid", 1, 1, 2),
]


@pytest.mark.parametrize(
    ("shape", "kshape", "method", "padding", "stride", "dilation", "threads"), ENGINE_CASES
)
def test_engine_estimate_bounds_what_the_engine_allocates(
    shape, kshape, method, padding, stride, dilation, threads
):
    x = RNG.random(shape, dtype=np.float32)
    separable = method == "separable"
    kernel = (
        np.outer(RNG.random(kshape[0]), RNG.random(kshape[1])) if separable else RNG.random(kshape)
    )
    args = dict(padding=padding, stride=stride, dilation=dilation, method=method, threads=threads)
    peak = measured_peak(lambda: engine.convolve(x, kernel, **args))
    estimate = limits.engine_peak_bytes(*shape, kshape, itemsize=4, separable=separable, **args)
    assert peak <= estimate + SLACK
    assert estimate <= 4 * peak + SLACK  # an upper bound, not a wild one


CHAIN_CASES = [
    ((300, 400, 3), False, ["box:5"], {}, 1, "carry", "all"),
    ((300, 400, 3), True, ["gaussian:2", "[1 2 3; 4 5 6; 7 8 10]"], {}, 2, "weighted", "all"),
    ((256, 256, 1), False, ["grad:sobel"], {"padding": "full"}, 1, "carry", "all"),
    ((256, 256, 3), False, ["maxpool:2", "laplacian"], {}, 2, "carry", "luma"),
    ((256, 300, 3), True, ["log:sigma=3"], {"stride": 2}, 1, "filter", "R,B"),
    ((200, 200, 1), False, ["[1 2; 3 4]"], {"method": "fft", "dilation": 9}, 1, "carry", "all"),
]


@pytest.mark.parametrize(
    ("shape", "alpha", "specs", "options", "iterations", "alpha_mode", "channels"), CHAIN_CASES
)
def test_chain_estimate_bounds_filtering_and_writing(
    shape, alpha, specs, options, iterations, alpha_mode, channels
):
    pixels = RNG.random(shape, dtype=np.float32) * 255
    alpha_plane = RNG.random(shape[:2], dtype=np.float32) * 255 if alpha else None
    image = images.Image(pixels, alpha_plane, depth=8, source="x.png")
    chain = Chain(
        steps=parse_steps(specs),
        options=FilterOptions(threads=2, **options),
        iterations=iterations,
        alpha_mode=alpha_mode,
        channels=channels,
    )

    def filter_and_write():
        images.write_image("-", chain.apply_to(image), stdout=io.BytesIO())

    peak = measured_peak(filter_and_write)
    held = pixels.nbytes + (alpha_plane.nbytes if alpha else 0)
    estimate = limits.chain_peak_bytes(chain, *shape, itemsize=4, alpha=alpha) - held
    assert peak <= estimate + SLACK
    assert estimate <= 4 * peak + SLACK


def test_next_fast_len_is_scipys_for_real_transforms():
    sizes = list(range(1, 3000)) + [10_007, 65_537, 1_000_003]
    assert [limits.next_fast_len(n) for n in sizes] == [
        scipy.fft.next_fast_len(n, real=True) for n in sizes
    ]


def test_a_dilated_kernel_on_the_fft_path_is_priced_before_it_allocates():
    # 101x101 taps 100 pixels apart span 10001 pixels: the FFT would need ~6 GB for a
    # 500x500 image, nearly all of it the kernel's spectrum and one tall band.
    estimate = limits.engine_peak_bytes(1, 500, 500, (101, 101), method="fft", dilation=100)
    assert estimate > 4 << 30
    chain = Chain(
        steps=parse_steps([_random_matrix(101)]), options=FilterOptions(method="fft", dilation=100)
    )
    image = images.Image(np.zeros((500, 500, 1), np.float32), depth=8, source="small.png")
    with pytest.raises(ResourceLimitError) as caught:
        limits.check_memory(chain, image, available=2 << 30)
    message = str(caught.value)
    assert message.startswith("small.png: filtering this 500×500 image needs about ")
    assert "--dilation" in message and "\n" not in message


def _random_matrix(side: int) -> str:
    rows = RNG.integers(1, 9, (side, side))
    return "[" + "; ".join(" ".join(map(str, row)) for row in rows) + "]"


def test_check_memory_passes_what_fits_and_names_precision_for_double():
    chain = Chain(steps=parse_steps(["box:3"]))
    single = images.Image(np.zeros((100, 100, 3), np.float32), depth=8, source="a.png")
    need = limits.check_memory(chain, single, available=1 << 40)
    assert 0 < need < 2 << 20
    double = images.Image(np.zeros((100, 100, 3), np.float64), depth=8, source="a.png")
    with pytest.raises(ResourceLimitError, match="--precision single"):
        limits.check_memory(chain, double, available=limits.HEADROOM)


def test_estimate_peak_bytes_from_shapes_alone():
    small = limits.estimate_peak_bytes((1000, 1000), 3, np.float32, [(3, 3)])
    large = limits.estimate_peak_bytes(
        (1000, 1000), 3, np.float64, [(3, 3), (51, 51)], iterations=3
    )
    assert 3 * 12e6 < small < 8 * 12e6  # a few copies of a 12 MB image
    assert large > 1.5 * small


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("4096", 4096),
        ("8G", 8 << 30),
        ("512M", 512 << 20),
        ("1.5GB", 3 << 29),
        ("2 KiB", 2048),
        ("0", None),
    ],
)
def test_the_environment_sets_the_memory_available(monkeypatch, text, value):
    monkeypatch.setenv(limits.MEMORY_ENV, text)
    assert limits.available_memory() == value


def test_a_bad_memory_setting_is_a_usage_error_naming_the_variable(monkeypatch):
    monkeypatch.setenv(limits.MEMORY_ENV, "lots")
    with pytest.raises(UsageError, match=limits.MEMORY_ENV):
        limits.available_memory()


def test_available_memory_reads_meminfo_and_a_cgroup_limit(monkeypatch, tmp_path):
    monkeypatch.delenv(limits.MEMORY_ENV, raising=False)
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:  16000000 kB\nMemFree:  100 kB\nMemAvailable:  2000000 kB\n")
    monkeypatch.setattr(resources, "_MEMINFO", str(meminfo))
    limit, usage = tmp_path / "memory.max", tmp_path / "memory.current"
    monkeypatch.setattr(resources, "_CGROUP_FILES", ((str(limit), str(usage)),))
    limit.write_text("max\n")
    usage.write_text("123\n")
    assert limits.available_memory() == 2_000_000 * 1024
    limit.write_text(f"{1 << 30}\n")
    usage.write_text(f"{256 << 20}\n")
    assert limits.available_memory() == (1 << 30) - (256 << 20)


def test_without_meminfo_sysconf_gives_the_free_memory(monkeypatch, tmp_path):
    monkeypatch.delenv(limits.MEMORY_ENV, raising=False)
    monkeypatch.setattr(resources, "_MEMINFO", str(tmp_path / "none"))
    monkeypatch.setattr(resources, "_CGROUP_FILES", ())
    pages = {"SC_AVPHYS_PAGES": 3000, "SC_PAGE_SIZE": 4096}
    monkeypatch.setattr(resources.os, "sysconf", lambda name: pages[name])
    assert limits.available_memory() == 3000 * 4096


def test_format_bytes():
    assert [limits.format_bytes(n) for n in (512, 1536, 5 << 20, 3 << 30, 7 << 40)] == [
        "512 bytes",
        "1.5 KB",
        "5.0 MB",
        "3.0 GB",
        "7.0 TB",
    ]


def test_workers_share_the_memory():
    chain = Chain(steps=parse_steps(["box:3"]))
    image = images.Image(np.zeros((1000, 1000, 3), np.float32), depth=8, source="a.png")
    need = limits.check_memory(chain, image, available=1 << 40)
    fits = need + limits.HEADROOM + (1 << 20)
    limits.check_memory(chain, image, available=fits)
    with pytest.raises(ResourceLimitError):
        limits.check_memory(chain, image, available=fits, share=2)


def test_iterations_that_grow_past_any_memory_are_refused_up_front(monkeypatch):
    monkeypatch.delenv(limits.MEMORY_ENV, raising=False)
    # box:1025 with full padding grows the image by 1024 pixels a side per pass: after
    # 1000 passes a 20x24 image is a million pixels a side. Refused before the first pass.
    chain = Chain(
        steps=parse_steps(["box:1025"]), options=FilterOptions(padding="full"), iterations=1000
    )
    image = images.Image(np.zeros((20, 24, 1), np.float32), depth=8, source="grey.png")
    with pytest.raises(ResourceLimitError, match="--iterations"):
        limits.check_memory(chain, image)


@pytest.mark.parametrize(
    ("specs", "options", "stack"),
    [
        (["binomial:3@scale=4"], {"transposed": True, "stride": 2, "padding": "zero"}, False),
        (
            ["[1 2 3; 4 5 6; 7 8 10]"],
            {"transposed": True, "stride": 3, "padding": "reflect"},
            False,
        ),
        (["box:5"], {"transposed": True, "padding": "valid", "dilation": 2}, False),
        (["sobel-x", "sobel-y", "box:3"], {}, True),
    ],
)
def test_chain_estimate_bounds_transposed_steps_and_filter_banks(specs, options, stack):
    pixels = RNG.random((200, 240, 3), dtype=np.float32) * 255
    image = images.Image(pixels, depth=8, source="x.png")
    chain = Chain(parse_steps(specs), FilterOptions(threads=2, **options), stack=stack)

    def filter_and_write():
        images.write_image("-", chain.apply_to(image), format="npy", stdout=io.BytesIO())

    peak = measured_peak(filter_and_write)
    estimate = limits.chain_peak_bytes(chain, 200, 240, 3, itemsize=4) - pixels.nbytes
    assert peak <= estimate + SLACK
    assert estimate <= 4 * peak + SLACK


# ------------------------------------------------------------- match and compare, and stride

MATCH_CASES = [
    ((300, 400, 1), (21, 31), "auto", False),  # direct correlation
    ((256, 256, 1), (64, 64), "fft", True),  # FFT, and the overlay drawn and written
    ((200, 240, 3), (15, 9), "auto", False),  # per channel
]


@pytest.mark.parametrize(("scene_shape", "template_shape", "method", "overlay"), MATCH_CASES)
def test_match_estimate_bounds_matching_and_writing(
    scene_shape, template_shape, method, overlay, tmp_path
):
    from convtool.match import request as matching

    pixels = RNG.random(scene_shape, dtype=np.float32) * 255
    h, w = template_shape
    scene_path, template_path = tmp_path / "scene.npy", tmp_path / "template.npy"
    np.save(scene_path, pixels)
    np.save(template_path, pixels[10 : 10 + h, 20 : 20 + w])
    run = matching.MatchRequest(
        scene=str(scene_path),
        template=str(template_path),
        output=str(tmp_path / "scores.png"),
        overlay=str(tmp_path / "hits.png") if overlay else None,
        per_channel=scene_shape[2] > 1,
        method=method,
        threads=2,
    )
    peak = measured_peak(lambda: matching.run(run))
    held = 2 * pixels.nbytes  # the scene (twice with an overlay: it is read again in colour)
    estimate = matching.peak_bytes(
        scene_shape, template_shape, method=method, threads=2, overlay=overlay
    )
    assert peak <= estimate + held + SLACK
    assert estimate <= 6 * peak + SLACK


def test_compare_estimate_bounds_making_and_writing_the_sheet(tmp_path):
    from convtool.images import sheet

    shapes = [(120, 90), (60, 200), (150, 150)]
    paths = []
    for number, shape in enumerate(shapes):
        path = tmp_path / f"{number}.png"
        images.write_image(path, images.Image(RNG.random((*shape, 3)) * 255, depth=8))
        paths.append(str(path))
    pictures = [(*shape, 3) for shape in shapes]
    for height in (None, 400):
        out = tmp_path / f"sheet-{height}.png"
        peak = measured_peak(
            lambda out=out, height=height: sheet.compare(paths, str(out), height=height)
        )
        held = sum(h * w * 3 * (4 + 1) for h, w, _ in pictures)  # read, then shown as 8-bit
        estimate = sheet.peak_bytes(pictures, height)
        assert peak <= estimate + held + SLACK
        assert estimate <= 8 * peak + SLACK


def test_compare_refuses_a_sheet_that_does_not_fit(tmp_path, monkeypatch):
    from convtool.images import sheet

    path = tmp_path / "a.png"
    images.write_image(path, images.Image(np.zeros((64, 64, 3)), depth=8))
    monkeypatch.setenv(limits.MEMORY_ENV, "2G")
    with pytest.raises(ResourceLimitError, match="--height"):
        sheet.compare([str(path)], str(tmp_path / "sheet.png"), height=30_000)
    assert not (tmp_path / "sheet.png").exists()


def test_the_estimate_sees_the_toeplitz_blocks_of_a_large_stride():
    # 3x3 weights that need a product, not two ufunc passes, on a 2048 side with stride 100:
    # blocks of 16 outputs, each matrix 1503 rows tall.
    x = RNG.random((1, 2048, 2048), dtype=np.float32)
    kernel = RNG.random((3, 3))
    args = dict(stride=100, method="direct", threads=1)
    peak = measured_peak(lambda: engine.convolve(x, kernel, **args))
    assert peak <= limits.engine_peak_bytes(1, 2048, 2048, (3, 3), **args) + SLACK
