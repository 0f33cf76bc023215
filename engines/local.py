"""Local engine: `bash job.sh` in the job's folder, detached, for laptops and tests.

A job is alive while any of its processes holds the flock on `job_lock`: the launcher takes the
lock before it starts anything and hands the descriptor down, so "lock held" cannot be fooled by
PID reuse, and two launches of one folder can never both run. The wrapper (`_localrun.py`)
records the exit status in `job_exit.json`; a free lock without that record means the job was lost.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import sys
from pathlib import Path
from typing import Optional, Sequence

import jobroot
from jobroot.config import positive
from jobroot.engine import Bundling, Ending, Observation, Setting, State, Status, SubmitRefused, SubmitUnknown, signal_name
from jobroot.folders import EXIT_RECORD, RUN_LOCK, Submitted, crash_point

# -I: the job folder is the working directory, and nothing in it may shadow a module we import.
_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(jobroot.__file__)))
_RUNNER = f"import sys; sys.path.insert(0, {_PACKAGE_PARENT!r}); from jobroot.engines._localrun import main; main()"


class LocalEngine:
    name = "local"
    dependencies = False  # a folder in a chain waits in inbox/ until the jobs it names ended well
    SETTINGS = (Setting("slots", positive, None, "N", "at most N jobs at once (default: the CPU count)"),)
    MIN_PERIOD = 0.1  # -p: an idle sweep costs two listings; below this, a watch only spins a core
    MIN_PERIOD_WHY = "below that, a watch spins a core of this machine for nothing"

    def __init__(self, slots: Optional[int] = None) -> None:
        if slots is None:
            slots = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        self.slots = slots

    def submit(self, job_dir: Path, after: Sequence[str] = ()) -> str:
        import subprocess  # only submissions need it (2 ms of imports)

        try:
            fd = os.open(job_dir / RUN_LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as e:
            raise SubmitRefused(f"cannot create {RUN_LOCK}: {e.strerror}", permanent=False) from e
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise SubmitUnknown("this folder's job is already running") from None
            if os.path.lexists(job_dir / EXIT_RECORD):
                raise SubmitUnknown("this folder's job has already run") from None
            os.ftruncate(fd, 0)
            crash_point("engine-locked")
            try:
                runner = subprocess.Popen(
                    [sys.executable, "-I", "-c", _RUNNER, str(fd)],
                    cwd=job_dir,
                    pass_fds=(fd,),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    start_new_session=True,
                )
                _, err = runner.communicate(timeout=30)  # returns once the wrapper has detached
            except (OSError, subprocess.TimeoutExpired) as e:
                raise SubmitUnknown(f"could not start the job's wrapper: {e}") from e
            if runner.returncode != 0:
                raise SubmitUnknown(f"the job's wrapper failed: {err.decode(errors='replace').strip()}")
            return str(runner.pid)
        finally:
            os.close(fd)

    def bundling(self, script: Path) -> Bundling:
        """Any two local jobs may share a bundle: there are no directives, and no time limits."""
        return Bundling("")

    def bundle_header(self, script: Path, members: int) -> str:
        return ""

    def observe(self, jobs: Sequence[Submitted], claimed: Sequence[Path], quick: bool = False) -> Observation:
        statuses: dict[str, Status] = {}
        active = 0
        for job in jobs:
            status = self._status(Path(job.path))
            statuses[job.job_id] = status
            active += status.state is State.ACTIVE
        found: dict[str, str] = {}
        unsure: set[str] = set()
        for path in claimed:
            status = self._status(path)
            job_id = _recorded_id(path)  # the wrapper writes it before anything runs: proof of a launch
            if job_id is not None:
                found[path.name] = job_id  # adopted; a job that ended without a record is then reported lost
                active += status.state is State.ACTIVE
            elif status.state is State.ACTIVE:
                unsure.add(path.name)  # launched a moment ago; the wrapper has not written its id yet
            # else: the launcher died before the wrapper started: nothing ran, launch again
        return Observation(statuses, found, frozenset(unsure), max(0, self.slots - active))

    def cancel(self, jobs: Sequence[Submitted], why: str = "") -> None:
        """SIGTERM to the job's process group; its wrapper outlives it and records how it ended."""
        for job in jobs:
            if self._status(Path(job.path)).state is State.ACTIVE:  # lock held: the group is this job's, not a reused id
                try:
                    os.killpg(int(job.job_id), signal.SIGTERM)
                except (ProcessLookupError, ValueError):
                    pass

    @staticmethod
    def _status(job_dir: Path) -> Status:
        exit_status = _read_exit(job_dir)
        if exit_status is None:
            if _lock_held(job_dir):
                return Status(State.ACTIVE, phase="running")
            exit_status = _read_exit(job_dir)  # it may have ended between the two looks
        if exit_status is None:
            return Status(
                State.FAILED, f"{_LOST} its processes ended without recording an exit status (local engine).", ending=Ending.LOST
            )
        code, sig = exit_status
        if sig:
            return Status(
                State.FAILED, f"The job was killed by signal {sig} ({signal_name(sig)}), according to the local engine."
            )
        if code:
            return Status(State.FAILED, f"The job exited with code {code}, according to the local engine.")
        return Status(State.DONE)


_LOST = "The job was lost:"


def _read_exit(job_dir: Path) -> tuple[int, int] | None:
    """(exit code, signal) from the wrapper's record, or None while there is none."""
    try:
        with open(job_dir / EXIT_RECORD, encoding="utf-8") as f:
            data = json.load(f)
        return int(data.get("returncode") or 0), int(data.get("signal") or 0)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, AttributeError):
        return 255, 0  # written whole by rename, so only a user can have garbled it: not a success


def _lock_held(job_dir: Path) -> bool:
    try:
        fd = os.open(job_dir / RUN_LOCK, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def _recorded_id(job_dir: Path) -> str | None:
    try:
        text = (job_dir / RUN_LOCK).read_text().strip()
    except OSError:
        return None
    return text if text.isdigit() else None
