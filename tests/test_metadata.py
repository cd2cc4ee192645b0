"""What a photo carries besides its pixels survives `convtool filter`, or is named.

The inputs are made with Pillow (and its littleCMS for a real sRGB profile); the outputs
are read back by Pillow and, where installed, by exiftool and libvips: independent
readers, so a field convtool wrote in the wrong place would not be found.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms, PngImagePlugin
from typer.testing import CliRunner

from convtool.cli import app
from convtool.images import Image as ConvImage
from convtool.images import Metadata, exif, metadata, read_image, write_image

runner = CliRunner()
README = Path(__file__).resolve().parent.parent / "README.md"

SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
GREY_PROFILE = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()  # not RGB
GPS = {1: "N", 2: (52.0, 31.0, 12.5), 3: "E", 4: (13.0, 24.0, 1.0)}
CAMERA = {0x010F: "Canon", 0x0110: "EOS R5", 0x0132: "2024:05:06 07:08:09"}
HEIGHT, WIDTH = 30, 40  # as stored; Orientation 6 shows it 40 high and 30 wide


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def camera_exif(orientation: int = 6) -> Image.Exif:
    tags = Image.Exif()
    for tag, value in CAMERA.items():
        tags[tag] = value
    tags[0x0112] = orientation
    tags[0x8825] = GPS
    tags[0x8769] = {0x9003: "2024:05:06 07:08:09", 0xA002: WIDTH, 0xA003: HEIGHT}
    return tags


def stored_pixels() -> np.ndarray:
    return np.random.default_rng(5).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)


@pytest.fixture
def photo(tmp_path) -> Path:
    """A camera JPEG: sRGB profile, EXIF with Orientation 6 and GPS, 300 dpi."""
    path = tmp_path / "photo.jpg"
    Image.fromarray(stored_pixels()).save(
        path, exif=camera_exif().tobytes(), icc_profile=SRGB, dpi=(300, 300), quality=95
    )
    return path


def read_back(path: Path) -> dict:
    """What Pillow finds in a file: profile, EXIF tags and sub-IFDs, dpi, text, size."""
    with Image.open(path) as im:
        im.load()
        tags = im.getexif()
        return {
            "icc": im.info.get("icc_profile"),
            "ifd0": {tag: tags.get(tag) for tag in CAMERA},
            "orientation": tags.get(0x0112),
            "gps": dict(tags.get_ifd(0x8825)),
            "exif_ifd": dict(tags.get_ifd(0x8769)),
            "dpi": im.info.get("dpi"),
            "text": dict(getattr(im, "text", {}) or {}),
            "xmp": im.info.get("xmp"),
            "size": im.size,
        }


# ----------------------------------------------------------------------- photo round trips


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".tif", ".webp"])
def test_a_photos_profile_exif_and_dpi_survive_filtering(tmp_path, photo, suffix):
    out = tmp_path / f"out{suffix}"
    result = invoke("filter", photo, "-k", "sharpen", "-o", out)
    assert result.exit_code == 0, result.stderr
    got = read_back(out)
    assert got["icc"] == SRGB  # byte for byte
    assert got["ifd0"] == CAMERA
    assert got["orientation"] == 1  # the pixels were turned upright
    assert got["gps"] == GPS
    assert got["exif_ifd"][0x9003] == "2024:05:06 07:08:09"
    assert (got["exif_ifd"][0xA002], got["exif_ifd"][0xA003]) == (HEIGHT, WIDTH)
    assert got["size"] == (HEIGHT, WIDTH)  # upright: 30 wide, 40 high
    if suffix == ".webp":  # WebP has no resolution field: said so, once
        assert "WebP cannot hold the input's DPI; left out" in result.stderr
    else:
        assert got["dpi"] == pytest.approx((300, 300), abs=0.01)
        assert result.stderr == ""


def test_exif_orientation_is_reset_in_place_and_nothing_else_changes(photo):
    with Image.open(photo) as im:
        original = im.info["exif"][6:]  # after "Exif\0\0"
    upright = read_image(photo).metadata.exif
    changed = [i for i, (a, b) in enumerate(zip(original, upright, strict=True)) if a != b]
    assert len(upright) == len(original)
    assert exif.orientation(original) == 6 and exif.orientation(upright) == 1
    assert len(changed) == 1  # the low byte of one SHORT: 6 → 1


def test_a_size_change_updates_exifs_pixel_dimensions(tmp_path, photo):
    out = tmp_path / "small.jpg"
    assert invoke("filter", photo, "-k", "box:5", "-p", "valid", "-o", out).exit_code == 0
    got = read_back(out)
    assert got["size"] == (HEIGHT - 4, WIDTH - 4)
    assert (got["exif_ifd"][0xA002], got["exif_ifd"][0xA003]) == (HEIGHT - 4, WIDTH - 4)


def test_a_dimension_beyond_a_short_rebuilds_the_block():
    tags = Image.Exif()
    tags[0x010F] = "Canon"
    tags[0x8769] = {0xA002: 30, 0xA003: 40}  # Pillow stores these as SHORT
    block = tags.tobytes()[6:]
    bigger = exif.with_size(block, 70000, 40)
    again = Image.Exif()
    again.load(b"Exif\x00\x00" + bigger)
    assert again.get_ifd(0x8769)[0xA002] == 70000 and again[0x010F] == "Canon"


def test_png_text_profile_xmp_and_dpi_survive(tmp_path):
    text = PngImagePlugin.PngInfo()
    text.add_text("Title", "Harbour at dawn")
    text.add_itxt("Author", "Zoë Ångström")  # not Latin-1: an iTXt chunk
    text.add_text("Description", "long exposure", zip=True)  # zTXt
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description tiff:Orientation="1"/></x:xmpmeta>'
    text.add_itxt("XML:com.adobe.xmp", xmp.decode())
    src = tmp_path / "in.png"
    Image.fromarray(stored_pixels()).save(src, pnginfo=text, icc_profile=SRGB, dpi=(300, 300))
    out = tmp_path / "out.png"
    assert invoke("filter", src, "-k", "box:3", "-o", out).exit_code == 0
    got = read_back(out)
    assert got["icc"] == SRGB
    assert got["dpi"] == pytest.approx((300, 300), abs=0.01)
    assert got["xmp"] == xmp
    expected = {
        "Title": "Harbour at dawn",
        "Author": "Zoë Ångström",
        "Description": "long exposure",
    }
    assert {k: v for k, v in got["text"].items() if k in expected} == expected


def test_tiff_tags_and_exif_sub_ifds_survive(tmp_path):
    src = tmp_path / "in.tif"
    Image.fromarray(stored_pixels()).save(
        src, exif=camera_exif(orientation=6).tobytes(), icc_profile=SRGB, dpi=(300, 300)
    )
    out = tmp_path / "out.tif"
    assert invoke("filter", src, "-k", "box:3", "-o", out).exit_code == 0
    got = read_back(out)
    assert got["icc"] == SRGB
    assert got["ifd0"] == CAMERA and got["orientation"] == 1 and got["gps"] == GPS
    assert got["dpi"] == pytest.approx((300, 300))
    assert got["size"] == (HEIGHT, WIDTH)


def test_strip_leaves_no_metadata(tmp_path, photo):
    for suffix in (".jpg", ".png", ".tif"):
        out = tmp_path / f"bare{suffix}"
        result = invoke("filter", photo, "-k", "box:3", "--strip", "-o", out)
        assert result.exit_code == 0 and result.stderr == ""
        got = read_back(out)
        assert got["icc"] is None and got["xmp"] is None
        assert got["ifd0"] == dict.fromkeys(CAMERA) and got["gps"] == {}
        assert got["dpi"] in (None, (72, 72))  # Pillow's JPEG default JFIF density
        assert got["size"] == (HEIGHT, WIDTH)  # the orientation is still applied


def test_what_a_format_cannot_hold_is_one_warning_line(tmp_path, photo):
    result = invoke("filter", photo, "-k", "box:3", "-o", tmp_path / "out.gif")
    assert result.exit_code == 0
    assert result.stderr.splitlines() == [
        f"convtool: warning: {tmp_path / 'out.gif'}: GIF cannot hold the input's "
        "ICC profile, EXIF, DPI; left out"
    ]


def test_a_batch_warns_once_per_file(tmp_path, photo):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.jpg", "b.jpg"):
        shutil.copy(photo, folder / name)
    out = tmp_path / "out"
    result = invoke("filter", folder, "-k", "box:3", "-o", out, "--format", "ppm", "-j", "1")
    assert result.exit_code == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert [Path(line.split(": ")[2]).name for line in warnings] == ["a.ppm", "b.ppm"]
    assert all("PNM cannot hold the input's ICC profile, EXIF, DPI" in w for w in warnings)


def test_a_profile_for_another_colour_space_is_left_out():
    kept, dropped = metadata.for_format(Metadata(icc=SRGB), "png", channels=1)  # --gray
    assert kept.icc is None and dropped == ["ICC profile (made for another colour space)"]
    kept, dropped = metadata.for_format(Metadata(icc=SRGB), "png", channels=3)
    assert kept.icc == SRGB and dropped == []


def test_write_image_writes_the_metadata_it_is_given(tmp_path):
    given = Metadata(icc=SRGB, dpi=(150.0, 150.0), text={"Title": "made in Python"})
    image = ConvImage(np.full((4, 5, 3), 100.0), depth=8, metadata=given)
    assert write_image(tmp_path / "out.png", image) == []
    again = read_image(tmp_path / "out.png").metadata
    assert (again.icc, again.dpi, again.text) == (SRGB, (150.0, 150.0), {"Title": "made in Python"})


def test_the_readme_table_says_what_each_format_holds():
    """The README's "What is kept" table is metadata.HOLDS (and the frame/alpha rules)."""
    from convtool.images.frames import MULTI_FRAME_FORMATS
    from convtool.images.output import KEEPS_ALPHA

    lines = README.read_text().split("### What is kept", 1)[1].splitlines()
    rows = [line for line in lines if line.startswith("| ")][2:]
    table = {}
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        if not cells[0].startswith("**"):
            break
        table[cells[0].strip("*").lower()] = cells[1:]
    assert set(table) == set(metadata.HOLDS)
    for fmt, holds in metadata.HOLDS.items():
        cells = [not cell.startswith("—") for cell in table[fmt]]  # "—": not held
        expected = [item in holds for item in metadata.ITEMS]
        expected[-1] = "text" in holds or "comment" in holds
        expected += [fmt in MULTI_FRAME_FORMATS, fmt in KEEPS_ALPHA]
        assert cells == expected, fmt


# ----------------------------------------------------------------------- other readers


@pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool is not installed")
@pytest.mark.parametrize("suffix", [".jpg", ".png", ".tif"])
def test_exiftool_reads_what_was_kept(tmp_path, photo, suffix):
    out = tmp_path / f"out{suffix}"
    assert invoke("filter", photo, "-k", "box:3", "-o", out).exit_code == 0
    report = subprocess.run(
        ["exiftool", "-j", "-n", "-Make", "-Model", "-ModifyDate", "-Orientation",
         "-GPSLatitude", "-GPSLongitude", "-ProfileDescription", str(out)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    tags = json.loads(report.stdout)[0]
    assert (tags["Make"], tags["Model"], tags["ModifyDate"]) == tuple(CAMERA.values())
    assert tags["Orientation"] == 1
    assert tags["GPSLatitude"] == pytest.approx(52 + 31 / 60 + 12.5 / 3600)
    assert tags["GPSLongitude"] == pytest.approx(13 + 24 / 60 + 1 / 3600)
    assert tags["ProfileDescription"] == "sRGB built-in"


@pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool is not installed")
def test_exiftool_finds_nothing_after_strip(tmp_path, photo):
    out = tmp_path / "bare.jpg"
    assert invoke("filter", photo, "-k", "box:3", "--strip", "-o", out).exit_code == 0
    report = subprocess.run(
        ["exiftool", "-j", "-EXIF:all", "-ICC_Profile:all", "-XMP:all", str(out)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert set(json.loads(report.stdout)[0]) == {"SourceFile"}


@pytest.mark.skipif(shutil.which("vipsheader") is None, reason="libvips is not installed")
@pytest.mark.parametrize("suffix", [".jpg", ".png", ".tif"])
def test_libvips_reads_the_profile_orientation_and_resolution(tmp_path, photo, suffix):
    out = tmp_path / f"out{suffix}"
    assert invoke("filter", photo, "-k", "box:3", "-o", out).exit_code == 0
    fields = {}
    for field in ("icc-profile-data", "xres", "width", "height"):
        done = subprocess.run(
            ["vipsheader", "-f", field, str(out)], capture_output=True, text=True, check=True
        )
        fields[field] = done.stdout.strip()
    assert base64.b64decode(fields["icc-profile-data"]) == SRGB
    assert float(fields["xres"]) == pytest.approx(300 / 25.4, abs=1e-3)  # pixels per mm
    assert (int(fields["width"]), int(fields["height"])) == (HEIGHT, WIDTH)
    if suffix == ".jpg":  # libvips reads EXIF from JPEG (its orientation tag with it)
        done = subprocess.run(
            ["vipsheader", "-f", "orientation", str(out)], capture_output=True, text=True
        )
        assert done.stdout.strip() in ("1", "")


# ----------------------------------------------------------------------- the block itself


def test_a_damaged_block_is_dropped_not_fatal():
    assert exif.upright(b"II*\x00\xff\xff\xff\xff") is None
    assert exif.orientation(b"garbage") == 1


def test_a_tiff_without_exif_has_none(tmp_path):
    path = tmp_path / "plain.tif"
    Image.fromarray(stored_pixels()).save(path)
    assert read_image(path).metadata.exif is None


def test_sub_ifd_bytes_are_laid_out_for_their_offset():
    data = exif.sub_ifd_bytes(GPS, exif.GPS_IFD, 100, "<")
    (count,) = struct.unpack_from("<H", data)
    assert count == len(GPS)
    # a file with the IFD at offset 100 reads back the same tags
    head = b"II*\x00" + struct.pack("<I", 100)
    blob = head + b"\x00" * (100 - len(head)) + data
    tags = Image.Exif()
    tags.load_from_fp(io.BytesIO(blob))
    assert dict(tags) == GPS
