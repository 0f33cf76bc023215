"""One sweep of a root: lock, observe the folders and ask the engine once, plan, act, write the status files.

Acting is the only part that changes folders or talks to the batch system; each action is carried out on
its own, so one broken folder never stops the others.
"""

import os
import sys
import time
from pathlib import Path
from typing import Iterator, Mapping, Optional, Sequence

from jobroot import bundle
from jobroot import folders as fs
from jobroot import status as st
from jobroot.act import StopFlag, Sweep
from jobroot.config import Options, UsageError, load_engine
from jobroot.engine import Ending, EngineError, Observation, State
from jobroot.folders import Submitted, printable
from jobroot.log import Log
from jobroot.model import Entry, Phase
from jobroot.observe import Stages, scan_bundles, scan_inbox, scan_pending
from jobroot.packing import BundleFolder
from jobroot.plan import InboxFolder, PendingFolder, breaker, plan


def sweep(root: Path, opts: Options, log: Log, stop: StopFlag, dry_run: bool = False) -> int:
    """One run: 0 when all went well, 1 when something needs a person."""
    if fs.idle(root):
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
        except OSError as e:
            raise UsageError(f"cannot write in {root} ({e.strerror}): its run lock {fs.LOCK} cannot be taken") from None
    try:
        pending = scan_pending(root)
        bundles = scan_bundles(root)
        waiting = fs.names(root / fs.INBOX)
        try:
            obs = engine.observe(*_to_ask(root, pending, bundles, engine.name))
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
        bundling = getattr(engine, "bundling", None) if opts.bundle > 1 else None
        inbox = _recorded(scan_inbox(root, waiting, opts.settle, time.time(), opts.shared_group, stages, bundling), looked)
        recent = st.recent_endings(root)  # read once: the breaker and the status files both need it
        pause = breaker(recent, time.time(), opts.breaker, opts.breaker_cooldown)
        if not dry_run:
            announce_pause(root, pause, log)
        limit = 0 if pause else opts.batch_limit
        ended = _ended_bundles(bundles, obs)
        pending = [_with_facts(root, p, obs, stages, engine.dependencies, opts.retries, ended) for p in pending]
        actions = plan(
            pending, obs, inbox, engine.name, limit, time.time(), engine.dependencies, opts.retries, bundles, opts.bundle
        )
        if dry_run:
            for action in actions:
                print(action.describe())
            return 0
        log.debug(f"sweep: {len(pending)} pending, {len(waiting)} in inbox, {len(actions)} actions")
        work = Sweep(root, engine, log, stop, obs, stages, {b.name: b.record for b in bundles if b.record})
        problems = work.apply(actions)
        try:
            write_status(root, pending, waiting, obs, work, recent, looked)
        except OSError as e:
            log.problem(f"cannot write the status files in {root} ({e.strerror})")
        return 1 if problems or obs.problems else 0
    finally:
        if lock is not None:
            lock.release()


def retry_failed(root: Path, log: Log, dry_run: bool = False, named: Sequence[str] = ()) -> int:
    """--retry-failed: every failed folder in complete/ back to inbox/ (a cancelled one only when named; named:
    only those), under the run lock (dry_run: only say so)."""
    from filelock import FileLock, Timeout

    def wanted(name: str) -> bool:
        path = root / fs.COMPLETE / name
        if not path.is_dir() or path.is_symlink() or not os.path.lexists(path / fs.ERROR):
            return False
        return name in named if named else not st.cancelled(path)

    if dry_run:
        failed = [n for n in fs.names(root / fs.COMPLETE) if wanted(n)]
        for name in failed:
            print(f"complete/{printable(name)} -> inbox/{printable(name)} (or the next free name)")
        if not failed:
            print("no failed folder in complete/")
        return 0
    try:
        with FileLock(str(root / fs.LOCK), timeout=120):
            moved = 0
            for name in fs.names(root / fs.COMPLETE):
                path = root / fs.COMPLETE / name
                if wanted(name):
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


def _to_ask(
    root: Path, pending: Sequence[PendingFolder], bundles: Sequence[BundleFolder], engine: str
) -> tuple[list[Submitted], list[Path]]:
    """What the engine is asked about: every recorded job (a folder's or a bundle's), and every claimed folder
    or bundle whose submission was never recorded (a bundle member is neither: its bundle is asked about)."""
    known = [p.record for p in pending] + [b.record for b in bundles]
    live = [r for r in known if r and r.engine == engine]
    claimed = [root / fs.PENDING / p.name for p in pending if p.record is None and not p.problem and not p.member]
    claimed += [root / fs.BUNDLES / b.name for b in bundles if b.record is None and not b.problem]
    return live, claimed


def _ended_bundles(bundles: Sequence[BundleFolder], obs: Observation) -> frozenset[str]:
    """The bundles whose job the engine reports ended."""
    status = {b.name: obs.statuses.get(b.record.job_id) if b.record else None for b in bundles}
    return frozenset(n for n, s in status.items() if s is not None and s.state in (State.DONE, State.FAILED))


def _with_facts(
    root: Path, p: PendingFolder, obs: Observation, stages: Stages, dependencies: bool, retries: int, ended: frozenset[str]
) -> PendingFolder:
    """A pending folder with what the plan needs only for a few, read only for them: for a claimed one, where
    its chain stands; for one whose job failed, its earlier attempts, and its chain where that decides (a
    lost job to run again; a job the batch system cancelled, perhaps because its upstream failed)."""
    path = root / fs.PENDING / p.name
    if p.member is not None:
        if p.member.member.bundle in ended:  # looked at again now that its runner is gone: what it left is final
            try:
                p = p._replace(member=bundle.look(os.fspath(path)) or p.member)
            except ValueError:
                pass
        # its earlier attempts, should its bundle's ending be its own
        return p._replace(attempts=fs.read_attempts(path)) if retries and p.member and p.member.started else p
    if p.record is None and not p.problem:
        return p._replace(after=stages.upstreams(path))
    status = obs.statuses.get(p.record.job_id) if p.record else None
    if status is None or status.state is not State.FAILED:
        return p
    chain = (status.lost and retries > 0) or (dependencies and status.ending is Ending.CANCELLED)
    return p._replace(attempts=fs.read_attempts(path), after=stages.upstreams(path) if chain else ())


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
    members = {p.name: (p.member, work.bundles.get(p.member.member.bundle)) for p in before if p.member is not None}
    for name, seen in work.noted.items():  # bundled by this run
        records[name] = None
        members[name] = (seen, work.bundles.get(seen.member.bundle))
    pending = st.pending_entries(root, records, obs, {*work.started, *work.bundles_started}, members)
    st.write_files(root, inbox + pending, work.ended, recent, time.time(), len(still) - len(inbox))
