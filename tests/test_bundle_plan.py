"""Bundles in the pure plan: which waiting folders share a scheduler job, and each member's own verdict."""

from __future__ import annotations

from typing import Optional

import pytest

from jobroot.actions import Adopt, Bundle, Finish, Forget, Launch, Note, Retry, Submit, Unbundle, Withdraw
from jobroot.bundle import Ended, Member, Seen
from jobroot.engine import Bundling, Ending, Observation, State, Status
from jobroot.folders import Submitted
from jobroot.model import Cause
from jobroot.packing import BundleFolder
from jobroot.plan import InboxFolder, PendingFolder, Verdict, plan

pytestmark = pytest.mark.unit

NOW = 1_000_000.0
ANY = Bundling("")


def ready(name: str, bundling: Optional[Bundling] = ANY, **kw: object) -> InboxFolder:
    return InboxFolder(name, Verdict.READY, bundling=bundling, **kw)  # type: ignore[arg-type]


def record(job_id: str = "77") -> Submitted:
    return Submitted("slurm", job_id, NOW - 60, "/r/bundles/b")


def member(name: str, place: int = 1, started: str = "", ended: Optional[Ended] = None, cancel: bool = False) -> PendingFolder:
    return PendingFolder(name, None, cancel=cancel, member=Seen(Member("b", place, 3), started, ended))


def decide(pending: list[PendingFolder], status: Optional[Status], retries: int = 0, rec: Optional[Submitted] = None) -> list:
    rec = rec or record()
    obs = Observation({rec.job_id: status} if status else {})
    return plan(pending, obs, [], "slurm", 10, NOW, retries=retries, bundles=[BundleFolder("b", rec)], bundle=3)


def test_waiting_folders_are_packed_in_name_order_by_their_directives() -> None:
    gpu, cpu = Bundling("--gres=gpu:1"), Bundling("--mem=1G")
    inbox = [ready("a", cpu), ready("b", gpu), ready("c", cpu), ready("d", cpu), ready("e", cpu), ready("f", gpu)]
    actions = plan([], Observation(), inbox, "slurm", 10, NOW, bundle=3)
    assert actions == [Bundle(("a", "c", "d")), Bundle(("b", "f")), Submit("e")]  # a bundle of one is a plain job


def test_a_folder_that_may_not_share_a_job_or_waits_on_another_goes_alone() -> None:
    inbox = [ready("a"), ready("b", None), ready("c"), InboxFolder("d", Verdict.WAIT, "held"), ready("e")]
    assert plan([], Observation(), inbox, "local", 10, NOW, bundle=2) == [Submit("b"), Bundle(("a", "c")), Submit("e")]
    assert plan([], Observation(), inbox, "local", 10, NOW, bundle=1) == [Submit("a"), Submit("b"), Submit("c"), Submit("e")]


def test_each_bundle_counts_once_against_the_room_and_the_scan_stops_when_full() -> None:
    looked: list[str] = []

    def inbox():  # type: ignore[no-untyped-def]
        for i in range(1000):
            looked.append(f"j{i:04}")
            yield ready(f"j{i:04}")

    actions = plan([], Observation(room=2), inbox(), "slurm", 50, NOW, bundle=10)
    assert [len(a.names) for a in actions if isinstance(a, Bundle)] == [10, 10] and len(actions) == 2
    assert len(looked) == 20


def test_a_bundle_refused_for_its_size_is_split_by_the_cap_its_members_carry() -> None:
    half = Bundling("", most=2)
    inbox = [ready("a", half), ready("b", half), ready("c", half), ready("d", Bundling("", most=1))]
    assert plan([], Observation(), inbox, "slurm", 10, NOW, bundle=4) == [Bundle(("a", "b")), Submit("d"), Submit("c")]


def test_a_member_has_its_own_verdict_as_soon_as_it_ended_while_its_bundle_runs() -> None:
    running = Status(State.ACTIVE, phase="running")
    done, failed = member("m1", 1, "job", Ended(0, "")), member("m2", 2, "job", Ended(3, ""))
    actions = decide([done, failed, member("m3", 3, "job")], running)
    assert actions[:2] == [Finish("m1"), Finish("m2", "The job exited with code 3, as member 2 of 3 of slurm bundle job 77.")]
    assert len(actions) == 2  # m3 still runs
    timeout = decide([member("m", 1, "job", Ended(124, "timeout"))], running)[0]
    assert isinstance(timeout, Finish) and "ran past its own time limit and was ended (TIMEOUT)" in timeout.reason


ENDED = [Status(State.DONE), Status(State.FAILED, "Slurm reports job 77 TIMEOUT."), Status(State.FAILED, ending=Ending.CANCELLED)]


@pytest.mark.parametrize("bundle", ENDED)
def test_a_member_its_bundle_never_started_waits_again_never_failed_nor_an_attempt(bundle: Status) -> None:
    actions = decide([member("m", 2)], bundle, retries=2)
    assert len(actions) == 1 and isinstance(actions[0], Unbundle) and actions[0].name == "m"


@pytest.mark.parametrize("bundle", [None, Status(State.UNKNOWN), Status(State.ACTIVE, phase="queued")])
def test_a_member_is_never_called_done_while_its_bundle_is_not_known_to_have_ended(bundle: Optional[Status]) -> None:
    assert not [a for a in decide([member("m", 1, "job")], bundle) if a.name == "m"]


def test_a_member_running_when_its_bundle_ended_gets_the_bundles_ending() -> None:
    timeout = Status(State.FAILED, "Slurm reports job 77 TIMEOUT.\nsacct: 77|TIMEOUT")
    finish = decide([member("m", 2, "job")], timeout)[0]
    assert isinstance(finish, Finish) and finish.cause is Cause.OWN
    said = "The job was running as member 2 of 3 of slurm bundle job 77 when the bundle ended: Slurm reports job 77 TIMEOUT."
    assert finish.reason.startswith(said)
    node = Status(State.FAILED, "Slurm reports job 77 NODE_FAIL: its node failed.", ending=Ending.LOST)
    retry = decide([member("m", 2, "job")], node, retries=1)[0]
    assert isinstance(retry, Retry) and retry.record.job_id == "77"  # the infrastructure's doing: run again, alone
    assert isinstance(decide([member("m", 2, "job")], node, retries=0)[0], Finish)
    silent = decide([member("m", 2, "job")], Status(State.DONE))[0]  # ended well, yet no word of this member
    assert isinstance(silent, Finish) and "ended without word of it" in silent.reason


def test_a_cancel_in_a_member_not_yet_started_withdraws_it_and_one_running_is_left_to_its_runner() -> None:
    queued = Status(State.ACTIVE, phase="queued")
    assert decide([member("m", 2, cancel=True)], queued) == [Withdraw("m")]
    assert [a for a in decide([member("m", 2, "job", cancel=True)], queued) if a.name == "m"] == []
    taken = decide([member("m", 2, "cancelled", cancel=True)], queued)[0]  # a run killed after taking it
    assert isinstance(taken, Finish) and taken.cause is Cause.CANCELLED


def test_a_bundle_is_started_adopted_or_removed_as_its_members_need() -> None:
    pending = [member("m1", 1), member("m2", 2)]
    unsubmitted = plan(pending, Observation(), [], "slurm", 10, NOW, bundles=[BundleFolder("b", None)], bundle=3)
    assert unsubmitted == [Launch("b", members=("m1", "m2"))]
    found = Observation(found={"b": "88"})
    adopt = plan(pending, found, [], "slurm", 10, NOW, bundles=[BundleFolder("b", None)], bundle=3)[0]
    assert adopt == Adopt("b", "88", None, bundle=True)
    assert plan([], Observation(), [], "slurm", 10, NOW, bundles=[BundleFolder("b", None)], bundle=3) == [Forget("b")]
    ended = Observation({"77": Status(State.DONE)})
    assert plan([], ended, [], "slurm", 10, NOW, bundles=[BundleFolder("b", record())], bundle=3) == [Forget("b")]
    assert plan([], Observation(unsure=frozenset({"b"})), [], "slurm", 10, NOW, bundles=[BundleFolder("b", None)]) == []
    late = plan(pending, Observation(), [], "slurm", 10, NOW + 3600, bundles=[BundleFolder("b", record())], bundle=3)[0]
    assert isinstance(late, Note) and late.problem and "bundle job 77 not reported" in late.message


def test_a_bundle_that_started_none_of_its_folders_sends_them_alone_and_says_so() -> None:
    members = [PendingFolder(n, None, member=Seen(Member("b", i, 2))) for i, n in enumerate(("m1", "m2"), 1)]
    actions = decide(members, Status(State.FAILED, "Slurm reports job 77 FAILED with exit code 1."))
    assert [a for a in actions if isinstance(a, Unbundle)] == [
        Unbundle(n, "its bundle job 77 ended without starting any of its folders; it runs alone", True) for n in ("m1", "m2")
    ]
    note = next(a for a in actions if isinstance(a, Note))
    assert note.problem and "ended without starting any of its 2 folders" in note.message
    one_ran = decide([members[0]], Status(State.DONE))  # the other has its verdict already: only this one waits again
    assert one_ran == [Unbundle("m1", "its bundle job 77 ended before it started it; it runs in a later one")]


def test_a_bundle_the_batch_system_holds_but_never_starts_is_ended_before_its_folder_goes() -> None:
    stuck = Observation({"77": Status(State.FAILED, "in error state", ending=Ending.STUCK)})
    assert plan([], stuck, [], "gridengine", 10, NOW, bundles=[BundleFolder("b", record())]) == [Forget("b", record())]
