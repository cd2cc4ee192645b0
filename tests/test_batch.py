"""Batches: inputs to jobs (names, skips, safety checks), running them, results and summary.

Every output of a batch is compared byte for byte with the same file run alone through
:func:`convtool.batch.process`, the one-file path.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convtool import batch
from convtool.batch import Job, Settings
from convtool.errors import ImageWriteError, UsageError
from convtool.pipeline import Chain, FilterOptions, parse_steps

RNG = np.random.default_rng(4)
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def settings_for(*specs: str, **options) -> Settings:
    return Settings(
        chain=Chain(steps=parse_steps(list(specs) or ["box:3"]), options=FilterOptions(**options))
    )


def photo(height: int, width: int, channels: int = 3) -> np.ndarray:
    """A smooth picture with edges and grain, like a small photograph (uint8)."""
    y, x = np.mgrid[0:height, 0:width]
    base = 128 + 90 * np.sin(x / 7.0) * np.cos(y / 11.0)
    base = base + 40 * ((x - width / 2) ** 2 + (y - height / 2) ** 2 < (height / 3) ** 2)
    planes = [base + 10 * c + RNG.normal(0, 6, base.shape) for c in range(channels)]
    out = np.clip(np.stack(planes, axis=-1), 0, 255).astype(np.uint8)
    return out[..., 0] if channels == 1 else out


def save(path: Path, array: np.ndarray, **params) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **params)
    return path


@pytest.fixture
def tree(tmp_path) -> Path:
    """in/ with images of several formats in nested folders, and files that must not work."""
    root = tmp_path / "in"
    save(root / "photo.png", photo(30, 40))
    save(root / "grey.jpg", photo(24, 20, 1), quality=90)
    save(root / "wide.webp", photo(16, 50), lossless=True)
    save(root / "sub" / "scan.tif", photo(20, 22))
    save(root / "sub" / "deep16.png", (photo(18, 18, 1).astype(np.uint16) * 257))
    save(root / "sub" / "deep" / "icon.bmp", photo(12, 12))
    save(root / "sub" / "deep" / "frame.gif", photo(10, 14, 1))
    np.save(root / "sub" / "field.npy", RNG.normal(size=(9, 11)).astype(np.float32))
    good = (root / "photo.png").read_bytes()
    (root / "corrupt.png").write_bytes(good[:60] + b"\x00" * 40)  # header, then garbage
    (root / "text.png").write_text("this is not a picture\n")
    (root / "empty.png").write_bytes(b"")
    (root / ".hidden.png").write_bytes(good)
    (root / "notes.txt").write_text("not an image\n")
    (root / ".cache").mkdir()
    (root / ".cache" / "thumb.png").write_bytes(good)
    return root


GOOD = {
    "photo.png",
    "grey.jpg",
    "wide.webp",
    "sub/scan.tif",
    "sub/deep16.png",
    "sub/deep/icon.bmp",
    "sub/deep/frame.gif",
    "sub/field.npy",
}
BAD = {"corrupt.png", "text.png", "empty.png"}


def relative(paths, root) -> set[str]:
    return {Path(p).relative_to(root).as_posix() for p in paths}


def run_all(jobs, settings, **options) -> list[batch.JobResult]:
    return list(batch.run(jobs, settings, **options))


def alone(source: Path, dest: Path, settings: Settings) -> bytes:
    """The bytes the one-file path writes for ``source``."""
    batch.process(Job(str(source), str(dest)), settings)
    return dest.read_bytes()


def temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".convtool-" in p.name]


# ---------------------------------------------------------------------------- planning


def test_a_folder_maps_to_the_same_relative_paths(tree, tmp_path):
    out = tmp_path / "out"
    plan = batch.plan([str(tree)], str(out), recursive=True)
    assert not plan.single
    assert relative([j.source for j in plan.jobs], tree) == GOOD | BAD
    assert all(j.dest == str(out / Path(j.source).relative_to(tree)) for j in plan.jobs)
    assert all(j.root == str(out) for j in plan.jobs)
    skipped = {Path(r.job.source).relative_to(tree).as_posix(): r.reason for r in plan.skipped}
    assert skipped == {
        ".hidden.png": "hidden file",
        "notes.txt": "not an image file name",
        ".cache": "hidden folder",
    }


def test_without_recursive_only_the_top_files_are_taken(tree, tmp_path):
    plan = batch.plan([str(tree)], str(tmp_path / "out"))
    assert (
        relative([j.source for j in plan.jobs], tree)
        == {"photo.png", "grey.jpg", "wide.webp"} | BAD
    )
    reasons = {Path(r.job.source).name: r.reason for r in plan.skipped}
    assert reasons["sub"] == "folder (add -r to descend into it)"


def test_suffix_goes_before_the_extension_and_format_changes_it(tree, tmp_path):
    out = tmp_path / "out"
    plan = batch.plan([str(tree)], str(out), recursive=True, suffix="-edges", format="png")
    dests = relative([j.dest for j in plan.jobs], out)
    assert "photo-edges.png" in dests
    assert "grey-edges.png" in dests
    assert "sub/deep/icon-edges.png" in dests
    assert "sub/field-edges.png" in dests
    jpg = batch.plan([str(tree / "photo.png"), str(tree / "grey.jpg")], str(out), format="jpg")
    assert relative([j.dest for j in jpg.jobs], out) == {"photo.jpg", "grey.jpg"}


def test_loose_files_go_to_the_top_of_the_output_folder(tree, tmp_path):
    out = tmp_path / "out"
    plan = batch.plan([str(tree / "sub" / "scan.tif"), str(tree / "photo.png")], str(out))
    assert sorted(j.dest for j in plan.jobs) == [str(out / "photo.png"), str(out / "scan.tif")]


@pytest.mark.parametrize(
    ("inputs", "output", "single"),
    [
        (["photo.png"], "edges.png", True),
        (["photo.png"], "-", True),
        (["photo.png"], "folder/", False),
        (["photo.png", "grey.jpg"], "folder", False),
        (["sub"], "folder", False),
    ],
)
def test_single_means_one_file_to_one_file(tree, tmp_path, inputs, output, single):
    out = (
        output if output == "-" else str(tmp_path / output) + ("/" if output.endswith("/") else "")
    )
    plan = batch.plan([str(tree / i) for i in inputs], out)
    assert plan.single is single


def test_one_file_into_an_existing_folder_keeps_its_name(tree, tmp_path):
    (tmp_path / "out").mkdir()
    plan = batch.plan([str(tree / "photo.png")], str(tmp_path / "out"), suffix="_x")
    assert [j.dest for j in plan.jobs] == [str(tmp_path / "out" / "photo_x.png")]


def test_two_inputs_mapping_to_one_output_is_a_usage_error_naming_both(tree, tmp_path):
    save(tree / "photo.jpg", photo(8, 8))
    with pytest.raises(UsageError, match="same output") as info:
        batch.plan([str(tree)], str(tmp_path / "out"), format="png")
    assert "photo.png" in str(info.value)
    assert "photo.jpg" in str(info.value)
    assert not (tmp_path / "out").exists()  # reported before any work


def test_two_input_folders_with_the_same_names_collide(tree, tmp_path):
    other = tmp_path / "other"
    save(other / "photo.png", photo(8, 8))
    with pytest.raises(UsageError, match="same output"):
        batch.plan([str(tree), str(other)], str(tmp_path / "out"))


def test_the_same_file_named_twice_is_one_job(tree, tmp_path):
    plan = batch.plan([str(tree), str(tree / "photo.png")], str(tmp_path / "out"))
    assert [j.source for j in plan.jobs].count(str(tree / "photo.png")) == 1


def test_an_output_folder_that_is_a_file_is_a_usage_error(tree, tmp_path):
    (tmp_path / "out").write_text("a file")
    with pytest.raises(UsageError, match="output folder"):
        batch.plan([str(tree)], str(tmp_path / "out"))


@pytest.mark.parametrize(
    ("inputs", "output", "message"),
    [
        (["-", "photo.png"], "out", "stdin"),
        (["photo.png", "grey.jpg"], "-", "output folder"),
        (["."], ".", "input folder"),
        (["photo.png"], "out.png", None),  # fine: a single file
    ],
)
def test_impossible_inputs_and_outputs_are_usage_errors(tree, monkeypatch, inputs, output, message):
    monkeypatch.chdir(tree)
    if message is None:
        batch.plan(inputs, output)
        return
    with pytest.raises(UsageError, match=message):
        batch.plan(inputs, output)


def test_suffix_needs_an_output_folder(tree, tmp_path):
    with pytest.raises(UsageError, match="--suffix"):
        batch.plan([str(tree / "photo.png")], str(tmp_path / "x.png"), suffix="_e")
    with pytest.raises(UsageError, match="separator"):
        batch.plan([str(tree)], str(tmp_path / "out"), suffix="/../x")


def test_an_unknown_format_is_a_usage_error(tree, tmp_path):
    with pytest.raises(UsageError, match="unknown output format"):
        batch.plan([str(tree)], str(tmp_path / "out"), format="xyz")


def test_an_input_extension_that_cannot_be_written_needs_format(tree, tmp_path):
    save(tree / "bits.pbm", photo(8, 8, 1) > 128)
    plan = batch.plan([str(tree)], str(tmp_path / "out"))
    assert [(Path(r.job.source).name, r.reason) for r in plan.failed] == [
        ("bits.pbm", "cannot write '.pbm' files; add --format to choose an output format")
    ]
    with_format = batch.plan([str(tree)], str(tmp_path / "out"), format="png")
    assert str(tmp_path / "out" / "bits.png") in {j.dest for j in with_format.jobs}


def test_the_output_folder_inside_the_input_folder_is_never_read_back(tree):
    out = tree / "sub" / "edges"
    settings = settings_for("box:3")
    first = batch.plan([str(tree)], str(out), recursive=True)
    results = run_all(first.jobs, settings, workers=1)
    assert {r.status for r in results} == {"done", "failed"}
    second = batch.plan([str(tree)], str(out), recursive=True)
    assert second.jobs == first.jobs
    assert not any(str(out) in r.job.source for r in second.skipped)


def test_an_output_would_overwrite_an_input(tree):
    with pytest.raises(UsageError, match="overwrite inputs"):
        batch.plan([str(tree / "photo.png"), str(tree / "sub")], str(tree), recursive=True)


def test_the_one_file_path_never_overwrites_its_input(tree):
    before = (tree / "photo.png").read_bytes()
    link = tree / "link.png"
    link.symlink_to(tree / "photo.png")
    for dest in (tree / "photo.png", link):
        with pytest.raises(UsageError, match="input"):
            batch.process(Job(str(tree / "photo.png"), str(dest)), settings_for("box:3"))
    assert (tree / "photo.png").read_bytes() == before


def test_symbolic_links_out_of_the_tree(tree, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    save(outside / "far.png", photo(8, 8))
    (tree / "far.png").symlink_to(outside / "far.png")  # a linked file: read like a file
    (tree / "elsewhere").symlink_to(outside, target_is_directory=True)  # a linked folder: not
    out = tmp_path / "out"
    plan = batch.plan([str(tree)], str(out), recursive=True)
    assert str(tree / "far.png") in {j.source for j in plan.jobs}
    assert "symbolic link to a folder (not followed)" in {r.reason for r in plan.skipped}
    results = run_all([j for j in plan.jobs if j.source.endswith("far.png")], settings_for())
    assert results[0].status == "done"
    assert (out / "far.png").is_file() and not (out / "far.png").is_symlink()
    assert os.listdir(outside) == ["far.png"]


def test_no_output_goes_through_a_symbolic_link_out_of_the_output_folder(tree, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "sub").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UsageError, match="outside the output folder"):
        batch.plan([str(tree)], str(out), recursive=True)
    # Made after planning: the worker checks again before writing.
    job = Job(str(tree / "sub" / "scan.tif"), str(out / "sub" / "deep" / "scan.tif"), str(out))
    with pytest.raises(ImageWriteError, match="outside the output folder"):
        batch.process(job, settings_for())
    assert os.listdir(outside) == []


def test_odd_names_stay_inside_the_output_folder(tmp_path):
    root = tmp_path / "in"
    names = ["-.png", "with space.png", "new\nline.png", "..dots.png", "ünï.png", "a..png"]
    for name in names:
        save(root / name, photo(6, 6))
    out = tmp_path / "out"
    plan = batch.plan([str(root)], str(out))
    assert {r.job.source for r in plan.skipped} == {str(root / "..dots.png")}  # hidden
    results = run_all(plan.jobs, settings_for(), workers=1)
    assert all(r.status == "done" for r in results)
    assert sorted(os.listdir(out)) == sorted(n for n in names if n != "..dots.png")


# ---------------------------------------------------------------------------- running


def expected_failures(tree) -> dict[str, str]:
    return {
        "corrupt.png": "truncated or corrupt image",
        "text.png": "not an image",
        "empty.png": "empty file",
    }


def test_a_batch_gives_the_one_file_bytes_and_goes_on_past_bad_files(tree, tmp_path):
    settings = settings_for("sobel-x")
    out = tmp_path / "out"
    plan = batch.plan([str(tree)], str(out), recursive=True)
    results = run_all(plan.jobs, settings, workers=2)
    assert len(results) == len(plan.jobs)
    summary = batch.summarize(results, plan)
    assert relative([r.job.source for r in summary.done], tree) == GOOD
    failed = {Path(r.job.source).name: r.reason for r in summary.failed}
    assert failed.keys() == expected_failures(tree).keys()
    for name, reason in expected_failures(tree).items():
        assert reason in failed[name]
    assert len(summary.skipped) == 3
    assert summary.exit_code == 1
    assert summary.not_run == 0
    for result in summary.done:
        reference = tmp_path / "alone" / Path(result.job.dest).name
        reference.parent.mkdir(exist_ok=True)
        assert Path(result.job.dest).read_bytes() == alone(
            Path(result.job.source), reference, settings
        ), result.job.source
    assert temp_files(out) == []


def test_one_and_two_workers_write_identical_bytes(tree, tmp_path):
    settings = settings_for("gaussian:sigma=1,size=5", "sharpen")
    outputs = {}
    for workers in (1, 2):
        out = tmp_path / f"out{workers}"
        plan = batch.plan([str(tree)], str(out), recursive=True)
        run_all(plan.jobs, settings, workers=workers)
        outputs[workers] = {p.relative_to(out): p.read_bytes() for p in out.rglob("*.*")}
    assert outputs[1].keys() == {Path(p) for p in GOOD}
    assert outputs[1] == outputs[2]


@pytest.mark.skipif(IS_ROOT, reason="root can read a file whatever its mode")
def test_an_unreadable_file_fails_with_its_reason(tree, tmp_path):
    locked = tree / "locked.png"
    shutil.copy(tree / "photo.png", locked)
    locked.chmod(0)
    try:
        plan = batch.plan([str(locked), str(tree / "photo.png")], str(tmp_path / "out"))
        results = {Path(r.job.source).name: r for r in run_all(plan.jobs, settings_for())}
    finally:
        locked.chmod(0o644)
    assert results["locked.png"].status == "failed"
    assert "permission denied" in results["locked.png"].reason
    assert results["photo.png"].status == "done"


def test_skip_existing_resumes(tree, tmp_path):
    out = tmp_path / "out"
    settings = settings_for()
    plan = batch.plan([str(tree)], str(out), recursive=True)
    run_all(plan.jobs, settings, workers=1)
    (out / "sub" / "scan.tif").unlink()
    (out / "photo.png").write_bytes(b"")  # an empty file is not a complete output
    again = batch.plan([str(tree)], str(out), recursive=True, skip_existing=True)
    assert relative([j.source for j in again.jobs], tree) == {"sub/scan.tif", "photo.png"} | BAD
    existing = [r for r in again.skipped if r.reason == "output exists"]
    assert len(existing) == len(GOOD) - 2
    assert batch.summarize([], again).skipped == again.skipped


def test_skip_existing_with_one_file(tree, tmp_path):
    dest = tmp_path / "x.png"
    dest.write_bytes(b"done before")
    plan = batch.plan([str(tree / "photo.png")], str(dest), skip_existing=True)
    assert plan.single and plan.jobs == []
    assert [r.reason for r in plan.skipped] == ["output exists"]


def test_fail_fast_stops_at_the_first_failure(tree, tmp_path):
    big = (tree / "photo.png").read_bytes()[:60] + bytes(200_000)  # large: it goes first
    (tree / "big-corrupt.png").write_bytes(big)
    plan = batch.plan([str(tree)], str(tmp_path / "out"), recursive=True)
    for workers in (1, 2):
        results = run_all(plan.jobs, settings_for(), workers=workers, fail_fast=True)
        failures = [i for i, r in enumerate(results) if r.status == "failed"]
        assert failures, workers
        summary = batch.summarize(results, plan)
        assert summary.not_run == len(plan.jobs) - len(results) > 0
        if workers == 1:
            assert failures == [len(results) - 1]


def test_largest_inputs_go_first(tree):
    jobs = [Job(str(p), "x") for p in sorted(tree.rglob("*.*")) if p.is_file()]
    sizes = [os.path.getsize(j.source) for j in batch.largest_first(jobs)]
    assert sizes == sorted(sizes, reverse=True)


def test_a_full_disk_stops_the_batch(tree, tmp_path, monkeypatch):
    from convtool import images
    from convtool.images import atomic

    def disk_full(dest, *args, **kwargs):
        reason = atomic.write_error_reason(OSError(errno.ENOSPC, "No space left on device"))
        raise ImageWriteError(f"cannot write: {reason}", path=str(dest))

    monkeypatch.setattr(images, "write_image", disk_full)
    plan = batch.plan([str(tree)], str(tmp_path / "out"), recursive=True)
    results = run_all(plan.jobs, settings_for(), workers=1)
    assert len(results) == 1
    assert results[0].fatal and "disk full" in results[0].reason


def test_stale_temporary_files_of_dead_processes_are_removed_first(tree, tmp_path):
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    dead = out / "sub" / ".scan.tif.convtool-999999999-0badcafe.tmp"
    dead.write_bytes(b"half an image")
    # another run, still writing (it holds the lock); its pid means nothing here (another
    # container or host), so it is the lock that keeps the file
    alive = out / ".photo.png.convtool-999999999-12345678.tmp"
    alive.write_bytes(b"another run, still writing")
    fd = os.open(alive, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        plan = batch.plan([str(tree)], str(out), recursive=True)
        run_all(plan.jobs[:1], settings_for(), workers=1)
        assert not dead.exists()
        assert alive.exists()
    finally:
        os.close(fd)


def test_a_worker_that_dies_fails_only_its_own_job(tree, tmp_path):
    plan = batch.plan([str(tree)], str(tmp_path / "out"), recursive=True)
    settings = Settings(chain=Chain(steps=(KillOn(width=50),)))  # wide.webp is 50 wide
    results = {Path(r.job.source).name: r for r in run_all(plan.jobs, settings, workers=2)}
    assert results["wide.webp"].status == "failed"
    assert "worker process died" in results["wide.webp"].reason
    assert {n for n, r in results.items() if r.status == "done"} == {Path(p).name for p in GOOD} - {
        "wide.webp"
    }


def test_a_pool_found_broken_when_a_job_is_submitted_is_replaced(tree, tmp_path, monkeypatch):
    # A worker may die after its job, between two waits: the next submission then meets a
    # broken pool. That job never started; it runs on a new pool like the others.
    from concurrent.futures.process import BrokenProcessPool

    from convtool.batch import pool

    submit, calls = pool._submit, []

    def breaks_once(*args):
        calls.append(args)
        if len(calls) == 3:
            raise BrokenProcessPool("a child process terminated abruptly")
        return submit(*args)

    monkeypatch.setattr(pool, "_submit", breaks_once)
    plan = batch.plan([str(tree)], str(tmp_path / "out"), recursive=True)
    results = run_all(plan.jobs, settings_for(), workers=2)
    assert sorted(r.job.source for r in results) == sorted(job.source for job in plan.jobs)
    done = {Path(r.job.source).relative_to(tree).as_posix() for r in results if r.status == "done"}
    assert done == GOOD
    assert len(calls) == len(plan.jobs) + 1  # the refused submission was made again


class KillOn:
    """A step that kills its own process on images ``width`` pixels wide (a crash or OOM)."""

    spec = "kill"

    def __init__(self, width: int) -> None:
        self.width = width

    def apply(self, stack, options):
        if stack.shape[-1] == self.width:
            os.kill(os.getpid(), 9)
        return stack

    def carry_alpha(self, alpha, options):
        return alpha

    def coverage(self, weights, options):
        return weights


def test_threads_are_shared_among_workers():
    settings = settings_for()
    assert batch.with_threads(settings, 3).chain.options.threads == 3
    fixed = settings_for(threads=2)
    assert batch.with_threads(fixed, 3).chain.options.threads == 2


def test_bad_worker_counts_are_usage_errors():
    for workers in (0, -1, 1.5):
        with pytest.raises(UsageError, match="--jobs"):
            batch.run([], settings_for(), workers=workers)


def test_summary_counts_and_exit_code():
    job = Job("a.png", "out/a.png")
    results = [batch.JobResult(job, "done"), batch.JobResult(job, "skipped", "output exists")]
    summary = batch.summarize(results)
    assert (len(summary.done), len(summary.skipped), len(summary.failed)) == (1, 1, 0)
    assert summary.exit_code == 0
    failed = batch.summarize([*results, batch.JobResult(job, "failed", "empty file")])
    assert failed.exit_code == 1


# ---------------------------------------------------------------------------------- Dask


def test_without_dask_the_message_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(UsageError) as info:
        batch.run([Job("a.png", "b.png")], settings_for(), dask_address="tcp://127.0.0.1:1")
    assert str(info.value) == "--dask needs dask.distributed: pip install 'convtool[dask]'"


@pytest.mark.slow
def test_a_dask_cluster_gives_the_same_outputs_as_the_local_pool(tree, tmp_path):
    distributed = pytest.importorskip("distributed")
    settings = settings_for("sobel-x")
    local = tmp_path / "local"
    plan = batch.plan([str(tree)], str(local), recursive=True)
    expected = batch.summarize(run_all(plan.jobs, settings, workers=2), plan)
    remote = tmp_path / "remote"
    plan = batch.plan([str(tree)], str(remote), recursive=True)
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=":0",
        worker_dashboard_address=":0",
    ) as cluster:
        results = run_all(plan.jobs, settings, dask_address=cluster.scheduler_address)
        plan_again = batch.plan([str(tree)], str(tmp_path / "again"), recursive=True)
        stopped = run_all(
            plan_again.jobs, settings, dask_address=cluster.scheduler_address, fail_fast=True
        )
    summary = batch.summarize(results, plan)
    assert relative([r.job.source for r in summary.done], tree) == GOOD
    assert {(Path(r.job.source).name, r.reason) for r in summary.failed} == {
        (Path(r.job.source).name, r.reason) for r in expected.failed
    }
    assert [r.status for r in stopped].count("failed") == 1
    assert stopped[-1].status == "failed"
    assert {p.relative_to(remote): p.read_bytes() for p in remote.rglob("*.*")} == {
        p.relative_to(local): p.read_bytes() for p in local.rglob("*.*")
    }
