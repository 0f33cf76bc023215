"""Grid Engine's words, read by pure functions, on output captured from the real 8.1.9 test cell
(tests/gridengine/capture.sh writes tests/data/gridengine-8.1.9-*.txt)."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobroot.engine import State
from jobroot.engines._batch import Refusal
from jobroot.engines._gridparse import (
    FAILED_MEANING,
    Queued,
    array_id,
    classify_refusal,
    decide,
    parse_details,
    parse_qacct,
    parse_qstat,
    parse_qsub_id,
    refusal_reason,
    task_count,
)

pytestmark = pytest.mark.unit

DATA = Path(__file__).parent / "data"


def captured(name: str) -> str:
    return (DATA / f"gridengine-8.1.9-{name}.txt").read_text().split("\n", 1)[1]


def by_account(text: str) -> dict[str, list]:  # type: ignore[type-arg]
    out: dict[str, list] = {}  # type: ignore[type-arg]
    for r in parse_qacct(text):
        out.setdefault(r.account.removeprefix("jobroot-"), []).append(r)
    return out


def test_qsub_terse_answers() -> None:
    assert parse_qsub_id("42\n") == "42"
    assert parse_qsub_id("43.1-3:1\n") == "43.1-3:1"
    for not_an_id in ("", "Your job 42 has been submitted", "4x2", "43.1-3"):
        assert parse_qsub_id(not_an_id) is None


def test_qstat_lists_running_tasks_and_waiting_ones_with_their_states() -> None:
    rows = parse_qstat(captured("qstat"))
    states = {(r.job, r.tasks): r.state for r in rows}
    assert "Eqw" in states.values() and "hqw" in states.values() and "r" in states.values()
    waiting_array = [r for r in rows if r.tasks == "2,3"]
    assert len(waiting_array) == 1 and waiting_array[0].state == "qw"
    assert all(r.since is not None for r in rows)  # submission time while waiting, start time once running
    assert sum(task_count(r.tasks) for r in rows) == len(rows) + 1  # `2,3` is two tasks


def test_qstat_j_gives_the_account_the_directory_and_an_error_states_reason() -> None:
    details = {d.account: d for d in parse_details(captured("qstat-j"))}
    assert set(details) == {"jobroot-deleted-running", "jobroot-error-state"}
    error = details["jobroot-error-state"]
    assert error.messages == ('error: can\'t open output file "/nonexistent/dir/out": No such file or directory',)
    assert error.cwd.endswith("/error-state") and error.submitted and error.submitted > 1.7e9
    assert details["jobroot-deleted-running"].tasks == ""  # a plain job, not an array of one


def test_qstat_j_that_could_not_reach_qmaster_is_an_error_though_it_exits_0() -> None:
    with pytest.raises(ValueError, match="could not reach qmaster"):
        parse_details(captured("qstat-j-qmaster-down"))
    for junk in ("", "<?xml version='1.0'?>\n<job_info>", "garbage"):
        with pytest.raises(ValueError):
            parse_qstat(junk)


def test_qacct_records_in_grid_engines_words() -> None:
    jobs = by_account(captured("qacct"))
    assert decide("1", [], jobs["ok"]).state is State.DONE
    three = decide("1", [], jobs["three"])
    assert three.state is State.FAILED and three.reason.startswith("Grid Engine reports job ")
    assert three.reason.splitlines()[0].endswith("ended with exit code 3.")
    signal = decide("1", [], jobs["signal"]).reason.splitlines()[0]
    assert "ended with signal 9 (SIGKILL); qacct: failed 100: assumedly after job" in signal
    # exit 130 is an exit code: `failed 0` tells it from a signal
    assert decide("1", [], jobs["interrupt"]).reason.splitlines()[0].endswith("ended with exit code 130.")
    assert "deleted-held" not in jobs  # deleted before it started: qacct never records such a job


@pytest.mark.parametrize(
    ("failed", "words"),
    [(26, "opening input/output file"), (27, "searching requested shell"), (28, "changing into working directory")],
)
def test_a_job_grid_engine_could_not_start_is_a_failure_though_its_exit_status_is_0(failed: int, words: str) -> None:
    # The captured record of a job that ended well, with the `failed` field Grid Engine writes when its
    # shepherd could not start the job (qacct then shows exit_status 0: the job itself never ran).
    ok = by_account(captured("qacct"))["ok"][0]
    assert ok.failed == 0 and ok.exit_status == 0
    status = decide("1", [], [ok._replace(failed=failed, failed_words=words)])
    assert status.state is State.FAILED
    assert status.reason.splitlines()[0].endswith(f"ended with failed {failed}: {words} ({FAILED_MEANING[failed]}).")
    assert decide("1", [], [ok]).state is State.DONE


def test_an_array_is_judged_once_every_task_qsub_named_has_a_record() -> None:
    tasks = by_account(captured("qacct"))["array"]
    job = tasks[0].job
    status = decide(f"{job}.1-3:1", [], tasks)
    assert status.state is State.FAILED
    assert (
        status.reason.splitlines()[0] == f"Grid Engine reports 1 of 3 tasks of job {job} failed: task 2 ended with exit code 4."
    )
    assert decide(f"{job}.1-3:1", [], tasks[:2]).state is State.UNKNOWN  # task 3's record is on its way
    assert decide(f"{job}.1-4:1", [], tasks).state is State.UNKNOWN


def test_nothing_reported_is_never_done() -> None:
    assert parse_qacct(captured("qacct-nothing")) == []
    assert decide("7", [], []).state is State.UNKNOWN
    assert decide("7", [], None).state is State.UNKNOWN
    assert decide("7", [Queued("7", "", "r", 1.0)], None).phase == "running"
    assert decide("7", [Queued("7", "", "hqw", 1.0)], []).phase == "queued"


def test_a_qacct_record_cut_short_is_an_error_not_a_verdict() -> None:
    text = captured("qacct")
    cut = text[: text.index("exit_status  137") + len("exit_status  13")]
    with pytest.raises(ValueError, match="cut short"):
        parse_qacct(cut)


@pytest.mark.parametrize(
    ("fixture", "kind"),
    [
        ("qsub-unknown-queue", Refusal.FINAL),
        ("qsub-bad-option", Refusal.FINAL),
        ("qsub-qmaster-down", Refusal.PASSING),
        ("qsub-user-limit", Refusal.PASSING),
    ],
)
def test_qsub_refusals_are_judged_by_the_reason_qsub_gives(fixture: str, kind: Refusal) -> None:
    text = captured(fixture)
    assert classify_refusal(text) is kind
    assert refusal_reason(text).startswith("Unable to run job:")
    assert classify_refusal("Unable to run job: something new\nExiting.") is Refusal.UNKNOWN


def test_an_adopted_arrays_id_is_spelled_as_qsub_would() -> None:
    assert array_id("9", []) == "9"
    assert array_id("9", [3, 1, 2]) == "9.1-3:1"
    assert array_id("9", [2, 6, 4]) == "9.2-6:2"
    assert array_id("9", [1, 2, 7]) == "9.1,2,7"
    assert task_count("1,2,7") == 3 and task_count("9.1-3:1".partition(".")[2]) == 3


def test_tasks_that_ended_the_same_way_are_named_together() -> None:
    tasks = [
        r._replace(exit_status=137, failed=100, failed_words="assumedly after job")
        for r in by_account(captured("qacct"))["array"]
    ]
    first = decide(f"{tasks[0].job}.1-3:1", [], tasks).reason.splitlines()[0]
    assert f"3 of 3 tasks of job {tasks[0].job} failed: tasks 1-3 ended with signal 9 (SIGKILL); qacct: failed 100" in first
    assert first.count("SIGKILL") == 1
