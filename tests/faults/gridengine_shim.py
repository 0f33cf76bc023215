"""A fault-injecting stand-in for qsub/qstat/qacct/qdel, in front of the real commands.

    gridengine_shim.py COMMAND ARGS...      (installed on PATH as COMMAND by tests/test_gridengine_cell.py)

With probability SHIM_RATE (default 0.3) it injects a fault for COMMAND, the command's fault kinds
taken in turn, and appends its name to SHIM_LOG; otherwise it runs the real command untouched.
Faults: the real error texts of a cell whose qmaster is down, with exit 1 (error), sleeping past the
caller's timeout (hang), the real output cut short (truncate) or replaced by junk (garble); for qsub
also: the job is created but an error is reported (fail-after-create).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time

REAL = {c: f"/usr/bin/{c}" for c in ("qsub", "qstat", "qacct", "qdel")}
DOWN = 'unable to send message to qmaster using port 6444 on host "vm": got send error'
ERRORS = {
    "qsub": f"error: commlib error: got select error (Connection refused)\nUnable to run job: {DOWN}\nExiting.",
    "qstat": f"error: commlib error: got select error (Connection refused)\nerror: {DOWN}",
    "qacct": "error: can't open accounting file: Input/output error",
    "qdel": DOWN,
}
FAULTS = ["error", "hang", "truncate", "garble"]
QSUB_FAULTS = [*FAULTS, "fail-after-create"]


def main() -> int:
    command, args = sys.argv[1], sys.argv[2:]
    rng = random.Random()
    if rng.random() >= float(os.environ.get("SHIM_RATE", "0.3")):
        return subprocess.run([REAL[command], *args]).returncode
    kinds = QSUB_FAULTS if command == "qsub" else FAULTS
    counter = f"{os.environ['SHIM_LOG']}.{command}.n"  # kinds in turn, so every kind is injected
    try:
        n = int(open(counter).read() or 0)
    except (OSError, ValueError):  # none yet, or a shim killed with its caller while it wrote it
        n = 0
    with open(counter, "w") as f:
        f.write(str(n + 1))
    fault = kinds[n % len(kinds)]
    with open(os.environ["SHIM_LOG"], "a") as log:
        log.write(f"{command} {fault}\n")
    if fault == "error":
        print(ERRORS[command], file=sys.stderr)
        return 1
    if fault == "hang":
        time.sleep(float(os.environ.get("SHIM_HANG", "30")))
        return subprocess.run([REAL[command], *args]).returncode
    real = subprocess.run([REAL[command], *args], capture_output=True, text=True)
    if fault == "truncate":
        sys.stdout.write(real.stdout[: rng.randrange(len(real.stdout) + 1)])
        return real.returncode
    if fault == "garble":
        junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
        sys.stdout.write(junk.decode("latin-1"))
        return real.returncode
    # fail-after-create: qmaster took the job, the answer was lost
    print("Unable to run job: failed receiving gdi request response for mid=1 (got syncron message receive timeout error).")
    print("Exiting.")
    return 1


if __name__ == "__main__":
    sys.exit(main())
