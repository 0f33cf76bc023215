"""The local engine on real processes: detached jobs, exit records, lost jobs, one launch per folder."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from jobroot import folders as fs
from jobroot.engine import State, Submitted, SubmitUnknown
from jobroot.engines.local import LocalEngine

pytestmark = pytest.mark.local

WAIT_FOR_GO = "#!/bin/bash\nwhile [ ! -e go ]; do sleep 0.05; done\necho ran >> runs\n"


def job(tmp_path: Path, script: str, name: str = "job") -> Path:
    d = tmp_path / name
    d.mkdir()
    (d / "job.sh").write_text(script)
    return d


def status(engine: LocalEngine, d: Path, job_id: str) -> State:
    return engine.observe([Submitted("local", job_id, 0, d)], []).statuses[job_id].state


def wait_for(predicate, limit: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached")
        time.sleep(0.02)


def test_running_then_done_and_output_captured(tmp_path: Path) -> None:
    engine = LocalEngine(slots=4)
    d = job(tmp_path, WAIT_FOR_GO + "echo out; echo err >&2\n")
    job_id = engine.submit(d)
    assert status(engine, d, job_id) is State.ACTIVE
    assert engine.observe([Submitted("local", job_id, 0, d)], []).room == 3
    (d / "go").touch()
    wait_for(lambda: status(engine, d, job_id) is not State.ACTIVE)
    assert status(engine, d, job_id) is State.DONE
    assert (d / fs.OUTPUT).read_text() == "out\nerr\n"


def test_a_second_launch_of_a_running_or_finished_folder_is_refused(tmp_path: Path) -> None:
    engine = LocalEngine()
    d = job(tmp_path, WAIT_FOR_GO)
    job_id = engine.submit(d)
    with pytest.raises(SubmitUnknown, match="already running"):
        engine.submit(d)
    (d / "go").touch()
    wait_for(lambda: status(engine, d, job_id) is State.DONE)
    with pytest.raises(SubmitUnknown, match="already run"):
        engine.submit(d)
    assert (d / "runs").read_text() == "ran\n"


@pytest.mark.parametrize(
    ("script", "expected"),
    [("exit 3\n", "exited with code 3"), ("kill -9 $$\n", "killed by signal 9 (SIGKILL)")],
)
def test_failures_say_how(tmp_path: Path, script: str, expected: str) -> None:
    engine = LocalEngine()
    d = job(tmp_path, script)
    job_id = engine.submit(d)
    wait_for(lambda: status(engine, d, job_id) is not State.ACTIVE)
    reason = engine.observe([Submitted("local", job_id, 0, d)], []).statuses[job_id].reason
    assert expected in reason and "local engine" in reason


def test_a_job_whose_processes_all_died_without_a_record_is_lost(tmp_path: Path) -> None:
    engine = LocalEngine()
    d = job(tmp_path, WAIT_FOR_GO)
    job_id = engine.submit(d)
    os.killpg(int(job_id), signal.SIGKILL)  # wrapper and job, as a reboot would
    wait_for(lambda: status(engine, d, job_id) is not State.ACTIVE)
    lost = engine.observe([Submitted("local", job_id, 0, d)], []).statuses[job_id]
    assert lost.state is State.FAILED and lost.reason.startswith("The job was lost")


def test_a_reused_pid_does_not_look_like_a_running_job(tmp_path: Path) -> None:
    # The lock names a live process (this one), but nobody holds the lock: the job is gone.
    d = job(tmp_path, "true\n")
    (d / fs.RUN_LOCK).write_text(f"{os.getpid()}\n")
    assert status(LocalEngine(), d, str(os.getpid())) is State.FAILED


def test_claimed_folders_are_found_only_when_launched(tmp_path: Path) -> None:
    engine = LocalEngine()
    never = job(tmp_path, "true\n", "never")
    running = job(tmp_path, WAIT_FOR_GO, "running")
    job_id = engine.submit(running)
    obs = engine.observe([], [never, running])
    assert obs.found == {"running": job_id} and not obs.unsure
    (running / "go").touch()
    wait_for(lambda: status(engine, running, job_id) is State.DONE)
    assert engine.observe([], [running]).found == {"running": job_id}


def test_the_job_outlives_its_launcher(tmp_path: Path) -> None:
    # The launcher here is this test process's child; the job is detached into its own session.
    engine = LocalEngine()
    d = job(tmp_path, WAIT_FOR_GO)
    job_id = engine.submit(d)
    members = [int(p) for p in os.listdir("/proc") if p.isdigit() and _pgid(int(p)) == int(job_id)]
    assert members, "no process left in the job's group"
    assert all(os.getsid(pid) == int(job_id) != os.getsid(0) for pid in members)
    (d / "go").touch()
    wait_for(lambda: status(engine, d, job_id) is State.DONE)


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def test_an_unreadable_exit_record_is_a_failure(tmp_path: Path) -> None:
    d = job(tmp_path, "true\n")
    (d / fs.EXIT_RECORD).write_text("{garbled")  # written whole by rename: only a person can have done this
    (d / fs.RUN_LOCK).write_text("12345\n")
    assert status(LocalEngine(), d, "12345") is State.FAILED


def test_a_claim_whose_lock_is_held_before_its_id_is_written_is_unsure(tmp_path: Path) -> None:
    import fcntl

    d = job(tmp_path, "true\n")
    fd = os.open(d / fs.RUN_LOCK, os.O_RDWR | os.O_CREAT)  # a launch under way: locked, no wrapper id yet
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        obs = LocalEngine().observe([], [d])
    finally:
        os.close(fd)
    assert obs.unsure == {"job"} and obs.found == {}
