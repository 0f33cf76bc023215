"""One sweep of a root: lock, observe the folders and ask the engine once, plan, act, write the status files.

Acting is the only part that changes folders or talks to the batch system; each action is carried out on
its own, so one broken folder never stops the others.
"""

import os
import sys
import time
from pathlib import Path
from typing import Iterator, Mapping, Optional, Sequence

from jobroot import folders as fs
from jobroot import status as st
from jobroot.actions import Action, Adopt, Cancel, Finish, Launch, Note, Reject, Retry, Submit, Wait
from jobroot.config import Options, load_engine
from jobroot.engine import Ending, Engine, EngineError, Observation, State, SubmitRefused, SubmitUnknown
from jobroot.folders import Submitted, printable
from jobroot.log import Log
from jobroot.model import Cause, Entry, Phase
from jobroot.observe import Stages, scan_inbox, scan_pending
from jobroot.plan import NOT_SUBMITTED, InboxFolder, PendingFolder, breaker, plan


class StopFlag:
    requested = False

    def request(self, *_: object) -> None:
        self.requested = True


def sweep(root: Path, opts: Options, log: Log, stop: StopFlag, dry_run: bool = False) -> int:
    """One run: 0 when all went well, 1 when something needs a person."""
    if not fs.any_entry(root / fs.PENDING) and not fs.any_entry(root / fs.INBOX):
        return 0  # nothing to do, nothing to protect: no lock, no engine, no batch-system call
    engine = load_engine(opts)
    lock = None
    if not dry_run:
        from filelock import FileLock, Timeout

        lock = FileLock(str(root / fs.LOCK), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            return 0  # another run is sweeping: it will do the work
    try:
        pending = scan_pending(root)
        waiting = fs.names(root / fs.INBOX)
        live = [p.record for p in pending if p.record and p.record.engine == engine.name]
        claimed = [root / fs.PENDING / p.name for p in pending if p.record is None and not p.problem]
        try:
            obs = engine.observe(live, claimed)
        except EngineError as e:
            log.problem(f"cannot ask the {engine.name} engine, nothing done this run: {e}")
            return 1
        for note in obs.notes:
            log.info(note)
        for problem in obs.problems:
            log.problem(problem)
        looked: dict[str, InboxFolder] = {}  # the inbox folders the plan looked at, for the status files
        records = {p.name: p.record for p in pending}
        stages = Stages(root, frozenset(waiting), records)
        inbox = _recorded(scan_inbox(root, waiting, opts.settle, time.time(), opts.shared_group, stages), looked)
        recent = st.recent_endings(root)  # read once: the breaker and the status files both need it
        pause = breaker(recent, time.time(), opts.breaker, opts.breaker_cooldown)
        if not dry_run:
            announce_pause(root, pause, log)
        limit = 0 if pause else opts.batch_limit
        pending = [_with_facts(root, p, obs, stages, engine.dependencies, opts.retries) for p in pending]
        actions = plan(pending, obs, inbox, engine.name, limit, time.time(), engine.dependencies, opts.retries)
        if dry_run:
            for action in actions:
                print(action.describe())
            return 0
        log.debug(f"sweep: {len(pending)} pending, {len(waiting)} in inbox, {len(actions)} actions")
        work = Sweep(root, engine, log, stop, obs, stages)
        problems = work.apply(actions)
        try:
            write_status(root, pending, waiting, obs, work, recent, looked)
        except OSError as e:
            log.problem(f"cannot write the status files: {e}")
        return 1 if problems or obs.problems else 0
    finally:
        if lock is not None:
            lock.release()


class Sweep:
    """Carries out a plan's actions (it is the plan's Actor) and remembers what it changed."""

    def __init__(
        self,
        root: Path,
        engine: Engine,
        log: Log,
        stop: StopFlag,
        obs: Optional[Observation] = None,
        stages: Optional[Stages] = None,
    ) -> None:
        self.root, self.engine, self.log, self.stop = root, engine, log, stop
        self.obs = obs or Observation()  # the engine's answer this run, for the jobs a chain waits for
        self.stages = stages or Stages(root, frozenset(), {})  # inbox/ and pending/ as this run found them
        self.ids: dict[str, str] = {}  # inbox name -> job id, for what this run submitted
        self.waits: dict[str, str] = {}  # inbox name -> what it waits for (after files)
        self.refused = False
        self.unrunnable = False  # the submit command could not be run this run: a problem
        self.started: dict[str, Submitted] = {}  # pending name -> what this run submitted or adopted
        self.ended: list[Entry] = []  # what this run moved to complete/
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
            kind = type(action).__name__.lower()
            fs.doing(kind)
            try:
                action.to(self)
            except (OSError, EngineError) as e:
                problems += 1
                self.log.problem(f"{printable(action.name)}: {kind} failed: {e}")
            fs.doing("")
        return problems + self.unrunnable

    def submit(self, a: Submit) -> None:
        src = self.root / fs.INBOX / a.name
        after = self._ids(a.name, a.after)
        if after is None:
            return
        old = fs.set_aside(src)
        if old:
            self.log.info(f"{printable(a.name)}: helper files of an earlier run set aside in {old.relative_to(src)}")
        fs.crash_point("set-aside")
        dest = fs.move(src, self.root / fs.PENDING, a.name)
        self.left_inbox.add(a.name)
        fs.crash_point("claimed")
        job_id = self._start(dest, after)
        if job_id:
            self.ids[a.name] = job_id

    def launch(self, a: Launch) -> None:
        after = self._ids(a.name, a.after)  # claimed by a run killed before it started the job: its chain still holds
        if after is not None:
            self._start(self.root / fs.PENDING / a.name, after)

    def _ids(self, name: str, upstream: tuple[str, ...]) -> Optional[tuple[str, ...]]:
        """The job ids of the upstream folders the batch system is to wait for; None when one has none."""
        after = tuple(self.ids.get(n) or _job_id(self.stages.pending.get(n)) for n in upstream)
        if not all(after):  # a job it waits for was not submitted after all (refused, uncertain): not now
            self.log.info(f"{printable(name)}: waits, for {', '.join(map(printable, upstream))} did not get a job id this run")
            return None
        return after

    def retry(self, a: Retry) -> None:
        path = self.root / fs.PENDING / a.name
        fs.note_attempt(path, fs.Attempt(a.record.job_id, a.reason))
        fs.crash_point("attempt-noted")
        old = fs.set_aside(path, fs.HELPERS)  # the record goes: the folder is claimed again, its attempts kept
        n = len(fs.read_attempts(path))
        where = f" (its files are in {old.relative_to(path)})" if old else ""
        self.log.info(
            f"{printable(a.name)}: job {a.record.job_id} was ended by the infrastructure{where}: {a.reason}; attempt {n + 1}"
        )
        self.launch(Launch(a.name, a.after))

    def wait(self, a: Wait) -> None:
        self.waits[a.name] = a.reason
        self.log.debug(f"{printable(a.name)}: {a.reason}")

    def _start(self, path: Path, after: tuple[str, ...] = ()) -> Optional[str]:
        """Start the job in path (after: ids of jobs the batch system is to wait for); its id, or None."""
        name = path.name
        fs.crash_point("engine-call")
        try:
            job_id = self.engine.submit(path, after)
        except SubmitRefused as e:
            if e.permanent:
                self.finish(Finish(name, f"The {self.engine.name} engine refused the job: {e}"))
            else:
                self.refused = True  # "not now": ask no more this run
                said = f"{printable(name)}: not submitted this time ({e}); it keeps its place and is tried again"
                if e.unrunnable:  # the setup needs mending: said once a run, as a problem
                    self.unrunnable = True
                    self.log.problem(said)
                else:
                    self.log.info(said)
            return None
        except SubmitUnknown as e:
            self.log.problem(f"{printable(name)}: submission uncertain ({e}); the next run will find out")
            return None
        fs.crash_point("launched")
        self.started[name] = fs.write_record(path, self.engine.name, job_id, time.time())
        chained = f" (to start once job {', '.join(after)} ended well)" if after else ""
        self.log.info(f"{printable(name)}: submitted as {self.engine.name} job {job_id}{chained}")
        fs.crash_point("recorded")
        return job_id

    def adopt(self, a: Adopt) -> None:
        submitted = a.submitted if a.submitted is not None else time.time()
        self.started[a.name] = fs.write_record(self.root / fs.PENDING / a.name, self.engine.name, a.job_id, submitted)
        fs.crash_point("adopted")
        self.log.info(f"{printable(a.name)}: found running as {self.engine.name} job {a.job_id}; recorded")

    def finish(self, a: Finish) -> None:
        path = self.root / fs.PENDING / a.name
        if a.end is not None:  # the batch system holds it, never to start it: end it, its verdict kept with it
            fs.crash_point("engine-call")
            self.engine.cancel([a.end], a.reason)
        if a.reason:
            fs.write_atomic(path / fs.ERROR, a.reason.rstrip("\n") + "\n")
        fs.remove_temp_files(path)
        fs.crash_point("error-written")
        dest = fs.move(path, self.root / fs.COMPLETE, a.name)
        self.left_pending.add(a.name)
        fs.crash_point("completed")
        first = a.reason.splitlines()[0] if a.reason else ""
        try:
            record = fs.read_record(dest)  # for the job id the status files show
        except ValueError:
            record = None
        job_id = record.job_id if record else ""
        ended = (Phase.FAILED, a.cause.value) if a.reason else (Phase.DONE, "")
        self.ended.append(Entry(dest.name, ended[0], job_id, time.time(), first, ended[1]))
        outcome = "failed: " + first if a.reason else "done"
        self.log.info(f"{printable(a.name)}: {outcome} -> complete/{printable(dest.name)}")

    def reject(self, a: Reject) -> None:
        path = self.root / fs.INBOX / a.name
        fs.set_aside(path)
        reason = f"{NOT_SUBMITTED} {a.reason}"
        fs.write_atomic(path / fs.ERROR, reason + "\n")
        fs.remove_temp_files(path)
        fs.crash_point("rejection-written")
        dest = fs.move(path, self.root / fs.COMPLETE, a.name)
        self.left_inbox.add(a.name)
        self.ended.append(Entry(dest.name, Phase.FAILED, "", time.time(), reason, Cause.REJECTED.value))
        self.log.info(f"{printable(a.name)}: not submitted: {a.reason} -> complete/{printable(dest.name)}")

    def cancel(self, a: Cancel) -> None:
        fs.crash_point("engine-call")
        self.engine.cancel([a.record])
        fs.crash_point("cancel-sent")
        self.log.info(f"{printable(a.name)}: cancel requested; asked the {self.engine.name} engine to end job {a.record.job_id}")

    def note(self, a: Note) -> None:
        (self.log.problem if a.problem else self.log.info)(f"{printable(a.name)}: {a.message}")


def retry_failed(root: Path, log: Log) -> int:
    """--retry-failed: every failed folder in complete/ back to inbox/, under the run lock."""
    from filelock import FileLock, Timeout

    try:
        with FileLock(str(root / fs.LOCK), timeout=120):
            moved = 0
            for name in fs.names(root / fs.COMPLETE):
                path = root / fs.COMPLETE / name
                if path.is_dir() and not path.is_symlink() and os.path.lexists(path / fs.ERROR):
                    dest = fs.move(path, root / fs.INBOX, name)
                    log.info(f"{printable(name)}: failed folder moved back to inbox/{printable(dest.name)} for a retry")
                    print(f"complete/{printable(name)} -> inbox/{printable(dest.name)}")
                    moved += 1
            if not moved:
                print("no failed folder in complete/")
    except Timeout:
        print("reconcile: another run has held the lock for 2 minutes; try again", file=sys.stderr)
        return 1
    return 0


def announce_pause(root: Path, pause: str, log: Log) -> None:
    """Say once, on stderr and in the log, that the breaker opened; note in the log when it closes."""
    marker = root / fs.BREAKER
    if pause and not marker.exists():
        fs.write_atomic(marker, pause + "\n")
        log.problem(f"circuit breaker: {pause}")
    elif not pause and marker.exists():
        marker.unlink()
        log.info("circuit breaker closed: submitting again")


def _with_facts(
    root: Path, p: PendingFolder, obs: Observation, stages: Stages, dependencies: bool, retries: int
) -> PendingFolder:
    """A pending folder with what the plan needs only for a few, read only for them: for a claimed one, where
    its chain stands; for one whose job failed, its earlier attempts, and its chain where that decides (a
    lost job to run again; a job the batch system cancelled, perhaps because its upstream failed)."""
    path = root / fs.PENDING / p.name
    if p.record is None and not p.problem:
        return p._replace(after=stages.upstreams(path))
    status = obs.statuses.get(p.record.job_id) if p.record else None
    if status is None or status.state is not State.FAILED:
        return p
    chain = (status.lost and retries > 0) or (dependencies and status.ending is Ending.CANCELLED)
    return p._replace(attempts=fs.read_attempts(path), after=stages.upstreams(path) if chain else ())


def _job_id(record: Optional[Submitted]) -> str:
    return record.job_id if record is not None else ""


def _recorded(folders: Iterator[InboxFolder], looked: dict[str, InboxFolder]) -> Iterator[InboxFolder]:
    for folder in folders:
        looked[folder.name] = folder
        yield folder


def write_status(
    root: Path,
    before: list[PendingFolder],
    waiting: list[str],
    obs: Observation,
    work: Sweep,
    recent: list[Entry],
    looked: Mapping[str, InboxFolder],
) -> None:
    """status.txt/.json after a sweep, from what it already knows: no listing, no query, complete/ never read."""
    records: dict[str, Optional[Submitted]] = {p.name: p.record for p in before if p.name not in work.left_pending}
    records.update(work.started)
    still = [name for name in waiting if name not in work.left_inbox]
    inbox = [  # the next in line, with why they wait where this run looked
        (st.inbox_entries([looked[name]]) or [Entry(name, Phase.WAITING, "", None)])[0]
        if name in looked
        else Entry(name, Phase.WAITING, "", None)
        for name in still[: st.LISTED_WAITING]
    ]
    inbox = [e._replace(reason=work.waits[e.name]) if e.name in work.waits else e for e in inbox]
    pending = st.pending_entries(root, records, obs, work.started)
    st.write_files(root, inbox + pending, work.ended, recent, time.time(), len(still) - len(inbox))
