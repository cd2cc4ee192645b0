"""One image across a Dask cluster gives the bytes of the in-memory filter.

A LocalCluster on loopback with two workers: ``convtool.dask.convolve`` against
``convtool.convolve``, ``filter_image`` against ``Chain.apply``, and ``convtool filter
big.tif -o out.zarr --dask ADDRESS`` against the same command without ``--dask``, for
paddings whose border reads real neighbours, padding, or (``wrap``) the other side.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

distributed = pytest.importorskip("distributed")
zarr = pytest.importorskip("zarr")
da = pytest.importorskip("dask.array")

import convtool  # noqa: E402
import convtool.dask as cdask  # noqa: E402
from convtool import batch  # noqa: E402
from convtool.batch import Job, Settings  # noqa: E402
from convtool.engine import plan as engine_plan  # noqa: E402
from convtool.errors import UsageError  # noqa: E402
from convtool.pipeline import Chain, FilterOptions, parse_steps  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client():
    """Two workers in this process (so the tests' small engine bands hold there too)."""
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False,
        dashboard_address=":0", worker_dashboard_address=":0",
    ) as cluster, distributed.Client(cluster, set_as_default=False) as client:  # fmt: skip
        yield client


@pytest.fixture
def small_bands(monkeypatch):
    monkeypatch.setattr(engine_plan, "_BAND_ELEMENTS", 400)


@pytest.mark.parametrize("padding", ["reflect", "wrap", "constant", "valid", "full"])
def test_convolve_on_the_cluster_is_the_in_memory_call(client, small_bands, rng, padding):
    x = rng.uniform(0, 255, (2, 600, 41)).astype(np.float32)
    kernels = [convtool.get_kernel("gaussian:sigma=1.5"), rng.uniform(-1, 1, (4, 7)),
               rng.uniform(-1, 1, (13, 13))]  # separable, direct, fft  # fmt: skip
    wanted, lazies = [], []
    for kernel, (stride, dilation) in itertools.product(kernels, [(1, 1), (2, 3)]):
        options = {"padding": padding, "stride": stride, "dilation": dilation, "threads": 2}
        if padding == "constant":
            options["cval"] = 9.0
        wanted.append(convtool.convolve(x, kernel, **options))
        lazy = cdask.convolve(da.from_array(x, chunks=(1, 100, 41)), kernel, chunk_rows=20,
                              **options)  # fmt: skip
        assert lazy.numblocks[1] > 1
        lazies.append(lazy)
    for got, want in zip(client.gather(client.compute(lazies)), wanted, strict=True):
        assert got.dtype == want.dtype and got.tobytes() == want.tobytes()


def test_integer_arrays_and_correlation_as_in_memory(client, rng):
    x = rng.integers(0, 256, (90, 30), dtype=np.uint8)
    kernel = rng.uniform(-1, 1, (5, 3))
    want = convtool.correlate(x, kernel, padding="edge")
    lazy = cdask.correlate(da.from_array(x, chunks=(20, 30)), kernel, padding="edge", chunk_rows=16)
    got = client.compute(lazy).result()
    assert got.dtype == want.dtype == np.float64 and got.tobytes() == want.tobytes()


def test_a_chain_with_alpha_on_the_cluster_is_chain_apply(client, small_bands, rng):
    samples = rng.integers(0, 256, (120, 50, 4), dtype=np.uint8)
    pixels, alpha = samples[:, :, :3].astype(np.float32), samples[:, :, 3].astype(np.float32)
    for padding in ("symmetric", "wrap"):
        chain = Chain(parse_steps(["gaussian:sigma=1", "grad:sobel", "maxpool:2"]),
                      FilterOptions(padding=padding, threads=2), iterations=2,
                      channels="luma")  # fmt: skip
        want, want_alpha = chain.apply(pixels, alpha)
        lazy = cdask.filter_image(da.from_array(samples, chunks=(25, 50, 4)), chain,
                                  has_alpha=True, chunk_rows=6)  # fmt: skip
        got = client.compute(lazy).result()
        assert got[:, :, :3].tobytes() == want.tobytes()
        assert got[:, :, 3].tobytes() == want_alpha.tobytes()


def test_filter_on_dask_writes_the_in_memory_zarr(client, small_bands, tmp_path, rng):
    tifffile.imwrite(tmp_path / "big.tif", rng.integers(0, 256, (400, 90), dtype=np.uint8),
                     tile=(32, 32), compression="zlib", metadata=None)  # fmt: skip
    chain = Chain(parse_steps(["box:7", "sobel-y"]), FilterOptions(padding="reflect"))
    settings = Settings(chain)
    batch.process(Job(str(tmp_path / "big.tif"), str(tmp_path / "ref.zarr")), settings)
    shown = []
    job = Job(str(tmp_path / "big.tif"), str(tmp_path / "out.zarr"))
    cdask.filter_file(job, settings, None, client=client, chunk_rows=50,
                         progress=lambda done, total: shown.append((done, total)))  # fmt: skip
    got = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")
    want = zarr.open_array(str(tmp_path / "ref.zarr"), mode="r")
    assert got.dtype == want.dtype == np.uint8
    assert got[:].tobytes() == want[:].tobytes()
    assert shown[-1] == (8, 8) and len(shown) == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.tif", "out.zarr", "ref.zarr"]


def test_one_image_on_dask_needs_a_zarr_output(client, tmp_path, rng):
    np.save(tmp_path / "in.npy", rng.integers(0, 256, (20, 20), dtype=np.uint8))
    job = Job(str(tmp_path / "in.npy"), str(tmp_path / "out.tif"))
    with pytest.raises(UsageError, match=r"-o NAME\.zarr"):
        cdask.filter_file(job, Settings(Chain(parse_steps(["box:3"]))), None, client=client)


def test_the_command_line_on_a_cluster_gives_the_local_bytes(tmp_path, rng):
    """``convtool filter big.tif -o out.zarr --dask ADDRESS``: worker processes, real paths."""
    tifffile.imwrite(tmp_path / "big.tif", rng.integers(0, 256, (3000, 1500), dtype=np.uint8),
                     tile=(256, 256), metadata=None)  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "convtool", "filter", str(tmp_path / "big.tif"),
               "-k", "gaussian:sigma=2", "-p", "wrap"]  # fmt: skip
    subprocess.run([*command, "-o", str(tmp_path / "local.zarr")], env=env, check=True)
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=":0", worker_dashboard_address=":0",
    ) as cluster:  # fmt: skip
        done = subprocess.run([*command, "-o", str(tmp_path / "out.zarr"), "--dask",
                               cluster.scheduler_address], env=env, capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "chunks" in done.stderr and done.stdout == ""
    got = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")
    assert got[:].tobytes() == zarr.open_array(str(tmp_path / "local.zarr"), mode="r")[:].tobytes()
