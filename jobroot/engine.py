"""The engine interface: what the reconciler asks of a batch system, the settings an engine takes, and the lookup by name.

An engine submits one job folder, reports the state of many jobs in one query, finds jobs it
started but whose id was never recorded, and cancels. Everything else (folders, order, limits)
belongs to the reconciler. Engines live in `jobroot.engines` and depend on this module, never the
other way: `ENGINES` below is the one place the core names them.
"""

# No `from __future__ import annotations` here: typing.NamedTuple compiles every string annotation
# at import, ~10 ms per run (measured); real annotation objects cost nothing.

import enum
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping, NamedTuple, Optional, Protocol, Sequence

from jobroot.folders import Submitted


class State(enum.Enum):
    ACTIVE = "active"  # queued, running, or between the two: keep waiting
    DONE = "done"  # ended well
    FAILED = "failed"  # ended badly; Status.reason says how, in the engine's words
    UNKNOWN = "unknown"  # not reported: never a reason to move a folder


class Ending(enum.Enum):
    """How a FAILED job ended, as far as what happens next depends on it."""

    FAILED = "failed"  # by itself: an exit code, a signal, a limit it reached
    CANCELLED = "cancelled"  # by a cancel the batch system names as such (Slurm's CANCELLED), started or not
    LOST = "lost"  # by the infrastructure (a failed node, a reboot), not by itself: --retries may run it again
    STUCK = "stuck"  # not yet: the batch system holds it but can never start it, so it is ended first


def signal_name(number: int) -> str:
    """`SIGKILL` for 9: how every engine names a signal in a verdict."""
    import signal

    try:
        return signal.Signals(number).name
    except ValueError:
        return "unknown signal"


class Status(NamedTuple):
    state: State
    reason: str = ""  # for FAILED: first line is a plain sentence; more lines may follow
    phase: str = ""  # for ACTIVE: "queued" or "running"
    ending: Ending = Ending.FAILED  # for FAILED: how

    @property
    def lost(self) -> bool:
        return self.state is State.FAILED and self.ending is Ending.LOST

    @property
    def stuck(self) -> bool:
        return self.state is State.FAILED and self.ending is Ending.STUCK


class Observation(NamedTuple):
    """One engine query's answer about every pending job.

    statuses: job id -> Status; an id absent from it was not reported (UNKNOWN).
    found: folder name -> job id, for claimed folders whose submission the engine can prove it made,
        and for recorded folders whose recorded id turned out to be another job's (the right id).
    unsure: names of claimed folders whose submission cannot yet be ruled in or out: leave them alone.
    room: how many more jobs the engine takes now (free slots, queue limit); None for no limit.
    submitted: folder name -> when the batch system says it received the job found for it (for the
        record of an adopted job: a time from after the submission would move the engine's search past it).
    """

    statuses: Mapping[str, Status] = MappingProxyType({})
    found: Mapping[str, str] = MappingProxyType({})
    unsure: frozenset[str] = frozenset()
    room: Optional[int] = None
    notes: tuple[str, ...] = ()  # for the log
    problems: tuple[str, ...] = ()  # for the log and stderr: a person should look
    submitted: Mapping[str, float] = MappingProxyType({})


class EngineError(Exception):
    """A batch-system command did not give a usable answer."""


class CommandFailed(EngineError):
    def __init__(self, argv: Sequence[str], returncode: Optional[int], stderr: str, why: str = "", stdout: str = "") -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr.strip()
        self.stdout = stdout  # what it printed before it failed (a timed-out sbatch may have printed its id)
        what = self.why = why or (f"exit code {returncode}" if returncode is not None else "no exit code")
        super().__init__(f"{' '.join(self.argv)}: {what}: {self.stderr or '(no error output)'}")


class CommandTimeout(CommandFailed):
    """The command did not answer in time and was killed: its effect is unknown."""


class SubmitRefused(EngineError):
    """The batch system said no. Permanent: the job can never run as it is. Otherwise try next run.

    Unrunnable: the submit command itself could not be run (not on PATH, not executable): nothing was
    created, and a person must mend the setup, so it is said as a problem, never as the job's failure.
    """

    def __init__(self, message: str, permanent: bool, unrunnable: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.unrunnable = unrunnable


class SubmitUnknown(EngineError):
    """The submission may or may not have happened (a timeout, a lost answer): resolve as after a crash."""


class Bundling(NamedTuple):
    """How a job may share a scheduler job with others (--bundle): an engine's reading of its job.sh."""

    key: str  # jobs share a bundle only with the same key: their directives, as the batch system reads them
    limit: Optional[int] = None  # the job's own time limit in seconds (None: it gives none)
    shown: str = ""  # that limit as the job.sh gives it, for a verdict
    most: int = 0  # at most this many to a bundle (a bigger one was refused); 0: --bundle decides


class Setting(NamedTuple):
    """One option an engine takes: `--flag` on the command line, `name` in reconcile.json."""

    name: str  # the constructor's keyword and the key --setup records
    parse: Callable[[str], Any]  # command-line text -> value; raises ValueError or argparse.ArgumentTypeError
    default: Any
    metavar: str
    help: str

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


class Engine(Protocol):
    name: str
    dependencies: bool  # True: submit(after=...) makes the batch system start the job once those jobs ended well

    def submit(self, job_dir: Path, after: Sequence[str] = ()) -> str:
        """Start the job in job_dir (its working directory) and return its id.

        after: ids of jobs that must end well first (only given where `dependencies` is True).
        Raises SubmitRefused or SubmitUnknown.
        """

    def observe(self, jobs: Sequence[Submitted], claimed: Sequence[Path], quick: bool = False) -> Observation:
        """Report on all jobs in one query; raises EngineError when the batch system cannot be asked.

        Called with both lists empty when only the room for new jobs is wanted. quick: only the
        cheapest query (a status display), which may leave ended jobs UNKNOWN.
        """

    def cancel(self, jobs: Sequence[Submitted], why: str = "") -> None:
        """Ask the batch system to end these jobs (raises EngineError when it cannot be asked).

        why: the verdict that made the sweep end them (a stuck job), for an engine to keep with them.
        """


class Bundles(Protocol):
    """What an engine adds to take bundles (--bundle): found by getattr, so an engine without it runs each
    folder as its own job."""

    def bundling(self, script: Path) -> Optional[Bundling]:
        """How this job.sh may share a scheduler job; None when it never may (an array, a job that waits)."""

    def bundle_header(self, script: Path, members: int) -> str:
        """The directive lines of a bundle of `members` jobs like this one: its directives, with a time limit
        for all of them one after another."""


class EngineClass(Protocol):
    """What the lookup returns: an engine's class, with the settings its constructor takes."""

    SETTINGS: tuple[Setting, ...]

    def __call__(self, **settings: Any) -> Engine: ...


# name -> (module, class). The 2014 spellings (engines.LocalEngine) resolve to the same classes.
ENGINES = {
    "local": ("jobroot.engines.local", "LocalEngine"),
    "slurm": ("jobroot.engines.slurm", "SlurmEngine"),
    "gridengine": ("jobroot.engines.gridengine", "GridEngine"),
}
# The command that tells a machine has the batch system: -s without -e takes the one this machine has.
SUBMIT_COMMANDS = {"slurm": "sbatch", "gridengine": "qsub"}
_ALIASES = {
    "engines.LocalEngine": "local",
    "engines.SlurmEngine": "slurm",
    "engines.GridEngine": "gridengine",
    "LocalEngine": "local",
    "SlurmEngine": "slurm",
    "GridEngine": "gridengine",
    "sge": "gridengine",
}


def canonical_name(name: str) -> str:
    """Map any accepted spelling of an engine to its short name; ValueError for an unknown one."""
    short = _ALIASES.get(name, name.lower())
    if short not in ENGINES:
        raise ValueError(f"unknown engine {name!r}: choose one of {', '.join(sorted(ENGINES))}")
    return short


def engine_class(name: str) -> EngineClass:
    """The class of the engine called name (any accepted spelling); ValueError for an unknown one."""
    import importlib

    module_name, class_name = ENGINES[canonical_name(name)]
    cls: EngineClass = getattr(importlib.import_module(module_name), class_name)
    return cls
