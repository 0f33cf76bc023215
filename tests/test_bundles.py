"""Bundles (--bundle) through the real command line and the real runner, on the local engine.

Every job.sh appends its name to a ledger outside the root, so the ledger shows how often each ran.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Sequence

import pytest
from conftest import RECONCILE, drain, ledger_job, make_job, read_ledger, run

from jobroot import bundle
from jobroot import folders as fs
from jobroot.act import StopFlag, Sweep
from jobroot.actions import Bundle, Submit, Unbundle
from jobroot.engine import Bundling, Observation, State, Status, SubmitRefused
from jobroot.folders import Submitted
from jobroot.log import Log
from jobroot.observe import Stages, scan_inbox, scan_pending
from jobroot.plan import plan
from jobroot.sweep import _with_facts

pytestmark = pytest.mark.local


def sweep_until(root: Path, done, *args: str, limit: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + limit
    while not done():
        result = run(root, *args)
        assert result.returncode == 0, result.stderr
        assert time.monotonic() < deadline, f"gave up: {os.listdir(root / 'pending')} {os.listdir(root / 'inbox')}"
        time.sleep(0.1)


def error(root: Path, name: str) -> str:
    path = root / "complete" / name / fs.ERROR
    return path.read_text() if path.exists() else ""


def gated(ledger: Path, name: str, go: Path, tail: str = "") -> str:
    return ledger_job(ledger, name, f"while [ ! -e {go} ]; do sleep 0.05; done\n{tail}")


def test_bundled_folders_each_run_in_their_own_folder_with_their_own_verdict(root: Path, ledger: Path) -> None:
    for i in range(7):
        make_job(root, f"j{i}", ledger_job(ledger, f"j{i}", f"echo out-{i}; pwd\n" + ("exit 3" if i % 3 == 2 else "")))
    drain(root, "--bundle", "3", "--slots", "1")
    assert sorted(read_ledger(ledger)) == [f"j{i}" for i in range(7)]  # each ran, once
    log = (root / fs.LOG).read_text()
    assert log.count("folders run by local job") == 2 and log.count(": submitted as local job") == 1  # 3 jobs for 7
    for i in range(7):
        job = root / "complete" / f"j{i}"
        assert (job / fs.OUTPUT).read_text() == f"out-{i}\n{job.parent.parent / 'pending' / job.name}\n"
        first = error(root, f"j{i}").splitlines()[0] if i % 3 == 2 else ""
        if i % 3 == 2:
            assert first.startswith("The job exited with code 3, as member 3 of 3 of local bundle job "), first
        else:
            assert not (job / fs.ERROR).exists()
    assert os.listdir(root / fs.BUNDLES) == []  # ended bundles are removed once every member has its verdict


def test_a_member_has_its_verdict_while_the_rest_of_its_bundle_runs(root: Path, ledger: Path, tmp_path: Path) -> None:
    go = tmp_path / "go"
    make_job(root, "a", ledger_job(ledger, "a"))
    make_job(root, "b", gated(ledger, "b", go))
    sweep_until(root, lambda: (root / "complete" / "a").exists(), "--bundle", "2")
    assert os.listdir(root / "pending") == ["b"] and not (root / "complete" / "a" / fs.ERROR).exists()
    status = json.loads((root / fs.STATUS_JSON).read_text())["jobs"]
    b = next(j for j in status if j["name"] == "b")
    assert b["state"] == "running" and b["reason"].startswith("member 2 of 2 of bundle job ")
    go.touch()
    drain(root, "--bundle", "2")
    assert sorted(read_ledger(ledger)) == ["a", "b"]


def test_a_cancel_before_a_member_starts_and_one_while_it_runs(root: Path, ledger: Path, tmp_path: Path) -> None:
    go = tmp_path / "go"
    for name in ("a", "b", "c"):
        make_job(root, name, gated(ledger, name, go))
    sweep_until(root, lambda: (root / "pending" / "a" / fs.STARTED).exists(), "--bundle", "3")
    (root / "pending" / "c" / fs.CANCEL).touch()  # not started: it never starts
    sweep_until(root, lambda: (root / "complete" / "c").exists(), "--bundle", "3")
    assert error(root, "c").splitlines() == [
        "The job was cancelled at the user's request (a file named cancel is in its folder).",
        "Its bundle had not started it.",
    ]
    (root / "pending" / "a" / fs.CANCEL).touch()  # running: only it is ended
    sweep_until(root, lambda: (root / "complete" / "a").exists(), "--bundle", "3")
    assert "was cancelled at the user's request" in error(root, "a").splitlines()[0]
    go.touch()
    drain(root, "--bundle", "3")
    assert sorted(read_ledger(ledger)) == ["a", "b"] and not error(root, "b")


def test_a_bundle_ended_under_a_member_costs_that_member_an_attempt_and_the_rest_nothing(
    root: Path, ledger: Path, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    make_job(root, "a", ledger_job(ledger, "a"))
    make_job(root, "b", gated(ledger, "b", go))
    make_job(root, "c", ledger_job(ledger, "c"))
    sweep_until(root, lambda: (root / "pending" / "b" / fs.STARTED).exists(), "--bundle", "3", "--retries", "1")
    (home,) = (root / fs.BUNDLES).iterdir()
    os.killpg(int(fs.read_record(home).job_id), signal.SIGKILL)  # its node, as it were, went down
    go.touch()
    drain(root, "--bundle", "3", "--retries", "1")
    assert sorted(read_ledger(ledger)) == ["a", "b", "b", "c"]  # b again, as its second attempt; c once, later
    attempts = fs.read_attempts(root / "complete" / "b")
    assert len(attempts) == 1 and attempts[0].reason.startswith("The job was running as member 2 of 3 of local bundle job")
    assert not fs.read_attempts(root / "complete" / "c") and not error(root, "c") and not error(root, "b")
    assert "ended before it started it; it runs in a later one -> inbox/c" in (root / fs.LOG).read_text()


def runner(tmp_path: Path, ledger: Path, names: list[str], limit: int | None = None, tail: str = "") -> Path:
    home = tmp_path / "bundles" / "bundle-1"
    home.mkdir(parents=True)
    paths = []
    for place, name in enumerate(names, 1):
        path = tmp_path / "pending" / name
        path.mkdir(parents=True)
        (path / fs.SCRIPT).write_text(ledger_job(ledger, name, tail))
        bundle.write_member(path, bundle.Member("bundle-1", place, len(names)))
        paths.append(path)
    (home / fs.SCRIPT).write_text(bundle.runner("#SBATCH --time=1", "bundle-1", paths, limit))
    return home


def test_a_requeued_or_restarted_runner_never_starts_a_member_twice(tmp_path: Path, ledger: Path) -> None:
    home = runner(tmp_path, ledger, ["a", "b", "c"])
    bundle.write_member(tmp_path / "pending" / "c", bundle.Member("bundle-2", 1, 1))  # since given to another bundle
    for _ in range(2):  # the scheduler runs the same script again
        subprocess.run(["bash", fs.SCRIPT], cwd=home, check=True, timeout=30)
    assert read_ledger(ledger) == ["a", "b"]
    for name in ("a", "b"):
        assert json.loads((tmp_path / "pending" / name / fs.EXIT_RECORD).read_text())["status"] == 0


def test_each_member_is_held_to_its_own_time_limit(tmp_path: Path, ledger: Path) -> None:
    home = runner(tmp_path, ledger, ["slow", "next"], limit=1, tail="sleep 20")
    started = time.monotonic()
    subprocess.run(["bash", fs.SCRIPT], cwd=home, check=True, timeout=60)
    assert time.monotonic() - started < 10  # each was ended at its own second, not at the bundle's end
    for name in ("slow", "next"):
        ended = bundle.look(os.fspath(tmp_path / "pending" / name))
        assert ended is not None and ended.ended == bundle.Ended(124, "timeout")


class SizeLimitedEngine:
    """Refuses for good any bundle of more than two members, as a site's MaxWall would; takes the rest."""

    name = "local"
    dependencies = False

    def __init__(self) -> None:
        self.submitted: list[int] = []

    def bundling(self, script: Path) -> Bundling:
        return Bundling("")

    def bundle_header(self, script: Path, members: int) -> str:
        return f"#MEMBERS {members}"

    def submit(self, job_dir: Path, after: Sequence[str] = ()) -> str:
        members = int((job_dir / fs.SCRIPT).read_text().splitlines()[1].split()[1]) if job_dir.parent.name == fs.BUNDLES else 1
        self.submitted.append(members)
        if members > 2:
            raise SubmitRefused("sbatch: error: QOSMaxWallDurationPerJobLimit", True)
        return str(len(self.submitted))

    def observe(self, jobs: Sequence[Submitted], claimed: Sequence[Path], quick: bool = False) -> Observation:
        return Observation()

    def cancel(self, jobs: Sequence[Submitted], why: str = "") -> None:
        pass


def test_a_bundle_refused_for_good_is_split_never_its_members_failure(root: Path) -> None:
    names = ("a", "b", "c", "d", "e")
    for name in names:
        make_job(root, name, "true\n")
    engine = SizeLimitedEngine()
    Sweep(root, engine, Log(root, False, "info"), StopFlag()).apply([Bundle(names)])
    assert engine.submitted == [5] and os.listdir(root / "complete") == [] and os.listdir(root / fs.BUNDLES) == []
    assert sorted(os.listdir(root / "inbox")) == list(names)
    assert {(root / "inbox" / n / fs.MOST).read_text() for n in names} == {"2\n"}
    waiting = list(scan_inbox(root, fs.names(root / "inbox"), 0, time.time(), bundling=engine.bundling))
    actions = plan([], Observation(), waiting, "local", 10, time.time(), bundle=5)
    assert actions == [Bundle(("a", "b")), Bundle(("c", "d")), Submit("e")]
    Sweep(root, engine, Log(root, False, "info"), StopFlag()).apply(actions)
    assert engine.submitted == [5, 2, 2, 1] and sorted(os.listdir(root / "pending")) == list(names)


def test_a_relative_root_and_undecodable_names_are_bundled_and_run_once(root: Path, ledger: Path, tmp_path: Path) -> None:
    odd = os.fsdecode(b"b\xff")
    for name in ("a", odd, "c d"):
        make_job(root, name, ledger_job(ledger, "x"))
    relative = os.path.relpath(root, tmp_path)
    for _ in range(100):
        result = subprocess.run([*RECONCILE, "-r", relative, "--bundle", "3"], cwd=tmp_path, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        if not os.listdir(root / "inbox") and not os.listdir(root / "pending"):
            break
        time.sleep(0.1)
    assert sorted(os.listdir(root / "complete")) == sorted(["a", odd, "c d"]) and read_ledger(ledger) == ["x"] * 3
    assert (root / fs.LOG).read_text(errors="replace").count("folders run by local job") == 1


def test_the_sweep_that_bundles_shows_the_members_and_a_stale_look_is_taken_again(root: Path, tmp_path: Path) -> None:
    go = tmp_path / "go"
    for name in ("a", "b"):
        make_job(root, name, f"while [ ! -e {go} ]; do sleep 0.05; done\n")
    assert run(root, "--bundle", "2").returncode == 0
    shown = {j["name"]: j for j in json.loads((root / fs.STATUS_JSON).read_text())["jobs"]}
    assert {n: shown[n]["state"] for n in ("a", "b")} == {"a": "queued", "b": "queued"}
    assert shown["b"]["reason"].startswith("member 2 of 2 of bundle job ")
    stale = scan_pending(root)  # as a sweep saw them before the bundle ended
    go.touch()
    (home,) = (root / fs.BUNDLES).iterdir()
    record = fs.read_record(home)
    assert record is not None
    deadline = time.monotonic() + 30
    while not (root / "pending" / "b" / fs.EXIT_RECORD).exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    obs = Observation({record.job_id: Status(State.DONE)})
    fresh = [_with_facts(root, p, obs, Stages(root, frozenset(), {}), False, 0, frozenset({home.name})) for p in stale]
    assert [p.member.ended for p in fresh if p.member] == [bundle.Ended(0, ""), bundle.Ended(0, "")]


def test_a_member_its_runner_started_after_the_sweep_looked_is_never_moved_back(root: Path, tmp_path: Path) -> None:
    make_job(root, "m", "true\n", stage="pending")
    path = root / "pending" / "m"
    bundle.write_member(path, bundle.Member("bundle-1", 1, 1))
    (path / fs.STARTED).write_text("job 7 on node1 at 0\n")  # the runner took it a moment ago
    Sweep(root, SizeLimitedEngine(), Log(root, False, "info"), StopFlag()).apply([Unbundle("m", "never started")])
    assert os.listdir(root / "pending") == ["m"] and (path / fs.MEMBER).exists() and os.listdir(root / "inbox") == []
