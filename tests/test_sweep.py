"""Carrying out a plan: the order of steps inside an action, and when the sweep stops asking the engine."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import pytest
from conftest import make_job, run

from jobroot import folders as fs
from jobroot.act import StopFlag, Sweep
from jobroot.actions import Submit
from jobroot.engine import Observation, SubmitRefused, SubmitUnknown
from jobroot.folders import Submitted
from jobroot.log import Log

pytestmark = pytest.mark.local


class RefusingEngine:
    """Counts submissions and answers each with a transient refusal ("not now")."""

    name = "local"
    dependencies = False

    def __init__(self) -> None:
        self.submitted: list[str] = []

    def submit(self, job_dir: Path, after: Sequence[str] = ()) -> str:
        self.submitted.append(job_dir.name)
        raise SubmitRefused("sbatch: error: Batch job submission failed: Socket timed out on send/recv operation", False)

    def observe(self, jobs: Sequence[Submitted], claimed: Sequence[Path], quick: bool = False) -> Observation:
        return Observation()

    def cancel(self, jobs: Sequence[Submitted], why: str = "") -> None:
        pass


def test_a_transient_refusal_stops_the_batch(root: Path) -> None:
    for name in ("a", "b", "c"):
        make_job(root, name, "true\n")
    engine = RefusingEngine()
    problems = Sweep(root, engine, Log(root, False, "info"), StopFlag()).apply([Submit("a"), Submit("b"), Submit("c")])
    assert engine.submitted == ["a"] and problems == 0
    assert os.listdir(root / "pending") == ["a"] and not (root / "pending" / "a" / fs.RECORD).exists()  # claimed, kept
    assert sorted(os.listdir(root / "inbox")) == ["b", "c"]


def test_a_folder_never_reaches_complete_without_its_verdict(root: Path) -> None:
    make_job(root, "fails", "exit 3\n")
    make_job(root, "empty", "")
    (root / "inbox" / "empty" / "job.sh").write_text("")
    # Killed just after each move into complete/: the verdict must already be there.
    rejected = run(root, env={"RECONCILE_CRASH_AT": "reject/rename-done"})
    assert rejected.returncode == -9, rejected.stderr
    assert (root / "complete" / "empty" / fs.ERROR).read_text().startswith("Not submitted: job.sh is empty.")
    for _ in range(200):
        finished = run(root, env={"RECONCILE_CRASH_AT": "finish/rename-done"})
        if finished.returncode == -9:
            break
        assert finished.returncode == 0, finished.stderr
    assert finished.returncode == -9, "the job never finished"
    assert (root / "complete" / "fails" / fs.ERROR).read_text().startswith("The job exited with code 3")


class UncertainEngine(RefusingEngine):
    """Takes dependencies (a chain); its answer for the first folder is lost (SubmitUnknown)."""

    dependencies = True

    def submit(self, job_dir: Path, after: Sequence[str] = ()) -> str:
        self.submitted.append(job_dir.name)
        if job_dir.name == "a":
            raise SubmitUnknown("sbatch: timed out")
        return "42"


def test_a_link_whose_upstream_got_no_id_this_run_is_not_submitted_without_it(root: Path) -> None:
    for name in ("a", "b"):
        make_job(root, name, "true\n")
    engine = UncertainEngine()
    Sweep(root, engine, Log(root, False, "info"), StopFlag()).apply([Submit("a"), Submit("b", ("a",))])
    assert engine.submitted == ["a"]  # b would otherwise have run at once, with no dependency
    assert os.listdir(root / "inbox") == ["b"]
