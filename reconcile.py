#!/usr/bin/env python3
"""One sweep of a job root: lock, look at the folders and the batch system once, decide, act.

ROOT/inbox/NAME/job.sh -> ROOT/pending/NAME -> ROOT/complete/NAME. The folders are the only state;
the run may be killed at any instant and the next one carries on (see README, "Folder protocol").
"""

# No `from __future__ import annotations` here: typing.NamedTuple compiles every string annotation
# at import, ~10 ms per run (measured); real annotation objects cost nothing.

import argparse
import json
import os
import stat
import sys
import time
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple, Optional, Sequence, TextIO, Union

import engines
import jobstatus as st
from engines import Engine, EngineError, Observation, State, SubmitRefused, Submitted, SubmitUnknown
from engines import _fs as fs
from jobstatus import show

__version__ = "1.0.0"

STAGES = ("inbox", "pending", "complete")
CONFIG = "reconcile.json"  # engine and options recorded by --setup
LOG = "reconcile.log"
LOCK = ".reconcile.lock"
DEFAULTS: dict[str, object] = {
    "engine": "local",
    "batch_limit": 50,
    "slots": None,
    "settle": 5.0,
    "max_queued": None,
    "lookback": "7d",
    "command_timeout": 60.0,
    "shared_group": False,
    "breaker": 5,
    "breaker_cooldown": 900.0,
}
RECORDED = tuple(DEFAULTS)  # what --setup records, and a later command line may override
BREAKER = ".breaker"  # present while submissions are paused, so the pause is announced once
GRACE = 600.0  # seconds a submitted job may go unreported before it is called a problem
CANCELLED = "The job was cancelled at the user's request (a file named cancel is in its folder)."
LOG_MAX = 10 * 1024 * 1024  # bytes; then reconcile.log becomes reconcile.log.1
LEVELS = {"debug": 10, "info": 20, "error": 40}


class Options(NamedTuple):
    engine: str
    batch_limit: int
    slots: int
    settle: float
    max_queued: Optional[int]
    lookback: str
    command_timeout: float
    shared_group: bool
    breaker: int
    breaker_cooldown: float


class UsageError(Exception):
    """Bad command line or root: one line on stderr, exit 2."""


# ---------------------------------------------------------------- facts and actions


class PendingFolder(NamedTuple):
    name: str
    record: Optional[Submitted]  # None: claimed, submission not yet recorded
    problem: str = ""  # the record could not be read
    cancel: bool = False  # the user put a file named cancel into the folder


class InboxFolder(NamedTuple):
    name: str
    verdict: str  # "ready", "wait" (no job.sh yet, still changing, held), "bad" (never runnable), "note" (say why not)
    reason: str = ""


class Submit(NamedTuple):  # inbox -> pending, then start it
    name: str


class Launch(NamedTuple):  # a claimed pending folder that was never started
    name: str


class Adopt(NamedTuple):  # a claimed pending folder the engine did start: record its id
    name: str
    job_id: str


class Finish(NamedTuple):  # pending -> complete; reason set for a failure
    name: str
    reason: str = ""


class Cancel(NamedTuple):  # the user asked: tell the engine; the folder moves once the job has ended
    name: str
    record: Submitted


class Reject(NamedTuple):  # inbox -> complete with job_error.txt, never submitted
    name: str
    reason: str


class Note(NamedTuple):  # nothing to do but say so; problem=True goes to stderr too
    name: str
    message: str
    problem: bool = False


Action = Union[Submit, Launch, Adopt, Finish, Cancel, Reject, Note]


def plan(
    pending: Sequence[PendingFolder],
    obs: Observation,
    inbox: Iterable[InboxFolder],
    engine: str,
    batch_limit: int,
    now: float = 0.0,
) -> list[Action]:
    """Decide every action of one sweep. Pure: facts in, actions out; `inbox` is consumed only as far as needed."""
    actions: list[Action] = []
    starts = 0
    for p in pending:
        if p.problem:
            actions.append(Note(p.name, f"{p.problem}; fix or remove it by hand", problem=True))
        elif p.record is None:
            if p.name in obs.found:
                actions.append(Adopt(p.name, obs.found[p.name]))
            elif p.name in obs.unsure:
                pass
            elif p.cancel:
                actions.append(Finish(p.name, "The job was cancelled at the user's request before it was submitted."))
            elif batch_limit > 0:  # 0: collect results only, start nothing
                actions.append(Launch(p.name))
                starts += 1
        elif p.record.engine != engine:
            actions.append(
                Note(
                    p.name,
                    f"submitted through the {p.record.engine} engine; run with -e {p.record.engine} to follow it",
                    problem=True,
                )
            )
        elif p.name in obs.found:  # the recorded id was another job's: record the right one
            actions.append(Adopt(p.name, obs.found[p.name]))
        else:
            status = obs.statuses.get(p.record.job_id)
            if p.cancel and status is not None and status.state is State.ACTIVE:
                actions.append(Cancel(p.name, p.record))
            elif status is None or status.state is State.UNKNOWN:
                late = now - p.record.submitted > GRACE
                message = f"job {p.record.job_id} not reported by the {engine} engine; waiting"
                actions.append(Note(p.name, message + (" (for a long time now: check it)" if late else ""), problem=late))
            elif status.state is State.DONE:
                actions.append(Finish(p.name))
            elif status.state is State.FAILED:
                actions.append(Finish(p.name, f"{CANCELLED}\n{status.reason}" if p.cancel else status.reason))
    room = batch_limit - starts
    if obs.room is not None:
        room = min(room, obs.room - starts)
    if room <= 0:
        return actions
    for folder in inbox:
        if folder.verdict == "bad":
            actions.append(Reject(folder.name, folder.reason))
        elif folder.verdict == "note":
            actions.append(Note(folder.name, folder.reason))
        elif folder.verdict == "ready":
            actions.append(Submit(folder.name))
            room -= 1
            if room == 0:
                break
    return actions


# ---------------------------------------------------------------- observe


def scan_pending(root: Path) -> list[PendingFolder]:
    """Every folder in pending/ with its record: one scandir, then per folder one stat and one read."""
    found = []
    with os.scandir(root / "pending") as entries:
        folders = [e.name for e in entries if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)]
    folders.sort(key=os.fsencode)
    base = os.path.join(root, "pending")
    for name in folders:
        path = f"{base}/{name}"  # per job per run: plain strings, not os.path.join or Path
        cancel = os.path.lexists(f"{path}/{st.CANCEL}")
        try:
            found.append(PendingFolder(name, fs.read_record(path), cancel=cancel))
        except ValueError as e:
            found.append(PendingFolder(name, None, problem=str(e), cancel=cancel))
    return found


def scan_inbox(root: Path, names: Sequence[str], settle: float, now: float, shared: bool = False) -> Iterator[InboxFolder]:
    """The named inbox folders in order, each looked at only when the plan asks for it."""
    for name in names:
        path = root / "inbox" / name
        try:
            info = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISLNK(info.st_mode):
            yield InboxFolder(name, "note", "a symbolic link, not a folder: never submitted (replace it with the folder itself)")
        elif stat.S_ISDIR(info.st_mode):
            yield inspect(path, settle, now, shared, info)
        # plain files are not jobs


def inspect(path: Path, settle: float, now: float, shared: bool = False, folder: Optional[os.stat_result] = None) -> InboxFolder:
    """Is this inbox folder ready to submit, not ready yet, or never runnable (and why)?"""
    name = path.name
    script = path / "job.sh"
    if os.path.lexists(path / st.HOLD):
        return InboxFolder(name, "wait", "held")
    try:
        info = os.lstat(script)
    except FileNotFoundError:
        return InboxFolder(name, "wait", "no job.sh yet")
    except OSError as e:
        return InboxFolder(name, "bad", f"job.sh cannot be examined: {e.strerror}.")
    try:
        if settle > 0 and fs.newest_change(path) > now - settle:
            return InboxFolder(name, "wait", "still changing")
    except OSError:
        return InboxFolder(name, "wait", "vanished")
    if stat.S_ISLNK(info.st_mode):
        return InboxFolder(name, "bad", "job.sh is a symbolic link; put a regular file named job.sh in the folder.")
    if stat.S_ISDIR(info.st_mode):
        return InboxFolder(name, "bad", "job.sh is a directory, not a script.")
    if not stat.S_ISREG(info.st_mode):
        return InboxFolder(name, "bad", "job.sh is not a regular file.")
    if info.st_size == 0:
        return InboxFolder(name, "bad", "job.sh is empty.")
    untrusted = distrust(folder or os.lstat(path), info, shared)
    if untrusted:
        return InboxFolder(name, "bad", untrusted)
    try:
        with open(script, "rb") as f:
            f.read(1)
    except OSError as e:
        return InboxFolder(name, "bad", f"job.sh cannot be read: {e.strerror}.")
    return InboxFolder(name, "ready")


def breaker(recent: Sequence[st.Entry], now: float, failures: int, cooldown: float) -> str:
    """Why submitting should pause now, or "" when it should not (pure: recent endings in, newest first).

    Open when the last `failures` jobs to end all failed, the newest less than `cooldown` seconds ago
    and all within twice that. Rejected folders and cancels by the user are not failures of the jobs.
    """
    if failures <= 0:
        return ""
    counted = [e for e in recent if not e.reason.startswith(("Not submitted:", CANCELLED))][:failures]
    if len(counted) < failures or any(e.state != "failed" for e in counted):
        return ""
    newest, oldest = counted[0].since or 0.0, counted[-1].since or 0.0
    if now - newest >= cooldown or newest - oldest > 2 * cooldown:
        return ""
    until = time.strftime("%H:%M", time.localtime(newest + cooldown))
    return (
        f"the last {failures} jobs to end all failed (latest: {counted[0].reason}); "
        f"submissions paused until {until} (--breaker, --breaker-cooldown)"
    )


def distrust(folder: os.stat_result, script: os.stat_result, shared: bool) -> str:
    """Why a folder someone else could have written must not run as this user; "" when it may.

    Default: folder and job.sh owned by this user, job.sh writable by nobody else (group-writable
    is fine when the group is the owner's private group). --shared-group: anyone in the group.
    """
    me = os.geteuid()
    if script.st_mode & stat.S_IWOTH:
        return "job.sh is writable by every user; run chmod o-w job.sh and submit it again."
    if shared:
        ours = set(os.getgroups()) | {os.getegid()}
        for what, st_ in (("the folder", folder), ("job.sh", script)):
            if st_.st_uid != me and st_.st_gid not in ours:
                return f"{what} belongs to {_user(st_.st_uid)} and to a group this user is not in."
        return ""
    for what, st_ in (("the folder", folder), ("job.sh", script)):
        if st_.st_uid != me:
            return (
                f"{what} belongs to {_user(st_.st_uid)}, not to {_user(me)} who runs the reconciler "
                "(a lab sharing a root can allow this with --shared-group)."
            )
    if script.st_mode & stat.S_IWGRP and not _private_group(script.st_gid, me):
        return "job.sh is writable by its group; run chmod g-w job.sh (or set the root up with --shared-group)."
    return ""


def _user(uid: int) -> str:
    import pwd

    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _private_group(gid: int, uid: int) -> bool:
    """A user private group: the user's own primary group, with no other members."""
    import grp
    import pwd

    try:
        return pwd.getpwuid(uid).pw_gid == gid and not grp.getgrgid(gid).gr_mem
    except KeyError:
        return False


def _any_entry(folder: Path) -> bool:
    """Does folder hold anything not hidden? Stops at the first such entry."""
    with os.scandir(folder) as entries:
        return any(not e.name.startswith(".") for e in entries)


def _names(folder: Path) -> list[str]:
    """Entries of folder that are not hidden, in byte order (the users' priority scheme)."""
    return sorted((n for n in os.listdir(folder) if not n.startswith(".")), key=os.fsencode)


# ---------------------------------------------------------------- act


class Sweep:
    def __init__(self, root: Path, engine: Engine, log: "Log", stop: "StopFlag") -> None:
        self.root, self.engine, self.log, self.stop = root, engine, log, stop
        self.refused = False
        self.started: dict[str, Submitted] = {}  # pending name -> what this run submitted or adopted
        self.ended: list[st.Entry] = []  # what this run moved to complete/
        self.left_inbox: set[str] = set()  # names this run moved out of inbox/
        self.left_pending: set[str] = set()  # names this run moved out of pending/

    def apply(self, actions: Sequence[Action]) -> int:
        """Carry out each action on its own: one broken folder never stops the others. Returns problems."""
        problems = 0
        for action in actions:
            if self.stop.requested:
                self.log.info("stop requested: leaving the rest for the next run")
                break
            if self.refused and isinstance(action, (Submit, Launch)):
                continue  # the batch system just said "not now": don't ask again this run
            problems += isinstance(action, Note) and action.problem
            try:
                getattr(self, "_" + type(action).__name__.lower())(action)
            except (OSError, EngineError) as e:
                problems += 1
                self.log.problem(f"{show(action.name)}: {type(action).__name__.lower()} failed: {e}")
        return problems

    def _submit(self, a: Submit) -> None:
        src = self.root / "inbox" / a.name
        old = fs.set_aside(src)
        if old:
            self.log.info(f"{show(a.name)}: helper files of an earlier run set aside in {old.relative_to(src)}")
        fs.crash_point("set-aside")
        dest = fs.move(src, self.root / "pending", a.name)
        self.left_inbox.add(a.name)
        fs.crash_point("claimed")
        self._start(dest)

    def _launch(self, a: Launch) -> None:
        self._start(self.root / "pending" / a.name)

    def _start(self, path: Path) -> None:
        name = path.name
        try:
            job_id = self.engine.submit(path)
        except SubmitRefused as e:
            if e.permanent:
                self._finish(Finish(name, f"The {self.engine.name} engine refused the job: {e}"))
            else:
                self.refused = True  # "not now": ask no more this run
                self.log.info(f"{show(name)}: not submitted this time ({e}); it keeps its place and is tried again")
            return
        except SubmitUnknown as e:
            self.log.problem(f"{show(name)}: submission uncertain ({e}); the next run will find out")
            return
        fs.crash_point("launched")
        now = time.time()
        self.started[name] = fs.write_record(path, self.engine.name, job_id, now)
        self.log.info(f"{show(name)}: submitted as {self.engine.name} job {job_id}")
        fs.crash_point("recorded")

    def _adopt(self, a: Adopt) -> None:
        now = time.time()
        self.started[a.name] = fs.write_record(self.root / "pending" / a.name, self.engine.name, a.job_id, now)
        fs.crash_point("adopted")
        self.log.info(f"{show(a.name)}: found running as {self.engine.name} job {a.job_id}; recorded")

    def _finish(self, a: Finish) -> None:
        path = self.root / "pending" / a.name
        if a.reason:
            fs.write_atomic(path / fs.ERROR, a.reason.rstrip("\n") + "\n")
        fs.remove_temp_files(path)
        fs.crash_point("error-written")
        dest = fs.move(path, self.root / "complete", a.name)
        self.left_pending.add(a.name)
        fs.crash_point("completed")
        first = a.reason.splitlines()[0] if a.reason else ""
        self.ended.append(st.Entry(dest.name, "failed" if a.reason else "done", "", time.time(), first))
        outcome = "failed: " + first if a.reason else "done"
        self.log.info(f"{show(a.name)}: {outcome} -> complete/{show(dest.name)}")

    def _reject(self, a: Reject) -> None:
        path = self.root / "inbox" / a.name
        fs.set_aside(path)
        fs.write_atomic(path / fs.ERROR, f"Not submitted: {a.reason}\n")
        fs.remove_temp_files(path)
        fs.crash_point("rejection-written")
        dest = fs.move(path, self.root / "complete", a.name)
        self.left_inbox.add(a.name)
        self.ended.append(st.Entry(dest.name, "failed", "", time.time(), f"Not submitted: {a.reason}"))
        self.log.info(f"{show(a.name)}: not submitted: {a.reason} -> complete/{show(dest.name)}")

    def _cancel(self, a: Cancel) -> None:
        self.engine.cancel([a.record])
        self.log.info(f"{show(a.name)}: cancel requested; asked the {self.engine.name} engine to end job {a.record.job_id}")

    def _note(self, a: Note) -> None:
        (self.log.problem if a.problem else self.log.info)(f"{show(a.name)}: {a.message}")


def describe(action: Action) -> str:
    """One line for --dry-run."""
    n = show(action.name)
    if isinstance(action, Submit):
        return f"submit inbox/{n} (moving it to pending/)"
    if isinstance(action, Launch):
        return f"submit pending/{n} (claimed by an earlier run, never started)"
    if isinstance(action, Adopt):
        return f"record job {action.job_id} for pending/{n}"
    if isinstance(action, Finish):
        return f"move pending/{n} to complete/" + (
            f" with job_error.txt: {action.reason.splitlines()[0]}" if action.reason else ""
        )
    if isinstance(action, Cancel):
        return f"cancel job {action.record.job_id} of pending/{n} (a file named cancel is in it)"
    if isinstance(action, Reject):
        return f"move inbox/{n} to complete/ with job_error.txt: {action.reason}"
    return f"{n}: {action.message}"


# ---------------------------------------------------------------- log, stop, config


class Log:
    """Timestamped lines in ROOT/reconcile.log (rotated by size); problems also on stderr."""

    def __init__(self, root: Path, verbose: bool = False, level: str = "info") -> None:
        self.path, self.verbose, self.level = root / LOG, verbose, LEVELS[level]
        self._file: Optional[TextIO] = None

    def _write(self, level: str, message: str) -> None:
        if LEVELS[level.lower()] < self.level:
            return
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} {level} {message}\n"
        try:
            if self._file is None:
                if _size(self.path) > LOG_MAX:
                    os.replace(self.path, self.path.with_name(LOG + ".1"))  # one old log kept
                self._file = open(self.path, "a", encoding="utf-8", errors="backslashreplace")
            self._file.write(line)
            self._file.flush()
        except OSError as e:
            print(f"reconcile: cannot write {self.path}: {e.strerror}", file=sys.stderr)

    def debug(self, message: str) -> None:
        self._write("DEBUG", message)

    def info(self, message: str) -> None:
        self._write("INFO", message)
        if self.verbose:
            print(message, file=sys.stderr)

    def problem(self, message: str) -> None:
        self._write("ERROR", message)
        print(f"reconcile: {message}", file=sys.stderr)


def _size(path: Path) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


class StopFlag:
    requested = False

    def request(self, *_: object) -> None:
        self.requested = True


def load_config(root: Path) -> dict[str, object]:
    try:
        with open(root / CONFIG, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise UsageError(f"{root / CONFIG} cannot be read ({e}); fix it or run -s again") from e
    if not isinstance(data, dict):
        raise UsageError(f"{root / CONFIG} is not a JSON object; fix it or run -s again")
    return data


def setup(root: Path, given: dict[str, object]) -> None:
    for stage in STAGES:
        (root / stage).mkdir(parents=True, exist_ok=True)
    config = {**load_config(root), **given}
    config.setdefault("engine", DEFAULTS["engine"])
    fs.write_atomic(root / CONFIG, json.dumps(config, indent=2, sort_keys=True) + "\n")


# ---------------------------------------------------------------- command line


DESCRIPTION = """\
Move job folders through a root: ROOT/inbox/NAME/job.sh -> ROOT/pending/NAME -> ROOT/complete/NAME.

One run is one sweep: it takes a lock in the root, asks the batch system once about every pending job,
moves ended jobs to complete/ (a failed one with job_error.txt saying why), and submits waiting
folders from inbox/ in byte order of their names. Run it every minute from cron, or with -p.
"""

EPILOG = """\
files in a job folder:
  job.sh              the job (required); every other file travels with it
  hold                in an inbox/ folder: keep it waiting until the file is removed
  cancel              in a pending/ folder: cancel the job; it lands in complete/ with job_error.txt
  job_error.txt       why the job failed (absent for a success)
  job_*               other helper files: see README

files in the root:
  reconcile.json      the engine and options recorded by --setup
  reconcile.log       one timestamped line per action (rotated at 10 MiB to reconcile.log.1)
  status.txt          what is waiting, running and recently ended, rewritten by every run
  status.json         the same for scripts

examples:
  reconcile -r ~/jobs -s -e slurm --max-queued 400     set up a root for Slurm
  reconcile -r ~/jobs                                   one sweep (what cron runs)
  reconcile -r ~/jobs --dry-run                         what would a sweep do?
  reconcile -r ~/jobs --status                          a table of every job and its state
  touch ~/jobs/pending/run-042/cancel                   cancel a job
  reconcile -r ~/jobs --retry-failed                    move every failed folder back to inbox/
  reconcile -r ~/jobs -p 60                             sweep every minute until Ctrl-C

exit status:
  0  all went well (or another run holds the lock)
  1  something needs a person; it was said on stderr
  2  bad command line, missing root, root not set up, unknown engine
"""


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="reconcile", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = p.add_argument
    add("-r", "--root", required=True, type=Path, help="the job root (holds inbox/, pending/, complete/)")
    add("-s", "--setup", action="store_true", help="create the folders; record the engine and the options given")
    add("-e", "--engine", help="local or slurm (also engines.LocalEngine, engines.SlurmEngine)")
    add("--batch-limit", type=_count, metavar="N", help="submit at most N jobs per run (default 50)")
    add("--slots", type=_positive, metavar="N", help="local: at most N jobs at once (default: the CPU count)")
    add("--settle", type=_seconds, metavar="SECONDS", help="submit a folder once nothing in it changed for this long (default 5)")
    add("--max-queued", type=_positive, metavar="N", help="slurm: submit only while this user has fewer than N jobs queued")
    add("--lookback", type=_lookback, metavar="WHEN", help="slurm: how far back sacct may look: 36h, 7d or a date (default 7d)")
    add(
        "--command-timeout",
        type=_seconds,
        metavar="SECONDS",
        help="give up on any batch-system command after this long (default 60)",
    )
    add(
        "--shared-group",
        action="store_true",
        default=None,
        help="accept folders of other users in a group you share (see README)",
    )
    add(
        "--breaker",
        type=_count,
        metavar="N",
        help="pause submitting when the last N jobs to end all failed (default 5; 0: never)",
    )
    add("--breaker-cooldown", type=_seconds, metavar="SECONDS", help="how long such a pause lasts (default 900)")
    add("--dry-run", action="store_true", help="print what a sweep would do; change nothing")
    add("--status", action="store_true", help="print every job with its state; read-only, takes no lock")
    add("--json", action="store_true", help="with --status: print JSON")
    add("--retry-failed", action="store_true", help="move every failed folder in complete/ back to inbox/")
    add("-p", "--period", type=_seconds, metavar="SECONDS", help="watch mode: a sweep every SECONDS until Ctrl-C or SIGTERM")
    add("-v", "--verbose", action="store_true", help="also print each action on stderr")
    add("--log-level", choices=sorted(LEVELS, key=LEVELS.__getitem__), default="info", help="what goes to reconcile.log")
    add("--version", action="version", version=f"%(prog)s {__version__}")
    return p.parse_args(argv)


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _lookback(text: str) -> str:
    from engines.slurm import parse_lookback

    try:
        parse_lookback(text, time.time())
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError("must be 0 or more seconds")
    return value


def options(args: argparse.Namespace, root: Path) -> Options:
    """Defaults, then what --setup recorded, then what this command line gives."""
    given = {k: getattr(args, k) for k in RECORDED if getattr(args, k) is not None}
    if "engine" in given:
        try:
            given["engine"] = engines.canonical_name(str(given["engine"]))
        except ValueError as e:
            raise UsageError(str(e)) from None
    if args.setup:
        setup(root, given)
        print(f"set up {root} for the {load_config(root)['engine']} engine")
    if not root.is_dir():
        raise UsageError(f"no such root: {root} (create it with -s)")
    if not all((root / s).is_dir() for s in STAGES) or not (root / CONFIG).is_file():
        raise UsageError(f"{root} is not set up: run reconcile -r {root} -s first")
    merged = {**DEFAULTS, **load_config(root), **given}
    try:
        engine = engines.canonical_name(str(merged["engine"]))
        slots = merged["slots"]
        if slots is None:
            slots = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        max_queued = merged["max_queued"]
        opts = Options(
            engine,
            int(merged["batch_limit"]),
            int(slots),
            float(merged["settle"]),
            None if max_queued is None else int(max_queued),
            str(merged["lookback"]),
            float(merged["command_timeout"]),
            bool(merged["shared_group"]),
            int(merged["breaker"]),
            float(merged["breaker_cooldown"]),
        )
        return opts
    except (ValueError, TypeError) as e:
        raise UsageError(f"{e} (recorded in {root / CONFIG}); fix it or run -s again") from None


def load_engine(opts: Options) -> Engine:
    try:
        return engines.load(opts.engine, **opts._asdict())
    except ValueError as e:
        raise UsageError(str(e)) from None


def sweep(root: Path, opts: Options, args: argparse.Namespace, stop: StopFlag) -> int:
    """One run: 0 when all went well, 1 when something needs a person."""
    if not _any_entry(root / "pending") and not _any_entry(root / "inbox"):
        return 0  # nothing to do, nothing to protect: no lock, no engine, no batch-system call
    engine = load_engine(opts)
    log = Log(root, args.verbose, args.log_level)
    lock = None
    if not args.dry_run:
        from filelock import FileLock, Timeout

        lock = FileLock(str(root / LOCK), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            return 0  # another run is sweeping: it will do the work
    try:
        pending = scan_pending(root)
        waiting = _names(root / "inbox")
        live = [p.record for p in pending if p.record and p.record.engine == engine.name]
        claimed = [root / "pending" / p.name for p in pending if p.record is None and not p.problem]
        try:
            obs = engine.observe(live, claimed)
        except EngineError as e:
            log.problem(f"cannot ask the {engine.name} engine, nothing done this run: {e}")
            return 1
        for note in obs.notes:
            log.info(note)
        for problem in obs.problems:
            log.problem(problem)
        inbox = scan_inbox(root, waiting, opts.settle, time.time(), opts.shared_group)
        recent = st.recent_endings(root)  # read once: the breaker and the status files both need it
        pause = breaker(recent, time.time(), opts.breaker, opts.breaker_cooldown)
        if not args.dry_run:
            announce_pause(root, pause, log)
        actions = plan(pending, obs, inbox, engine.name, 0 if pause else opts.batch_limit, time.time())
        if args.dry_run:
            for action in actions:
                print(describe(action))
            return 0
        log.debug(f"sweep: {len(pending)} pending, {len(waiting)} in inbox, {len(actions)} actions")
        work = Sweep(root, engine, log, stop)
        problems = work.apply(actions)
        try:
            write_status(root, pending, waiting, obs, work, recent)
        except OSError as e:
            log.problem(f"cannot write the status files: {e}")
        return 1 if problems or obs.problems else 0
    finally:
        if lock is not None:
            lock.release()


def announce_pause(root: Path, pause: str, log: Log) -> None:
    """Say once, on stderr and in the log, that the breaker opened; note in the log when it closes."""
    marker = root / BREAKER
    if pause and not marker.exists():
        fs.write_atomic(marker, pause + "\n")
        log.problem(f"circuit breaker: {pause}")
    elif not pause and marker.exists():
        marker.unlink()
        log.info("circuit breaker closed: submitting again")


def write_status(
    root: Path, before: list[PendingFolder], waiting: list[str], obs: Observation, work: Sweep, recent: list[st.Entry]
) -> None:
    """status.txt/.json after a sweep, from what it already knows: no listing, no query, complete/ never read."""
    records = {p.name: p.record for p in before if p.name not in work.left_pending}
    records.update(work.started)
    still = [name for name in waiting if name not in work.left_inbox]
    inbox = [st.Entry(name, "waiting", "", None) for name in still[: st.LISTED_WAITING]]  # the next in line
    now = time.time()
    st.write_files(root, inbox + st.pending_entries(root, records, obs), work.ended, recent, now, len(still) - len(inbox))


def show_status(root: Path, opts: Options, as_json: bool) -> int:
    """--status: everything, complete/ included; at most one cheap engine query; no lock, no writes."""
    engine = load_engine(opts)
    records: dict[str, Optional[Submitted]] = {}
    for p in scan_pending(root):
        records[p.name] = p.record
    live = [r for r in records.values() if r and r.engine == engine.name]
    obs = None
    code = 0
    if live:
        try:
            obs = engine.observe(live, [], quick=True)
        except EngineError as e:
            print(f"reconcile: cannot ask the {engine.name} engine; pending jobs shown as unknown: {e}", file=sys.stderr)
            code = 1
    entries = st.inbox_entries(root, _names(root / "inbox")) + st.pending_entries(root, records, obs)
    entries += [e for e in (st.complete_entry(root, n) for n in _names(root / "complete")) if e]
    now = time.time()
    sys.stdout.write(st.render_json(entries, now) if as_json else st.render_table(entries, now))
    return code


def retry_failed(root: Path, args: argparse.Namespace) -> int:
    """--retry-failed: every failed folder in complete/ back to inbox/, under the run lock."""
    from filelock import FileLock, Timeout

    log = Log(root, args.verbose, args.log_level)
    try:
        with FileLock(str(root / LOCK), timeout=120):
            moved = 0
            for name in _names(root / "complete"):
                path = root / "complete" / name
                if path.is_dir() and not path.is_symlink() and os.path.lexists(path / fs.ERROR):
                    dest = fs.move(path, root / "inbox", name)
                    log.info(f"{show(name)}: failed folder moved back to inbox/{show(dest.name)} for a retry")
                    print(f"complete/{show(name)} -> inbox/{show(dest.name)}")
                    moved += 1
            if not moved:
                print("no failed folder in complete/")
    except Timeout:
        print("reconcile: another run has held the lock for 2 minutes; try again", file=sys.stderr)
        return 1
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    root = args.root.expanduser()
    try:
        opts = options(args, root)
    except (UsageError, OSError) as e:
        print(f"reconcile: {e}", file=sys.stderr)
        return 2
    if args.status:
        try:
            return show_status(root, opts, args.json)
        except UsageError as e:
            print(f"reconcile: {e}", file=sys.stderr)
            return 2
    if args.retry_failed:
        return retry_failed(root, args)
    stop = StopFlag()
    try:
        if args.period is None:
            return 0 if args.setup else sweep(root, opts, args, stop)
        import signal

        signal.signal(signal.SIGTERM, stop.request)
        signal.signal(signal.SIGINT, stop.request)
        status = 0
        while not stop.requested:
            status = sweep(root, opts, args, stop)
            deadline = time.monotonic() + args.period
            while not stop.requested and time.monotonic() < deadline:
                time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        return status
    except UsageError as e:
        print(f"reconcile: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
