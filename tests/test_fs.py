"""The folder primitives: the one move, atomic writes, settle time, set-aside."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from jobroot import folders as fs

pytestmark = pytest.mark.unit


def folder(parent: Path, name: str, content: str = "x") -> Path:
    p = parent / name
    p.mkdir(parents=True)
    (p / "job.sh").write_text(content)
    return p


def test_move_never_replaces_an_empty_folder_a_file_or_a_link(tmp_path: Path) -> None:
    dest = tmp_path / "complete"
    dest.mkdir()
    (dest / "job").mkdir()  # os.rename would silently replace this empty folder
    (dest / "job.2").write_text("a file")
    os.symlink("nowhere", dest / "job.3")
    moved = fs.move(folder(tmp_path / "pending", "job", "mine"), dest, "job")
    assert moved.name == "job.4"
    assert (moved / "job.sh").read_text() == "mine"
    assert list((dest / "job").iterdir()) == [] and (dest / "job.2").read_text() == "a file"


def test_move_keeps_long_names_within_the_limit(tmp_path: Path) -> None:
    name = "é" * 127  # 254 bytes
    (tmp_path / "c").mkdir()
    fs.move(folder(tmp_path / "p", name), tmp_path / "c", name)
    second = fs.move(folder(tmp_path / "p2", name), tmp_path / "c", name)
    assert len(os.fsencode(second.name)) <= 255 and second.name.endswith(".2")


def test_write_atomic_replaces_whole_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "job_error.txt"
    fs.write_atomic(target, "old\n")
    fs.write_atomic(target, "new\n")
    assert target.read_text() == "new\n"
    assert os.listdir(tmp_path) == ["job_error.txt"]


def test_remove_temp_files_only_removes_ours(tmp_path: Path) -> None:
    for n in (".job_error.txt.123.tmp", ".job_submitted.json.9.tmp", ".mine.tmp", "job.tmp"):
        (tmp_path / n).write_text("")
    fs.remove_temp_files(tmp_path)
    assert sorted(os.listdir(tmp_path)) == [".mine.tmp", "job.tmp"]


@pytest.mark.fsclock  # file change times against this machine's clock
def test_newest_change_sees_deep_files_and_ignores_nothing(tmp_path: Path) -> None:
    job = folder(tmp_path, "job")
    deep = job / "a" / "b" / "c"
    deep.mkdir(parents=True)
    (deep / "data").write_text("x")
    past = time.time() - 1000
    for p in [job, job / "a", job / "a" / "b", deep, deep / "data", job / "job.sh"]:
        os.utime(p, (past, past))
    # ctime cannot be set back: a folder copied in just now counts as changed now, whatever its mtimes say
    assert fs.newest_change(job) > past + 900
    assert fs.newest_change(job) >= os.lstat(deep / "data").st_ctime


def test_set_aside_numbers_each_earlier_run(tmp_path: Path) -> None:
    job = folder(tmp_path, "job")
    assert fs.set_aside(job) is None  # nothing to set aside: nothing created
    assert not (job / fs.HISTORY).exists()
    for run in (1, 2):
        (job / fs.ERROR).write_text(f"run {run}")
        (job / fs.RECORD).write_text("{}")
        assert fs.set_aside(job) == job / fs.HISTORY / str(run)
    assert (job / fs.HISTORY / "2" / fs.ERROR).read_text() == "run 2"
    assert sorted(os.listdir(job)) == ["job.sh", fs.HISTORY]


def test_read_record_round_trip_and_garbage(tmp_path: Path) -> None:
    fs.write_record(tmp_path, "local", "42", 1.5)
    rec = fs.read_record(tmp_path)
    assert rec is not None and (rec.engine, rec.job_id, rec.submitted) == ("local", "42", 1.5)
    (tmp_path / fs.RECORD).write_text("{not json")
    try:
        fs.read_record(tmp_path)
    except ValueError as e:
        assert fs.RECORD in str(e)
    else:
        raise AssertionError("garbage record accepted")


def test_move_takes_the_next_name_when_the_target_appears_after_the_check(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    dest = tmp_path / "complete"
    (dest / "job").mkdir(parents=True)
    (dest / "job" / "theirs").write_text("another run's folder")  # appears between the check and the rename
    real = os.path.lexists
    monkeypatch.setattr(fs.os.path, "lexists", lambda p: False if str(p) == str(dest / "job") else real(p))
    moved = fs.move(folder(tmp_path / "pending", "job", "mine"), dest, "job")
    assert moved.name == "job.2" and (moved / "job.sh").read_text() == "mine"
    assert os.listdir(dest / "job") == ["theirs"]


def test_settle_time_sees_a_change_deep_in_a_subfolder(tmp_path: Path) -> None:
    job = folder(tmp_path, "job")
    deep = job / "a" / "b"
    deep.mkdir(parents=True)
    (deep / "data").write_text("x")
    time.sleep(0.05)
    (deep / "data").write_text("changed")  # changes this file alone: no folder above it changes
    changed = os.lstat(deep / "data")
    assert all(max(os.lstat(p).st_mtime, os.lstat(p).st_ctime) < changed.st_mtime for p in (job, job / "a", deep, job / "job.sh"))
    assert fs.newest_change(job) == max(changed.st_mtime, changed.st_ctime)


@pytest.mark.fsclock  # file change times against this machine's clock
def test_settle_time_counts_change_times_not_only_modification_times(tmp_path: Path) -> None:
    job = folder(tmp_path, "job")
    (job / "input.dat").write_text("copied with its old times kept, as cp -p and rsync -a do")
    past = time.time() - 1000
    os.utime(job, (past, past))
    time.sleep(0.05)
    for p in (job / "job.sh", job / "input.dat"):  # after the folder: a file's ctime is the newest time of all
        os.utime(p, (past, past))
    newest = os.lstat(job / "input.dat").st_ctime
    assert newest > os.lstat(job).st_ctime and newest > past + 900
    assert fs.newest_change(job) == newest


def test_the_record_keeps_the_claims_token(tmp_path: Path) -> None:
    # The token is what later proves a recorded id is this folder's job (a garbled sbatch answer names another).
    (tmp_path / fs.CLAIM).write_text('{"token": "jobroot-abc", "claimed": 1.0}')
    written = fs.write_record(tmp_path, "slurm", "42", 2.0)
    assert written.token == "jobroot-abc" and fs.read_record(tmp_path) == written
