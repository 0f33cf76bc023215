"""What every batch-system engine shares: the submission (claim, run, read the id, refusal), the claim file,
job.sh's directive lines and task ranges.

An engine built on this is its queries, its pure parser and its verdicts. The claim (`job_claim.json`)
is written just before the submit command: a token the job carries where the batch system shows it
back, and when it was sent, so the next run can find a job whose id was never recorded. It also keeps
the words of earlier unrecognised refusals, where the job was sent (Slurm's --clusters), and when the
engine deleted the job (Grid Engine keeps no record of a job deleted before it started).
"""

# No `from __future__ import annotations` here: typing.NamedTuple compiles every string annotation
# at import, ~10 ms per run (measured); real annotation objects cost nothing.

import enum
import json
import os
import shlex
import time
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple, Optional, Sequence

from jobroot import folders as fs
from jobroot.engine import CommandFailed, CommandTimeout, Observation, Status, SubmitRefused, SubmitUnknown
from jobroot.engines._process import Runner

CLAIM_SLACK = 5.0  # seconds of clock difference tolerated between this host and the batch system's
REUSED_ID = 7 * 86400.0  # records of a job submitted this long before a folder's record belong to an older job with its id
REFUSAL_TRIES = 3  # a refusal in neither table is tried this many times (across runs), then final


class Refusal(enum.Enum):
    """What a submit command's refusal means, judged from its words by the engine's parser."""

    PASSING = "passing"  # try again next run: the batch system may even have created the job
    FINAL = "final"  # the job can never run as it is
    UNKNOWN = "unknown"  # in neither of the engine's tables: counted, final at the REFUSAL_TRIES-th


def judge_refusal(reason: str, passing: Sequence[str], final: Sequence[str]) -> Refusal:
    """A refusal by the words of its reason (lower-cased): PASSING where one of `passing` is in it, else FINAL
    where one of `final` is, else UNKNOWN."""
    if any(words in reason for words in passing):
        return Refusal.PASSING
    if any(words in reason for words in final):
        return Refusal.FINAL
    return Refusal.UNKNOWN


def submit(
    job_dir: Path,
    argv: Sequence[str],
    runner: Runner,
    timeout: float,
    env: Optional[Mapping[str, str]],
    read_id: Callable[[str], Optional[str]],
    judge: Callable[[str], Refusal],
    token: str,
    where: str = "",
) -> str:
    """Claim the folder, run the submit command in it, and return the job's id.

    read_id: the id in what the command printed, or None. judge: what its error words mean.
    An id printed means a job was created, whatever the exit status (a submission told to wait for its
    job, `sbatch --wait` or `qsub -sync y`, exits with the job's status, or times out still waiting).
    Raises SubmitUnknown when the job may or may not exist, SubmitRefused when it certainly does not.
    """
    command = argv[0]
    refusals = earlier_refusals(job_dir)
    claimed = time.time()
    write_claim(job_dir, token, claimed, refusals, where)
    try:
        result = runner(argv, timeout, job_dir, env)
    except CommandTimeout as e:
        job_id = read_id(e.stdout)
        if job_id:
            return job_id
        raise SubmitUnknown(str(e)) from e
    except CommandFailed as e:  # the command could not be run at all: nothing was created
        forget_claim(job_dir)
        path = (env or os.environ).get("PATH", "")
        raise SubmitRefused(f"{command}: {e.why} (PATH is {path!r})", permanent=False, unrunnable=True) from e
    job_id = read_id(result.stdout)
    if job_id:
        return job_id
    if result.returncode == 0:
        raise SubmitUnknown(f"{command} exited 0 but printed no job id: {result.stdout.strip()!r}")
    message = result.stderr.strip() or result.stdout.strip() or f"{command} exited with {result.returncode}"
    raise refused(job_dir, token, claimed, refusals, message, judge(message), command)


def refused(
    job_dir: Path, token: str, claimed: float, refusals: list[str], message: str, kind: Refusal, command: str
) -> SubmitRefused:
    """What to raise when the submit command exited non-zero without a job id.

    Final: the claim goes (nothing was created). Passing: it stays, since the batch system may have
    created the job and lost only the answer; the next run adopts it by its token, or submits again.
    """
    if kind is Refusal.UNKNOWN:
        refusals = [*refusals, message]
        if len(refusals) < REFUSAL_TRIES:
            write_claim(job_dir, token, claimed, refusals, claim_where(job_dir))
            note = f"(a refusal not known to be passing or final: attempt {len(refusals)} of {REFUSAL_TRIES})"
            return SubmitRefused(f"{message} {note}", permanent=False)
        attempts = "\n".join(f"attempt {i}: {m}" for i, m in enumerate(refusals, 1))
        message = f"{command} refused it {len(refusals)} times, for a reason not known to be passing:\n{attempts}"
        kind = Refusal.FINAL
    if kind is Refusal.FINAL:
        forget_claim(job_dir)
    return SubmitRefused(message, permanent=kind is Refusal.FINAL)


# ---------------------------------------------------------------- the claim file and the job it made


class Candidate(NamedTuple):
    """A job of this user that no folder has recorded: what can tie it to a claim."""

    job_id: str  # as the submit command would have printed it
    token: str  # what it carries where the claim's token goes ("" when the batch system does not show it)
    workdir: str  # "" when unknown (Grid Engine's qacct keeps none)
    submitted: Optional[float]  # by the batch system's clock
    ended: Optional[float] = None


def match_claim(path: Path, claim: tuple[str, float], candidates: Sequence[Candidate], tokens_shown: bool) -> Optional[Candidate]:
    """The job submitted for this claim: by the token it carries; else (for a claim without a token, or where
    the batch system may not show tokens: tokens_shown False) by its work directory and a submission no
    earlier than the claim, allowing CLAIM_SLACK of clock difference."""
    token, claimed = claim
    for c in candidates:
        if token and c.token == token:
            return c
    if token and tokens_shown:
        return None
    dirs = {str(path), os.path.realpath(path)}
    since = claimed - CLAIM_SLACK
    for c in candidates:
        if c.workdir in dirs and (c.submitted or 0) >= since and (c.ended is None or c.ended >= since):
            return c
    return None


def _load(job_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((job_dir / fs.CLAIM).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def read_claim(job_dir: Path) -> Optional[tuple[str, float]]:
    """(token, when it was claimed), or None when there is no readable claim."""
    data = _load(job_dir)
    try:
        return str(data["token"]), float(data["claimed"])
    except (KeyError, TypeError, ValueError):
        return None


def write_claim(job_dir: Path, token: str, claimed: float, refusals: list[str], where: str = "") -> None:
    """where: the place the job was sent to, when the batch system has more than one (Slurm: its --clusters)."""
    record: dict[str, Any] = {"token": token, "claimed": claimed}
    record.update({"refusals": refusals} if refusals else {})
    record.update({"where": where} if where else {})
    fs.write_atomic(job_dir / fs.CLAIM, json.dumps(record) + "\n")


def claim_where(job_dir: Path) -> str:
    """Where the claimed job was sent (write_claim's where), or ""."""
    where = _load(job_dir).get("where", "")
    return where if isinstance(where, str) else ""


def earlier_refusals(job_dir: Path) -> list[str]:
    """The words of earlier unrecognised refusals of this folder, kept in its claim across runs."""
    refusals = _load(job_dir).get("refusals", [])
    return [str(r) for r in refusals] if isinstance(refusals, list) else []


def forget_claim(job_dir: Path) -> None:
    try:
        os.unlink(job_dir / fs.CLAIM)  # the batch system certainly created nothing
    except OSError:
        pass


def note_deleted(job_dir: Path, when: float, why: str = "") -> None:
    """Remember, before deleting the job, that the engine did (and why): it may leave no record at all."""
    data = _load(job_dir)
    data["deleted"] = {"at": when, **({"why": why} if why else {})}
    fs.write_atomic(job_dir / fs.CLAIM, json.dumps(data) + "\n")


def deleted(job_dir: Path) -> Optional[tuple[float, str]]:
    """(when, why) the engine deleted this folder's job, if it did."""
    note = _load(job_dir).get("deleted")
    if not isinstance(note, dict):
        return None
    try:
        return float(note["at"]), str(note.get("why", ""))
    except (KeyError, TypeError, ValueError):
        return None


# ---------------------------------------------------------------- an observation in the making


class Answer:
    """What an engine's observation has found so far, phase by phase; `observation()` hands it over."""

    def __init__(self) -> None:
        self.statuses: dict[str, Status] = {}
        self.found: dict[str, str] = {}  # folder name -> the id of the job found for it
        self.since: dict[str, float] = {}  # folder name -> when the batch system says it received that job
        self.unsure: set[str] = set()
        self.notes: list[str] = []
        self.problems: list[str] = []

    def adopt(self, name: str, job_id: str, submitted: float) -> None:
        self.found[name], self.since[name] = job_id, submitted

    def observation(self, room: Optional[int]) -> Observation:
        return Observation(
            self.statuses, self.found, frozenset(self.unsure), room, tuple(self.notes), tuple(self.problems), self.since
        )


# ---------------------------------------------------------------- job.sh and task ranges


def directive_words(script: Path, prefix: str, stop_at_command: bool) -> list[str]:
    """Every word of job.sh's directive lines (`#SBATCH`, `#$`), read once per submission."""
    words: list[str] = []
    for line in directive_lines(script, prefix, stop_at_command):
        try:
            words += shlex.split(line[len(prefix) :], comments=True)
        except ValueError:
            words += line[len(prefix) :].split()
    return words


def directive_lines(script: Path, prefix: str, stop_at_command: bool) -> list[str]:
    """job.sh's directive lines as written (a bundle's job.sh repeats them).

    stop_at_command: the batch system reads none after the first line that is neither blank nor a
    comment (sbatch does; qsub reads the whole script).
    """
    try:
        text = script.read_text(errors="replace")
    except OSError:
        return []
    lines = []
    for line in text.splitlines():
        if stop_at_command and line.strip() and not line.lstrip().startswith("#"):
            break
        if line.startswith(prefix):
            lines.append(line)
    return lines


BUNDLE_SLACK = 60  # seconds a bundle asks for beyond its members' own limits: the runner's own steps
KILL_AFTER = 30  # seconds a member past its limit has between TERM and KILL (the runner's `timeout --kill-after`)


def bundle_time(limit: Optional[int], members: int) -> Optional[int]:
    """What a bundle asks for: its members' own limits one after another (each may take KILL_AFTER more to
    end once past it), and a little for the runner."""
    return None if limit is None else (limit + KILL_AFTER) * members + BUNDLE_SLACK


def hms(seconds: int) -> str:
    """Seconds as `[D-]HH:MM:SS`, which sbatch reads; qsub's h_rt takes the same without days."""
    days, rest = divmod(seconds, 86400)
    clock = f"{rest // 3600:02}:{rest % 3600 // 60:02}:{rest % 60:02}"
    return f"{days}-{clock}" if days else clock


def task_ranges(spec: str) -> list[range]:
    """The task ids `1-3:1`, `1,3,5-9`, `4-98:2` name, as ranges (an array may have millions of tasks);
    of a list cut short (`1-3,7...`), those it still shows."""
    ranges = []
    for part in spec.split(",") if spec else ():
        span, _, step = part.partition(":")
        lo, _, hi = span.partition("-")
        try:
            ranges.append(range(int(lo), int(hi or lo) + 1, max(int(step or 1), 1)))
        except ValueError:
            continue  # cut short here (`7...`): what it stood for is not shown
    return ranges
