"""The folder protocol: every reserved name in a root and in a job folder, and the primitives that change them.

ROOT/inbox/NAME/job.sh -> ROOT/pending/NAME -> ROOT/complete/NAME. Every change of a job's stage is one
`move()`; every helper file is written whole or not at all by `write_atomic()`. A run may be killed at
any instant: each primitive leaves a state the next run can finish (see docs/protocol.md).
"""

# No `from __future__ import annotations` here: typing.NamedTuple compiles every string annotation
# at import, ~10 ms per run (measured); real annotation objects cost nothing.

import errno
import json
import os
import signal
from pathlib import Path
from typing import NamedTuple, Optional, Union

# ---------------------------------------------------------------- names in the root
INBOX, PENDING, COMPLETE = STAGES = ("inbox", "pending", "complete")
CONFIG = "reconcile.json"  # engine and options recorded by --setup
LOG = "reconcile.log"
LOCK = ".reconcile.lock"  # held (flock) by the run that sweeps
BREAKER = ".breaker"  # present while submissions are paused, so the pause is announced once
STATUS_TXT = "status.txt"
STATUS_JSON = "status.json"
STATUS_HTML = "status.html"
RECENT_FILE = ".status-recent.json"  # the latest endings, carried from run to run
BUNDLES = "bundles"  # --bundle: one folder per scheduler job that runs several job folders (see jobroot/bundle.py)

# ---------------------------------------------------------------- names in a job folder
SCRIPT = "job.sh"  # the job; every other file travels with it
HOLD = "hold"  # the user's, in an inbox folder: keep it waiting
AFTER = "after"  # the user's, in an inbox folder: names of jobs that must end well before it runs
CANCEL = "cancel"  # the user's, in a pending folder: end the job
RECORD = "job_submitted.json"  # engine, job id, submission time: the proof a job was submitted
EXIT_RECORD = "job_exit.json"  # local engine: the wrapper's exit status
OUTPUT = "job_output.txt"  # local engine: stdout and stderr of job.sh
ERROR = "job_error.txt"  # why a job failed; absent for a success
RUN_LOCK = "job_lock"  # local engine: held (flock) by every process of a running job
CLAIM = "job_claim.json"  # slurm engine: written just before sbatch, to find a job whose id was never recorded
HISTORY = "job_history"  # helper files of earlier runs of a folder, in numbered subfolders
ATTEMPTS = "job_attempts.json"  # --retries: each earlier attempt the infrastructure ended (kept across set-asides)
MEMBER = "job_bundle.json"  # a bundle member: which bundle runs it, and its place (written before the bundle is)
STARTED = "job_started"  # a bundle member: taken (hard link, never replaced) by the one runner that starts it, or a cancel
CANCELLED = "job_cancelled"  # the job ended at the user's request (written with job_error.txt): not a failure
MOST = "job_bundle_most"  # kept: a bundle with this folder was refused for its size; at most this many to one now
# MEMBER first: once it is set aside, no bundle's runner can start the folder.
HELPERS = (MEMBER, RECORD, CLAIM, EXIT_RECORD, OUTPUT, ERROR, RUN_LOCK, STARTED, CANCELLED)
SET_ASIDE = (*HELPERS, CANCEL, ATTEMPTS)  # a folder run afresh: an old cancel request and attempt count go too

_NAME_MAX = 255


class Submitted(NamedTuple):
    """What a job's `job_submitted.json` says about its submission."""

    engine: str
    job_id: str
    submitted: float  # epoch seconds
    path: str  # the job's folder (a str: built for every pending job on every run)
    token: str = ""  # the claim's token, when the engine gave the job one (slurm: its --comment)


# ---------------------------------------------------------------- crash points (kill tests)

_crash_at = os.environ.get("RECONCILE_CRASH_AT", "")


def crash_point(step: str) -> None:
    """Test hook: with RECONCILE_CRASH_AT=step[,step...] in the environment, die here as by kill -9.

    A step names a point (`claimed`), optionally the action it must strike in (`adopt/write-done`)
    and which passage of it (`rename-done@3`: the third; counted in that action only, if named).
    """
    if _crash_at and _should_crash(step):
        os.write(2, f"{_context and f'in {_context}: '}crash point {step}\n".encode())
        os.kill(os.getpid(), signal.SIGKILL)


_passes: dict[str, int] = {}
_context = ""  # the action under way, for the crash message and for aiming: "finish"


def doing(action: str) -> None:
    """Name the action under way (or "" between actions), so a crash point can say where it struck."""
    global _context
    _context = action


def _should_crash(step: str) -> bool:
    for wanted in _crash_at.split(","):
        spec, _, nth = wanted.partition("@")
        action, _, name = spec.rpartition("/")
        if name == step and action in ("", _context):
            _passes[wanted] = _passes.get(wanted, 0) + 1
            if not nth or int(nth) == _passes[wanted]:
                return True
    return False


# ---------------------------------------------------------------- primitives


def write_atomic(path: Path, text: str) -> None:
    """Write text to path so that a reader sees the old file or the new one, never a part. Undecodable bytes
    of a file name in it (os.fsdecode's surrogates) are written back as those bytes."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        crash_point("write-synced")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    crash_point("write-done")


def remove_temp_files(job_dir: Path) -> None:
    """Delete what a write_atomic killed half-way left behind (hidden `.job_*.<pid>.tmp` files)."""
    for name in os.listdir(job_dir):
        if name.endswith(".tmp") and any(name.startswith(f".{h}.") for h in HELPERS):
            os.unlink(job_dir / name)


def move(src: Path, dest_dir: Path, name: str) -> Path:
    """Rename src into dest_dir as name, or as name.2, name.3, ... when that is taken.

    Never overwrites and never merges: a taken name is skipped, whether it is a folder (empty or
    not), a file or a dangling link. Returns the new path.
    """
    crash_point("rename-next")
    for n in range(1, 100_000):
        target = dest_dir / _candidate(name, n)
        if os.path.lexists(target):
            continue
        try:
            os.rename(src, target)
        except OSError as e:
            # Someone created the target after the check: take the next name.
            if e.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
                continue
            if e.errno == errno.EXDEV:
                raise OSError(
                    e.errno, f"{dest_dir.name}/ is on another filesystem than {src.parent.name}/. {ONE_FILESYSTEM}"
                ) from None
            raise
        crash_point("rename-done")
        return target
    raise FileExistsError(errno.EEXIST, "no free name left", str(dest_dir / name))


ONE_FILESYSTEM = (
    "inbox/, pending/ and complete/ must be on one filesystem: every move is a rename, which cannot cross "
    "filesystems, and nothing is ever moved by copying. Make the three plain folders of the root (to keep "
    "jobs on other storage, link or mount the whole root there)."
)


def other_filesystem(root: Path) -> Optional[str]:
    """Which stage folder is on another filesystem than inbox/ (followed through links), if one is."""
    devices = {stage: os.stat(root / stage).st_dev for stage in STAGES}
    for stage in STAGES[1:]:
        if devices[stage] != devices[INBOX]:
            return stage
    return None


def _candidate(name: str, n: int) -> str:
    if n == 1:
        return name
    suffix = f".{n}".encode()
    return os.fsdecode(os.fsencode(name)[: _NAME_MAX - len(suffix)] + suffix)


def newest_change(path: Path) -> float:
    """Latest change time (ctime) of path and everything under it (links not followed).

    The change time is this machine's (or the file server's) own account of changes: every write,
    rename and chmod sets it, and no user tool can. Modification times are not read: `cp -p`,
    `rsync -a`, `scp -p` and `tar x` copy the source's, which may lie in the past or the future.
    """
    newest = os.lstat(path).st_ctime
    stack = [os.fspath(path)]
    while stack:
        try:
            entries = os.scandir(stack.pop())
        except OSError:
            continue  # vanished or unreadable while we look: the folder's own times still count
        with entries:
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                newest = max(newest, st.st_ctime)
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
    return newest


def set_aside(job_dir: Path, names: tuple[str, ...] = SET_ASIDE) -> Optional[Path]:
    """Move helper files of an earlier run into job_history/N so the folder reads as a fresh job
    (names=HELPERS: a retry, which keeps the count of attempts).

    Returns the history folder used, or None when there was nothing to set aside.
    """
    present = [h for h in names if os.path.lexists(job_dir / h)]
    if not present:
        return None
    around = _context
    doing("set-aside")
    history = job_dir / HISTORY
    history.mkdir(exist_ok=True)
    numbers = [int(p.name) for p in history.iterdir() if p.name.isdigit()]
    while True:
        dest = history / str(max(numbers, default=0) + 1)
        try:
            dest.mkdir()
            break
        except FileExistsError:
            numbers.append(int(dest.name))
    for h in present:
        crash_point("rename-next")
        os.rename(job_dir / h, dest / h)
        crash_point("rename-done")
    doing(around)
    return dest


def write_record(job_dir: Path, engine: str, job_id: str, submitted: float) -> Submitted:
    """Record a submission; the claim's token, if any, goes with it so the id can be checked later."""
    try:
        token = str(json.loads((job_dir / CLAIM).read_text())["token"])
    except (OSError, ValueError, KeyError, TypeError):
        token = ""
    record = {"engine": engine, "job_id": job_id, "submitted": submitted, "token": token}
    write_atomic(job_dir / RECORD, json.dumps(record) + "\n")
    return Submitted(engine, job_id, submitted, os.fspath(job_dir), token)


def read_record(job_dir: Union[str, Path]) -> Optional[Submitted]:
    """The job's submission record; None when there is none. ValueError when it is unreadable."""
    try:
        with open(f"{os.fspath(job_dir)}/{RECORD}", "rb") as f:  # every pending job, every run: keep it lean
            data = json.loads(f.read())
        token = str(data.get("token") or "")
        return Submitted(str(data["engine"]), str(data["job_id"]), float(data["submitted"]), os.fspath(job_dir), token)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"unreadable {RECORD}: {e}") from e


# ---------------------------------------------------------------- listings


def names(folder: Path) -> list[str]:
    """Entries of folder that are not hidden, in byte order (the users' priority scheme)."""
    return sorted((n for n in os.listdir(folder) if not n.startswith(".")), key=os.fsencode)


def idle(root: Path) -> bool:
    """Is there nothing to do in the root: inbox/, pending/ and bundles/ (if there is one) empty?"""
    return not any_entry(root / PENDING) and not any_entry(root / INBOX) and not any_entry(root / BUNDLES, missing=False)


def any_entry(folder: Path, missing: Optional[bool] = None) -> bool:
    """Does folder hold anything not hidden? Stops at the first such entry. missing: the answer for a folder
    that does not exist (None: that is an error)."""
    try:
        entries = os.scandir(folder)
    except FileNotFoundError:
        if missing is None:
            raise
        return missing
    with entries:
        return any(not e.name.startswith(".") for e in entries)


def printable(name: str) -> str:
    """A folder name safe to print on one line: control characters and undecodable bytes escaped."""
    if name.isprintable():
        return name
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)


# ---------------------------------------------------------------- attempts (--retries)


class Attempt(NamedTuple):
    job_id: str
    reason: str  # the first line of how the infrastructure ended it


def read_attempts(job_dir: Union[str, Path]) -> tuple[Attempt, ...]:
    """The earlier attempts of a job the infrastructure ended; () when there were none (or unreadable)."""
    try:
        with open(f"{os.fspath(job_dir)}/{ATTEMPTS}", "rb") as f:
            data = json.loads(f.read())
        return tuple(Attempt(str(a["job_id"]), str(a["reason"])) for a in data)
    except (OSError, ValueError, KeyError, TypeError):
        return ()


def note_attempt(job_dir: Path, attempt: Attempt) -> None:
    """Add an attempt (once: a run killed after noting it notes it again as the same)."""
    attempts = read_attempts(job_dir)
    if attempt.job_id not in {a.job_id for a in attempts}:
        write_atomic(job_dir / ATTEMPTS, json.dumps([a._asdict() for a in (*attempts, attempt)]) + "\n")
