"""The one place that runs batch-system commands: a command never outlives a killed reconciler."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO

pytestmark = pytest.mark.local


def gone(pid: int) -> bool:
    """Exited (a zombie waiting for init counts: it runs nothing) or reaped."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_a_command_dies_with_a_killed_reconciler(tmp_path: Path) -> None:
    # A run killed during sbatch must not leave the sbatch behind to submit the job later.
    pidfile = tmp_path / "child.pid"
    code = (
        f"import sys; sys.path.insert(0, {str(REPO)!r}); from jobroot.engines._process import run; "
        f"run(['sh', '-c', 'echo $$ > {pidfile}; exec sleep 60'], 120)"
    )
    parent = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 30
    while not (pidfile.exists() and pidfile.read_text().strip()):
        assert time.monotonic() < deadline and parent.poll() is None, "the command never started"
        time.sleep(0.02)
    child = int(pidfile.read_text())
    assert not gone(child)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while not gone(child) and time.monotonic() < deadline:
        time.sleep(0.02)
    alive = not gone(child)
    if alive:
        os.kill(child, signal.SIGKILL)
    assert not alive, "the command outlived the reconciler that started it"
