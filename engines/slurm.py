"""Slurm engine: sbatch in the job's folder; state from one squeue and at most one sacct per run.

Pure helpers (parse_sbatch_id, parse_rows, decide, ...) read the commands' text and are tested on
output captured from a real Slurm 22.05. SlurmEngine only assembles commands and calls them.
"""

# No `from __future__ import annotations` here: typing.NamedTuple compiles every string annotation
# at import, ~10 ms per run (measured); real annotation objects cost nothing.

import json
import os
import pwd
import re
import signal
import time
from datetime import datetime
from pathlib import Path
from typing import NamedTuple, Optional, Sequence

from engines import CommandFailed, EngineError, Observation, State, Status, SubmitRefused, Submitted, SubmitUnknown
from engines import _fs as fs
from engines._process import CommandTimeout, Runner, run

SEP = "\x1f"  # cannot be typed into a job name or comment by accident; `|` can
SQUEUE_FORMAT = SEP.join(["%i", "%T", "%V", "%k", "%Z"])
SACCT_FIELDS = "JobID,State,ExitCode,Submit,End,Comment,WorkDir"
TIMEOUT = 60.0  # seconds for any one command; sbatch against a dead controller gives up after ~9 s
CLAIM_SLACK = 5.0  # seconds of clock difference tolerated between this host and slurmctld

SUCCESS = {"COMPLETED"}
FAILURE = {"FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "PREEMPTED", "REVOKED"}
ACTIVE = {
    "PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "COMPLETING", "CONFIGURING", "SUSPENDED",
    "RESIZING", "STAGE_OUT", "SIGNALING", "STOPPED", "SPECIAL_EXIT", "RESV_DEL_HOLD",
}  # fmt: skip
TRANSIENT = (
    "unable to contact slurm controller",
    "socket timed out",
    "temporarily unable to accept job",
    "job submit limit",
    "maxsubmitjob",
    "resource temporarily unavailable",
    "connection refused",
    "zero bytes were transmitted",
    "communication connection failure",
    "slurm_persist_conn",
)
WHAT = {
    "TIMEOUT": "it reached its time limit",
    "OUT_OF_MEMORY": "it used more memory than it asked for",
    "NODE_FAIL": "its node failed",
    "BOOT_FAIL": "its node failed to boot",
    "DEADLINE": "it could not finish before its deadline",
    "PREEMPTED": "it was preempted and not requeued",
}


# ---------------------------------------------------------------- pure parsers


class Row(NamedTuple):
    """One job (or array task) as squeue or sacct printed it."""

    job_id: str  # 123, 123_4, 123_[5-9%2], 123+1
    state: str  # as printed: "CANCELLED by 0"
    exit_code: str  # "3:0"; "" from squeue
    submit: Optional[float]
    end: Optional[float]
    comment: str
    workdir: str
    line: str
    word: str = ""  # the state's first word: CANCELLED for "CANCELLED by 0"
    base: str = ""  # the id sbatch returned: 123 for 123_4


def make_row(job_id: str, state: str, exit_code: str = "", submit: Optional[float] = None, end: Optional[float] = None,
             comment: str = "", workdir: str = "", line: str = "") -> Row:  # fmt: skip
    """A Row with its derived fields filled in (parse_rows builds them the same way)."""
    return Row(job_id, state, exit_code, submit, end, comment, workdir, line, state.split(" ", 1)[0].rstrip("+"), base_id(job_id))


def parse_sbatch_id(stdout: str) -> Optional[str]:
    """`sbatch --parsable` prints `42` or `42;cluster`: the digits, or None when there are none."""
    m = re.match(r"\s*(\d+)(?:;\S*)?\s*$", stdout)
    return m.group(1) if m else None


def base_id(job_id: str) -> str:
    """The id sbatch returned for a job, array task (`123_4`, `123_[5-9%2]`) or het component (`123+1`)."""
    m = re.match(r"\d+", job_id)
    return m.group(0) if m else job_id


def task_count(job_id: str) -> int:
    """How many jobs one line stands for: `123_[1,3,5-9%2]` is 7, anything else 1."""
    m = re.search(r"_\[([^\]%]*)", job_id)
    if not m:
        return 1
    total = 0
    for part in m.group(1).split(","):
        lo, _, hi = part.partition("-")
        try:
            total += int(hi) - int(lo) + 1 if hi else 1
        except ValueError:
            total += 1
    return max(total, 1)


_ROW_START = re.compile(r"\d+[_+\[\]\d%,\-]*" + SEP)


def parse_rows(text: str, squeue: bool) -> list[Row]:
    """Rows of `squeue -o SQUEUE_FORMAT` or `sacct --parsable2 --delimiter=SEP --format=SACCT_FIELDS`.

    The work directory comes last, so a newline in a folder name continues the row on the next
    line: a line that does not start with a job id belongs to the row before it.
    """
    lines: list[str] = []
    for line in text.rstrip("\n").split("\n"):
        if _ROW_START.match(line) or not lines:
            lines.append(line)
        else:
            lines[-1] += "\n" + line
    rows = []
    for line in lines:
        if not line.strip():
            continue
        if squeue:
            fields = line.split(SEP, 4)
            if len(fields) != 5:
                raise ValueError(f"unexpected squeue line: {line!r}")
            job_id, state, submit, comment, workdir = fields
            exit_code, end = "", None
        else:
            fields = line.split(SEP, 6)
            if len(fields) != 7:
                raise ValueError(f"unexpected sacct line: {line!r}")
            job_id, state, exit_code, submit, end_text, comment, workdir = fields
            end = _time(end_text)
        if comment == "(null)":
            comment = ""
        rows.append(make_row(job_id, state, exit_code, _time(submit), end, comment, workdir, line))
    return rows


def _time(text: str) -> Optional[float]:
    """Slurm prints times as local ISO without zone; `Unknown`/`None` when unset."""
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        return None


def is_transient(message: str) -> bool:
    low = message.lower()
    return any(t in low for t in TRANSIENT)


def exit_text(code: str) -> str:
    """`3:0` -> `exit code 3`; `0:9` -> `signal 9 (SIGKILL)`."""
    status, _, sig = code.partition(":")
    if sig.isdigit() and int(sig):
        try:
            name = signal.Signals(int(sig)).name
        except ValueError:
            name = "unknown signal"
        return f"signal {sig} ({name})"
    return f"exit code {status or '?'}"


def describe_failure(row: Row) -> str:
    word = row.word
    if word == "CANCELLED":
        by = row.state.split(" by ", 1)
        return "CANCELLED" + (f" by uid {by[1]}" if len(by) == 2 else "")
    if word in WHAT:
        return f"{word}: {WHAT[word]}"
    return f"{word} with {exit_text(row.exit_code)}" if row.exit_code else word


def decide(job_id: str, queued: list[Row], accounted: Optional[list[Row]], accounting: bool = True) -> Status:
    """The state of one submission from its squeue rows and its sacct rows (None: sacct not answered).

    With accounting off, the controller's final states (kept for MinJobAge) are all there is.

    Success is judged from the state, never from the exit code alone; a job nobody reports is
    UNKNOWN, never finished.
    """
    if any(r.word in ACTIVE for r in queued):
        return Status(State.ACTIVE, phase="queued" if all(r.word == "PENDING" for r in queued) else "running")
    # slurmdbd can store the final state a moment before the exit code and end time: not final yet.
    final = [r for r in accounted or [] if r.word in SUCCESS | FAILURE and r.end is not None]
    if accounted and len(final) < len(accounted):
        return Status(State.ACTIVE) if queued else Status(State.UNKNOWN)  # accounting has not heard the end yet
    if queued and {r.job_id for r in queued} - {r.job_id for r in final}:
        if all(r.word in SUCCESS for r in queued):
            return Status(State.DONE)  # the controller says so; no exit code is needed for a success
        if accounting:
            return Status(State.ACTIVE)  # failed: wait for sacct's exit code (it lags, or slurmdbd is down)
        final = queued
    if not final:
        return Status(State.UNKNOWN)
    failed = [r for r in final if r.word not in SUCCESS]
    if not failed:
        return Status(State.DONE)
    source = "sacct" if final is not queued else "squeue"
    lines = "\n".join(f"{source}: {r.line.replace(SEP, ' | ')}" for r in final)
    if len(final) == 1:
        head = f"Slurm reports job {final[0].job_id} {describe_failure(failed[0])}."
    else:
        shown = ", ".join(f"{r.job_id} {describe_failure(r)}" for r in failed)
        head = f"Slurm reports {len(failed)} of {len(final)} tasks of job {job_id} failed: {shown}."
    return Status(State.FAILED, f"{head}\n{lines}")


def parse_lookback(text: str, now: float) -> float:
    """`36h`, `7d`, `90m`, `2w` or a date (anything python-dateutil reads) -> epoch seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if m:
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]
        return now - float(m.group(1)) * unit
    from dateutil import parser

    try:
        return parser.parse(text).timestamp()
    except (ValueError, OverflowError) as e:
        raise ValueError(f"--lookback {text!r}: give a duration like 36h or 7d, or a date") from e


def user_sets(script: Path, option: str) -> bool:
    """Does job.sh set `#SBATCH --option` itself (which a command-line option would override)?"""
    try:
        text = script.read_text(errors="replace")
    except OSError:
        return False
    return re.search(rf"^#SBATCH\s+--{option}\b", text, re.MULTILINE) is not None


# ---------------------------------------------------------------- the engine


class SlurmEngine:
    name = "slurm"

    def __init__(
        self,
        max_queued: Optional[int] = None,
        lookback: str = "7d",
        runner: Runner = run,
        user: Optional[str] = None,
        command_timeout: float = TIMEOUT,
        **_options: object,
    ) -> None:
        self.max_queued = max_queued
        self.timeout = command_timeout
        self.lookback = lookback
        parse_lookback(lookback, time.time())  # a bad value is a usage error now, not a failed run later
        self.run = runner
        self.user = user or pwd.getpwuid(os.getuid()).pw_name

    def submit(self, job_dir: Path) -> str:
        import secrets  # only submissions need it (3 ms of imports)

        # The token goes in --comment so the next run can find this job if its id is never recorded (or
        # is garbled); a comment the user set is kept, and then there is no token ("").
        token = "" if user_sets(job_dir / "job.sh", "comment") else f"jobroot-{secrets.token_hex(8)}"
        fs.write_atomic(job_dir / fs.CLAIM, json.dumps({"token": token, "claimed": time.time()}) + "\n")
        argv = ["sbatch", "--parsable", *([f"--comment={token}"] if token else []), "job.sh"]
        try:
            result = self.run(argv, self.timeout, job_dir)
        except CommandTimeout as e:
            raise SubmitUnknown(str(e)) from e
        except CommandFailed as e:
            _forget_claim(job_dir)
            raise SubmitRefused(str(e), permanent=False) from e
        job_id = parse_sbatch_id(result.stdout) if result.returncode == 0 else None
        if job_id:
            return job_id
        if result.returncode == 0:
            raise SubmitUnknown(f"sbatch exited 0 but printed no job id: {result.stdout.strip()!r}")
        message = result.stderr.strip() or result.stdout.strip() or f"sbatch exited with {result.returncode}"
        permanent = not is_transient(message)
        if permanent:
            _forget_claim(job_dir)  # refused on its merits: nothing was created
        # A transient error may come after slurmctld created the job (a lost answer): the claim stays,
        # and the next run adopts the job by its token, or submits again once the grace period is over.
        raise SubmitRefused(message, permanent=permanent)

    def observe(self, jobs: Sequence[Submitted], claimed: Sequence[Path], quick: bool = False) -> Observation:
        if not jobs and not claimed and self.max_queued is None:
            return Observation()
        now = time.time()
        queued = self._query(
            ["squeue", "--noheader", "--array", "--states=all", f"--user={self.user}", f"--format={SQUEUE_FORMAT}"], True
        )
        by_base = _group(queued)
        claims = {path: _read_claim(path) for path in claimed}
        need_sacct = [
            j
            for j in jobs
            if _foreign(j, by_base.get(j.job_id, []), None) or not any(r.word in ACTIVE for r in by_base.get(j.job_id, []))
        ]
        searching = [p for p, c in claims.items() if c and not _match(p, c, queued)]
        accounted: Optional[list[Row]] = None  # None: sacct not asked, or it failed
        accounting = True
        notes: list[str] = []
        problems: list[str] = []
        if (need_sacct or searching) and not quick:
            try:
                accounted = self._query(self._sacct_argv(jobs, claims, now), False)
            except EngineError as e:
                if "accounting storage is disabled" in str(e).lower():
                    accounting = False  # accounted stays None: nothing absent from squeue is ruled out
                    notes.append("Slurm accounting is disabled: outcomes come from squeue alone (see README)")
                else:
                    problems.append(f"sacct failed; jobs that left the queue wait for it: {e}")
        account_by_base = _group(accounted or [])
        statuses = {}
        found: dict[str, str] = {}
        unsure: set[str] = set()
        recorded = {j.job_id for j in jobs}
        for job in jobs:
            queue_rows = by_base.get(job.job_id, [])
            acct_rows = account_by_base.get(job.job_id, []) if accounted is not None else None
            foreign = _foreign(job, queue_rows, acct_rows)
            nowhere = bool(job.token) and not queue_rows and accounted is not None and not acct_rows
            if foreign or nowhere:
                # The recorded id is another job's, or no job's (a garbled sbatch answer): never judge
                # this folder by it; look for the job that carries the folder's token.
                statuses[job.job_id] = Status(State.UNKNOWN)
                others = [r for r in queued + (accounted or []) if r.base not in recorded]
                right = _match(Path(job.path), (job.token, job.submitted), others)
                if right:
                    found[os.path.basename(job.path)] = right
                elif foreign:
                    problems.append(
                        f"{os.path.basename(job.path)}: recorded job {job.job_id} is not this folder's job; looking for it"
                    )
                continue
            status = decide(job.job_id, queue_rows, acct_rows, accounting)
            if not accounting and not queue_rows:
                status = _without_accounting(job)
            statuses[job.job_id] = status
        for path, claim in claims.items():
            if claim is None:
                continue  # killed before anything was sent to Slurm: submit it
            match = _match(path, claim, [r for r in queued + (accounted or []) if r.base not in recorded])
            if match:
                found[path.name] = match
            elif accounted is None or now - claim[1] < self.timeout + 30:
                unsure.add(path.name)  # cannot rule a submission out yet
                if not accounting and now - claim[1] >= self.timeout + 30:
                    problems.append(
                        f"{path.name}: cannot tell whether it was submitted (accounting is off and Slurm no longer lists it); "
                        "check its output, then move it to complete/ or back to inbox/ by hand"
                    )
        room = None
        if self.max_queued is not None:
            room = self.max_queued - sum(task_count(r.job_id) for r in queued if r.word in ACTIVE)
        return Observation(statuses, found, frozenset(unsure), room, tuple(notes), tuple(problems))

    def cancel(self, jobs: Sequence[Submitted]) -> None:
        if jobs:
            result = self.run(["scancel", *[j.job_id for j in jobs]], self.timeout, None)
            if result.returncode != 0:
                raise CommandFailed(result.argv, result.returncode, result.stderr)

    def _sacct_argv(self, jobs: Sequence[Submitted], claims: dict[Path, Optional[tuple[str, float]]], now: float) -> list[str]:
        """One sacct over every job of this user since the oldest pending submission, bounded by --lookback."""
        since = [j.submitted for j in jobs] + [c[1] for c in claims.values() if c]
        start = max(min(since) - 300, parse_lookback(self.lookback, now))
        return [
            "sacct", "-X", "--noheader", "--parsable2", f"--delimiter={SEP}", f"--user={self.user}",
            f"--starttime={datetime.fromtimestamp(start).strftime('%Y-%m-%dT%H:%M:%S')}", "--endtime=now",
            f"--format={SACCT_FIELDS}",
        ]  # fmt: skip

    def _query(self, argv: list[str], squeue: bool) -> list[Row]:
        result = self.run(argv, self.timeout, None)
        if result.returncode != 0:
            raise CommandFailed(argv, result.returncode, result.stderr)
        try:
            return parse_rows(result.stdout, squeue)
        except ValueError as e:
            raise EngineError(f"{argv[0]} printed something unexpected: {e}") from e


def _foreign(job: Submitted, queued: list[Row], accounted: Optional[list[Row]]) -> bool:
    """Do Slurm's rows for the recorded id show another job (a different token in its comment)?

    squeue always shows the comment; sacct only where the site stores it, so an empty one there proves
    nothing. Jobs whose users set their own --comment carry no token and are not checked.
    """
    if not job.token:
        return False
    return any(r.comment != job.token for r in queued) or any(r.comment and r.comment != job.token for r in accounted or [])


def _without_accounting(job: Submitted) -> Status:
    """A job gone from squeue with accounting off: its output file is the only evidence that it ran."""
    if any(Path(job.path).glob(f"slurm-{job.job_id}*.out")):
        return Status(
            State.FAILED,
            f"Slurm no longer lists job {job.job_id} and its accounting is disabled, so how it ended cannot be known "
            "(slurm engine); its output file is in this folder.",
        )
    return Status(State.UNKNOWN)


def _group(rows: list[Row]) -> dict[str, list[Row]]:
    grouped: dict[str, list[Row]] = {}
    for r in rows:
        grouped.setdefault(r.base, []).append(r)
    return grouped


def _read_claim(path: Path) -> Optional[tuple[str, float]]:
    try:
        data = json.loads((path / fs.CLAIM).read_text())
        return str(data["token"]), float(data["claimed"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _forget_claim(job_dir: Path) -> None:
    try:
        os.unlink(job_dir / fs.CLAIM)  # sbatch certainly submitted nothing
    except OSError:
        pass


def _match(path: Path, claim: tuple[str, float], rows: list[Row]) -> Optional[str]:
    """The job submitted for this claim: by the token in its comment, else by work directory and time."""
    token, claimed = claim
    for r in rows:
        if token and r.comment == token:
            return r.base
    dirs = {str(path), os.path.realpath(path)}
    for r in rows:
        if r.workdir in dirs and (r.submit or 0) >= claimed - CLAIM_SLACK and (r.end is None or r.end >= claimed - CLAIM_SLACK):
            return r.base
    return None
