"""Filesystem faults: each gives one clear line, loses nothing, and progress resumes once fixed.

Real faults, not mocks: `chattr +i` (refused even to root) for read-only folders, a small tmpfs for
a full disk. These need root (CI runs as root); elsewhere they are skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import pytest
from conftest import drain, ledger_job, make_job, read_ledger, run

from jobroot import folders as fs

pytestmark = [
    pytest.mark.ordeal,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("chattr") is None, reason="needs root and chattr"),
]


def immutable(path: Path, on: bool) -> None:
    subprocess.run(["chattr", "+i" if on else "-i", str(path)], check=True)


def wait_ended(root: Path, name: str) -> None:
    import time

    deadline = time.monotonic() + 30
    while not (root / "pending" / name / fs.EXIT_RECORD).exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_read_only_complete(root: Path, ledger: Path) -> None:
    make_job(root, "a", ledger_job(ledger, "a", "exit 3"))
    run(root)
    wait_ended(root, "a")
    immutable(root / "complete", True)
    try:
        result = run(root)
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "a: finish failed" in lines[0] and "Operation not permitted" in lines[0]
        assert os.listdir(root / "pending") == ["a"]
    finally:
        immutable(root / "complete", False)
    drain(root)
    assert read_ledger(ledger) == ["a"] and "code 3" in (root / "complete" / "a" / fs.ERROR).read_text()


def test_read_only_pending(root: Path, ledger: Path) -> None:
    make_job(root, "a", ledger_job(ledger, "a"))
    immutable(root / "pending", True)
    try:
        result = run(root)
        assert result.returncode == 1 and "a: submit failed" in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert os.listdir(root / "inbox") == ["a"] and read_ledger(ledger) == []
    finally:
        immutable(root / "pending", False)
    drain(root)
    assert read_ledger(ledger) == ["a"]


def test_a_job_folder_that_cannot_take_its_verdict(root: Path, ledger: Path) -> None:
    make_job(root, "a", ledger_job(ledger, "a", "exit 4"))
    run(root)
    wait_ended(root, "a")
    immutable(root / "pending" / "a", True)  # job_error.txt cannot be written: the folder must not move
    try:
        result = run(root)
        assert result.returncode == 1 and "a: finish failed" in result.stderr
        assert os.listdir(root / "pending") == ["a"] and os.listdir(root / "complete") == []
    finally:
        immutable(root / "pending" / "a", False)
    drain(root)
    assert "code 4" in (root / "complete" / "a" / fs.ERROR).read_text() and read_ledger(ledger) == ["a"]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_no_space_left_while_writing_a_helper_file(small_disk: Path, ledger: Path) -> None:
    root = small_disk / "root"
    assert run(root, "-s", "-e", "local", "--settle", "0").returncode == 0
    make_job(root, "a", ledger_job(ledger, "a", "exit 5"))
    run(root)
    wait_ended(root, "a")
    filler = small_disk / "filler"
    with open(filler, "wb", buffering=0) as f:  # fill the disk to the last byte
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    try:
        result = run(root)
        assert result.returncode == 1 and "No space left on device" in result.stderr
        assert os.listdir(root / "pending") == ["a"] and not (root / "pending" / "a" / fs.ERROR).exists()
    finally:
        filler.unlink()
    drain(root)
    assert "code 5" in (root / "complete" / "a" / fs.ERROR).read_text() and read_ledger(ledger) == ["a"]


def test_pending_folders_deleted_or_renamed_by_the_user(root: Path, ledger: Path, tmp_path: Path) -> None:
    go = tmp_path / "go"
    wait = f"while [ ! -e {go} ]; do sleep 0.05; done\n"
    make_job(root, "gone", ledger_job(ledger, "gone", wait))
    make_job(root, "renamed", ledger_job(ledger, "renamed", wait))
    make_job(root, "other", ledger_job(ledger, "other"))
    run(root, "--slots", "3")
    shutil.rmtree(root / "pending" / "gone")
    os.rename(root / "pending" / "renamed", root / "pending" / "moved-by-user")
    go.touch()
    drain(root, "--slots", "3")
    assert sorted(os.listdir(root / "complete")) == ["moved-by-user", "other"]
    assert not (root / "complete" / "moved-by-user" / fs.ERROR).exists()


def test_a_missing_complete_folder_is_one_clear_line_until_fixed(root: Path, ledger: Path) -> None:
    make_job(root, "a", ledger_job(ledger, "a"))
    os.rmdir(root / "complete")
    result = run(root)
    assert result.returncode == 2 and result.stderr.strip().endswith("is not set up: run reconcile -r " + str(root) + " -s first")
    assert os.listdir(root / "inbox") == ["a"]
    assert run(root, "-s").returncode == 0
    drain(root)
    assert read_ledger(ledger) == ["a"]


@pytest.fixture
def other_fs(tmp_path: Path) -> Iterator[Path]:
    """A folder on another filesystem than tmp_path (/dev/shm is a tmpfs)."""
    if not os.path.isdir("/dev/shm") or os.stat("/dev/shm").st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second filesystem at /dev/shm")
    elsewhere = Path(f"/dev/shm/jobroot-test-{os.getpid()}-{tmp_path.name}")
    elsewhere.mkdir()
    yield elsewhere
    shutil.rmtree(elsewhere, ignore_errors=True)


def test_setup_refuses_stage_folders_on_two_filesystems_in_words(tmp_path: Path, other_fs: Path) -> None:
    r = tmp_path / "r"
    r.mkdir()
    (r / "complete").symlink_to(other_fs)
    result = run(r, "-s", "-e", "local")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "complete is on another filesystem" in line and "every move is a rename" in line
    assert not (r / fs.CONFIG).exists()


def test_a_run_that_cannot_move_across_filesystems_says_why_and_copies_nothing(root: Path, other_fs: Path) -> None:
    make_job(root, "a", "#!/bin/bash\ntrue\n")
    drain(root)  # a/ done on one filesystem
    make_job(root, "b", "#!/bin/bash\ntrue\n")
    run(root)  # b/ submitted into pending/
    (root / "complete").rename(root / "complete.old")
    (root / "complete").symlink_to(other_fs)  # the user put complete/ on other storage
    for _ in range(100):
        result = run(root)
        if result.returncode:
            break
    assert result.returncode == 1 and "complete/ is on another filesystem than pending/" in result.stderr
    assert "every move is a rename" in result.stderr and "Errno" not in result.stderr.split("complete/ is on")[1]
    assert os.listdir(root / "pending") == ["b"] and os.listdir(other_fs) == []  # nothing lost, nothing copied


def test_a_root_that_cannot_be_written_is_one_line_naming_it(root: Path) -> None:
    make_job(root, "a", "true\n")
    immutable(root, True)
    try:
        swept, setup = run(root), run(root, "-s", "--batch-limit", "3")
    finally:
        immutable(root, False)
    for result in (swept, setup):
        assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
        assert str(root) in result.stderr and "Traceback" not in result.stderr and ".tmp" not in result.stderr, result.stderr
    assert os.listdir(root / "inbox") == ["a"]  # nothing lost, nothing moved
