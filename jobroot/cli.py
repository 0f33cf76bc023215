"""The command line: parse it, then run one sweep, a watch loop, --status or --retry-failed."""

# No `from __future__ import annotations` here: typing.NamedTuple compiles every string annotation
# at import, ~10 ms per run (measured); real annotation objects cost nothing.

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, NoReturn, Optional, Sequence

from jobroot import __version__
from jobroot import folders as fs
from jobroot.config import DEFAULTS, MIN_PERIOD, MIN_PERIOD_WHY, Options, UsageError, count, positive, resolve, seconds
from jobroot.engine import ENGINES, Setting, engine_class
from jobroot.log import LEVELS, Log
from jobroot.model import Entry, age

DESCRIPTION = """\
Move job folders through a root: ROOT/inbox/NAME/job.sh -> ROOT/pending/NAME -> ROOT/complete/NAME.

One run is one sweep: it takes a lock in the root, asks the batch system once about every pending job,
moves ended jobs to complete/ (a failed one with job_error.txt saying why), and submits waiting
folders from inbox/ in byte order of their names. Run it every minute from cron, or with -p.
"""

EPILOG = """\
files in a job folder:
  job.sh              the job (required); every other file travels with it
  hold                in an inbox/ folder: keep it waiting until the file is removed
  cancel              in a pending/ folder: cancel the job; it lands in complete/ with job_error.txt
  job_error.txt       why the job failed (absent for a success)
  job_*               other helper files: see the folder protocol in the docs (docs/protocol.md)

files in the root:
  reconcile.json      the engine and options recorded by --setup
  reconcile.log       one timestamped line per action (rotated at 10 MiB to reconcile.log.1)
  status.txt          what is waiting, running and recently ended, rewritten by every run
  status.json         the same for scripts
  status.html         the same as a page to open in a browser (also file:// over an sshfs mount)

examples:
  reconcile -r ~/jobs -s -e slurm --max-queued 400     set up a root for Slurm
  reconcile -r ~/jobs                                   one sweep (what cron runs)
  reconcile -r ~/jobs --dry-run                         what would a sweep do?
  reconcile -r ~/jobs --status                          a table of every job and its state
  touch ~/jobs/pending/run-042/cancel                   cancel a job
  reconcile -r ~/jobs --retry-failed                    move every failed folder back to inbox/
  reconcile -r ~/jobs -p 60                             sweep every minute until Ctrl-C

exit status:
  0  all went well (or another run holds the lock)
  1  something needs a person; it was said on stderr
  2  bad command line, missing root, root not set up, unknown engine
"""


class _Incomplete(Exception):
    """The core-only parser met something it does not know: parse again with every engine's options."""


class _CoreParser(argparse.ArgumentParser):
    def error(self, message: str) -> "NoReturn":
        raise _Incomplete(message)


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    """The command line. Engine modules are imported only when it names an engine option or asks for help.

    An idle cron run (`-r ROOT`) parses with the core's options alone; anything the core parser does
    not know (an engine option, --help, an abbreviation, a mistake) is parsed again by the full
    parser, which knows every engine's options and gives argparse's usual message and exit status.
    """
    args_list = sys.argv[1:] if argv is None else list(argv)
    core = _parser(engines=False)
    known = {option for action in core._actions for option in action.option_strings}
    # A long option the core does not know goes to the full parser before the core acts on any other
    # (--version would otherwise exit 0 before the core parser saw the unknown option).
    if all(not a.startswith("--") or a.split("=", 1)[0] in known for a in args_list):
        try:
            return core.parse_args(args_list)
        except _Incomplete:
            pass
    return _parser(engines=True).parse_args(args_list)


def _parser(engines: bool) -> argparse.ArgumentParser:
    # The core-only parser knows no -h and no abbreviations: those are the full parser's to judge.
    p = (argparse.ArgumentParser if engines else _CoreParser)(
        prog="reconcile",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=engines,
        allow_abbrev=engines,
    )
    add = p.add_argument
    add("-r", "--root", required=True, type=Path, help="the job root (holds inbox/, pending/, complete/)")
    add("-s", "--setup", action="store_true", help="create the folders; record the engine and the options given")
    add(
        "-e",
        "--engine",
        help="local, slurm or gridengine (also sge, engines.LocalEngine, engines.SlurmEngine, engines.GridEngine)",
    )
    add("--batch-limit", type=count, metavar="N", help="submit at most N jobs per run (default 50)")
    add("--settle", type=seconds, metavar="SECONDS", help="submit a folder once nothing in it changed for this long (default 5)")
    add(
        "--shared-group",
        action="store_true",
        default=None,
        help="accept folders of other users in a group you share (read the risk: docs/guide/shared-inboxes.md)",
    )
    add(
        "--breaker", type=count, metavar="N", help="pause submitting when the last N jobs to end all failed (default 5; 0: never)"
    )
    add("--breaker-cooldown", type=seconds, metavar="SECONDS", help="how long such a pause lasts (default 900)")
    add(
        "--retries",
        type=count,
        metavar="N",
        help="submit a job again, up to N times, when the infrastructure ended it (a failed node, a reboot; default 0)",
    )
    add("--bundle", type=positive, metavar="N", help="pack up to N like folders into one scheduler job (default 1)")
    add("--dry-run", action="store_true", help="print what a sweep would do; change nothing")
    add("--status", action="store_true", help="print every job with its state; read-only, takes no lock")
    add("--json", action="store_true", help="with --status: print JSON")
    add(
        "--retry-failed",
        nargs="*",
        metavar="NAME",
        help="move every failed folder in complete/ back to inbox/ (a cancelled one only when named); with names, those",
    )
    add(
        "-p",
        "--period",
        type=seconds,
        metavar="SECONDS",
        help="watch mode: a sweep every SECONDS until Ctrl-C or SIGTERM (at least 10 for a batch system, 0.1 locally)",
    )
    add("-v", "--verbose", action="store_true", help="also print each action on stderr")
    add("--log-level", choices=sorted(LEVELS, key=LEVELS.__getitem__), default="info", help="what goes to reconcile.log")
    add("--version", action="version", version=f"reconcile (jobroot) {__version__}")
    if engines:
        _add_engine_options(p)
    p.set_defaults(engine_settings=engines)
    return p


def _add_engine_options(p: argparse.ArgumentParser) -> None:
    """Each engine option once, in a group naming every engine that takes it (--lookback: slurm and gridengine)."""
    owners: dict[str, list[str]] = {}
    settings: dict[str, Setting] = {}
    for name in ENGINES:
        for s in engine_class(name).SETTINGS:
            owners.setdefault(s.name, []).append(name)
            settings.setdefault(s.name, s)
    groups: dict[str, argparse._ArgumentGroup] = {}
    for option, names in owners.items():
        label = f"{' and '.join(names)} engine options"
        group = groups.get(label) or groups.setdefault(label, p.add_argument_group(label))
        s = settings[option]
        group.add_argument(s.flag, dest=s.name, type=s.parse, metavar=s.metavar, help=s.help)


def given(args: argparse.Namespace) -> dict[str, Any]:
    """What this command line sets of the recorded options (None where it sets nothing)."""
    names = [*DEFAULTS, *(s.name for e in ENGINES for s in engine_class(e).SETTINGS)] if args.engine_settings else DEFAULTS
    return {name: getattr(args, name) for name in names}


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    root = args.root.expanduser()
    try:
        if args.dry_run and args.setup:
            raise UsageError("--dry-run with -s: setting up writes the root; give -s alone (or --dry-run alone)")
        opts = resolve(root, given(args), setup_first=args.setup)
    except (UsageError, OSError) as e:
        print(f"reconcile: {e}", file=sys.stderr)
        return 2
    try:
        if args.status:
            return show_status(root, opts, args.json)
        if args.retry_failed is not None:
            from jobroot.sweep import retry_failed

            return retry_failed(root, Log(root, args.verbose, args.log_level), args.dry_run, args.retry_failed)
        if args.period is None:
            return 0 if args.setup else once(root, opts, args)
        cls = engine_class(opts.engine)  # a batch engine's floor unless the engine sets its own
        floor, why = getattr(cls, "MIN_PERIOD", MIN_PERIOD), getattr(cls, "MIN_PERIOD_WHY", MIN_PERIOD_WHY)
        if args.period < floor:
            raise UsageError(f"-p {args.period:g}: the {opts.engine} engine needs at least {floor:g} s between sweeps ({why})")
        return watch(root, opts, args)
    except UsageError as e:
        print(f"reconcile: {e}", file=sys.stderr)
        return 2


def once(root: Path, opts: Options, args: argparse.Namespace, stop: Any = None) -> int:
    """One sweep; an empty root costs two listings and nothing else (no lock, no engine, no imports)."""
    if fs.idle(root):
        return 0
    from jobroot.act import StopFlag
    from jobroot.sweep import sweep

    return sweep(root, opts, Log(root, args.verbose, args.log_level), stop or StopFlag(), args.dry_run)


def watch(root: Path, opts: Options, args: argparse.Namespace) -> int:
    """-p: a sweep every period until SIGTERM or Ctrl-C; a stop waits for the step under way.

    On a terminal, one live line (rewritten in place) gives the counts and the time to the next sweep.
    """
    import signal

    from jobroot.act import StopFlag

    stop = StopFlag()
    signal.signal(signal.SIGTERM, stop.request)
    signal.signal(signal.SIGINT, stop.request)
    live = sys.stdout.isatty()
    print(f"watching {root}: a sweep every {args.period:g} s; stop with Ctrl-C (or kill {os.getpid()})", flush=True)
    status = 0
    while not stop.requested:
        if live:
            print("\r\033[K", end="", flush=True)  # problems from the sweep start on a clean line
        status = once(root, opts, args, stop)
        counts = _live_counts(root) if live else ""
        deadline = time.monotonic() + args.period
        while not stop.requested and time.monotonic() < deadline:
            if live:
                left = max(0.0, deadline - time.monotonic())
                print(f"\r\033[K{counts}; next sweep in {left:.0f} s", end="", flush=True)
            time.sleep(min(1.0 if live else 0.2, max(0.0, deadline - time.monotonic())))
    if live:
        print("\r\033[K", end="", flush=True)
    print("stopped", flush=True)
    return status


def _live_counts(root: Path) -> str:
    """The counts of the status files the last sweep wrote, in --status's words."""
    import json

    from jobroot.model import summary

    try:
        counts = json.loads((root / fs.STATUS_JSON).read_text())["counts"]
        return summary({str(k): int(v) for k, v in counts.items()})
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "no status yet"


def show_status(root: Path, opts: Options, as_json: bool) -> int:
    """--status: everything, complete/ included; at most one cheap engine query; no lock, no writes."""
    from jobroot.actions import Wait
    from jobroot.config import load_engine
    from jobroot.engine import EngineError, Observation
    from jobroot.folders import Submitted
    from jobroot.observe import Stages, scan_bundles, scan_inbox, scan_pending
    from jobroot.plan import Verdict, Waiting, chained
    from jobroot.status import complete_entry, inbox_entries, pending_entries, render_json, render_table

    engine = load_engine(opts)
    records: dict[str, Optional[Submitted]] = {}
    pending = scan_pending(root)
    for p in pending:
        records[p.name] = p.record
    bundles = {b.name: b.record for b in scan_bundles(root)}
    members = {p.name: (p.member, bundles.get(p.member.member.bundle)) for p in pending if p.member is not None}
    live = [r for r in (*records.values(), *bundles.values()) if r and r.engine == engine.name]
    obs = None
    code = 0
    if live:
        try:
            obs = engine.observe(live, [], quick=True)
        except EngineError as e:
            print(f"reconcile: cannot ask the {engine.name} engine; pending jobs shown as unknown: {e}", file=sys.stderr)
            code = 1
    now = time.time()
    waiting = fs.names(root / fs.INBOX)
    inbox = list(scan_inbox(root, waiting, opts.settle, now, opts.shared_group, Stages(root, frozenset(waiting), records)))
    for i, f in enumerate(inbox):  # a folder in a chain: what it waits for, as a sweep would judge it
        if f.after:
            action = chained(f, obs or Observation(), set(), engine.dependencies, engine.name)
            if isinstance(action, Wait):
                inbox[i] = f._replace(verdict=Verdict.WAIT, reason=action.reason, waiting=Waiting.UPSTREAM)
    entries = inbox_entries(inbox) + [_attempt(root, e) for e in pending_entries(root, records, obs, (), members)]
    entries += [e for e in (complete_entry(root, n) for n in fs.names(root / fs.COMPLETE)) if e]
    last = last_sweep(root)
    if as_json:
        sys.stdout.write(render_json(entries, now, extra={"last_sweep": last}))
    else:
        sys.stdout.write(render_table(entries, now) + f"last sweep: {age(now - last) + ' ago' if last else 'none yet'}\n")
    if last and now - last > STALE and not fs.idle(root):  # an idle root needs no sweep
        ago = age(now - last).replace("m", " min")
        print(f"reconcile: the last sweep ran {ago} ago: is cron (or the watch) still running?", file=sys.stderr)
        code = 1
    return code


STALE = 600.0  # seconds without a sweep after which --status warns (cron sweeps every minute)


def last_sweep(root: Path) -> Optional[float]:
    """When the last sweep wrote the status files (their `generated`); None when none has."""
    import json

    try:
        return float(json.loads((root / fs.STATUS_JSON).read_text(encoding="utf-8"))["generated"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _attempt(root: Path, entry: Entry) -> Entry:
    """--status: a job submitted again after the infrastructure ended it says which attempt it is."""
    earlier = fs.read_attempts(root / fs.PENDING / entry.name)
    if not earlier:
        return entry
    said = f"attempt {len(earlier) + 1} (the infrastructure ended {len(earlier)} before)"
    return entry._replace(reason=f"{said}; {entry.reason}" if entry.reason else said)
