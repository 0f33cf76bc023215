"""The Slurm tests again on a second generation: Slurm 24.11 and Python 3.13 (Debian 13, in a chroot).

tests/slurm/chroot.sh builds the chroot from Debian's packages (or reuses it); the host's Slurm daemons
are stopped while the chroot's run (same ports) and started again after. Inside, the same test files
run against real 24.11 daemons that tests/slurm/cluster.sh starts there.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import CLUSTER_SCRIPT, REPO

pytestmark = pytest.mark.slurm

CHROOT = REPO / "tests" / "slurm" / "chroot.sh"
FILES = [
    "tests/test_slurm_parse.py",
    "tests/test_slurm_engine.py",
    "tests/test_slurm_cluster.py",
    "tests/test_slurm_as_run.py",
    "tests/test_faults_slurm.py",
    "tests/test_slurm_chains.py",
    "tests/test_slurm_retries.py",
    "tests/test_slurm_clusters.py",
]


def test_the_slurm_tests_pass_on_slurm_24_11_and_python_3_13() -> None:
    prepared = subprocess.run(["bash", str(CHROOT), "prepare"], capture_output=True, text=True, timeout=1800)
    if prepared.returncode == 77 and os.environ.get("CI") != "true":
        pytest.skip(f"Slurm 24.11 needs root and apt-get for its chroot: {prepared.stderr.strip()}")
    assert prepared.returncode == 0, prepared.stderr
    versions = prepared.stderr.strip().splitlines()[-1]
    assert "24.11" in versions and "Python 3.13" in versions, versions
    subprocess.run(["bash", str(CLUSTER_SCRIPT), "stop"], check=True, timeout=300)  # the host's daemons: same ports
    try:
        inner = subprocess.run(
            ["bash", str(CHROOT), "run", "python3", "-m", "pytest", "-q", "-p", "no:cacheprovider", *FILES],
            capture_output=True,
            text=True,
            timeout=2400,
            env={**os.environ, "CI": os.environ.get("CI", "")},
        )
    finally:
        subprocess.run(["bash", str(CHROOT), "stop"], timeout=300)
        restarted = subprocess.run(["bash", str(CLUSTER_SCRIPT)], capture_output=True, text=True, timeout=900)
    summary = inner.stdout.strip().splitlines()[-1:] or [inner.stderr.strip()]
    print(f"\nSlurm 24.11 / Python 3.13 inside the chroot: {summary[0]}", file=sys.stderr)
    assert inner.returncode == 0, inner.stdout[-6000:] + inner.stderr[-2000:]
    assert "skipped" not in summary[0] or os.environ.get("CI") != "true", summary[0]
    assert restarted.returncode == 0, restarted.stderr
