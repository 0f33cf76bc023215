"""Stages: a folder's `after` file names the jobs that must end well before it runs.

Which folder a name means: while `inbox/NAME` or `pending/NAME` exists, or a re-drop `NAME.2`,
`NAME.3`, ... in either, that job has not ended, and the folder waits for it. Once none does, the newest
of `complete/NAME`, `NAME.2`, `NAME.3`, ... (the latest drop of that name, by its submission time)
decides: done, or failed. A name found nowhere is waited for. A name with a suffix (`fit.2`) means that
folder (and its own re-drops, `fit.2.2`, ...).
"""

# No `from __future__ import annotations` here: typing.NamedTuple compiles every string annotation
# at import, ~10 ms per run (measured); real annotation objects cost nothing.

import os
import re
from pathlib import Path
from typing import Mapping, NamedTuple, Optional

from jobroot import folders as fs
from jobroot.folders import Submitted

MAX_NAMES = 1000  # an after file naming more is a mistake
GAP = 10  # complete/NAME.k probed past this many missing in a row (folders the user deleted)


class Upstream(NamedTuple):
    """Where a job named in an `after` file stands."""

    name: str  # as the after file spells it
    where: str  # "inbox", "pending", "complete" or "nowhere"
    folder: str = ""  # the folder it resolved to (NAME, or NAME.2 for a re-drop)
    record: Optional[Submitted] = None  # pending: its submission, if recorded
    failed: str = ""  # complete: the first line of its job_error.txt ("" when it ended well)


def read_after(path: Path) -> tuple[str, ...]:
    """The names in a folder's `after` file (blank lines and `#` comments skipped); () when there is none.

    ValueError, with a line number, for a name that cannot be a folder's.
    """
    try:
        text = (path / fs.AFTER).read_bytes().decode("utf-8", "surrogateescape")
    except FileNotFoundError:
        return ()
    except OSError as e:
        raise ValueError(f"the after file cannot be read: {e.strerror}") from None
    names: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        name = line.split("#", 1)[0].strip()
        if not name:
            continue
        if "/" in name or name in (".", "..") or "\0" in name or len(os.fsencode(name)) > 255:
            raise ValueError(f"line {number} of the after file is not a folder name: {line.strip()!r}")
        if name not in names:
            names.append(name)
    if len(names) > MAX_NAMES:
        raise ValueError(f"the after file names {len(names)} jobs; at most {MAX_NAMES}")
    return tuple(names)


def locate(root: Path, name: str, inbox: frozenset[str], pending: Mapping[str, Optional[Submitted]]) -> Upstream:
    """Where the job called `name` stands (see the module's rule)."""
    again = re.compile(re.escape(name) + r"(?:\.(\d+))?")
    if name in inbox or any(again.fullmatch(n) for n in inbox if n.startswith(name)):
        return Upstream(name, "inbox", name)  # also a NAME.2 moved back by --retry-failed: it runs again
    drops = sorted((int(m.group(1) or 1), n) for n in pending if (m := again.fullmatch(n)))
    if drops:
        folder = drops[-1][1]  # the latest drop; while an earlier one is there too, wait without a record
        return Upstream(name, "pending", folder, pending[folder] if len(drops) == 1 else None)
    newest: Optional[tuple[float, str]] = None
    misses = 0
    for n in range(1, 100_000):  # complete/ is never listed: its names are probed, NAME, NAME.2, ...
        candidate = name if n == 1 else f"{name}.{n}"
        try:
            ctime = os.lstat(root / fs.COMPLETE / candidate).st_ctime
        except OSError:
            misses += 1
            if misses == GAP:
                break
            continue
        misses = 0
        try:
            record = fs.read_record(root / fs.COMPLETE / candidate)
        except ValueError:
            record = None
        when = record.submitted if record else ctime  # the latest submission is the latest drop; edits do not count
        if newest is None or when >= newest[0]:
            newest = (when, candidate)
    if newest is None:
        return Upstream(name, "nowhere")
    folder = newest[1]
    try:
        with open(root / fs.COMPLETE / folder / fs.ERROR, "rb") as f:
            failed = f.readline().decode("utf-8", "replace").strip() or "failed"
    except FileNotFoundError:
        failed = ""
    except OSError as e:
        failed = f"its job_error.txt cannot be read: {e.strerror}"
    return Upstream(name, "complete", folder, failed=failed)


def find_cycle(root: Path, start: str, inbox: frozenset[str], first: tuple[str, ...]) -> tuple[str, ...]:
    """The inbox folders of a cycle of after files through `start` (start first), or () when there is none."""
    path = [start]
    seen = {start}

    def walk(names: tuple[str, ...]) -> bool:
        for name in names:
            if name == start:
                return True
            if name in inbox and name not in seen:
                seen.add(name)
                path.append(name)
                try:
                    onward = read_after(root / fs.INBOX / name)
                except ValueError:
                    onward = ()
                if walk(onward):
                    return True
                path.pop()
        return False

    return tuple(path) if walk(first) else ()
