"""The suite tells the truth on any date: the tests that need no real system, again with the clock two years ahead.

Fake scheduler output is written relative to the records it answers for, and whatever compares a time
with "now" is handed its "now"; a test that wrote a calendar date and compared it with the present would
pass on the day it was written and fail some weeks later, on every fresh clone. This run finds such a
test today. faketime (Debian's libfaketime) moves the clock of the inner pytest and of every process it
starts; the kernel's file times stay real, so the tests marked `fsclock` (the settle time, which compares
the file system's change times with this machine's clock: a clock skew, not a date) are left out of it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from conftest import REPO

pytestmark = pytest.mark.clock

AHEAD_DAYS = 730
SELECTION = "(unit or local or ordeal) and not fsclock"


def test_the_tests_that_need_no_real_system_pass_with_the_clock_two_years_ahead() -> None:
    found = subprocess.run(["bash", str(REPO / "tests" / "clock" / "faketime.sh")], capture_output=True, text=True, timeout=900)
    if found.returncode == 77 and os.environ.get("CI") != "true":
        pytest.skip(f"the moved-clock run needs faketime: {found.stderr.strip()}")
    assert found.returncode == 0, found.stderr
    faketime = [found.stdout.strip().splitlines()[-1], "-f", f"+{AHEAD_DAYS}d"]
    seen = subprocess.run([*faketime, sys.executable, "-c", "import time; print(time.time())"], capture_output=True, text=True)
    ahead = float(seen.stdout) - time.time()
    assert abs(ahead - AHEAD_DAYS * 86400) < 3600, f"faketime did not move the clock: {seen.stdout!r} {seen.stderr!r}"
    inner = subprocess.run(
        [*faketime, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", SELECTION],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    summary = (inner.stdout.strip().splitlines() or [inner.stderr.strip()])[-1]
    print(f"\nwith the clock {AHEAD_DAYS} days ahead: {summary}", file=sys.stderr)
    assert inner.returncode == 0, inner.stdout[-8000:] + inner.stderr[-2000:]
    assert " passed" in summary and "failed" not in summary and "error" not in summary, summary
