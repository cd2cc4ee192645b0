"""The bad-input corpus: every way a careless user or a hostile file can call ``convtool filter``.

One table, one test. Each case builds its files in a fresh folder (from code: see
``tests/bad_inputs/builders.py``), runs the command and checks the promise:

- a failure exits 2 for a bad invocation, 1 for a failure at run time, with exactly one
  line on stderr (Python's and the C libraries' included), naming the file or the option
  and saying what to do (the case's ``needles``), no traceback, no output and no temporary
  file left behind, and every input byte for byte as it was;
- a valid but unusual input (1×1, several frames, CMYK, a kernel wider than the image, ...)
  succeeds silently, and its output shows the documented behaviour (the case's ``check``).

RELIABILITY.md lists the cases; keep the two in step.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import tifffile
from bad_inputs import builders as b
from bad_inputs.chatter import stderr_chatter
from bad_inputs.mounts import read_only_folder
from PIL import Image
from scipy import ndimage
from typer.testing import CliRunner

from convtool.cli import app

runner = CliRunner()


class Workspace:
    """The case's folder: where it builds inputs; ``out`` is the default output."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.out = root / "out.png"
        self.cleanups: list = []

    def __truediv__(self, name: str) -> Path:
        return self.root / name

    def write(self, name: str, data: bytes | str) -> Path:
        path = self.root / name
        if isinstance(data, str):
            path.write_text(data)
        else:
            path.write_bytes(data)
        return path

    def grey(self) -> Path:
        return b.grey_png(self.root)

    def read_only(self, name: str) -> Path:
        """A folder that refuses writes until the test ends."""
        manager = read_only_folder(self.root / name)
        manager.__enter__()
        self.cleanups.append(manager)
        return self.root / name


Build = Callable[[Workspace], list]


@dataclass(frozen=True)
class Case:
    id: str
    build: Build  # the workspace → the arguments after `convtool`
    exit_code: int
    needles: tuple[str, ...] = ()  # all in the error line (file or option, what to do)
    check: Callable[[Workspace], None] | None = None  # a success's documented behaviour
    note: str | None = None  # a success's one stderr line (a batch summary), if any
    outputs: tuple[str, ...] | None = None  # a success's new paths (default: the -o path)
    env: dict = field(default_factory=dict)
    xfail: str | None = None
    stdin: Callable[[Workspace], bytes] | None = None  # what '-' reads


def filter_args(source, *options, out=None) -> Build:
    """``filter SOURCE -o OUT -k box:3 OPTIONS``; SOURCE is a builder, a name or a path."""

    def build(ws: Workspace) -> list:
        src = source(ws) if callable(source) else ws / source
        dest = ws.out if out is None else out(ws) if callable(out) else ws / out
        extra = (
            list(options)
            if any(o in ("-k", "--kernel") for o in options)
            else ["-k", "box:3", *options]
        )
        return ["filter", src, "-o", dest, *extra]

    return build


def data_file(name: str, make: Callable[[], bytes]) -> Callable[[Workspace], Path]:
    return lambda ws: ws.write(name, make())


def kernel_case(id_: str, spec, needles, *options, exit_code=2, xfail=None) -> Case:
    """A grey image filtered with ``-k SPEC``; SPEC may be a builder of a kernel file."""

    def build(ws: Workspace) -> list:
        kernel = spec(ws) if callable(spec) else spec
        return ["filter", ws.grey(), "-o", ws.out, "-k", kernel, *options]

    return Case(id_, build, exit_code, tuple(needles), xfail=xfail)


def read_out(ws: Workspace, name: str = "out.png") -> np.ndarray:
    path = ws / name
    if path.suffix == ".tif":
        return tifffile.imread(path)
    if path.suffix == ".npy":
        return np.load(path)
    with Image.open(path) as im:
        return np.asarray(im)


# ----------------------------------------------------------------------- checks of successes


def is_constant(value: float, name: str = "out.png", shape=(b.HEIGHT, b.WIDTH)):
    def check(ws: Workspace) -> None:
        out = read_out(ws, name)
        assert out.shape[:2] == shape
        assert np.all(out == value)

    return check


def has_mode(mode: str, shape=(b.HEIGHT, b.WIDTH)):
    def check(ws: Workspace) -> None:
        with Image.open(ws.out) as im:
            assert (im.mode, im.size) == (mode, shape[::-1])

    return check


def is_black_and_white(ws: Workspace) -> None:
    assert set(np.unique(read_out(ws))) <= {0, 255}
    assert len(np.unique(read_out(ws))) == 2


def same_values_as(name: str, rtol: float = 0.0):
    def check(ws: Workspace) -> None:
        source = tifffile.imread(ws / name).astype(np.float64)
        np.testing.assert_allclose(read_out(ws, "out.tif"), source, rtol=rtol)

    return check


def equals_scipy(kernel: np.ndarray, mode: str, name: str = "out.npy"):
    """The output (raw float .npy) equals scipy.ndimage.convolve of the grey input."""

    def check(ws: Workspace) -> None:
        source = np.asarray(Image.open(ws / "grey.png"), dtype=np.float64)
        expected = ndimage.convolve(source, kernel, mode=mode)
        np.testing.assert_allclose(read_out(ws, name), expected, rtol=1e-5, atol=1e-3)

    return check


def grows_by(extra: int, name: str = "out.npy"):
    def check(ws: Workspace) -> None:
        assert read_out(ws, name).shape == (b.HEIGHT + extra, b.WIDTH + extra)

    return check


def all_255_where_input_is_not_0(ws: Workspace) -> None:
    source = np.asarray(Image.open(ws / "grey.png"))
    out = read_out(ws)
    assert np.all(out[source > 0] == 255)


# ------------------------------------------------------------------------------ the corpus

PNG, JPEG, TIFF = b.rgb_png_bytes(), b.rgb_jpeg_bytes(), b.rgb_tiff_bytes()


def truncated(name: str, data: bytes, at, reason: str = "truncated or corrupt") -> Case:
    source = data_file(name, lambda: b.truncated(data, at))
    return Case(f"truncated-{name}", filter_args(source), 1, (name, reason))


def flipped(name: str, data: bytes, offset: int, mask: int = 0xFF) -> Case:
    source = data_file(name, lambda: b.flipped(data, offset, mask))
    return Case(f"flipped-{name}", filter_args(source), 1, (name, "not an image"))


def nan_tiff(ws: Workspace) -> Path:
    values = b.noise(b.HEIGHT, b.WIDTH, dtype=np.float32)
    values[3, 4] = np.nan
    return b.tiff_of(ws.root, "nan.tif", values)


def npy_header_only(name: str, shape: tuple) -> Callable[[Workspace], Path]:
    def build(ws: Workspace) -> Path:
        path = ws / name
        with open(path, "wb") as f:
            np.lib.format.write_array_header_1_0(
                f, {"descr": "|u1", "fortran_order": False, "shape": shape}
            )
            f.write(b"\0" * 8)
        return path

    return build


def npy_image(name: str, array: np.ndarray) -> Callable[[Workspace], Path]:
    def build(ws: Workspace) -> Path:
        np.save(ws / name, array)
        return ws / name

    return build


def zero_npy(ws: Workspace) -> Path:
    np.save(ws / "zero.npy", np.zeros((0, 5), np.uint8))
    return ws / "zero.npy"


def directory(name: str) -> Callable[[Workspace], Path]:
    def build(ws: Workspace) -> Path:
        (ws / name).mkdir()
        return ws / name

    return build


def u32_tiff(ws: Workspace) -> Path:
    return b.tiff_of(ws.root, "u32.tif", b.noise(b.HEIGHT, b.WIDTH, dtype=np.uint32) >> 8)


def f32_tiff(ws: Workspace) -> Path:
    return b.tiff_of(ws.root, "f32.tif", b.noise(b.HEIGHT, b.WIDTH, 3, dtype=np.float32))


SIGNED = np.array([[-27, 0, 5], [127, -128, 1]], np.int8)


def grey_and_copy(ws: Workspace) -> Path:
    return ws.grey()


IMAGE_CASES = [
    Case("empty-file", filter_args(data_file("empty.png", bytes)), 1, ("empty.png", "empty file")),
    truncated("t8.png", PNG, 8, "not an image"),
    truncated("t20.png", PNG, 20),
    truncated("t33.png", PNG, 33, "not an image"),
    truncated("half.png", PNG, 0.5),
    truncated("t2.jpg", JPEG, 2, "not an image"),
    truncated("t100.jpg", JPEG, 100),
    truncated("half.jpg", JPEG, 0.5),
    truncated("t8.tif", TIFF, 8),
    truncated("t100.tif", TIFF, 100),
    truncated("half.tif", TIFF, 0.5),
    flipped("signature.png", PNG, 1),
    flipped("width.png", PNG, 18, 0x80),  # the IHDR no longer matches its CRC
    flipped("soi.jpg", JPEG, 1),
    flipped("byteorder.tif", TIFF, 0),
    Case(
        "text-with-an-image-extension",
        filter_args(data_file("notes.png", lambda: b"hello\n")),
        1,
        ("notes.png", "not an image"),
    ),
    Case("missing-input", filter_args("nowhere.png"), 1, ("nowhere.png", "no such file")),
    Case(
        "zero-by-zero-png",
        filter_args(data_file("zero.png", lambda: b.png_declaring(0, 0))),
        1,
        ("zero.png", "not an image"),
    ),
    Case("zero-rows-npy", filter_args(zero_npy), 1, ("zero.npy", "no pixels")),
    Case(
        "decompression-bomb-png",
        filter_args(data_file("bomb.png", lambda: b.png_declaring(100_000, 100_000))),
        1,
        ("bomb.png", "10,000,000,000 pixels", "--max-pixels"),
    ),
    Case(
        "decompression-bomb-npy",
        filter_args(npy_header_only("bomb.npy", (100_000, 90_000))),
        1,
        ("bomb.npy", "--max-pixels"),
    ),
    Case(
        "max-pixels-lowered",
        filter_args(grey_and_copy, "--max-pixels", "100"),
        1,
        ("grey.png", "480 pixels", "--max-pixels"),
    ),
    Case("nan-in-a-float-tiff", filter_args(nan_tiff), 1, ("nan.tif", "NaN", "replace them")),
    Case(
        "float64-beyond-float32",
        filter_args(npy_image("huge.npy", np.full((b.HEIGHT, b.WIDTH), 1e300))),
        1,
        ("huge.npy", "infinite", "--precision double"),
    ),
    Case(
        "float64-beyond-float32-in-double",
        filter_args(
            npy_image("huge.npy", np.full((b.HEIGHT, b.WIDTH), 1e300)),
            "--precision",
            "double",
            out="out.npy",
        ),
        0,
        check=lambda ws: np.testing.assert_allclose(read_out(ws, "out.npy"), 1e300),
    ),
    # valid but unusual: they succeed, with the documented behaviour
    Case("one-pixel", filter_args(b.one_pixel_png), 0, check=is_constant(200, shape=(1, 1))),
    Case(
        "multi-frame-gif-to-png",
        filter_args(lambda ws: b.multi_frame_gif(ws.root)),
        2,
        ("anim.gif", "frames", "--frames first"),
    ),
    Case(
        "multi-frame-gif-first-frame",
        filter_args(lambda ws: b.multi_frame_gif(ws.root), "--frames", "first"),
        0,
        check=is_constant(10),
    ),
    Case(
        "multi-page-tiff-first-page",
        filter_args(lambda ws: b.multi_page_tiff(ws.root), "--frames", "first"),
        0,
        check=is_constant(10),
    ),
    Case(
        "cmyk-jpeg-as-rgb", filter_args(lambda ws: b.cmyk(ws.root, "jpg")), 0, check=has_mode("RGB")
    ),
    Case(
        "cmyk-tiff-as-rgb", filter_args(lambda ws: b.cmyk(ws.root, "tif")), 0, check=has_mode("RGB")
    ),
    Case("lab-tiff-as-rgb", filter_args(lambda ws: b.lab_tiff(ws.root)), 0, check=has_mode("RGB")),
    Case(
        "one-bit-png",
        filter_args(lambda ws: b.one_bit(ws.root, "png"), "-k", "identity"),
        0,
        check=is_black_and_white,
    ),
    Case(
        "one-bit-tiff",
        filter_args(lambda ws: b.one_bit(ws.root, "tif"), "-k", "identity"),
        0,
        check=is_black_and_white,
    ),
    Case(
        "uint32-tiff",
        filter_args(u32_tiff, "-k", "identity", "--precision", "double", out="out.tif"),
        0,
        check=same_values_as("u32.tif"),
    ),
    Case(
        "float-tiff",
        filter_args(f32_tiff, "-k", "identity", out="out.tif"),
        0,
        check=same_values_as("f32.tif"),
    ),
    Case(
        "rgba-keeps-alpha", filter_args(lambda ws: b.rgba_png(ws.root)), 0, check=has_mode("RGBA")
    ),
    Case("grey-without-alpha", filter_args(grey_and_copy), 0, check=has_mode("L")),
    Case(
        "palette-with-transparency",
        filter_args(lambda ws: b.palette_with_transparency(ws.root)),
        0,
        check=has_mode("RGBA"),
    ),
    Case(
        "input-folder-without-images",
        lambda ws: ["filter", ws / directory("photos")(ws), "-o", ws / "out", "-k", "box:3"],
        1,
        ("photos", "no images found", ".png"),
    ),
    Case(
        "input-folder-to-stdout",
        lambda ws: ["filter", directory("photos")(ws), "-o", "-", "-k", "box:3"],
        2,
        ("-o", "output folder, not '-'"),
    ),
    # hostile files: other formats under image names are refused unopened
    Case(
        "postscript-named-png",
        filter_args(lambda ws: ws.write("eps.png", b.postscript(ws / "ran"))),
        1,
        ("eps.png", "a PostScript/EPS file", "not a format convtool reads"),
    ),
    Case(
        "postscript-named-tif-on-stdin",
        filter_args(lambda ws: "-"),
        1,
        ("-:", "a PostScript/EPS file"),
        stdin=lambda ws: b.postscript(ws / "ran"),
    ),
    Case(
        "pdf-named-jpg",
        filter_args(data_file("doc.jpg", lambda: b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")),
        1,
        ("doc.jpg", "a PDF document"),
    ),
    Case(
        "pfm-named-ppm",
        filter_args(data_file("float.ppm", lambda: b"Pf\n2 2\n-1.0\n" + bytes(16))),
        1,
        ("float.ppm", "PFM"),
    ),
    Case("dev-zero-as-input", filter_args(lambda ws: "/dev/zero"), 1, ("/dev/zero", "zero bytes")),
    Case(
        "zeros-on-stdin",
        filter_args(lambda ws: "-"),
        1,
        ("-:", "not an image", "all zero bytes"),
        stdin=lambda ws: bytes(1 << 20),  # a real /dev/zero: tests/test_faults.py
    ),
    Case(
        "long-stream-after-a-png-signature",
        filter_args(lambda ws: "-", "--max-pixels", "1000"),
        1,
        ("-:", "more than", "--max-pixels (1,000)", "raise --max-pixels"),
        stdin=lambda ws: PNG[:33] + bytes(20 << 20),
    ),
    # TIFF layouts and sample types, refused from the header
    Case(
        "tiff-of-200-planes",
        filter_args(lambda ws: b.tiff_planes(ws.root, "planes.tif", 200)),
        1,
        ("planes.tif", "200 samples per pixel"),
    ),
    Case(
        "tiff-volume",
        filter_args(lambda ws: b.tiff_volume(ws.root, "volume.tif", 10)),
        1,
        ("volume.tif", "volume of 10 planes"),
    ),
    Case(
        "max-pixels-counts-planes",
        filter_args(lambda ws: b.tiff_volume(ws.root, "volume.tif", 10), "--max-pixels", "2000"),
        1,
        ("volume.tif", "32×32×10 planes = 10,240 pixels", "--max-pixels"),
    ),
    Case(
        "complex-tiff",
        filter_args(lambda ws: b.tiff_of(ws.root, "complex.tif", np.ones((4, 4), np.complex64))),
        1,
        ("complex.tif", "complex numbers", "real-valued"),
    ),
    Case(
        "complex-npy",
        filter_args(npy_image("complex.npy", np.ones((4, 4), np.complex64))),
        1,
        ("complex.npy", "complex numbers", "real-valued"),
    ),
    Case("twelve-bit-tiff", filter_args(lambda ws: b.tiff_12_bit(ws.root)), 1, ("12-bit",)),
    Case(
        "signed-8-bit-tiff-keeps-its-sign",
        filter_args(
            lambda ws: b.tiff_of(ws.root, "signed.tif", SIGNED),
            "-k",
            "identity",
            "--depth",
            "float",
            out="out.tif",
        ),
        0,
        check=same_values_as("signed.tif"),
    ),
    Case(
        "png-without-iend-has-all-its-pixels",
        filter_args(data_file("noend.png", lambda: PNG[:-12])),
        0,
        check=has_mode("RGB"),
    ),
]


def text_kernel(name: str, text: str):
    return lambda ws: ws.write(name, text)


def npy_kernel(name: str, array: np.ndarray, **options):
    def build(ws: Workspace) -> Path:
        np.save(ws / name, array, **options)
        return ws / name

    return build


def kernel_folder(ws: Workspace) -> Path:
    (ws / "kdir.txt").mkdir()
    return ws / "kdir.txt"


BOX31 = np.ones((31, 31)) / 31**2
LAPLACIAN = np.array([[0, -1, 0], [-1, 4, -1], [0, -1, 0]]) / 4.0

KERNEL_CASES = [
    kernel_case("empty-kernel-file", text_kernel("empty.txt", ""), ("empty.txt", "no kernel")),
    kernel_case(
        "ragged-rows",
        text_kernel("ragged.txt", "1 2 3\n4 5\n"),
        ("ragged.txt", "row 2", "same length"),
    ),
    kernel_case(
        "not-numbers",
        text_kernel("words.txt", "1 2 x\n4 5 6\n"),
        ("words.txt", "'x' is not a number"),
    ),
    kernel_case("nan-in-a-file", text_kernel("nan.txt", "1 nan 1\n"), ("nan.txt", "'nan'")),
    kernel_case("infinity-inline", "[1 inf 1]", ("'inf' is not a number",)),
    kernel_case("zero-by-n-npy", npy_kernel("zero.npy", np.zeros((0, 3))), ("zero.npy", "no taps")),
    kernel_case(
        "pickled-npy",
        npy_kernel("obj.npy", np.array([{}], object), allow_pickle=True),
        ("obj.npy", "not a readable .npy"),
    ),
    kernel_case("kernel-file-is-a-folder", kernel_folder, ("kdir.txt", "folder")),
    kernel_case("missing-kernel-file", "missing.txt", ("missing.txt", "no such kernel file")),
    kernel_case(
        "kernel-larger-than-the-image-valid",
        "box:31",
        ("valid", "another --padding"),
        "--padding",
        "valid",
    ),
    kernel_case("absurd-box-10001", "box:10001x10001", ("box", "1 to 1025")),
    kernel_case("absurd-imagemagick-10001", "10001x10001: 1", ("10001x10001", "1025")),
    kernel_case(
        "absurd-file-1x10001",
        text_kernel("wide.txt", "1 " * 10001),
        ("wide.txt", "1025 taps per side"),
    ),
    kernel_case("absurd-sigma", "gaussian:sigma=5000", ("gaussian", "smaller size=")),
    kernel_case(
        "all-zero-with-normalize",
        "[0 0; 0 0]",
        ("normalise", "all its weights are 0"),
        "--normalize",
    ),
    kernel_case("unknown-name", "gauss", ("'gauss'", "did you mean gaussian")),
    kernel_case("unknown-parameter", "gaussian:foo=1", ("'foo'", "parameters: sigma, size")),
    kernel_case("repeated-parameter", "gaussian:sigma=1,sigma=2", ("sigma given twice",)),
    kernel_case("negative-size", "box:-3", ("box", "from 1 to 1025", "'-3'")),
    kernel_case("zero-size", "box:0", ("box", "from 1 to 1025", "'0'")),
    kernel_case("zero-sigma", "gaussian:sigma=0", ("sigma must be a number > 0",)),
    kernel_case("negative-sigma", "log:sigma=-2", ("sigma must be a number > 0",)),
    kernel_case("even-size-where-odd", "gaussian:size=4", ("size must be an odd integer",)),
    kernel_case("even-binomial", "binomial:4", ("odd",)),
    kernel_case("unknown-modifier", "box@size=3", ("'@size=3'", "@scale=S or @origin=ROW,COL")),
    kernel_case("weights-overflow", "1e200@scale=1e200", ("finite",)),
    kernel_case("weights-beyond-float32", "[1e308 1e308]", ("--precision double",)),
    kernel_case("unknown-gradient", "grad:foo", ("grad: op must be", "sobel")),
    kernel_case("pool-larger-than-the-image", "maxpool:100", ("maxpool", "smaller size")),
    kernel_case("empty-spec", "", ("empty kernel spec", "convtool kernels")),
    # valid but unusual
    Case(
        "kernel-wider-than-the-image-reflect",
        filter_args(grey_and_copy, "-k", "box:31", out="out.npy"),
        0,
        check=equals_scipy(BOX31, "mirror"),
    ),
    Case(
        "kernel-wider-than-the-image-wrap",
        filter_args(grey_and_copy, "-k", "box:31", "--padding", "wrap", out="out.npy"),
        0,
        check=equals_scipy(BOX31, "grid-wrap"),
    ),
    Case(
        "kernel-wider-than-the-image-full",
        filter_args(grey_and_copy, "-k", "box:31", "--padding", "full", out="out.npy"),
        0,
        check=grows_by(30),
    ),
    Case(
        "zero-sum-with-normalize",
        filter_args(grey_and_copy, "-k", "laplacian", "--normalize", out="out.npy"),
        0,
        check=equals_scipy(LAPLACIAN, "mirror"),
    ),
    Case(
        "huge-weights-normalized",
        filter_args(grey_and_copy, "-k", "1e308 1e308", "--normalize", out="out.npy"),
        0,
        check=equals_scipy(np.array([[0.5, 0.5]]), "mirror"),
    ),
    Case(
        "huge-weights-in-double-clip-to-white",
        filter_args(grey_and_copy, "-k", "[1e308 1e308]", "--precision", "double"),
        0,
        check=all_255_where_input_is_not_0,
    ),
]


def two_images(ws: Workspace) -> list:
    return [ws.grey(), b.grey_png(ws.root, "second.png")]


def several_inputs_to_a_file(ws: Workspace) -> list:
    first, second = two_images(ws)
    return ["filter", first, second, "-o", ws.write("file.png", b"x"), "-k", "box:3"]


def folder_to_a_file(ws: Workspace) -> list:
    (ws / "in").mkdir()
    b.grey_png(ws / "in")
    return ["filter", ws / "in", "-o", ws.write("file.png", b"x"), "-k", "box:3"]


def hard_link_to_the_input(ws: Workspace) -> Path:
    os.link(ws.grey(), ws / "link.png")
    return ws / "link.png"


OPTION_CASES = [
    Case("stride-zero", filter_args(grey_and_copy, "--stride", "0"), 2, ("--stride", "≥ 1")),
    Case("stride-negative", filter_args(grey_and_copy, "--stride", "-2"), 2, ("--stride",)),
    Case("dilation-zero", filter_args(grey_and_copy, "--dilation", "0"), 2, ("--dilation", "≥ 1")),
    Case(
        "iterations-zero",
        filter_args(grey_and_copy, "-n", "0"),
        2,
        ("--iterations", "from 1 to 1000"),
    ),
    Case(
        "iterations-absurd",
        filter_args(grey_and_copy, "-n", "1000000000"),
        2,
        ("--iterations", "from 1 to 1000"),
    ),
    # (-n 1000 of box:1025 with full padding grows past any memory: test_limits.py shows
    # the estimate refusing it, without running anything.)
    Case(
        "memory-estimate-refuses",
        filter_args(grey_and_copy),
        1,
        ("grey.png", "memory", "CONVTOOL_MAX_MEMORY"),
        env={"CONVTOOL_MAX_MEMORY": "1M"},
    ),
    Case("threads-zero", filter_args(grey_and_copy, "--threads", "0"), 2, ("--threads",)),
    Case(
        "cval-infinite",
        filter_args(grey_and_copy, "--padding", "constant", "--cval", "inf"),
        2,
        ("--cval", "finite"),
    ),
    Case(
        "cval-without-constant-padding",
        filter_args(grey_and_copy, "--cval", "3"),
        2,
        ("--cval", "--padding constant"),
    ),
    Case(
        "depth-the-format-cannot-hold",
        filter_args(grey_and_copy, "--depth", "float"),
        2,
        ("PNG", "depth", "8 or 16"),
    ),
    Case(
        "depth-and-format-conflict",
        filter_args(grey_and_copy, "--depth", "16", "--format", "jpg", out="out.jpg"),
        2,
        ("JPEG", "depth", "holds 8"),
    ),
    Case(
        "channel-out-of-range",
        filter_args(grey_and_copy, "--channels", "5"),
        2,
        ("--channels", "1 channel"),
    ),
    Case(
        "unknown-padding",
        filter_args(grey_and_copy, "--padding", "mirorr"),
        2,
        ("'mirorr'", "reflect"),
    ),
    Case(
        "unknown-precision",
        filter_args(grey_and_copy, "--precision", "half"),
        2,
        ("--precision", "--help"),
    ),
    Case(
        "compress-level-out-of-range",
        filter_args(grey_and_copy, "--compress-level", "12"),
        2,
        ("--compress-level", "--help"),
    ),
    Case(
        "max-pixels-negative",
        filter_args(grey_and_copy, "--max-pixels", "-1"),
        2,
        ("--max-pixels", "0 for no limit"),
    ),
    Case("no-kernel", lambda ws: ["filter", ws.grey(), "-o", ws.out], 2, ("'--kernel'", "--help")),
    Case("no-output", lambda ws: ["filter", ws.grey(), "-k", "box"], 2, ("'--output'", "--help")),
    Case("output-folder-is-a-file", folder_to_a_file, 2, ("file.png", "-o", "output folder")),
    Case(
        "several-inputs-to-a-file", several_inputs_to_a_file, 2, ("file.png", "-o", "output folder")
    ),
    Case(
        "unwritable-output-folder",
        filter_args(grey_and_copy, out=lambda ws: ws.read_only("locked") / "out.png"),
        1,
        ("locked/out.png", "cannot write"),
    ),
    Case(
        "output-folder-missing",
        filter_args(grey_and_copy, out="nowhere/out.png"),
        1,
        ("nowhere/out.png", "the folder does not exist"),
    ),
    Case(
        "output-parent-is-a-file",
        filter_args(grey_and_copy, out=lambda ws: ws.write("plain", b"x") / "out.png"),
        1,
        ("plain/out.png", "not a folder"),
    ),
    Case(
        "output-is-the-input",
        filter_args(grey_and_copy, out="grey.png"),
        2,
        ("grey.png", "the output is the input", "choose another -o"),
    ),
    Case(
        "output-is-a-hard-link-to-the-input",
        filter_args(grey_and_copy, out=hard_link_to_the_input),
        2,
        ("link.png", "choose another -o"),
    ),
    Case(
        "unknown-output-extension",
        filter_args(grey_and_copy, out="out.xyz"),
        2,
        ("out.xyz", "'.xyz'", "--format"),
    ),
    Case(
        "output-without-extension",
        filter_args(grey_and_copy, out="result"),
        2,
        ("result", "no extension", "--format"),
    ),
    Case(
        "unknown-format", filter_args(grey_and_copy, "--format", "xyz"), 2, ("'xyz'", "supported: ")
    ),
]

CASES = IMAGE_CASES + KERNEL_CASES + OPTION_CASES


def test_the_corpus_is_large_enough_and_its_ids_unique():
    failures = [c for c in CASES if c.exit_code]
    assert len(failures) >= 40
    assert len({c.id for c in CASES}) == len(CASES)


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and folder (None) under ``root``, hidden ones included."""
    found: dict[str, bytes | None] = {}
    for folder, folders, files in os.walk(root):
        for name in folders:
            found[os.path.relpath(os.path.join(folder, name), root)] = None
        for name in files:
            path = os.path.join(folder, name)
            found[os.path.relpath(path, root)] = Path(path).read_bytes()
    return found


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(
            c, id=c.id, marks=[pytest.mark.xfail(strict=True, reason=c.xfail)] if c.xfail else []
        )
        for c in CASES
    ],
)
def test_bad_input(case: Case, tmp_path: Path, monkeypatch):
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    ws = Workspace(tmp_path)
    try:
        args = [str(a) for a in case.build(ws)]
        before = snapshot(tmp_path)
        stdin = case.stdin(ws) if case.stdin else None
        with stderr_chatter() as chatter:  # warnings, log records, C libraries' own output
            result = runner.invoke(app, args, input=stdin)
        lines = [line for line in result.stderr.splitlines() if line.strip()] + chatter
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert not any("Traceback" in line for line in lines)
        after = snapshot(tmp_path)
        if case.exit_code == 0:
            assert result.exit_code == 0, lines
            if case.note is None:
                assert lines == []
            else:
                assert len(lines) == 1 and case.note in lines[0], lines
            added = set(after) - set(before)
            dest = os.path.relpath(args[args.index("-o") + 1], tmp_path)
            assert added == set((dest,) if case.outputs is None else case.outputs)
            assert {k: after[k] for k in before} == before  # inputs unchanged
            case.check(ws)
            return
        assert result.exit_code == case.exit_code, lines
        assert len(lines) == 1, lines
        line = lines[0]
        assert line.startswith("convtool: error: ")
        missing = [needle for needle in case.needles if needle not in line]
        assert not missing, line
        assert after == before  # no output, no temporary file, inputs byte for byte
    finally:
        for manager in reversed(ws.cleanups):
            manager.__exit__(None, None, None)
