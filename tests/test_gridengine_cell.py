"""Grid Engine on a real one-host cell (tests/gridengine/cluster.sh): outcomes in its own words, cancels,
a job found in qacct only, an error state, random kills and scheduler faults.

Each job.sh appends `NAME JOB_ID` to a ledger outside the root, so the ledger shows how many Grid
Engine jobs ran for each folder.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
from pathlib import Path

import pytest
from conftest import RECONCILE, REPO, make_job, read_ledger, run, run_maybe_killed, shim_env

from jobroot import folders as fs

pytestmark = pytest.mark.usefixtures("gridengine_cell")
SHIM = REPO / "tests" / "faults" / "gridengine_shim.py"
COMMANDS = ("qsub", "qstat", "qacct", "qdel")
MEMBER_EXIT_3 = "The job exited with code 3, as member "  # a bundle member's words for the same ending


def sweep_until(root: Path, done, *args: str, env: dict[str, str] | None = None, limit: float = 180) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + limit
    while not done():
        result = run(root, *args, env=env)
        assert result.returncode in (0, 1), result.stderr
        assert "Traceback" not in result.stderr, result.stderr
        assert time.monotonic() < deadline, f"gave up: pending={os.listdir(root / 'pending')}\n{result.stderr}"
        time.sleep(0.5)


def drained(root: Path) -> bool:
    return not os.listdir(root / "inbox") and not os.listdir(root / "pending")


def error_of(root: Path, name: str) -> str | None:
    path = root / "complete" / name / fs.ERROR
    return path.read_text() if path.exists() else None


def ledger_script(ledger: Path, name: str, tail: str = "") -> str:
    return f"#!/bin/bash\nprintf '%s %s\\n' {name} \"$JOB_ID\" >> {ledger}\n{tail}\n"


def test_outcomes_in_grid_engines_own_words(ge_root: Path, ledger: Path) -> None:
    make_job(ge_root, "ok", ledger_script(ledger, "ok"))
    make_job(ge_root, "three", ledger_script(ledger, "three", "exit 3"))
    make_job(ge_root, "signal", ledger_script(ledger, "signal", "kill -9 $$"))
    make_job(ge_root, "array", '#!/bin/bash\n#$ -t 1-3\n[ "$SGE_TASK_ID" = 2 ] && exit 4\ntrue\n')
    make_job(ge_root, "queue", "#!/bin/bash\n#$ -q nope.q\ntrue\n")
    make_job(ge_root, "eqw", "#!/bin/bash\n#$ -o /nonexistent/dir/out\ntrue\n")
    sweep_until(ge_root, lambda: drained(ge_root))
    assert error_of(ge_root, "ok") is None and (ge_root / "complete" / "ok").is_dir()
    assert sorted(line.split()[0] for line in read_ledger(ledger)) == ["ok", "signal", "three"]
    assert (error_of(ge_root, "three") or "").splitlines()[0].endswith("ended with exit code 3.")
    assert "ended with signal 9 (SIGKILL); qacct: failed 100: assumedly after job" in (error_of(ge_root, "signal") or "")
    first = (error_of(ge_root, "array") or "").splitlines()[0]
    assert first.startswith("Grid Engine reports 1 of 3 tasks of job ") and first.endswith("task 2 ended with exit code 4.")
    assert 'unknown queue "nope.q"' in (error_of(ge_root, "queue") or "")
    eqw = error_of(ge_root, "eqw") or ""
    assert "error state (Eqw)" in eqw and 'can\'t open output file "/nonexistent/dir/out"' in eqw
    assert "job.sh.o" in " ".join(os.listdir(ge_root / "complete" / "ok"))  # ran in its folder (-cwd)
    assert subprocess.run(["qstat", "-u", "root"], capture_output=True, text=True, timeout=60).stdout == ""  # Eqw job deleted


def test_a_cancel_file_ends_a_running_job_and_a_held_one(ge_root: Path) -> None:
    make_job(ge_root, "running", "#!/bin/bash\nsleep 300\n")
    make_job(ge_root, "held", "#!/bin/bash\n#$ -h\ntrue\n")
    sweep_until(ge_root, lambda: not os.listdir(ge_root / "inbox"))
    job_id = json.loads((ge_root / "pending" / "running" / fs.RECORD).read_text())["job_id"]
    deadline = time.monotonic() + 60
    while f" {job_id} " not in f" {subprocess.run(['qstat', '-s', 'r'], capture_output=True, text=True).stdout} ":
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.5)
    for name in ("running", "held"):
        (ge_root / "pending" / name / "cancel").touch()
    sweep_until(ge_root, lambda: os.listdir(ge_root / "complete") == ["running"])
    assert "cancelled at the user's request" in (error_of(ge_root, "running") or "")
    assert "signal 9" in (error_of(ge_root, "running") or "")
    # The held job was deleted before it started: Grid Engine keeps no record of it. Once the grace for a
    # late record has passed (rewound here instead of waited for), the folder completes, saying so.
    claim = ge_root / "pending" / "held" / fs.CLAIM
    note = json.loads(claim.read_text())
    note["deleted"]["at"] -= 3600
    claim.write_text(json.dumps(note))
    sweep_until(ge_root, lambda: drained(ge_root))
    assert "deleted (qdel) before it started" in (error_of(ge_root, "held") or "")


def test_a_job_that_ended_while_no_sweep_ran_is_found_in_qacct(ge_root: Path, ledger: Path) -> None:
    make_job(ge_root, "quiet", ledger_script(ledger, "quiet", "exit 5"))
    sweep_until(ge_root, lambda: not os.listdir(ge_root / "inbox"))
    job_id = json.loads((ge_root / "pending" / "quiet" / fs.RECORD).read_text())["job_id"]
    deadline = time.monotonic() + 90
    while subprocess.run(["qacct", "-j", job_id], capture_output=True, text=True).returncode != 0:
        assert time.monotonic() < deadline, "qacct never recorded the job"
        time.sleep(1)
    result = run(ge_root)  # one sweep: the job is gone from qstat and only qacct knows it
    assert result.returncode == 0, result.stderr
    assert (error_of(ge_root, "quiet") or "").splitlines()[0].endswith("ended with exit code 5.")


def populate(root: Path, ledger: Path, count: int, prefix: str = "job", slow: int = 0) -> dict[str, str]:
    """Jobs that end well, or exit 3 (every third); with slow, every fourth runs that many seconds first."""
    kinds = {}
    for i in range(count):
        name = f"{prefix}-{i:03}"
        kinds[name] = "fail" if i % 3 == 2 else "ok"
        tail = (f"sleep {slow}\n" if slow and i % 4 == 0 else "") + ("exit 3" if kinds[name] == "fail" else "")
        make_job(root, name, ledger_script(ledger, name, tail), {"input.dat": name})
    return kinds


def verify(root: Path, ledger: Path, kinds: dict[str, str]) -> dict[str, int]:
    """Every folder in complete/ once; every job ran exactly once (the ledger); job_error.txt says how it ended."""
    assert drained(root)
    assert sorted(os.listdir(root / "complete")) == sorted(kinds), "a folder was lost or completed twice"
    deadline = time.monotonic() + 120
    while subprocess.run(["qstat", "-u", "root"], capture_output=True, text=True, timeout=60).stdout.strip():
        assert time.monotonic() < deadline, "jobs still queued after every folder completed: a second submission?"
        time.sleep(1)
    runs: dict[str, set[str]] = {}
    for line in read_ledger(ledger):
        name, job_id = line.split()
        runs.setdefault(name, set()).add(job_id)
    assert {n: len(ids) for n, ids in runs.items() if len(ids) != 1} == {}, "a folder's job ran twice"
    assert set(runs) == set(kinds), f"never ran: {sorted(set(kinds) - set(runs))}"
    for name, kind in kinds.items():
        job = root / "complete" / name
        assert (job / "input.dat").read_text() == name
        error = error_of(root, name)
        if kind == "ok":
            assert error is None, f"{name}: {error}"
        else:
            first = error.splitlines()[0] if error else ""
            assert first.endswith("ended with exit code 3.") or first.startswith(MEMBER_EXIT_3), f"{name}: {error}"
    return {"jobs": len(kinds), "ran": sum(len(ids) for ids in runs.values()), "duplicates": 0, "lost": 0}


def test_kill_at_random_instants_on_the_real_cell(ge_root: Path, ledger: Path) -> None:
    runs = int(os.environ.get("RECONCILE_KILL_RUNS", "200"))
    seed = int(os.environ.get("RECONCILE_KILL_SEED", str(time.time_ns() % 10**6)))
    rng = random.Random(seed)
    kinds = populate(ge_root, ledger, 24)
    killed = 0
    for i in range(runs):
        proc = subprocess.Popen([*RECONCILE, "-r", str(ge_root), "--batch-limit", "3"], stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.0, 0.2))
        proc.kill()
        killed += proc.wait(timeout=60) == -9
        if i % 60 == 30:
            kinds.update(populate(ge_root, ledger, 3, prefix=f"late{i}"))
    sweep_until(ge_root, lambda: drained(ge_root), limit=300)
    tally = verify(ge_root, ledger, kinds)
    print(f"\nrandom kills on Grid Engine (seed {seed}): {runs} runs, {killed} killed before they exited, {tally}")
    assert killed >= runs // 4, f"only {killed} of {runs} runs were killed before they ended"


def test_scheduler_faults_at_30_percent(ge_root: Path, ledger: Path, tmp_path: Path) -> None:
    runs = int(os.environ.get("RECONCILE_FAULT_RUNS", "150"))
    env, log = shim_env(tmp_path, SHIM, COMMANDS), tmp_path / "faults.log"
    kinds = populate(ge_root, ledger, 24)
    for i in range(runs):
        result = run(ge_root, "--command-timeout", "2", env=env)
        assert result.returncode in (0, 1), result.stderr
        assert "Traceback" not in result.stderr, result.stderr
        if i % 50 == 25:
            kinds.update(populate(ge_root, ledger, 6, prefix=f"late{i}"))
    sweep_until(ge_root, lambda: drained(ge_root), limit=300)
    tally = verify(ge_root, ledger, kinds)
    seen = set(log.read_text().splitlines())
    for expected in ("qsub fail-after-create", "qsub garble", "qsub truncate", "qstat hang", "qstat truncate", "qacct error"):
        assert expected in seen, f"the fault {expected!r} was never injected; raise RECONCILE_FAULT_RUNS"
    print(f"\nscheduler faults on Grid Engine: {runs} runs, {len(log.read_text().splitlines())} faults, {tally}")


@pytest.mark.parametrize("bundle", ["1", "3"])
def test_kills_and_scheduler_faults_at_once_on_the_real_cell(ge_root: Path, ledger: Path, tmp_path: Path, bundle: str) -> None:
    # A kill between qsub and the record leaves a claim; a failed qstat -j then hides its job's token. Slow
    # jobs keep such a job in qstat past the claim's grace period, where only that query could show it.
    runs = int(os.environ.get("RECONCILE_COMBINED_RUNS", "150"))
    seed = int(os.environ.get("RECONCILE_KILL_SEED", str(time.time_ns() % 10**6)))
    rng, env, log = random.Random(seed), shim_env(tmp_path, SHIM, COMMANDS), tmp_path / "faults.log"
    kinds = populate(ge_root, ledger, 24, slow=45)
    killed = 0
    for i in range(runs):
        killed += run_maybe_killed(ge_root, rng, "--batch-limit", "3", "--command-timeout", "2", "--bundle", bundle, env=env)
        if i % 50 == 25:
            kinds.update(populate(ge_root, ledger, 6, prefix=f"late{i}"))
    sweep_until(ge_root, lambda: drained(ge_root), "--bundle", bundle, limit=300)
    tally = verify(ge_root, ledger, kinds)
    faults = log.read_text().splitlines()
    print(
        f"\nkills and faults on Grid Engine, --bundle {bundle} (seed {seed}): {runs} runs, {killed} killed, "
        f"{len(faults)} faults, {tally}"
    )
    assert killed >= runs // 3 and len(faults) >= runs // 4, (killed, len(faults))


def test_bundles_on_the_real_cell_give_each_folder_its_own_verdict_and_a_deleted_bundle_costs_only_its_running_member(
    ge_root: Path, ledger: Path, tmp_path: Path
) -> None:
    go = tmp_path / "go"

    def timed(name: str, tail: str = "") -> str:  # a time limit of its own, which the bundle adds up
        return ledger_script(ledger, name, tail).replace("\n", "\n#$ -l h_rt=0:05:00\n", 1)

    make_job(ge_root, "a", timed("a"))
    make_job(ge_root, "b", timed("b", "exit 3"))
    make_job(ge_root, "c", timed("c", f"while [ ! -e {go} ]; do sleep 0.2; done"))
    make_job(ge_root, "d", timed("d"))
    sweep_until(ge_root, lambda: (ge_root / "pending" / "c" / fs.STARTED).exists(), "--bundle", "4")
    (home,) = (ge_root / fs.BUNDLES).iterdir()
    assert "h_rt=1380" in (home / fs.SCRIPT).read_text()  # 4 x (5 min + 30 s to end one past it) + 1 min
    bundle_job = fs.read_record(home).job_id  # type: ignore[union-attr]
    subprocess.run(["qdel", bundle_job], check=True, timeout=60, capture_output=True)
    go.touch()
    sweep_until(ge_root, lambda: drained(ge_root), "--bundle", "4")
    ran = dict(line.split() for line in read_ledger(ledger))
    assert sorted(ran) == ["a", "b", "c", "d"] and ran["a"] == ran["b"] == ran["c"] == bundle_job != ran["d"]
    assert error_of(ge_root, "a") is None and error_of(ge_root, "d") is None
    assert (error_of(ge_root, "b") or "").startswith(
        f"The job exited with code 3, as member 2 of 4 of gridengine bundle job {bundle_job}."
    )
    c = error_of(ge_root, "c") or ""
    assert c.startswith(
        f"The job was running as member 3 of 4 of gridengine bundle job {bundle_job} when the bundle ended: Grid Engine"
    )
