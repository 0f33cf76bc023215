"""Pure Slurm parsers against output captured from a real Slurm 22.05 (tests/slurm/capture.sh).

Each fixture's first line is the command that produced it; the rest is what it printed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from jobroot.config import parse_lookback
from jobroot.engine import Ending, State
from jobroot.engines._batch import Refusal
from jobroot.engines._slurmparse import (
    SEP,
    Row,
    base_id,
    decide,
    exit_text,
    make_row,
    parse_rows,
    parse_sbatch_id,
    task_count,
)

pytestmark = pytest.mark.unit

DATA = Path(__file__).parent / "data"


VERSIONS = sorted({p.name.split("-")[1] for p in DATA.glob("slurm-*-sacct.txt")})  # every Slurm captured


def captured(name: str, version: str) -> str:
    text = (DATA / f"slurm-{version}-{name}.txt").read_text()
    return text.split("\n", 1)[1]


@pytest.fixture(scope="module", params=VERSIONS)
def version(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def by_comment(rows: list[Row]) -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = {}
    for r in rows:
        out.setdefault(r.comment.removeprefix("jobroot-") if r.comment else r.workdir.rsplit("/", 1)[-1], []).append(r)
    return out


@pytest.fixture(scope="module")
def sacct(version: str) -> dict[str, list[Row]]:
    return by_comment(parse_rows(captured("sacct", version), squeue=False))


def test_sacct_rows_and_their_verdicts(sacct: dict[str, list[Row]]) -> None:
    def verdict(name: str) -> tuple[State, str]:
        rows = sacct[name]
        status = decide(rows[0].base, [], rows)
        return status.state, status.reason.split("\n", 1)[0]

    assert verdict("ok") == (State.DONE, "")
    assert verdict("three")[0] is State.FAILED and verdict("three")[1].endswith("FAILED with exit code 3.")
    assert verdict("signal")[1].endswith("FAILED with signal 9 (SIGKILL).")
    assert verdict("cancelled")[1].endswith("CANCELLED by uid 0.")
    assert verdict("timeout")[1].endswith("TIMEOUT: it reached its time limit.")
    state, head = verdict("array")
    assert state is State.FAILED and "1 of 3 tasks" in head and "_2 FAILED with exit code 4" in head
    assert verdict("new\nline") == (State.DONE, "")  # a newline in the folder name continues the row
    assert verdict("pipe-name") == (State.DONE, "")


def test_sacct_failure_reason_quotes_the_lines(sacct: dict[str, list[Row]]) -> None:
    reason = decide(sacct["three"][0].base, [], sacct["three"]).reason
    lines = reason.splitlines()
    assert len(lines) == 2 and lines[1].startswith("sacct: ") and "FAILED | 3:0" in lines[1]


def test_squeue_rows(version: str) -> None:
    rows = parse_rows(captured("squeue", version), squeue=True)
    assert rows and all(r.exit_code == "" and r.submit for r in rows)
    states = {r.word for r in rows}
    assert "PENDING" in states or "RUNNING" in states
    pending_array = [r for r in rows if r.comment == "jobroot-pending-array"]
    assert pending_array and all("_" in r.job_id for r in pending_array)  # --array: one line per task


def test_active_states_are_never_finished() -> None:
    for state in (
        "PENDING",
        "RUNNING",
        "REQUEUED",
        "REQUEUE_HOLD",
        "COMPLETING",
        "CONFIGURING",
        "SUSPENDED",
        "RESIZING",
        "STAGE_OUT",
    ):
        row = make_row("5", state, "0:0", 1.0, None, "", "/w", "")
        assert decide("5", [], [row]).state is State.UNKNOWN  # sacct says running but the queue does not: wait
        assert decide("5", [row], [row]).state is State.ACTIVE


@pytest.mark.parametrize(
    ("state", "code", "expected"),
    [
        ("OUT_OF_MEMORY", "0:125", "OUT_OF_MEMORY: it used more memory than it asked for"),
        ("NODE_FAIL", "0:0", "NODE_FAIL: its node failed"),
        ("PREEMPTED", "0:0", "PREEMPTED: it was preempted and not requeued"),
        ("DEADLINE", "0:0", "DEADLINE: it could not finish before its deadline"),
        ("BOOT_FAIL", "0:0", "BOOT_FAIL: its node failed to boot"),
        ("FAILED", "0:0", "FAILED with exit code 0"),
    ],
)
def test_failure_states_even_with_exit_code_zero(state: str, code: str, expected: str) -> None:
    # Rows built in sacct's format (these states cannot be produced on a one-node test cluster).
    status = decide("9", [], [make_row("9", state, code, 1.0, 2.0, "", "/w", f"9|{state}|{code}")])
    assert status.state is State.FAILED and status.reason.splitlines()[0] == f"Slurm reports job 9 {expected}."


def test_a_finished_job_still_in_squeue() -> None:
    done = make_row("5", "COMPLETED", "", 1.0, None, "", "/w", "")
    failed = make_row("6", "FAILED", "", 1.0, None, "", "/w", "")
    assert decide("5", [done], None).state is State.DONE  # the controller's word suffices for success
    assert decide("6", [failed], None).state is State.ACTIVE  # a failure waits for sacct's exit code ...
    assert decide("6", [failed], [], accounting=False).state is State.FAILED  # ... unless there is no accounting
    assert decide("7", [], []).state is State.UNKNOWN and decide("7", [], None).state is State.UNKNOWN


@pytest.mark.parametrize("accounting", [True, False])
@pytest.mark.parametrize(("good", "bad"), [("5+0", "5+1"), ("5_1", "5_2")])  # a heterogeneous job; an array
def test_a_job_squeue_shows_with_one_part_completed_and_another_failed_is_not_done(good: str, bad: str, accounting: bool) -> None:
    rows = [make_row(good, "COMPLETED", "", 1.0, None, "", "/w", ""), make_row(bad, "FAILED", "", 1.0, None, "", "/w", "")]
    status = decide("5", rows, None if accounting else [], accounting=accounting)
    assert status.state is (State.ACTIVE if accounting else State.FAILED)  # with accounting, wait for sacct's words
    assert decide("5", rows[:1], None if accounting else [], accounting=accounting).state is not State.FAILED


@pytest.mark.parametrize("word", ["NODE_FAIL", "BOOT_FAIL", "PREEMPTED"])
def test_an_array_with_a_task_the_infrastructure_ended_is_never_lost_whole(word: str) -> None:
    # --retries submits a LOST job again whole: for an array, its tasks that ended well would run twice.
    # Chosen: the array is failed, naming the task; the user moves it back (or resubmits that task) by hand.
    rows = [make_row("8_1", "COMPLETED", "0:0", 1.0, 2.0, "", "/w", ""), make_row("8_2", word, "0:0", 1.0, 2.0, "", "/w", "")]
    status = decide("8", [], rows)
    assert status.state is State.FAILED and status.ending is Ending.FAILED and not status.lost
    assert "1 of 2 tasks of job 8 failed: 8_2 " + word in status.reason
    alone = decide("9", [], [make_row("9", word, "0:0", 1.0, 2.0, "", "/w", "")])
    assert alone.ending is Ending.LOST  # a plain job is submitted again under --retries


def test_sbatch_ids_and_refusals(version: str) -> None:
    from jobroot.engines._slurmparse import classify_refusal

    assert parse_sbatch_id("42\n") == "42" and parse_sbatch_id("42;second\n") == "42;second"
    assert parse_sbatch_id("") is None and parse_sbatch_id("Submitted batch job 42\n") is None
    for name in ("invalid-partition", "no-shebang", "unknown-option", "dos"):
        text = captured(f"sbatch-{name}", version)
        assert text.strip() and classify_refusal(text) is Refusal.FINAL, (name, text)
    assert "Invalid partition name specified" in captured("sbatch-invalid-partition", version)
    assert (
        classify_refusal("sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)")
        is Refusal.PASSING
    )
    # The answer was lost on the way back: slurmctld may have created the job, so never permanent.
    assert (
        classify_refusal("sbatch: error: Batch job submission failed: Socket timed out on send/recv operation") is Refusal.PASSING
    )


def test_ids_and_tasks() -> None:
    assert [base_id(i) for i in ("123", "123_4", "123_[5-9%2]", "123+1", "123.batch")] == ["123"] * 5
    assert [task_count(i) for i in ("123", "123_4", "123_[5-9%2]", "123_[1,3,5-7]")] == [1, 1, 5, 5]
    assert exit_text("3:0") == "exit code 3" and exit_text("0:15") == "signal 15 (SIGTERM)"


def test_lookback() -> None:
    now = 1_000_000.0
    assert parse_lookback("36h", now) == now - 36 * 3600
    assert parse_lookback("7d", now) == now - 7 * 86400
    assert parse_lookback("2026-11-01", now) > 0
    with pytest.raises(ValueError):
        parse_lookback("soon", now)


def test_a_final_state_without_an_end_time_is_not_final_yet() -> None:
    # Seen on the real cluster: sacct showed "FAILED 0:0, End Unknown" a moment before "FAILED 3:0".
    early = make_row("7", "FAILED", "0:0", 1.0, None, "", "/w", "")
    assert decide("7", [], [early]).state is State.UNKNOWN
    late = make_row("7", "FAILED", "3:0", 1.0, 2.0, "", "/w", "")
    assert "exit code 3" in decide("7", [], [late]).reason


def test_a_folder_name_line_starting_with_digits_continues_its_row() -> None:
    # A newline in a work directory: the next line starts with digits but not with an id and the separator.
    line = SEP.join(["42", "COMPLETED", "0:0", "2026-11-24T14:02:10", "2026-11-24T14:02:11", "", "/w/run\n2024 results"])
    (row,) = parse_rows(line + "\n", False)
    assert (row.job_id, row.workdir) == ("42", "/w/run\n2024 results")


@pytest.mark.parametrize("accounted", [None, []], ids=["sacct not answered", "sacct answered nothing"])
def test_a_job_nobody_reports_is_unknown_never_done(accounted: list[Row] | None) -> None:
    assert decide("5", [], accounted).state is State.UNKNOWN


def acct(job_id: str, state: str, code: str = "0:0", end: str = "2026-11-24T14:05:00") -> str:
    return SEP.join([job_id, state, code, "2026-11-24T14:02:10", end, "", "/w"])


def test_an_arrays_unstarted_remainder_is_a_row_of_its_own_and_counts_every_task() -> None:
    # --array=0-98:2%1 cancelled after two tasks: sacct prints the remainder as one row (with `:`), or cut short.
    for remainder in ("123_[4-98:2%1]", "123_[4-98:2%1]"[:9] + "..."):
        text = "\n".join([acct("123_0", "COMPLETED"), acct("123_2", "CANCELLED by 0", "0:15"), acct(remainder, "CANCELLED by 0")])
        rows = parse_rows(text + "\n", False)
        assert [r.job_id for r in rows] == ["123_0", "123_2", remainder]
    # As Slurm 22.05 printed it here: the remainder keeps its first label (2-98) after task 2 was split off.
    done_two = [acct("123_0", "COMPLETED"), acct("123_2", "COMPLETED"), acct("123_[2-98:2%1]", "CANCELLED by 0")]
    rows = parse_rows("\n".join(done_two), False)
    status = decide("123", [], rows)
    assert status.state is State.FAILED  # cancelling only the pending remainder is not success
    assert status.reason.startswith("Slurm reports 48 of 50 tasks of job 123 failed: 123_[2-98:2%1] CANCELLED by uid 0 (48 tasks")


def test_a_remainder_shown_by_its_bare_id_is_tasks_that_never_started_not_one_task() -> None:
    # Captured: once the remainder is cancelled, sacct at times prints it as `3486`, with no task list left.
    rows = parse_rows(captured("sacct-array-remainder-bare", "22.05.8"), False)
    status = decide("3486", [], rows)
    assert status.state is State.FAILED
    first = status.reason.splitlines()[0]
    assert first == (
        "Slurm reports tasks of job 3486 failed: 3486 CANCELLED by uid 0"
        " (the tasks that had not started; Slurm no longer lists them)."
    )
    assert decide("3486", [], [r for r in rows if r.job_id != "3486"]).state is State.DONE  # the bare row is what fails


def test_squeues_bare_remainder_row_is_the_one_sacct_lists_with_its_tasks() -> None:
    # squeue always prints a cancelled remainder as `123`; sacct as `123_[2-98:2%1]`: the same record,
    # so the sweep need not wait for slurmctld to forget it (MinJobAge, 300 s by default).
    queued = [make_row("123", "CANCELLED"), make_row("123_0", "COMPLETED"), make_row("123_2", "COMPLETED")]
    done_two = [acct("123_0", "COMPLETED"), acct("123_2", "COMPLETED"), acct("123_[2-98:2%1]", "CANCELLED by 0")]
    status = decide("123", queued, parse_rows("\n".join(done_two), False))
    assert status.state is State.FAILED, status
    assert "(48 tasks that never started)" in status.reason


def test_task_counts_with_steps_throttles_and_cut_short_lists() -> None:
    ids = ("123_[6-98:2%1]", "123_[0-98:2]", "123_[1,3,5-9%2]", "123_[1-3,7...", "123_4")
    assert [task_count(i) for i in ids] == [47, 50, 7, 3, 1]
    assert task_count("123_[0-4000000%10]") == 4_000_001  # Slurm's largest array: counted, not listed


@pytest.mark.parametrize("accounted", [None, []], ids=["sacct failed", "sacct has no rows yet"])
def test_an_array_is_never_done_from_squeue_alone(accounted: list[Row] | None) -> None:
    # slurmctld forgets each finished task after MinJobAge: the tasks squeue still shows are not all of them.
    queued = [make_row("7_1", "COMPLETED"), make_row("7_2", "COMPLETED")]
    assert decide("7", queued, accounted).state is State.ACTIVE
    assert decide("8", [make_row("8", "COMPLETED")], accounted).state is State.DONE  # a plain job may be


def test_both_slurm_generations_are_captured() -> None:
    assert {"22.05.8", "24.11.5"} <= set(VERSIONS)  # tests/slurm/capture.sh, on the host and in the chroot
