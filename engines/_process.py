"""The only place that runs batch-system commands: argv lists, a timeout, typed failures.

A command started here dies with the reconciler (PR_SET_PDEATHSIG on Linux), so a run killed
mid-`sbatch` cannot leave an orphan that submits the job later behind the next run's back.
"""

# No `from __future__ import annotations` here: typing.NamedTuple compiles every string annotation
# at import, ~10 ms per run (measured); real annotation objects cost nothing.

from pathlib import Path
from typing import Callable, Mapping, NamedTuple, Optional, Sequence, Union

from jobroot.engine import CommandFailed, CommandTimeout


class Result(NamedTuple):
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str


Runner = Callable[[Sequence[str], float, Optional[Path], Optional[Mapping[str, str]]], Result]


def run(argv: Sequence[str], timeout: float, cwd: Optional[Path] = None, env: Optional[Mapping[str, str]] = None) -> Result:
    """Run argv; a timeout or a missing binary raises CommandFailed. A non-zero exit is returned, not raised.

    env: the whole environment of the command (None: this process's own).
    """
    import subprocess  # here, not at the top: an idle run imports this module but runs nothing (2 ms)

    try:
        done = subprocess.run(
            list(argv),
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            preexec_fn=_death_signal(),
        )
    except subprocess.TimeoutExpired as e:
        raise CommandTimeout(argv, None, _text(e.stderr), f"no answer within {timeout:g} s", _text(e.stdout)) from e
    except OSError as e:
        raise CommandFailed(argv, None, "", f"cannot run: {e.strerror}") from e
    return Result(list(argv), done.returncode, done.stdout, done.stderr)


def _text(data: Union[bytes, str, None]) -> str:
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return data or ""


_prctl: Union[Callable[..., int], None, bool] = False  # False: not looked up yet


def _death_signal() -> Optional[Callable[[], object]]:
    """A preexec function that makes the child die with us, looked up once in the parent.

    Resolving prctl inside each child would import ctypes there: ~7 ms per sbatch, measured.
    """
    global _prctl
    if _prctl is False:
        try:
            import ctypes

            _prctl = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError):
            _prctl = None  # not Linux: a command may outlive a killed run; the claim's grace period covers it
    prctl = _prctl
    if not callable(prctl):
        return None
    return lambda: prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
