"""Grid Engine's words, read by pure functions: `qsub -terse`, `qstat -xml`, `qstat -xml -j`, `qacct -j`.

Written against Son of Grid Engine 8.1.9 (tests/data/gridengine-8.1.9-*.txt, captured on the test cell).
The engine runs every command with TZ=UTC, so the times they print are read as UTC.
"""

import re
from datetime import datetime, timezone
from typing import NamedTuple, Optional, Sequence
from xml.etree import ElementTree

from jobroot.engine import State, Status, signal_name
from jobroot.engines._batch import Refusal, judge_refusal, task_ranges

# Reasons qsub gives, lower-cased. Transient: try again next run. Permanent: the job can never run as it is.
TRANSIENT = (
    "unable to contact qmaster",
    "unable to send message to qmaster",
    "commlib error",
    "got send error",
    "connection refused",
    "failed receiving gdi request",
    "jobs are allowed",  # max_u_jobs / max_jobs: "job rejected: only 1 jobs are allowed per user"
    "no route to host",
    "timed out",
)
PERMANENT = (
    "unknown queue",
    "unknown resource",
    "invalid option",
    "unknown option",
    "no suitable queues",
    "can't read script",
    "no such file or directory",
    "lower than minimum user id",
)
# What qacct's `failed` codes mean, for the few a user meets (qacct prints Grid Engine's short words after them).
FAILED_MEANING = {
    26: "the job's output or error file could not be opened",
    27: "the shell the job asked for was not found",
    28: "its working directory could not be entered",
    100: "the job was ended by a signal: qdel, a limit such as h_rt or h_vmem, or the job itself",
}


class Queued(NamedTuple):
    """One <job_list> of `qstat -xml`: a job, or one task of an array (each running task has its own)."""

    job: str  # the job number
    tasks: str  # "" for a plain job; "2" for a running task; "2,3" or "4-9:1" for tasks still waiting
    state: str  # qw, hqw, r, t, Eqw, dr, ...
    since: Optional[float]  # submission time while waiting, start time once running


class Detail(NamedTuple):
    """One job of `qstat -xml -j IDS`."""

    job: str
    account: str  # -A: the claim token the engine gives a job
    cwd: str
    submitted: Optional[float]
    tasks: str  # "" for a plain job, else "1-3:1"
    messages: tuple[str, ...]  # why a task is in an error state, without the timestamp


class Record(NamedTuple):
    """One record of `qacct -j`: a job, or one task of an array."""

    job: str
    task: str  # "" for a plain job ("undefined")
    account: str
    submitted: Optional[float]
    failed: int
    failed_words: str  # "assumedly after job"
    exit_status: int
    line: str  # the fields that say how it ended, for job_error.txt


def parse_qsub_id(stdout: str) -> Optional[str]:
    """`qsub -terse` prints `42`, or `43.1-3:1` for an array, on its first line (with `-sync y`, the job's
    end follows): that answer, or None when it is not one."""
    m = re.match(r"\s*(\d+(?:\.\d+-\d+:\d+)?)\s*$", stdout.split("\n", 1)[0])
    return m.group(1) if m else None


def base_id(job_id: str) -> str:
    """The job number: 43 for `43.1-3:1`."""
    return job_id.split(".", 1)[0]


def task_count(spec: str) -> int:
    """How many jobs a job id or a qstat line stands for: 1 for a plain job."""
    return max(sum(len(r) for r in task_ranges(spec)), 1)


def array_id(job: str, tasks: Sequence[int]) -> str:
    """A job id as qsub -terse gives it, for an adopted array: `43.1-3:1`, or just `43` for a plain job."""
    if not tasks:
        return job
    ordered = sorted(set(tasks))
    step = ordered[1] - ordered[0] if len(ordered) > 1 else 1
    if ordered == list(range(ordered[0], ordered[-1] + 1, step)):
        return f"{job}.{ordered[0]}-{ordered[-1]}:{step}"
    return f"{job}.{','.join(map(str, ordered))}"


def _xml(text: str, what: str) -> ElementTree.Element:
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as e:
        raise ValueError(f"{what} printed something that is not XML: {e}") from None
    if root.tag == "comunication_error":  # (sic) qstat -j exits 0 with this when qmaster does not answer
        raise ValueError(f"{what} could not reach qmaster: {root.findtext('AN_text', '').strip()}")
    return root


def _iso(text: Optional[str]) -> Optional[float]:
    try:
        return datetime.fromisoformat((text or "").strip()).replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        return None


def parse_qstat(text: str) -> list[Queued]:
    """Jobs of `qstat -xml -u USER`, waiting (<job_info>) and running (<queue_info>) alike."""
    rows = []
    for job in _xml(text, "qstat").iter("job_list"):
        since = _iso(job.findtext("JB_submission_time")) or _iso(job.findtext("JAT_start_time"))
        number = (job.findtext("JB_job_number") or "").strip()
        if not number.isdigit():
            raise ValueError(f"qstat printed a job without a number: {ElementTree.tostring(job, 'unicode')[:200]!r}")
        rows.append(Queued(number, (job.findtext("tasks") or "").strip(), (job.findtext("state") or "").strip(), since))
    return rows


def parse_details(text: str) -> list[Detail]:
    """Jobs of `qstat -xml -j ID,ID,...`."""
    details = []
    for job in _xml(text, "qstat -j").iter("element"):
        number = (job.findtext("JB_job_number") or "").strip()
        if not number:
            continue  # a nested <element> (mail list, binding)
        submitted = (job.findtext("JB_submission_time") or "").strip()
        tasks = ""
        if job.find("JB_ja_structure") is not None and job.findtext(".//JB_ja_structure/task_id_range/RN_max", "1") != "1":
            r = job.find(".//JB_ja_structure/task_id_range")
            assert r is not None
            tasks = f"{r.findtext('RN_min', '1')}-{r.findtext('RN_max', '1')}:{r.findtext('RN_step', '1')}"
        messages = tuple(
            re.sub(r"^\d\d/\d\d/\d{4} [\d:]+ \[[^\]]*\]: ", "", (m.text or "").strip()) for m in job.iter("QIM_message")
        )
        details.append(
            Detail(
                number,
                (job.findtext("JB_account") or "").strip(),
                (job.findtext("JB_cwd") or "").strip(),
                float(submitted) if submitted.isdigit() else None,
                tasks,
                messages,
            )
        )
    return details


def _ctime(text: str) -> Optional[float]:
    try:
        return datetime.strptime(text.strip(), "%a %b %d %H:%M:%S %Y").replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        return None


def parse_qacct(text: str) -> list[Record]:
    """Records of `qacct -o USER -b WHEN -j`: blocks of `name value` lines between lines of `=`."""
    records = []
    for block in re.split(r"^=+\s*$", text, flags=re.MULTILINE):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            name, _, value = line.strip().partition(" ")
            if name:
                fields[name] = value.strip()
        if "jobnumber" not in fields:
            continue  # the heading of an empty answer, or the summary
        failed, _, words = fields.get("failed", "").partition(":")
        exit_status = fields.get("exit_status", "").split(" ", 1)[0]
        # A record cut short could end inside `exit_status 137` (read as 13): one field must follow it.
        if not failed.strip().isdigit() or not exit_status.isdigit() or list(fields)[-1] == "exit_status":
            raise ValueError(f"a qacct record without failed/exit_status, or cut short: {block.strip()[:300]!r}")
        task = fields.get("taskid", "undefined")
        summary = " ".join(f"{k} {fields[k]}" for k in ("jobnumber", "taskid", "failed", "exit_status") if k in fields)
        records.append(
            Record(
                fields["jobnumber"],
                "" if task == "undefined" else task,
                fields.get("account", ""),
                _ctime(fields.get("qsub_time", "")),
                int(failed),
                " ".join(words.split()),
                int(exit_status),
                re.sub(r"\s+", " ", summary),
            )
        )
    return records


def refusal_reason(message: str) -> str:
    """qsub's reason: the `Unable to run job: ...` line, else its first line that is not `Exiting.`."""
    lines = [line.strip() for line in message.splitlines() if line.strip() and line.strip() != "Exiting."]
    for line in lines:
        if line.lower().startswith("unable to run job"):
            return line
    return lines[0] if lines else ""


def classify_refusal(message: str) -> Refusal:
    """What qsub's refusal means, judged by the reason it gives (UNKNOWN: in neither table)."""
    return judge_refusal(refusal_reason(message).lower(), TRANSIENT, PERMANENT)


def nothing_ended_yet(message: str) -> bool:
    """Does qacct say the cell has no accounting file yet (`no jobs running since startup`: none has ended)?"""
    return "no jobs running since startup" in message.lower()


def qdel_harmless(message: str) -> bool:
    """Does every line of qdel's complaint only say the job is already gone or going? A job may end between
    qstat and qdel (`denied: job "41" does not exist`): not a failure."""
    lines = [line for line in message.splitlines() if line.strip()]
    harmless = ("does not exist", "has deleted", "registered the job", "already in deletion")
    return bool(lines) and all(any(h in line for h in harmless) for line in lines)


def describe(record: Record) -> str:
    """How one job or task ended, in qacct's words: `exit code 3`, `signal 9 (SIGKILL); qacct: failed 100: ...`."""
    if record.failed == 0:
        return f"exit code {record.exit_status}"
    meaning = FAILED_MEANING.get(record.failed, "")
    grid = f"failed {record.failed}" + (f": {record.failed_words}" if record.failed_words else "")
    said = grid + (f" ({meaning})" if meaning else "")
    if record.exit_status > 128:
        return f"signal {record.exit_status - 128} ({signal_name(record.exit_status - 128)}); qacct: {said}"
    return said + (f", exit status {record.exit_status}" if record.exit_status else "")


def decide(job_id: str, queued: list[Queued], records: Optional[list[Record]]) -> Status:
    """The state of one submission from its qstat lines and its qacct records (None: qacct not answered).

    A job is judged only once qacct has a record for it, and an array once it has one for every task
    qsub named: the records of one array may reach the accounting file in different flushes.
    A job found in neither is UNKNOWN, never finished.
    """
    if queued:
        running = any(q.state in ("r", "t", "Rr", "Rt") for q in queued)
        return Status(State.ACTIVE, phase="running" if running else "queued")
    if not records:
        return Status(State.UNKNOWN)
    records = list({r.task: r for r in records}.values())  # a task run again (rescheduled): its last record
    wanted = {t for r in task_ranges(job_id.partition(".")[2]) for t in r} if "." in job_id else set()
    if {int(r.task) for r in records if r.task.isdigit()} < wanted:
        return Status(State.UNKNOWN)  # some tasks' records have not reached the accounting file yet
    failed = [r for r in records if r.failed or r.exit_status]
    if not failed:
        return Status(State.DONE)
    lines = "\n".join(f"qacct: {r.line}" for r in records)
    if not wanted:
        head = f"Grid Engine reports job {base_id(job_id)} ended with {describe(failed[0])}."
    else:
        ways: dict[str, list[int]] = {}  # tasks that ended the same way are named together
        for r in failed:
            ways.setdefault(describe(r), []).append(int(r.task) if r.task.isdigit() else 0)
        shown = ", ".join(f"task{'s' if len(ts) > 1 else ''} {_spell(ts)} ended with {how}" for how, ts in ways.items())
        head = f"Grid Engine reports {len(failed)} of {len(records)} tasks of job {base_id(job_id)} failed: {shown}."
    return Status(State.FAILED, f"{head}\n{lines}")


def _spell(tasks: list[int]) -> str:
    """Task numbers as a person writes them: `2`, `1-4`, `2-8:2`, `1,3,7`."""
    if len(set(tasks)) == 1:
        return str(tasks[0])
    spec = array_id("", tasks)[1:]
    return spec[:-2] if spec.endswith(":1") else spec
