"""Jobs sent to another cluster (#SBATCH --clusters), on two real clusters registered in one slurmdbd.

tests/slurm/cluster.sh second starts the cluster `second` beside `testcluster` (its own slurmctld and
slurmd on other ports). Its job ids start again from 1, so they meet ids the first cluster has used.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest
from conftest import make_job, run

from jobroot import folders as fs

pytestmark = pytest.mark.usefixtures("second_cluster")


def sweep_until(root: Path, done, limit: float = 120) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + limit
    while not done():
        result = run(root)
        assert result.returncode in (0, 1), result.stderr
        assert time.monotonic() < deadline, f"gave up: pending={os.listdir(root / 'pending')}\n{result.stderr}"
        time.sleep(0.5)


def recorded(root: Path, name: str) -> str:
    record = fs.read_record(root / "pending" / name)
    assert record is not None
    return record.job_id


def error_of(root: Path, name: str) -> str:
    return (root / "complete" / name / fs.ERROR).read_text()


def squeue_ids(cluster: str) -> list[str]:
    out = subprocess.run(["squeue", "-M", cluster, "-h", "-o", "%i"], capture_output=True, text=True, timeout=60).stdout
    return out.split()


def test_a_job_on_another_cluster_is_followed_there_to_its_end(slurm_root: Path) -> None:
    make_job(slurm_root, "good", "#!/bin/bash\n#SBATCH --clusters=second\necho ran > out\n")
    make_job(slurm_root, "bad", "#!/bin/bash\n#SBATCH -M second\nexit 3\n")
    make_job(slurm_root, "home", "#!/bin/bash\nexit 4\n")
    run(slurm_root)
    ids = {name: recorded(slurm_root, name) for name in ("good", "bad", "home")}
    assert ids["good"].endswith(";second") and ids["bad"].endswith(";second") and ";" not in ids["home"], ids
    sweep_until(slurm_root, lambda: len(os.listdir(slurm_root / "complete")) == 3)
    assert (slurm_root / "complete" / "good" / "out").read_text() == "ran\n"
    assert not (slurm_root / "complete" / "good" / fs.ERROR).exists()
    bad = ids["bad"].split(";")[0]
    assert error_of(slurm_root, "bad").splitlines()[0] == f"Slurm cluster second reports job {bad} FAILED with exit code 3."
    assert error_of(slurm_root, "home").splitlines()[0] == f"Slurm reports job {ids['home']} FAILED with exit code 4."


def test_each_cluster_in_use_is_asked_once_per_run(slurm_root: Path, tmp_path: Path) -> None:
    shims = tmp_path / "bin"
    shims.mkdir()
    calls = tmp_path / "calls"
    for command in ("squeue", "sacct"):
        real = subprocess.run(["sh", "-c", f"command -v {command}"], capture_output=True, text=True).stdout.strip()
        (shims / command).write_text(f'#!/bin/sh\necho "{command} $*" >> {calls}\nexec {real} "$@"\n')
        (shims / command).chmod(0o755)
    make_job(slurm_root, "there", "#!/bin/bash\n#SBATCH --clusters=second\nsleep 3\n")
    make_job(slurm_root, "here", "#!/bin/bash\nsleep 1\n")
    run(slurm_root)
    env = {"PATH": f"{shims}:{os.environ['PATH']}"}
    deadline = time.monotonic() + 120
    clusters_asked = []
    while os.listdir(slurm_root / "pending"):
        in_use = len(os.listdir(slurm_root / "pending"))
        calls.unlink(missing_ok=True)
        assert run(slurm_root, env=env).returncode in (0, 1)
        lines = calls.read_text().splitlines() if calls.exists() else []
        for command in ("squeue", "sacct"):
            here = [c for c in lines if c.startswith(command) and "--clusters=" not in c]
            there = [c for c in lines if c.startswith(command) and "--clusters=second" in c]
            assert len(here) <= 1 and len(there) <= 1, lines  # never one per job
        clusters_asked.append((in_use, len([c for c in lines if c.startswith("squeue")])))
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert clusters_asked[0] == (2, 2), clusters_asked  # both clusters in use are asked, each once


def test_a_cancel_file_ends_the_job_on_its_cluster(slurm_root: Path) -> None:
    make_job(slurm_root, "long", "#!/bin/bash\n#SBATCH --clusters=second\nsleep 300\n")
    run(slurm_root)
    job_id = recorded(slurm_root, "long")
    base = job_id.split(";")[0]
    assert base in squeue_ids("second")
    (slurm_root / "pending" / "long" / "cancel").touch()
    sweep_until(slurm_root, lambda: os.listdir(slurm_root / "complete") == ["long"])
    lines = error_of(slurm_root, "long").splitlines()
    assert lines[0] == "The job was cancelled at the user's request (a file named cancel is in its folder)."
    assert lines[1] == f"Slurm cluster second reports job {base} CANCELLED by uid 0."


def test_a_job_sent_elsewhere_before_a_kill_is_adopted_there_never_sent_twice(slurm_root: Path) -> None:
    make_job(slurm_root, "late", "#!/bin/bash\n#SBATCH --clusters=second\nsleep 2\n")
    assert run(slurm_root, env={"RECONCILE_CRASH_AT": "launched"}).returncode == -9  # sbatch ran; no id recorded
    claim = json.loads((slurm_root / "pending" / "late" / fs.CLAIM).read_text())
    assert claim["where"] == "second"
    assert run(slurm_root).returncode == 0
    job_id = recorded(slurm_root, "late")
    assert job_id.endswith(";second"), job_id
    sweep_until(slurm_root, lambda: os.listdir(slurm_root / "complete") == ["late"])
    assert not (slurm_root / "complete" / "late" / fs.ERROR).exists()
    # slurmctld hands records to slurmdbd on its own time: the job may be done before sacct shows it.
    deadline = time.monotonic() + 60
    while True:
        out = subprocess.run(
            ["sacct", "-M", "second", "-X", "-n", "-P", "--starttime=now-1hour", "--format=Comment"],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout.split()
        if claim["token"] in out or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert out.count(claim["token"]) == 1, out  # submitted once


def test_a_chain_runs_on_one_cluster_and_is_refused_across_two(slurm_root: Path, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    make_job(slurm_root, "a", f"#!/bin/bash\n#SBATCH -M second\nsleep 2; echo a >> {ledger}\n")
    make_job(slurm_root, "b", f"#!/bin/bash\n#SBATCH -M second\necho b >> {ledger}\n", {"after": "a\n"})
    make_job(slurm_root, "c", "#!/bin/bash\ntrue\n", {"after": "a\n"})
    sweep_until(slurm_root, lambda: len(os.listdir(slurm_root / "complete")) == 3)
    assert ledger.read_text() == "a\nb\n"  # b started only after a ended well, on cluster second
    assert not (slurm_root / "complete" / "b" / fs.ERROR).exists()
    a = json.loads((slurm_root / "complete" / "a" / fs.RECORD).read_text())["job_id"]
    first = error_of(slurm_root, "c").splitlines()[0]
    assert first.startswith(f"The slurm engine refused the job: it runs after job {a}, on second, but goes to this host's"), first


@pytest.fixture
def federation() -> Iterator[None]:
    """testcluster and second in one federation; second alone has the feature `fb`, so a job with
    --cluster-constraint=fb runs there while its copy on testcluster, where it was submitted, is REVOKED."""

    def sacctmgr(*args: str) -> None:
        subprocess.run(["sacctmgr", "-i", *args], check=True, capture_output=True, timeout=60)

    sacctmgr("add", "federation", "jobroot-test", "clusters=testcluster,second")
    try:
        sacctmgr("modify", "cluster", "second", "set", "features=fb")
        deadline = time.monotonic() + 60
        while (
            "Sibling:    second" not in subprocess.run(["scontrol", "show", "federation"], capture_output=True, text=True).stdout
        ):
            assert time.monotonic() < deadline, "the federation did not form"
            time.sleep(0.5)
        yield
    finally:
        subprocess.run(["sacctmgr", "-i", "delete", "federation", "jobroot-test"], capture_output=True, timeout=60)
        subprocess.run(["sacctmgr", "-i", "modify", "cluster", "second", "set", "features="], capture_output=True, timeout=60)


@pytest.mark.usefixtures("federation")
def test_a_job_a_federation_sibling_runs_is_judged_by_the_siblings_record(slurm_root: Path) -> None:
    make_job(slurm_root, "bad", "#!/bin/bash\n#SBATCH --cluster-constraint=fb\nsleep 2; exit 3\n")
    make_job(slurm_root, "good", "#!/bin/bash\n#SBATCH --cluster-constraint=fb\necho ran > out\n")
    run(slurm_root)
    job_id = recorded(slurm_root, "bad")
    assert int(job_id) >= 1 << 26, job_id  # a federated id: the cluster's number in its high bits
    sweep_until(slurm_root, lambda: len(os.listdir(slurm_root / "complete")) == 2)
    assert error_of(slurm_root, "bad").splitlines()[0] == f"Slurm reports job {job_id} FAILED with exit code 3."
    assert (slurm_root / "complete" / "good" / "out").read_text() == "ran\n"
    assert not (slurm_root / "complete" / "good" / fs.ERROR).exists()
