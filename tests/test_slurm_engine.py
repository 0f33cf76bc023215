"""SlurmEngine's use of the scheduler, with a fake runner that counts calls and injects faults.

Scheduler behaviour itself is tested on the real cluster (tests/slurm/); here: how many commands a
run costs, and what the engine makes of each kind of answer.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import pytest

from jobroot import folders as fs
from jobroot.engine import Observation, State, SubmitRefused, Submitted, SubmitUnknown
from jobroot.engines._process import CommandTimeout, Result
from jobroot.engines._slurmparse import SEP
from jobroot.engines.slurm import SlurmEngine


class FakeRunner:
    """Answers each command from a table by its first word; records every argv."""

    def __init__(self, **answers: Result | Exception) -> None:
        self.answers = answers
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str], timeout: float, cwd: Path | None) -> Result:
        assert timeout > 0, "every scheduler command needs a timeout"
        self.calls.append(list(argv))
        answer = self.answers[argv[0]]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def count(self, command: str) -> int:
        return sum(1 for c in self.calls if c[0] == command)


def ok(stdout: str = "", stderr: str = "", rc: int = 0) -> Result:
    return Result([], rc, stdout, stderr)


def squeue_line(job_id: str, state: str, workdir: str = "/w", comment: str = "(null)") -> str:
    return SEP.join([job_id, state, "2026-11-24T14:02:10", comment, workdir])


def sacct_line(job_id: str, state: str, code: str = "0:0", workdir: str = "/w", comment: str = "") -> str:
    return SEP.join([job_id, state, code, "2026-11-24T14:02:10", "2026-11-24T14:02:11", comment, workdir])


def jobs(n: int, tmp_path: Path) -> list[Submitted]:
    return [Submitted("slurm", str(i), time.time() - 60, tmp_path / str(i)) for i in range(1, n + 1)]


def test_nothing_pending_asks_nothing() -> None:
    runner = FakeRunner()
    assert SlurmEngine(runner=runner).observe([], []) == Observation()
    assert runner.calls == []


@pytest.mark.parametrize("pending", [1, 100, 1000, 10000])
def test_one_squeue_and_no_sacct_while_everything_is_queued(tmp_path: Path, pending: int) -> None:
    listing = "\n".join(squeue_line(str(i), "RUNNING") for i in range(1, pending + 1))
    runner = FakeRunner(squeue=ok(listing + "\n"))
    obs = SlurmEngine(runner=runner).observe(jobs(pending, tmp_path), [])
    assert (runner.count("squeue"), runner.count("sacct")) == (1, 0)
    assert {s.state for s in obs.statuses.values()} == {State.ACTIVE}


@pytest.mark.parametrize("pending", [1, 100, 1000, 10000])
def test_one_squeue_and_one_sacct_however_many_have_ended(tmp_path: Path, pending: int) -> None:
    accounted = "\n".join(
        sacct_line(str(i), "FAILED" if i % 2 else "COMPLETED", "3:0" if i % 2 else "0:0") for i in range(1, pending + 1)
    )
    runner = FakeRunner(squeue=ok(""), sacct=ok(accounted + "\n"))
    obs = SlurmEngine(runner=runner).observe(jobs(pending, tmp_path), [])
    assert (runner.count("squeue"), runner.count("sacct")) == (1, 1)
    assert obs.statuses["1"].state is State.FAILED and "exit code 3" in obs.statuses["1"].reason
    assert pending == 1 or obs.statuses["2"].state is State.DONE
    sacct = runner.calls[1]
    assert "-X" in sacct and any(a.startswith("--starttime=") for a in sacct) and f"--delimiter={SEP}" in sacct


def test_a_job_nobody_reports_is_unknown_and_a_failed_sacct_is_a_problem(tmp_path: Path) -> None:
    runner = FakeRunner(squeue=ok(""), sacct=ok("", "sacct: error: Problem talking to the database: Connection refused", 1))
    obs = SlurmEngine(runner=runner).observe(jobs(1, tmp_path), [])
    assert obs.statuses["1"].state is State.UNKNOWN
    assert obs.problems and "Connection refused" in obs.problems[0]


def test_an_empty_sacct_answer_is_not_an_ending(tmp_path: Path) -> None:
    obs = SlurmEngine(runner=FakeRunner(squeue=ok(""), sacct=ok(""))).observe(jobs(3, tmp_path), [])
    assert {s.state for s in obs.statuses.values()} == {State.UNKNOWN}


def test_a_failed_squeue_stops_the_run(tmp_path: Path) -> None:
    from jobroot.engine import EngineError

    runner = FakeRunner(squeue=ok("", "slurm_load_jobs error: Unable to contact slurm controller (connect failure)", 1))
    with pytest.raises(EngineError, match="Unable to contact"):
        SlurmEngine(runner=runner).observe(jobs(1, tmp_path), [])


def test_max_queued_counts_every_queued_job_of_the_user_with_array_tasks(tmp_path: Path) -> None:
    listing = "\n".join([squeue_line("7", "RUNNING"), squeue_line("8_[2-5%1]", "PENDING"), squeue_line("9", "COMPLETED")])
    runner = FakeRunner(squeue=ok(listing + "\n"))
    obs = SlurmEngine(max_queued=10, runner=runner).observe([], [])
    assert obs.room == 10 - 1 - 4
    assert runner.count("squeue") == 1 and runner.count("sacct") == 0


def make_job(tmp_path: Path, script: str = "#!/bin/bash\ntrue\n") -> Path:
    d = tmp_path / "job"
    d.mkdir(exist_ok=True)
    (d / "job.sh").write_text(script)
    return d


def test_submit_runs_sbatch_in_the_folder_with_a_findable_comment(tmp_path: Path) -> None:
    runner = FakeRunner(sbatch=ok("42;cluster\n"))
    assert SlurmEngine(runner=runner).submit(make_job(tmp_path)) == "42"
    argv = runner.calls[0]
    assert argv[:2] == ["sbatch", "--parsable"] and argv[-1] == "job.sh" and argv[2].startswith("--comment=jobroot-")
    assert not any(a.startswith("--job-name") for a in argv)


def test_a_users_own_comment_is_never_overridden(tmp_path: Path) -> None:
    runner = FakeRunner(sbatch=ok("42\n"))
    SlurmEngine(runner=runner).submit(make_job(tmp_path, "#!/bin/bash\n#SBATCH --comment=mine\ntrue\n"))
    assert runner.calls[0] == ["sbatch", "--parsable", "job.sh"]


@pytest.mark.parametrize(
    "stderr",
    [
        "sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)",
        "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation",
        "sbatch: error: Slurm temporarily unable to accept job, sleeping and retrying\n"
        "sbatch: error: Batch job submission failed: Resource temporarily unavailable",
        "sbatch: error: QOSMaxSubmitJobPerUserLimit\nsbatch: error: Batch job submission failed: Job violates accounting/QOS "
        "policy (job submit limit, user's size and/or time limits)",
    ],
)
def test_transient_refusals_keep_the_claim_so_a_job_created_anyway_is_found(tmp_path: Path, stderr: str) -> None:
    job = make_job(tmp_path)
    with pytest.raises(SubmitRefused) as refused:
        SlurmEngine(runner=FakeRunner(sbatch=ok("", stderr, 1))).submit(job)
    assert not refused.value.permanent and str(refused.value) == stderr
    assert (job / fs.CLAIM).exists()


def test_a_permanent_refusal_leaves_no_claim(tmp_path: Path) -> None:
    job = make_job(tmp_path)
    refusal = "sbatch: error: Batch job submission failed: Invalid partition name specified"
    with pytest.raises(SubmitRefused) as refused:
        SlurmEngine(runner=FakeRunner(sbatch=ok("", refusal, 1))).submit(job)
    assert refused.value.permanent and not (job / fs.CLAIM).exists()


def test_a_timed_out_sbatch_is_unknown_and_keeps_its_claim(tmp_path: Path) -> None:
    job = make_job(tmp_path)
    with pytest.raises(SubmitUnknown):
        SlurmEngine(runner=FakeRunner(sbatch=CommandTimeout(["sbatch"], None, "", "no answer"))).submit(job)
    assert (job / fs.CLAIM).exists()


def test_success_with_chatter_on_stderr_is_success(tmp_path: Path) -> None:
    runner = FakeRunner(sbatch=ok("43\n", "sbatch: error: Slurm temporarily unable to accept job, sleeping and retrying\n"))
    assert SlurmEngine(runner=runner).submit(make_job(tmp_path)) == "43"


def test_a_claimed_folder_is_found_by_its_token_then_by_workdir_and_time(tmp_path: Path) -> None:
    job = make_job(tmp_path)
    engine = SlurmEngine(runner=FakeRunner(sbatch=CommandTimeout(["sbatch"], None, "", "x")))
    with pytest.raises(SubmitUnknown):
        engine.submit(job)
    token = (job / fs.CLAIM).read_text().split('"')[3]
    by_token = FakeRunner(squeue=ok(squeue_line("77", "PENDING", "/elsewhere", token) + "\n"))
    assert SlurmEngine(runner=by_token).observe([], [job]).found == {"job": "77"}
    old = SEP.join(["60", "COMPLETED", "0:0", "2020-01-01T00:00:00", "2020-01-01T00:00:01", "", str(job)])
    new = SEP.join(["78", "COMPLETED", "0:0", "2099-01-01T00:00:00", "2099-01-01T00:00:01", "", str(job)])
    by_dir = FakeRunner(squeue=ok(""), sacct=ok(old + "\n" + new + "\n"))
    assert SlurmEngine(runner=by_dir).observe([], [job]).found == {"job": "78"}  # never the earlier job of that name


def test_a_claimed_folder_found_nowhere_waits_out_the_grace_period_then_is_submitted(tmp_path: Path) -> None:
    job = make_job(tmp_path)
    (job / fs.CLAIM).write_text(f'{{"token": "t", "claimed": {time.time()}}}')
    runner = FakeRunner(squeue=ok(""), sacct=ok(""))
    assert SlurmEngine(runner=runner).observe([], [job]).unsure == {"job"}
    (job / fs.CLAIM).write_text(f'{{"token": "t", "claimed": {time.time() - 3600}}}')
    obs = SlurmEngine(runner=runner).observe([], [job])
    assert not obs.unsure and not obs.found  # so the reconciler submits it


def test_lookback_bounds_sacct_and_bad_values_are_refused(tmp_path: Path) -> None:
    runner = FakeRunner(squeue=ok(""), sacct=ok(""))
    old = [Submitted("slurm", "1", time.time() - 30 * 86400, tmp_path)]
    SlurmEngine(lookback="2d", runner=runner).observe(old, [])
    start = next(a for a in runner.calls[1] if a.startswith("--starttime="))
    from datetime import datetime

    age = time.time() - datetime.fromisoformat(start.split("=", 1)[1]).timestamp()
    assert 2 * 86400 - 120 < age < 2 * 86400 + 120
    with pytest.raises(ValueError, match="lookback"):
        SlurmEngine(lookback="yesterday-ish")


def test_accounting_off_judges_from_squeue_and_evidence_and_never_resubmits_blindly(tmp_path: Path) -> None:
    off = ok("", "sacct: error: Slurm accounting storage is disabled", 1)
    for n in ("1", "2", "3"):
        (tmp_path / n).mkdir()
    (tmp_path / "2" / "slurm-2.out").write_text("ran")
    runner = FakeRunner(squeue=ok(squeue_line("1", "FAILED") + "\n"), sacct=off)
    claimed = make_job(tmp_path)
    (claimed / fs.CLAIM).write_text(f'{{"token": "t", "claimed": {time.time() - 3600}}}')
    obs = SlurmEngine(runner=runner).observe(jobs(3, tmp_path), [claimed])
    assert obs.statuses["1"].state is State.FAILED and "FAILED" in obs.statuses["1"].reason  # the controller's word
    assert obs.statuses["2"].state is State.FAILED and "cannot be known" in obs.statuses["2"].reason  # its output is there
    assert obs.statuses["3"].state is State.UNKNOWN  # no evidence either way: wait
    assert obs.unsure == {"job"} and any("cannot tell whether it was submitted" in p for p in obs.problems)
    assert obs.notes and "accounting is disabled" in obs.notes[0]


def test_a_recorded_id_that_is_another_jobs_is_never_used_and_the_right_one_is_found(tmp_path: Path) -> None:
    # sbatch's answer "1234" cut to "12": job 12 is some other job; ours carries our token.
    job = Submitted("slurm", "12", time.time() - 60, str(tmp_path / "job"), "jobroot-ours")
    listing = "\n".join(
        [squeue_line("12", "COMPLETED", comment="jobroot-other"), squeue_line("1234", "RUNNING", comment="jobroot-ours")]
    )
    obs = SlurmEngine(runner=FakeRunner(squeue=ok(listing + "\n"), sacct=ok(""))).observe([job], [])
    assert obs.statuses["12"].state is State.UNKNOWN  # never "done" on job 12's word
    assert obs.found == {"job": "1234"}
    alone = FakeRunner(squeue=ok(squeue_line("12", "FAILED", comment="(null)") + "\n"), sacct=ok(""))
    obs = SlurmEngine(runner=alone).observe([job], [])
    assert obs.statuses["12"].state is State.UNKNOWN and not obs.found and obs.problems


def test_a_recorded_id_that_is_no_job_at_all_is_replaced_by_the_one_with_the_token(tmp_path: Path) -> None:
    job = Submitted("slurm", "3", time.time() - 60, str(tmp_path / "job"), "jobroot-ours")  # "3" from a cut "3456"
    accounted = sacct_line("3456", "COMPLETED", comment="jobroot-ours")
    obs = SlurmEngine(runner=FakeRunner(squeue=ok(""), sacct=ok(accounted + "\n"))).observe([job], [])
    assert obs.statuses["3"].state is State.UNKNOWN and obs.found == {"job": "3456"}


def claimed_folder(tmp_path: Path, name: str, age: float) -> Path:
    d = tmp_path / name
    d.mkdir()
    (d / fs.CLAIM).write_text(f'{{"token": "jobroot-{name}", "claimed": {time.time() - age}}}')
    return d


def test_a_failed_sacct_never_lets_a_claim_be_submitted_again(tmp_path: Path) -> None:
    # An hour-old claim that squeue does not show: only sacct can say whether sbatch created its job.
    d = claimed_folder(tmp_path, "old-claim", 3600)
    runner = FakeRunner(squeue=ok(""), sacct=ok("", "sacct: error: Problem talking to the database", rc=1))
    obs = SlurmEngine(runner=runner).observe([], [d])
    assert obs.unsure == {"old-claim"} and obs.found == {}
    assert len(obs.problems) == 1 and "sacct failed" in obs.problems[0]


def sacct_start(runner: FakeRunner) -> float:
    from datetime import datetime

    (argv,) = [c for c in runner.calls if c[0] == "sacct"]
    (start,) = [a.split("=", 1)[1] for a in argv if a.startswith("--starttime=")]
    return datetime.strptime(start, "%Y-%m-%dT%H:%M:%S").timestamp()


def test_the_sacct_window_starts_before_the_oldest_submission(tmp_path: Path) -> None:
    now = time.time()
    ended = [Submitted("slurm", "1", now - 100, tmp_path / "1"), Submitted("slurm", "2", now - 5000, tmp_path / "2")]
    runner = FakeRunner(squeue=ok(""), sacct=ok(""))
    SlurmEngine(runner=runner).observe(ended, [])
    assert now - 5000 - 300 - 1 <= sacct_start(runner) <= now - 5000 - 300


@pytest.mark.parametrize(
    ("lookback", "expected"),
    [("2d", lambda now: now - 2 * 86400), ("2026-11-20 08:00", lambda now: time.mktime((2026, 11, 20, 8, 0, 0, 0, 0, -1)))],
)
def test_lookback_bounds_the_sacct_window(tmp_path: Path, lookback: str, expected) -> None:  # type: ignore[no-untyped-def]
    now = time.time()
    ancient = [Submitted("slurm", "1", now - 400 * 86400, tmp_path / "1")]  # a year-old record: sacct must not scan a year
    runner = FakeRunner(squeue=ok(""), sacct=ok(""))
    SlurmEngine(runner=runner, lookback=lookback).observe(ancient, [])
    assert expected(now) - 1 <= sacct_start(runner) <= expected(now) + 1


def test_a_failed_scancel_is_an_error(tmp_path: Path) -> None:
    from jobroot.engine import EngineError

    runner = FakeRunner(scancel=ok("", "scancel: error: Unable to contact slurm controller", rc=1))
    with pytest.raises(EngineError, match="Unable to contact"):
        SlurmEngine(runner=runner).cancel(jobs(1, tmp_path))
    assert runner.count("scancel") == 1
