"""Bundles in the plan (pure): which waiting folders share a scheduler job, and each member's own verdict.

The protocol itself (the bundle folder, the member's files, the runner) is jobroot/bundle.py.
"""

# No `from __future__ import annotations` here: typing.NamedTuple compiles every string annotation
# at import, ~10 ms per run (measured); real annotation objects cost nothing.

from typing import NamedTuple, Optional, Union

from jobroot.actions import Action, Bundle, Submit, Unbundle, Withdraw
from jobroot.bundle import Seen, describe
from jobroot.engine import Bundling, Ending, State, Status
from jobroot.folders import Submitted


class BundleFolder(NamedTuple):
    """A folder in bundles/ as a sweep finds it."""

    name: str
    record: Optional[Submitted]  # None: not submitted yet, or claimed by a run that never recorded it
    problem: str = ""  # the record could not be read


class Packer:
    """Groups the ready folders of one sweep, in name order, into bundles of at most `size` with one key each."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.open: dict[tuple[str, int], list[str]] = {}  # (key, cap) -> names, in the order the first of each came

    def add(self, name: str, bundling: Bundling) -> Optional[Action]:
        """Take a folder in; the bundle it fills, if it does (a plain job, when a refusal left it alone). Folders
        a refused bundle capped go only with folders of the same cap."""
        cap = min(self.size, bundling.most or self.size)
        names = self.open.setdefault((bundling.key, cap), [])
        names.append(name)
        if len(names) < cap:
            return None
        del self.open[(bundling.key, cap)]
        return Bundle(tuple(names)) if len(names) > 1 else Submit(name)

    @property
    def waiting(self) -> int:
        """Folders taken into bundles not yet full."""
        return sum(len(names) for names in self.open.values())

    def flush(self, room: int) -> list[Action]:
        """The bundles not yet full, first come first, as far as there is room; one folder alone is a plain job."""
        return [Bundle(tuple(names)) if len(names) > 1 else Submit(names[0]) for names in list(self.open.values())[:room]]


Judged = Union[Status, Unbundle, Withdraw, None]


def judge_member(
    seen: Seen, cancel: bool, bundle: Optional[BundleFolder], status: Optional[Status], engine: str, idle: bool = False
) -> Judged:
    """A member's own verdict (a Status for the plan's rules for ended jobs), a move back to waiting, a cancel
    before it starts, or None: wait. status: the bundle job's, as the engine reported it; idle: every folder of
    the bundle is here and none was started (its runner could not run them)."""
    m = seen.member
    record = bundle.record if bundle is not None else None
    where = f"member {m.place} of {m.of} of {engine} bundle job {record.job_id if record else '(none)'}"
    if seen.ended is not None:
        failure = describe(seen.ended)
        if not failure:
            return Status(State.DONE)
        ending = Ending.CANCELLED if seen.ended.why == "cancelled" else Ending.FAILED
        return Status(State.FAILED, f"The job {failure}, as {where}.", ending=ending)
    if seen.started == "returned":  # a run killed while it moved the folder back to waiting
        return Unbundle("", "its bundle ended before it started it; it runs in a later one")
    if seen.started == "cancelled":  # a cancel took it before its runner could; killed before it wrote the ending
        return Status(State.FAILED, f"The job was cancelled before it started, as {where}.", ending=Ending.CANCELLED)
    if bundle is None:
        if not seen.started:
            return Unbundle("", "its bundle's folder is gone and it never started")
        return Status(State.FAILED, f"The job was {where}, whose folder is gone; it left no ending.", ending=Ending.LOST)
    if cancel and not seen.started:
        return Withdraw("")
    if record is None or status is None or status.state in (State.UNKNOWN, State.ACTIVE):
        return None  # the bundle is being submitted, runs, or is not reported: its own note says so
    if not seen.started and idle:
        return Unbundle("", f"its bundle job {record.job_id} ended without starting any of its folders; it runs alone", True)
    if not seen.started:
        return Unbundle("", f"its bundle job {record.job_id} ended before it started it; it runs in a later one")
    if status.state is State.DONE:
        why = "which ended without word of it (its runner or node was ended while it ran)"
        return Status(State.FAILED, f"The job was running as {where}, {why}.", ending=Ending.LOST)
    first, _, rest = status.reason.partition("\n")
    return Status(
        State.FAILED, f"The job was running as {where} when the bundle ended: {first}\n{rest}".rstrip("\n"), ending=status.ending
    )
