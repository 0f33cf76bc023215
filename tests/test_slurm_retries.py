"""--retries on the real Slurm cluster: a job whose node failed (NODE_FAIL) is submitted again."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
from conftest import make_job, read_ledger, run

from jobroot import folders as fs

pytestmark = pytest.mark.usefixtures("cluster")


def node() -> str:
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N"], capture_output=True, text=True, timeout=60).stdout.split()
    return out[0] if out else socket.gethostname().split(".")[0]


def test_a_job_whose_node_failed_is_run_again_and_its_attempts_kept(slurm_root: Path, ledger: Path) -> None:
    # First attempt: waits for the node to be taken down under it (no requeue by Slurm). Second: ends well.
    script = (
        f"#!/bin/bash\n#SBATCH --no-requeue\necho $SLURM_JOB_ID >> {ledger}\nif [ ! -e first ]; then touch first; sleep 300; fi\n"
    )
    make_job(slurm_root, "fragile", script)
    deadline = time.monotonic() + 60
    while len(read_ledger(ledger)) < 1:
        assert run(slurm_root, "--retries", "1").returncode == 0
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.5)
    name = node()
    subprocess.run(["scontrol", "update", f"nodename={name}", "state=down", "reason=retry-test"], check=True, timeout=60)
    try:
        deadline = time.monotonic() + 60
        while not fs.read_attempts(slurm_root / "pending" / "fragile"):
            assert run(slurm_root, "--retries", "1").returncode in (0, 1)
            assert time.monotonic() < deadline, (slurm_root / fs.LOG).read_text()
            time.sleep(1)
    finally:
        subprocess.run(["scontrol", "update", f"nodename={name}", "state=resume"], timeout=60)  # may be back already
    deadline = time.monotonic() + 120
    while os.listdir(slurm_root / "complete") != ["fragile"]:
        assert run(slurm_root, "--retries", "1").returncode in (0, 1)
        assert time.monotonic() < deadline, (slurm_root / fs.LOG).read_text()
        time.sleep(1)
    job = slurm_root / "complete" / "fragile"
    assert not (job / fs.ERROR).exists()
    first, second = read_ledger(ledger)
    (attempt,) = fs.read_attempts(job)
    assert attempt.job_id == first and "NODE_FAIL" in attempt.reason
    assert fs.read_record(job).job_id == second  # type: ignore[union-attr]
    assert "was ended by the infrastructure" in (slurm_root / fs.LOG).read_text()
