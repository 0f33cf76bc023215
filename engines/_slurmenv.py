"""What Slurm's commands run with: the environment a sweep passes on, and the site's sbatch defaults.

A sweep's own environment (a profile's SLURM_TIME_FORMAT, an scrontab job's SLURM_*) must not change
what the commands print or what sbatch submits; options a site wants on every job come through one
explicit, recorded option instead, and never override the job's own #SBATCH lines.
"""

import re
from pathlib import Path
from typing import Mapping

# What a sweep inherits must not change what Slurm's commands print or what sbatch submits: these
# variables (SLURM_TIME_FORMAT, SBATCH_PARTITION, SQUEUE_ACCOUNT, an scrontab job's own SLURM_*, ...) are
# never passed on. SLURM_CONF stays: it says where the cluster's configuration is.
_DROPPED = ("SLURM_", "SBATCH_", "SQUEUE_", "SACCT_", "SCANCEL_", "SALLOC_", "SRUN_", "SINFO_", "SCONTROL_")
_KEPT = ("SLURM_CONF",)
# Short spellings of the options a site default may name, for telling whether job.sh sets one itself.
_SHORT = {"account": "A", "partition": "p", "qos": "q", "time": "t", "job-name": "J", "nodes": "N",
          "ntasks": "n", "cpus-per-task": "c", "output": "o", "error": "e", "constraint": "C",
          "dependency": "d", "clusters": "M", "array": "a", "chdir": "D"}  # fmt: skip


def command_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment every Slurm command runs with: the sweep's own, less what steers Slurm."""
    return {k: v for k, v in environ.items() if k in _KEPT or not k.startswith(_DROPPED)}


def user_sets(script: Path, option: str) -> bool:
    """Does job.sh set `#SBATCH --option` (or its short form) itself, which a command-line option would override?"""
    try:
        text = script.read_text(errors="replace")
    except OSError:
        return False
    short = rf"|-{_SHORT[option]}" if option in _SHORT else ""
    return re.search(rf"^#SBATCH\s+(--{re.escape(option)}\b{short}(?![\w-]))", text, re.MULTILINE) is not None


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
    return text
