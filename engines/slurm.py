"""Slurm engine: sbatch in the job's folder; state from one squeue and at most one sacct per run.

The text the commands print is read by the pure functions of _slurmparse.py; this module only
assembles the commands, runs them, and matches claims to jobs.
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
from jobroot.engine import Bundling, CommandFailed, EngineError, Observation, Setting, State, Status, SubmitRefused
from jobroot.engines import _batch
from jobroot.engines._batch import REUSED_ID, Answer, Candidate, claim_where, match_claim, read_claim
from jobroot.engines._process import Runner, run
from jobroot.engines._slurmenv import bundle_header, bundling, command_env, full_name, option_value, sbatch_words, user_sets
from jobroot.engines._slurmenv import sbatch_defaults as sbatch_defaults_value
from jobroot.engines._slurmparse import (
    KNOWN,
    SACCT_FIELDS,
    SEP,
    SQUEUE_FORMAT,
    Row,
    accounting_disabled,
    classify_refusal,
    decide,
    is_active,
    parse_rows,
    parse_sbatch_id,
    split_id,
    task_count,
)
from jobroot.folders import Submitted

Claims = dict[Path, Optional[tuple[str, float]]]  # a claimed folder -> (token, when); None: unreadable, never sent
MAX_ID_LIST = 100_000  # characters of --jobs=: one argument may not pass 128 KiB (Linux); beyond, a window search

# ---------------------------------------------------------------- the engine


class SlurmEngine:
    name = "slurm"
    dependencies = True  # jobs in a chain are handed to sbatch with --dependency=afterok
    SETTINGS = (
        *BATCH_SETTINGS,
        Setting(
            "sbatch_defaults",
            sbatch_defaults_value,
            "",
            "'OPTIONS'",
            "sbatch options for every job whose job.sh does not set them, e.g. '--account=lab --partition=short'",
        ),
    )

    def __init__(
        self,
        max_queued: Optional[int] = None,
        lookback: str = "7d",
        command_timeout: float = COMMAND_TIMEOUT,
        sbatch_defaults: str = "",
        runner: Runner = run,
        user: Optional[str] = None,
        environ: Optional[Mapping[str, str]] = None,
    ) -> None:
        self.max_queued = max_queued
        self.timeout = command_timeout
        self.lookback = lookback
        parse_lookback(lookback, time.time())  # a bad value is a usage error now, not a failed run later
        self.run = runner
        self.user = user or pwd.getpwuid(os.getuid()).pw_name
        import shlex

        # Checked by sbatch_defaults_value when given or recorded; in full names, to be matched with job.sh's.
        self.defaults = [full_name(w) for w in shlex.split(sbatch_defaults)]
        # Where jobs go unless job.sh says otherwise: asked for --max-queued even with none of them pending.
        self.default_where = (option_value(self.defaults, "clusters") or "").lower()
        # sbatch gets the sweep's environment less Slurm's variables, and passes it to the job (--export
        # is left at its default, ALL). Queries print times in UTC, in the standard form.
        self.env = command_env(os.environ if environ is None else environ)
        self.query_env = {**self.env, "SLURM_TIME_FORMAT": "standard", "TZ": "UTC"}

    def submit(self, job_dir: Path, after: Sequence[str] = ()) -> str:
        import secrets  # only submissions need it (3 ms of imports)

        lines = sbatch_words(job_dir / "job.sh")
        # The cluster the job goes to: job.sh's --clusters, else a site default's; "" for this host's own.
        # Slurm reads cluster names in lower case, "all" in any case.
        where = (option_value(lines, "clusters") or self.default_where).lower()
        if "all" in where.split(","):
            raise SubmitRefused("--clusters=all: name the clusters the job may go to (sacctmgr list clusters)", True)
        if after and user_sets(lines, "dependency"):  # the command line's would silently replace the job's own
            raise SubmitRefused("job.sh sets #SBATCH --dependency and the folder has an after file: use one or the other", True)
        elsewhere = [a for a in after if split_id(a)[1] != where]
        if elsewhere:  # afterok names jobs of the cluster the job is sent to
            here = "this host's cluster"
            there = split_id(elsewhere[0])[1] or here
            raise SubmitRefused(
                f"it runs after job {elsewhere[0]}, on {there}, but goes to {where or here}: "
                "Slurm starts a job after others only on one cluster; send both to the same one (#SBATCH --clusters)",
                True,
            )
        ids = ":".join(split_id(a)[0] for a in after)
        chain = [f"--dependency=afterok:{ids}", "--kill-on-invalid-dep=yes"] if after else []
        # The token goes in --comment so the next run can find this job if its id is never recorded (or
        # is garbled); a comment the user set is kept, and then there is no token ("").
        token = "" if user_sets(lines, "comment") else f"jobroot-{secrets.token_hex(8)}"
        defaults = [d for d in self.defaults if not user_sets(lines, d[2:].split("=", 1)[0])]  # job.sh's own win
        argv = ["sbatch", "--parsable", *defaults, *chain, *([f"--comment={token}"] if token else []), "job.sh"]
        return _batch.submit(job_dir, argv, self.run, self.timeout, self.env, parse_sbatch_id, classify_refusal, token, where)

    def bundling(self, script: Path) -> Optional[Bundling]:
        return bundling(script)

    def bundle_header(self, script: Path, members: int) -> str:
        return bundle_header(script, members)

    def observe(self, jobs: Sequence[Submitted], claimed: Sequence[Path], quick: bool = False) -> Observation:
        """One squeue and at most one sacct for each cluster in use: this host's own (always, when there is
        a --max-queued to keep), and each one jobs were sent to with --clusters (their ids read `42;second`)."""
        if not jobs and not claimed and self.max_queued is None:
            return Observation()
        groups: dict[str, tuple[list[Submitted], Claims]] = {}
        if self.max_queued is not None:
            for cluster in self.default_where.split(","):  # where new jobs go: their room is counted there
                groups[cluster] = ([], {})
        for job in jobs:
            base, cluster = split_id(job.job_id)
            groups.setdefault(cluster, ([], {}))[0].append(job._replace(job_id=base))
        for path in claimed:
            for cluster in claim_where(path).lower().split(","):  # sbatch picked one of those named: asked in each
                groups.setdefault(cluster, ([], {}))[1][path] = read_claim(path)
        parts = []
        for cluster, (some, claims) in sorted(groups.items()):
            try:
                part = self._observe(cluster, some, claims, quick)
            except EngineError as e:
                if not cluster:
                    raise  # this host's own cluster: the run learns nothing
                why = f"{e}; its jobs wait"
                part = Observation(unsure=frozenset(p.name for p in claims), room=0, problems=(why,))
            parts.append((cluster, part))
        return _merge(parts, self.max_queued)

    def _observe(self, cluster: str, jobs: Sequence[Submitted], claims: Claims, quick: bool) -> Observation:
        """The jobs and claims of one cluster, by their ids there: ask the queue, ask accounting for what left
        it, judge each job, adopt claims, count the room."""
        now = time.time()
        answer = _Answer()
        queued = self._query(
            ["squeue", "--noheader", "--array", "--states=all", f"--user={self.user}", f"--format={SQUEUE_FORMAT}"], True, cluster
        )
        accounted = None if quick else self._ask_accounting(cluster, jobs, claims, queued, now, answer)
        strange = sorted({r.word for r in queued + (accounted or []) if r.word not in KNOWN})
        if strange:
            answer.notes.append(f"Slurm states not known to this version, taken as still active: {', '.join(strange)}")
        recorded = {j.job_id for j in jobs}
        unrecorded = _candidates([r for r in queued + (accounted or []) if r.base not in recorded])
        seen = _Seen(_group(queued), None if accounted is None else _group(accounted), unrecorded)
        who = f"Slurm cluster {cluster}" if cluster else "Slurm"
        for job in jobs:
            self._judge(job, seen, who, answer)
        for path, claim in claims.items():
            if claim is not None:  # None: killed before anything was sent to Slurm: submit it
                self._adopt(path, claim, seen, now, answer)
        room = None
        if self.max_queued is not None:
            room = self.max_queued - sum(task_count(r.job_id) for r in queued if is_active(r.word))
        return answer.observation(room)

    def _ask_accounting(
        self, cluster: str, jobs: Sequence[Submitted], claims: Claims, queued: list[Row], now: float, answer: "_Answer"
    ) -> Optional[list[Row]]:
        """At most one sacct, for the recorded jobs that left the queue and the claims it does not show; None
        when it was not asked or could not answer (nothing absent from squeue is then ruled out)."""
        by_base = _group(queued)
        # A recorded id that squeue shows with another job's token: the job with the token is searched for.
        mismatched = {j.job_id for j in jobs if _foreign(j, by_base.get(j.job_id, []), None)}
        need_sacct = [j for j in jobs if j.job_id in mismatched or not any(is_active(r.word) for r in by_base.get(j.job_id, []))]
        shown = _candidates(queued)
        searching = [p for p, c in claims.items() if c and _match(p, c, shown) is None]
        window = bool(searching or mismatched)
        argv = self._sacct_argv(need_sacct, jobs, claims, window, now)
        if not argv or not (need_sacct or searching):
            return None
        try:
            accounted = self._query(argv, False, cluster)
            if not window and _named_no_job(need_sacct, by_base, accounted):
                # Rare: a recorded id that names no job at all (a garbled answer). Only a window search
                # can find the job that carries the folder's token: the one run with a second sacct.
                accounted += self._query(self._sacct_argv(need_sacct, jobs, claims, True, now) or [], False, cluster)
        except EngineError as e:
            if accounting_disabled(str(e)):
                answer.accounting = False
                answer.notes.append("Slurm accounting is disabled: outcomes come from squeue alone (see docs/engines/slurm.md)")
            else:
                answer.problems.append(f"sacct failed; jobs that left the queue wait for it: {e}")
            return None
        return accounted

    def _judge(self, job: Submitted, seen: "_Seen", who: str, answer: "_Answer") -> None:
        """One recorded job's status, or, when its id turns out to be another job's, the job it really is."""
        queue_rows = seen.queued.get(job.job_id, [])
        acct_rows = None
        if seen.accounted is not None:  # an id Slurm reused long after this job: its rows are another job's
            old = job.submitted - REUSED_ID
            acct_rows = [r for r in seen.accounted.get(job.job_id, []) if r.submit is None or r.submit >= old]
        foreign = _foreign(job, queue_rows, acct_rows)
        nowhere = bool(job.token) and not queue_rows and acct_rows is not None and not acct_rows
        if not foreign and not nowhere:
            status = decide(job.job_id, queue_rows, acct_rows, answer.accounting, who)
            answer.statuses[job.job_id] = _without_accounting(job) if not answer.accounting and not queue_rows else status
            return
        # The recorded id is another job's, or no job's (a garbled sbatch answer): never judge this folder by
        # it; look for the job that carries the folder's token.
        answer.statuses[job.job_id] = Status(State.UNKNOWN)
        right = _match(Path(job.path), (job.token, job.submitted), seen.unrecorded)
        name = os.path.basename(job.path)
        if right:
            answer.adopt(name, right.job_id, right.submitted or job.submitted)
        elif foreign:
            answer.problems.append(f"{name}: recorded job {job.job_id} is not this folder's job; looking for it")

    def _adopt(self, path: Path, claim: tuple[str, float], seen: "_Seen", now: float, answer: "_Answer") -> None:
        """A claimed folder: the job Slurm shows for it (adopted), or unsure while a submission cannot be ruled out."""
        match = _match(path, claim, seen.unrecorded)
        if match:
            answer.adopt(path.name, match.job_id, match.submitted or claim[1])  # not now: the sacct window starts there
        elif seen.accounted is None or now - claim[1] < self.timeout + 30:
            answer.unsure.add(path.name)  # cannot rule a submission out yet
            if not answer.accounting and now - claim[1] >= self.timeout + 30:
                answer.problems.append(
                    f"{path.name}: cannot tell whether it was submitted (accounting is off and Slurm no longer lists it); "
                    "check its output, then move it to complete/ or back to inbox/ by hand"
                )

    def cancel(self, jobs: Sequence[Submitted], why: str = "") -> None:
        by_cluster: dict[str, list[str]] = {}
        for job in jobs:
            base, cluster = split_id(job.job_id)
            by_cluster.setdefault(cluster, []).append(base)
        failed = None
        for cluster, ids in sorted(by_cluster.items()):
            result = self.run(["scancel", *([f"--clusters={cluster}"] if cluster else []), *ids], self.timeout, None, self.env)
            if result.returncode != 0:
                failed = CommandFailed(result.argv, result.returncode, result.stderr)
        if failed:
            raise failed

    def _sacct_argv(
        self,
        ended: Sequence[Submitted],
        jobs: Sequence[Submitted],
        claims: Claims,
        searching: bool,
        now: float,
    ) -> Optional[list[str]]:
        """One sacct: the recorded ids that left the queue, by id; or, while a claim without an id is being
        searched for (or the ids would not fit in one argument), every job of this user since the oldest
        pending submission, bounded by --lookback.

        By id, sacct finds a job however it ended, also one that was never eligible to start (held, a
        future --begin, an unmet dependency) and was cancelled: a time window never shows those.
        """
        # --user always: with --jobs alone, sacct looks at every user's jobs.
        argv = [
            "sacct",
            "-X",
            "--noheader",
            "--parsable2",
            f"--delimiter={SEP}",
            f"--format={SACCT_FIELDS}",
            f"--user={self.user}",
        ]
        ids = ",".join(sorted({j.job_id for j in ended if j.job_id.isdigit()}))  # a hand-edited record: not asked
        if not searching and len(ids) < MAX_ID_LIST:
            return [*argv, f"--jobs={ids}"] if ids else None
        since = [j.submitted for j in jobs] + [c[1] for c in claims.values() if c]
        if not since:
            return None
        start = max(min(since) - 300, parse_lookback(self.lookback, now))
        when = datetime.fromtimestamp(start, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")  # read in UTC (query_env)
        return [*argv, f"--starttime={when}", "--endtime=now"]

    def _query(self, argv: list[str], squeue: bool, cluster: str) -> list[Row]:
        # This host's cluster: --federation, so a job a sibling cluster of a federation runs is seen there
        # (without it squeue shows this cluster's REVOKED copy, then nothing, and sacct nothing at all);
        # outside a federation it changes nothing. Another cluster: --clusters, never with --federation
        # (together they answer nothing, measured on 22.05). With --noheader, no `CLUSTER:` line either.
        argv = [argv[0], f"--clusters={cluster}" if cluster else "--federation", *argv[1:]]
        result = self.run(argv, self.timeout, None, self.query_env)
        if result.returncode != 0:
            raise CommandFailed(argv, result.returncode, result.stderr)
        # Slurm before 23.11.4 could print an error and still exit 0 (Slurm bug 18410): no rows then
        # would read as "nothing to report", which could submit a claimed job twice.
        if re.search(r"^\S+: error:", result.stderr, re.MULTILINE):
            raise CommandFailed(argv, 0, result.stderr, "an error with exit code 0")
        try:
            return parse_rows(result.stdout, squeue)
        except ValueError as e:
            raise EngineError(f"{argv[0]} printed something unexpected: {e}") from e


class _Seen(NamedTuple):
    """One cluster's rows, as the judging phases read them."""

    queued: dict[str, list[Row]]  # squeue's rows by the id sbatch returned
    accounted: Optional[dict[str, list[Row]]]  # sacct's, likewise; None: not asked, or no answer
    unrecorded: list[Candidate]  # jobs no folder has recorded: where a claim's job is looked for


class _Answer(Answer):
    """One cluster's observation in the making."""

    accounting = True  # False: the cluster keeps none; outcomes come from squeue alone


def _merge(parts: list[tuple[str, Observation]], limit: Optional[int]) -> Observation:
    """One observation from each cluster's: ids there become the recorded ones (`42;second`); --max-queued
    counts the jobs of every cluster asked (one not answered leaves no room)."""
    statuses: dict[str, Status] = {}
    found: dict[str, str] = {}
    since: dict[str, float] = {}
    unsure: set[str] = set()
    notes: list[str] = []
    problems: list[str] = []
    used = 0
    for cluster, obs in parts:
        at = f";{cluster}" if cluster else ""
        statuses.update({job_id + at: status for job_id, status in obs.statuses.items()})
        found.update({name: job_id + at for name, job_id in obs.found.items()})
        since.update(obs.submitted)
        unsure |= obs.unsure
        notes += [n for n in obs.notes if n not in notes]
        problems += [f"cluster {cluster}: {p}" if cluster else p for p in obs.problems]
        used += 0 if limit is None else limit - (obs.room or 0)
    room = None if limit is None else limit - used
    return Observation(statuses, found, frozenset(unsure - found.keys()), room, tuple(notes), tuple(problems), since)


def _foreign(job: Submitted, queued: list[Row], accounted: Optional[list[Row]]) -> bool:
    """Do Slurm's rows for the recorded id show another job (a different token in its comment)?

    squeue always shows the comment; sacct only where the site stores it, so an empty one there proves
    nothing. Jobs whose users set their own --comment carry no token and are not checked.
    """
    if not job.token:
        return False
    return any(r.comment != job.token for r in queued) or any(r.comment and r.comment != job.token for r in accounted or [])


def _named_no_job(jobs: Sequence[Submitted], queued: dict[str, list[Row]], accounted: list[Row]) -> bool:
    """Does a recorded id (with a token to look for) name no job in squeue nor in sacct's answer by id?"""
    answered = {r.base for r in accounted}
    return any(j.token and j.job_id not in queued and j.job_id not in answered for j in jobs)


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


def _candidates(rows: list[Row]) -> list[Candidate]:
    return [Candidate(r.base, r.comment, r.workdir, r.submit, r.end) for r in rows]


def _match(path: Path, claim: tuple[str, float], candidates: list[Candidate]) -> Optional[Candidate]:
    return match_claim(path, claim, candidates, tokens_shown=False)  # sacct shows comments only where the site stores them
