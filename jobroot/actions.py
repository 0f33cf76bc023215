"""The actions a plan decides, as values: each hands itself to the matching method of an Actor (the
sweep, or a dry run's printer), so mypy checks every pairing; describe() is the line --dry-run prints."""

# No `from __future__ import annotations` here: typing.NamedTuple compiles every string annotation
# at import, ~10 ms per run (measured); real annotation objects cost nothing.

from typing import NamedTuple, Optional, Protocol, Union

from jobroot.folders import Submitted, printable
from jobroot.model import Cause


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
    def bundle(self, a: "Bundle") -> None: ...
    def unbundle(self, a: "Unbundle") -> None: ...
    def withdraw(self, a: "Withdraw") -> None: ...
    def forget(self, a: "Forget") -> None: ...


class Submit(NamedTuple):  # inbox -> pending, then start it
    name: str
    after: tuple[str, ...] = ()  # upstream folders (submitted, still active) the batch system is to wait for

    def to(self, actor: Actor) -> None:
        actor.submit(self)

    def describe(self) -> str:
        chained = f", to start once {', '.join(map(printable, self.after))} ended well" if self.after else ""
        return f"submit inbox/{printable(self.name)} (moving it to pending/{chained})"


class Launch(NamedTuple):  # a claimed pending folder (or bundle: members given) that was never started
    name: str
    after: tuple[str, ...] = ()  # upstream folders (submitted, still active) the batch system is to wait for
    members: tuple[str, ...] = ()  # for a bundle (bundles/NAME): the pending folders it runs, in place order

    def to(self, actor: Actor) -> None:
        actor.launch(self)

    def describe(self) -> str:
        where = (
            f"bundles/{self.name} (running {len(self.members)} folders)" if self.members else f"pending/{printable(self.name)}"
        )
        return f"submit {where} (claimed by an earlier run, never started)"


class Adopt(NamedTuple):  # a claimed pending folder (or bundle) the engine did start: record its id
    name: str
    job_id: str
    submitted: Optional[float] = None  # when the batch system received it, if it says
    bundle: bool = False  # name is a bundle's, in bundles/

    def to(self, actor: Actor) -> None:
        actor.adopt(self)

    def describe(self) -> str:
        return f"record job {self.job_id} for {'bundles' if self.bundle else 'pending'}/{printable(self.name)}"


class Finish(NamedTuple):  # pending -> complete; reason set for a failure
    name: str
    reason: str = ""
    end: Optional[Submitted] = None  # a job the batch system still holds but will never start: end it first
    cause: Cause = Cause.OWN  # for a failure: whose

    def to(self, actor: Actor) -> None:
        actor.finish(self)

    def describe(self) -> str:
        verdict = f" with job_error.txt: {self.reason.splitlines()[0]}" if self.reason else ""
        first = f" (ending job {self.end.job_id} first)" if self.end else ""
        return f"move pending/{printable(self.name)} to complete/{verdict}{first}"


class Cancel(NamedTuple):  # the user asked: tell the engine; the folder moves once the job has ended
    name: str
    record: Submitted

    def to(self, actor: Actor) -> None:
        actor.cancel(self)

    def describe(self) -> str:
        return f"cancel job {self.record.job_id} of pending/{printable(self.name)} (a file named cancel is in it)"


class Reject(NamedTuple):  # inbox -> complete with job_error.txt, never submitted
    name: str
    reason: str

    def to(self, actor: Actor) -> None:
        actor.reject(self)

    def describe(self) -> str:
        return f"move inbox/{printable(self.name)} to complete/ with job_error.txt: {self.reason}"


class Note(NamedTuple):  # nothing to do but say so; problem=True goes to stderr too
    name: str
    message: str
    problem: bool = False

    def to(self, actor: Actor) -> None:
        actor.note(self)

    def describe(self) -> str:
        return f"{printable(self.name)}: {self.message}"


class Retry(NamedTuple):  # the infrastructure ended the job: note the attempt, set its files aside, submit again
    name: str
    record: Submitted
    reason: str  # how this attempt ended
    after: tuple[str, ...] = ()  # as Launch's

    def to(self, actor: Actor) -> None:
        actor.retry(self)

    def describe(self) -> str:
        return f"submit pending/{printable(self.name)} again: job {self.record.job_id} was ended by the infrastructure"


class Wait(NamedTuple):  # an inbox folder waits for the jobs its after file names: said in the status files
    name: str
    reason: str

    def to(self, actor: Actor) -> None:
        actor.wait(self)

    def describe(self) -> str:
        return f"{printable(self.name)}: {self.reason}"


class Bundle(NamedTuple):  # inbox -> pending for each, then one scheduler job runs them one after another
    names: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.names[0]

    def to(self, actor: Actor) -> None:
        actor.bundle(self)

    def describe(self) -> str:
        return f"submit {', '.join(f'inbox/{printable(n)}' for n in self.names)} as one bundle (moving them to pending/)"


class Unbundle(NamedTuple):  # a member its bundle never started: back to inbox/ to run in a later one
    name: str
    why: str
    alone: bool = False  # its bundle started none of its folders: from now on it runs as a job of its own

    def to(self, actor: Actor) -> None:
        actor.unbundle(self)

    def describe(self) -> str:
        return f"move pending/{printable(self.name)} back to inbox/: {self.why}"


class Withdraw(NamedTuple):  # a cancel file in a member its bundle has not started: it never starts
    name: str

    def to(self, actor: Actor) -> None:
        actor.withdraw(self)

    def describe(self) -> str:
        return f"cancel pending/{printable(self.name)} before its bundle starts it (a file named cancel is in it)"


class Forget(NamedTuple):  # a bundle whose job has ended and which runs no member any more: remove its folder
    name: str
    end: Optional[Submitted] = None  # a bundle the batch system holds but will never start: end it first

    def to(self, actor: Actor) -> None:
        actor.forget(self)

    def describe(self) -> str:
        return f"remove bundles/{self.name}: its job ended and every member has its verdict"


Action = Union[Submit, Launch, Adopt, Finish, Cancel, Reject, Note, Wait, Retry, Bundle, Unbundle, Withdraw, Forget]
