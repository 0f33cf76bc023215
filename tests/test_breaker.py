"""The circuit breaker: when the latest jobs all fail, stop submitting for a cool-down, say so once."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from conftest import drain, ledger_job, make_job, read_ledger, run

from jobroot import folders as fs
from jobroot.model import Cause, Entry, Phase
from jobroot.plan import breaker

pytestmark = pytest.mark.local


def ended(state: str, at: float, cause: Cause = Cause.OWN) -> Entry:
    failed = state == "failed"
    return Entry("x", Phase(state), "", at, "The job exited with code 1." if failed else "", cause.value if failed else "")


def test_breaker_opens_only_when_the_last_n_all_failed_recently() -> None:
    now = 10_000.0
    five_failed = [ended("failed", now - i) for i in range(5)]
    assert breaker(five_failed, now, 5, 900) != ""
    assert "paused until" in breaker(five_failed, now, 5, 900)
    assert breaker(five_failed[:4], now, 5, 900) == ""  # too few
    assert breaker([ended("done", now), *five_failed], now, 5, 900) == ""  # the latest succeeded
    assert breaker(five_failed, now + 901, 5, 900) == ""  # cool-down over
    spread = [ended("failed", now - i * 1000) for i in range(5)]
    assert breaker(spread, now, 5, 900) == ""  # not a burst
    assert breaker(five_failed, now, 0, 900) == ""  # switched off


def test_rejections_and_cancels_are_not_job_failures() -> None:
    now = 10_000.0
    for cause in (Cause.REJECTED, Cause.UPSTREAM, Cause.CANCELLED):
        assert breaker([ended("failed", now - i, cause) for i in range(5)], now, 5, 900) == "", cause
    unknown = [Entry("x", Phase.FAILED, "", now - i, "recorded before causes were") for i in range(5)]
    assert breaker(unknown, now, 5, 900) == ""  # never paused on a guess
    # a cancel between failures neither counts nor breaks the run of failures
    mixed = [ended("failed", now - i, Cause.OWN) for i in range(3)] + [ended("cancelled", now - 3, Cause.CANCELLED)]
    mixed += [ended("failed", now - i, Cause.OWN) for i in range(4, 6)]
    assert breaker(mixed, now, 5, 900) != ""


def test_a_burst_of_failures_pauses_submissions_and_says_so_once(root: Path, ledger: Path) -> None:
    for i in range(3):
        make_job(root, f"bad{i}", "exit 1\n")
    drain(root, "--breaker", "3", "--breaker-cooldown", "4")
    make_job(root, "good", ledger_job(ledger, "good"))
    first = run(root, "--breaker", "3", "--breaker-cooldown", "4")
    second = run(root, "--breaker", "3", "--breaker-cooldown", "4")
    assert "circuit breaker: the last 3 jobs to end all failed" in first.stderr
    assert second.stderr == "" and second.returncode == 0  # said once
    assert os.listdir(root / "inbox") == ["good"] and read_ledger(ledger) == []
    assert (root / fs.BREAKER).exists()
    time.sleep(4.5)  # the cool-down passes (a real wait: the pause is measured against the clock)
    drain(root, "--breaker", "3", "--breaker-cooldown", "4")
    assert read_ledger(ledger) == ["good"] and not (root / fs.BREAKER).exists()
    assert "circuit breaker closed" in (root / fs.LOG).read_text()
