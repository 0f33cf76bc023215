"""--retries: a job the infrastructure ended is submitted again; a job that ended itself never is."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import drain, ledger_job, make_job, read_ledger, run

from jobroot import folders as fs
from jobroot.actions import Finish, Retry
from jobroot.engine import Ending, Observation, State, Status
from jobroot.plan import PendingFolder, plan

pytestmark = pytest.mark.local

LOSE = "kill -9 $PPID; sleep 0.3; exit 0"  # the job's wrapper dies: the local engine calls the job lost
LOSE_TWICE = "[ -e 1 ] && [ -e 2 ] || {{ [ -e 1 ] && touch 2 || touch 1; " + LOSE + "; }}"


def test_a_job_lost_twice_is_run_again_twice_and_then_done(root: Path, ledger: Path) -> None:
    make_job(root, "flaky", ledger_job(ledger, "flaky", LOSE_TWICE.format()))
    seen = set()
    for _ in range(200):
        if os.listdir(root / "complete"):
            break
        run(root, "--retries", "2")
        seen.add(run(root, "--status").stdout)
    assert read_ledger(ledger) == ["flaky"] * 3
    job = root / "complete" / "flaky"
    assert not (job / fs.ERROR).exists()
    assert [a.job_id for a in fs.read_attempts(job)] == [
        json.loads((job / fs.HISTORY / n / fs.RECORD).read_text())["job_id"] for n in ("1", "2")
    ]  # each attempt's files kept in job_history/N
    assert any("attempt 3 (the infrastructure ended 2 before)" in s for s in seen)


def test_the_last_attempt_lists_every_attempt_and_why_it_ended(root: Path, ledger: Path) -> None:
    make_job(root, "doomed", ledger_job(ledger, "doomed", LOSE))
    drain(root, "--retries", "2")
    assert read_ledger(ledger) == ["doomed"] * 3
    error = (root / "complete" / "doomed" / fs.ERROR).read_text().splitlines()
    assert error[0].startswith("The job was lost:")
    assert error[-3] == "This was attempt 3; the infrastructure ended the earlier ones (--retries 2):"
    assert error[-2].startswith("attempt 1: job ") and error[-1].startswith("attempt 2: job ")


def test_never_for_the_jobs_own_exit_or_a_cancel_and_never_without_retries(root: Path, ledger: Path) -> None:
    make_job(root, "exits", ledger_job(ledger, "exits", "exit 3"))
    make_job(root, "lost", ledger_job(ledger, "lost", LOSE))
    drain(root, "--retries", "0")
    assert sorted(read_ledger(ledger)) == ["exits", "lost"]
    make_job(root, "exits2", ledger_job(ledger, "exits2", "exit 3"))
    drain(root, "--retries", "3")
    assert read_ledger(ledger).count("exits2") == 1


def test_the_setting_is_recorded_by_setup(tmp_path: Path) -> None:
    r = tmp_path / "r"
    assert run(r, "-s", "-e", "local", "--retries", "2").returncode == 0
    assert json.loads((r / fs.CONFIG).read_text())["retries"] == 2
    assert run(r, "--retries", "-1").returncode == 2


def test_the_plan_retries_only_what_the_infrastructure_ended_and_only_as_often_as_asked() -> None:
    record = fs.Submitted("slurm", "9", 1.0, "/r/pending/j")
    lost = Observation(
        {"9": Status(State.FAILED, "Slurm reports job 9 NODE_FAIL: its node failed.\nsacct: ...", ending=Ending.LOST)}
    )
    own = Observation({"9": Status(State.FAILED, "Slurm reports job 9 FAILED with exit code 3.")})
    assert plan([PendingFolder("j", record)], lost, [], "slurm", 5, retries=1) == [
        Retry("j", record, "Slurm reports job 9 NODE_FAIL: its node failed.")
    ]
    assert isinstance(plan([PendingFolder("j", record)], own, [], "slurm", 5, retries=1)[0], Finish)
    assert isinstance(plan([PendingFolder("j", record, cancel=True)], lost, [], "slurm", 5, retries=1)[0], Finish)
    done = (fs.Attempt("7", "Slurm reports job 7 NODE_FAIL: its node failed."),)
    (final,) = plan([PendingFolder("j", record, attempts=done)], lost, [], "slurm", 5, retries=1)
    assert isinstance(final, Finish) and "attempt 1: job 7: Slurm reports job 7 NODE_FAIL" in final.reason
    # A run killed after noting this attempt notes the same job again: it is not counted twice.
    again = (*done, fs.Attempt("9", "x"))
    assert plan([PendingFolder("j", record, attempts=again)], lost, [], "slurm", 5, retries=2)[0] == Retry(
        "j", record, "Slurm reports job 9 NODE_FAIL: its node failed."
    )


def test_the_breaker_counts_a_retried_job_once(root: Path, ledger: Path) -> None:
    # --breaker 2: two failures in a row pause submitting. A job lost on all three attempts is one failure.
    make_job(root, "a-doomed", ledger_job(ledger, "a-doomed", LOSE))
    drain(root, "--retries", "2", "--breaker", "2")
    make_job(root, "b-next", ledger_job(ledger, "b-next"))
    drain(root, "--retries", "2", "--breaker", "2")
    assert read_ledger(ledger) == ["a-doomed"] * 3 + ["b-next"]  # not paused: one failure so far
    assert not (root / fs.BREAKER).exists()


def test_an_attempt_noted_again_is_the_same_attempt(tmp_path: Path) -> None:
    # A run killed after noting an attempt, before setting the files aside, notes it again next time.
    fs.note_attempt(tmp_path, fs.Attempt("12", "lost"))
    fs.note_attempt(tmp_path, fs.Attempt("12", "lost"))
    fs.note_attempt(tmp_path, fs.Attempt("15", "lost"))
    assert [a.job_id for a in fs.read_attempts(tmp_path)] == ["12", "15"]


def test_a_retry_is_a_start_within_the_runs_limits() -> None:
    record = fs.Submitted("slurm", "9", 1.0, "/r/pending/j")
    lost = Observation({"9": Status(State.FAILED, "Slurm reports job 9 NODE_FAIL: its node failed.", ending=Ending.LOST)})
    assert plan([PendingFolder("j", record)], lost, [], "slurm", 0, retries=1) == []  # batch limit 0, or a pause
    full = lost._replace(room=0)  # --max-queued reached
    assert plan([PendingFolder("j", record)], full, [], "slurm", 5, retries=1) == []
