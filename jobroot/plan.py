"""Decide a sweep: the facts about the folders and the engine's answer in, the actions out. Pure: no disk, no clock."""

# No `from __future__ import annotations` here: typing.NamedTuple compiles every string annotation
# at import, ~10 ms per run (measured); real annotation objects cost nothing.

import enum
import time
from typing import Iterable, Mapping, NamedTuple, Optional, Protocol, Sequence

from jobroot.actions import Action, Adopt, Bundle, Cancel, Finish, Forget, Launch, Note, Reject, Retry, Submit, Wait
from jobroot.bundle import Seen
from jobroot.chains import Upstream
from jobroot.engine import Bundling, Ending, Observation, State, Status
from jobroot.folders import Attempt, Submitted, printable
from jobroot.model import Cause
from jobroot.packing import BundleFolder, Packer, judge_member

GRACE = 600.0  # seconds a submitted job may go unreported before it is called a problem
CANCELLED = "The job was cancelled at the user's request (a file named cancel is in its folder)."
NOT_SUBMITTED = "Not submitted:"  # how job_error.txt begins for a folder rejected in inbox/
NOT_RUN = "Not run:"  # how job_error.txt begins for a submitted folder the batch system never ran: its upstream failed


class Verdict(str, enum.Enum):
    """What a look at an inbox folder says (a str, so it reads and compares as its value)."""

    READY = "ready"  # submit it when its turn comes
    WAIT = "wait"  # not yet: no job.sh, still changing, held
    BAD = "bad"  # never runnable as it is: reject it with the reason
    NOTE = "note"  # not a job (a link): say why it is left alone
    SKEWED = "skewed"  # waits, and says why: a change time in the future (the file server's clock is ahead)

    def __str__(self) -> str:
        return self.value


class Waiting(enum.Enum):
    """Why an inbox folder that is not ready waits (Verdict.WAIT)."""

    HELD = "held"  # a file named hold is in it
    NO_SCRIPT = "no job.sh yet"
    SETTLING = "still changing"  # something in it changed less than --settle ago
    VANISHED = "vanished"  # gone while it was looked at
    UPSTREAM = "upstream"  # its after file names jobs that have not ended well yet


# ---------------------------------------------------------------- facts


class PendingFolder(NamedTuple):
    name: str
    record: Optional[Submitted]  # None: claimed, submission not yet recorded
    problem: str = ""  # the record could not be read
    cancel: bool = False  # the user put a file named cancel into the folder
    attempts: tuple[Attempt, ...] = ()  # earlier attempts the infrastructure ended (read where it matters)
    after: tuple[Upstream, ...] = ()  # the jobs its after file names (read where it matters: claimed or failed)
    member: Optional[Seen] = None  # a bundle member (no record of its own): its note, start and ending


class InboxFolder(NamedTuple):
    name: str
    verdict: Verdict
    reason: str = ""
    waiting: Optional[Waiting] = None  # for Verdict.WAIT: why
    since: Optional[float] = None  # the folder's change time, for the status display
    after: tuple[Upstream, ...] = ()  # the jobs its after file names, where each stands
    bundling: Optional[Bundling] = None  # with --bundle: how it may share a scheduler job (None: it may not)


def plan(
    pending: Sequence[PendingFolder],
    obs: Observation,
    inbox: Iterable[InboxFolder],
    engine: str,
    batch_limit: int,
    now: float = 0.0,
    dependencies: bool = False,
    retries: int = 0,
    bundles: Sequence[BundleFolder] = (),
    bundle: int = 1,
) -> list[Action]:
    """Decide every action of one sweep. Pure: facts in, actions out; `inbox` is consumed only as far as needed.

    dependencies: the engine starts a job once jobs it names have ended well (Slurm's afterok), so a
    folder is submitted as soon as every job it waits for has been; otherwise it waits for them to end.
    bundles: the folders in bundles/; bundle: --bundle, the most folders one scheduler job runs.
    """
    rules = Rules(obs, engine, batch_limit, now, dependencies, retries, {b.name: b for b in bundles})
    rules, actions = _bundle_actions(rules, pending, bundles)
    starts = sum(isinstance(a, Launch) for a in actions)  # launches and retries: each is a start, against limit and room
    for p in pending:
        action = rules.pending(p, starts)
        if action is not None:
            actions.append(action)
            starts += isinstance(action, (Launch, Retry))
    room = (batch_limit if obs.room is None else min(batch_limit, obs.room)) - starts
    if room <= 0:
        return actions
    submitted: set[str] = set()
    packer = Packer(bundle)
    for folder in inbox:
        if folder.verdict == Verdict.BAD:
            actions.append(Reject(folder.name, folder.reason))
        elif folder.verdict in (Verdict.NOTE, Verdict.SKEWED):
            actions.append(Note(folder.name, folder.reason))
        elif folder.verdict == Verdict.READY:
            action = chained(folder, obs, submitted, dependencies, engine)
            if bundle > 1 and folder.bundling is not None and isinstance(action, Submit) and not action.after:
                full = packer.add(folder.name, folder.bundling)  # a bundled folder is never handed to a chain
                if full is None:
                    if packer.waiting >= room * bundle:
                        break
                    continue
                action = full
            elif isinstance(action, Submit):
                submitted.add(folder.name)
            actions.append(action)
            if isinstance(action, (Submit, Bundle)):
                room -= 1
                if room == 0:
                    break
    return actions + packer.flush(room)


def _bundle_actions(
    rules: "Rules", pending: Sequence[PendingFolder], bundles: Sequence[BundleFolder]
) -> tuple["Rules", list[Action]]:
    """What each bundle's folder needs (start, adopt, remove), and the rules told which bundles are idle: every
    folder of theirs is here and none was started."""
    members: dict[str, list[tuple[int, str]]] = {}
    unstarted: dict[str, list[int]] = {}  # bundle -> places of its members here not started, and how many it has
    for p in pending:
        if p.member is not None:
            m = p.member.member
            members.setdefault(m.bundle, []).append((m.place, p.name))
            unstarted.setdefault(m.bundle, [m.of]).extend([m.place] if not p.member.started else [])
    rules = rules._replace(idle=frozenset(b for b, (of, *places) in unstarted.items() if len(places) == of))
    found = (rules.bundle(b, tuple(n for _, n in sorted(members.get(b.name, [])))) for b in bundles)
    return rules, [a for a in found if a is not None]


class Rules(NamedTuple):
    """The sweep's settings and the engine's answer, for the decision on each pending folder."""

    obs: Observation
    engine: str
    batch_limit: int
    now: float
    dependencies: bool
    retries: int
    bundles: Mapping[str, BundleFolder]
    idle: frozenset[str] = frozenset()  # bundles with every folder here and none started

    def pending(self, p: PendingFolder, starts: int) -> Optional[Action]:
        """What to do with one pending folder; starts: launches and retries decided so far (each is a start)."""
        obs = self.obs
        if p.problem:
            return Note(p.name, f"{p.problem}; fix or remove it by hand", problem=True)
        if p.member is not None:
            return self.member(p, p.member, starts)
        if p.record is None:
            return self.claimed(p)
        if p.record.engine != self.engine:
            follow = f"submitted through the {p.record.engine} engine; run with -e {p.record.engine} to follow it"
            return Note(p.name, follow, problem=True)
        if p.name in obs.found:  # the recorded id was another job's: record the right one
            return Adopt(p.name, obs.found[p.name], obs.submitted.get(p.name))
        status = obs.statuses.get(p.record.job_id)
        if p.cancel and status is not None and status.state is State.ACTIVE:
            return Cancel(p.name, p.record)
        if status is None or status.state is State.UNKNOWN:
            return self.unreported(p.name, p.record, "job")
        if status.state is State.DONE:
            return Finish(p.name)
        if status.state is State.FAILED:
            return self.failed(p, p.record, status, starts)
        return None  # active: keep waiting

    def member(self, p: PendingFolder, seen: Seen, starts: int) -> Optional[Action]:
        """A folder a bundle runs: its own verdict as soon as it has one; back to waiting if the bundle never started it."""
        bundle = self.bundles.get(seen.member.bundle)
        record = bundle.record if bundle is not None else None
        status = self.obs.statuses.get(record.job_id) if record is not None else None
        judged = judge_member(seen, p.cancel, bundle, status, self.engine, seen.member.bundle in self.idle)
        if judged is None or not isinstance(judged, Status):
            return judged._replace(name=p.name) if judged is not None else None
        if judged.state is State.DONE:
            return Finish(p.name)
        gone = Submitted(self.engine, record.job_id if record else "", record.submitted if record else 0.0, "")
        return self.failed(p, gone, judged, starts)

    def bundle(self, b: BundleFolder, members: tuple[str, ...]) -> Optional[Action]:
        """A bundle's own folder: start it, record the job found for it, or remove it once it has ended and runs no one."""
        if b.problem:
            return Note(f"bundles/{b.name}", f"{b.problem}; fix or remove it by hand", problem=True)
        if b.name in self.obs.found:
            return Adopt(b.name, self.obs.found[b.name], self.obs.submitted.get(b.name), bundle=True)
        if b.record is None:
            if b.name in self.obs.unsure:
                return None
            if not members:
                return Forget(b.name)  # made by a run killed before any member was noted: nothing to run
            return Launch(b.name, members=members) if self.batch_limit > 0 else None
        status = self.obs.statuses.get(b.record.job_id)
        if status is not None and status.state in (State.DONE, State.FAILED) and not members:
            return Forget(b.name, b.record if status.stuck else None)
        if status is not None and status.state in (State.DONE, State.FAILED) and b.name in self.idle:
            why = f"bundle job {b.record.job_id} ended without starting any of its {len(members)} folders; they run alone"
            return Note(f"bundles/{b.name}", f"{why} (its output, in bundles/{b.name}/, may say why)", problem=True)
        if status is not None and status.state is not State.UNKNOWN:
            return None
        return self.unreported(f"bundles/{b.name}", b.record, "bundle job")

    def unreported(self, name: str, record: Submitted, what: str) -> Note:
        """A job the engine did not report: waited for, and said to a person once it has been so too long."""
        late = self.now - record.submitted > GRACE
        message = f"{what} {record.job_id} not reported by the {self.engine} engine; waiting"
        return Note(name, message + (" (for a long time now: check it)" if late else ""), problem=late)

    def claimed(self, p: PendingFolder) -> Optional[Action]:
        """A folder claimed by a run that never recorded a job id: adopt the job the engine found, or start it."""
        if p.name in self.obs.found:
            return Adopt(p.name, self.obs.found[p.name], self.obs.submitted.get(p.name))
        if p.name in self.obs.unsure:
            return None
        if p.cancel:
            return Finish(p.name, "The job was cancelled at the user's request before it was submitted.", cause=Cause.CANCELLED)
        if self.batch_limit <= 0:  # 0: collect results only, start nothing
            return None
        up = links(p.after, self.obs, set(), self.dependencies, self.engine)  # its chain still holds
        if up.failed:
            return Finish(p.name, f"{NOT_RUN} {up.failed}", cause=Cause.UPSTREAM)
        if up.waits:
            return Note(p.name, f"waits for {'; '.join(up.waits)} before it is started")
        return Launch(p.name, up.handed)

    def failed(self, p: PendingFolder, record: Submitted, status: Status, starts: int) -> Optional[Action]:
        earlier = [a for a in p.attempts if a.job_id != record.job_id]
        chain = links(p.after, self.obs, set(), self.dependencies, self.engine)
        reason, cause = status.reason, Cause.OWN
        if status.lost and not p.cancel and len(earlier) < self.retries and not chain.failed:
            if chain.waits:
                return Note(p.name, f"waits for {'; '.join(chain.waits)} before it is submitted again")
            if starts >= self.batch_limit or (self.obs.room is not None and starts >= self.obs.room):
                return None  # a retry is a start: it waits for room
            return Retry(p.name, record, status.reason.split("\n", 1)[0], chain.handed)
        if p.cancel:
            reason, cause = f"{CANCELLED}\n{reason}", Cause.CANCELLED
        elif chain.failed and (status.lost or (self.dependencies and status.ending is Ending.CANCELLED)):
            # never run again, or ended unstarted by the batch system, for a job it waits for that failed
            reason, cause = f"{NOT_RUN} {chain.failed}\n{reason}", Cause.UPSTREAM
        elif chain.lost and self.dependencies and status.ending is Ending.CANCELLED:
            reason, cause = f"{NOT_RUN} {chain.lost}\n{reason}", Cause.UPSTREAM
        return Finish(p.name, reason + _history(earlier, self.retries), record if status.stuck else None, cause)


class Links(NamedTuple):
    """Where a folder's chain stands: the jobs to hand to the batch system, what it waits for, or a failure."""

    handed: tuple[str, ...] = ()  # upstream folders the batch system is to wait for (dependencies)
    waits: tuple[str, ...] = ()  # what it still waits for, in words
    failed: str = ""  # `it runs after X, which failed: why`: the folder can never run
    lost: str = ""  # the same words for an upstream the infrastructure ended (--retries may run it again)


def links(after: Sequence[Upstream], obs: Observation, submitted: set[str], in_engine: bool, engine: str) -> Links:
    """The one chain rule, for an inbox folder and for a claimed one alike (submitted: inbox folders this run
    submits, which the batch system can be told to wait for)."""
    handed: list[str] = []
    waits: list[str] = []
    lost = ""
    for up in after:
        where = f"{printable(up.name)}" + (f" ({printable(up.folder)})" if up.folder and up.folder != up.name else "")
        if up.where == "complete":
            if up.failed:
                return Links(failed=_upstream_failed(where, up.failed))
            continue  # ended well
        if up.where == "nowhere":
            waits.append(f"{where}, which is nowhere yet")
        elif up.where == "inbox":
            if in_engine and up.folder in submitted:
                handed.append(up.folder)
            else:
                waits.append(f"{where} (waiting in inbox/)")
        else:
            status = obs.statuses.get(up.record.job_id) if up.record and up.record.engine == engine else None
            if status is not None and status.state is State.DONE:
                continue
            if status is not None and status.state is State.FAILED and not status.lost:
                return Links(failed=_upstream_failed(where, status.reason.split("\n", 1)[0]))
            if in_engine and status is not None and status.state is State.ACTIVE:
                handed.append(up.folder)
            elif status is not None and status.state is State.FAILED:  # lost: --retries may run it again
                waits.append(f"{where} (ended by the infrastructure; it may run again)")
                lost = lost or _upstream_failed(where, status.reason.split("\n", 1)[0])
            else:
                waits.append(f"{where} ({status.phase if status is not None and status.phase else 'in pending/'})")
    return Links(tuple(handed), tuple(waits), lost=lost)


def chained(folder: InboxFolder, obs: Observation, submitted: set[str], in_engine: bool, engine: str) -> Action:
    """A ready inbox folder with an after file: submit it (handing on the jobs to wait for), let it wait, or fail it fast."""
    up = links(folder.after, obs, submitted, in_engine, engine)
    if up.failed:
        return Reject(folder.name, up.failed)
    if up.waits:
        return Wait(folder.name, "waiting for " + "; ".join(up.waits))
    return Submit(folder.name, up.handed)


def _history(earlier: Sequence[Attempt], retries: int) -> str:
    """For job_error.txt: the earlier attempts of a job, each ended by the infrastructure."""
    if not earlier:
        return ""
    lines = "\n".join(f"attempt {i}: job {a.job_id}: {a.reason}" for i, a in enumerate(earlier, 1))
    return f"\nThis was attempt {len(earlier) + 1}; the infrastructure ended the earlier ones (--retries {retries}):\n{lines}"


def _upstream_failed(where: str, why: str) -> str:
    """job_error.txt's reason for a folder whose upstream failed: Reject prefixes it with NOT_SUBMITTED."""
    return f"it runs after {where}, which failed: {why}"


class Ended(Protocol):
    """A recent ending, as far as the breaker needs it (model.Entry is one)."""

    @property
    def state(self) -> str: ...
    @property
    def since(self) -> Optional[float]: ...
    @property
    def reason(self) -> str: ...
    @property
    def cause(self) -> str: ...


def breaker(recent: Sequence[Ended], now: float, failures: int, cooldown: float) -> str:
    """Why submitting should pause now, or "" when it should not (pure: recent endings in, newest first).

    Open when the last `failures` jobs to end all failed, the newest less than `cooldown` seconds ago
    and all within twice that. Only the jobs' own failures count: not rejected folders, jobs never run for
    an upstream's failure, or cancels by the user (nor endings recorded before causes were).
    """
    if failures <= 0:
        return ""
    counted = [e for e in recent if e.state not in ("failed", "cancelled") or (e.state == "failed" and e.cause == Cause.OWN)]
    counted = counted[:failures]
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
