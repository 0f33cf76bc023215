"""What Slurm's commands run with: the environment a sweep passes on, and the site's sbatch defaults.

A sweep's own environment (a profile's SLURM_TIME_FORMAT, an scrontab job's SLURM_*) must not change
what the commands print or what sbatch submits; options a site wants on every job come through one
explicit, recorded option instead, and never override the job's own #SBATCH lines.
"""

import re
from pathlib import Path
from typing import Mapping, Optional

from jobroot.engine import Bundling
from jobroot.engines._batch import bundle_time, directive_lines, directive_words, hms

# What a sweep inherits must not change what Slurm's commands print or what sbatch submits: these
# variables (SLURM_TIME_FORMAT, SBATCH_PARTITION, SQUEUE_ACCOUNT, an scrontab job's own SLURM_*, ...) are
# never passed on. SLURM_CONF stays: it says where the cluster's configuration is.
_DROPPED = ("SLURM_", "SBATCH_", "SQUEUE_", "SACCT_", "SCANCEL_", "SALLOC_", "SRUN_", "SINFO_", "SCONTROL_")
_KEPT = ("SLURM_CONF",)
# Short spellings of the options a site default may name, for telling whether job.sh sets one itself.
_SHORT = {"account": "A", "partition": "p", "qos": "q", "time": "t", "job-name": "J", "nodes": "N",
          "ntasks": "n", "cpus-per-task": "c", "output": "o", "error": "e", "constraint": "C",
          "dependency": "d", "clusters": "M", "array": "a", "chdir": "D", "gpus": "G", "nodelist": "w",
          "exclude": "x", "licenses": "L", "begin": "b", "hold": "H"}  # fmt: skip
# Options that would change how the reconciler follows every job, never site defaults.
_NOT_DEFAULTS = ("chdir", "wait", "parsable", "comment", "array", "export")


def command_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment every Slurm command runs with: the sweep's own, less what steers Slurm."""
    return {k: v for k, v in environ.items() if k in _KEPT or not k.startswith(_DROPPED)}


def sbatch_words(script: Path) -> list[str]:
    """Every word of the `#SBATCH` lines of job.sh that sbatch reads (it stops at the first command)."""
    return directive_words(script, "#SBATCH", stop_at_command=True)


def user_sets(words: list[str], option: str) -> bool:
    """Do job.sh's #SBATCH words (sbatch_words) set the option, in any spelling sbatch reads: `--option[=value]`
    or an unambiguous abbreviation of it (`--acc=lab`), or its short form with or without a space (`-A lab`,
    `-Alab`)? A command-line option would override it."""
    return option_value(words, option) is not None


def option_value(words: list[str], option: str) -> Optional[str]:
    """The value the words give an option (the last one, as sbatch takes it), in the spellings user_sets reads;
    None when they do not set it."""
    short = _SHORT.get(option)
    value = None
    for i, word in enumerate(words):
        following = words[i + 1] if i + 1 < len(words) else ""
        if word.startswith("--"):
            name, eq, given = word[2:].partition("=")
            if _spells(name, option):
                value = given if eq else following
        elif short and word.startswith("-" + short):
            value = word[2:] or following
    return value


def full_name(word: str) -> str:
    """`--name[=value]` as the option's full name when the name abbreviates one of those this module knows
    (`--cluster=x` -> `--clusters=x`, `--acc=lab` -> `--account=lab`), so that two spellings of one option
    are seen as one; any other word as it is."""
    if not word.startswith("--"):
        return word
    name, eq, value = word[2:].partition("=")
    return f"--{next((o for o in _SHORT if _spells(name, o)), name)}{eq}{value}"


def _spells(name: str, option: str) -> bool:
    """Is `--name` the option, or an abbreviation of it sbatch would take (three letters or more)?"""
    return name == option or (len(name) >= 3 and option.startswith(name))


# Options a job that shares a scheduler job with others may not have: its own array, or waiting in sbatch.
_ALONE = ("array", "wait", "dependency")


def bundling(script: Path) -> Optional[Bundling]:
    """How a Slurm job may share a bundle: with jobs whose #SBATCH words are the same, word for word; never
    an array or a job that waits; never one whose --time sbatch would read otherwise than this does."""
    words = sbatch_words(script)
    if any(user_sets(words, option) for option in _ALONE):
        return None
    given = option_value(words, "time")
    limit = slurm_seconds(given) if given else None
    if given and limit is None:
        return None
    return Bundling("\0".join(words), limit, given or "")


def bundle_header(script: Path, members: int) -> str:
    """The #SBATCH lines of a bundle of such jobs: theirs, then a --time for all of them (sbatch takes the last)."""
    lines = directive_lines(script, "#SBATCH", stop_at_command=True)
    form = bundling(script)
    total = bundle_time(form.limit if form else None, members)
    return "\n".join([*lines, *([f"#SBATCH --time={hms(total)}"] if total else [])])


def slurm_seconds(text: str) -> Optional[int]:
    """A --time as sbatch reads it (`M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S`) in seconds; None for
    UNLIMITED or anything else."""
    days, dash, clock = text.strip().rpartition("-")
    parts = clock.split(":")
    if not all(p.isdigit() for p in parts) or (dash and not days.isdigit()) or len(parts) > 3:
        return None
    numbers = [int(p) for p in parts]
    if dash:  # D-H, D-H:M, D-H:M:S
        h, m, s = (numbers + [0, 0])[:3]
    else:  # M, M:S, H:M:S
        h, m, s = numbers if len(numbers) == 3 else (0, *(numbers + [0])[:2])
    return ((int(days or 0) * 24 + h) * 60 + m) * 60 + s


def sbatch_defaults(text: str) -> str:
    """--sbatch-defaults as given or recorded, checked: sbatch long options, each `--name=value` or `--flag`."""
    import argparse
    import shlex

    try:
        words = shlex.split(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"--sbatch-defaults: {e}") from None
    bad = [w for w in words if not re.fullmatch(r"--[a-z][a-z-]*(=.*)?", w, re.DOTALL)]
    if bad:
        raise argparse.ArgumentTypeError(f"--sbatch-defaults: give long options such as --account=lab, not {bad[0]!r}")
    names = [w[2:].split("=", 1)[0] for w in words]
    kept = [n for n in names if any(_spells(n, o) for o in _NOT_DEFAULTS)]
    if kept:
        raise argparse.ArgumentTypeError(f"--sbatch-defaults: --{kept[0]} changes how jobs are followed; it cannot be a default")
    return text
