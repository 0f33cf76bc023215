"""The only place that runs batch-system commands: argv lists, a timeout, typed failures.

A command started here dies with the reconciler (PR_SET_PDEATHSIG on Linux), so a run killed
mid-`sbatch` cannot leave an orphan that submits the job later behind the next run's back.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Callable, NamedTuple, Optional, Sequence

from engines import CommandFailed


class CommandTimeout(CommandFailed):
    """The command did not answer in time and was killed: its effect is unknown."""


class Result(NamedTuple):
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str


Runner = Callable[[Sequence[str], float, Optional[Path]], Result]


def run(argv: Sequence[str], timeout: float, cwd: Path | None = None) -> Result:
    """Run argv; a timeout or a missing binary raises CommandFailed. A non-zero exit is returned, not raised."""
    try:
        done = subprocess.run(
            list(argv),
            cwd=cwd,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
    except subprocess.TimeoutExpired as e:
        raise CommandTimeout(argv, None, _text(e.stderr), f"no answer within {timeout:g} s") from e
    except OSError as e:
        raise CommandFailed(argv, None, "", f"cannot run: {e.strerror}") from e
    return Result(list(argv), done.returncode, done.stdout, done.stderr)


def _text(data: bytes | str | None) -> str:
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return data or ""


def _die_with_parent() -> None:
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the command may outlive a killed run; the grace period still covers it
