"""Seeing and steering jobs through files, end to end on the local engine: status, cancel, hold, retry, log."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest
from conftest import drain, ledger_job, make_job, read_ledger, run

from jobroot import __version__
from jobroot import folders as fs
from jobroot.log import LOG_MAX
from jobroot.plan import CANCELLED

pytestmark = pytest.mark.local

WAIT_FOR_GO = "#!/bin/bash\nwhile [ ! -e {go} ]; do sleep 0.05; done\n"


def snapshot(root: Path) -> dict[str, tuple[float, int]]:
    return {str(p.relative_to(root)): (p.lstat().st_mtime, p.lstat().st_size) for p in root.rglob("*")}


def wait_until(predicate, limit: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def test_status_table_and_json_are_read_only(root: Path, tmp_path: Path) -> None:
    go = tmp_path / "go"
    make_job(root, "ok", "true\n")
    make_job(root, "three", "exit 3\n")
    drain(root)
    make_job(root, "running", WAIT_FOR_GO.format(go=go))
    run(root)
    make_job(root, "waiting", "true\n")
    make_job(root, "held", "true\n", {"hold": ""})
    before = snapshot(root)
    table = run(root, "--status")
    as_json = run(root, "--status", "--json")
    assert snapshot(root) == before, "--status changed the root"
    assert table.returncode == 0 and as_json.returncode == 0
    states = {line.split()[0]: line.split()[1] for line in table.stdout.splitlines()[1:-2]}
    assert states == {"running": "running", "waiting": "waiting", "held": "held", "three": "failed", "ok": "done"}
    assert "The job exited with code 3" in table.stdout
    assert table.stdout.splitlines()[-2] == "1 running, 1 waiting, 1 held, 1 failed, 1 done"
    assert re.fullmatch(r"last sweep: \d+s ago", table.stdout.splitlines()[-1])
    data = json.loads(as_json.stdout)
    assert data["counts"]["running"] == 1 and data["counts"]["done"] == 1
    assert {j["name"]: j["state"] for j in data["jobs"]} == states
    go.touch()
    (root / "inbox" / "held" / "hold").unlink()
    drain(root)
    assert sorted(os.listdir(root / "complete")) == ["held", "ok", "running", "three", "waiting"]


def test_every_run_writes_the_status_files(root: Path) -> None:
    make_job(root, "a", "exit 4\n")
    make_job(root, "b", "true\n")
    drain(root)
    text = (root / "status.txt").read_text()
    data = json.loads((root / "status.json").read_text())
    assert {j["name"]: j["state"] for j in data["jobs"]} == {"a": "failed", "b": "done"}
    assert all(j["job_id"] for j in data["jobs"])  # an ended job keeps its id in the status files
    assert "a " in text and "exited with code 4" in text
    make_job(root, "c", "true\n")
    drain(root)  # earlier endings are carried forward
    data = json.loads((root / "status.json").read_text())
    assert {j["name"] for j in data["jobs"]} == {"a", "b", "c"}
    assert not [n for n in os.listdir(root) if n.endswith(".tmp")]


def test_a_job_submitted_by_the_run_writing_the_status_files_is_queued_there_not_unknown(root: Path, tmp_path: Path) -> None:
    go = tmp_path / "go"
    make_job(root, "fresh", WAIT_FOR_GO.format(go=go))
    assert run(root).returncode == 0
    (job,) = json.loads((root / "status.json").read_text())["jobs"]
    assert (job["name"], job["state"]) == ("fresh", "queued") and "submitted by this run" in job["reason"]
    go.touch()
    drain(root)


def test_cancel_a_running_local_job(root: Path, tmp_path: Path, ledger: Path) -> None:
    go = tmp_path / "go"
    make_job(root, "long", ledger_job(ledger, "started", WAIT_FOR_GO.format(go=go) + f"echo finished >> {ledger}"))
    run(root)
    wait_until(lambda: read_ledger(ledger) == ["started"])
    job_id = int(json.loads((root / "pending" / "long" / fs.RECORD).read_text())["job_id"])
    (root / "pending" / "long" / "cancel").touch()
    drain(root)
    error = (root / "complete" / "long" / fs.ERROR).read_text().splitlines()
    assert error[0] == CANCELLED
    assert error[1] == "The job was killed by signal 15 (SIGTERM), according to the local engine."
    go.touch()
    time.sleep(0.3)
    assert read_ledger(ledger) == ["started"], "the cancelled job went on running"
    wait_until(lambda: not _group_alive(job_id))  # exited and reaped (init here reaps orphans with a delay)
    assert "cancel requested" in (root / fs.LOG).read_text()


def test_cancel_before_submission_never_runs_the_job(root: Path, ledger: Path) -> None:
    make_job(root, "a", ledger_job(ledger, "a"))
    assert run(root, env={"RECONCILE_CRASH_AT": "claimed"}).returncode == -9  # claimed, never started
    (root / "pending" / "a" / "cancel").touch()
    drain(root)
    assert read_ledger(ledger) == []
    assert "before it was submitted" in (root / "complete" / "a" / fs.ERROR).read_text()


def test_hold_keeps_a_folder_waiting_until_removed(root: Path, ledger: Path) -> None:
    make_job(root, "a", ledger_job(ledger, "a"), {"hold": ""})
    for _ in range(3):
        assert run(root).returncode == 0
    assert os.listdir(root / "inbox") == ["a"] and read_ledger(ledger) == []
    (root / "inbox" / "a" / "hold").unlink()
    drain(root)
    assert read_ledger(ledger) == ["a"]


def test_retry_failed_moves_only_failed_folders_back_in_one_command(root: Path, ledger: Path, tmp_path: Path) -> None:
    flag = tmp_path / "fixed"
    make_job(root, "flaky", ledger_job(ledger, "flaky", f"[ -e {flag} ] || exit 9"))
    make_job(root, "fine", ledger_job(ledger, "fine"))
    drain(root)
    (root / "complete" / "flaky" / "cancel").touch()  # a stale request must not cancel the retry
    flag.touch()
    result = run(root, "--retry-failed")
    assert result.returncode == 0 and result.stdout == "complete/flaky -> inbox/flaky\n"
    assert sorted(os.listdir(root / "complete")) == ["fine"]
    drain(root)
    assert sorted(read_ledger(ledger)) == ["fine", "flaky", "flaky"]
    retried = root / "complete" / "flaky"
    assert not (retried / fs.ERROR).exists()
    assert "exit" in (retried / fs.HISTORY / "1" / fs.ERROR).read_text() and (retried / fs.HISTORY / "1" / "cancel").exists()
    assert run(root, "--retry-failed").stdout == "no failed folder in complete/\n"


def test_log_rotates_by_size_and_obeys_the_level(root: Path) -> None:
    make_job(root, "quiet", "true\n")
    drain(root, "--log-level", "error")
    assert not (root / fs.LOG).exists()  # nothing at ERROR level happened
    (root / fs.LOG).write_text("old line\n" * (LOG_MAX // 9 + 1))
    make_job(root, "a", "true\n")
    drain(root, "--log-level", "debug")
    assert (root / (fs.LOG + ".1")).read_text().startswith("old line")
    log = (root / fs.LOG).read_text()
    assert "DEBUG sweep:" in log and "INFO a: done" in log and "old line" not in log


def test_version_and_a_help_that_reads_like_a_man_page(tmp_path: Path) -> None:
    import subprocess

    from conftest import RECONCILE

    version = subprocess.run([*RECONCILE, "--version"], capture_output=True, text=True, timeout=30)
    assert version.returncode == 0 and version.stdout.strip() == f"reconcile (jobroot) {__version__}"
    helptext = subprocess.run([*RECONCILE, "--help"], capture_output=True, text=True, timeout=30).stdout
    for section in ("files in a job folder:", "examples:", "exit status:", "--retry-failed", "cancel"):
        assert section in helptext


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def test_the_status_files_name_the_next_waiting_folders_and_count_the_rest(root: Path) -> None:
    for i in range(150):
        make_job(root, f"w{i:03}", "true\n")
    assert run(root, "--batch-limit", "0").returncode == 0
    data = json.loads((root / "status.json").read_text())
    assert data["counts"]["waiting"] == 150 and data["waiting_not_listed"] == 50
    assert [j["name"] for j in data["jobs"]] == [f"w{i:03}" for i in range(100)]
    assert "... and 50 more waiting in inbox/" in (root / "status.txt").read_text()
