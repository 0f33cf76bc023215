"""The status table's entries, built from what a sweep or `--status` saw, and the root's status files.

The status files a sweep writes (`status.txt`, `status.json`, `status.html`) cover inbox/ and pending/
plus the most recent endings, so a sweep never has to list complete/. `--status` (cli.py) reads
everything, complete/ included. The model the renderers read is model.py.
"""

# No `from __future__ import annotations` here: typing.NamedTuple compiles every string annotation
# at import, ~10 ms per run (measured); real annotation objects cost nothing.

import json
import os
import time
from pathlib import Path
from typing import Iterable, Mapping, Optional

from jobroot import folders as fs
from jobroot.bundle import Seen
from jobroot.engine import Observation, State
from jobroot.folders import Submitted, printable
from jobroot.model import ORDER, Entry, Phase, age, counts, summary
from jobroot.plan import InboxFolder, Verdict, Waiting

RECENT = 100  # endings kept in the status files
LISTED_WAITING = 100  # inbox folders named in the status files (the next in line); the rest are counted
WHY_WAITING = {
    Waiting.HELD: "a file named hold is in the folder",
    Waiting.SETTLING: "settling: something in it changed less than --settle ago",
}


def inbox_entries(folders: Iterable[InboxFolder]) -> list[Entry]:
    """Waiting and held folders, from the same look at inbox/ that a sweep takes; links and bad folders are not jobs yet."""
    entries = []
    for f in folders:
        if f.verdict == Verdict.NOTE:
            continue
        said = f.reason if f.verdict == Verdict.SKEWED or f.waiting in (Waiting.UPSTREAM, Waiting.NO_SCRIPT) else ""
        why = WHY_WAITING.get(f.waiting, said) if f.waiting else said
        entries.append(Entry(f.name, Phase.HELD if f.waiting is Waiting.HELD else Phase.WAITING, "", f.since, why))
    return entries


def pending_entries(
    root: Path,
    records: dict[str, Optional[Submitted]],
    obs: Optional[Observation],
    fresh: Iterable[str] = (),
    members: Optional[Mapping[str, tuple[Seen, Optional[Submitted]]]] = None,
) -> list[Entry]:
    """fresh: folders submitted after `obs` was taken (by the sweep writing the files): queued, not unknown.
    members: bundle members (no record of their own): their note and start, and their bundle's record."""
    entries = []
    fresh = set(fresh)
    for name, record in records.items():
        if members and name in members:
            entries.append(_member(name, *members[name], obs, fresh))
            continue
        if record is None:
            entries.append(Entry(name, Phase.SUBMITTING, "", _ctime(root / fs.PENDING / name)))
            continue
        status = obs.statuses.get(record.job_id) if obs else None
        if status is None and name in fresh:
            state, reason = (Phase.QUEUED, "submitted by this run; its state comes with the next sweep")
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


def _member(name: str, seen: Seen, record: Optional[Submitted], obs: Optional[Observation], fresh: set[str]) -> Entry:
    """A bundle member: as its bundle job stands, running once its runner has started it."""
    m = seen.member
    where = f"member {m.place} of {m.of} of bundle " + (f"job {record.job_id}" if record else f"{m.bundle} (being submitted)")
    if record is None:
        return Entry(name, Phase.SUBMITTING, "", None, where)
    status = obs.statuses.get(record.job_id) if obs else None
    if seen.started:
        phase = Phase.RUNNING
    elif status is not None and status.state is State.ACTIVE or m.bundle in fresh:
        phase = Phase.QUEUED
    else:
        phase = Phase.UNKNOWN
    return Entry(name, phase, record.job_id, record.submitted, where)


def complete_entry(root: Path, name: str) -> Optional[Entry]:
    path = root / fs.COMPLETE / name
    if not os.path.isdir(path) or os.path.islink(path):
        return None
    error = _first_line(path / fs.ERROR)
    record = _record(path)
    phase = Phase.DONE if error is None else Phase.CANCELLED if cancelled(path) else Phase.FAILED
    return Entry(name, phase, record.job_id if record else "", _ctime(path), error or "")


def cancelled(path: Path) -> bool:
    """A folder in complete/ that ended at the user's request (the sweep said so with its verdict)."""
    return os.path.lexists(path / fs.ERROR) and os.path.lexists(path / fs.CANCELLED)


def render_table(entries: list[Entry], now: float, unlisted: int = 0) -> str:
    """The human-readable status: one line a folder, busiest states first, then counts."""
    rank = {state: i for i, state in enumerate(ORDER)}
    rows = sorted(entries, key=lambda e: (rank[e.state], e.name))
    name_width = min(max([len(printable(e.name)) for e in rows] + [4]), 40)
    lines = [f"{'NAME':<{name_width}}  {'STATE':<10}  {'JOB ID':<10}  {'FOR':>6}  REASON"]
    for e in rows:
        since = age(now - e.since) if e.since else "-"
        lines.append(f"{printable(e.name):<{name_width}}  {e.state:<10}  {e.job_id or '-':<10}  {since:>6}  {e.reason}".rstrip())
    if unlisted:
        lines.append(f"... and {unlisted} more waiting in inbox/")
    lines.append(summary(counts(entries, unlisted)))
    return "\n".join(lines) + "\n"


def render_json(entries: list[Entry], now: float, unlisted: int = 0, extra: Optional[dict[str, object]] = None) -> str:
    data = {
        "generated": now,
        **(extra or {}),
        "counts": counts(entries, unlisted),
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
        (printable(e.name), e.state.value, e.job_id, e.since or 0.0, e.reason)
        for e in sorted(entries, key=lambda e: (rank[e.state], e.name))
    ]
    fs.write_atomic(root / fs.STATUS_HTML, render(root, rows, counts(entries, unlisted), now))


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
