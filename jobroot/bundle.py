"""Bundles (--bundle N): several job folders run by one scheduler job, each folder still its own job.

A bundle is a folder ROOT/bundles/NAME holding a generated `job.sh`, the runner: the engine submits it
exactly as it submits a job folder (claim, token, record, adoption after a crash). Its members stay in
pending/, each with `job_bundle.json` naming the bundle and its place, written before the runner is.

The runner (bash, on the compute node: no Python needed there) runs each member's own `job.sh` in the
member's folder, one after another, output to the member's `job_output.txt`, under the member's own
time limit. It starts a member only if the member's note still names this bundle and it wins the
member's `job_started` file (a hard link, which never replaces): a requeued or restarted bundle never
starts a member twice, nor one a cancel or the sweep took first. How the member ended goes into its
`job_exit.json`, written whole (rename) before the next member starts; the sweep gives the member its
verdict from that file as soon as it appears.
"""

# No `from __future__ import annotations` here: typing.NamedTuple compiles every string annotation
# at import, ~10 ms per run (measured); real annotation objects cost nothing.

import json
import os
import shlex
from pathlib import Path
from typing import NamedTuple, Optional, Sequence

from jobroot import folders as fs
from jobroot.engine import signal_name


class Member(NamedTuple):
    """A member's note (`job_bundle.json`): the bundle that runs it and its place there."""

    bundle: str
    place: int  # 1-based
    of: int


class Ended(NamedTuple):
    """How a member ended, as the runner (or a cancel before it started) wrote it in `job_exit.json`."""

    status: int  # job.sh's exit status (128 + N: killed by signal N)
    why: str  # "": it ended by itself; "timeout": its own time limit; "cancelled": a cancel file


class Seen(NamedTuple):
    """A member as a sweep finds it: its note, who started it (`job_started`'s first word), how it ended."""

    member: Member
    started: str = ""  # "": not started; "job": a runner started it; "cancelled": a cancel took it first
    ended: Optional[Ended] = None


def new_name(now: float) -> str:
    import secrets

    return f"bundle-{int(now)}-{secrets.token_hex(4)}"


def write_member(job_dir: Path, member: Member) -> None:
    fs.write_atomic(job_dir / fs.MEMBER, json.dumps(member._asdict()) + "\n")


def look(job_dir: str) -> Optional[Seen]:
    """A pending folder without a record: a bundle member (its note, start and end), or None when it is not one.
    ValueError for a note that cannot be read (written whole, so only a person can have garbled it)."""
    try:
        with open(f"{job_dir}/{fs.MEMBER}", "rb") as f:
            data = json.loads(f.read())
        member = Member(str(data["bundle"]), int(data["place"]), int(data["of"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"unreadable {fs.MEMBER}: {e}") from e
    try:
        with open(f"{job_dir}/{fs.STARTED}", encoding="utf-8", errors="replace") as f:
            started = (f.read().split() or ["job"])[0]
    except FileNotFoundError:
        return Seen(member)
    except OSError:
        started = "job"
    return Seen(member, started, _ended(job_dir))


def _ended(job_dir: str) -> Optional[Ended]:
    try:
        with open(f"{job_dir}/{fs.EXIT_RECORD}", "rb") as f:
            data = json.loads(f.read())
        return Ended(int(data["status"]), str(data.get("why") or ""))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return Ended(255, "")  # written whole by rename, so only a person can have garbled it: not a success


def take(job_dir: Path, who: str) -> bool:
    """Take a member's start before any runner does (who: `cancelled`, `returned`): True when taken, so no
    runner ever starts it; False when a runner (or an earlier take) has it."""
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=f".{fs.STARTED}.", suffix=".tmp", dir=job_dir)  # unique on every host
    try:
        os.write(fd, f"{who} by the sweep\n".encode())
        os.close(fd)
        os.link(tmp, job_dir / fs.STARTED)
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)


def take_for_cancel(job_dir: Path) -> bool:
    """Take a member's start for a cancel, and say how it ended: True when taken (it never starts)."""
    if not take(job_dir, "cancelled"):
        return False
    fs.crash_point("cancel-taken")
    fs.write_atomic(job_dir / fs.EXIT_RECORD, json.dumps({"status": 0, "why": "cancelled"}) + "\n")
    return True


def describe(ended: Ended) -> str:
    """What a member did, in a lone job's words (`exited with code 3`); "" for a success."""
    if ended.why == "timeout":
        return "ran past its own time limit and was ended (TIMEOUT)"
    if ended.why == "cancelled":
        return "was cancelled at the user's request (a file named cancel is in its folder)"
    if ended.status > 128:
        return f"was killed by signal {ended.status - 128} ({signal_name(ended.status - 128)}) (exit status {ended.status})"
    return f"exited with code {ended.status}" if ended.status else ""


def runner(header: str, name: str, members: Sequence[Path], limit: Optional[int]) -> str:
    """The bundle's job.sh: the engine's directive lines, then a loop over the members (see the module's doc)."""
    listed = "\n".join(f"  {shlex.quote(os.fspath(m))}" for m in members)
    return _RUNNER.format(header=header, name=name, limit=limit or 0, members=listed, note=fs.MEMBER,
                          started=fs.STARTED, exit=fs.EXIT_RECORD, output=fs.OUTPUT, cancel=fs.CANCEL)  # fmt: skip


_RUNNER = r"""#!/bin/bash
{header}
# A jobroot bundle, written by reconcile: do not edit. Each member's job.sh runs in its own folder, one
# after another, under its own time limit; each is started at most once and its ending written whole.
bundle={name}
limit={limit}
job="${{SLURM_JOB_ID:-${{JOB_ID:-local}}}}"
members=(
{members}
)
ended() {{  # FOLDER STATUS WHY: how the member ended, written whole
  local tmp="$1/.{exit}.$$.tmp"
  printf '{{"status": %d, "why": "%s", "ended": %s}}\n' "$2" "$3" "$(date +%s)" >"$tmp" && mv -f "$tmp" "$1/{exit}"
}}
for dir in "${{members[@]}}"; do
  grep -qF "\"bundle\": \"$bundle\"" "$dir/{note}" 2>/dev/null || continue  # no longer this bundle's
  tmp=$(mktemp --suffix=.tmp "$dir/.{started}.XXXXXXXX" 2>/dev/null) || continue  # never another host's
  printf 'job %s on %s at %s\n' "$job" "$(hostname)" "$(date +%s)" >"$tmp"
  if ! ln "$tmp" "$dir/{started}" 2>/dev/null; then rm -f "$tmp"; continue; fi  # started before, or cancelled
  rm -f "$tmp"
  if [ -e "$dir/{cancel}" ]; then ended "$dir" 0 cancelled; continue; fi
  begun=$(date +%s)
  (cd "$dir" || exit 127  # as the batch system runs a script: by its #! line, else with bash
   read -r first <job.sh; if [[ $first == '#!'* ]]; then read -ra run <<<"${{first:2}}"; else run=(bash); fi
   exec timeout --kill-after=30 "$limit" "${{run[@]}}" job.sh) </dev/null >"$dir/{output}" 2>&1 &
  pid=$!
  (while sleep 1; do
     if [ -e "$dir/{cancel}" ]; then kill -TERM -- "-$pid" 2>/dev/null; sleep 30; kill -KILL -- "-$pid" 2>/dev/null; break; fi
   done) &
  watcher=$!
  wait "$pid"
  status=$?
  kill "$watcher" 2>/dev/null
  why=""
  if [ -e "$dir/{cancel}" ]; then why=cancelled
  elif [ "$limit" -gt 0 ] && [ $(( $(date +%s) - begun )) -ge "$limit" ] && [[ $status == 124 || $status == 137 ]]; then
    why=timeout
  fi
  ended "$dir" "$status" "$why"
done
"""
