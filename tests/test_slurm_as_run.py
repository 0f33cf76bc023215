"""Slurm as real clusters run it, on the real cluster: the sweep's environment, arrays, held jobs,
drained partitions, QOS limits, #SBATCH --wait, and an adopted job's submit time.

The cluster (tests/slurm/cluster.sh) has a partition `maint` these tests drain and restore, and a QOS
`short` (MaxWall 1 minute, DenyOnLimit) with accounting limits enforced.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from conftest import make_job, run

from jobroot import folders as fs

pytestmark = pytest.mark.usefixtures("cluster")

STEERING = {
    "SLURM_TIME_FORMAT": "relative",
    "SBATCH_PARTITION": "nope",
    "SQUEUE_PARTITION": "nope",
    "SQUEUE_ACCOUNT": "nobody",
    "SQUEUE_NAMES": "nothing-by-this-name",
    "SLURM_MEM_PER_CPU": "1",
}


def sweep_until(root: Path, done, *args: str, env: dict[str, str] | None = None, limit: float = 180) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + limit
    while not done():
        result = run(root, *args, env=env)
        assert result.returncode in (0, 1), result.stderr
        assert time.monotonic() < deadline, f"gave up: pending={os.listdir(root / 'pending')}\n{result.stderr}"
        time.sleep(0.5)


def error_of(root: Path, name: str) -> str:
    return (root / "complete" / name / fs.ERROR).read_text()


def recorded_id(root: Path, name: str) -> str:
    record = fs.read_record(root / "pending" / name)
    assert record is not None
    return record.job_id


def test_the_sweeps_environment_changes_nothing(slurm_root: Path) -> None:
    make_job(slurm_root, "good", "#!/bin/bash\necho mem=${SLURM_MEM_PER_CPU:-unset} > seen\n")
    make_job(slurm_root, "fails", "#!/bin/bash\nexit 3\n")
    sweep_until(slurm_root, lambda: len(os.listdir(slurm_root / "complete")) == 2, env=STEERING)
    assert not (slurm_root / "complete" / "good" / fs.ERROR).exists()
    assert (slurm_root / "complete" / "good" / "seen").read_text() == "mem=unset\n"  # the sweep's SLURM_* did not leak
    assert error_of(slurm_root, "fails").startswith("Slurm reports job")
    assert "FAILED with exit code 3" in error_of(slurm_root, "fails").splitlines()[0]


def test_an_array_whose_pending_remainder_is_cancelled_is_not_done(slurm_root: Path) -> None:
    make_job(slurm_root, "arr", "#!/bin/bash\n#SBATCH --array=0-98:2%1\nsleep 2\n")
    sweep_until(slurm_root, lambda: (slurm_root / "pending" / "arr" / fs.RECORD).exists())
    job_id = recorded_id(slurm_root, "arr")
    deadline = time.monotonic() + 60
    while (
        f"{job_id}_2"
        not in subprocess.run(["squeue", "-h", "--array", "-t", "R", "-o", "%i"], capture_output=True, text=True).stdout
    ):
        assert time.monotonic() < deadline, "task 2 never started"
        time.sleep(0.2)
    subprocess.run(["scancel", "--state=PENDING", job_id], check=True, timeout=60)
    sweep_until(slurm_root, lambda: os.listdir(slurm_root / "complete") == ["arr"])
    first = error_of(slurm_root, "arr").splitlines()[0]
    # slurmdbd keeps the remainder's task list (`123_[2-98:2%1]`) or, at times, drops it (a bare `123`).
    counted = first.startswith(f"Slurm reports 48 of 50 tasks of job {job_id} failed: {job_id}_[")
    assert (counted and "(48 tasks that never started)" in first) or first == (
        f"Slurm reports tasks of job {job_id} failed: {job_id} CANCELLED by uid 0"
        " (the tasks that had not started; Slurm no longer lists them)."
    ), first


def test_a_held_job_cancelled_through_the_cancel_file_is_collected(slurm_root: Path) -> None:
    make_job(slurm_root, "held", "#!/bin/bash\n#SBATCH --hold\ntrue\n")
    sweep_until(slurm_root, lambda: (slurm_root / "pending" / "held" / fs.RECORD).exists())
    (slurm_root / "pending" / "held" / "cancel").touch()
    sweep_until(slurm_root, lambda: os.listdir(slurm_root / "complete") == ["held"], limit=120)
    assert error_of(slurm_root, "held").startswith("The job was cancelled at the user's request")
    assert "CANCELLED" in error_of(slurm_root, "held")


def test_a_drained_partition_keeps_folders_waiting_until_it_is_back(slurm_root: Path) -> None:
    subprocess.run(["scontrol", "update", "PartitionName=maint", "State=DRAIN"], check=True, timeout=60)
    try:
        for name in ("m1", "m2"):
            make_job(slurm_root, name, "#!/bin/bash\n#SBATCH --partition=maint\ntrue\n")
        result = run(slurm_root, "--command-timeout", "2")
        assert result.returncode == 0, result.stderr
        log = (slurm_root / fs.LOG).read_text()
        assert "Required partition not available" in log
        assert "not known to be passing" not in log  # known to pass: never counted toward a final refusal
        assert os.listdir(slurm_root / "complete") == []  # nothing rejected for good
        assert os.listdir(slurm_root / "inbox") == ["m2"]  # the batch stopped at the first refusal
    finally:
        subprocess.run(["scontrol", "update", "PartitionName=maint", "State=UP"], check=True, timeout=60)
    sweep_until(slurm_root, lambda: sorted(os.listdir(slurm_root / "complete")) == ["m1", "m2"], "--command-timeout", "2")
    assert not any((slurm_root / "complete" / n / fs.ERROR).exists() for n in ("m1", "m2"))


def test_a_job_over_the_qos_wall_time_is_refused_for_good_at_once(slurm_root: Path) -> None:
    make_job(slurm_root, "toolong", "#!/bin/bash\n#SBATCH --qos=short\n#SBATCH --time=5\ntrue\n")
    make_job(slurm_root, "zfine", "#!/bin/bash\ntrue\n")
    assert run(slurm_root).returncode == 0
    assert "toolong" in os.listdir(slurm_root / "complete")
    error = error_of(slurm_root, "toolong")
    assert "QOSMaxWallDurationPerJobLimit" in error and "job submit limit" in error
    assert "zfine" in os.listdir(slurm_root / "pending")  # the rest of the batch went on


def test_sbatch_wait_never_turns_a_job_that_ran_into_a_refusal(slurm_root: Path) -> None:
    make_job(slurm_root, "waits", "#!/bin/bash\n#SBATCH --wait\nexit 3\n")
    sweep_until(slurm_root, lambda: os.listdir(slurm_root / "complete") == ["waits"])
    first = error_of(slurm_root, "waits").splitlines()[0]
    assert first.startswith("Slurm reports job") and "FAILED with exit code 3" in first, first


def test_an_adopted_job_is_recorded_with_slurms_submit_time(slurm_root: Path) -> None:
    make_job(slurm_root, "late", "#!/bin/bash\ntrue\n")
    assert run(slurm_root, env={"RECONCILE_CRASH_AT": "launched"}).returncode == -9  # sbatch ran; no id recorded
    claimed = json.loads((slurm_root / "pending" / "late" / fs.CLAIM).read_text())["claimed"]
    time.sleep(3)  # the adoption comes later: its own clock must not be what is recorded
    assert run(slurm_root).returncode == 0
    record = fs.read_record(slurm_root / "pending" / "late")
    assert record is not None, "not adopted"
    assert claimed - 1 <= record.submitted <= claimed + 1.5, (claimed, record.submitted)  # Slurm's submit time
