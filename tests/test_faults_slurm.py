"""Nothing lost, nothing twice, on the real Slurm cluster: scheduler faults and random kills.

A shim in front of sbatch/squeue/sacct/scancel (tests/faults/slurm_shim.py) fails 30% of calls in
the ways real clusters do; the reconciler is killed with SIGKILL at random instants; and both at once.
Afterwards, with the real commands: every folder is in complete/ exactly once, Slurm accounting
holds exactly one job per folder, every job script ran at most once (exactly once where it did not
fail), and job_error.txt says what happened.
"""

from __future__ import annotations

import os
import random
import subprocess
import time
from pathlib import Path

import pytest
from conftest import RECONCILE, REPO, make_job, read_ledger, run, run_maybe_killed, shim_env

from jobroot import folders as fs

pytestmark = pytest.mark.usefixtures("cluster")
SHIM = REPO / "tests" / "faults" / "slurm_shim.py"
COMMANDS = ("sbatch", "squeue", "sacct", "scancel")


def populate(root: Path, ledger: Path, count: int, prefix: str = "job", slow: int = 0) -> dict[str, str]:
    """Jobs that end well, or exit 3 (every third); with slow, every fourth runs that many seconds first."""
    kinds = {}
    for i in range(count):
        kind = "fail" if i % 3 == 2 else "ok"
        name = f"{prefix}-{i:03}"
        tail = (f"sleep {slow}\n" if slow and i % 4 == 0 else "") + ("exit 3" if kind == "fail" else "")
        make_job(root, name, f"#!/bin/bash\nprintf '%s\\n' {name} >> {ledger}\n{tail}\n", {"input.dat": name})
        kinds[name] = kind
    return kinds


def drain(root: Path, *args: str, limit: float = 300) -> None:
    deadline = time.monotonic() + limit
    while os.listdir(root / "inbox") or os.listdir(root / "pending"):
        result = run(root, *args)
        assert result.returncode in (0, 1), result.stderr
        assert time.monotonic() < deadline, f"not drained: {os.listdir(root / 'pending')} {result.stderr}"
        time.sleep(0.5)


def jobs_per_folder(root: Path) -> dict[str, int]:
    """How many Slurm jobs accounting holds for each folder of this root (by working directory)."""
    out = subprocess.run(
        ["sacct", "-X", "-n", "--parsable2", "--delimiter=\x1f", "--starttime=now-2hours", "--format=JobID,WorkDir"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    prefix = f"{root / 'pending'}/"
    counts: dict[str, int] = {}
    for line in out.splitlines():
        job_id, _, workdir = line.partition("\x1f")
        if workdir.startswith(prefix) and "_" not in job_id:
            name = workdir[len(prefix) :]
            counts[name] = counts.get(name, 0) + 1
    return counts


def verify(root: Path, ledger: Path, kinds: dict[str, str], bundled: bool = False) -> dict[str, int]:
    """The central promise, checked; returns the tallies for the report. bundled: bundles ran some folders,
    so accounting cannot say which (their working directory is the bundle's): the ledger alone shows it."""
    assert os.listdir(root / "inbox") == [] and os.listdir(root / "pending") == []
    assert sorted(os.listdir(root / "complete")) == sorted(kinds), "a folder was lost or completed twice"
    for _ in range(0 if bundled else 60):  # accounting lags the queue by a second or two
        per_folder = jobs_per_folder(root)
        if set(per_folder) == set(kinds):
            break
        time.sleep(1)
    # Exactly one Slurm job per folder: a folder missing from accounting fails this as much as a duplicate.
    if not bundled:
        assert per_folder == dict.fromkeys(kinds, 1), {n: per_folder.get(n, 0) for n in kinds if per_folder.get(n) != 1}
    ran = read_ledger(ledger)
    assert len(ran) == len(set(ran)), "a job script ran twice"
    vanished = 0
    for name, kind in kinds.items():
        job = root / "complete" / name
        assert (job / "input.dat").read_text() == name
        error = (job / fs.ERROR).read_text() if (job / fs.ERROR).exists() else None
        if error is not None and "CANCELLED" in error.splitlines()[0]:
            vanished += 1  # the shim cancelled it behind sbatch's back: reported, not lost
            continue
        if kind == "ok":
            assert error is None, f"{name}: {error}"
            assert name in ran, f"{name} is called done but never ran"
        else:
            first = error.splitlines()[0] if error else ""
            assert "FAILED with exit code 3" in first or first.startswith("The job exited with code 3, as member "), error
    return {"jobs": len(kinds), "vanished": vanished, "ran": len(ran), "duplicates": 0}


def test_scheduler_faults_at_30_percent_over_200_runs(slurm_root: Path, ledger: Path, tmp_path: Path) -> None:
    runs = int(os.environ.get("RECONCILE_FAULT_RUNS", "200"))
    env = shim_env(tmp_path, SHIM, COMMANDS)
    kinds = populate(slurm_root, ledger, 24)
    for i in range(runs):
        result = run(slurm_root, "--command-timeout", "2", env=env)
        assert result.returncode in (0, 1), result.stderr
        assert "Traceback" not in result.stderr
        if i % 50 == 25:
            kinds.update(populate(slurm_root, ledger, 6, prefix=f"late{i}"))
    drain(slurm_root)
    tally = verify(slurm_root, ledger, kinds)
    faults = (tmp_path / "faults.log").read_text().splitlines()
    seen = {line for line in faults}
    # Each job the shim cancelled behind sbatch's back is reported cancelled: one for one.
    assert tally["vanished"] == faults.count("sbatch vanish")
    for expected in (
        "sbatch fail-after-create",
        "sbatch vanish",
        "sbatch garble",
        "squeue hang",
        "squeue truncate",
        "sacct error",
    ):
        assert expected in seen, f"the fault {expected!r} was never injected; raise RECONCILE_FAULT_RUNS"
    print(f"\nscheduler faults: {runs} runs, {len(faults)} faults injected ({len(seen)} kinds), {tally}")


def test_kill_at_random_instants_on_the_real_cluster(slurm_root: Path, ledger: Path) -> None:
    runs = int(os.environ.get("RECONCILE_KILL_RUNS", "300"))
    rng = random.Random(int(os.environ.get("RECONCILE_KILL_SEED", str(time.time_ns() % 10**6))))
    kinds = populate(slurm_root, ledger, 30)
    killed = 0
    for i in range(runs):
        proc = subprocess.Popen([*RECONCILE, "-r", str(slurm_root), "--batch-limit", "3"], stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.0, 0.15))
        proc.kill()
        killed += proc.wait(timeout=60) == -9
        if i % 60 == 30:
            kinds.update(populate(slurm_root, ledger, 3, prefix=f"late{i}"))
    drain(slurm_root)
    tally = verify(slurm_root, ledger, kinds)
    assert tally["vanished"] == 0
    print(f"\nrandom kills on Slurm: {runs} runs, {killed} killed before they exited, {tally}")
    assert killed >= runs // 4, f"only {killed} of {runs} runs were killed before they ended"


@pytest.mark.parametrize("bundle", ["1", "3"])
def test_kills_and_scheduler_faults_at_once_on_the_real_cluster(
    slurm_root: Path, ledger: Path, tmp_path: Path, bundle: str
) -> None:
    # Faults alone never leave a claim without a record, kills alone never meet a failed query: together
    # they reach a claim whose job only a query that just failed could show. Slow jobs keep such a job
    # queued or running past the claim's grace period.
    runs = int(os.environ.get("RECONCILE_COMBINED_RUNS", "150"))
    seed = int(os.environ.get("RECONCILE_KILL_SEED", str(time.time_ns() % 10**6)))
    rng, env = random.Random(seed), shim_env(tmp_path, SHIM, COMMANDS)
    kinds = populate(slurm_root, ledger, 24, slow=45)
    killed = 0
    for i in range(runs):
        killed += run_maybe_killed(slurm_root, rng, "--batch-limit", "3", "--command-timeout", "2", "--bundle", bundle, env=env)
        if i % 50 == 25:
            kinds.update(populate(slurm_root, ledger, 6, prefix=f"late{i}"))
    drain(slurm_root, "--bundle", bundle)
    tally = verify(slurm_root, ledger, kinds, bundled=bundle != "1")
    faults = (tmp_path / "faults.log").read_text().splitlines()
    print(
        f"\nkills and faults on Slurm, --bundle {bundle} (seed {seed}): {runs} runs, {killed} killed, "
        f"{len(faults)} faults, {tally}"
    )
    assert killed >= runs // 3 and len(faults) >= runs // 4, (killed, len(faults))
