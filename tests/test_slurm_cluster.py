"""The Slurm engine against a real slurmctld + slurmd + slurmdbd (MariaDB), through the CLI.

The cluster is started by tests/slurm/cluster.sh (MinJobAge=5, so finished jobs leave squeue within
seconds). Tests that stop a daemon start it again before they end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import CLUSTER_SCRIPT, make_job, read_ledger, run

from jobroot import folders as fs

pytestmark = pytest.mark.usefixtures("cluster")


def drain(root: Path, *args: str, limit: float = 180) -> None:
    deadline = time.monotonic() + limit
    while os.listdir(root / "inbox") or os.listdir(root / "pending"):
        result = run(root, *args)
        assert result.returncode in (0, 1), result.stderr
        if time.monotonic() > deadline:
            pytest.fail(
                f"not drained: inbox={os.listdir(root / 'inbox')} pending={os.listdir(root / 'pending')}\n{result.stderr}"
            )
        time.sleep(0.5)


def error_of(root: Path, name: str) -> str | None:
    path = root / "complete" / name / fs.ERROR
    return path.read_text() if path.exists() else None


def job_id_of(root: Path, name: str) -> str:
    record = fs.read_record(root / "pending" / name)
    assert record is not None
    return record.job_id


def jobs_with_workdir(workdir: Path) -> list[str]:
    """Every job Slurm accounting holds whose working directory is workdir (or was, before a move).

    A COMPLETED job can be finished from squeue's word before slurmdbd has it: wait for accounting.
    """
    for _ in range(60):
        out = subprocess.run(
            ["sacct", "-X", "-n", "-P", "--starttime=now-1hour", "--format=JobID,State,WorkDir"],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        rows = [line.split("|", 2) for line in out.splitlines()]
        mine = [r for r in rows if r[2:] == [str(workdir)]]
        if mine and all(r[1] == "COMPLETED" for r in mine):
            return [r[0] for r in mine]
        time.sleep(0.5)
    pytest.fail(f"accounting never showed a finished job for {workdir}")


def wait_purged(job_id: str) -> None:
    """Wait until slurmctld has forgotten the job (MinJobAge), so only accounting knows it."""
    deadline = time.monotonic() + 120
    while subprocess.run(["squeue", "-h", "-t", "all", "-j", job_id], capture_output=True, text=True, timeout=60).stdout.strip():
        assert time.monotonic() < deadline, "the job never left squeue"
        time.sleep(1)


def stop_daemon(name: str) -> None:
    pid = int(Path(f"/run/{name}.pid").read_text())
    os.kill(pid, signal.SIGTERM)
    for _ in range(300):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    pytest.fail(f"{name} did not stop")


def restart_cluster() -> None:
    result = subprocess.run(["bash", str(CLUSTER_SCRIPT)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


# The TIMEOUT job takes 62-90 s: it is submitted first and checked last, while the others run.
@pytest.fixture(scope="module")
def timeout_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("timeout") / "root"
    assert run(root, "-s", "-e", "slurm", "--settle", "0", "--breaker", "0").returncode == 0
    make_job(root, "slow", "#!/bin/bash\n#SBATCH --time=00:00:01\nsleep 600\n")
    return root


def test_timeout_job_is_submitted_first(timeout_root: Path) -> None:
    assert run(timeout_root).returncode == 0
    assert os.listdir(timeout_root / "pending") == ["slow"]


def test_outcomes_in_slurms_own_words(slurm_root: Path, ledger: Path) -> None:
    root = slurm_root
    make_job(root, "ok", f"#!/bin/bash\necho ok >> {ledger}\n", {"input.dat": "x"})
    make_job(root, "three", "#!/bin/bash\nexit 3\n")
    make_job(root, "signal", "#!/bin/bash\nkill -9 $$\n")
    make_job(root, "array", '#!/bin/bash\n#SBATCH --array=1-3\n[ "$SLURM_ARRAY_TASK_ID" = 2 ] && exit 4\necho task\n')
    make_job(root, "badpartition", "#!/bin/bash\n#SBATCH --partition=nope\necho x\n")
    make_job(root, "noshebang", "echo no shebang\n")
    make_job(root, "named", "#!/bin/bash\n#SBATCH --job-name=mine|with|pipes\necho named\n")
    drain(root)
    assert sorted(os.listdir(root / "complete")) == ["array", "badpartition", "named", "noshebang", "ok", "signal", "three"]
    assert error_of(root, "ok") is None and error_of(root, "named") is None
    assert (root / "complete" / "ok" / "input.dat").read_text() == "x" and read_ledger(ledger) == ["ok"]
    assert list((root / "complete" / "ok").glob("slurm-*.out"))  # the job ran in its own folder
    assert error_of(root, "three").splitlines()[0].endswith("FAILED with exit code 3.")  # type: ignore[union-attr]
    assert error_of(root, "signal").splitlines()[0].endswith("FAILED with signal 9 (SIGKILL).")  # type: ignore[union-attr]
    array = error_of(root, "array")
    assert array is not None and "1 of 3 tasks" in array and "_2 FAILED with exit code 4" in array
    bad = error_of(root, "badpartition")
    assert bad is not None and "Invalid partition name specified" in bad and bad.startswith("The slurm engine refused the job")
    assert "does not look like a batch script" in (error_of(root, "noshebang") or "")
    # The user's own job name is kept, pipes and all (sacct is read with a control-character delimiter).
    names = subprocess.run(
        ["sacct", "-X", "-n", "--parsable2", "--delimiter=\x1f", "--starttime=now-1hour", "--format=JobName,WorkDir"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.splitlines()
    assert f"mine|with|pipes\x1f{root / 'pending' / 'named'}" in names


def test_scancel_from_outside(slurm_root: Path) -> None:
    make_job(slurm_root, "long", "#!/bin/bash\nsleep 300\n")
    run(slurm_root)
    job_id = job_id_of(slurm_root, "long")
    subprocess.run(["scancel", job_id], check=True, timeout=60)
    drain(slurm_root)
    error = error_of(slurm_root, "long")
    assert error is not None and error.splitlines()[0] == f"Slurm reports job {job_id} CANCELLED by uid 0."


def test_a_cancel_file_cancels_the_slurm_job(slurm_root: Path) -> None:
    make_job(slurm_root, "long", "#!/bin/bash\nsleep 300\n")
    run(slurm_root)
    job_id = job_id_of(slurm_root, "long")
    (slurm_root / "pending" / "long" / "cancel").touch()
    drain(slurm_root)
    lines = (error_of(slurm_root, "long") or "").splitlines()
    assert lines[0] == "The job was cancelled at the user's request (a file named cancel is in its folder)."
    assert lines[1] == f"Slurm reports job {job_id} CANCELLED by uid 0."
    assert f"asked the slurm engine to end job {job_id}" in (slurm_root / "reconcile.log").read_text()


def test_a_failure_purged_from_squeue_is_caught_by_sacct(slurm_root: Path) -> None:
    make_job(slurm_root, "five", "#!/bin/bash\nexit 5\n")
    run(slurm_root)
    job_id = job_id_of(slurm_root, "five")
    wait_purged(job_id)
    result = run(slurm_root)
    assert result.returncode == 0, result.stderr
    assert "FAILED with exit code 5" in (error_of(slurm_root, "five") or "")


def test_kill_right_after_sbatch_returns_never_submits_twice(slurm_root: Path, ledger: Path) -> None:
    make_job(slurm_root, "token", f"#!/bin/bash\necho token >> {ledger}\n")
    make_job(slurm_root, "owncomment", f"#!/bin/bash\n#SBATCH --comment=mine\necho own >> {ledger}\n")
    for _ in range(2):
        result = run(slurm_root, env={"RECONCILE_CRASH_AT": "launched"})
        assert result.returncode == -9 and "crash point launched" in result.stderr
    # Run 1 died right after submitting owncomment; run 2 adopted it (by work directory: the user's
    # own comment is kept), then died right after submitting token (to be adopted by its comment token).
    assert sorted(os.listdir(slurm_root / "pending")) == ["owncomment", "token"]
    assert (slurm_root / "pending" / "owncomment" / fs.RECORD).exists()
    assert not (slurm_root / "pending" / "token" / fs.RECORD).exists()
    drain(slurm_root)
    assert sorted(read_ledger(ledger)) == ["own", "token"]
    for name in ("token", "owncomment"):
        assert len(jobs_with_workdir(slurm_root / "pending" / name)) == 1, f"{name} was submitted twice"
        assert error_of(slurm_root, name) is None
    log = (slurm_root / "reconcile.log").read_text()
    assert "owncomment: found running" in log and "token: found running" in log


def test_max_queued_counts_every_job_of_the_user(slurm_root: Path, tmp_path: Path) -> None:
    go = tmp_path / "go"
    wait = f"#!/bin/bash\nwhile [ ! -e {go} ]; do sleep 0.2; done\n"
    outside = tmp_path / "outside.sh"
    outside.write_text(wait)
    subprocess.run(["sbatch", "--parsable", f"--chdir={tmp_path}", str(outside)], check=True, capture_output=True, timeout=60)
    try:
        for n in "abcd":
            make_job(slurm_root, n, wait)
        # Every queued job of this user counts: the outside one, and any other test's still running.
        queued = subprocess.run(
            ["squeue", "-h", "-r", "-u", "root", "-t", "PD,R,CG,CF,S"], capture_output=True, text=True, timeout=60
        )
        limit = str(len(queued.stdout.splitlines()) + 2)
        assert run(slurm_root, "--max-queued", limit).returncode == 0
        assert run(slurm_root, "--max-queued", limit).returncode == 0
        assert sorted(os.listdir(slurm_root / "pending")) == ["a", "b"]
        assert sorted(os.listdir(slurm_root / "inbox")) == ["c", "d"]
    finally:
        go.touch()
    drain(slurm_root, "--max-queued", limit)
    assert sorted(os.listdir(slurm_root / "complete")) == ["a", "b", "c", "d"]


def test_controller_down_misfiles_nothing(slurm_root: Path, tmp_path: Path) -> None:
    from jobroot.engine import SubmitRefused
    from jobroot.engines.slurm import SlurmEngine

    make_job(slurm_root, "inflight", "#!/bin/bash\nsleep 2\nexit 7\n")
    run(slurm_root)
    make_job(slurm_root, "waiting", "#!/bin/bash\necho waited\n")
    stop_daemon("slurmctld")
    try:
        result = run(slurm_root)
        assert result.returncode == 1 and "Unable to contact slurm controller" in result.stderr
        assert os.listdir(slurm_root / "pending") == ["inflight"] and os.listdir(slurm_root / "inbox") == ["waiting"]
        probe = tmp_path / "probe"
        probe.mkdir()
        (probe / "job.sh").write_text("#!/bin/bash\ntrue\n")
        with pytest.raises(SubmitRefused) as refused:
            SlurmEngine().submit(probe)
        assert not refused.value.permanent and "Unable to contact slurm controller" in str(refused.value)
    finally:
        restart_cluster()
    drain(slurm_root)
    assert "exit code 7" in (error_of(slurm_root, "inflight") or "")
    assert error_of(slurm_root, "waiting") is None


def test_slurmdbd_down_misfiles_nothing(slurm_root: Path) -> None:
    stop_daemon("slurmdbd")
    try:
        make_job(slurm_root, "ok", "#!/bin/bash\ntrue\n")
        make_job(slurm_root, "bad", "#!/bin/bash\nexit 6\n")
        run(slurm_root)
        ids = {n: job_id_of(slurm_root, n) for n in ("ok", "bad")}
        wait_purged(ids["bad"])
        result = run(slurm_root)
        assert "sacct failed" in result.stderr
        assert "bad" in os.listdir(slurm_root / "pending")  # its outcome is unknown without accounting: it waits
        assert error_of(slurm_root, "bad") is None
    finally:
        restart_cluster()
    drain(slurm_root)
    assert "FAILED with exit code 6" in (error_of(slurm_root, "bad") or "")
    assert error_of(slurm_root, "ok") is None


def test_timeout_job_is_reported_last(timeout_root: Path) -> None:
    drain(timeout_root, limit=240)
    error = error_of(timeout_root, "slow")
    assert error is not None and "TIMEOUT: it reached its time limit" in error.splitlines()[0]
