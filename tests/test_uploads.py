"""Partial uploads are never submitted early; watch mode and cron runs share a root safely."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import RECONCILE, drain, ledger_job, make_job, read_ledger, run

pytestmark = pytest.mark.local

FILES = 6
CHECK = (  # the job says whether it saw every file
    f"n=$(ls data.* 2>/dev/null | wc -l)\n"
    f'if [ "$n" = {FILES} ]; then echo whole >> {{ledger}}; else echo partial-$n >> {{ledger}}; fi\n'
)


def upload_step_by_step(root: Path, folder: Path, ledger: Path, settle: str, old_mtimes: bool) -> None:
    """job.sh first, then the data files one by one, like a slow scp, with a run after every step.

    With old modification times (cp -p, rsync -a) the change time still shows the files are new.
    """
    folder.mkdir()
    (folder / "job.sh").write_text(CHECK.format(ledger=ledger))
    assert run(root, "--settle", settle).returncode == 0
    for i in range(FILES):
        path = folder / f"data.{i}"
        path.write_text("x" * 1000)
        if old_mtimes:
            os.utime(path, (time.time() - 86400, time.time() - 86400))
        assert run(root, "--settle", settle).returncode == 0
        assert folder.exists(), f"submitted after {i + 1} of {FILES} files"


@pytest.mark.fsclock  # file change times against this machine's clock
def test_a_slow_upload_is_submitted_only_once_settled(root: Path, ledger: Path) -> None:
    upload_step_by_step(root, root / "inbox" / "slow", ledger, settle="30", old_mtimes=True)
    assert read_ledger(ledger) == []
    drain(root, "--settle", "1")  # once nothing has changed for 1 s it goes
    assert read_ledger(ledger) == ["whole"]


def test_the_hidden_name_recipe_needs_no_settle_time(root: Path, ledger: Path) -> None:
    upload_step_by_step(root, root / "inbox" / ".upload", ledger, settle="0", old_mtimes=False)
    assert read_ledger(ledger) == []
    os.rename(root / "inbox" / ".upload", root / "inbox" / "upload")
    drain(root, "--settle", "0")
    assert read_ledger(ledger) == ["whole"]


def test_watch_mode_and_cron_runs_together(root: Path, ledger: Path) -> None:
    watch = subprocess.Popen([*RECONCILE, "-r", str(root), "-p", "0.1", "--slots", "4"], stderr=subprocess.PIPE, text=True)
    try:
        for i in range(30):
            make_job(root, f"j{i:02}", ledger_job(ledger, f"j{i:02}"))
            result = run(root, "--slots", "4")  # a cron run at the same time
            assert result.returncode == 0, result.stderr
        deadline = time.monotonic() + 60
        while len(os.listdir(root / "complete")) < 30 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        watch.send_signal(signal.SIGTERM)
        assert watch.wait(timeout=30) == 0
    assert sorted(read_ledger(ledger)) == [f"j{i:02}" for i in range(30)]
    assert sorted(os.listdir(root / "complete")) == [f"j{i:02}" for i in range(30)]


def test_modification_times_in_the_future_never_hold_a_folder_back(root: Path, ledger: Path) -> None:
    # A laptop clock three hours ahead, copied with cp -p / rsync -a / scp -p / tar x: the times come along.
    job = make_job(root, "ahead", ledger_job(ledger, "ran"), {"input.dat": "x"})
    future = time.time() + 3 * 3600
    for path in (job / "job.sh", job / "input.dat", job):
        os.utime(path, (future, future))
    time.sleep(1.2)
    assert run(root, "--settle", "1").returncode == 0
    assert os.listdir(root / "pending") == ["ahead"] or os.listdir(root / "complete") == ["ahead"]


@pytest.mark.fsclock  # file change times against this machine's clock
def test_a_change_time_in_the_future_is_reported_with_its_skew_never_a_silent_wait(tmp_path: Path) -> None:
    from jobroot import status
    from jobroot.actions import Note
    from jobroot.model import Phase
    from jobroot.observe import judge_inbox_folder
    from jobroot.plan import Observation, Verdict, plan

    job = tmp_path / "job"
    job.mkdir()
    (job / "job.sh").write_text("#!/bin/bash\ntrue\n")
    # This machine's clock two hours behind the file server's: the folder's change times lie in its future.
    folder = judge_inbox_folder(job, 5.0, time.time() - 7200)
    assert folder.verdict is Verdict.SKEWED and "2.0 h in the future" in folder.reason and "clock" in folder.reason
    (action,) = plan([], Observation(), [folder], "local", 10)
    assert action == Note("job", folder.reason)  # in the log on every run
    (entry,) = status.inbox_entries([folder])
    assert entry.state is Phase.WAITING and entry.reason == folder.reason  # and in --status
    assert judge_inbox_folder(job, 5.0, time.time() + 10).verdict is Verdict.READY  # settled by its own clock
