"""Grid Engine engine: qsub in the job's folder; state from one qstat and at most one qacct per run.

The text the commands print is read by the pure functions of _gridparse.py; this module only
assembles the commands, runs them, and matches claims to jobs.

A second `qstat -xml -j IDS` is asked only for the few jobs that need more than their state: one
in an error state (for Grid Engine's reason), and, after a run was killed between qsub and the
record, the user's jobs no folder has recorded (for the token in their account string).
"""

# No `from __future__ import annotations` here: typing.NamedTuple compiles every string annotation
# at import, ~10 ms per run (measured); real annotation objects cost nothing.

import os
import pwd
import re
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping, NamedTuple, Optional, Sequence

from jobroot.config import BATCH_SETTINGS, COMMAND_TIMEOUT, parse_lookback
from jobroot.engine import Bundling, CommandFailed, Ending, EngineError, Observation, State, Status
from jobroot.engines import _batch
from jobroot.engines._batch import (
    CLAIM_SLACK,
    REUSED_ID,
    Answer,
    Candidate,
    deleted,
    directive_words,
    match_claim,
    note_deleted,
    read_claim,
)
from jobroot.engines._gridparse import (
    Detail,
    Queued,
    Record,
    array_id,
    base_id,
    classify_refusal,
    decide,
    nothing_ended_yet,
    parse_details,
    parse_qacct,
    parse_qstat,
    parse_qsub_id,
    qdel_harmless,
    task_count,
)
from jobroot.engines._process import Runner, run
from jobroot.folders import Submitted

DELETE_GRACE = 120.0  # a job deleted this long ago with no qacct record never started (the flush is 15 s by default)


class GridEngine:
    name = "gridengine"
    dependencies = False  # a folder in a chain waits in inbox/ until the jobs it names ended well
    SETTINGS = BATCH_SETTINGS

    def __init__(
        self,
        max_queued: Optional[int] = None,
        lookback: str = "7d",
        command_timeout: float = COMMAND_TIMEOUT,
        runner: Runner = run,
        user: Optional[str] = None,
        environ: Optional[Mapping[str, str]] = None,
    ) -> None:
        self.max_queued = max_queued
        self.lookback = lookback
        parse_lookback(lookback, time.time())
        self.timeout = command_timeout
        self.run = runner
        self.user = user or pwd.getpwuid(os.getuid()).pw_name
        self.env = dict(os.environ if environ is None else environ)  # SGE_ROOT and SGE_CELL say which cell
        self.query_env = {**self.env, "TZ": "UTC"}  # qstat and qacct print, and qacct -b reads, local time

    def submit(self, job_dir: Path, after: Sequence[str] = ()) -> str:
        import secrets

        # The token goes in the account string (-A), which qstat -j and qacct show back, so the next run
        # can find this job if its id is never recorded; an account the job sets itself is kept, and
        # then there is no token ("").
        token = "" if "-A" in _options(job_dir / "job.sh") else f"jobroot-{secrets.token_hex(8)}"
        argv = ["qsub", "-terse", "-cwd", *(["-A", token] if token else []), "job.sh"]
        return _batch.submit(job_dir, argv, self.run, self.timeout, self.env, parse_qsub_id, classify_refusal, token)

    def bundling(self, script: Path) -> Optional[Bundling]:
        """With jobs whose #$ words are the same, word for word; never an array or a job that waits."""
        words = _options(script)
        if any(w in words for w in ("-t", "-sync", "-hold_jid", "-hold_jid_ad")):
            return None
        given = next((m.group(1) for w in words if (m := _H_RT.search(w))), None)
        limit = _seconds(given) if given else None
        return None if given and limit is None else Bundling("\0".join(words), limit, given or "")

    def bundle_header(self, script: Path, members: int) -> str:
        """Their #$ lines with h_rt for all of them one after another, and bash for the bundle's runner."""
        form = self.bundling(script)
        total = _batch.bundle_time(form.limit if form else None, members)
        lines = _batch.directive_lines(script, "#$", stop_at_command=False)
        if total:
            lines = [_H_RT.sub(f"h_rt={total}", line) if line.startswith("#$") else line for line in lines]
        return "\n".join([*lines, "#$ -S /bin/bash"])

    def observe(self, jobs: Sequence[Submitted], claimed: Sequence[Path], quick: bool = False) -> Observation:
        """Ask the queue, ask accounting for what left it, ask qstat -j about the few that need more, judge
        each job, adopt claims, count the room."""
        if not jobs and not claimed and self.max_queued is None:
            return Observation()
        now = time.time()
        answer = Answer()
        queued = parse_qstat(self._query(["qstat", "-xml", "-u", self.user], "qstat"))
        by_job: dict[str, list[Queued]] = {}
        for q in queued:
            by_job.setdefault(q.job, []).append(q)
        claims = {path: claim for path in claimed if (claim := read_claim(path)) is not None}  # None: killed before qsub
        gone = [j for j in jobs if base_id(j.job_id) not in by_job]
        records = None if quick else self._ask_accounting(gone, claims, now, answer)
        seen = self._ask_details(jobs, gone, claims, by_job, records, quick, answer)
        for job in jobs:
            self._judge(job, seen, now, quick, answer)
        for path, claim in claims.items():
            self._adopt(path, claim, seen, now, answer)
        room = None
        if self.max_queued is not None:
            room = self.max_queued - sum(task_count(q.tasks) for q in queued)
        return answer.observation(room)

    def _ask_accounting(
        self, gone: list[Submitted], claims: dict[Path, tuple[str, float]], now: float, answer: Answer
    ) -> Optional[list[Record]]:
        """At most one qacct, back to the oldest job that left qstat or claim; None: not asked, or no answer."""
        if not gone and not claims:
            return None
        since = [j.submitted for j in gone] + [c[1] for c in claims.values()]
        try:
            return parse_qacct(self._query(self._qacct_argv(min(since), now), "qacct", empty_ok=True))
        except EngineError as e:
            answer.problems.append(f"qacct failed; jobs that left qstat wait for it: {e}")
            return None

    def _ask_details(
        self,
        jobs: Sequence[Submitted],
        gone: list[Submitted],
        claims: dict[Path, tuple[str, float]],
        by_job: dict[str, list[Queued]],
        records: Optional[list[Record]],
        quick: bool,
        answer: Answer,
    ) -> "_Seen":
        """Which recorded ids may be another job's, and at most one `qstat -j` for those, the jobs in an error
        state (for Grid Engine's reason) and, while a claim is unresolved, the user's unrecorded jobs."""
        accounted: dict[str, list[Record]] = {}
        for r in records or []:
            accounted.setdefault(r.job, []).append(r)
        # A recorded id whose job may be another's: qacct shows it only with other tokens (foreign), or
        # shows nothing though qstat has let it go (nowhere: its record is on its way, or the id was
        # garbled), or another folder has recorded it too (shared: checked by its account in qstat -j).
        foreign = [j for j in gone if j.token and _others(j, accounted.get(base_id(j.job_id), []))]
        nowhere = [j for j in gone if j.token and records is not None and not accounted.get(base_id(j.job_id))]
        counts: dict[str, int] = {}
        for j in jobs:
            counts[base_id(j.job_id)] = counts.get(base_id(j.job_id), 0) + 1
        shared = [j for j in jobs if j.token and counts[base_id(j.job_id)] > 1 and base_id(j.job_id) in by_job]
        in_error = [j for j in jobs if any("E" in q.state for q in by_job.get(base_id(j.job_id), []))]
        recorded = {base_id(j.job_id) for j in jobs}
        strangers = sorted(set(by_job) - recorded, key=int) if claims or foreign or nowhere or shared else []
        details: Optional[dict[str, Detail]] = {}
        asked = sorted({base_id(j.job_id) for j in in_error + shared}, key=int) + strangers
        if asked and not quick:
            try:
                details = {d.job: d for d in parse_details(self._query(["qstat", "-xml", "-j", ",".join(asked)], "qstat -j"))}
            except EngineError as e:
                answer.problems.append(f"qstat -j failed; jobs in an error state and unrecorded jobs wait for it: {e}")
                details = None
        shown = details or {}
        checked = [j for j in shared + in_error if j.token and base_id(j.job_id) in shown]  # never another job's verdict
        foreign += [j for j in checked if shown[base_id(j.job_id)].account != j.token and j not in foreign]
        candidates = _candidates(shown, strangers, records or [], recorded)
        return _Seen(by_job, records, accounted, details, candidates, bool(strangers), foreign, nowhere, in_error)

    def _judge(self, job: Submitted, seen: "_Seen", now: float, quick: bool, answer: Answer) -> None:
        """One recorded job's status, or, when its id turns out to be another job's, the job it really is."""
        base, path = base_id(job.job_id), Path(job.path)
        if job in seen.foreign:
            answer.statuses[job.job_id] = Status(State.UNKNOWN)  # never judged by another job's id
            if not _found(answer, path, _match(path, (job.token, job.submitted), seen.candidates), job.submitted):
                answer.problems.append(f"{path.name}: recorded job {job.job_id} is not this folder's job; looking for it")
            return
        if job in seen.in_error and not quick:
            if seen.details is None:  # qstat -j did not answer: ended once its reason can be given
                answer.statuses[job.job_id] = Status(State.ACTIVE, phase="queued")
            else:
                answer.statuses[job.job_id] = _in_error(job, seen.details.get(base))
            return
        mine = [r for r in seen.accounted.get(base, []) if _own(job, r)]
        status = decide(job.job_id, seen.queued.get(base, []), mine if seen.records is not None else None)
        if status.state is State.UNKNOWN and seen.records is not None:
            status = _after_deletion(job, now) or status
        answer.statuses[job.job_id] = status
        if job in seen.nowhere:  # the job with the folder's token under another id: that id was the right one
            match = _match(path, (job.token, job.submitted), seen.candidates)
            if match and match.job_id != job.job_id:
                _found(answer, path, match, job.submitted)

    def _adopt(self, path: Path, claim: tuple[str, float], seen: "_Seen", now: float, answer: Answer) -> None:
        """A claimed folder: the job Grid Engine shows for it (adopted), or unsure while a submission cannot be ruled out."""
        if _found(answer, path, _match(path, claim, seen.candidates), claim[1]):
            return
        if seen.records is None or (seen.strangers and not seen.details) or now - claim[1] < self.timeout + 30:
            answer.unsure.add(path.name)  # cannot rule a submission out yet
        elif not claim[0] and any(c.submitted is None or c.submitted >= claim[1] - CLAIM_SLACK for c in seen.candidates):
            answer.unsure.add(path.name)  # no token, and a job that might be its own: never submit twice
            answer.problems.append(
                f"{path.name}: its job.sh sets its own #$ -A, so its job cannot be told from others once it has "
                "left qstat; check its output, then move it to complete/ or back to inbox/ by hand"
            )

    def cancel(self, jobs: Sequence[Submitted], why: str = "") -> None:
        """qdel, for the jobs qstat -j shows with this folder's token (a garbled recorded id never deletes
        another job). The deletion, and why, is noted first: a job deleted before it started leaves no record."""
        if not jobs:
            return
        shown = {
            d.job: d
            for d in parse_details(self._query(["qstat", "-xml", "-j", ",".join(base_id(j.job_id) for j in jobs)], "qstat -j"))
        }
        others = [j for j in jobs if j.token and base_id(j.job_id) in shown and shown[base_id(j.job_id)].account != j.token]
        ours = [j for j in jobs if j not in others]
        now = time.time()
        for job in ours:
            note_deleted(Path(job.path), now, why)
        if ours:
            self._qdel([base_id(j.job_id) for j in ours])
        if others:
            raise EngineError(f"not deleted: job {', '.join(j.job_id for j in others)} carries another folder's token")

    def _qdel(self, ids: list[str]) -> None:
        result = self.run(["qdel", *ids], self.timeout, None, self.env)
        if result.returncode != 0:
            if not qdel_harmless(result.stdout + result.stderr):
                raise CommandFailed(result.argv, result.returncode, result.stderr or result.stdout)

    def _qacct_argv(self, oldest: float, now: float) -> list[str]:
        start = max(oldest - 300, parse_lookback(self.lookback, now))
        when = datetime.fromtimestamp(start, timezone.utc).strftime("%Y%m%d%H%M")  # read in UTC (query_env)
        return ["qacct", "-o", self.user, "-b", when, "-j"]

    def _query(self, argv: list[str], what: str, empty_ok: bool = False) -> str:
        result = self.run(argv, self.timeout, None, self.query_env)
        if result.returncode != 0:
            # Before the first job of a cell ends, qacct has no accounting file: nothing has ended yet.
            if empty_ok and nothing_ended_yet(result.stdout + result.stderr):
                return ""
            raise CommandFailed(argv, result.returncode, result.stderr or result.stdout)
        if not result.stdout.strip() and what != "qacct":
            raise EngineError(f"{what} printed nothing")  # qstat -xml prints a document even for no jobs
        try:
            if what.startswith("qstat"):
                (parse_qstat if what == "qstat" else parse_details)(result.stdout)
            else:
                parse_qacct(result.stdout)
        except ValueError as e:
            raise EngineError(f"{what} printed something unexpected: {e}") from e
        return result.stdout


class _Seen(NamedTuple):
    """What the queries showed, as the judging phases read it."""

    queued: dict[str, list[Queued]]  # qstat's lines by job number
    records: Optional[list[Record]]  # qacct's; None: not asked, or no answer
    accounted: dict[str, list[Record]]  # the same by job number
    details: Optional[dict[str, Detail]]  # qstat -j's by job number; None: it did not answer
    candidates: list[Candidate]  # the user's jobs no folder has recorded
    strangers: bool  # qstat shows such jobs (their accounts come from qstat -j)
    foreign: list[Submitted]  # recorded ids that are another job's
    nowhere: list[Submitted]  # recorded ids no record or line shows yet
    in_error: list[Submitted]  # jobs in an error state (Eqw)


def _found(answer: Answer, path: Path, match: Optional[Candidate], fallback: float) -> bool:
    """Record the job found for a folder (with its whole range and Grid Engine's submission time), if any."""
    if match is not None:
        answer.adopt(path.name, _whole(path, match), match.submitted or fallback)
    return match is not None


def _own(job: Submitted, record: Record) -> bool:
    """Is this qacct record (of the job's number) this folder's job? Its token, and not from long before
    the job's record (job numbers start again from 1 after 9,999,999, or after a new cell)."""
    recent = record.submitted is None or record.submitted >= job.submitted - REUSED_ID
    return recent and (not job.token or record.account == job.token)


def _others(job: Submitted, records: list[Record]) -> bool:
    """Does qacct show the job's number only with other tokens, on jobs as recent as this one?"""
    recent = [r for r in records if r.submitted is None or r.submitted >= job.submitted - REUSED_ID]
    return bool(recent) and not any(_own(job, r) for r in recent)


def _in_error(job: Submitted, detail: Optional[Detail]) -> Status:
    """A job in an error state (Eqw) never starts by itself: failed, in Grid Engine's words; the sweep deletes it."""
    why = "; ".join(dict.fromkeys(detail.messages)) if detail and detail.messages else "qstat -j gave no reason"
    deleted = "array job is deleted (qdel) with all its tasks" if "." in job.job_id else "job is deleted (qdel)"
    reason = (
        f"Grid Engine put job {base_id(job.job_id)} in an error state (Eqw), where it would never start by itself: "
        f"{why}\nThe {deleted}; fix the cause, then run the folder again (--retry-failed)."
    )
    return Status(State.FAILED, reason, ending=Ending.STUCK)


_H_RT = re.compile(r"\bh_rt=([^,\s]+)")


def _seconds(text: str) -> Optional[int]:
    """h_rt as qsub reads it: seconds, or H:M:S; None for anything else."""
    parts = text.split(":")
    if len(parts) not in (1, 3) or not all(p.isdigit() for p in parts):
        return None
    h, m, s = (0, 0, int(parts[0])) if len(parts) == 1 else map(int, parts)
    return (h * 60 + m) * 60 + s


def _options(script: Path) -> list[str]:
    """Every word of job.sh's `#$` lines (qsub reads them all)."""
    return directive_words(script, "#$", stop_at_command=False)


def _whole(path: Path, match: Candidate) -> str:
    """The id to record for an adopted job. One known only from qacct lists the tasks whose records have
    come so far: the array's whole range comes from job.sh's `#$ -t` instead, as qsub would print it."""
    if match.workdir or "." not in match.job_id:
        return match.job_id  # from qstat -j: its whole range; or a plain job
    words = _options(path / "job.sh")
    spec = words[words.index("-t") + 1] if "-t" in words[:-1] else ""
    m = re.fullmatch(r"(\d+)(?:-(\d+)(?::(\d+))?)?", spec)
    if not m:
        return match.job_id
    lo, hi, step = m.group(1), m.group(2) or m.group(1), m.group(3) or "1"
    return f"{base_id(match.job_id)}.{lo}-{hi}:{step}"


def _candidates(details: dict[str, Detail], strangers: list[str], records: list[Record], recorded: set[str]) -> list[Candidate]:
    """This user's jobs no folder has recorded: in qstat (with qstat -j's details) and in qacct."""
    out = []
    for j in strangers:
        if j in details:
            d = details[j]
            out.append(Candidate(f"{j}.{d.tasks}" if d.tasks else j, d.account, d.cwd, d.submitted))
    tasks: dict[str, list[Record]] = {}
    for r in records:
        if r.job not in recorded and r.job not in details:
            tasks.setdefault(r.job, []).append(r)
    for job, rs in tasks.items():
        out.append(Candidate(array_id(job, [int(r.task) for r in rs if r.task.isdigit()]), rs[0].account, "", rs[0].submitted))
    return out


def _match(path: Path, claim: tuple[str, float], candidates: list[Candidate]) -> Optional[Candidate]:
    return match_claim(path, claim, candidates, tokens_shown=True)  # qstat -j and qacct always show the account


def _after_deletion(job: Submitted, now: float) -> Optional[Status]:
    """A job the engine deleted that qacct never recorded: it was deleted before it started."""
    note = deleted(Path(job.path))
    if note is None:
        return None
    when, why = note
    if why:
        return Status(State.FAILED, why)
    if now - when < DELETE_GRACE:
        return None  # its record may still be on its way to the accounting file
    return Status(
        State.FAILED,
        f"Grid Engine has no record of job {job.job_id}: it was deleted (qdel) before it started, and such a job leaves none.",
    )
