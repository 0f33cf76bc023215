"""Options: the defaults, what --setup recorded in ROOT/reconcile.json, and what this command line gives.

The core's options are here; each engine declares its own as `SETTINGS` (jobroot.engine.Setting), and
only the chosen engine receives them.
"""

# No `from __future__ import annotations` here: typing.NamedTuple compiles every string annotation
# at import, ~10 ms per run (measured); real annotation objects cost nothing.

import argparse
import json
import re
from pathlib import Path
from typing import Any, Mapping, NamedTuple

from jobroot import folders as fs
from jobroot.engine import ENGINES, SUBMIT_COMMANDS, Engine, EngineClass, Setting, canonical_name, engine_class

DEFAULTS: dict[str, Any] = {
    "engine": "local",
    "batch_limit": 50,
    "settle": 5.0,
    "shared_group": False,
    "breaker": 5,
    "breaker_cooldown": 900.0,
    "retries": 0,
    "bundle": 1,
}


class UsageError(Exception):
    """Bad command line or root: one line on stderr, exit 2."""


class Options(NamedTuple):
    engine: str
    batch_limit: int
    settle: float
    shared_group: bool
    breaker: int
    breaker_cooldown: float
    retries: int  # submit again a job the infrastructure ended (a lost node, a reboot), this many times at most
    bundle: int  # the most job folders one scheduler job runs (1: each its own job)
    # The engine's own settings, as recorded or given: parsed by load_engine, so that a run with
    # nothing to do never imports an engine module.
    settings: Mapping[str, Any]
    given: frozenset[str]  # names set on this command line (parsed already)
    config: str  # where the recorded ones come from, for messages


# ---------------------------------------------------------------- value parsers (the engines' too)


def count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError("must be 0 or more seconds")
    return value


def parse_lookback(text: str, now: float) -> float:
    """`36h`, `7d`, `90m`, `2w` or a date (anything python-dateutil reads) -> epoch seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if m:
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]
        return now - float(m.group(1)) * unit
    from dateutil import parser

    try:
        return parser.parse(text).timestamp()
    except (ValueError, OverflowError) as e:
        raise ValueError(f"--lookback {text!r}: give a duration like 36h or 7d, or a date") from e


def lookback(text: str) -> str:
    """--lookback as the command line and reconcile.json give it: checked now, read at each run."""
    import time

    try:
        parse_lookback(text, time.time())
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


COMMAND_TIMEOUT = 60.0  # seconds for any one batch-system command
MIN_PERIOD = 10.0  # -p for a batch engine: each sweep with jobs pending asks the shared scheduler
MIN_PERIOD_WHY = "each sweep with jobs pending asks the shared scheduler; cron sweeps once a minute"
# The options every batch-system engine takes (Slurm, Grid Engine); each adds its own after them.
BATCH_SETTINGS = (
    Setting(
        "max_queued", positive, None, "N", "submit only while this user has fewer than N jobs and array tasks queued or running"
    ),
    Setting("lookback", lookback, "7d", "WHEN", "how far back sacct or qacct may look: 36h, 7d or a date (default 7d)"),
    Setting(
        "command_timeout", seconds, COMMAND_TIMEOUT, "SECONDS", "give up on any batch-system command after this long (default 60)"
    ),
)


# ---------------------------------------------------------------- the merge


def resolve(root: Path, given: dict[str, Any], setup_first: bool = False) -> Options:
    """Defaults, then what --setup recorded, then `given` (what this command line set; None: not set)."""
    given = {k: v for k, v in given.items() if v is not None}
    if "engine" in given:
        given["engine"] = _canonical(given["engine"])
    if setup_first:
        chosen = ""
        if "engine" not in given and "engine" not in load_config(root):
            given["engine"], chosen = detect_engine()
        engine = given.get("engine") or _canonical(load_config(root).get("engine", DEFAULTS["engine"]))
        _refuse_foreign(engine_class(engine), engine, given)  # before anything is recorded
        setup(root, given)
        print(f"set up {root} for the {load_config(root)['engine']} engine{chosen}")
    if not root.is_dir():
        raise UsageError(f"no such root: {root} (create it with -s)")
    if not all((root / s).is_dir() for s in fs.STAGES) or not (root / fs.CONFIG).is_file():
        raise UsageError(f"{root} is not set up: run reconcile -r {root} -s first")
    recorded = load_config(root)
    merged = {**DEFAULTS, **recorded, **given}
    try:
        engine = _canonical(merged["engine"])
        if any(name not in DEFAULTS for name in given):  # only a command line naming an engine option
            _refuse_foreign(engine_class(engine), engine, given)
        return Options(
            engine,
            int(merged["batch_limit"]),
            float(merged["settle"]),
            bool(merged["shared_group"]),
            int(merged["breaker"]),
            float(merged["breaker_cooldown"]),
            int(merged["retries"]),
            positive(str(merged["bundle"])),
            {k: v for k, v in merged.items() if k not in DEFAULTS},
            frozenset(given),
            str(root / fs.CONFIG),
        )
    except (ValueError, TypeError, argparse.ArgumentTypeError) as e:
        raise UsageError(f"{e} (recorded in {root / fs.CONFIG}); fix it or run -s again") from None


def detect_engine() -> tuple[str, str]:
    """-s without -e on a new root: the batch system this machine has (its submit command on PATH), and how it
    was chosen. The local engine only when named: on a login node it would run every job there."""
    import shutil

    found = [(name, command) for name, command in SUBMIT_COMMANDS.items() if shutil.which(command)]
    if len(found) == 1:
        return found[0][0], f" ({found[0][1]} is on PATH; -e names another)"
    engines = ", ".join(f"-e {name}" for name in sorted(ENGINES))
    if not found:
        raise UsageError(f"no batch system on PATH ({', '.join(SUBMIT_COMMANDS.values())}): name the engine with -s: {engines}")
    have = " and ".join(command for _, command in found)
    raise UsageError(f"{have} are on PATH: name the engine with -s: {engines}")


def _canonical(name: object) -> str:
    try:
        return canonical_name(str(name))
    except ValueError as e:
        raise UsageError(str(e)) from None


def _refuse_foreign(cls: EngineClass, engine: str, given: Mapping[str, Any]) -> None:
    """An engine option given on the command line to an engine that does not take it is a usage error."""
    own = {s.name for s in cls.SETTINGS}
    for name in given:
        if name not in DEFAULTS and name not in own:
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"{flag} is not an option of the {engine} engine (reconcile --help lists each engine's options)")


def load_engine(opts: Options) -> Engine:
    """The chosen engine, built with its settings (a bad recorded value is a usage error, found here)."""
    try:
        cls = engine_class(opts.engine)
        settings = {}
        for s in cls.SETTINGS:
            value = opts.settings.get(s.name, s.default)
            settings[s.name] = value if s.name in opts.given or value is None or value == s.default else s.parse(str(value))
    except (ValueError, TypeError, argparse.ArgumentTypeError) as e:
        raise UsageError(f"{e} (recorded in {opts.config}); fix it or run -s again") from None
    try:
        return cls(**settings)
    except ValueError as e:
        raise UsageError(str(e)) from None


def load_config(root: Path) -> dict[str, Any]:
    try:
        with open(root / fs.CONFIG, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise UsageError(f"{root / fs.CONFIG} cannot be read ({e}); fix it or run -s again") from e
    if not isinstance(data, dict):
        raise UsageError(f"{root / fs.CONFIG} is not a JSON object; fix it or run -s again")
    return data


def setup(root: Path, given: dict[str, Any]) -> None:
    """Create the stages; record the engine and the options given over what was recorded before."""
    try:
        _set_up(root, given)
    except OSError as e:
        raise UsageError(f"cannot set up {root} ({e.strerror}): {e.filename or root} cannot be written") from None


def _set_up(root: Path, given: dict[str, Any]) -> None:
    for stage in fs.STAGES:
        (root / stage).mkdir(parents=True, exist_ok=True)
    apart = fs.other_filesystem(root)
    if apart:
        raise UsageError(f"{root / apart} is on another filesystem than {root / fs.INBOX}: {fs.ONE_FILESYSTEM}")
    recorded = load_config(root)
    config = {**recorded, **given}
    config.setdefault("engine", DEFAULTS["engine"])
    if recorded.get("engine", config["engine"]) != config["engine"]:
        # Another engine now: what only the old one took would be refused; keep the core's options.
        own = {s.name for s in engine_class(config["engine"]).SETTINGS}
        config = {k: v for k, v in config.items() if k in DEFAULTS or k in own}
    try:
        fs.write_atomic(root / fs.CONFIG, json.dumps(config, indent=2, sort_keys=True) + "\n")
    except OSError as e:  # name the file, not the temporary one write_atomic was making
        raise OSError(e.errno, e.strerror, str(root / fs.CONFIG)) from None
