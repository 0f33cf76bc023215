"""Decide a sweep: the facts about the folders and the engine's answer in, the actions out. Pure: no disk, no clock."""

# No `from __future__ import annotations` here: typing.NamedTuple compiles every string annotation
# at import, ~10 ms per run (measured); real annotation objects cost nothing.

import enum
import time
from typing import Iterable, NamedTuple, Optional, Protocol, Sequence, Union

from jobroot.chains import Upstream
from jobroot.engine import Observation, State
from jobroot.folders import Attempt, Submitted, show

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


# ---------------------------------------------------------------- facts


class PendingFolder(NamedTuple):
    name: str
    record: Optional[Submitted]  # None: claimed, submission not yet recorded
    problem: str = ""  # the record could not be read
    cancel: bool = False  # the user put a file named cancel into the folder
    attempts: tuple[Attempt, ...] = ()  # earlier attempts the infrastructure ended (read where it matters)


class InboxFolder(NamedTuple):
    name: str
    verdict: Verdict
    reason: str = ""
    since: Optional[float] = None  # the folder's change time, for the status display
    after: tuple[Upstream, ...] = ()  # the jobs its after file names, where each stands


# ---------------------------------------------------------------- actions
# Each action hands itself to the matching method of an Actor (the sweep, or a dry run's printer), so
# mypy checks every pairing; describe() is the line --dry-run prints.


class Actor(Protocol):
    def submit(self, a: "Submit") -> None: ...
    def launch(self, a: "Launch") -> None: ...
    def adopt(self, a: "Adopt") -> None: ...
    def finish(self, a: "Finish") -> None: ...
    def cancel(self, a: "Cancel") -> None: ...
    def reject(self, a: "Reject") -> None: ...
    def note(self, a: "Note") -> None: ...
    def wait(self, a: "Wait") -> None: ...
    def retry(self, a: "Retry") -> None: ...


class Submit(NamedTuple):  # inbox -> pending, then start it
    name: str
    after: tuple[str, ...] = ()  # upstream folders (submitted, still active) the batch system is to wait for

    def to(self, actor: Actor) -> None:
        actor.submit(self)

    def describe(self) -> str:
        chained = f", to start once {', '.join(map(show, self.after))} ended well" if self.after else ""
        return f"submit inbox/{show(self.name)} (moving it to pending/{chained})"


class Launch(NamedTuple):  # a claimed pending folder that was never started
    name: str

    def to(self, actor: Actor) -> None:
        actor.launch(self)

    def describe(self) -> str:
        return f"submit pending/{show(self.name)} (claimed by an earlier run, never started)"


class Adopt(NamedTuple):  # a claimed pending folder the engine did start: record its id
    name: str
    job_id: str
    submitted: Optional[float] = None  # when the batch system received it, if it says

    def to(self, actor: Actor) -> None:
        actor.adopt(self)

    def describe(self) -> str:
        return f"record job {self.job_id} for pending/{show(self.name)}"


class Finish(NamedTuple):  # pending -> complete; reason set for a failure
    name: str
    reason: str = ""
    end: Optional[Submitted] = None  # a job the batch system still holds but will never start: end it first

    def to(self, actor: Actor) -> None:
        actor.finish(self)

    def describe(self) -> str:
        verdict = f" with job_error.txt: {self.reason.splitlines()[0]}" if self.reason else ""
        first = f" (ending job {self.end.job_id} first)" if self.end else ""
        return f"move pending/{show(self.name)} to complete/{verdict}{first}"


class Cancel(NamedTuple):  # the user asked: tell the engine; the folder moves once the job has ended
    name: str
    record: Submitted

    def to(self, actor: Actor) -> None:
        actor.cancel(self)

    def describe(self) -> str:
        return f"cancel job {self.record.job_id} of pending/{show(self.name)} (a file named cancel is in it)"


class Reject(NamedTuple):  # inbox -> complete with job_error.txt, never submitted
    name: str
    reason: str

    def to(self, actor: Actor) -> None:
        actor.reject(self)

    def describe(self) -> str:
        return f"move inbox/{show(self.name)} to complete/ with job_error.txt: {self.reason}"


class Note(NamedTuple):  # nothing to do but say so; problem=True goes to stderr too
    name: str
    message: str
    problem: bool = False

    def to(self, actor: Actor) -> None:
        actor.note(self)

    def describe(self) -> str:
        return f"{show(self.name)}: {self.message}"


class Retry(NamedTuple):  # the infrastructure ended the job: note the attempt, set its files aside, submit again
    name: str
    record: Submitted
    reason: str  # how this attempt ended

    def to(self, actor: Actor) -> None:
        actor.retry(self)

    def describe(self) -> str:
        return f"submit pending/{show(self.name)} again: job {self.record.job_id} was ended by the infrastructure"


class Wait(NamedTuple):  # an inbox folder waits for the jobs its after file names: said in the status files
    name: str
    reason: str

    def to(self, actor: Actor) -> None:
        actor.wait(self)

    def describe(self) -> str:
        return f"{show(self.name)}: {self.reason}"


Action = Union[Submit, Launch, Adopt, Finish, Cancel, Reject, Note, Wait, Retry]


def plan(
    pending: Sequence[PendingFolder],
    obs: Observation,
    inbox: Iterable[InboxFolder],
    engine: str,
    batch_limit: int,
    now: float = 0.0,
    chains_in_engine: bool = False,
    retries: int = 0,
) -> list[Action]:
    """Decide every action of one sweep. Pure: facts in, actions out; `inbox` is consumed only as far as needed.

    chains_in_engine: the engine starts a job once jobs it names have ended well (Slurm's afterok), so a
    folder is submitted as soon as every job it waits for has been; otherwise it waits for them to end.
    """
    actions: list[Action] = []
    starts = 0
    for p in pending:
        if p.problem:
            actions.append(Note(p.name, f"{p.problem}; fix or remove it by hand", problem=True))
        elif p.record is None:
            if p.name in obs.found:
                actions.append(Adopt(p.name, obs.found[p.name], obs.submitted.get(p.name)))
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
            actions.append(Adopt(p.name, obs.found[p.name], obs.submitted.get(p.name)))
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
                earlier = [a for a in p.attempts if a.job_id != p.record.job_id]
                if status.lost and not p.cancel and len(earlier) < retries:
                    if starts < batch_limit and (obs.room is None or starts < obs.room):  # a retry is a start
                        actions.append(Retry(p.name, p.record, status.reason.split("\n", 1)[0]))
                        starts += 1
                else:
                    reason = f"{CANCELLED}\n{status.reason}" if p.cancel else status.reason
                    actions.append(Finish(p.name, reason + _history(earlier, retries), p.record if status.stuck else None))
    room = batch_limit - starts
    if obs.room is not None:
        room = min(room, obs.room - starts)
    if room <= 0:
        return actions
    submitted: set[str] = set()
    for folder in inbox:
        if folder.verdict == Verdict.BAD:
            actions.append(Reject(folder.name, folder.reason))
        elif folder.verdict in (Verdict.NOTE, Verdict.SKEWED):
            actions.append(Note(folder.name, folder.reason))
        elif folder.verdict == Verdict.READY:
            action = chained(folder, obs, submitted, chains_in_engine, engine)
            actions.append(action)
            if isinstance(action, Submit):
                submitted.add(folder.name)
                room -= 1
                if room == 0:
                    break
    return actions


def chained(folder: InboxFolder, obs: Observation, submitted: set[str], in_engine: bool, engine: str) -> Action:
    """A ready folder with an after file: submit it (handing on the jobs to wait for), let it wait, or fail it fast."""
    handed: list[str] = []
    waits: list[str] = []
    for up in folder.after:
        where = f"{show(up.name)}" + (f" ({show(up.folder)})" if up.folder and up.folder != up.name else "")
        if up.where == "complete":
            if up.failed:
                return Reject(folder.name, _upstream_failed(where, up.failed))
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
                return Reject(folder.name, _upstream_failed(where, status.reason.split("\n", 1)[0]))
            if in_engine and status is not None and status.state is State.ACTIVE:
                handed.append(up.folder)
            elif status is not None and status.state is State.FAILED:  # lost: --retries may run it again
                waits.append(f"{where} (ended by the infrastructure; it may run again)")
            else:
                waits.append(f"{where} ({status.phase if status is not None and status.phase else 'in pending/'})")
    if waits:
        return Wait(folder.name, "waiting for " + "; ".join(waits))
    return Submit(folder.name, tuple(handed))


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
    """A recent ending, as far as the breaker needs it (status.Entry is one)."""

    @property
    def state(self) -> str: ...
    @property
    def since(self) -> Optional[float]: ...
    @property
    def reason(self) -> str: ...


def breaker(recent: Sequence[Ended], now: float, failures: int, cooldown: float) -> str:
    """Why submitting should pause now, or "" when it should not (pure: recent endings in, newest first).

    Open when the last `failures` jobs to end all failed, the newest less than `cooldown` seconds ago
    and all within twice that. Rejected folders and cancels by the user are not failures of the jobs.
    """
    if failures <= 0:
        return ""
    counted = [e for e in recent if not e.reason.startswith((NOT_SUBMITTED, NOT_RUN, CANCELLED))][:failures]
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
