"""Acting on a plan: the sweep's Actor carries out each decided action, the only part of a sweep that moves
folders or talks to the batch system. Each action is carried out on its own: one broken folder never stops
the others.
"""

import os
import shutil
import time
from pathlib import Path
from typing import Mapping, Optional, Sequence, cast

from jobroot import bundle
from jobroot import folders as fs
from jobroot.actions import (
    Action,
    Adopt,
    Bundle,
    Cancel,
    Finish,
    Forget,
    Launch,
    Note,
    Reject,
    Retry,
    Submit,
    Unbundle,
    Wait,
    Withdraw,
)
from jobroot.engine import Bundles, Engine, EngineError, Observation, SubmitRefused, SubmitUnknown
from jobroot.folders import Submitted, printable
from jobroot.log import Log
from jobroot.model import Cause, Entry, Phase
from jobroot.observe import Stages
from jobroot.plan import CANCELLED, NOT_SUBMITTED


class StopFlag:
    requested = False

    def request(self, *_: object) -> None:
        self.requested = True


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
        bundles: Optional[Mapping[str, Submitted]] = None,
    ) -> None:
        self.root, self.engine, self.log, self.stop = root, engine, log, stop
        self.bundles = dict(bundles or {})  # bundle name -> its record, as this run found or made them
        self.bundles_started: set[str] = set()  # bundles this run submitted or adopted
        self.noted: dict[str, bundle.Seen] = {}  # pending name -> its note, for the folders this run bundled
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
            if self.refused and isinstance(action, (Submit, Launch, Bundle)):
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
        if a.members:
            self._start_bundle(a.name, a.members)
            return
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

    def _start(self, path: Path, after: tuple[str, ...] = (), members: tuple[str, ...] = ()) -> Optional[str]:
        """Start the job in path (after: ids of jobs the batch system is to wait for; members: the folders
        a bundle runs); its id, or None."""
        name = path.name
        fs.crash_point("engine-call")
        try:
            job_id = self.engine.submit(path, after)
        except SubmitRefused as e:
            if e.permanent and members:
                self._split(name, members, f"the {self.engine.name} engine refused it: {e}")
            elif e.permanent:
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
        record = fs.write_record(path, self.engine.name, job_id, time.time())
        if path.parent.name == fs.BUNDLES:
            self.bundles[name] = record
            self.bundles_started.add(name)
        else:
            self.started[name] = record
        chained = f" (to start once job {', '.join(after)} ended well)" if after else ""
        if not members:
            self.log.info(f"{printable(name)}: submitted as {self.engine.name} job {job_id}{chained}")
        fs.crash_point("recorded")
        return job_id

    def adopt(self, a: Adopt) -> None:
        submitted = a.submitted if a.submitted is not None else time.time()
        path = self.root / (fs.BUNDLES if a.bundle else fs.PENDING) / a.name
        record = fs.write_record(path, self.engine.name, a.job_id, submitted)
        if a.bundle:
            self.bundles[a.name] = record
            self.bundles_started.add(a.name)
        else:
            self.started[a.name] = record
        fs.crash_point("adopted")
        self.log.info(f"{printable(a.name)}: found running as {self.engine.name} job {a.job_id}; recorded")

    def finish(self, a: Finish) -> None:
        path = self.root / fs.PENDING / a.name
        if a.end is not None:  # the batch system holds it, never to start it: end it, its verdict kept with it
            fs.crash_point("engine-call")
            self.engine.cancel([a.end], a.reason)
        if a.cause is Cause.CANCELLED:
            fs.write_atomic(path / fs.CANCELLED, "at the user's request (a file named cancel)\n")
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
            member = bundle.look(os.fspath(dest)) if record is None else None
        except ValueError:
            record = member = None
        job_id = record.job_id if record else _job_id(self.bundles.get(member.member.bundle)) if member else ""
        phase = Phase.CANCELLED if a.cause is Cause.CANCELLED else Phase.FAILED
        ended = (phase, a.cause.value) if a.reason else (Phase.DONE, "")
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

    # ---- bundles (--bundle): one scheduler job for several folders, each still its own job

    def bundle(self, a: Bundle) -> None:
        """Move each folder to pending/ with a note naming the bundle, then write the runner and submit it."""
        name = bundle.new_name(time.time())
        (self.root / fs.BUNDLES).mkdir(exist_ok=True)
        (self.root / fs.BUNDLES / name).mkdir()
        fs.crash_point("bundle-made")
        members = []
        for place, folder in enumerate(a.names, 1):
            src = self.root / fs.INBOX / folder
            fs.set_aside(src)
            dest = fs.move(src, self.root / fs.PENDING, folder)
            self.left_inbox.add(folder)
            note = bundle.Member(name, place, len(a.names))
            bundle.write_member(dest, note)
            self.noted[dest.name] = bundle.Seen(note)
            fs.crash_point("member-noted")
            members.append(dest.name)
        self._start_bundle(name, tuple(members))

    def _start_bundle(self, name: str, members: tuple[str, ...]) -> None:
        """Write the bundle's runner (unless a killed run did) and submit it like a job folder."""
        home = self.root / fs.BUNDLES / name
        if not (home / fs.SCRIPT).exists():
            paths = [Path(os.path.abspath(self.root / fs.PENDING / m)) for m in members]  # as the node sees them
            script = paths[0] / fs.SCRIPT
            engine = cast(Bundles, self.engine)  # only an engine with bundling() gets bundles to start
            form = engine.bundling(script)
            header = engine.bundle_header(script, len(paths))
            fs.write_atomic(home / fs.SCRIPT, bundle.runner(header, name, paths, form.limit if form else None))
            fs.crash_point("runner-written")
        job_id = self._start(home, members=members)
        if job_id:
            shown = ", ".join(map(printable, members))
            self.log.info(f"bundles/{name}: {len(members)} folders run by {self.engine.name} job {job_id}: {shown}")

    def _split(self, name: str, members: tuple[str, ...], why: str) -> None:
        """A bundle the batch system refuses for good (too big for the site, or for any job): never its members'
        failure. They wait again, at most half as many to a bundle; alone, each gets the refusal as its own."""
        most = max(1, len(members) // 2)
        self.log.info(f"bundles/{name}: {why}; its {len(members)} folders wait again, at most {most} to a bundle")
        for member in members:
            path = self.root / fs.PENDING / member
            if os.path.lexists(path / fs.MEMBER):
                fs.write_atomic(path / fs.MOST, f"{most}\n")
                self.unbundle(Unbundle(member, f"its bundle was refused; it waits for a bundle of at most {most}"))
        shutil.rmtree(self.root / fs.BUNDLES / name)

    def unbundle(self, a: Unbundle) -> None:
        path = self.root / fs.PENDING / a.name
        if not bundle.take(path, "returned"):  # a runner has it after all (or a killed run of this took it)
            seen = bundle.look(os.fspath(path))
            if seen is None or seen.started != "returned":
                self.log.info(f"{printable(a.name)}: its bundle started it after all; it is judged on the next run")
                return
        fs.crash_point("returned")
        if a.alone:
            fs.write_atomic(path / fs.MOST, "1\n")
        os.unlink(path / fs.MEMBER)  # no bundle's member now (a run killed here leaves it claimed: it runs alone)
        os.unlink(path / fs.STARTED)
        fs.crash_point("unbundled")
        dest = fs.move(path, self.root / fs.INBOX, a.name)
        self.left_pending.add(a.name)
        self.log.info(f"{printable(a.name)}: {a.why} -> inbox/{printable(dest.name)}")

    def withdraw(self, a: Withdraw) -> None:
        if bundle.take_for_cancel(self.root / fs.PENDING / a.name):
            self.finish(Finish(a.name, f"{CANCELLED}\nIts bundle had not started it.", cause=Cause.CANCELLED))
        else:
            self.log.info(f"{printable(a.name)}: its bundle has just started it; the bundle's runner ends it")

    def forget(self, a: Forget) -> None:
        if a.end:  # held, never to start (an error state): end it, or it stays in the queue for good
            fs.crash_point("engine-call")
            self.engine.cancel([a.end], "a bundle the batch system can never start, whose folders run elsewhere")
        shutil.rmtree(self.root / fs.BUNDLES / a.name)
        self.bundles.pop(a.name, None)
        self.log.debug(f"bundles/{a.name}: removed (its job ended; every member has its verdict)")


def _job_id(record: Optional[Submitted]) -> str:
    return record.job_id if record is not None else ""
