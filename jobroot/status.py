"""What is waiting, held, queued, running, done and failed: `--status` and the root's status files.

`--status` reads everything, complete/ included, and asks the engine at most one cheap query. The
status files a sweep writes (`status.txt`, `status.json`) cover inbox/ and pending/ plus the most
recent endings, so a sweep never has to list complete/.
"""

# No `from __future__ import annotations` here: typing.NamedTuple compiles every string annotation
# at import, ~10 ms per run (measured); real annotation objects cost nothing.

import enum
import json
import os
import sys
import time
from pathlib import Path
from typing import Iterable, NamedTuple, Optional

from jobroot import folders as fs
from jobroot.config import Options
from jobroot.engine import EngineError, Observation, State
from jobroot.folders import Submitted, show
from jobroot.plan import InboxFolder, Verdict

RECENT = 100  # endings kept in the status files
LISTED_WAITING = 100  # inbox folders named in the status files (the next in line); the rest are counted
HELD = "a file named hold is in the folder"
WHY_WAITING = {"still changing": "settling: something in it changed less than --settle ago", "no job.sh yet": "no job.sh yet"}


class Phase(str, enum.Enum):
    """Where a job stands, as the status table shows it; the order is the table's (busiest first)."""

    RUNNING = "running"
    QUEUED = "queued"
    SUBMITTING = "submitting"
    UNKNOWN = "unknown"
    WAITING = "waiting"
    HELD = "held"
    FAILED = "failed"
    DONE = "done"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:  # f"{phase:<10}" pads its value on every Python version
        return format(self.value, spec)


ORDER = tuple(Phase)


class Entry(NamedTuple):
    name: str
    state: Phase
    job_id: str
    since: Optional[float]  # epoch seconds the folder entered this state, as near as the files tell
    reason: str = ""  # first line of job_error.txt, or why it waits


def inbox_entries(folders: Iterable[InboxFolder]) -> list[Entry]:
    """Waiting and held folders, from the same look at inbox/ that a sweep takes; links and bad folders are not jobs yet."""
    entries = []
    for f in folders:
        if f.verdict == Verdict.NOTE:
            continue
        held = f.reason == "held"
        chain = f.reason if f.reason.startswith("waiting for ") else ""
        why = HELD if held else WHY_WAITING.get(f.reason, f.reason if f.verdict == Verdict.SKEWED else chain)
        entries.append(Entry(f.name, Phase.HELD if held else Phase.WAITING, "", f.since, why))
    return entries


def pending_entries(
    root: Path, records: dict[str, Optional[Submitted]], obs: Optional[Observation], fresh: Iterable[str] = ()
) -> list[Entry]:
    """fresh: folders submitted after `obs` was taken (by the sweep writing the files): queued, not unknown."""
    entries = []
    fresh = set(fresh)
    for name, record in records.items():
        if record is None:
            entries.append(Entry(name, Phase.SUBMITTING, "", _ctime(root / fs.PENDING / name)))
            continue
        status = obs.statuses.get(record.job_id) if obs else None
        if status is None and name in fresh:
            state, reason = (Phase.QUEUED, "submitted by this run; its state comes with the next")
        elif status is None or status.state is State.UNKNOWN:
            state, reason = (Phase.UNKNOWN, "not reported by the batch system right now")
        elif status.state is State.ACTIVE:
            state, reason = (Phase(status.phase or "running"), "")
        elif status.state is State.DONE:
            state, reason = (Phase.DONE, "")
        else:
            state, reason = (Phase.FAILED, status.reason.split("\n", 1)[0])
        entries.append(Entry(name, state, record.job_id, record.submitted, reason))
    return entries


def complete_entry(root: Path, name: str) -> Optional[Entry]:
    path = root / fs.COMPLETE / name
    if not os.path.isdir(path) or os.path.islink(path):
        return None
    error = _first_line(path / fs.ERROR)
    record = _record(path)
    return Entry(
        name, Phase.FAILED if error is not None else Phase.DONE, record.job_id if record else "", _ctime(path), error or ""
    )


def render_table(entries: list[Entry], now: float, unlisted: int = 0) -> str:
    """The human-readable status: one line a folder, busiest states first, then counts."""
    rank = {state: i for i, state in enumerate(ORDER)}
    rows = sorted(entries, key=lambda e: (rank[e.state], e.name))
    name_width = min(max([len(show(e.name)) for e in rows] + [4]), 40)
    lines = [f"{'NAME':<{name_width}}  {'STATE':<10}  {'JOB ID':<10}  {'FOR':>6}  REASON"]
    for e in rows:
        since = age(now - e.since) if e.since else "-"
        lines.append(f"{show(e.name):<{name_width}}  {e.state:<10}  {e.job_id or '-':<10}  {since:>6}  {e.reason}".rstrip())
    if unlisted:
        lines.append(f"... and {unlisted} more waiting in inbox/")
    lines.append(summary(_counts(entries, unlisted)))
    return "\n".join(lines) + "\n"


def render_json(entries: list[Entry], now: float, unlisted: int = 0) -> str:
    data = {
        "generated": now,
        "counts": _counts(entries, unlisted),
        "waiting_not_listed": unlisted,
        "jobs": [e._asdict() for e in entries],
    }
    return json.dumps(data, ensure_ascii=False) + "\n"  # no indent: the C encoder is ~10x faster


def write_files(root: Path, live: list[Entry], ended: list[Entry], previous: list[Entry], now: float, unlisted: int = 0) -> None:
    """Replace status.txt and status.json atomically, carrying the most recent endings forward.

    previous: the endings recorded before this run (recent_endings); unlisted: waiting inbox folders
    beyond the first LISTED_WAITING, counted but not named.
    """
    just_ended = {e.name for e in ended}
    recent = (ended + [e for e in previous if e.name not in just_ended])[:RECENT]
    if ended:
        fs.write_atomic(root / fs.RECENT_FILE, json.dumps([e._asdict() for e in recent]) + "\n")
    entries = live + recent
    text = render_table(entries, now, unlisted).rstrip("\n")
    header = (
        f"Status of {root} at {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(now))}: done/failed are the {RECENT} latest;\n"
        "inbox folders this run did not look at show as waiting (`reconcile -r ROOT --status` looks at all).\n"
    )
    fs.write_atomic(root / fs.STATUS_TXT, header + text + "\n")
    fs.write_atomic(root / fs.STATUS_JSON, render_json(entries, now, unlisted))
    from jobroot.page import render

    rank = {state: i for i, state in enumerate(ORDER)}
    rows = [
        (show(e.name), e.state.value, e.job_id, e.since or 0.0, e.reason)
        for e in sorted(entries, key=lambda e: (rank[e.state], e.name))
    ]
    fs.write_atomic(root / fs.STATUS_HTML, render(root, rows, _counts(entries, unlisted), now))


def summary(counts: dict[str, int]) -> str:
    """`2 running, 1 queued, 3 waiting, 14 done, 1 failed`: the counts as --status and watch mode say them."""
    return ", ".join(f"{n} {state}" for state, n in counts.items() if n) or "no jobs"


def _counts(entries: list[Entry], unlisted: int) -> dict[str, int]:
    counts = dict.fromkeys(ORDER, 0)
    for e in entries:
        counts[e.state] += 1
    counts[Phase.WAITING] += unlisted
    return {state.value: n for state, n in counts.items()}


def recent_endings(root: Path) -> list[Entry]:
    """The latest endings, newest first, as the last runs recorded them."""
    try:
        return [
            Entry(**{**e, "state": Phase(e["state"])}) for e in json.loads((root / fs.RECENT_FILE).read_text(encoding="utf-8"))
        ]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def _first_line(path: Path) -> Optional[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.readline().rstrip("\n")
    except FileNotFoundError:
        return None
    except OSError as e:
        return f"(job_error.txt unreadable: {e.strerror})"


def _record(path: Path) -> Optional[Submitted]:
    try:
        return fs.read_record(path)
    except ValueError:
        return None


def _ctime(path: Path) -> float:
    try:
        return os.lstat(path).st_ctime
    except OSError:
        return time.time()


def age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def show_status(root: Path, opts: Options, as_json: bool) -> int:
    """--status: everything, complete/ included; at most one cheap engine query; no lock, no writes."""
    from jobroot.config import load_engine
    from jobroot.observe import scan_inbox, scan_pending

    engine = load_engine(opts)
    records: dict[str, Optional[Submitted]] = {}
    for p in scan_pending(root):
        records[p.name] = p.record
    live = [r for r in records.values() if r and r.engine == engine.name]
    obs = None
    code = 0
    if live:
        try:
            obs = engine.observe(live, [], quick=True)
        except EngineError as e:
            print(f"reconcile: cannot ask the {engine.name} engine; pending jobs shown as unknown: {e}", file=sys.stderr)
            code = 1
    now = time.time()
    from jobroot.observe import Chains
    from jobroot.plan import Wait, chained

    waiting = fs.names(root / fs.INBOX)
    inbox = list(scan_inbox(root, waiting, opts.settle, now, opts.shared_group, Chains(root, frozenset(waiting), records)))
    for i, f in enumerate(inbox):  # a folder in a chain: what it waits for, as a sweep would judge it
        if f.after:
            action = chained(f, obs or Observation(), set(), engine.chains, engine.name)
            inbox[i] = f._replace(verdict=Verdict.WAIT, reason=action.reason) if isinstance(action, Wait) else f
    entries = inbox_entries(inbox) + [_attempt(root, e) for e in pending_entries(root, records, obs)]
    entries += [e for e in (complete_entry(root, n) for n in fs.names(root / fs.COMPLETE)) if e]
    sys.stdout.write(render_json(entries, now) if as_json else render_table(entries, now))
    return code


def _attempt(root: Path, entry: Entry) -> Entry:
    """--status: a job submitted again after the infrastructure ended it says which attempt it is."""
    earlier = fs.read_attempts(root / fs.PENDING / entry.name)
    if not earlier:
        return entry
    said = f"attempt {len(earlier) + 1} (the infrastructure ended {len(earlier)} before)"
    return entry._replace(reason=f"{said}; {entry.reason}" if entry.reason else said)
