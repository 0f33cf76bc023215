"""The local engine's job wrapper: detach, run `bash job.sh`, record how it ended.

Started by LocalEngine.submit in the job's folder with the held `job_lock` descriptor as its only
argument. It writes its process group id into the lock file, forks so the launcher can return,
runs the job with the lock descriptor inherited (so the lock stays held while any process of the
job lives), and writes `job_exit.json` atomically when job.sh ends.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from jobroot.folders import EXIT_RECORD, OUTPUT, SCRIPT, write_atomic


def main() -> None:
    lock_fd = int(sys.argv[1])
    os.ftruncate(lock_fd, 0)
    os.pwrite(lock_fd, f"{os.getpgid(0)}\n".encode(), 0)
    if os.fork():
        os._exit(0)  # the launcher waits for this; the job carries on in the child
    # Let go of the launcher's pipe, or it would wait for the whole job.
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    # A cancel signals the whole process group: the job ends, this wrapper stays to record it.
    # (A handler, not SIG_IGN, so the job itself does not inherit the disposition.)
    signal.signal(signal.SIGTERM, lambda *_: None)
    # Relative paths: the working directory follows the folder if someone renames it meanwhile.
    try:
        with open(OUTPUT, "wb") as out:
            rc = subprocess.run(
                ["bash", SCRIPT],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                pass_fds=(lock_fd,),
            ).returncode
    except OSError:
        rc = 127  # bash missing, or the output file cannot be written: the job did not run
    record = {"returncode": max(rc, 0), "signal": -rc if rc < 0 else 0, "ended": time.time()}
    write_atomic(Path(EXIT_RECORD), json.dumps(record) + "\n")
    os._exit(0)
