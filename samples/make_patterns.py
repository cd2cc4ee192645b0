"""Regenerate convtool's synthetic sample images (and, on request, the photographs).

    python samples/make_patterns.py                      # the synthetic patterns, here
    python samples/make_patterns.py --photos DATA_DIR    # also the photos, from the
                                                         # skimage/data folder of a
                                                         # scikit-image wheel

Every pattern is exact and small, so a filter's effect can be worked out by hand:

- step-edge.png      64×64 8-bit grey: 0 left of column 32, 255 from it on (a vertical edge)
- checkerboard.png   64×64 8-bit grey: 8×8-pixel squares of 0 and 255, 0 at the top left
- impulse.png        31×31 8-bit grey: 0 with one 255 at the centre (15, 15)
- gradient.png       256×32 8-bit grey: value = column (0..255), a horizontal ramp
- gradient16.png     512×32 16-bit grey: rint(column × 65535 / 511), a horizontal ramp
- rgba-hidden.png    64×64 8-bit RGBA: opaque blue (40, 120, 200) left half; the right
                     half is fully transparent but hides vivid magenta (255, 0, 255), so
                     a filter that mixes colour without alpha weights shows a pink fringe

Only numpy and Pillow are used, so the files do not depend on convtool's own writer.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent


def step_edge() -> np.ndarray:
    image = np.zeros((64, 64), np.uint8)
    image[:, 32:] = 255
    return image


def checkerboard(size: int = 64, square: int = 8) -> np.ndarray:
    index = np.arange(size) // square
    return np.where((index[:, None] + index[None, :]) % 2 == 1, 255, 0).astype(np.uint8)


def impulse(size: int = 31) -> np.ndarray:
    image = np.zeros((size, size), np.uint8)
    image[size // 2, size // 2] = 255
    return image


def gradient(width: int = 256, height: int = 32) -> np.ndarray:
    return np.tile(np.arange(width, dtype=np.uint8), (height, 1))


def gradient16(width: int = 512, height: int = 32) -> np.ndarray:
    row = np.rint(np.arange(width) * (65535 / (width - 1))).astype(np.uint16)
    return np.tile(row, (height, 1))


def rgba_hidden(size: int = 64) -> np.ndarray:
    image = np.zeros((size, size, 4), np.uint8)
    image[:, : size // 2] = (40, 120, 200, 255)
    image[:, size // 2 :] = (255, 0, 255, 0)  # invisible, but the colour is stored
    return image


# Pillow takes the mode from the array: uint8 → L or RGBA, uint16 → I;16 (16-bit PNG).
PATTERNS = {
    "step-edge.png": step_edge,
    "checkerboard.png": checkerboard,
    "impulse.png": impulse,
    "gradient.png": gradient,
    "gradient16.png": gradient16,
    "rgba-hidden.png": rgba_hidden,
}

# name in skimage/data → (file here, size (width, height) or None to copy the file as is)
PHOTOS = {
    "camera.png": ("camera.png", None),
    "rocket.jpg": ("rocket.jpg", None),
    "chelsea.png": ("chelsea.png", (300, 200)),
    "coffee.png": ("coffee.png", (384, 256)),
    "astronaut.png": ("astronaut.png", (256, 256)),
}


def write_patterns(folder: Path) -> None:
    for name, build in PATTERNS.items():
        Image.fromarray(build()).save(folder / name, optimize=True)


def write_photos(data_dir: Path, folder: Path) -> None:
    for source, (name, size) in PHOTOS.items():
        if size is None:
            (folder / name).write_bytes((data_dir / source).read_bytes())
        else:
            with Image.open(data_dir / source) as photo:
                photo.convert("RGB").resize(size, Image.LANCZOS).save(folder / name, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="folder to write into")
    parser.add_argument("--photos", type=Path, metavar="DATA_DIR", help="skimage/data folder")
    args = parser.parse_args()
    write_patterns(args.out)
    if args.photos:
        write_photos(args.photos, args.out)


if __name__ == "__main__":
    main()
