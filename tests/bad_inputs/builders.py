"""Small image and kernel files for the bad-input corpus, built from code, not shipped.

Every builder takes a folder and returns the path it wrote. Images are small (tens of
pixels a side) and noisy, so compressed data spans most of the file and a truncation or a
flipped byte lands in it; the same seed gives the same bytes on every run.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

HEIGHT, WIDTH = 20, 24


def noise(*shape: int, seed: int = 3, dtype=np.uint8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.uniform(-2.0, 300.0, shape).astype(dtype)
    return rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype, endpoint=True)


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def rgb_png_bytes() -> bytes:
    return encoded(Image.fromarray(noise(HEIGHT, WIDTH, 3)), "PNG")


def rgb_jpeg_bytes() -> bytes:
    return encoded(Image.fromarray(noise(HEIGHT, WIDTH, 3)), "JPEG", quality=90)


def rgb_tiff_bytes() -> bytes:
    return encoded(Image.fromarray(noise(HEIGHT, WIDTH, 3)), "TIFF")


def png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return struct.pack(">I", len(data)) + kind + data + crc


def png_declaring(width: int, height: int, idat: bytes = b"") -> bytes:
    """A grey 8-bit PNG whose header declares ``width`` × ``height``, with a valid CRC.

    With a tiny ``idat`` its data is nowhere near the declared size: a decompression bomb
    (or a 0×0 image) that only a header check can refuse cheaply.
    """
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", idat or zlib.compress(b"\x00" * 64))
        + png_chunk(b"IEND", b"")
    )


def write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def truncated(data: bytes, at: int | float) -> bytes:
    """The first ``at`` bytes (an int), or that share of the file (a float below 1)."""
    return data[: int(len(data) * at) if isinstance(at, float) else at]


def flipped(data: bytes, offset: int, mask: int = 0xFF) -> bytes:
    """``data`` with the byte at ``offset`` XORed by ``mask``."""
    out = bytearray(data)
    out[offset] ^= mask
    return bytes(out)


# ------------------------------------------------------------------ valid but unusual


def save(folder: Path, name: str, image: Image.Image, **options) -> Path:
    path = folder / name
    image.save(path, **options)
    return path


def one_pixel_png(folder: Path) -> Path:
    return save(folder, "one.png", Image.fromarray(np.array([[200]], np.uint8)))


def multi_frame_gif(folder: Path) -> Path:
    frames = [Image.fromarray(np.full((HEIGHT, WIDTH), v, np.uint8)) for v in (10, 200, 90)]
    return save(folder, "anim.gif", frames[0], save_all=True, append_images=frames[1:])


def multi_page_tiff(folder: Path) -> Path:
    pages = [Image.fromarray(np.full((HEIGHT, WIDTH), v, np.uint8)) for v in (10, 200)]
    return save(folder, "pages.tif", pages[0], save_all=True, append_images=pages[1:])


def cmyk(folder: Path, fmt: str) -> Path:
    image = Image.fromarray(noise(HEIGHT, WIDTH, 4), "CMYK")
    return save(folder, f"cmyk.{fmt}", image)


def lab_tiff(folder: Path) -> Path:
    return save(folder, "lab.tif", Image.fromarray(noise(HEIGHT, WIDTH, 3), "LAB"))


def one_bit(folder: Path, fmt: str) -> Path:
    bits = Image.fromarray(noise(HEIGHT, WIDTH) > 127)
    return save(folder, f"bits.{fmt}", bits)


def tiff_of(folder: Path, name: str, array: np.ndarray) -> Path:
    import tifffile

    path = folder / name
    tifffile.imwrite(path, array, photometric="rgb" if array.ndim == 3 else "minisblack")
    return path


def rgba_png(folder: Path) -> Path:
    return save(folder, "rgba.png", Image.fromarray(noise(HEIGHT, WIDTH, 4), "RGBA"))


def grey_png(folder: Path, name: str = "grey.png") -> Path:
    return save(folder, name, Image.fromarray(noise(HEIGHT, WIDTH)))


def palette_with_transparency(folder: Path) -> Path:
    image = Image.fromarray(noise(HEIGHT, WIDTH) % 4, "P")
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255])
    return save(folder, "palette.png", image, transparency=0)


# ------------------------------------------------------------------ hostile files


def postscript(marker: Path) -> bytes:
    """An EPS program that creates *marker* if a PostScript interpreter (Ghostscript) runs it."""
    return (
        b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n"
        + f"({marker}) (w) file dup (ran) writestring closefile\n".encode()
        + b"showpage\n"
    )


def tiff_planes(folder: Path, name: str, planes: int, dtype=np.float64) -> Path:
    """One page of ``planes`` separate samples (PlanarConfiguration 2) of HEIGHT × WIDTH."""
    import tifffile

    path = folder / name
    data = np.zeros((planes, HEIGHT, WIDTH), dtype)
    tifffile.imwrite(path, data, planarconfig="separate", photometric="minisblack")
    return path


def tiff_volume(folder: Path, name: str, planes: int) -> Path:
    """One page that is a volume of ``planes`` slices (the ImageDepth tag)."""
    import tifffile

    path = folder / name
    data = np.zeros((planes, 32, 32), np.uint8)
    tifffile.imwrite(path, data, volumetric=True, tile=(16, 16), photometric="minisblack")
    return path


def tiff_12_bit(folder: Path) -> Path:
    import tifffile

    path = folder / "twelve.tif"
    tifffile.imwrite(path, np.full((HEIGHT, WIDTH), 7, np.uint16), bitspersample=12)
    return path


class Endless(io.RawIOBase):
    """A stream that never ends (``/dev/zero``, or ``yes``): ``head`` first, then ``fill``.

    ``taken`` counts the bytes read, so a test can tell how far reading went.
    """

    def __init__(self, head: bytes = b"", fill: bytes = b"\0") -> None:
        super().__init__()
        self.head, self.fill, self.taken = head, fill, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        size = len(buffer)
        start, self.taken = self.taken, self.taken + size
        data = self.head[start : start + size]
        buffer[:size] = data + self.fill * (size - len(data))
        return size
