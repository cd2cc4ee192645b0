"""Section 6: an image larger than memory on one machine, and one image on a Dask cluster.

A side×side 8-bit grey tiled TIFF (40000² in full mode: 1.6 gigapixels) is written tile by
tile, never whole. Gaussian σ=3 (convtool's 19-tap kernel):

- ``convtool filter --stream`` to a tiled BigTIFF, against ``vips gaussblur`` (its default,
  an integer approximation with a shorter mask, and with float precision and the same 19
  taps), all uncompressed tiled TIFF out: wall time and peak RSS of each process;
- on a LocalCluster of 2 worker processes, ``convtool filter in.zarr -o out.zarr --dask``
  against ``dask_image.ndfilters.convolve`` with the same 19×19 weights (and, for the
  record, its separable ``gaussian_filter``), both zarr to zarr: wall time and throughput.

Every output is compared with convtool's. Not part of ``--quick`` unless asked for with
``--sections 6`` (then at a 4000² side).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from benchlib import (
    CommandFailed,
    Goal,
    Section,
    Table,
    available_memory,
    find_program,
    fmt,
    photo_like,
    ratio,
    run_child,
    short_command,
)
from runconfig import Config, Tools, log

TILE = 256
SIGMA = 3


def section_large(cfg: Config, tools: Tools) -> Section:
    side = cfg.large_side
    section = Section()
    free = available_memory()
    if free is not None and free < 6 << 30 and side >= 20000:
        section.notes.append(f"Skipped: {free / 2**30:.1f} GiB available, 6 GiB wanted.")
        return section
    work = Path(tempfile.mkdtemp(prefix="bench-large-"))
    try:
        log(f"large: writing a {side}×{side} tiled TIFF, tile by tile")
        source = _write_tiled_tiff(work / "big.tif", side)
        reference = _one_machine(section, tools, source, side, work)
        _on_dask(section, tools, source, side, work, reference)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return section


def _write_tiled_tiff(path: Path, side: int) -> Path:
    """An 8-bit grey tiled TIFF written from a generator of tiles (no whole image in memory)."""
    import tifffile

    base = photo_like(2048, 2048, channels=1, seed=6)
    reach = 2048 - TILE

    def tiles():
        for i in range(0, side, TILE):
            for j in range(0, side, TILE):
                y, x = (i * 7 + j * 3) % reach, (j * 5 + i) % reach  # no two neighbours alike
                yield base[y : y + TILE, x : x + TILE]

    tifffile.imwrite(path, tiles(), shape=(side, side), dtype=np.uint8, tile=(TILE, TILE),
                     photometric="minisblack", bigtiff=True, metadata=None)  # fmt: skip
    return path


def _band(path: Path, rows: slice) -> np.ndarray:
    """Some rows of a TIFF or zarr output (the comparison never holds a whole image)."""
    if path.suffix == ".zarr":
        import zarr

        return np.asarray(zarr.open_array(str(path), mode="r")[rows])
    from convtool.images import tiles

    with tiles.open_reader(path) as reader:
        return reader.read(rows.start, rows.stop)[:, :, 0]


def _largest_difference(a: Path, b: Path, side: int, margin: int = 0) -> int:
    """max |a - b| over three bands of rows (top, middle, bottom), ``margin`` pixels in from
    the border (libvips extends images by copying the edge, convtool reflects them here)."""
    worst = 0
    for start in (margin, side // 2, max(margin, side - 512 - margin)):
        rows = slice(start, min(side - margin, start + 512))
        diff = _band(a, rows).astype(int) - _band(b, rows).astype(int)
        worst = max(worst, int(np.abs(diff[:, margin : side - margin]).max()))
    return worst


def _warm(client) -> None:
    """Import everything either tool needs on the workers before any timing."""

    def imports() -> None:
        import dask_image.ndfilters  # noqa: F401
        import scipy.ndimage  # noqa: F401
        import zarr  # noqa: F401

        import convtool.batch.dask_runner  # noqa: F401
        import convtool.dask  # noqa: F401
        import convtool.images.tiles  # noqa: F401

    client.run(imports)


def _one_machine(section: Section, tools: Tools, source: Path, side: int, work: Path) -> Path:
    table = Table(
        f"One machine: a {side}×{side} 8-bit tiled TIFF ({side * side / 1e9:.2f} gigapixels), "
        f"Gaussian σ={SIGMA}, uncompressed tiled TIFF out.",
        [
            "tool",
            "command",
            "seconds",
            "Mpix/s",
            "peak RSS (MiB)",
            "max |Δ| vs convtool (16 px in from the border)",
        ],  # fmt: skip
    )
    section.tables.append(table)
    out = work / "convtool.tif"
    command = tools.convtool + ["filter", str(source), "-k", f"gaussian:sigma={SIGMA}", "-o",
                                str(out), "--stream", "--compress-level", "0"]  # fmt: skip
    log("large: convtool --stream")
    try:
        ours = run_child(command, env=tools.env, own_memory=True)
    except CommandFailed as err:
        table.rows.append(
            ["convtool --stream", short_command(command), f"failed: {err}", "", "", ""]
        )
        return out
    pixels = side * side / 1e6
    table.rows.append(["convtool --stream", short_command(command), fmt(ours.seconds),
                       fmt(pixels / ours.seconds), f"{ours.max_rss / 2**20:.0f}", "0"])  # fmt: skip
    # The same command on a 16x16 tiled TIFF: the interpreter and its imports alone.
    tiny = _write_tiled_tiff(work / "tiny.tif", 16)
    startup = run_child([*command[: command.index(str(source))], str(tiny),
                         *command[command.index(str(source)) + 1 : command.index(str(out))],
                         str(work / "tiny-out.tif"), "--stream"], env=tools.env,
                        own_memory=True)  # fmt: skip
    table.rows.append(["convtool start-up (the same, 16×16)", "", fmt(startup.seconds), "",
                       f"{startup.max_rss / 2**20:.0f}", ""])  # fmt: skip
    vips_default = None
    if tools.vips:
        runs = [
            ("vips gaussblur (default: integer, shorter mask)", []),
            ("vips gaussblur (float, the same 19 taps)", ["--precision", "float", "--min-ampl", "0.011"]),
        ]  # fmt: skip
        for label, options in runs:
            dest = work / "vips.tif"
            cmd = [
                tools.vips,
                "gaussblur",
                str(source),
                f"{dest}[tile,bigtiff]",
                str(SIGMA),
                *options,
            ]
            log(f"large: {label}")
            try:
                child = run_child(cmd, own_memory=True)
            except CommandFailed as err:
                table.rows.append([label, short_command(cmd), f"failed: {err}", "", "", ""])
                continue
            difference = _largest_difference(dest, out, side, margin=16)
            table.rows.append([label, short_command(cmd), fmt(child.seconds),
                               fmt(pixels / child.seconds), f"{child.max_rss / 2**20:.0f}",
                               str(difference)])  # fmt: skip
            vips_default = child.seconds if vips_default is None else vips_default
            dest.unlink(missing_ok=True)
    else:
        section.notes.append("libvips is not installed: no vips rows.")
    section.notes.append(
        "Peak RSS is each command's own: read by os.wait4 in a small launcher process that "
        "starts it (forked by the benchmark process, which holds the image, a command's "
        "peak would start from what that process held: Linux keeps it across exec); the "
        "16×16 row is the interpreter and its imports alone."
    )
    section.goals.append(Goal("peak RSS ≤ 1 GiB while streaming", f"{ours.max_rss / 2**30:.2f} GiB",
                              ours.max_rss <= 1 << 30))  # fmt: skip
    slower = ratio(ours.seconds, vips_default)
    section.goals.append(Goal("convtool --stream within 1.5× of vips gaussblur's time",
                              f"{fmt(slower)}× its time" if slower else "—",
                              None if slower is None else slower <= 1.5))  # fmt: skip
    return out


def _on_dask(section: Section, tools: Tools, source: Path, side: int, work: Path, reference: Path):
    try:
        import dask.array as da
        import dask_image.ndfilters as ndfilters
        import distributed
        import zarr  # noqa: F401
    except ImportError as err:
        section.notes.append(f"Dask comparison skipped: {err} (pip install '.[bench]').")
        return
    from convtool.kernels import get_kernel

    table = Table(
        f"One image on a LocalCluster (2 worker processes, 1 thread each): the same image as "
        f"zarr (v3, chunks 256×4096), Gaussian σ={SIGMA}, zarr out.",
        ["tool", "seconds", "Mpix/s", "max |Δ| vs convtool --stream"],
    )
    section.tables.append(table)
    zarr_in = work / "in.zarr"
    log("large: the TIFF as zarr (convtool, identity kernel, band by band)")
    run_child(tools.convtool + ["filter", str(source), "-k", "identity", "-o", str(zarr_in), "--stream"],
              env=tools.env)  # fmt: skip
    kernel = get_kernel(f"gaussian:sigma={SIGMA}")
    pixels = side * side / 1e6
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None, worker_dashboard_address=None,
    ) as cluster, distributed.Client(cluster) as client:  # fmt: skip
        _warm(client)
        ours_out = work / "convtool-dask.zarr"
        command = tools.convtool + ["filter", str(zarr_in), "-k", f"gaussian:sigma={SIGMA}", "-o",
                                    str(ours_out), "--dask", cluster.scheduler_address, "-q"]  # fmt: skip
        log("large: convtool --dask")
        ours = None
        try:
            ours = run_child(command, env=tools.env).seconds
            table.rows.append(["convtool --dask", fmt(ours), fmt(pixels / ours),
                               str(_largest_difference(ours_out, reference, side))])  # fmt: skip
        except CommandFailed as err:
            table.rows.append(["convtool --dask", f"failed: {err}", "", ""])
        theirs = None
        runs = [
            ("dask_image.ndfilters.convolve (19×19 weights)",
             lambda x: ndfilters.convolve(x, kernel.weights.astype(np.float32), mode="mirror")),
            ("dask_image.ndfilters.gaussian_filter (separable)",
             lambda x: ndfilters.gaussian_filter(x, SIGMA, mode="mirror", truncate=3.0)),
        ]  # fmt: skip
        for label, run in runs:
            dest = work / "dask-image.zarr"
            log(f"large: {label}")
            start = time.perf_counter()
            try:
                da.to_zarr(run(da.from_zarr(str(zarr_in))), str(dest), overwrite=True)
            except Exception as err:  # noqa: BLE001 - a peer's failure is a row, not a crash
                table.rows.append([label, f"failed: {err!r}"[:200], "", ""])
                continue
            seconds = time.perf_counter() - start
            theirs = seconds if theirs is None else theirs
            table.rows.append([label, fmt(seconds), fmt(pixels / seconds),
                               str(_largest_difference(dest, reference, side))])  # fmt: skip
            shutil.rmtree(dest, ignore_errors=True)
    faster = ratio(theirs, ours)
    section.goals.append(Goal("convtool --dask ≥ 3× dask-image's convolve throughput",
                              f"{fmt(faster)}×" if faster else "—",
                              None if faster is None else faster >= 3))  # fmt: skip
    section.notes.append(
        "dask-image's convolve applies the 19×19 weights as they are (scipy.ndimage.convolve, "
        "361 multiply-adds a pixel); convtool finds the kernel separable. Its gaussian_filter row "
        "is the separable comparison. Rounding: convtool rounds half to even, scipy truncates."
    )
    if find_program("vips") is None:
        section.notes.append("libvips missing.")
