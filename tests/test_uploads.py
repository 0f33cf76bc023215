"""Partial uploads are never submitted early; watch mode and cron runs share a root safely."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from conftest import RECONCILE, drain, ledger_job, make_job, read_ledger, run

FILES = 6
CHECK = f'n=$(ls data.* 2>/dev/null | wc -l); if [ "$n" = {FILES} ]; then echo whole >> {{ledger}}; else echo partial-$n >> {{ledger}}; fi\n'


def slow_upload(folder: Path, ledger: Path, pause: float, old_mtimes: bool) -> None:
    """job.sh first, then the data files one by one, like a slow scp; mtimes kept old as cp -p/rsync -a do."""
    folder.mkdir()
    (folder / "job.sh").write_text(CHECK.format(ledger=ledger))
    for i in range(FILES):
        time.sleep(pause)
        path = folder / f"data.{i}"
        path.write_text("x" * 1000)
        if old_mtimes:
            os.utime(path, (time.time() - 86400, time.time() - 86400))


def test_a_slow_upload_is_submitted_only_once_complete(root: Path, ledger: Path) -> None:
    writer = threading.Thread(target=slow_upload, args=(root / "inbox" / "slow", ledger, 0.5, True))
    writer.start()
    runs = 0
    while writer.is_alive():
        assert run(root, "--settle", "1.5").returncode == 0
        runs += 1
        time.sleep(0.2)
    writer.join()
    drain(root, "--settle", "1.5")
    assert runs >= 10, "the runs did not overlap the upload"
    assert read_ledger(ledger) == ["whole"]


def test_the_hidden_name_recipe_needs_no_settle_time(root: Path, ledger: Path) -> None:
    writer = threading.Thread(target=slow_upload, args=(root / "inbox" / ".upload", ledger, 0.3, False))
    writer.start()
    while writer.is_alive():
        assert run(root, "--settle", "0").returncode == 0
        time.sleep(0.1)
    writer.join()
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
