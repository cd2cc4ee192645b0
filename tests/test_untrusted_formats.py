"""Only the formats README documents are ever decoded; nothing starts an external program.

Pillow can open some 40 formats by their content, and its EPS loader runs Ghostscript on
the file: a PostScript program named ``photo.jpg`` could then write and read files. Here a
PostScript payload that creates a marker file when Ghostscript runs it (the canary test
shows it does, where ``gs`` is installed) is fed to every command that reads images, under
the name of each loader family, as a path and on stdin: the marker never appears, and the
refusal is one line naming the file and what it is. The other tests check that the gate is
the only door (no other call opens image data) and that no other Pillow plugin is imported.
"""

from __future__ import annotations

import ast
import io
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from bad_inputs import builders as b
from PIL import Image
from typer.testing import CliRunner

import convtool
from convtool.cli import app
from convtool.errors import ImageReadError, ResourceLimitError
from convtool.images import Image as ConvtoolImage
from convtool.images import codecs, read_image, write_image
from convtool.images.api import STREAM_BYTES_PER_PIXEL

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = Path(convtool.__file__).parent
runner = CliRunner()
HAS_GHOSTSCRIPT = shutil.which("gs") is not None


def payload(marker: Path) -> bytes:
    """EPS that writes *marker* when a PostScript interpreter runs it."""
    return (
        b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n"
        + f"({marker}) (w) file dup (ran) writestring closefile\n".encode()
        + b"0 0 moveto 8 8 lineto stroke showpage\n"
    )


def grey_png(path: Path) -> Path:
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8) * 4).save(path)
    return path


@pytest.mark.skipif(not HAS_GHOSTSCRIPT, reason="needs Ghostscript (gs) to show the payload runs")
def test_canary_the_payload_really_runs_when_pillow_opens_it_unguarded(tmp_path):
    """Without the gate (Pillow left to choose the format), the payload writes its marker."""
    marker = tmp_path / "ran"
    (tmp_path / "clobber.jpg").write_bytes(payload(marker))
    script = "import sys; from PIL import Image; Image.open(sys.argv[1]).load()"
    subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "clobber.jpg")],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert marker.exists()


NAMES = ["clobber.png", "clobber.jpg", "clobber.tif"]


def commands(source: str, ws: Path) -> dict[str, list[str]]:
    """Every command that reads an image, reading *source* (a path or '-') in each place."""
    other = str(grey_png(ws / "plain.png"))
    return {
        "filter": ["filter", source, "-k", "box:3", "-o", str(ws / "out.png")],
        "match-scene": ["match", source, other, "--json"],
        "match-template": ["match", other, source, "--json"],
        "match-overlay": ["match", source, other, "--per-channel", "--overlay", str(ws / "o.png")],
        "compare": ["compare", other, source, "-o", str(ws / "sheet.png")],
    }


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("via", ["path", "stdin"])
@pytest.mark.parametrize(
    "command", ["filter", "match-scene", "match-template", "match-overlay", "compare"]
)
def test_postscript_under_an_image_name_is_refused_unrun(tmp_path, name, via, command):
    marker = tmp_path / "ran"
    evil = tmp_path / name
    evil.write_bytes(payload(marker))
    source = str(evil) if via == "path" else "-"
    args = commands(source, tmp_path)[command]
    result = runner.invoke(app, args, input=evil.read_bytes() if via == "stdin" else None)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 1, lines
    assert lines == [
        f"convtool: error: {source}: a PostScript/EPS file, not a format convtool reads; it reads "
        f"{codecs.READ_NAMES} (convert it first)"
    ]
    assert not marker.exists()
    assert not any(p.name.startswith(("out", "o.", "sheet")) for p in tmp_path.iterdir())


def test_a_batch_refuses_postscript_in_every_worker(tmp_path):
    marker = tmp_path / "ran"
    folder = tmp_path / "in"
    folder.mkdir()
    for name in NAMES:
        (folder / name).write_bytes(payload(marker))
    grey_png(folder / "fine.png")
    args = ["filter", str(folder), "-o", str(tmp_path / "out"), "-j", "2", "-k", "box:3"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    failed = [line for line in result.stderr.splitlines() if line.startswith("  failed: ")]
    assert len(failed) == 3
    assert all("a PostScript/EPS file, not a format convtool reads" in line for line in failed)
    assert not marker.exists()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["fine.png"]


# One line naming what the file is, for the formats one is likely to meet.
OTHER_FILES = {
    "pdf": (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "a PDF document"),
    "svg": (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>', "an XML/SVG file"),
    "dos-eps": (b"\xc5\xd0\xd3\xc6" + bytes(28), "a PostScript/EPS file"),
    "psd": (b"8BPS\x00\x01" + bytes(20), "a Photoshop (PSD) file"),
    "pfm": (b"Pf\n2 2\n-1.0\n" + bytes(16), "a PFM (float PNM) image"),
    "ico": (b"\x00\x00\x01\x00\x01\x00" + bytes(20), "a Windows icon (ICO/CUR)"),
    "jpeg2000": (b"\x00\x00\x00\x0cjP  \r\n\x87\n" + bytes(8), "a JPEG 2000 image"),
    "heic": (b"\x00\x00\x00\x18ftypheic" + bytes(8), "a HEIF/AVIF image"),
    "gzip": (b"\x1f\x8b\x08\x00" + bytes(8), "an archive or compressed file"),
    "text": (b"API_KEY=sk-live-0123456789\n", "text"),
    "zeros": (bytes(100), "all zero bytes"),
}


@pytest.mark.parametrize("kind", sorted(OTHER_FILES))
def test_other_formats_are_named_and_nothing_of_the_file_is_echoed(tmp_path, kind):
    data, what = OTHER_FILES[kind]
    path = tmp_path / "picture.png"
    path.write_bytes(data)
    with pytest.raises(ImageReadError) as caught:
        read_image(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert f"({what})" in message or message.startswith(f"{path}: {what},")
    assert "\n" not in message and "sk-live" not in message


def test_formats_are_told_by_their_bytes_and_only_the_documented_ones_pass():
    assert codecs.sniff(b"\x89PNG\r\n\x1a\n....") == "PNG"
    assert codecs.sniff(b"\xff\xd8\xff\xe0") == "JPEG"
    assert codecs.sniff(b"II*\x00") == codecs.sniff(b"MM\x00*") == "TIFF"
    assert codecs.sniff(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "WEBP"
    assert codecs.sniff(b"GIF89a") == "GIF"
    assert codecs.sniff(b"BM") == "BMP"
    assert [codecs.sniff(b"P%d\n1 1\n" % n) for n in range(1, 7)] == ["PPM"] * 6
    assert codecs.sniff(b"\x93NUMPY\x01\x00") == "NPY"
    for other in (b"%!PS-Adobe", b"%PDF-1.4", b"Pf\n", b"PF\n", b"P7\n", b"<svg", b"", b"\x00" * 9):
        assert codecs.sniff(other) is None
    assert set(codecs.READ_FORMATS) == {"PNG", "JPEG", "TIFF", "BMP", "WEBP", "GIF", "PPM"}


def _calls(tree: ast.AST):
    """(function name, call) for every call in a module, with the function it is in."""
    for func in ast.walk(tree):
        if isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            for node in ast.walk(func):
                if isinstance(node, ast.Call):
                    yield func.name, node


def test_one_door_to_the_decoders():
    """Pillow's Image.open and tifffile's readers are called in one place each, guarded."""
    opens, tiff_readers = [], []
    for source in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(source.read_text(), filename=str(source))
        for function, call in _calls(tree):
            target = call.func
            if not isinstance(target, ast.Attribute):
                continue
            owner = target.value.id if isinstance(target.value, ast.Name) else None
            if owner in ("Image", "PILImage") and target.attr == "open":
                opens.append((source.name, function, {k.arg for k in call.keywords}))
            if owner == "tifffile" and target.attr in ("TiffFile", "imread", "memmap"):
                tiff_readers.append((source.name, function))
    assert opens == [("sniff.py", "open_pillow", {"formats"})]
    assert set(tiff_readers) == {
        ("tiff.py", "decode_tifffile"),
        ("tiff.py", "decode_tifffile_page"),
        ("tiles.py", "_open_tiff"),  # images larger than memory, read band by band
    }


def test_decode_reaches_tifffile_only_after_a_tiff_signature(monkeypatch):
    reached = []
    monkeypatch.setattr(codecs, "decode_tifffile", lambda *args: reached.append(args))
    with pytest.raises(ImageReadError):
        codecs.decode(b"%!PS-Adobe-3.0\n", "x.tif", None)
    assert reached == []


def test_band_readers_reach_tifffile_only_after_a_tiff_signature(monkeypatch, tmp_path):
    from convtool.images import tiles

    reached = []
    monkeypatch.setattr(tiles, "_open_tiff", lambda *args: reached.append(args))
    (tmp_path / "x.tif").write_bytes(b"%!PS-Adobe-3.0\n")
    with pytest.raises(ImageReadError, match="the formats that stream"):
        tiles.open_reader(tmp_path / "x.tif")
    assert reached == []


PLUGINS_SCRIPT = """
import sys
import numpy as np
from convtool import images
from convtool.images import sheet
pixels = np.random.default_rng(0).integers(0, 256, (8, 8, 3)).astype(np.float32)
for ext in ("png", "jpg", "tif", "bmp", "webp", "gif", "ppm", "npy"):
    path = f"{sys.argv[1]}/x.{ext}"
    images.write_image(path, images.Image(pixels, depth=8))
    images.read_image(path)
sheet.contact_sheet([pixels.astype(np.uint8)] * 2, ["a", "b"])
print(" ".join(sorted(m[4:] for m in sys.modules if m.startswith("PIL.") and "Plugin" in m)))
"""


def plugins_imported_by(script: str, *args: str) -> list[str]:
    """The Pillow plugins a fresh interpreter has imported after running *script*, which
    prints them."""
    result = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        check=True,
    )
    return result.stdout.split()


def test_only_the_plugins_of_the_documented_formats_are_ever_imported(tmp_path):
    """Reading and writing every format imports their plugins only: Image.init() never runs."""
    imported = set(plugins_imported_by(PLUGINS_SCRIPT, str(tmp_path)))
    assert "EpsImagePlugin" not in imported
    assert imported <= set(codecs.READ_FORMATS.values()) | {"MpoImagePlugin"}


def test_reading_one_png_imports_the_png_plugin_alone(tmp_path):
    """Pillow's preinit() (the BMP, GIF, JPEG, PPM and PNG plugins) is not run to read a PNG."""
    path = tmp_path / "one.png"
    write_image(path, ConvtoolImage(np.zeros((4, 5, 3)), depth=8))
    script = (
        "import sys; from convtool.images import read_image; read_image(sys.argv[1]); "
        "print(' '.join(m[4:] for m in sys.modules if m.startswith('PIL.') and 'Plugin' in m))"
    )
    assert plugins_imported_by(script, str(path)) == ["PngImagePlugin"]


def test_a_stream_that_never_ends_is_refused_from_its_first_bytes():
    endless = b.Endless()  # /dev/zero
    with pytest.raises(ImageReadError, match="not an image.*all zero bytes"):
        read_image("-", stdin=endless)
    assert endless.taken <= codecs.HEAD_BYTES


def test_a_stream_is_read_no_further_than_the_pixel_limit_allows():
    endless = b.Endless(head=b"\x89PNG\r\n\x1a\n")  # a PNG signature, then zeros for ever
    with pytest.raises(ResourceLimitError, match=r"raise --max-pixels"):
        read_image("-", stdin=endless, max_pixels=1000)
    limit = 1000 * STREAM_BYTES_PER_PIXEL + (16 << 20)
    assert limit < endless.taken <= limit + (2 << 20)


def bomb_headers() -> dict[str, bytes]:
    """Headers declaring 100 000 × 100 000 pixels, in the formats whose size sits up front."""
    npy = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        npy, {"descr": "|u1", "fortran_order": False, "shape": (100_000, 100_000)}
    )
    return {
        "png": b.png_declaring(100_000, 100_000)[:33],
        "gif": b"GIF89a" + struct.pack("<HH", 65_535, 65_535) + bytes(10),
        "bmp": b"BM" + bytes(12) + struct.pack("<Iii", 40, 100_000, -100_000) + bytes(30),
        "npy": npy.getvalue(),
    }


@pytest.mark.parametrize("kind", ["png", "gif", "bmp", "npy"])
def test_a_bomb_on_stdin_is_refused_from_its_header_before_its_data(kind):
    endless = b.Endless(head=bomb_headers()[kind])  # the header, then data for ever
    with pytest.raises(ResourceLimitError, match="pixels, over the limit .* --max-pixels"):
        read_image("-", stdin=endless)
    assert endless.taken <= codecs.HEAD_BYTES
