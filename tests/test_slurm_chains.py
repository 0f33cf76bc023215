"""Stages on the real Slurm cluster: handed to the scheduler (afterok), so a chain does not take a sweep per link."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from conftest import make_job, read_ledger, run

from jobroot import folders as fs

pytestmark = pytest.mark.usefixtures("cluster")


def link(root: Path, name: str, ledger: Path, after: str = "", tail: str = "") -> None:
    make_job(root, name, f"#!/bin/bash\necho {name} >> {ledger}\nsleep 1\n{tail}\n", {"after": after} if after else {})


def test_a_chain_of_three_ends_within_three_sweeps_five_seconds_apart(slurm_root: Path, ledger: Path) -> None:
    link(slurm_root, "c", ledger, "b")
    link(slurm_root, "b", ledger, "a")
    link(slurm_root, "a", ledger)
    start = time.monotonic()
    sweeps = 0
    while len(os.listdir(slurm_root / "complete")) < 3 and sweeps < 3:
        if sweeps:
            time.sleep(5)
        assert run(slurm_root).returncode == 0
        sweeps += 1
    took = time.monotonic() - start
    print(f"\nchain of three one-second jobs on Slurm: {sweeps} sweeps, {took:.1f} s")
    assert sorted(os.listdir(slurm_root / "complete")) == ["a", "b", "c"], os.listdir(slurm_root / "pending")
    assert read_ledger(ledger) == ["a", "b", "c"]
    assert not any((slurm_root / "complete" / n / fs.ERROR).exists() for n in "abc")
    log = (slurm_root / fs.LOG).read_text()
    assert "to start once job" in log  # b and c were handed to sbatch with their upstream's id


def test_a_failed_link_ends_the_rest_unstarted_and_job_error_names_it(slurm_root: Path, ledger: Path) -> None:
    link(slurm_root, "a", ledger, tail="exit 3")
    link(slurm_root, "b", ledger, "a")
    deadline = time.monotonic() + 120
    while len(os.listdir(slurm_root / "complete")) < 2:
        assert run(slurm_root).returncode in (0, 1)
        assert time.monotonic() < deadline, os.listdir(slurm_root / "pending")
        time.sleep(1)
    assert read_ledger(ledger) == ["a"]
    error = (slurm_root / "complete" / "b" / fs.ERROR).read_text()
    assert error.startswith("Not run: it runs after a, which failed: Slurm reports job "), error
    assert "FAILED with exit code 3" in error.splitlines()[0]
    # Slurm's own words about b follow.
    assert "Slurm reports job" in error.splitlines()[1] or "sacct:" in error


def test_a_job_sh_with_its_own_dependency_and_an_after_file_is_refused_in_words(slurm_root: Path, ledger: Path) -> None:
    link(slurm_root, "a", ledger, tail="sleep 20")
    assert run(slurm_root).returncode == 0
    make_job(slurm_root, "b", "#!/bin/bash\n#SBATCH --dependency=singleton\ntrue\n", {"after": "a"})
    assert run(slurm_root).returncode == 0
    error = (slurm_root / "complete" / "b" / fs.ERROR).read_text()
    assert "sets #SBATCH --dependency and the folder has an after file" in error
    subprocess.run(["scancel", fs.read_record(slurm_root / "pending" / "a").job_id], timeout=60)  # type: ignore[union-attr]
