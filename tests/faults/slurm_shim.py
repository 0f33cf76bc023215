"""A fault-injecting stand-in for sbatch/squeue/sacct/scancel, in front of the real commands.

    slurm_shim.py COMMAND ARGS...      (installed on PATH as COMMAND by tests/test_faults_slurm.py)

With probability SHIM_RATE (default 0.3) it injects a fault for COMMAND, the command's fault kinds
taken in turn, and appends its name to SHIM_LOG; otherwise it runs the real command untouched.
Faults: the real error texts with exit 1 (error), sleeping past the caller's timeout (hang), the
real output cut short (truncate) or replaced by junk (garble); for sbatch also: the job is created
but an error is reported (fail-after-create), or success is reported for a job that is cancelled at
once (vanish).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time

REAL = {"sbatch": "/usr/bin/sbatch", "squeue": "/usr/bin/squeue", "sacct": "/usr/bin/sacct", "scancel": "/usr/bin/scancel"}
ERRORS = {
    "sbatch": "sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)",
    "squeue": "slurm_load_jobs error: Unable to contact slurm controller (connect failure)",
    "sacct": "sacct: error: Problem talking to the database: Connection refused",
    "scancel": "scancel: error: Kill job error on job id 1: Unable to contact slurm controller (connect failure)",
}
FAULTS = ["error", "hang", "truncate", "garble"]
SBATCH_FAULTS = [*FAULTS, "fail-after-create", "vanish"]


def main() -> int:
    command, args = sys.argv[1], sys.argv[2:]
    rng = random.Random()
    if rng.random() >= float(os.environ.get("SHIM_RATE", "0.3")):
        return subprocess.run([REAL[command], *args]).returncode
    kinds = SBATCH_FAULTS if command == "sbatch" else FAULTS
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
    if fault == "fail-after-create":
        print("sbatch: error: Batch job submission failed: Socket timed out on send/recv operation", file=sys.stderr)
        return 1
    # vanish: report success for a job that is gone at once
    job_id = real.stdout.strip().split(";")[0]
    if job_id.isdigit():
        subprocess.run([REAL["scancel"], job_id])
    sys.stdout.write(real.stdout)
    return real.returncode


if __name__ == "__main__":
    sys.exit(main())
