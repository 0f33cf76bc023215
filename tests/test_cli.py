"""The reconciler end to end: the real command line in a subprocess, a temporary root, real local jobs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import RECONCILE, drain, ledger_job, make_job, read_ledger, run

from jobroot import folders as fs
from jobroot.observe import judge_inbox_folder

pytestmark = pytest.mark.local

WAIT_FOR_GO = "#!/bin/bash\nwhile [ ! -e {go} ]; do sleep 0.05; done\n"


def names(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def test_success_exit_code_and_signal(root: Path) -> None:
    make_job(root, "ok", "echo hello\n", {"input.dat": "data"})
    make_job(root, "three", "exit 3\n")
    make_job(root, "killed", "kill -9 $$\n")
    drain(root, "--slots", "3")
    assert names(root / "complete") == ["killed", "ok", "three"]
    ok = root / "complete" / "ok"
    assert (ok / "job_output.txt").read_text() == "hello\n" and (ok / "input.dat").read_text() == "data"
    assert not (ok / "job_error.txt").exists()
    three = (root / "complete" / "three" / "job_error.txt").read_text()
    assert three.splitlines()[0] == "The job exited with code 3, according to the local engine."
    killed = (root / "complete" / "killed" / "job_error.txt").read_text()
    assert killed.splitlines()[0] == "The job was killed by signal 9 (SIGKILL), according to the local engine."
    log = (root / fs.LOG).read_text()
    assert "ok: submitted as local job" in log and "three: failed: The job exited with code 3" in log


def test_a_quiet_run_prints_nothing(root: Path) -> None:
    make_job(root, "a", "true\n")
    result = run(root)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_byte_order_and_batch_limit(root: Path, ledger: Path) -> None:
    for name in ("9", "20", "140", "110", "100"):
        make_job(root, name, ledger_job(ledger, name))
    assert run(root, "--batch-limit", "2", "--slots", "10").returncode == 0
    assert names(root / "pending") == ["100", "110"]
    drain(root, "--batch-limit", "2", "--slots", "10")
    order = [
        line.split(": submitted")[0].split()[-1] for line in (root / fs.LOG).read_text().splitlines() if ": submitted" in line
    ]
    assert order == ["100", "110", "140", "20", "9"]
    assert sorted(read_ledger(ledger)) == ["100", "110", "140", "20", "9"]


def test_slots_bound_the_jobs_running_at_once(root: Path, tmp_path: Path) -> None:
    go = tmp_path / "go"
    for i in range(4):
        make_job(root, f"j{i}", WAIT_FOR_GO.format(go=go))
    run(root, "--slots", "2")
    run(root, "--slots", "2")  # a second run must not start more while two are running
    assert names(root / "pending") == ["j0", "j1"] and names(root / "inbox") == ["j2", "j3"]
    go.touch()
    drain(root, "--slots", "2")
    assert names(root / "complete") == ["j0", "j1", "j2", "j3"]


def test_the_job_keeps_running_after_the_run_that_started_it(root: Path, tmp_path: Path) -> None:
    go = tmp_path / "go"
    make_job(root, "a", WAIT_FOR_GO.format(go=go) + "echo finished\n")
    assert run(root).returncode == 0
    assert run(root).returncode == 0
    assert names(root / "pending") == ["a"]
    go.touch()
    drain(root)
    assert (root / "complete" / "a" / "job_output.txt").read_text() == "finished\n"


def test_name_collisions_land_beside_never_over(root: Path, tmp_path: Path) -> None:
    (root / "complete" / "a").mkdir()  # really empty: os.rename would silently replace it
    (root / "complete" / "k").mkdir()
    (root / "complete" / "k" / "keep").write_text("old result")
    make_job(root, "a", "echo new\n")
    make_job(root, "k", "echo new\n")
    drain(root)
    assert names(root / "complete") == ["a", "a.2", "k", "k.2"]
    assert os.listdir(root / "complete" / "a") == [] and os.listdir(root / "complete" / "k") == ["keep"]
    assert (root / "complete" / "a.2" / "job_output.txt").read_text() == "new\n"
    assert (root / "complete" / "k.2" / "job_output.txt").read_text() == "new\n"
    # The same name dropped again while the first is still running lands beside it in pending/ too.
    go = tmp_path / "go"
    make_job(root, "b", WAIT_FOR_GO.format(go=go) + "echo first\n")
    run(root)
    make_job(root, "b", "echo second\n")
    run(root)
    assert names(root / "pending")[:2] == ["b", "b.2"] or names(root / "complete") == ["a", "a.2", "b.2", "k", "k.2"]
    go.touch()
    drain(root)
    outputs = sorted((root / "complete" / n / "job_output.txt").read_text() for n in ("b", "b.2"))
    assert outputs == ["first\n", "second\n"]


def test_a_folder_moved_back_from_complete_is_a_fresh_job(root: Path, ledger: Path) -> None:
    make_job(root, "a", ledger_job(ledger, "a", "exit 3"))
    drain(root)
    os.rename(root / "complete" / "a", root / "inbox" / "a")
    (root / "inbox" / "a" / "job.sh").write_text(ledger_job(ledger, "a"))
    drain(root)
    done = root / "complete" / "a"
    assert read_ledger(ledger) == ["a", "a"]
    assert not (done / "job_error.txt").exists()
    old = done / "job_history" / "1"
    assert sorted(os.listdir(old)) == sorted(
        ["job_error.txt", "job_exit.json", "job_lock", "job_output.txt", "job_submitted.json"]
    )
    assert "code 3" in (old / "job_error.txt").read_text()


def test_bad_input_is_refused_with_a_reason_or_left_alone(root: Path) -> None:
    inbox = root / "inbox"
    (inbox / "uploading").mkdir()  # no job.sh yet: may still be uploading
    (inbox / "uploading" / "data").write_text("x")
    make_job(root, ".hidden", "true\n")
    (inbox / "plain-file").write_text("not a job")
    (inbox / "dir-script").mkdir()
    (inbox / "dir-script" / "job.sh").mkdir()
    (inbox / "link-script").mkdir()
    (inbox / "real.sh").write_text("true\n")
    os.symlink(inbox / "real.sh", inbox / "link-script" / "job.sh")
    make_job(root, "empty", "")
    (inbox / "fifo-script").mkdir()
    os.mkfifo(inbox / "fifo-script" / "job.sh")
    drain_once = [run(root) for _ in range(3)]
    assert all(r.returncode == 0 for r in drain_once), drain_once[-1].stderr
    assert names(inbox) == [".hidden", "plain-file", "real.sh", "uploading"]
    assert names(root / "complete") == ["dir-script", "empty", "fifo-script", "link-script"]
    reasons = {n: (root / "complete" / n / "job_error.txt").read_text() for n in names(root / "complete")}
    assert reasons["dir-script"] == "Not submitted: job.sh is a directory, not a script.\n"
    assert reasons["empty"] == "Not submitted: job.sh is empty.\n"
    assert reasons["fifo-script"] == "Not submitted: job.sh is not a regular file.\n"
    assert "symbolic link" in reasons["link-script"]
    assert (root / "complete" / "dir-script" / "job.sh").is_dir()  # nothing of the user's is lost


def test_an_unreadable_script_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Root reads any file, so the permission fault is injected where the reconciler opens job.sh.
    job = tmp_path / "job"
    job.mkdir()
    (job / "job.sh").write_text("true\n")
    real_open = open

    def deny(path: object, *a: object, **k: object) -> object:
        if str(path).endswith("job.sh"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *a, **k)  # type: ignore[call-overload]

    monkeypatch.setattr("builtins.open", deny)
    verdict = judge_inbox_folder(job, 0, time.time())
    assert (verdict.verdict, verdict.reason) == ("bad", "job.sh cannot be read: Permission denied.")


HOSTILE = [
    "with space",
    "ünïcødé-名前",
    "-leading-dash",
    "$(touch pwned)",
    "a;touch pwned",
    "new\nline",
    "--help",
    "*",
    "'quote\"",
]


def test_hostile_names_run_and_never_reach_a_shell(root: Path, ledger: Path, tmp_path: Path) -> None:
    for i, name in enumerate(HOSTILE):
        make_job(root, name, ledger_job(ledger, str(i)))
    drain(root, "--slots", "4")
    assert sorted(read_ledger(ledger), key=int) == [str(i) for i in range(len(HOSTILE))]
    assert names(root / "complete") == sorted(HOSTILE)
    assert not list(tmp_path.rglob("pwned")) and not Path("pwned").exists()
    assert "new\\nline: submitted" in (root / fs.LOG).read_text()


def snapshot(root: Path) -> dict[str, tuple[float, int]]:
    return {str(p.relative_to(root)): (p.lstat().st_mtime, p.lstat().st_size) for p in root.rglob("*")}


def test_dry_run_prints_the_plan_and_changes_nothing(root: Path, tmp_path: Path) -> None:
    go = tmp_path / "go"
    make_job(root, "running", WAIT_FOR_GO.format(go=go))
    run(root)
    go.touch()
    time.sleep(0.3)
    make_job(root, "waiting one", "true\n")
    make_job(root, "bad", "")
    before = snapshot(root)
    result = run(root, "--dry-run")
    assert result.returncode == 0 and result.stderr == ""
    assert snapshot(root) == before
    lines = result.stdout.splitlines()
    assert "move pending/running to complete/" in lines
    assert "submit inbox/waiting one (moving it to pending/)" in lines
    assert "move inbox/bad to complete/ with job_error.txt: job.sh is empty." in lines


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        (None, [], "no such root"),
        ("bare", [], "is not set up"),
        ("ok", ["-e", "pbs"], "unknown engine 'pbs'"),
        ("garbled", [], "cannot be read"),
        ("ok", ["--batch-limit", "-1"], "must be 0 or more"),
        ("ok", ["--lookback", "soon"], "give a duration like 36h or 7d"),
        ("slurm-bad-lookback", [], "give a duration like 36h or 7d"),
        ("ok", ["--max-queued", "3"], "--max-queued is not an option of the local engine"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(tmp_path: Path, setup: str | None, args: list[str], message: str) -> None:
    r = tmp_path / "r"
    if setup == "bare":
        r.mkdir()
    elif setup in ("ok", "garbled", "slurm-bad-lookback"):
        assert run(r, "-s", "-e", "local").returncode == 0
        if setup == "garbled":
            (r / fs.CONFIG).write_text("{")
        if setup == "slurm-bad-lookback":  # a recorded value is checked when the engine is first needed
            (r / fs.CONFIG).write_text('{"engine": "slurm", "lookback": "soon"}')
            (r / "inbox" / "a").mkdir()
    result = run(r, *args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    said = [line for line in result.stderr.splitlines() if not line.startswith(("usage:", " "))]  # argparse's usage aside
    assert len(said) == 1 and said[0].startswith("reconcile") and message in said[0]


def test_setup_records_options_and_seed_spellings_work(tmp_path: Path, ledger: Path) -> None:
    r = tmp_path / "r"
    result = run(r, "--setup", "-e", "engines.LocalEngine", "--batch-limit", "1", "--settle", "0")
    assert result.returncode == 0 and names(r) == ["complete", "inbox", "pending", "reconcile.json"]
    assert json.loads((r / fs.CONFIG).read_text()) == {"batch_limit": 1, "engine": "local", "settle": 0.0}
    assert run(r, "-s").returncode == 0  # again: harmless, keeps what was recorded
    assert json.loads((r / fs.CONFIG).read_text())["batch_limit"] == 1
    for n in "abc":
        make_job(r, n, ledger_job(ledger, n))
    run(r)
    assert names(r / "pending") == ["a"]  # recorded batch limit
    run(r, "--batch-limit", "5")  # overrides for this run only
    assert names(r / "inbox") == [] and json.loads((r / fs.CONFIG).read_text())["batch_limit"] == 1


@pytest.mark.fsclock  # file change times against this machine's clock
def test_settle_waits_for_a_folder_to_stop_changing(root: Path) -> None:
    make_job(root, "fresh", "true\n")
    assert run(root, "--settle", "30").returncode == 0
    assert names(root / "inbox") == ["fresh"]
    drain(root, "--settle", "0.5")
    assert names(root / "complete") == ["fresh"]


def test_twenty_runs_at_the_same_instant(root: Path, ledger: Path) -> None:
    for i in range(10):
        make_job(root, f"j{i:02}", ledger_job(ledger, str(i)))
    procs = [
        subprocess.Popen([*RECONCILE, "-r", str(root), "--slots", "10"], stderr=subprocess.PIPE, text=True) for _ in range(20)
    ]
    results = [(p.wait(timeout=60), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    assert results == [(0, "")] * 20
    drain(root, "--slots", "10")
    assert sorted(read_ledger(ledger), key=int) == [str(i) for i in range(10)]
    assert (root / fs.LOG).read_text().count(": submitted as") == 10
    assert names(root / "complete") == [f"j{i:02}" for i in range(10)]


def test_a_run_while_another_holds_the_lock_changes_nothing(root: Path, ledger: Path) -> None:
    # The twenty runs above overlap only as the machine's load lets them; this holds the lock for certain.
    from filelock import FileLock

    make_job(root, "waits", ledger_job(ledger, "waits"))
    with FileLock(str(root / fs.LOCK), timeout=0):
        held = run(root)
        assert (held.returncode, held.stderr) == (0, "")
        assert names(root / "inbox") == ["waits"] and names(root / "pending") == []
    drain(root)
    assert read_ledger(ledger) == ["waits"]


def test_watch_mode_sweeps_until_sigterm(root: Path, ledger: Path) -> None:
    watch = subprocess.Popen([*RECONCILE, "-r", str(root), "-p", "0.2"], stderr=subprocess.PIPE, text=True)
    try:
        for n in ("a", "b"):
            make_job(root, n, ledger_job(ledger, n))
        deadline = time.monotonic() + 60
        while names(root / "complete") != ["a", "b"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert names(root / "complete") == ["a", "b"]
    finally:
        watch.send_signal(signal.SIGTERM)
        assert watch.wait(timeout=30) == 0
    assert watch.stderr is not None and watch.stderr.read() == ""
    assert sorted(read_ledger(ledger)) == ["a", "b"]


def test_an_unreadable_record_is_reported_and_left_in_place(root: Path) -> None:
    job = make_job(root, "a", "true\n", stage="pending")
    (job / fs.RECORD).write_text("garbage")
    result = run(root)
    assert result.returncode == 1 and "unreadable job_submitted.json" in result.stderr
    assert names(root / "pending") == ["a"]


@pytest.mark.parametrize("broken", ["missing", "not executable"])
def test_an_sbatch_that_cannot_be_run_keeps_the_folder_waiting_with_one_problem_a_run(tmp_path: Path, broken: str) -> None:
    # As cron may run it: a PATH without Slurm's commands, or with an sbatch that cannot be executed.
    root, bin_dir = tmp_path / "root", tmp_path / "bin"
    assert run(root, "-s", "-e", "slurm", "--settle", "0").returncode == 0
    bin_dir.mkdir()
    if broken == "not executable":
        (bin_dir / "sbatch").write_text("#!/bin/sh\necho 42\n")
    for name in ("a", "b"):
        make_job(root, name, "#!/bin/bash\ntrue\n")
    said = [run(root, env={"PATH": str(bin_dir)}) for _ in range(3)]
    assert all(r.returncode == 1 and len(r.stderr.splitlines()) == 1 for r in said), [r.stderr for r in said]
    assert "a: not submitted this time (sbatch: cannot run: " in said[0].stderr and str(bin_dir) in said[0].stderr
    assert all("cannot run" in r.stderr for r in said[1:])  # squeue now, for the folder sbatch was tried on
    assert not os.listdir(root / "complete")  # never failed for good
    assert names(root / "inbox") + names(root / "pending") == ["b", "a"]
    assert not [p for p in (root / "pending").iterdir() if (p / fs.CLAIM).exists() or (p / fs.RECORD).exists()]


def test_a_dry_run_changes_nothing_whatever_it_is_given(root: Path, tmp_path: Path) -> None:
    make_job(root, "c1", "exit 3\n")
    drain(root)
    before = snapshot(root)
    result = run(root, "--retry-failed", "--dry-run")
    assert result.returncode == 0 and "complete/c1 -> inbox/c1" in result.stdout, result.stderr
    assert snapshot(root) == before  # said, not done
    fresh = tmp_path / "fresh"
    refused = run(fresh, "-s", "-e", "local", "--dry-run")
    assert refused.returncode == 2 and len(refused.stderr.splitlines()) == 1 and "--dry-run" in refused.stderr
    assert not fresh.exists()
    recorded = (root / fs.CONFIG).read_text()
    assert run(root, "-s", "--batch-limit", "7", "--dry-run").returncode == 2 and (root / fs.CONFIG).read_text() == recorded


@pytest.mark.parametrize(("engine", "period"), [("local", "0"), ("local", "0.05"), ("slurm", "5")])
def test_a_watch_period_below_the_engines_floor_is_refused_with_the_reason(tmp_path: Path, engine: str, period: str) -> None:
    r = tmp_path / "r"
    assert run(r, "-s", "-e", engine).returncode == 0
    result = run(r, "-p", period, timeout=10)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1 and "at least" in result.stderr, result.stderr


def test_a_job_this_run_submitted_is_shown_queued_in_a_whole_sentence(root: Path, tmp_path: Path) -> None:
    make_job(root, "a", WAIT_FOR_GO.format(go=tmp_path / "go"))
    assert run(root).returncode == 0
    (tmp_path / "go").touch()
    jobs = json.loads((root / fs.STATUS_JSON).read_text())["jobs"]
    assert [(j["name"], j["state"], j["reason"]) for j in jobs] == [
        ("a", "queued", "submitted by this run; its state comes with the next sweep")
    ]


def test_a_cancelled_job_is_cancelled_everywhere_and_retried_only_when_named(root: Path, tmp_path: Path) -> None:
    make_job(root, "stop", WAIT_FOR_GO.format(go=tmp_path / "never"))
    make_job(root, "fails", "exit 3\n")
    assert run(root).returncode == 0
    (root / "pending" / "stop" / fs.CANCEL).touch()
    drain(root)
    jobs = {j["name"]: j["state"] for j in json.loads((root / fs.STATUS_JSON).read_text())["jobs"]}
    assert jobs == {"stop": "cancelled", "fails": "failed"}
    status = json.loads(run(root, "--status", "--json").stdout)
    assert {j["name"]: j["state"] for j in status["jobs"]} == jobs and status["counts"]["cancelled"] == 1
    assert "1 failed, 1 cancelled" in run(root, "--status").stdout
    assert "cancelled" in (root / fs.STATUS_HTML).read_text()
    assert run(root, "--retry-failed").returncode == 0
    assert os.listdir(root / "inbox") == ["fails"] and os.listdir(root / "complete") == ["stop"]  # a cancel stays
    moved = run(root, "--retry-failed", "stop")
    assert moved.returncode == 0 and "complete/stop -> inbox/stop" in moved.stdout, moved.stderr


@pytest.mark.parametrize(
    ("commands", "engine"), [(["sbatch"], "slurm"), (["qsub"], "gridengine"), ([], None), (["sbatch", "qsub"], None)]
)
def test_setup_without_an_engine_takes_the_batch_system_this_machine_has(
    tmp_path: Path, commands: list[str], engine: str | None
) -> None:
    bin_dir, r = tmp_path / "bin", tmp_path / "r"
    bin_dir.mkdir()
    for command in commands:
        (bin_dir / command).write_text("#!/bin/sh\nexit 1\n")
        (bin_dir / command).chmod(0o755)
    result = run(r, "-s", env={"PATH": str(bin_dir)})
    if engine:
        assert result.returncode == 0 and f"for the {engine} engine" in result.stdout and commands[0] in result.stdout
        assert json.loads((r / fs.CONFIG).read_text())["engine"] == engine
    else:
        assert result.returncode == 2 and len(result.stderr.splitlines()) == 1 and not r.exists(), result.stderr
        assert "-e local" in result.stderr and "-e slurm" in result.stderr and "-e gridengine" in result.stderr
    assert run(r, "-s", "-e", "local").returncode == 0 and run(r, "-s", env={"PATH": str(bin_dir)}).returncode == 0
    assert json.loads((r / fs.CONFIG).read_text())["engine"] == "local"  # a root set up keeps its engine


def test_status_says_when_the_last_sweep_ran_and_warns_when_sweeps_have_stopped(root: Path) -> None:
    make_job(root, "a", "sleep 20\n")
    assert run(root).returncode == 0
    fresh = run(root, "--status")
    assert fresh.returncode == 0 and fresh.stderr == "" and "last sweep: " in fresh.stdout
    data = json.loads((root / fs.STATUS_JSON).read_text())
    data["generated"] -= 28 * 60  # as if cron had stopped 28 minutes ago
    (root / fs.STATUS_JSON).write_text(json.dumps(data))
    stale = run(root, "--status")
    assert stale.returncode == 1 and "the last sweep ran 28 min ago" in stale.stderr and len(stale.stderr.splitlines()) == 1
    assert json.loads(run(root, "--status", "--json").stdout)["last_sweep"] == data["generated"]
    for name in os.listdir(root / "pending"):  # nothing left to sweep: an old last sweep is no warning
        fs.move(root / "pending" / name, root / "complete", name)
    assert run(root, "--status").stderr == ""


@pytest.mark.parametrize(
    ("files", "found"),
    [
        (["Job.sh"], "Job.sh"),
        (["job.slurm"], "job.slurm"),
        (["run.sh"], "run.sh"),
        (["job.sh.txt"], "job.sh.txt"),
        (["nested/myjob/job.sh"], "nested/myjob/job.sh"),
        (["input.dat"], ""),
    ],
)
def test_a_folder_without_job_sh_says_what_it_holds_instead(root: Path, files: list[str], found: str) -> None:
    folder = root / "inbox" / "a"
    for name in files:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("true\n")
    assert run(root).returncode == 0 and os.listdir(root / "inbox") == ["a"]  # still waiting, nothing lost
    (reason,) = [j["reason"] for j in json.loads(run(root, "--status", "--json").stdout)["jobs"]]
    if found:
        assert reason == f"no job.sh yet; found {found}: the script must be named job.sh, at the top of the folder"
    else:
        assert reason == "no job.sh yet"
