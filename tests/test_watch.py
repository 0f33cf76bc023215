"""Watch mode (-p) says what it watches and how to stop it; on a terminal it keeps one live line."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import RECONCILE, make_job

pytestmark = pytest.mark.local


def read_for(fd: int, seconds: float) -> bytes:
    out = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the terminal closed: the process has ended
                break
            if not chunk:
                break
            out += chunk
    return out


def test_on_a_terminal_one_live_line_gives_the_counts_and_the_next_sweep(root: Path) -> None:
    import pty

    make_job(root, "a", "#!/bin/bash\ntrue\n")
    make_job(root, "b", "#!/bin/bash\nexit 3\n")
    pid, fd = pty.fork()
    if pid == 0:  # the child: the real command on a terminal
        os.execv(RECONCILE[0], [*RECONCILE, "-r", str(root), "-p", "2"])
    out = read_for(fd, 6.0)
    os.kill(pid, signal.SIGTERM)
    out += read_for(fd, 5.0)
    os.waitpid(pid, 0)
    text = out.decode()
    first, _, rest = text.partition("\n")
    assert first.strip() == f"watching {root}: a sweep every 2 s; stop with Ctrl-C (or kill {pid})"
    assert "\r\x1b[K1 failed, 1 done; next sweep in " in rest  # the same words as --status
    assert "\n" not in rest.split("stopped")[0]  # one line, rewritten in place
    assert text.rstrip().endswith("stopped")


def test_without_a_terminal_there_is_no_live_line(root: Path) -> None:
    make_job(root, "a", "#!/bin/bash\ntrue\n")
    proc = subprocess.Popen([*RECONCILE, "-r", str(root), "-p", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2.5)
    proc.terminate()
    out, err = proc.communicate(timeout=30)
    assert out == f"watching {root}: a sweep every 1 s; stop with Ctrl-C (or kill {proc.pid})\nstopped\n"
    assert err == ""
