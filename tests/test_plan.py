"""plan(): facts in, actions out. Table tests, no disk, no clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobroot.actions import Adopt, Finish, Launch, Note, Reject, Submit
from jobroot.engine import Observation, State, Status, Submitted
from jobroot.model import Cause
from jobroot.plan import InboxFolder, PendingFolder, plan

pytestmark = pytest.mark.unit


def typed(actions: list[object]) -> list[tuple[str, tuple[object, ...]]]:
    """Actions are NamedTuples, which compare equal across types: compare the type too."""
    return [(type(a).__name__, tuple(a)) for a in actions]  # type: ignore[arg-type]


def rec(job_id: str, engine: str = "local") -> Submitted:
    return Submitted(engine, job_id, 0.0, Path("/x"))


def ready(*names: str) -> list[InboxFolder]:
    return [InboxFolder(n, "ready") for n in names]


def test_finished_jobs_move_and_failures_carry_the_engines_reason() -> None:
    pending = [PendingFolder("a", rec("1")), PendingFolder("b", rec("2")), PendingFolder("c", rec("3"))]
    obs = Observation({"1": Status(State.DONE), "2": Status(State.FAILED, "exit 3"), "3": Status(State.ACTIVE)})
    assert typed(plan(pending, obs, [], "local", 10)) == typed([Finish("a"), Finish("b", "exit 3")])


@pytest.mark.parametrize("status", [None, Status(State.UNKNOWN)])
def test_a_job_not_reported_is_never_finished(status: Status | None) -> None:
    obs = Observation({"1": status} if status else {})
    actions = plan([PendingFolder("a", rec("1"))], obs, [], "local", 10)
    assert len(actions) == 1 and isinstance(actions[0], Note) and not actions[0].problem


def test_claimed_folders_are_adopted_waited_for_or_launched_first() -> None:
    pending = [PendingFolder("a", None), PendingFolder("b", None), PendingFolder("c", None)]
    obs = Observation(found={"a": "7"}, unsure=frozenset({"b"}), room=5)
    actions = plan(pending, obs, ready("x", "y"), "local", 2)
    assert typed(actions) == typed([Adopt("a", "7"), Launch("c"), Submit("x")])


def test_inbox_in_given_order_up_to_the_batch_limit() -> None:
    assert typed(plan([], Observation(), ready("100", "110", "140"), "local", 2)) == typed([Submit("100"), Submit("110")])


def test_room_left_by_the_engine_limits_submissions() -> None:
    assert typed(plan([], Observation(room=1), ready("100", "110"), "local", 50)) == typed([Submit("100")])
    assert typed(plan([], Observation(room=0), ready("100"), "local", 50)) == typed([])


def test_bad_folders_are_rejected_without_using_room_and_waiting_ones_skipped() -> None:
    inbox = [InboxFolder("a", "wait"), InboxFolder("b", "bad", "job.sh is empty."), *ready("c", "d")]
    assert typed(plan([], Observation(), inbox, "local", 1)) == typed([Reject("b", "job.sh is empty."), Submit("c")])


def test_inbox_is_consumed_lazily() -> None:
    seen = []

    def inbox():
        for n in ("1", "2", "3", "4"):
            seen.append(n)
            yield InboxFolder(n, "ready")

    plan([], Observation(), inbox(), "local", 2)
    assert seen == ["1", "2"]


def test_records_from_another_engine_and_unreadable_records_are_problems_not_moves() -> None:
    pending = [PendingFolder("a", rec("1", engine="slurm")), PendingFolder("b", None, problem="unreadable")]
    actions = plan(pending, Observation({"1": Status(State.DONE)}), [], "local", 10)
    assert [type(a) for a in actions] == [Note, Note] and all(a.problem for a in actions)  # type: ignore[union-attr]


def test_cancel_asks_the_engine_while_active_and_finishes_with_the_reason_once_ended() -> None:
    from jobroot.actions import Cancel
    from jobroot.plan import CANCELLED

    running = PendingFolder("a", rec("1"), cancel=True)
    ended = PendingFolder("b", rec("2"), cancel=True)
    claimed = PendingFolder("c", None, cancel=True)
    obs = Observation({"1": Status(State.ACTIVE), "2": Status(State.FAILED, "killed by SIGTERM")}, room=5)
    actions = plan([running, ended, claimed], obs, ready("x"), "local", 5)
    assert typed(actions) == typed(
        [
            Cancel("a", rec("1")),
            Finish("b", f"{CANCELLED}\nkilled by SIGTERM", cause=Cause.CANCELLED),
            Finish("c", "The job was cancelled at the user's request before it was submitted.", cause=Cause.CANCELLED),
            Submit("x"),
        ]
    )


def test_batch_limit_zero_starts_nothing_not_even_a_claimed_folder() -> None:
    # 0 is what a circuit-breaker pause uses: collect results, start nothing.
    pending = [PendingFolder("a", None), PendingFolder("b", rec("1"))]
    obs = Observation({"1": Status(State.DONE)}, room=5)
    assert typed(plan(pending, obs, ready("x"), "local", 0)) == typed([Finish("b")])


def test_a_claim_the_engine_is_unsure_about_is_left_alone() -> None:
    obs = Observation(unsure=frozenset({"a"}), room=5)
    assert typed(plan([PendingFolder("a", None)], obs, [], "local", 10)) == typed([])


def test_a_job_unreported_past_the_grace_period_is_a_problem() -> None:
    from jobroot.plan import GRACE

    pending = [PendingFolder("a", rec("1"))]  # submitted at 0
    (early,) = plan(pending, Observation(), [], "local", 10, now=GRACE - 1)
    (late,) = plan(pending, Observation(), [], "local", 10, now=GRACE + 1)
    assert isinstance(early, Note) and not early.problem
    assert isinstance(late, Note) and late.problem and "for a long time now" in late.message


def test_each_launch_of_a_claimed_folder_counts_against_the_batch_limit_and_the_room() -> None:
    pending = [PendingFolder("a", None), PendingFolder("b", None)]
    assert typed(plan(pending, Observation(room=3), ready("x", "y"), "local", 10)) == typed(
        [Launch("a"), Launch("b"), Submit("x")]
    )
    assert typed(plan(pending, Observation(room=9), ready("x", "y"), "local", 3)) == typed(
        [Launch("a"), Launch("b"), Submit("x")]
    )


def test_a_recorded_id_the_engine_found_to_be_wrong_is_replaced() -> None:
    obs = Observation({"1": Status(State.UNKNOWN)}, found={"a": "7"})
    assert typed(plan([PendingFolder("a", rec("1"))], obs, [], "local", 10)) == typed([Adopt("a", "7")])


def test_folders_the_run_cannot_follow_are_problems_named_with_the_fix() -> None:
    pending = [PendingFolder("a", rec("1", engine="slurm")), PendingFolder("b", None, problem="unreadable job_submitted.json: x")]
    other, garbled = plan(pending, Observation(room=5), [], "local", 10)
    assert typed([other]) == typed([Note("a", "submitted through the slurm engine; run with -e slurm to follow it", True)])
    assert typed([garbled]) == typed([Note("b", "unreadable job_submitted.json: x; fix or remove it by hand", True)])


def test_a_link_in_the_inbox_is_noted_and_never_submitted() -> None:
    inbox = [InboxFolder("l", "note", "a symbolic link"), *ready("x")]
    assert typed(plan([], Observation(), inbox, "local", 10)) == typed([Note("l", "a symbolic link"), Submit("x")])
