"""Fuzzing: damaged real images and arbitrary step specs give a result or convtool's own error.

Kernel specs and kernel files are fuzzed where they are parsed (tests/test_kernels.py,
tests/test_kernel_formats.py); here, the rest of what ``-k`` takes (``grad:``, ``maxpool:``,
``avgpool:`` steps and whatever text a user types) and image bytes: the sample files of
``samples/`` and the same picture in every other format convtool reads, truncated and with
bytes flipped. Either the bytes decode into an image that then filters and encodes, or
convtool raises its own one-line error; never another exception, never a hang (each try
must finish in a few seconds), never a crash. ``max_pixels`` is kept to 4 megapixels, as a
user would lower it for untrusted files, so a flipped size field cannot make a decoder
allocate gigabytes.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from bad_inputs.chatter import stderr_chatter
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage

from convtool.errors import ConvtoolError
from convtool.images import read_image, write_image
from convtool.pipeline import Chain, parse_step

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
REAL = [
    "camera.png",
    "astronaut.png",
    "rocket.jpg",
    "rgba-hidden.png",
    "gradient16.png",
    "checkerboard.png",
]
# A per-example deadline that catches a decoder hang or a size blow-up (each example takes
# milliseconds); generous, so that a loaded 2-core machine passes.
SECONDS = 60.0
MAX_PIXELS = 1 << 22


def _encoded(array: np.ndarray, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(array).save(buffer, fmt, **options)
    return buffer.getvalue()


def _tifffile(array: np.ndarray, **options) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(
        buffer, array, photometric="rgb" if array.ndim == 3 else "minisblack", **options
    )
    return buffer.getvalue()


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _sources() -> dict[str, bytes]:
    """The real samples, and a crop of one in every other format and layout convtool reads."""
    found = {name: (SAMPLES / name).read_bytes() for name in REAL}
    with PILImage.open(SAMPLES / "chelsea.png") as im:
        rgb = np.asarray(im.convert("RGB"))[:48, :64].copy()
    grey = rgb[:, :, 1].copy()
    found |= {
        "crop.gif": _encoded(rgb, "GIF"),
        "crop.bmp": _encoded(rgb, "BMP"),
        "crop.webp": _encoded(rgb, "WEBP", lossless=True),
        "crop.ppm": _encoded(rgb, "PPM"),
        "crop-progressive.jpg": _encoded(rgb, "JPEG", progressive=True),
        "crop.tif": _encoded(rgb, "TIFF"),
        "crop-lzw.tif": _encoded(rgb, "TIFF", compression="tiff_lzw"),
        "crop-deflate.tif": _encoded(rgb, "TIFF", compression="tiff_deflate"),
        "crop-float.tif": _tifffile(rgb.astype(np.float32)),
        "crop-uint32.tif": _tifffile(grey.astype(np.uint32) << 16),
        "crop-16bit-rgb.tif": _tifffile(rgb.astype(np.uint16) * 257),
        "crop.npy": _npy(rgb),
        "crop-float.npy": _npy(grey.astype(np.float64)),
    }
    return found


SOURCES = _sources()
CHAIN = Chain(steps=(parse_step("box:3"),))


def damaged(data: bytes, cut: float | None, flips: list[tuple[float, int]], head: bool) -> bytes:
    """``data`` cut at a share of its length, with bytes XORed at shares of its length.

    ``head``: the flips land in the first 256 bytes, where the headers are.
    """
    out = bytearray(data)
    span = min(len(out), 256) if head else len(out)
    for where, mask in flips:
        out[int(where * (span - 1))] ^= mask
    if cut is not None:
        out = out[: int(cut * len(out))]
    return bytes(out)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(sorted(SOURCES)),
    cut=st.none() | st.floats(0.0, 1.0, exclude_max=True),
    flips=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(1, 255)), max_size=6),
    head=st.booleans(),
)
# Pillow's TIFF plugin logged an error for this header and decoded on: it reached stderr
@example(name="crop-uint32.tif", cut=None, flips=[(0.390625, 1)], head=True)
def test_damaged_images_decode_or_fail_cleanly(name, cut, flips, head):
    data = damaged(SOURCES[name], cut, flips, head)
    start = time.monotonic()
    try:
        with stderr_chatter() as chatter:
            image = read_image("-", stdin=io.BytesIO(data), max_pixels=MAX_PIXELS)
    except ConvtoolError as err:
        message = str(err)
        assert "\n" not in message and message.startswith("-: ")
        assert chatter == []  # the decoders' own complaints stay off stderr
    else:
        assert chatter == []
        assert image.pixels.dtype == np.float32 and image.pixels.ndim == 3
        assert image.height * image.width <= MAX_PIXELS
        try:
            result = CHAIN.apply_to(image)
            write_image("-", result, stdout=io.BytesIO())
        except ConvtoolError as err:  # e.g. NaN in a float TIFF whose bytes were flipped
            assert "\n" not in str(err)
    assert time.monotonic() - start < SECONDS


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_every_truncation_point_of_the_header_is_handled(name):
    """The first 64 prefixes of each file, byte by byte: headers cut anywhere."""
    data = SOURCES[name]
    for length in range(1, min(64, len(data))):
        try:
            read_image("-", stdin=io.BytesIO(data[:length]), max_pixels=MAX_PIXELS)
        except ConvtoolError as err:
            assert "\n" not in str(err)


def test_damaged_files_on_disk_leave_no_open_handles(tmp_path):
    """Reading from a path closes the file on every error (a batch reads thousands)."""
    path = tmp_path / "bad.tif"
    path.write_bytes(SOURCES["crop-deflate.tif"][:300])
    before = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    for _ in range(50):
        with pytest.raises(ConvtoolError):
            read_image(path)
    if before is not None:
        assert len(os.listdir("/proc/self/fd")) <= before


STEP_ALPHABET = "0123456789 .,:=x-+@!^%abcdefghilmnoprstuvwxyz_;[]/*"


@pytest.mark.usefixtures("empty_folder")
@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.text(max_size=30),
        st.builds(
            "{}:{}".format,
            st.sampled_from(["grad", "maxpool", "avgpool", "GRAD", "maxpool "]),
            st.text(alphabet=STEP_ALPHABET, max_size=25),
        ),
        st.builds(
            "{}:{}={}".format,
            st.sampled_from(["grad", "maxpool", "avgpool"]),
            st.sampled_from(["op", "norm", "size", "stride", "sizes", ""]),
            st.text(alphabet=STEP_ALPHABET, max_size=12),
        ),
    )
)
def test_any_step_spec_is_a_step_or_a_convtool_error(text):
    try:
        step = parse_step(text)
    except ConvtoolError as err:
        assert "\n" not in str(err).strip() or "\n" in text
        return
    pixels = np.arange(12 * 10, dtype=np.float32).reshape(12, 10, 1)
    try:
        out, _ = Chain(steps=(step,)).apply(pixels)
    except ConvtoolError:
        return  # a valid step that cannot apply here (a pool window larger than 12x10)
    assert np.isfinite(out).all()
