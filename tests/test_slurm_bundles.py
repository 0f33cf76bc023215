"""Bundles (--bundle) on the real Slurm cluster: many folders, few sbatch, each folder its own verdict.

Each job.sh appends `NAME SLURM_JOB_ID` to a ledger outside the root: how often each folder ran, and in
which scheduler job.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from conftest import make_job, read_ledger, run

from jobroot import folders as fs

pytestmark = pytest.mark.usefixtures("cluster")


def job(ledger: Path, name: str, tail: str = "") -> str:
    return f"#!/bin/bash\n#SBATCH --time=2\nprintf '%s %s\\n' {name} \"$SLURM_JOB_ID\" >> {ledger}\n{tail}\n"


def sweep_until(root: Path, done, *args: str, env: dict[str, str] | None = None, limit: float = 240) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + limit
    while not done():
        result = run(root, *args, env=env)
        assert result.returncode == 0, result.stderr
        assert time.monotonic() < deadline, f"gave up: {os.listdir(root / 'pending')} {os.listdir(root / 'inbox')}"
        time.sleep(0.5)


def drained(root: Path) -> bool:
    return not os.listdir(root / "inbox") and not os.listdir(root / "pending")


def counting(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """Slurm's commands behind wrappers that note, for each call, the process that made it (one sweep)."""
    bin_dir, calls = tmp_path / "counting-bin", tmp_path / "calls.txt"
    bin_dir.mkdir()
    for command in ("sbatch", "squeue", "sacct", "scancel"):
        wrapper = bin_dir / command
        wrapper.write_text(f'#!/bin/sh\necho "$PPID {command}" >> {calls}\nexec /usr/bin/{command} "$@"\n')
        wrapper.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}"}, calls


def test_bundles_on_the_real_cluster_give_each_folder_its_own_verdict(slurm_root: Path, ledger: Path, tmp_path: Path) -> None:
    names = [f"j{i}" for i in range(7)]
    for i, name in enumerate(names):
        make_job(slurm_root, name, job(ledger, name, "echo out-" + name + ("\nexit 3" if i % 3 == 2 else "")))
    env, calls = counting(tmp_path)
    sweep_until(slurm_root, lambda: drained(slurm_root), "--bundle", "3", env=env)
    ran = [line.split() for line in read_ledger(ledger)]
    assert sorted(n for n, _ in ran) == names  # each once
    jobs = {n: j for n, j in ran}
    assert len(set(jobs.values())) == 3 and jobs["j0"] == jobs["j1"] == jobs["j2"] and jobs["j3"] == jobs["j4"] == jobs["j5"]
    for i, name in enumerate(names):
        folder = slurm_root / "complete" / name
        output = folder / (fs.OUTPUT if name != "j6" else f"slurm-{jobs[name]}.out")  # j6 alone ran as a plain job
        assert output.read_text() == f"out-{name}\n"
        error = (folder / fs.ERROR).read_text() if (folder / fs.ERROR).exists() else ""
        if i % 3 == 2:
            assert error.startswith(f"The job exited with code 3, as member 3 of 3 of slurm bundle job {jobs[name]}."), error
        else:
            assert not error, error
    per_sweep: dict[tuple[str, str], int] = {}
    for line in calls.read_text().splitlines():
        pid, command = line.split()
        per_sweep[(pid, command)] = per_sweep.get((pid, command), 0) + 1
    assert sum(n for (_, c), n in per_sweep.items() if c == "sbatch") == 3
    assert max(n for (_, c), n in per_sweep.items() if c in ("squeue", "sacct")) == 1  # whatever the members


def test_a_bundle_cancelled_by_hand_ends_the_member_it_ran_and_returns_the_rest(
    slurm_root: Path, ledger: Path, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    make_job(slurm_root, "a", job(ledger, "a"))
    make_job(slurm_root, "b", job(ledger, "b", f"while [ ! -e {go} ]; do sleep 0.2; done"))
    make_job(slurm_root, "c", job(ledger, "c"))
    sweep_until(slurm_root, lambda: (slurm_root / "pending" / "b" / fs.STARTED).exists(), "--bundle", "3")
    (home,) = (slurm_root / fs.BUNDLES).iterdir()
    bundle_job = fs.read_record(home).job_id  # type: ignore[union-attr]
    subprocess.run(["scancel", bundle_job], check=True, timeout=60)
    go.touch()
    sweep_until(slurm_root, lambda: drained(slurm_root), "--bundle", "3")
    ran = [line.split() for line in read_ledger(ledger)]
    assert sorted(n for n, _ in ran) == ["a", "b", "c"]  # c never started in the cancelled bundle: it ran later
    assert dict(ran)["c"] != bundle_job
    b = (slurm_root / "complete" / "b" / fs.ERROR).read_text()
    assert b.startswith(f"The job was running as member 2 of 3 of slurm bundle job {bundle_job} when the bundle ended: ")
    assert "CANCELLED" in b.splitlines()[0]
    assert not (slurm_root / "complete" / "a" / fs.ERROR).exists() and not (slurm_root / "complete" / "c" / fs.ERROR).exists()


def test_a_bundle_over_the_qos_wall_time_is_split_and_never_its_members_failure(slurm_root: Path, ledger: Path) -> None:
    # QOS `short` allows 1 minute (DenyOnLimit): each folder fits, a bundle of three (5.5 min) does not.
    for name in ("a", "b", "c"):
        make_job(slurm_root, name, job(ledger, name).replace("--time=2", "--qos=short\n#SBATCH --time=1"))
    sweep_until(slurm_root, lambda: drained(slurm_root), "--bundle", "3")
    ran = dict(line.split() for line in read_ledger(ledger))
    assert sorted(ran) == ["a", "b", "c"] and len(set(ran.values())) == 3  # each alone, once
    assert not [n for n in ("a", "b", "c") if (slurm_root / "complete" / n / fs.ERROR).exists()]
    log = (slurm_root / fs.LOG).read_text()
    assert "QOSMaxWallDurationPerJobLimit" in log and "its 3 folders wait again, at most 1 to a bundle" in log
