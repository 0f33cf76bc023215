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

OLD_HELPERS = {fs.RECORD: '{"engine": "local", "job_id": "1", "submitted": 0}', fs.ERROR: "old failure\n"}


def populate(root: Path, ledger: Path, count: int) -> dict[str, str]:
    """count jobs of four kinds; returns name -> kind."""
    kinds = {}
    for i in range(count):
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
    assert sorted(ran) == sorted(n for n, k in kinds.items() if k != "bad"), "a job ran twice or never"
    assert sorted(os.listdir(root / "complete")) == sorted(kinds), "a folder is missing or completed twice"
    assert os.listdir(root / "inbox") == [] and os.listdir(root / "pending") == []
    for name, kind in kinds.items():
        job = root / "complete" / name
        assert (job / "input.dat").read_text() == name and (job / "job.sh").is_file()
        error = job / fs.ERROR
        assert error.exists() == (kind in ("fail", "bad")), name
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


@pytest.mark.parametrize("step", STEPS)
def test_kill_at_every_step_boundary(root: Path, ledger: Path, step: str) -> None:
    kinds = populate(root, ledger, 8)
    kills = {s: 0 for s in step.split(",")}
    for _ in range(60):
        result = run(root, "--slots", "4", "--batch-limit", "3", env={"RECONCILE_CRASH_AT": step})
        if result.returncode == -9:
            kills[result.stderr.split("crash point ")[1].strip()] += 1
        else:
            assert result.returncode == 0, result.stderr
            if not os.listdir(root / "inbox") and not os.listdir(root / "pending"):
                break
        time.sleep(0.02)
    assert all(kills.values()), f"the crash point was never reached: {kills}"
    drain(root, "--slots", "4")
    verify(root, ledger, kinds)


def test_kill_at_random_instants(root: Path, ledger: Path) -> None:
    runs = int(os.environ.get("RECONCILE_KILL_RUNS", "300"))
    seed = int(os.environ.get("RECONCILE_KILL_SEED", str(time.time_ns() % 10**6)))
    rng = random.Random(seed)
    kinds = populate(root, ledger, 40)
    killed = 0
    for i in range(runs):
        proc = subprocess.Popen([*RECONCILE, "-r", str(root), "--slots", "6", "--batch-limit", "4"], stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.0, 0.12))
        proc.kill()
        killed += proc.wait(timeout=60) == -9
        if i % 10 == 0:  # new work keeps arriving while runs are being killed
            extra = populate_one(root, ledger, i)
            kinds[extra] = "ok"
    drain(root, "--slots", "6")
    verify(root, ledger, kinds)
    print(f"\nrandom kills: seed {seed}, {runs} runs, {killed} killed before they exited, {len(kinds)} jobs, 0 lost, 0 twice")
    assert killed >= runs // 4, f"only {killed} of {runs} runs were killed before they ended: the kills missed"


def populate_one(root: Path, ledger: Path, i: int) -> str:
    name = f"late-{i:03}"
    make_job(root, name, ledger_job(ledger, name), {"input.dat": name})
    return name
