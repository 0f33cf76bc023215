"""The status model: where each job stands (Phase), one Entry per job, why it ended (Cause), and the counts.

A leaf: it imports nothing of the tool's. The sweep and `--status` build Entries; the text, JSON and
page renderers (status.py, page.py) and the breaker (plan.py) read them.
"""

# No `from __future__ import annotations` here: typing.NamedTuple compiles every string annotation
# at import, ~10 ms per run (measured); real annotation objects cost nothing.

import enum
from typing import Iterable, NamedTuple, Optional


class Phase(str, enum.Enum):
    """Where a job stands, as the status table shows it; the order is the table's (busiest first)."""

    RUNNING = "running"
    QUEUED = "queued"
    SUBMITTING = "submitting"
    UNKNOWN = "unknown"
    WAITING = "waiting"
    HELD = "held"
    FAILED = "failed"
    CANCELLED = "cancelled"  # at the user's request (a file named cancel): neither a failure nor done
    DONE = "done"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:  # f"{phase:<10}" pads its value on every Python version
        return format(self.value, spec)


ORDER = tuple(Phase)


class Cause(str, enum.Enum):
    """Why a failed folder failed, where it matters beyond its words (the breaker counts only OWN)."""

    OWN = "own"  # the job ended badly by itself, or the batch system ended it
    REJECTED = "rejected"  # never submitted: the folder could never run as it is
    UPSTREAM = "upstream"  # never run: a job its after file names failed
    CANCELLED = "cancelled"  # the user asked (a file named cancel)


class Entry(NamedTuple):
    name: str
    state: Phase
    job_id: str
    since: Optional[float]  # epoch seconds the folder entered this state, as near as the files tell
    reason: str = ""  # first line of job_error.txt, or why it waits
    cause: str = ""  # for FAILED: a Cause's value ("" where the files do not tell: a folder read from complete/)


def counts(entries: Iterable[Entry], unlisted: int = 0) -> dict[str, int]:
    """How many jobs stand in each phase, in the table's order; unlisted: waiting folders not named."""
    by_phase = dict.fromkeys(ORDER, 0)
    for e in entries:
        by_phase[e.state] += 1
    by_phase[Phase.WAITING] += unlisted
    return {phase.value: n for phase, n in by_phase.items()}


def summary(counted: dict[str, int]) -> str:
    """`2 running, 1 queued, 3 waiting, 14 done, 1 failed`: the counts as --status and watch mode say them."""
    return ", ".join(f"{n} {phase}" for phase, n in counted.items() if n) or "no jobs"


def age(seconds: float) -> str:
    """A duration as the table shows it: `45s`, `12m`, `3h`, `2d`."""
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
