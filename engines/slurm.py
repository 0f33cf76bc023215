"""Slurm engine: sbatch in the job's folder; state from one squeue and at most one sacct per run.

The text the commands print is read by the pure functions of _slurmparse.py; this module only
assembles the commands, runs them, and matches claims to jobs.
"""

# No `from __future__ import annotations` here: typing.NamedTuple compiles every string annotation
# at import, ~10 ms per run (measured); real annotation objects cost nothing.

import json
import os
import pwd
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Optional, Sequence

from jobroot import folders as fs
from jobroot.config import positive, seconds
from jobroot.engine import (
    CommandFailed,
    CommandTimeout,
    EngineError,
    Observation,
    Setting,
    State,
    Status,
    SubmitRefused,
    SubmitUnknown,
)
from jobroot.engines._process import Runner, run
from jobroot.engines._slurmparse import (
    ACTIVE,
    SACCT_FIELDS,
    SEP,
    SQUEUE_FORMAT,
    Row,
    decide,
    is_transient,
    parse_lookback,
    parse_rows,
    parse_sbatch_id,
    task_count,
)
from jobroot.folders import Submitted

TIMEOUT = 60.0  # seconds for any one command; sbatch against a dead controller gives up after ~9 s
CLAIM_SLACK = 5.0  # seconds of clock difference tolerated between this host and slurmctld


def user_sets(script: Path, option: str) -> bool:
    """Does job.sh set `#SBATCH --option` itself (which a command-line option would override)?"""
    try:
        text = script.read_text(errors="replace")
    except OSError:
        return False
    return re.search(rf"^#SBATCH\s+--{option}\b", text, re.MULTILINE) is not None


# ---------------------------------------------------------------- the engine


def _lookback_value(text: str) -> str:
    """--lookback as the command line and reconcile.json give it: checked now, read at each run."""
    import argparse

    try:
        parse_lookback(text, time.time())
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


class SlurmEngine:
    name = "slurm"
    SETTINGS = (
        Setting("max_queued", positive, None, "N", "submit only while this user has fewer than N jobs queued"),
        Setting("lookback", _lookback_value, "7d", "WHEN", "how far back sacct may look: 36h, 7d or a date (default 7d)"),
        Setting(
            "command_timeout", seconds, TIMEOUT, "SECONDS", "give up on any batch-system command after this long (default 60)"
        ),
    )

    def __init__(
        self,
        max_queued: Optional[int] = None,
        lookback: str = "7d",
        command_timeout: float = TIMEOUT,
        runner: Runner = run,
        user: Optional[str] = None,
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
