"""SlurmEngine's use of the scheduler, with a fake runner that counts calls and injects faults.

Scheduler behaviour itself is tested on the real cluster (tests/slurm/); here: how many commands a
run costs, and what the engine makes of each kind of answer.
"""

from __future__ import annotations

import calendar
import json
import time
from pathlib import Path
from typing import Mapping, Sequence

import pytest

from jobroot import folders as fs
from jobroot.engine import Observation, State, SubmitRefused, Submitted, SubmitUnknown
from jobroot.engines._batch import Refusal
from jobroot.engines._process import CommandTimeout, Result
from jobroot.engines._slurmparse import SEP
from jobroot.engines.slurm import SlurmEngine

pytestmark = pytest.mark.unit


class FakeRunner:
    """Answers each command from a table by its first word; records every argv."""

    def __init__(self, **answers: Result | Exception) -> None:
        self.answers = answers
        self.calls: list[list[str]] = []
        self.envs: list[dict[str, str] | None] = []

    def __call__(self, argv: Sequence[str], timeout: float, cwd: Path | None, env: Mapping[str, str] | None = None) -> Result:
        assert timeout > 0, "every scheduler command needs a timeout"
        self.calls.append(list(argv))
        self.envs.append(dict(env) if env is not None else None)
        answer = self.answers[argv[0]]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def count(self, command: str) -> int:
        return sum(1 for c in self.calls if c[0] == command)


def ok(stdout: str = "", stderr: str = "", rc: int = 0) -> Result:
    return Result([], rc, stdout, stderr)


def iso(when: float) -> str:
    """A time as Slurm prints it to the engine (which runs its queries with TZ=UTC)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(when))


# Fake rows are times relative to the records they answer for (jobs() records "60 s ago"): Slurm received
# each job just before the sweep recorded it. A fixed date here would age past REUSED_ID and be another job's.
def squeue_line(job_id: str, state: str, workdir: str = "/w", comment: str = "(null)") -> str:
    return SEP.join([job_id, state, iso(time.time() - 61), comment, workdir])


def sacct_line(job_id: str, state: str, code: str = "0:0", workdir: str = "/w", comment: str = "") -> str:
    return SEP.join([job_id, state, code, iso(time.time() - 61), iso(time.time() - 30), comment, workdir])


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
    # By id: a job found however it ended, even one never eligible to start (a window search misses those).
    assert "-X" in sacct and f"--delimiter={SEP}" in sacct and not any(a.startswith("--starttime=") for a in sacct)
    (asked,) = [a.split("=", 1)[1].split(",") for a in sacct if a.startswith("--jobs=")]
    assert sorted(asked, key=int) == [str(i) for i in range(1, pending + 1)]


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
    runner = FakeRunner(sbatch=ok("42\n"))
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
    claimed = json.loads((job / fs.CLAIM).read_text())["claimed"]
    old = SEP.join(["60", "COMPLETED", "0:0", iso(claimed - 86400), iso(claimed - 86399), "", str(job)])
    new = SEP.join(["78", "COMPLETED", "0:0", iso(claimed + 1), iso(claimed + 2), "", str(job)])
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
    SlurmEngine(lookback="2d", runner=runner).observe(old, [claimed_folder(tmp_path, "c", 60)])  # a claim: a window search
    start = next(a for a in runner.calls[1] if a.startswith("--starttime="))
    from datetime import datetime

    age = time.time() - datetime.fromisoformat(start.split("=", 1)[1] + "+00:00").timestamp()
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
    from datetime import datetime, timezone

    (argv,) = [c for c in runner.calls if c[0] == "sacct"]
    (start,) = [a.split("=", 1)[1] for a in argv if a.startswith("--starttime=")]
    return datetime.strptime(start, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()  # sacct runs with TZ=UTC


def test_the_sacct_window_starts_before_the_oldest_submission(tmp_path: Path) -> None:
    now = time.time()
    ended = [Submitted("slurm", "1", now - 100, tmp_path / "1"), Submitted("slurm", "2", now - 5000, tmp_path / "2")]
    runner = FakeRunner(squeue=ok(""), sacct=ok(""))
    SlurmEngine(runner=runner).observe(ended, [claimed_folder(tmp_path, "c", 60)])  # a claim to search: a window
    assert now - 5000 - 300 - 1 <= sacct_start(runner) <= now - 5000 - 300


@pytest.mark.parametrize(
    ("lookback", "expected"),
    [("2d", 2 * 86400), ("date", 3 * 86400)],
)
def test_lookback_bounds_the_sacct_window(tmp_path: Path, lookback: str, expected: float) -> None:
    now = time.time()
    if lookback == "date":  # a date three days back, as a user writes it (local time, to the minute)
        lookback = time.strftime("%Y-%m-%d %H:%M", time.localtime(now - expected))
        expected = now - time.mktime(time.strptime(lookback, "%Y-%m-%d %H:%M"))
    ancient = [Submitted("slurm", "1", now - 400 * 86400, tmp_path / "1")]  # a year-old record: sacct must not scan a year
    runner = FakeRunner(squeue=ok(""), sacct=ok(""))
    SlurmEngine(runner=runner, lookback=lookback).observe(ancient, [claimed_folder(tmp_path, "c", 60)])
    assert now - expected - 1 <= sacct_start(runner) <= now - expected + 1


def test_a_failed_scancel_is_an_error(tmp_path: Path) -> None:
    from jobroot.engine import EngineError

    runner = FakeRunner(scancel=ok("", "scancel: error: Unable to contact slurm controller", rc=1))
    with pytest.raises(EngineError, match="Unable to contact"):
        SlurmEngine(runner=runner).cancel(jobs(1, tmp_path))
    assert runner.count("scancel") == 1


# ---------------------------------------------------------------- Slurm as real clusters run it

STEERING = {
    "SLURM_TIME_FORMAT": "relative",  # squeue/sacct would print "Tomorr 10:00": ended jobs never collected
    "SBATCH_PARTITION": "nope",  # sbatch would apply it over the job's own #SBATCH lines
    "SQUEUE_ACCOUNT": "someone-else",  # squeue would filter: jobs look lost, --max-queued undercounts
    "SACCT_FEDERATION": "1",
    "SLURM_MEM_PER_CPU": "100",  # an scrontab sweep's own allocation, leaking into every job
    "SLURM_JOB_ID": "999",
}


def test_slurm_commands_run_with_an_environment_the_reconciler_controls(tmp_path: Path) -> None:
    environ = {
        **STEERING,
        "PATH": "/usr/bin:/bin",
        "HOME": "/home/u",
        "SLURM_CONF": "/etc/slurm/site.conf",
        "TZ": "Europe/Berlin",
    }
    runner = FakeRunner(sbatch=ok("42\n"), squeue=ok(""), sacct=ok(""), scancel=ok())
    engine = SlurmEngine(runner=runner, environ=environ)
    engine.submit(make_job(tmp_path))
    engine.observe(jobs(1, tmp_path), [])
    engine.cancel(jobs(1, tmp_path))
    by_command = dict(zip((c[0] for c in runner.calls), runner.envs))
    kept = {"PATH": "/usr/bin:/bin", "HOME": "/home/u", "SLURM_CONF": "/etc/slurm/site.conf"}
    # sbatch passes its environment to the job: the sweep's own, less what steers Slurm, and its TZ untouched.
    assert by_command["sbatch"] == {**kept, "TZ": "Europe/Berlin"} == by_command["scancel"]
    # Queries print times in one fixed, unambiguous form: the standard one, in UTC.
    for query in ("squeue", "sacct"):
        assert by_command[query] == {**kept, "TZ": "UTC", "SLURM_TIME_FORMAT": "standard"}, query


def test_times_are_read_as_utc(monkeypatch: pytest.MonkeyPatch) -> None:
    from jobroot.engines._slurmparse import parse_rows

    monkeypatch.setenv("TZ", "America/New_York")  # this process's zone must not matter: Slurm printed UTC
    time.tzset()
    try:
        line = SEP.join(["5", "COMPLETED", "0:0", "2026-11-24T14:02:10", "2026-11-24T14:02:11", "", "/w"])
        (row,) = parse_rows(line + "\n", False)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert row.submit == calendar.timegm((2026, 11, 24, 14, 2, 10))  # UTC, whatever this machine's zone


def test_an_error_on_stderr_with_exit_0_is_a_failed_query(tmp_path: Path) -> None:
    # Slurm before 23.11.4 could exit 0 after an error (bug 18410): never "no rows" (a claim would be resubmitted).
    d = claimed_folder(tmp_path, "old-claim", 3600)
    runner = FakeRunner(squeue=ok(""), sacct=ok("", "sacct: error: Problem talking to the database: Connection refused", rc=0))
    obs = SlurmEngine(runner=runner).observe([], [d])
    assert obs.unsure == {"old-claim"} and len(obs.problems) == 1 and "exit code 0" in obs.problems[0]


@pytest.mark.parametrize("state", ["EXPEDITING", "REVOKED"])
def test_a_state_this_code_does_not_know_is_active_and_logged_never_an_ending(tmp_path: Path, state: str) -> None:
    for sacct in (ok("", "sacct: error: Slurm accounting storage is disabled", 1), ok("")):  # accounting off, then on
        runner = FakeRunner(squeue=ok(squeue_line("1", state) + "\n"), sacct=sacct)
        obs = SlurmEngine(runner=runner).observe(jobs(1, tmp_path), [])
        assert obs.statuses["1"].state is State.ACTIVE
    assert any(state in note for note in obs.notes) or state == "REVOKED"


@pytest.mark.parametrize("answer", [ok("42\n", "", 3), CommandTimeout(["sbatch"], None, "", "no answer", "42\n")])
def test_sbatch_wait_never_turns_a_job_that_ran_into_a_refusal(tmp_path: Path, answer: Result | Exception) -> None:
    # #SBATCH --wait: sbatch prints the id, waits for the job, and exits with the job's status (3), or is timed out.
    job = make_job(tmp_path, "#!/bin/bash\n#SBATCH --wait\nexit 3\n")
    assert SlurmEngine(runner=FakeRunner(sbatch=answer)).submit(job) == "42"


POLICY = (
    "sbatch: error: Batch job submission failed: "
    "Job violates accounting/QOS policy (job submit limit, user's size and/or time limits)"
)


@pytest.mark.parametrize(
    ("stderr", "kind"),
    [
        (f"sbatch: error: QOSMaxWallDurationPerJobLimit\n{POLICY}", Refusal.FINAL),  # over the QOS wall time: can never run
        (f"sbatch: error: QOSMaxSubmitJobPerUserLimit\n{POLICY}", Refusal.PASSING),
        (f"sbatch: error: AssocMaxSubmitJobLimit\n{POLICY}", Refusal.PASSING),
        ("sbatch: error: Batch job submission failed: Required partition not available (inactive or drain)", Refusal.PASSING),
        ("sbatch: error: Batch job submission failed: Invalid user id", Refusal.PASSING),
        (
            "sbatch: error: invalid partition specified: nope\n"
            "sbatch: error: Batch job submission failed: Invalid partition name specified",
            Refusal.FINAL,
        ),  # fmt: skip
        (
            "sbatch: error: Batch job submission failed: Requested time limit is invalid (missing or exceeds some limit)",
            Refusal.FINAL,
        ),
        (POLICY, Refusal.UNKNOWN),  # the generic line alone does not say which limit
        (f"sbatch: error: AssocGrpSubmitJobsLimit\n{POLICY}", Refusal.PASSING),
        # sbatch's notice between its attempts is not the reason, even right before the policy line
        ("sbatch: error: Slurm temporarily unable to accept job, sleeping and retrying\n" + POLICY, Refusal.UNKNOWN),
        (
            "sbatch: error: Slurm temporarily unable to accept job, sleeping and retrying\n"
            "sbatch: error: Batch job submission failed: Invalid account or account/partition combination specified",
            Refusal.FINAL,
        ),  # fmt: skip
        (f"sbatch: error: AssocGrpSubmitJobsLimit\n{POLICY}", Refusal.PASSING),
        (
            "sbatch: error: Slurm temporarily unable to accept job, sleeping and retrying\n"
            "sbatch: error: Batch job submission failed: Invalid account or account/partition combination specified",
            Refusal.FINAL,
        ),  # fmt: skip
        ("sbatch: error: Batch job submission failed: Something only a newer Slurm says", Refusal.UNKNOWN),
        # --clusters, as 22.05 words it: an unknown cluster, one whose controller is down, none eligible
        (
            "sbatch: error: No cluster 'nosuch' known by database.\nsbatch: error: 'nosuch' can't be reached now, "
            "or it is an invalid entry for --cluster.  Use 'sacctmgr list clusters' to see available clusters.",
            Refusal.FINAL,
        ),
        (
            "sbatch: error: 'second' can't be reached now, or it is an invalid entry for --cluster.  "
            "Use 'sacctmgr list clusters' to see available clusters.",
            Refusal.PASSING,
        ),
        ("sbatch: error: Batch job submission failed: No eligible clusters for federated job", Refusal.FINAL),
    ],
)
def test_refusals_are_judged_by_the_reason_slurm_gives(stderr: str, kind: Refusal) -> None:
    from jobroot.engines._slurmparse import classify_refusal

    assert classify_refusal(stderr) is kind


def test_an_unrecognised_refusal_is_tried_a_bounded_number_of_times_then_final_with_every_attempts_words(tmp_path: Path) -> None:
    from jobroot.engines._batch import REFUSAL_TRIES

    job = make_job(tmp_path)
    for attempt in range(1, REFUSAL_TRIES + 1):
        words = f"sbatch: error: Batch job submission failed: Something new, take {attempt}"
        with pytest.raises(SubmitRefused) as refused:
            SlurmEngine(runner=FakeRunner(sbatch=ok("", words, 1))).submit(job)
        if attempt < REFUSAL_TRIES:
            assert not refused.value.permanent and f"attempt {attempt} of {REFUSAL_TRIES}" in str(refused.value)
            assert (job / fs.CLAIM).exists()  # the count lives in the claim, across runs
    assert refused.value.permanent and not (job / fs.CLAIM).exists()
    said = str(refused.value)
    assert all(f"attempt {i}: sbatch: error: Batch job submission failed: Something new, take {i}" in said for i in (1, 2, 3))


def test_site_defaults_apply_only_where_job_sh_does_not_set_the_option(tmp_path: Path) -> None:
    runner = FakeRunner(sbatch=ok("42\n"))
    engine = SlurmEngine(runner=runner, sbatch_defaults="--account=lab --partition=short --exclusive")
    engine.submit(make_job(tmp_path, "#!/bin/bash\n#SBATCH -A mine\n#SBATCH --partition=gpu\ntrue\n"))
    argv = runner.calls[0]
    assert "--exclusive" in argv and not any(a.startswith(("--account", "--partition")) for a in argv)
    with pytest.raises(Exception, match="long options"):
        from jobroot.engines._slurmenv import sbatch_defaults

        sbatch_defaults("-A lab")


def test_an_adopted_job_is_recorded_with_slurms_own_submit_time(tmp_path: Path) -> None:
    # Adopted late (after downtime), with "now" as its time, an ended job would be outside the sacct window.
    d = claimed_folder(tmp_path, "late", 3 * 3600)
    token = f"jobroot-{d.name}"
    received = int(time.time()) - 3 * 3600 + 1  # by Slurm's clock, a second after the claim
    row = SEP.join(["77", "COMPLETED", "0:0", iso(received), iso(received + 5), token, str(d)])
    obs = SlurmEngine(runner=FakeRunner(squeue=ok(""), sacct=ok(row + "\n"))).observe([], [d])
    assert obs.found == {"late": "77"} and obs.submitted == {"late": received}


def test_rows_of_an_older_job_with_a_reused_id_are_not_this_jobs(tmp_path: Path) -> None:
    old = SEP.join(["1", "FAILED", "3:0", iso(time.time() - 30 * 86400), iso(time.time() - 30 * 86400 + 60), "", "/w"])
    runner = FakeRunner(squeue=ok(""), sacct=ok(old + "\n"))
    assert SlurmEngine(runner=runner).observe(jobs(1, tmp_path), []).statuses["1"].state is State.UNKNOWN


class ByCluster:
    """Answers squeue and sacct for each cluster (--clusters=NAME, "" for this host's own); records every argv."""

    def __init__(self, answers: dict[str, dict[str, Result]]) -> None:
        self.answers = answers
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str], timeout: float, cwd: Path | None, env: Mapping[str, str] | None = None) -> Result:
        self.calls.append(list(argv))
        cluster = next((a.split("=", 1)[1] for a in argv if a.startswith("--clusters=")), "")
        return self.answers[cluster][argv[0]]


@pytest.mark.parametrize(
    "line", ["#SBATCH --clusters=second", "#SBATCH -M second", "#SBATCH --time=5 --cluster=second", "#SBATCH -Msecond"]
)
def test_a_job_for_another_cluster_is_recorded_with_it_and_its_claim_says_where(tmp_path: Path, line: str) -> None:
    runner = FakeRunner(sbatch=ok("7;second\n"))
    d = make_job(tmp_path, f"#!/bin/bash\n{line}\ntrue\n")
    assert SlurmEngine(runner=runner).submit(d) == "7;second"
    assert json.loads((d / fs.CLAIM).read_text())["where"] == "second"


def test_the_same_id_on_two_clusters_is_two_jobs_each_judged_by_its_own_cluster(tmp_path: Path) -> None:
    runner = ByCluster(
        {
            "": {"squeue": ok(squeue_line("7", "RUNNING") + "\n"), "sacct": ok("")},
            "second": {"squeue": ok(""), "sacct": ok(sacct_line("7", "FAILED", "3:0") + "\n")},
        }
    )
    here, there = (
        Submitted("slurm", "7", time.time() - 60, tmp_path / "a"),
        Submitted("slurm", "7;second", time.time() - 60, tmp_path / "b"),
    )
    obs = SlurmEngine(runner=runner).observe([here, there], [])
    assert obs.statuses["7"].state is State.ACTIVE
    assert obs.statuses["7;second"].state is State.FAILED
    assert obs.statuses["7;second"].reason.startswith("Slurm cluster second reports job 7 FAILED with exit code 3.")
    asked = [(c[0], next((a for a in c if a.startswith("--clusters=")), "")) for c in runner.calls]
    assert asked == [("squeue", ""), ("squeue", "--clusters=second"), ("sacct", "--clusters=second")]
    # this host's cluster with --federation (a sibling may run its jobs); never with --clusters (then nothing)
    assert ["--federation" in c for c in runner.calls] == [True, False, False]
    assert "--jobs=7" in runner.calls[2]


def test_a_claim_sent_elsewhere_is_looked_for_there_and_found_with_its_cluster(tmp_path: Path) -> None:
    d = claimed_folder(tmp_path, "late", 3600)
    (d / fs.CLAIM).write_text(json.dumps({"token": "jobroot-late", "claimed": time.time() - 3600, "where": "a,second"}))
    row = sacct_line("9", "COMPLETED", comment="jobroot-late")
    empty = {"squeue": ok(""), "sacct": ok("")}
    runner = ByCluster({"a": empty, "second": {"squeue": ok(""), "sacct": ok(row + "\n")}})
    obs = SlurmEngine(runner=runner).observe([], [d])
    assert obs.found == {"late": "9;second"} and obs.unsure == frozenset()


def test_a_cluster_that_cannot_be_asked_holds_its_own_jobs_and_the_room_only(tmp_path: Path) -> None:
    down = ok("", "squeue: error: 'second' can't be reached now, or it is an invalid entry for --cluster.", rc=1)
    runner = ByCluster({"": {"squeue": ok(""), "sacct": ok(sacct_line("1", "COMPLETED") + "\n")}, "second": {"squeue": down}})
    d = claimed_folder(tmp_path, "claim", 3600)
    (d / fs.CLAIM).write_text(json.dumps({"token": "jobroot-claim", "claimed": time.time() - 3600, "where": "second"}))
    gone = [
        Submitted("slurm", "1", time.time() - 60, tmp_path / "1"),
        Submitted("slurm", "5;second", time.time() - 60, tmp_path / "5"),
    ]
    obs = SlurmEngine(runner=runner, max_queued=10).observe(gone, [d])
    assert obs.statuses["1"].state is State.DONE and "5;second" not in obs.statuses  # not reported: it waits
    assert obs.unsure == {"claim"} and obs.room == 0  # never submitted again; no room while second's count is unknown
    assert any("cluster second" in p and "can't be reached" in p for p in obs.problems)


def test_max_queued_counts_the_jobs_of_every_cluster_asked(tmp_path: Path) -> None:
    queued = {"squeue": ok("\n".join(squeue_line(str(i), "PENDING") for i in (1, 2)) + "\n")}
    runner = ByCluster({"": queued, "second": queued})
    obs = SlurmEngine(runner=runner, max_queued=10).observe([Submitted("slurm", "1;second", time.time(), tmp_path / "x")], [])
    assert obs.room == 6


def test_scancel_goes_to_each_jobs_cluster(tmp_path: Path) -> None:
    runner = ByCluster({"": {"scancel": ok()}, "second": {"scancel": ok()}})
    now = time.time()
    SlurmEngine(runner=runner).cancel([Submitted("slurm", i, now, tmp_path / i) for i in ("3", "4;second", "5;second")])
    assert sorted(runner.calls) == [["scancel", "--clusters=second", "4", "5"], ["scancel", "3"]]


@pytest.mark.parametrize(
    ("line", "after", "sent"),
    [
        ("#SBATCH -M second", ("4;second", "5;second"), "--dependency=afterok:4:5"),
        ("", ("4", "5"), "--dependency=afterok:4:5"),
        ("#SBATCH -M second", ("4",), None),  # afterok would name this host's job 4 on second
        ("", ("4;second",), None),
        ("#SBATCH -M a,second", ("4;second",), None),  # sbatch picks the cluster: maybe not second
    ],
)
def test_a_chain_is_handed_to_slurm_only_within_one_cluster(
    tmp_path: Path, line: str, after: tuple[str, ...], sent: str | None
) -> None:
    runner = FakeRunner(sbatch=ok("42\n"))
    job = make_job(tmp_path, f"#!/bin/bash\n{line}\ntrue\n")
    if sent is None:
        with pytest.raises(SubmitRefused, match="only on one cluster") as refused:
            SlurmEngine(runner=runner).submit(job, after)
        assert refused.value.permanent and runner.calls == []
    else:
        SlurmEngine(runner=runner).submit(job, after)
        assert sent in runner.calls[0]


def test_clusters_all_is_refused_and_a_site_default_cluster_is_followed(tmp_path: Path) -> None:
    runner = FakeRunner(sbatch=ok("8;second\n"))
    with pytest.raises(SubmitRefused, match="name the clusters") as refused:
        SlurmEngine(runner=runner).submit(make_job(tmp_path, "#!/bin/bash\n#SBATCH --clusters=all\ntrue\n"))
    assert refused.value.permanent and runner.calls == []
    d = make_job(tmp_path, "#!/bin/bash\ntrue\n")
    assert SlurmEngine(runner=runner, sbatch_defaults="--clusters=second").submit(d) == "8;second"
    assert "--clusters=second" in runner.calls[0] and json.loads((d / fs.CLAIM).read_text())["where"] == "second"


@pytest.mark.parametrize("default", ["--clusters=second", "--cluster=second", "--clus=second"])
@pytest.mark.parametrize("line", ["#SBATCH --clusters=a", "#SBATCH --cluster=a", "#SBATCH -M a", "#SBATCH -Ma"])
def test_a_site_default_cluster_never_overrides_the_jobs_own(tmp_path: Path, default: str, line: str) -> None:
    runner = FakeRunner(sbatch=ok("42;a\n"))
    d = make_job(tmp_path, f"#!/bin/bash\n{line}\ntrue\n")
    SlurmEngine(runner=runner, sbatch_defaults=default).submit(d)
    assert not any("second" in a for a in runner.calls[0]), runner.calls[0]
    assert json.loads((d / fs.CLAIM).read_text())["where"] == "a"  # looked for where sbatch sent it


def test_cluster_names_are_read_as_slurm_reads_them_in_any_case(tmp_path: Path) -> None:
    runner = FakeRunner(sbatch=ok("42;second\n"))
    with pytest.raises(SubmitRefused, match="name the clusters"):
        SlurmEngine(runner=runner).submit(make_job(tmp_path, "#!/bin/bash\n#SBATCH --clusters=ALL\ntrue\n"))
    assert runner.calls == []
    d = make_job(tmp_path, "#!/bin/bash\n#SBATCH --clusters=Second\ntrue\n")
    SlurmEngine(runner=runner).submit(d, ("41;second",))  # the same cluster as its upstream: handed on
    assert json.loads((d / fs.CLAIM).read_text())["where"] == "second" and "--dependency=afterok:41" in runner.calls[0]


def test_max_queued_is_counted_where_new_jobs_go(tmp_path: Path) -> None:
    queued = {"squeue": ok("\n".join(squeue_line(str(i), "PENDING") for i in (1, 2, 3)) + "\n")}
    runner = ByCluster({"second": queued})
    obs = SlurmEngine(runner=runner, max_queued=10, sbatch_defaults="--cluster=second").observe([], [])
    assert obs.room == 7 and [c[1] for c in runner.calls] == ["--clusters=second"]


def test_an_sbatch_line_after_the_first_command_is_not_read_as_sbatch_does_not(tmp_path: Path) -> None:
    runner = FakeRunner(sbatch=ok("42\n"))
    SlurmEngine(runner=runner).submit(
        make_job(tmp_path, "#!/bin/bash\n\n# note\n#SBATCH -t 5\necho hi\n#SBATCH --comment=late\n")
    )
    assert any(a.startswith("--comment=jobroot-") for a in runner.calls[0])  # sbatch ignores the late --comment


def test_a_hand_edited_record_id_is_never_put_to_sacct_and_a_huge_list_becomes_a_window(tmp_path: Path) -> None:
    runner = FakeRunner(squeue=ok(""), sacct=ok(""))
    odd = [Submitted("slurm", "12,13 --all", time.time() - 60, tmp_path / "odd"), *jobs(1, tmp_path)]
    SlurmEngine(runner=runner).observe(odd, [])
    assert "--jobs=1" in runner.calls[1]
    runner = FakeRunner(squeue=ok(""), sacct=ok(""))
    many = [Submitted("slurm", str(10**7 + i), time.time() - 60, tmp_path / str(i)) for i in range(20_000)]
    SlurmEngine(runner=runner).observe(many, [])
    assert runner.count("sacct") == 1 and any(a.startswith("--starttime=") for a in runner.calls[1])


def test_sacct_by_id_asks_only_for_this_users_jobs_and_only_when_there_is_an_id(tmp_path: Path) -> None:
    runner = FakeRunner(squeue=ok(""), sacct=ok(""))
    SlurmEngine(runner=runner, user="alice").observe(jobs(1, tmp_path), [])
    assert "--user=alice" in runner.calls[1] and "--jobs=1" in runner.calls[1]  # with --jobs alone: every user's
    runner = FakeRunner(squeue=ok(""), sacct=ok(""))
    SlurmEngine(runner=runner).observe([Submitted("slurm", "garbled", time.time(), tmp_path / "g")], [])
    assert runner.count("sacct") == 0  # never `--jobs=` with nothing after it


def test_a_recorded_id_that_names_no_job_is_searched_for_by_its_token(tmp_path: Path) -> None:
    # By id, sacct only answers for recorded ids: the job that carries the token needs a window search.
    d = tmp_path / "lost"
    d.mkdir()
    record = Submitted("slurm", "5", time.time() - 60, d, "jobroot-lost")
    right = SEP.join(["77", "COMPLETED", "0:0", iso(time.time() - 59), iso(time.time() - 50), "jobroot-lost", str(d)])
    runner = FakeRunner(squeue=ok(""), sacct=ok(right + "\n"))

    def by_id_then_window(argv: Sequence[str], timeout: float, cwd: Path | None, env: Mapping[str, str] | None = None) -> Result:
        by_id = any(a.startswith("--jobs=") for a in argv)
        return runner(argv, timeout, cwd, env) if not by_id else (runner.calls.append(list(argv)), ok(""))[1]

    obs = SlurmEngine(runner=by_id_then_window).observe([record], [])
    assert obs.found == {"lost": "77"}
    assert [any(a.startswith("--starttime=") for a in c) for c in runner.calls if c[0] == "sacct"] == [False, True]


@pytest.mark.parametrize(
    ("line", "option"),
    [
        ("#SBATCH --nodes=2 --account=mine", "account"),  # sbatch reads every option on the line
        ("#SBATCH -Amine", "account"),
        ("#SBATCH --acc=mine", "account"),  # an abbreviation sbatch accepts
        ("#SBATCH -t10:00", "time"),
        ("#SBATCH -G 2", "gpus"),
    ],
)
def test_a_jobs_own_option_is_seen_in_every_spelling_sbatch_reads(tmp_path: Path, line: str, option: str) -> None:
    runner = FakeRunner(sbatch=ok("42\n"))
    SlurmEngine(runner=runner, sbatch_defaults=f"--{option}=site").submit(make_job(tmp_path, f"#!/bin/bash\n{line}\ntrue\n"))
    assert f"--{option}=site" not in runner.calls[0]


@pytest.mark.parametrize("default", ["--wait", "--export=NONE", "--chdir=/x", "--comment=x"])
def test_options_that_change_how_jobs_are_followed_are_never_site_defaults(default: str) -> None:
    from jobroot.engines._slurmenv import sbatch_defaults

    with pytest.raises(Exception, match="cannot be a default"):
        sbatch_defaults(f"--account=lab {default}")


def test_jobs_share_a_bundle_only_with_the_same_sbatch_words_and_the_bundle_asks_for_all_their_time(tmp_path: Path) -> None:
    engine = SlurmEngine(runner=FakeRunner())

    def script(name: str, lines: str) -> Path:
        (tmp_path / name).write_text(f"#!/bin/bash\n{lines}\necho run\n#SBATCH --mem=9G\n")
        return tmp_path / name

    a, b = script("a", "#SBATCH --time=10 -p short"), script("b", "#SBATCH --time=10 -p short")
    form = engine.bundling(a)
    assert form is not None and form == engine.bundling(b) and form.limit == 600
    assert engine.bundling(script("c", "#SBATCH --time=10 -p long")) != form  # another partition: another bundle
    for alone in ("#SBATCH --array=1-3", "#SBATCH --wait", "#SBATCH -d afterok:1", "#SBATCH --time=UNLIMITED"):
        assert engine.bundling(script("d", alone)) is None, alone
    # 3 x (10 min + 30 s to end one past its limit) + 1 min
    assert engine.bundle_header(a, 3) == "#SBATCH --time=10 -p short\n#SBATCH --time=00:32:30"
    assert engine.bundle_header(script("e", "#SBATCH -t 2-0"), 2) == "#SBATCH -t 2-0\n#SBATCH --time=4-00:02:00"
    assert engine.bundle_header(script("f", "#SBATCH -p short"), 3) == "#SBATCH -p short"  # no limit of its own
