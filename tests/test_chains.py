"""Stages through `after` files, on the local engine and in the pure plan (Slurm: tests/test_slurm_chains.py)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from conftest import drain, make_job, read_ledger, run

from jobroot import folders as fs
from jobroot.actions import Finish, Launch, Note, Reject, Submit, Wait
from jobroot.chains import Upstream
from jobroot.engine import Ending, Observation, State, Status
from jobroot.model import Cause
from jobroot.plan import NOT_RUN, InboxFolder, PendingFolder, Verdict, plan

pytestmark = pytest.mark.local


def chain_job(root: Path, name: str, ledger: Path, after: str = "", tail: str = "") -> Path:
    files = {"after": after} if after else {}
    return make_job(root, name, f"#!/bin/bash\necho {name} >> {ledger}\nsleep 0.2\n{tail}\n", files)


def error_of(root: Path, name: str) -> str:
    return (root / "complete" / name / fs.ERROR).read_text()


def test_a_chain_runs_in_order_each_link_once(root: Path, ledger: Path) -> None:
    chain_job(root, "c-last", ledger, "b-middle\n")
    chain_job(root, "b-middle", ledger, "# the first link\na-first\n\n")
    chain_job(root, "a-first", ledger)
    drain(root)
    assert read_ledger(ledger) == ["a-first", "b-middle", "c-last"]
    assert sorted(os.listdir(root / "complete")) == ["a-first", "b-middle", "c-last"]
    assert not any((root / "complete" / n / fs.ERROR).exists() for n in os.listdir(root / "complete"))


def test_a_failed_link_fails_the_rest_fast_naming_it_and_retry_failed_runs_them_again(root: Path, ledger: Path) -> None:
    chain_job(root, "a", ledger, tail="[ -e fixed ] || exit 3")
    chain_job(root, "b", ledger, "a")
    chain_job(root, "c", ledger, "b")
    drain(root)
    assert read_ledger(ledger) == ["a"]  # b and c never ran
    assert error_of(root, "b").startswith("Not submitted: it runs after a, which failed: The job exited with code 3")
    assert error_of(root, "c").startswith("Not submitted: it runs after b, which failed: Not submitted: it runs after a")
    (root / "complete" / "a" / "fixed").touch()
    assert run(root, "--retry-failed").returncode == 0
    drain(root)
    assert read_ledger(ledger) == ["a", "a", "b", "c"]
    assert not any((root / "complete" / n / fs.ERROR).exists() for n in ("a", "b", "c"))


def test_a_name_that_exists_nowhere_is_waited_for_and_said(root: Path, ledger: Path) -> None:
    chain_job(root, "later", ledger, "prep")
    for _ in range(3):
        assert run(root).returncode == 0
    assert os.listdir(root / "inbox") == ["later"] and read_ledger(ledger) == []
    (job,) = json.loads((root / fs.STATUS_JSON).read_text())["jobs"]
    assert (job["state"], job["reason"]) == ("waiting", "waiting for prep, which is nowhere yet")
    shown = run(root, "--status")
    assert "waiting for prep, which is nowhere yet" in shown.stdout
    chain_job(root, "prep", ledger)
    drain(root)
    assert read_ledger(ledger) == ["prep", "later"]


def test_a_cycle_never_runs_and_names_its_members(root: Path, ledger: Path) -> None:
    chain_job(root, "x", ledger, "y")
    chain_job(root, "y", ledger, "z")
    chain_job(root, "z", ledger, "x")
    chain_job(root, "self", ledger, "self")
    drain(root)
    assert read_ledger(ledger) == []
    assert "cycle of after files (x -> y -> z -> x)" in error_of(root, "x")
    assert "cycle of after files (z -> x -> y -> z)" in error_of(root, "z")
    assert "names the folder itself" in error_of(root, "self")


def test_a_reused_name_means_its_latest_drop(root: Path, ledger: Path) -> None:
    chain_job(root, "prep", ledger, tail="exit 3")
    drain(root)  # complete/prep failed
    chain_job(root, "prep", ledger)  # dropped again, fixed: it will land as complete/prep.2
    drain(root)
    assert sorted(os.listdir(root / "complete")) == ["prep", "prep.2"]
    chain_job(root, "fit", ledger, "prep")
    drain(root)
    assert not (root / "complete" / "fit" / fs.ERROR).exists()  # prep.2, the latest ending, decides
    assert read_ledger(ledger) == ["prep", "prep", "fit"]
    # While a new drop of the name is in pending/, a folder waits for it, whatever complete/ holds.
    chain_job(root, "prep", ledger, tail="sleep 2")
    assert run(root).returncode == 0  # prep submitted
    chain_job(root, "fit2", ledger, "prep")
    time.sleep(0.1)
    assert run(root).returncode == 0
    assert "fit2" in os.listdir(root / "inbox")
    drain(root)
    assert read_ledger(ledger)[-2:] == ["prep", "fit2"]


def test_an_after_file_that_names_no_folder_is_rejected_with_its_line(root: Path, ledger: Path) -> None:
    chain_job(root, "bad", ledger, "ok-name\n../escape\n")
    drain(root)
    assert "line 2 of the after file is not a folder name: '../escape'" in error_of(root, "bad")


def rec(job_id: str) -> fs.Submitted:
    return fs.Submitted("slurm", job_id, 1.0, "/r/pending/up")


def folder(*ups: Upstream) -> InboxFolder:
    return InboxFolder("down", Verdict.READY, after=ups)


def test_the_plan_hands_a_chain_to_an_engine_that_takes_it_and_waits_otherwise() -> None:
    active = Observation({"7": Status(State.ACTIVE, phase="running")})
    pending = Upstream("up", "pending", "up", rec("7"))
    assert plan([], active, [folder(pending)], "slurm", 10, dependencies=True) == [Submit("down", ("up",))]
    (wait,) = plan([], active, [folder(pending)], "slurm", 10, dependencies=False)
    assert wait == Wait("down", "waiting for up (running)")
    # An upstream in inbox/ submitted earlier in the same sweep: handed on at once.
    up = InboxFolder("a-up", Verdict.READY)
    down = InboxFolder("b-down", Verdict.READY, after=(Upstream("a-up", "inbox", "a-up"),))
    assert plan([], Observation(), [up, down], "slurm", 10, dependencies=True) == [
        Submit("a-up"),
        Submit("b-down", ("a-up",)),
    ]
    assert plan([], Observation(), [up, down], "local", 10)[1] == Wait("b-down", "waiting for a-up (waiting in inbox/)")
    # Done upstream: a plain submission; failed: rejected, naming it.
    done = Observation({"7": Status(State.DONE)})
    assert plan([], done, [folder(pending)], "slurm", 10, dependencies=True) == [Submit("down")]
    failed = Observation({"7": Status(State.FAILED, "Slurm reports job 7 FAILED with exit code 3.\nsacct: ...")})
    (reject,) = plan([], failed, [folder(pending)], "slurm", 10, dependencies=True)
    assert reject == Reject("down", "it runs after up, which failed: Slurm reports job 7 FAILED with exit code 3.")
    # Unknown (not reported) or only claimed: never handed on, never called done.
    for obs, up_state in ((Observation(), pending), (active, Upstream("up", "pending", "up", None))):
        (action,) = plan([], obs, [folder(up_state)], "slurm", 10, dependencies=True)
        assert isinstance(action, Wait)


def test_a_claimed_link_is_started_handed_on_failed_or_left_waiting_by_the_same_rule() -> None:
    # A run killed between the claim and sbatch: the next one starts the folder only as its chain allows.
    claimed = PendingFolder("down", None, after=(Upstream("up", "pending", "up", rec("7")),))
    active = Observation({"7": Status(State.ACTIVE, phase="running")})
    assert plan([claimed], active, [], "slurm", 10, dependencies=True) == [Launch("down", ("up",))]
    (waits,) = plan([claimed], active, [], "slurm", 10, dependencies=False)
    assert waits == Note("down", "waits for up (running) before it is started")
    failed = Observation({"7": Status(State.FAILED, "Slurm reports job 7 FAILED with exit code 3.")})
    reason = f"{NOT_RUN} it runs after up, which failed: Slurm reports job 7 FAILED with exit code 3."
    assert plan([claimed], failed, [], "slurm", 10, dependencies=True) == [Finish("down", reason, cause=Cause.UPSTREAM)]


def test_a_link_the_batch_system_ended_unstarted_names_the_upstream_that_failed_first() -> None:
    down = PendingFolder(
        "down", fs.Submitted("slurm", "8", 1.0, "/r/pending/down"), after=(Upstream("up", "pending", "up", rec("7")),)
    )
    obs = Observation(
        {
            "7": Status(State.FAILED, "Slurm reports job 7 FAILED with exit code 3."),
            "8": Status(State.FAILED, "Slurm reports job 8 CANCELLED by uid 0.", ending=Ending.CANCELLED),
        }
    )
    (finish,) = plan([down], obs, [], "slurm", 10, dependencies=True)
    first = f"{NOT_RUN} it runs after up, which failed: Slurm reports job 7 FAILED with exit code 3."
    assert finish == Finish("down", f"{first}\nSlurm reports job 8 CANCELLED by uid 0.", cause=Cause.UPSTREAM)
    (own,) = plan(
        [down], obs._replace(statuses={**obs.statuses, "8": Status(State.FAILED, "exit code 1")}), [], "slurm", 10, True
    )
    assert own == Finish("down", "exit code 1")  # it ran and failed by itself: its own words, its own failure


def test_a_link_cancelled_because_the_job_before_it_was_lost_says_so() -> None:
    down = PendingFolder(
        "down", fs.Submitted("slurm", "8", 1.0, "/r/pending/down"), after=(Upstream("up", "pending", "up", rec("7")),)
    )
    said = "Slurm reports job 7 NODE_FAIL: its node failed."
    obs = Observation(
        {
            "7": Status(State.FAILED, said, ending=Ending.LOST),
            "8": Status(State.FAILED, "Slurm reports job 8 CANCELLED by uid 0.", ending=Ending.CANCELLED),
        }
    )
    (finish,) = plan([down], obs, [], "slurm", 10, dependencies=True)
    assert finish == Finish(
        "down", f"{NOT_RUN} it runs after up, which failed: {said}\nSlurm reports job 8 CANCELLED by uid 0.", cause=Cause.UPSTREAM
    )


def test_a_lost_link_waits_to_run_again_until_the_job_before_it_has_ended_well_and_says_so() -> None:
    lost = PendingFolder(
        "down", fs.Submitted("slurm", "8", 1.0, "/r/pending/down"), after=(Upstream("up", "pending", "up", rec("7")),)
    )
    obs = Observation(
        {
            "7": Status(State.ACTIVE, phase="running"),
            "8": Status(State.FAILED, "Slurm reports job 8 NODE_FAIL: its node failed.", ending=Ending.LOST),
        }
    )
    (note,) = plan([lost], obs, [], "slurm", 10, retries=1)
    assert note == Note("down", "waits for up (running) before it is submitted again")


def test_a_link_moved_back_by_retry_failed_is_waited_for_again(root: Path, ledger: Path) -> None:
    chain_job(root, "fit", ledger)
    drain(root)  # complete/fit ended well
    chain_job(root, "fit", ledger, tail="exit 3")
    drain(root)  # complete/fit.2 failed
    assert run(root, "--retry-failed").returncode == 0  # inbox/fit.2 again
    (root / "inbox" / "fit.2" / "job.sh").write_text(f"#!/bin/bash\necho fit.2 >> {ledger}\nsleep 1\n")
    chain_job(root, "plot", ledger, "fit")
    drain(root)
    assert read_ledger(ledger)[-2:] == ["fit.2", "plot"]  # plot waited for the re-run, not the old success


def test_later_edits_and_gaps_in_complete_do_not_change_which_folder_a_name_means(root: Path, ledger: Path) -> None:
    chain_job(root, "fit", ledger)
    drain(root)
    chain_job(root, "fit", ledger, tail="exit 3")
    drain(root)  # complete/fit (good, older), complete/fit.2 (failed, newer)
    (root / "complete" / "fit" / "notes.txt").write_text("looked at it\n")  # an edit: a newer ctime
    chain_job(root, "plot", ledger, "fit")
    drain(root)
    assert "it runs after fit (fit.2), which failed" in error_of(root, "plot")
    os.rename(root / "complete" / "fit", root / "fit-aside")  # a gap before fit.2
    chain_job(root, "plot2", ledger, "fit")
    drain(root)
    assert "it runs after fit (fit.2), which failed" in error_of(root, "plot2")


def test_a_link_waits_while_the_job_before_it_may_be_run_again() -> None:
    lost = Observation({"7": Status(State.FAILED, "Slurm reports job 7 NODE_FAIL: its node failed.", ending=Ending.LOST)})
    pending = Upstream("up", "pending", "up", rec("7"))
    (action,) = plan([], lost, [folder(pending)], "slurm", 10, dependencies=True)
    assert action == Wait("down", "waiting for up (ended by the infrastructure; it may run again)")
