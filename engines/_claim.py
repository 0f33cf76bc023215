"""A submission's claim (`job_claim.json`), shared by the batch-system engines.

Written just before the submit command: a token the job carries where the batch system shows it
back, and when it was sent, so the next run can find a job whose id was never recorded. It also
keeps the words of earlier unrecognised refusals, and when the engine deleted the job (Grid Engine
keeps no record of a job deleted before it started).
"""

import json
import os
from pathlib import Path
from typing import Any, Optional

from jobroot import folders as fs
from jobroot.engine import SubmitRefused

REFUSAL_TRIES = 3  # a refusal in neither table is tried this many times (across runs), then final


def _load(job_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((job_dir / fs.CLAIM).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def read_claim(job_dir: Path) -> Optional[tuple[str, float]]:
    """(token, when it was claimed), or None when there is no readable claim."""
    data = _load(job_dir)
    try:
        return str(data["token"]), float(data["claimed"])
    except (KeyError, TypeError, ValueError):
        return None


def write_claim(job_dir: Path, token: str, claimed: float, refusals: list[str], where: str = "") -> None:
    """where: the place the job was sent to, when the batch system has more than one (Slurm: its --clusters)."""
    record: dict[str, Any] = {"token": token, "claimed": claimed}
    record.update({"refusals": refusals} if refusals else {})
    record.update({"where": where} if where else {})
    fs.write_atomic(job_dir / fs.CLAIM, json.dumps(record) + "\n")


def claim_where(job_dir: Path) -> str:
    """Where the claimed job was sent (write_claim's where), or ""."""
    where = _load(job_dir).get("where", "")
    return where if isinstance(where, str) else ""


def earlier_refusals(job_dir: Path) -> list[str]:
    """The words of earlier unrecognised refusals of this folder, kept in its claim across runs."""
    refusals = _load(job_dir).get("refusals", [])
    return [str(r) for r in refusals] if isinstance(refusals, list) else []


def forget_claim(job_dir: Path) -> None:
    try:
        os.unlink(job_dir / fs.CLAIM)  # the batch system certainly created nothing
    except OSError:
        pass


def count_refusal(job_dir: Path, token: str, claimed: float, refusals: list[str], message: str, command: str) -> tuple[bool, str]:
    """A refusal in neither table: counted in the claim; final (True) at the REFUSAL_TRIES-th. Returns the words to report."""
    refusals = [*refusals, message]
    if len(refusals) >= REFUSAL_TRIES:
        attempts = "\n".join(f"attempt {i}: {m}" for i, m in enumerate(refusals, 1))
        return True, f"{command} refused it {len(refusals)} times, for a reason not known to be passing:\n{attempts}"
    write_claim(job_dir, token, claimed, refusals, claim_where(job_dir))
    return False, f"{message} (a refusal not known to be passing or final: attempt {len(refusals)} of {REFUSAL_TRIES})"


def refused(
    job_dir: Path, token: str, claimed: float, refusals: list[str], message: str, kind: str, command: str
) -> SubmitRefused:
    """What to raise when the submit command exited non-zero without a job id; kind: "transient",
    "permanent" or "unknown" (a reason in neither table: counted in the claim, final at the last try).

    Refused for good: the claim goes (nothing was created). Transient: it stays, since the batch system may
    have created the job and lost only the answer; the next run adopts it by its token, or submits again.
    """
    if kind == "unknown":
        final, message = count_refusal(job_dir, token, claimed, refusals, message, command)
        kind = "permanent" if final else kind
    if kind == "permanent":
        forget_claim(job_dir)
    return SubmitRefused(message, permanent=kind == "permanent")


def note_deleted(job_dir: Path, when: float, why: str = "") -> None:
    """Remember, before qdel, that the engine deleted this job (and why): it may leave no record at all."""
    data = _load(job_dir)
    data["deleted"] = {"at": when, **({"why": why} if why else {})}
    fs.write_atomic(job_dir / fs.CLAIM, json.dumps(data) + "\n")


def deleted(job_dir: Path) -> Optional[tuple[float, str]]:
    """(when, why) the engine deleted this folder's job, if it did."""
    note = _load(job_dir).get("deleted")
    if not isinstance(note, dict):
        return None
    try:
        return float(note["at"]), str(note.get("why", ""))
    except (KeyError, TypeError, ValueError):
        return None
