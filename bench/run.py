#!/usr/bin/env python3
"""Benchmarks: the cost of a run on a shared login node and a shared scheduler, against the floor.

    python3 bench/run.py [--repeat N] [--no-cluster]

Every comparison is measured side by side in one run, interleaved, as the median of N repetitions,
and reported as a ratio. Results go to bench/results.md. Scheduler answers come from a fake
`squeue`/`sacct`/`sbatch` on PATH that prints from a table (and logs each call), except in the
real-cluster comparison, which uses tests/slurm/cluster.sh.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from jobroot.engines._slurmparse import SEP  # noqa: E402

PY = sys.executable
RECONCILE = [PY, str(REPO / "reconcile.py")]


def timed(argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start


def side_by_side(repeat: int, **cases: Callable[[], float]) -> dict[str, float]:
    """Median seconds of each case, the cases interleaved so that machine noise hits all alike."""
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeat):
        for name, case in cases.items():
            samples[name].append(case())
    return {name: statistics.median(xs) for name, xs in samples.items()}


def make_root(base: Path, name: str, engine: str = "slurm") -> Path:
    root = base / name
    subprocess.run([*RECONCILE, "-r", str(root), "-s", "-e", engine, "--settle", "0"], check=True, stdout=subprocess.DEVNULL)
    return root


def add_pending(root: Path, count: int, start_id: int = 1000) -> list[str]:
    ids = []
    now = time.time()
    for i in range(count):
        job = root / "pending" / f"job{i:06}"
        job.mkdir()
        (job / "job.sh").write_text("#!/bin/bash\ntrue\n")
        job_id = str(start_id + i)
        (job / "job_submitted.json").write_text(json.dumps({"engine": "slurm", "job_id": job_id, "submitted": now}) + "\n")
        ids.append(job_id)
    return ids


def acct_row(job_id: str) -> str:
    """A COMPLETED sacct row received just before its record (add_pending's "now"): a fixed date would
    age past the engine's REUSED_ID and be taken for an older job's, leaving the job UNKNOWN."""
    submit = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 120))
    end = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 60))
    return SEP.join([job_id, "COMPLETED", "0:0", submit, end, "", "/w"]) + "\n"


def fake_scheduler(base: Path, running: list[str], ended: list[str]) -> dict[str, str]:
    """A PATH with squeue/sacct/sbatch that answer from tables at once; calls are appended to calls.log."""
    bin_dir = base / "fakebin"
    bin_dir.mkdir(exist_ok=True)
    received = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 120))
    squeue = "".join(SEP.join([i, "RUNNING", received, "(null)", "/w"]) + "\n" for i in running)
    sacct = "".join(acct_row(i) for i in ended)
    (bin_dir / "squeue.table").write_text(squeue)
    (bin_dir / "sacct.table").write_text(sacct)
    (bin_dir / "sbatch.count").write_text("5000000")
    for cmd in ("squeue", "sacct"):
        script = bin_dir / cmd
        script.write_text(f'#!/bin/sh\necho {cmd} >> "{bin_dir}/calls.log"\nexec cat "{bin_dir}/{cmd}.table"\n')
        script.chmod(0o755)
    sbatch = bin_dir / "sbatch"
    sbatch.write_text(
        f'#!/bin/sh\necho sbatch >> "{bin_dir}/calls.log"\nn=$(cat "{bin_dir}/sbatch.count")\n'
        f'echo $((n + 1)) > "{bin_dir}/sbatch.count"\necho $n\n'
    )
    sbatch.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


def calls(base: Path) -> dict[str, int]:
    log = base / "fakebin" / "calls.log"
    lines = log.read_text().split() if log.exists() else []
    log.unlink(missing_ok=True)
    return {cmd: lines.count(cmd) for cmd in ("squeue", "sacct", "sbatch")}


BARE_LOOP = """
import json, os, sys
root = sys.argv[1] + "/pending"
ids = []
for name in sorted(os.listdir(root)):
    with open(os.path.join(root, name, "job_submitted.json")) as f:
        ids.append(json.load(f)["job_id"])
"""


def peak_rss_kib(argv: list[str], env: dict[str, str]) -> int:
    probe = "import resource, subprocess, sys; subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL); "
    probe += "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    return int(subprocess.run([PY, "-c", probe, *argv], env=env, capture_output=True, text=True, check=True).stdout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=9, help="repetitions per case (medians are reported)")
    ap.add_argument("--no-cluster", action="store_true", help="skip the real-cluster comparison")
    args = ap.parse_args()
    n = args.repeat
    # Measure what a login node pays: bytecode cached (as after pip install), not recompiled per run.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run(
        [PY, "-m", "compileall", "-q", str(REPO / "reconcile.py"), str(REPO / "jobroot"), str(REPO / "engines")], check=True
    )
    out: list[str] = []

    def say(line: str = "") -> None:
        print(line, flush=True)
        out.append(line)

    say("# Benchmark results")
    say()
    say(f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.platform()}; ")
    say(f"{time.strftime('%Y-%m-%d %H:%M')}; medians of {n} interleaved repetitions.")
    say()
    say("| # | what | measured | ratio | goal |")
    say("| --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory(prefix="jobroot-bench.") as tmp:
        base = Path(tmp)

        # 1. Idle run vs a bare interpreter.
        idle = make_root(base, "idle", "local")
        # The console script pip installed beside this interpreter (measure after `pip install .`); not a
        # version manager's shim on PATH, which would add its own start-up to every run.
        beside = Path(PY).parent / "reconcile"
        installed = str(beside) if beside.exists() else shutil.which("reconcile")
        cases: dict[str, Callable[[], float]] = {
            "bare": lambda: timed([PY, "-c", "pass"]),
            "idle": lambda: timed([*RECONCILE, "-r", str(idle)]),
        }
        if installed:
            cases["installed"] = lambda: timed([installed, "-r", str(idle)])
        m = side_by_side(n, **cases)
        say(
            f"| 1 | idle run from a clone (`python3 reconcile.py`) vs `python3 -c pass` | {m['idle'] * 1000:.1f} ms vs {m['bare'] * 1000:.1f} ms | {m['idle'] / m['bare']:.2f}x | <= 1.25x |"
        )
        if installed:
            say(
                f"| 1 | idle run, the installed `reconcile` vs `python3 -c pass` | {m['installed'] * 1000:.1f} ms vs {m['bare'] * 1000:.1f} ms | {m['installed'] / m['bare']:.2f}x | <= 1.2x |"
            )
        else:
            say(
                "| 1 | idle run, the installed `reconcile` | not measured: no `reconcile` on PATH (run `pip install .` first) | | <= 1.2x |"
            )

        # 2. Scheduler calls per run as pending grows.
        for size in (100, 1000, 10000):
            root = make_root(base, f"calls{size}")
            ids = add_pending(root, size)
            env = fake_scheduler(base, running=ids, ended=[])
            subprocess.run([*RECONCILE, "-r", str(root)], env=env, check=True)
            busy = calls(base)
            env = fake_scheduler(base, running=[], ended=ids[: size // 2])
            (base / "fakebin" / "sacct.table").write_text("".join(acct_row(i) for i in ids))
            subprocess.run([*RECONCILE, "-r", str(root), "--batch-limit", "0"], env=env, check=True)
            ending = calls(base)
            say(
                f"| 2 | scheduler calls, {size} pending | all running: {busy['squeue']} squeue + {busy['sacct']} sacct; "
                f"all ended: {ending['squeue']} squeue + {ending['sacct']} sacct | constant | 1 squeue + <= 1 sacct |"
            )

        # 3. One run over 10,000 pending (all running) vs a bare loop reading each id file.
        big = make_root(base, "big")
        ids = add_pending(big, 10000)
        env = fake_scheduler(base, running=ids, ended=[])
        m = side_by_side(
            n,
            loop=lambda: timed([PY, "-c", BARE_LOOP, str(big)]),
            run=lambda: timed([*RECONCILE, "-r", str(big)], env=env),
        )
        calls(base)
        say(
            f"| 3 | run over 10,000 pending vs bare list+read loop | {m['run'] * 1000:.0f} ms vs {m['loop'] * 1000:.0f} ms | {m['run'] / m['loop']:.2f}x | <= 2x |"
        )

        # 7. Peak memory of that run (vs a bare interpreter).
        rss = peak_rss_kib([*RECONCILE, "-r", str(big)], env)
        bare_rss = peak_rss_kib([PY, "-c", "pass"], env)
        say(
            f"| 7 | peak memory, run over 10,000 pending | {rss / 1024:.1f} MiB (bare interpreter {bare_rss / 1024:.1f} MiB) | {rss / bare_rss:.2f}x | report |"
        )

        # 4. 100,000 folders in complete/ vs none (100 pending, all running).
        without = make_root(base, "nocomplete")
        with_complete = make_root(base, "complete100k")
        pend = add_pending(without, 100)
        add_pending(with_complete, 100)
        for i in range(100_000):
            (with_complete / "complete" / f"done{i:06}").mkdir()
        env = fake_scheduler(base, running=pend, ended=[])
        m = side_by_side(
            n,
            none=lambda: timed([*RECONCILE, "-r", str(without)], env=env),
            full=lambda: timed([*RECONCILE, "-r", str(with_complete)], env=env),
        )
        calls(base)
        say(
            f"| 4 | 100,000 folders in complete/ vs none | {m['full'] * 1000:.1f} ms vs {m['none'] * 1000:.1f} ms | {m['full'] / m['none']:.2f}x | <= 1.1x |"
        )

        # 5. 10,000 waiting folders vs 100, batch limit 100 (each run submits 100, then they go back).
        def inbox_root(name: str, count: int) -> Path:
            root = make_root(base, name)
            for i in range(count):
                job = root / "inbox" / f"w{i:06}"
                job.mkdir()
                (job / "job.sh").write_text("#!/bin/bash\ntrue\n")
                (job / "data").mkdir()
                for k in range(5):
                    (job / "data" / f"f{k}").write_text("x")
            return root

        small, large = inbox_root("inbox100", 100), inbox_root("inbox10k", 10000)
        env = fake_scheduler(base, running=[], ended=[])

        def submit_100(root: Path) -> float:
            took = timed([*RECONCILE, "-r", str(root), "--batch-limit", "100"], env=env)
            for job in (root / "pending").iterdir():  # put them back for the next repetition
                for helper in ("job_submitted.json", "job_claim.json"):
                    (job / helper).unlink(missing_ok=True)
                job.rename(root / "inbox" / job.name)
            (root / "status.json").unlink(missing_ok=True)
            return took

        listing = side_by_side(n, ls=lambda: timed([PY, "-c", f"import os; sorted(os.listdir({str(large / 'inbox')!r}))"]))
        m = side_by_side(n, small=lambda: submit_100(small), large=lambda: submit_100(large))
        calls(base)
        extra = (m["large"] - m["small"]) * 1000
        say(
            f"| 5 | 10,000 waiting vs 100, batch limit 100 | {m['large'] * 1000:.0f} ms vs {m['small'] * 1000:.0f} ms "
            f"(+{extra:.0f} ms; a bare sorted listing of 10,000 takes {listing['ls'] * 1000:.0f} ms in its own process) "
            f"| {m['large'] / m['small']:.2f}x | grows by one listing only |"
        )

        # 6. 100 submissions on the real cluster vs 100 bare sbatch.
        if args.no_cluster or shutil.which("bash") is None:
            say("| 6 | 100 submissions on the real cluster vs 100 bare sbatch | skipped (--no-cluster) | | <= 1.2x |")
        else:
            started = subprocess.run(["bash", str(REPO / "tests" / "slurm" / "cluster.sh")], capture_output=True, text=True)
            if started.returncode != 0:
                say(
                    f"| 6 | 100 submissions on the real cluster | skipped: cluster did not start ({started.stderr.strip().splitlines()[-1:]}) | | <= 1.2x |"
                )
            else:
                reps = max(3, n // 3)
                m = side_by_side(reps, bare=lambda: bare_sbatch(base), ours=lambda: our_submissions(base))
                say(
                    f"| 6 | 100 submissions on the real cluster vs 100 bare sbatch | {m['ours'] * 1000:.0f} ms vs {m['bare'] * 1000:.0f} ms | {m['ours'] / m['bare']:.2f}x | <= 1.2x |"
                )
    say()
    (REPO / "bench" / "results.md").write_text("\n".join(out) + "\n")
    print(f"written to {REPO / 'bench' / 'results.md'}")
    return 0


def hundred_jobs(folder: Path) -> list[Path]:
    shutil.rmtree(folder, ignore_errors=True)
    jobs = []
    for i in range(100):
        job = folder / f"j{i:03}"
        job.mkdir(parents=True)
        (job / "job.sh").write_text("#!/bin/bash\ntrue\n")
        jobs.append(job)
    return jobs


def bare_sbatch(base: Path) -> float:
    jobs = hundred_jobs(base / "bare-sbatch")
    start = time.perf_counter()
    for job in jobs:
        subprocess.run(["sbatch", "--parsable", "job.sh"], cwd=job, capture_output=True, check=True)
    took = time.perf_counter() - start
    _drain_queue()
    return took


def our_submissions(base: Path) -> float:
    root = base / "cluster-root"
    shutil.rmtree(root, ignore_errors=True)
    subprocess.run([*RECONCILE, "-r", str(root), "-s", "-e", "slurm", "--settle", "0"], check=True, stdout=subprocess.DEVNULL)
    for job in hundred_jobs(base / "staging"):
        job.rename(root / "inbox" / job.name)
    took = timed([*RECONCILE, "-r", str(root), "--batch-limit", "100"])
    assert len(os.listdir(root / "pending")) == 100, "not all 100 were submitted"
    _drain_queue()
    return took


def _drain_queue() -> None:
    """Wait until the test cluster's queue is empty, so each repetition starts alike."""
    for _ in range(600):
        if not subprocess.run(["squeue", "-h"], capture_output=True, text=True).stdout.strip():
            return
        time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main())
