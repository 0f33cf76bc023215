"""Kill -9 of the reconciler at every step boundary and at random instants: nothing lost, nothing twice.

Every job's script appends its tag to a ledger outside the root. After the kills, plain runs finish
the work; then every job ran exactly once, every folder is in complete/ exactly once with all its
files, and job_error.txt exists exactly for the failed ones.
"""

from __future__ import annotations

import os
import random
import subprocess
import time
from pathlib import Path

import pytest
from conftest import RECONCILE, drain, ledger_job, make_job, read_ledger, run

from jobroot import folders as fs

pytestmark = pytest.mark.ordeal

OLD_HELPERS = {fs.RECORD: '{"engine": "local", "job_id": "1", "submitted": 0}', fs.ERROR: "old failure\n"}


def populate(root: Path, ledger: Path, count: int, start: int = 0) -> dict[str, str]:
    """count jobs of four kinds; returns name -> kind."""
    kinds = {}
    for i in range(start, start + count):
        kind = ("ok", "fail", "again", "bad")[i % 4]
        name = f"{kind}-{i:03}"
        if kind == "bad":
            make_job(root, name, "", {"input.dat": name})
        else:
            make_job(root, name, ledger_job(ledger, name, "exit 3" if kind == "fail" else ""), {"input.dat": name})
        if kind == "again":  # moved back from complete/ with an earlier run's helper files
            for helper, text in OLD_HELPERS.items():
                (root / "inbox" / name / helper).write_text(text)
        kinds[name] = kind
    return kinds


def verify(root: Path, ledger: Path, kinds: dict[str, str]) -> None:
    ran = read_ledger(ledger)
    cancelled = {n for n, k in kinds.items() if k == "cancel"}
    assert sorted(n for n in ran if n not in cancelled) == sorted(n for n, k in kinds.items() if k not in ("bad", "cancel")), (
        "a job ran twice or never"
    )
    assert all(ran.count(n) <= 1 for n in cancelled), "a cancelled job ran twice"
    assert sorted(os.listdir(root / "complete")) == sorted(kinds), "a folder is missing or completed twice"
    assert os.listdir(root / "inbox") == [] and os.listdir(root / "pending") == []
    for name, kind in kinds.items():
        job = root / "complete" / name
        assert (job / "job.sh").is_file() and (kind == "cancel" or (job / "input.dat").read_text() == name)
        error = job / fs.ERROR
        assert error.exists() == (kind in ("fail", "bad", "cancel")), name
        if kind == "cancel":
            assert error.read_text().startswith("The job was cancelled at the user's request"), name
        if kind == "fail":
            assert error.read_text().startswith("The job exited with code 3")
        if kind == "bad":
            assert error.read_text() == "Not submitted: job.sh is empty.\n"
        if kind == "again":
            history = {p.name: p.read_text() for p in (job / fs.HISTORY).rglob("*") if p.is_file()}
            assert {k: history.get(k) for k in OLD_HELPERS} == OLD_HELPERS, "an earlier run's files were lost"
        assert not [n for n in os.listdir(job) if n.endswith(".tmp")], "a temp file was left"


STEPS = [
    "set-aside",
    "claimed",
    "engine-locked",
    "launched",
    "launched,adopted",
    "recorded",
    "error-written",
    "completed",
    "rejection-written",
]


def kill_at(root: Path, step: str, *args: str) -> None:
    """Runs struck at the crash point step (each of its points, if several) until the root drains; each point
    must have been reached."""
    kills = {s.rpartition("/")[2].partition("@")[0]: 0 for s in step.split(",")}
    for _ in range(60):
        result = run(root, *args, env={"RECONCILE_CRASH_AT": step})
        if result.returncode == -9:
            point = result.stderr.split("crash point ")[1].strip()
            kills[point] = kills.get(point, 0) + 1
        else:
            assert result.returncode == 0, result.stderr
            if not os.listdir(root / "inbox") and not os.listdir(root / "pending"):
                break
        time.sleep(0.02)
    assert all(kills.values()), f"the crash point was never reached: {kills}"


@pytest.mark.parametrize("step", STEPS)
def test_kill_at_every_step_boundary(root: Path, ledger: Path, step: str) -> None:
    kinds = populate(root, ledger, 8)
    kill_at(root, step, "--slots", "4", "--batch-limit", "3")
    drain(root, "--slots", "4")
    verify(root, ledger, kinds)


BUNDLE_STEPS = [
    "bundle-made",
    "member-noted",
    "member-noted@2",
    "runner-written",
    "bundle/engine-call",
    "bundle/launched",
    "bundle/recorded",
    "finish/error-written",
    "finish/completed",
]


@pytest.mark.parametrize("step", BUNDLE_STEPS)
def test_kill_at_every_step_of_a_bundle(root: Path, ledger: Path, step: str) -> None:
    kinds = populate(root, ledger, 8)
    kill_at(root, step, "--slots", "2", "--bundle", "3")
    drain(root, "--slots", "2", "--bundle", "3")
    verify(root, ledger, kinds)
    assert run(root, "--bundle", "3").returncode == 0  # the sweep after the last verdicts removes what is left
    assert os.listdir(root / fs.BUNDLES) == []


@pytest.mark.parametrize("bundle", ["1", "4"])
def test_kill_at_random_instants(root: Path, ledger: Path, bundle: str) -> None:
    runs = int(os.environ.get("RECONCILE_KILL_RUNS", "300"))
    seed = int(os.environ.get("RECONCILE_KILL_SEED", str(time.time_ns() % 10**6)))
    print(f"random kills: seed {seed} (replay with RECONCILE_KILL_SEED={seed})")  # first: a failure can be replayed
    rng = random.Random(seed)
    kinds = populate(root, ledger, 40)
    killed = 0
    for i in range(runs):
        args = ["--slots", "6", "--batch-limit", "4", "--bundle", bundle]
        proc = subprocess.Popen([*RECONCILE, "-r", str(root), *args], stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.0, 0.12))
        proc.kill()
        killed += proc.wait(timeout=60) == -9
        if i % 10 == 0:  # new work keeps arriving while runs are being killed
            extra = populate_one(root, ledger, i)
            kinds[extra] = "ok"
    drain(root, "--slots", "6", "--bundle", bundle)
    verify(root, ledger, kinds)
    print(f"random kills (--bundle {bundle}): {runs} runs, {killed} killed before they ended, {len(kinds)} jobs, 0 lost, 0 twice")
    assert killed >= runs // 4, f"only {killed} of {runs} runs were killed before they ended: the kills missed"


def populate_one(root: Path, ledger: Path, i: int) -> str:
    name = f"late-{i:03}"
    make_job(root, name, ledger_job(ledger, name), {"input.dat": name})
    return name


# Crash points inside the primitives (folders.py) and around each engine call (sweep.py, local.py), by
# the action they strike in: they follow the protocol wherever the code that calls them moves.
WRITE = ["write-synced", "write-done"]
RENAME = ["rename-next", "rename-done"]
POINTS = {
    "submit": ["set-aside", *RENAME, "claimed", "engine-call", "engine-locked", "launched", *WRITE, "recorded"],
    "launch": ["engine-call", "engine-locked", "launched", *WRITE, "recorded"],
    "adopt": [*WRITE, "adopted"],
    "finish": [*WRITE, "error-written", *RENAME, "completed"],
    "reject": [*WRITE, "rejection-written", *RENAME],
    "cancel": ["engine-call", "cancel-sent"],
    "set-aside": RENAME,
}
ACTIONS = tuple(POINTS)
# A launch needs a claim whose job never started, an adoption a job whose id was never recorded: a run
# aimed at either also dies where it would leave that state (if it meets no launch or adoption first),
# with a job in the inbox to do it with, and the run after it is aimed at the action it prepared.
PREPARE = {"launch": "submit/claimed@1", "adopt": "submit/launched@1"}
LONG = "#!/bin/bash\nprintf '%s\\n' {tag!r} >> {ledger!r}\nsleep 60\n"  # runs until a cancel file ends it


def test_kills_aimed_at_protocol_points_land_inside_every_action(root: Path, ledger: Path) -> None:
    """Each run dies at a random passage of a random crash point of a random action; each action must take kills."""
    seed = int(os.environ.get("RECONCILE_KILL_SEED", str(time.time_ns() % 10**6)))
    print(f"aimed kills: seed {seed} (replay with RECONCILE_KILL_SEED={seed})")
    rng = random.Random(seed)
    need = int(os.environ.get("RECONCILE_KILL_MIN", "3"))  # kills required inside each action type
    kinds = populate(root, ledger, 16)
    inside = dict.fromkeys(ACTIONS, 0)
    runs = outside = 0
    follow = ""  # the action the last run prepared a state for
    for runs in range(1, 1501):
        if runs % 25 == 1:  # new work keeps arriving: jobs to submit, to set aside, to reject, to cancel
            kinds.update(populate(root, ledger, 4, start=1000 + runs))
            name = f"cancel-{runs:04}"
            make_job(root, name, LONG.format(tag=name, ledger=str(ledger)))
            kinds[name] = "cancel"
        asked = False
        for name in os.listdir(root / "pending"):  # the user cancels the long jobs once they are pending
            if name.startswith("cancel-") and not (root / "pending" / name / "cancel").exists():
                (root / "pending" / name / "cancel").touch()
                asked = True
        # Aim where the kills are fewest half of the time, so that rare actions are not left to chance.
        fewest = min(ACTIONS, key=inside.__getitem__)
        action = follow or ("cancel" if asked else fewest if rng.random() < 0.5 else rng.choice(ACTIONS))
        point = f"{action}/{rng.choice(POINTS[action])}@{rng.randint(1, 3)}"
        if action in PREPARE:
            point += "," + PREPARE[action]
            make_job(root, f"prep-{runs:04}", ledger_job(ledger, f"prep-{runs:04}"), {"input.dat": f"prep-{runs:04}"})
            kinds[f"prep-{runs:04}"] = "ok"  # not ok-NNNN: populate() makes those names
        result = run(root, "--slots", "8", "--batch-limit", "3", env={"RECONCILE_CRASH_AT": point})
        follow = ""
        if result.returncode == -9:
            said = result.stderr.splitlines()[-1]  # "in finish: crash point rename-done"; no "in" between actions
            if said.startswith("in "):
                inside[said[3:].split(":", 1)[0]] += 1
            else:
                outside += 1
            follow = next(
                (a for a, p in PREPARE.items() if said == "in {}: crash point {}".format(*p.split("@")[0].split("/"))), ""
            )
        else:
            assert result.returncode == 0, result.stderr
        if min(inside.values()) >= need and runs >= 100:
            break
    print(f"aimed kills: {runs} runs; inside each action: {inside}; between actions: {outside}")
    assert min(inside.values()) >= need, f"some action types took fewer than {need} kills: {inside}"
    while any(n.startswith("cancel-") for n in os.listdir(root / "inbox")):  # the last long jobs: submit, then cancel
        assert run(root, "--slots", "8").returncode == 0
    for name in os.listdir(root / "pending"):
        if name.startswith("cancel-"):
            (root / "pending" / name / "cancel").touch()
    drain(root, "--slots", "8")
    verify(root, ledger, kinds)


LOSE_ONCE = "[ -e first-attempt ] || {{ touch first-attempt; kill -9 $PPID; sleep 0.3; exit 0; }}"  # kills its wrapper


def test_kill_at_random_instants_with_chains_and_retries(root: Path, ledger: Path) -> None:
    """Stages (a -> b -> c) and jobs the infrastructure ends once (--retries 1), under random kills: each
    link runs once and after the one before it; each lost job runs exactly twice, once per attempt."""
    runs = int(os.environ.get("RECONCILE_KILL_RUNS", "300")) // 2
    seed = int(os.environ.get("RECONCILE_KILL_SEED", str(time.time_ns() % 10**6)))
    print(f"random kills with chains and retries: seed {seed} (replay with RECONCILE_KILL_SEED={seed})")
    rng = random.Random(seed)
    chains = [[f"chain{i}-{link}" for link in "abc"] for i in range(6)]
    for chain in chains:
        for up, name in zip([None, *chain], chain):
            make_job(root, name, ledger_job(ledger, name), {"after": up} if up else {})
    lost = [f"lost-{i}" for i in range(6)]
    for name in lost:
        make_job(root, name, ledger_job(ledger, name, LOSE_ONCE.format()))
    args = ("--slots", "6", "--batch-limit", "4", "--retries", "1")
    killed = 0
    for _ in range(runs):
        proc = subprocess.Popen([*RECONCILE, "-r", str(root), *args], stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.0, 0.12))
        proc.kill()
        killed += proc.wait(timeout=60) == -9
    drain(root, *args, limit=180)
    ran = read_ledger(ledger)
    for chain in chains:
        assert [n for n in ran if n in chain] == chain, f"a link ran twice, never, or out of order: {ran}"
    for name in lost:
        assert ran.count(name) == 2, f"{name} ran {ran.count(name)} times, not once per attempt"
        assert len(fs.read_attempts(root / "complete" / name)) == 1
    assert sorted(os.listdir(root / "complete")) == sorted([*sum(chains, []), *lost])
    assert not any((root / "complete" / n / fs.ERROR).exists() for n in os.listdir(root / "complete"))
    print(f"random kills with chains and retries: {runs} runs, {killed} killed, {len(chains)} chains of 3, {len(lost)} lost once")
    assert killed >= runs // 4
