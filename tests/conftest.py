"""Shared helpers: a set-up root, job folders, and the real CLI run in a subprocess."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
RECONCILE = [sys.executable, str(REPO / "reconcile.py")]

# Test tiers (markers, declared in pyproject.toml). A test that uses a real system's fixture is in that
# system's tier; every other file names its own tier (`pytestmark`), checked at collection.
SYSTEMS = {
    "cluster": "slurm",
    "second_cluster": "slurm",
    "slurm_root": "slurm",
    "gridengine_cell": "gridengine",
    "ge_root": "gridengine",
    "remote": "sshfs",
    "chromium": "browser",
}
TIERS = ("unit", "local", "ordeal", "docs", "clock", "slurm", "gridengine", "sshfs", "browser")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        systems = {SYSTEMS[f] for f in getattr(item, "fixturenames", ()) if f in SYSTEMS}
        for system in sorted(systems):
            item.add_marker(system)
        tiers = {m.name for m in item.iter_markers() if m.name in TIERS}
        if len(tiers) != 1:  # `-m unit` must never start a cluster
            raise pytest.UsageError(f"{item.nodeid}: in tiers {sorted(tiers) or 'none'}; mark it with one of {', '.join(TIERS)}")


def run(root: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """One reconciler run through the real command line."""
    return subprocess.run(
        [*RECONCILE, "-r", str(root), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def shim_env(tmp_path: Path, shim: Path, commands: tuple[str, ...], rate: float = 0.3) -> dict[str, str]:
    """PATH with the fault shim in front of each command (tests/faults/), failing `rate` of their calls."""
    bin_dir = tmp_path / "shim-bin"
    bin_dir.mkdir(exist_ok=True)
    for command in commands:
        wrapper = bin_dir / command
        wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} {shim} {command} "$@"\n')
        wrapper.chmod(0o755)
    log = str(tmp_path / "faults.log")
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "SHIM_RATE": str(rate), "SHIM_LOG": log, "SHIM_HANG": "6"}


def run_maybe_killed(root: Path, rng: random.Random, *args: str, env: dict[str, str] | None = None, kill: float = 0.6) -> bool:
    """One reconciler run, SIGKILLed at a random instant in its first 0.4 s (a share `kill` of runs) or left
    to end; one that ends must end cleanly. True when it was killed before it ended."""
    proc = subprocess.Popen(
        [*RECONCILE, "-r", str(root), *args], stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}
    )
    if rng.random() < kill:
        time.sleep(rng.uniform(0.0, 0.4))
        proc.kill()
    _, stderr = proc.communicate(timeout=120)
    if proc.returncode != -9:
        assert proc.returncode in (0, 1) and "Traceback" not in stderr, stderr
    return proc.returncode == -9


def make_job(root: Path, name: str, script: str, files: dict[str, str] | None = None, stage: str = "inbox") -> Path:
    """A job folder with job.sh and any input files."""
    job = root / stage / name
    job.mkdir()
    (job / "job.sh").write_text(script)
    for fname, text in (files or {}).items():
        (job / fname).write_text(text)
    return job


def ledger_job(ledger: Path, tag: str, extra: str = "") -> str:
    """A job.sh that appends its tag to the ledger (outside the root) once per execution."""
    return f"#!/bin/bash\nprintf '%s\\n' {tag!r} >> {str(ledger)!r}\n{extra}\n"


def drain(root: Path, *args: str, limit: float = 120) -> None:
    """Sweep until inbox/ and pending/ are empty (each sweep a real run), or fail after `limit` seconds."""
    deadline = time.monotonic() + limit
    while True:
        result = run(root, *args)
        assert result.returncode == 0, result.stderr
        if not any((root / "pending").iterdir()) and not [p for p in (root / "inbox").iterdir() if not p.name.startswith(".")]:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"root did not drain: pending={sorted(os.listdir(root / 'pending'))} inbox={os.listdir(root / 'inbox')}")
        time.sleep(0.05)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    # The breaker is off: these tests fail jobs on purpose (tests/test_breaker.py turns it on).
    result = run(r, "-s", "-e", "local", "--settle", "0", "--breaker", "0")
    assert result.returncode == 0, result.stderr
    return r


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    return tmp_path / "ledger.txt"


def read_ledger(ledger: Path) -> list[str]:
    return ledger.read_text().splitlines() if ledger.exists() else []


CLUSTER_SCRIPT = REPO / "tests" / "slurm" / "cluster.sh"


def start_cluster(*args: str) -> None:
    """Start (or reuse) the real single-node Slurm cluster (with args `second`, a second one beside it,
    tests/slurm/cluster.sh); skip where it cannot run, but never in CI."""
    import shutil

    if shutil.which("bash") is None:
        pytest.skip("no bash")
    result = subprocess.run(["bash", str(CLUSTER_SCRIPT), *args], capture_output=True, text=True, timeout=900)
    if result.returncode == 0:
        return
    reason = (result.stderr.strip().splitlines() or ["cluster.sh failed"])[-1]
    if os.environ.get("CI") == "true" or result.returncode != 77:
        pytest.fail(f"the Slurm test cluster did not start: {reason}\n{result.stderr}")
    pytest.skip(f"Slurm tests need root and apt-get to start a cluster: {reason}")


@pytest.fixture(scope="session")
def cluster() -> None:
    start_cluster()


@pytest.fixture(scope="session")
def second_cluster(cluster: None) -> None:
    """A second cluster, `second`, beside the first and registered in the same slurmdbd (jobs reach it with -M)."""
    start_cluster("second")


@pytest.fixture
def slurm_root(tmp_path: Path, cluster: None) -> Path:
    r = tmp_path / "root"
    result = run(r, "-s", "-e", "slurm", "--settle", "0", "--breaker", "0")
    assert result.returncode == 0, result.stderr
    return r


GRIDENGINE_SCRIPT = REPO / "tests" / "gridengine" / "cluster.sh"


@pytest.fixture(scope="session")
def gridengine_cell() -> None:
    """Start (or reuse) the real one-host Grid Engine cell; skip where it cannot run, but never in CI."""
    result = subprocess.run(["bash", str(GRIDENGINE_SCRIPT)], capture_output=True, text=True, timeout=900)
    if result.returncode == 0:
        return
    reason = (result.stderr.strip().splitlines() or ["cluster.sh failed"])[-1]
    if os.environ.get("CI") == "true" or result.returncode != 77:
        pytest.fail(f"the Grid Engine test cell did not start: {reason}\n{result.stderr}")
    pytest.skip(f"Grid Engine tests need root and apt-get to start a cell: {reason}")


@pytest.fixture
def ge_root(tmp_path: Path, gridengine_cell: None) -> Path:
    # The test cell is this suite's own: jobs an earlier, interrupted run left behind are deleted first.
    subprocess.run(["qdel", "-u", "root"], capture_output=True, timeout=60)
    deadline = time.monotonic() + 60
    while subprocess.run(["qstat", "-u", "root"], capture_output=True, text=True, timeout=60).stdout.strip():
        assert time.monotonic() < deadline, "jobs left in the test cell could not be deleted"
        time.sleep(0.5)
    r = tmp_path / "root"
    result = run(r, "-s", "-e", "gridengine", "--settle", "0", "--breaker", "0")
    assert result.returncode == 0, result.stderr
    return r
