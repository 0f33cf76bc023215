"""What is waiting, held, queued, running, done and failed: `--status` and the root's status files.

`--status` reads everything, complete/ included, and asks the engine at most one cheap query. The
status files a sweep writes (`status.txt`, `status.json`) cover inbox/ and pending/ plus the most
recent endings, so a sweep never has to list complete/.
"""

# No `from __future__ import annotations` here: typing.NamedTuple compiles every string annotation
# at import, ~10 ms per run (measured); real annotation objects cost nothing.

import json
import os
import stat
import time
from pathlib import Path
from typing import Iterable, NamedTuple, Optional

from engines import Observation, State, Submitted
from engines import _fs as fs

HOLD = "hold"  # in an inbox folder: keep it waiting
CANCEL = "cancel"  # in a pending folder: end the job
STATUS_TXT = "status.txt"
STATUS_JSON = "status.json"
RECENT_FILE = ".status-recent.json"  # the latest endings, carried from run to run (small, unlike status.json)
RECENT = 100  # endings kept in the status files
LISTED_WAITING = 100  # inbox folders named in the status files (the next in line); the rest are counted
ORDER = ("running", "queued", "submitting", "unknown", "waiting", "held", "failed", "done")


class Entry(NamedTuple):
    name: str
    state: str  # one of ORDER
    job_id: str
    since: Optional[float]  # epoch seconds the folder entered this state, as near as the files tell
    reason: str = ""  # first line of job_error.txt, or why it waits


def inbox_entries(root: Path, names: Iterable[str]) -> list[Entry]:
    entries = []
    for name in names:
        path = root / "inbox" / name
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode):  # lstat: a link to a folder is not a folder
            continue
        held = os.path.lexists(path / HOLD)
        entries.append(
            Entry(name, "held" if held else "waiting", "", st.st_ctime, "a file named hold is in the folder" if held else "")
        )
    return entries


def pending_entries(root: Path, records: dict[str, Optional[Submitted]], obs: Optional[Observation]) -> list[Entry]:
    entries = []
    for name, record in records.items():
        if record is None:
            entries.append(Entry(name, "submitting", "", _ctime(root / "pending" / name)))
            continue
        status = obs.statuses.get(record.job_id) if obs else None
        if status is None or status.state is State.UNKNOWN:
            state, reason = ("unknown", "not reported by the batch system right now")
        elif status.state is State.ACTIVE:
            state, reason = (status.phase or "running", "")
        elif status.state is State.DONE:
            state, reason = ("done", "")
        else:
            state, reason = ("failed", status.reason.split("\n", 1)[0])
        entries.append(Entry(name, state, record.job_id, record.submitted, reason))
    return entries


def complete_entry(root: Path, name: str) -> Optional[Entry]:
    path = root / "complete" / name
    if not os.path.isdir(path) or os.path.islink(path):
        return None
    error = _first_line(path / fs.ERROR)
    record = _record(path)
    return Entry(name, "failed" if error is not None else "done", record.job_id if record else "", _ctime(path), error or "")


def render_table(entries: list[Entry], now: float, unlisted: int = 0) -> str:
    """The human-readable status: one line a folder, busiest states first, then counts."""
    rank = {state: i for i, state in enumerate(ORDER)}
    rows = sorted(entries, key=lambda e: (rank[e.state], e.name))
    name_width = min(max([len(show(e.name)) for e in rows] + [4]), 40)
    lines = [f"{'NAME':<{name_width}}  {'STATE':<10}  {'JOB ID':<10}  {'FOR':>6}  REASON"]
    for e in rows:
        age = _age(now - e.since) if e.since else "-"
        lines.append(f"{show(e.name):<{name_width}}  {e.state:<10}  {e.job_id or '-':<10}  {age:>6}  {e.reason}".rstrip())
    if unlisted:
        lines.append(f"... and {unlisted} more waiting in inbox/")
    counts = _counts(entries, unlisted)
    lines.append(", ".join(f"{n} {state}" for state, n in counts.items() if n) or "no jobs")
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
        fs.write_atomic(root / RECENT_FILE, json.dumps([e._asdict() for e in recent]) + "\n")
    entries = live + recent
    text = render_table(entries, now, unlisted).rstrip("\n")
    header = (
        f"Status of {root} at {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(now))}: done/failed are the {RECENT} latest;\n"
        "held inbox folders show as waiting here (`reconcile -r ROOT --status` tells them apart).\n"
    )
    fs.write_atomic(root / STATUS_TXT, header + text + "\n")
    fs.write_atomic(root / STATUS_JSON, render_json(entries, now, unlisted))


def _counts(entries: list[Entry], unlisted: int) -> dict[str, int]:
    counts = dict.fromkeys(ORDER, 0)
    for e in entries:
        counts[e.state] += 1
    counts["waiting"] += unlisted
    return counts


def recent_endings(root: Path) -> list[Entry]:
    """The latest endings, newest first, as the last runs recorded them."""
    try:
        return [Entry(**e) for e in json.loads((root / RECENT_FILE).read_text(encoding="utf-8"))]
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


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def show(name: str) -> str:
    """A folder name safe to print on one line: control characters and undecodable bytes escaped."""
    if name.isprintable():
        return name
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)
