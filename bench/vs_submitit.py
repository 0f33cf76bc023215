#!/usr/bin/env python3
"""jobroot vs submitit: the same shell jobs through the same real Slurm cluster, side by side.

    python3 bench/vs_submitit.py [--jobs 100] [--repeat 3] [--period 5] [--no-array]

Needs root (for tests/slurm/cluster.sh, which starts a single-node cluster or reuses a running
one) and submitit (`python3 -m pip install submitit`). Takes about 2 minutes per repetition.
Prints a markdown table and writes it to bench/vs_submitit.md.

Each tool gets the same N folders, each holding the same small `job.sh`
(`sleep 1; echo done-N > out.txt`, `#SBATCH --time=5`):

- jobroot is used as a user would use it interactively: `reconcile.py -r ROOT -p 5` (watch mode,
  a sweep every 5 s) is started on an empty root set up with `-s -e slurm --settle 0` and otherwise
  the default options (so at most 50 submissions per sweep). Half a period after it starts, the N
  folders are renamed into inbox/: that is the average wait for the next sweep. Wall time runs from
  the renames to the moment all N folders are in complete/; then the watcher gets SIGTERM.
- submitit is driven by a Python process using `submitit.AutoExecutor(folder=...)` with
  `timeout_min=5, nodes=1, tasks_per_node=1` (the job's `--time=5`), submitting
  `submitit.helpers.CommandFunction(["bash", "job.sh"], cwd=folder)` once per folder (its plain
  mode), then calling `job.result()` on each job in turn. Wall time runs from the first submission
  to the last result. With --no-array left off, submitit's batch mode is measured too:
  `executor.map_array` over a function running that same CommandFunction (one Slurm job array).

What is counted:

- wall seconds, as above;
- scheduler commands: a shim directory first on PATH holds one tiny `sh` script per Slurm command
  (sbatch, squeue, sacct, scancel, scontrol, sinfo, sstat, sacctmgr, srun) that appends its argv to a
  log and execs the real one. Calls made inside a job (SLURM_JOB_ID set: submitit's job runs `srun`)
  are counted apart from those made on the login node;
- login-node CPU seconds: user + system CPU of the driver process (the watcher, or submitit's
  Python driver) and all the children it waited for (sbatch, squeue, sacct, the shims), from
  os.wait4. The jobs themselves run under slurmd, not under the driver, so their CPU is not in it:
  each run checks this by submitting one job that burns ~2 s of CPU with `sbatch --wait` and
  reading the rusage of that sbatch.

The repetitions are interleaved (jobroot, submitit, submitit map_array, jobroot, ...); the table
gives medians, with the range over the repetitions in brackets. Before each measurement the
queue must be empty: the script waits for other jobs to leave it (at most --queue-wait seconds).
Everything is created under one temporary directory, removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Sequence

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
RECONCILE = [PY, str(REPO / "reconcile.py")]
SHIMMED = ("sbatch", "squeue", "sacct", "scancel", "scontrol", "sinfo", "sstat", "sacctmgr", "srun")
MAIN_COMMANDS = ("sbatch", "squeue", "sacct")
CALLS_ENV = "VS_SUBMITIT_CALLS"
JOB_SH = "#!/bin/bash\n#SBATCH --time=5\nsleep 1; echo done-{n} > out.txt\n"
SHORT = 60.0  # timeout for one scheduler query or setup command

# The submitit driver: a process of its own, so that its CPU (and only its) can be read with wait4.
SUBMITIT_DRIVER = r"""
import json, sys, time
import submitit

cfg = json.loads(sys.argv[1])


def clock():
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def run(folder):
    return submitit.helpers.CommandFunction(["bash", "job.sh"], cwd=folder)()


executor = submitit.AutoExecutor(folder=cfg["logs"])
assert executor.cluster == "slurm", executor.cluster
executor.update_parameters(timeout_min=5, nodes=1, tasks_per_node=1)
started = clock()
if cfg["mode"] == "array":
    jobs = executor.map_array(run, cfg["folders"])
else:
    jobs = [executor.submit(submitit.helpers.CommandFunction(["bash", "job.sh"], cwd=f)) for f in cfg["folders"]]
submitted = clock()
results = [job.result() for job in jobs]
done = clock()
with open(cfg["report"], "w") as f:
    json.dump({"started": started, "submitted": submitted, "done": done, "results": len(results),
               "ids": [job.job_id for job in jobs]}, f)
"""

BURN_SH = """#!/bin/bash
#SBATCH --time=5
"{py}" -c 'import time
while time.process_time() < 2.0:
    pass'
"""


def clock() -> float:
    """The clock /proc/uptime shows, so that the shims' timestamps compare with ours."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


@dataclass
class Call:
    at: float
    where: str  # "login" or "job"
    command: str
    args: str


@dataclass
class Sample:
    tool: str
    wall: float
    cpu: float
    calls: list[Call]
    started: float  # clock() when the jobs were dropped / the first submission began
    submitted: float | None = None  # submitit: clock() after its last submission
    extra: dict[str, float] = field(default_factory=dict)

    def count(self, command: str, where: str = "login") -> int:
        return sum(1 for c in self.calls if c.command == command and c.where == where)

    def others(self, where: str = "login") -> dict[str, int]:
        names = sorted({c.command for c in self.calls if c.where == where and (where == "job" or c.command not in MAIN_COMMANDS)})
        return {name: self.count(name, where) for name in names}


# ---------------------------------------------------------------- processes


def run(
    argv: Sequence[str], timeout: float, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), timeout=timeout, capture_output=True, text=True, check=False, env=env, cwd=cwd)


def reap(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int, float]:
    """Wait for proc with wait4; return its exit status and the user+system CPU of it and its reaped children."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage.ru_utime + usage.ru_stime
        if time.monotonic() > deadline:
            proc.kill()
            os.wait4(proc.pid, 0)
            proc.returncode = -9
            raise TimeoutError(f"{proc.args!r} did not end within {timeout:g} s")
        time.sleep(0.02)


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# ---------------------------------------------------------------- cluster


def queue(env: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """(job id, working directory) of every job in the queue, all users."""
    out = run(["squeue", "-h", "-o", "%i|%Z"], SHORT, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"squeue failed: {out.stderr.strip()}")
    jobs = []
    for line in out.stdout.splitlines():
        job_id, _, workdir = line.partition("|")
        jobs.append((job_id, workdir))
    return jobs


def wait_queue_empty(timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        jobs = queue()
        if not jobs:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: the queue still holds {len(jobs)} jobs after {timeout:g} s (first: {jobs[0]})")
        time.sleep(0.5)


def cancel_ours(base: Path) -> None:
    """scancel every queued job whose working directory is under base (left behind by a failed measurement)."""
    try:
        ours = [job_id for job_id, workdir in queue() if workdir.startswith(str(base))]
        if ours:
            run(["scancel", *ours], SHORT)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        print(f"could not cancel leftover jobs: {e}", file=sys.stderr)


def make_shims(shim_dir: Path) -> None:
    shim_dir.mkdir()
    for name in SHIMMED:
        real = shutil.which(name)
        if real is None:
            continue
        script = shim_dir / name
        script.write_text(
            "#!/bin/sh\n"
            "read -r up _ < /proc/uptime\n"
            "where=login\n"
            '[ -n "${SLURM_JOB_ID:-}" ] && where=job\n'
            f'printf \'%s\\t%s\\t%s\\t%s\\n\' "$up" "$where" {name} "$*" >> "${{{CALLS_ENV}:-/dev/null}}"\n'
            f'exec {real} "$@"\n'
        )
        script.chmod(0o755)


def shim_env(shim_dir: Path, log: Path) -> dict[str, str]:
    return {**os.environ, "PATH": f"{shim_dir}{os.pathsep}{os.environ['PATH']}", CALLS_ENV: str(log)}


def read_calls(log: Path) -> list[Call]:
    calls = []
    if log.exists():
        for line in log.read_text(errors="replace").splitlines():
            parts = line.split("\t", 3)
            if len(parts) == 4:
                calls.append(Call(float(parts[0]), parts[1], parts[2], parts[3]))
    return calls


def make_jobs(folder: Path, count: int) -> list[Path]:
    jobs = []
    for n in range(count):
        job = folder / f"j{n:03}"
        job.mkdir(parents=True)
        (job / "job.sh").write_text(JOB_SH.format(n=n))
        jobs.append(job)
    return jobs


def check_outputs(folders: Sequence[Path], tool: str) -> None:
    for n, folder in enumerate(sorted(folders)):
        out = folder / "out.txt"
        got = out.read_text().strip() if out.exists() else None
        if got != f"done-{n}":
            raise RuntimeError(f"{tool}: {out} holds {got!r}, not 'done-{n}'")
        if (folder / "job_error.txt").exists():
            raise RuntimeError(f"{tool}: {folder} failed: {tail(folder / 'job_error.txt', 3)}")


# ---------------------------------------------------------------- the two tools


def measure_jobroot(base: Path, tag: str, count: int, period: float, shim_dir: Path, timeout: float) -> Sample:
    root = base / f"jobroot-{tag}"
    setup = run([*RECONCILE, "-r", str(root), "-s", "-e", "slurm", "--settle", "0"], SHORT)
    if setup.returncode != 0:
        raise RuntimeError(f"jobroot setup failed: {setup.stderr.strip()}")
    staged = make_jobs(base / f"stage-{tag}", count)
    log = base / f"calls-jobroot-{tag}.log"
    out_path = base / f"watch-{tag}.out"
    with out_path.open("wb") as out:
        watcher = subprocess.Popen(
            [*RECONCILE, "-r", str(root), "-p", f"{period:g}"], env=shim_env(shim_dir, log), stdout=out, stderr=out
        )
        try:
            time.sleep(period / 2)  # drop half a period after a sweep: the average wait a user sees
            started = clock()
            for job in staged:
                job.rename(root / "inbox" / job.name)
            complete = root / "complete"
            while len(os.listdir(complete)) < count:
                if watcher.poll() is not None:
                    raise RuntimeError(f"the watcher ended early ({watcher.returncode}): {tail(out_path)}")
                if clock() - started > timeout:
                    raise TimeoutError(f"jobroot: only {len(os.listdir(complete))} of {count} in complete/ after {timeout:g} s")
                time.sleep(0.05)
            done = clock()
            watcher.send_signal(signal.SIGTERM)
            status, cpu = reap(watcher, 120)
        finally:
            if watcher.returncode is None:
                watcher.kill()
                reap(watcher, 30)
    if status != 0:
        raise RuntimeError(f"the watcher exited with {status}: {tail(out_path)}")
    check_outputs([complete / job.name for job in staged], "jobroot")
    return Sample("jobroot", done - started, cpu, read_calls(log), started)


def measure_submitit(base: Path, tag: str, count: int, mode: str, shim_dir: Path, timeout: float) -> Sample:
    work = base / f"submitit-{mode}-{tag}"
    folders = make_jobs(work / "jobs", count)
    log = base / f"calls-submitit-{mode}-{tag}.log"
    report = work / "report.json"
    cfg = {"logs": str(work / "logs"), "folders": [str(f) for f in folders], "mode": mode, "report": str(report)}
    out_path = work / "driver.out"
    with out_path.open("wb") as out:
        driver = subprocess.Popen(
            [PY, "-c", SUBMITIT_DRIVER, json.dumps(cfg)], cwd=work, env=shim_env(shim_dir, log), stdout=out, stderr=out
        )
        try:
            status, cpu = reap(driver, timeout)
        finally:
            if driver.returncode is None:
                driver.kill()
                reap(driver, 30)
    if status != 0 or not report.exists():
        raise RuntimeError(f"the submitit driver exited with {status}: {tail(out_path)}")
    times = json.loads(report.read_text())
    if times["results"] != count:
        raise RuntimeError(f"submitit returned {times['results']} results, not {count}")
    check_outputs(folders, f"submitit {mode}")
    return Sample(
        f"submitit-{mode}", times["done"] - times["started"], cpu, read_calls(log), times["started"], times["submitted"]
    )


# ---------------------------------------------------------------- checks and calibration


def parse_slurm_duration(text: str) -> float | None:
    """sacct's [DD-][HH:]MM:SS[.mmm] as seconds."""
    text = text.strip()
    if not text:
        return None
    days = 0
    if "-" in text:
        d, text = text.split("-", 1)
        days = int(d)
    parts = [float(p) for p in text.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0.0)
    return days * 86400 + parts[0] * 3600 + parts[1] * 60 + parts[2]


def job_cpu_excluded(base: Path) -> tuple[float, float | None]:
    """Submit one CPU-burning job with `sbatch --wait`; return (CPU in sbatch's rusage, the job's CPU per sacct)."""
    folder = base / "burn"
    folder.mkdir()
    (folder / "burn.sh").write_text(BURN_SH.format(py=PY))
    with (folder / "sbatch.out").open("wb") as out:
        proc = subprocess.Popen(
            ["sbatch", "--wait", "--parsable", "-o", str(folder / "slurm.out"), "burn.sh"], cwd=folder, stdout=out, stderr=out
        )
        status, cpu = reap(proc, 300)
    if status != 0:
        raise RuntimeError(f"the CPU-burning job failed: {tail(folder / 'sbatch.out')}")
    job_id = (folder / "sbatch.out").read_text().split()[0].split(";")[0]
    job_cpu: float | None = None
    for _ in range(20):  # accounting may lag a little behind the job's end
        acct = run(["sacct", "-n", "-P", "-j", job_id, "-o", "TotalCPU"], SHORT)
        values = [v for v in (parse_slurm_duration(line) for line in acct.stdout.splitlines()) if v is not None]
        if values and max(values) > 0:
            job_cpu = max(values)
            break
        time.sleep(0.5)
    return cpu, job_cpu


def shim_overhead(shim_dir: Path, base: Path, calls: int = 50) -> float:
    """CPU seconds one call through a shim adds, from `sbatch --version` run through it and directly."""
    log = base / "calls-calibration.log"
    loop = f"i=0; while [ $i -lt {calls} ]; do sbatch --version >/dev/null; i=$((i+1)); done"
    env = shim_env(shim_dir, log)

    def cpu(path_env: dict[str, str]) -> float:
        proc = subprocess.Popen(["sh", "-c", loop], env=path_env)
        return reap(proc, 120)[1]

    through, direct = [], []
    for _ in range(3):
        through.append(cpu(env))
        direct.append(cpu(dict(os.environ)))
    log.unlink(missing_ok=True)
    return (statistics.median(through) - statistics.median(direct)) / calls


# ---------------------------------------------------------------- report


def spread(values: Sequence[float], digits: int) -> str:
    med = statistics.median(values)
    if min(values) == max(values):
        return f"{med:.{digits}f}"
    return f"{med:.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def ratio(a: Sequence[float], b: Sequence[float]) -> str:
    base = statistics.median(b)
    return f"{statistics.median(a) / base:.2f}x" if base else "–"


def table(samples: dict[str, list[Sample]]) -> list[str]:
    tools = [t for t in ("jobroot", "submitit-plain", "submitit-array") if samples.get(t)]
    heads = {
        "jobroot": "jobroot (`-p 5`)",
        "submitit-plain": "submitit (plain `submit`)",
        "submitit-array": "submitit (`map_array`, one job array)",
    }
    header = ["what", heads["jobroot"]]
    for t in tools[1:]:
        header += [heads[t], f"ratio {t.split('-')[1]}/jobroot"]
    rows = [header, ["---"] * len(header)]

    def row(label: str, values: dict[str, list[float]], digits: int) -> list[str]:
        cells = [label, spread(values["jobroot"], digits)]
        for t in tools[1:]:
            cells += [spread(values[t], digits), ratio(values[t], values["jobroot"])]
        return cells

    rows.append(row("wall seconds, dropped to all results", {t: [s.wall for s in samples[t]] for t in tools}, 1))
    for command in MAIN_COMMANDS:
        rows.append(row(f"`{command}` calls (login node)", {t: [float(s.count(command)) for s in samples[t]] for t in tools}, 0))
    other_names = sorted({name for t in tools for s in samples[t] for name in s.others()})
    label = "other calls (login node)" + (f": {', '.join(other_names)}" if other_names else "")
    rows.append(row(label, {t: [float(sum(s.others().values())) for s in samples[t]] for t in tools}, 0))
    rows.append(row("login-node CPU seconds (driver + children)", {t: [s.cpu for s in samples[t]] for t in tools}, 2))
    job_names = sorted({name for t in tools for s in samples[t] for name in s.others("job")})
    label = "calls inside the jobs (compute node)" + (f": {', '.join(job_names)}" if job_names else "")
    rows.append(row(label, {t: [float(sum(s.others("job").values())) for s in samples[t]] for t in tools}, 0))
    return ["| " + " | ".join(r) + " |" for r in rows]


def timeline(sample: Sample) -> str:
    """When a tool asked squeue/sacct, in seconds after the jobs were dropped."""
    parts = []
    for command in ("squeue", "sacct"):
        times = [c.at - sample.started for c in sample.calls if c.command == command and c.where == "login"]
        if times:
            parts.append(f"{command} at +" + ", +".join(f"{t:.1f}" for t in times) + " s")
    return "; ".join(parts) or "no squeue or sacct"


def most_job_ids(sample: Sample) -> int:
    return max((c.args.split().count("-j") for c in sample.calls if c.command == "sacct"), default=0)


def versions() -> str:
    slurm = run(["sbatch", "--version"], SHORT).stdout.strip()
    node_cpus = run(["sinfo", "-h", "-o", "%c"], SHORT).stdout.split()
    commit = run(["git", "-C", str(REPO), "describe", "--always", "--dirty"], SHORT).stdout.strip() or "unknown"
    return (
        f"{time.strftime('%Y-%m-%d %H:%M')}; {platform.machine()}, {os.cpu_count()} CPUs "
        f"(the Slurm node declares {node_cpus[0] if node_cpus else '?'}); {slurm}; Python {platform.python_version()}; "
        f"submitit {version('submitit')}; jobroot {commit}"
    )


# ---------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=100, help="jobs per measurement (default 100)")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved repetitions (default 3; medians are reported)")
    ap.add_argument("--period", type=float, default=5.0, help="jobroot watch-mode period in seconds (default 5)")
    ap.add_argument("--no-array", action="store_true", help="skip submitit's map_array (job array) mode")
    ap.add_argument("--timeout", type=float, default=1200, help="give up on one measurement after this many seconds")
    ap.add_argument("--queue-wait", type=float, default=600, help="wait at most this long for other jobs to leave the queue")
    ap.add_argument("--output", type=Path, default=REPO / "bench" / "vs_submitit.md", help="where the markdown goes")
    args = ap.parse_args()
    try:
        import submitit  # noqa: F401
    except ImportError:
        print("submitit is not installed: python3 -m pip install submitit", file=sys.stderr)
        return 2
    cluster = run(["bash", str(REPO / "tests" / "slurm" / "cluster.sh")], 900)
    if cluster.returncode != 0:
        print(f"no cluster (cluster.sh exit {cluster.returncode}): {cluster.stderr.strip()}", file=sys.stderr)
        return 2 if cluster.returncode != 77 else 77
    wall_start = time.monotonic()
    modes = ["plain"] + ([] if args.no_array else ["array"])
    samples: dict[str, list[Sample]] = {"jobroot": [], **{f"submitit-{m}": [] for m in modes}}
    out: list[str] = []

    def say(line: str = "") -> None:
        print(line, flush=True)
        out.append(line)

    with tempfile.TemporaryDirectory(prefix="vs-submitit.") as tmp:
        base = Path(tmp)
        shim_dir = base / "shims"
        make_shims(shim_dir)
        try:
            wait_queue_empty(args.queue_wait, "before starting")
            burn_rusage, burn_job = job_cpu_excluded(base)
            wait_queue_empty(args.queue_wait, "after the CPU check")
            per_call = shim_overhead(shim_dir, base)
            for rep in range(1, args.repeat + 1):
                tag = str(rep)
                wait_queue_empty(args.queue_wait, f"repetition {rep}, jobroot")
                s = measure_jobroot(base, tag, args.jobs, args.period, shim_dir, args.timeout)
                samples["jobroot"].append(s)
                print(
                    f"rep {rep} jobroot: {s.wall:.1f} s, {s.cpu:.2f} s CPU, {s.count('sbatch')} sbatch, {s.count('squeue')} squeue, {s.count('sacct')} sacct",
                    flush=True,
                )
                for mode in modes:
                    wait_queue_empty(args.queue_wait, f"repetition {rep}, submitit {mode}")
                    s = measure_submitit(base, tag, args.jobs, mode, shim_dir, args.timeout)
                    samples[f"submitit-{mode}"].append(s)
                    print(
                        f"rep {rep} submitit {mode}: {s.wall:.1f} s, {s.cpu:.2f} s CPU, {s.count('sbatch')} sbatch, {s.count('squeue')} squeue, {s.count('sacct')} sacct",
                        flush=True,
                    )
            wait_queue_empty(args.queue_wait, "after the last measurement")
        except BaseException:
            cancel_ours(base)
            raise
    took = time.monotonic() - wall_start

    print()
    say("# jobroot vs submitit on a real Slurm cluster")
    say()
    say(
        f"{versions()}; {args.jobs} jobs per measurement; medians of {args.repeat} interleaved repetitions, range in brackets; the whole run took {took / 60:.1f} min."
    )
    say()
    for line in table(samples):
        say(line)
    say()
    say(f"Every job is `{JOB_SH.format(n='N').strip()}`, in a folder of its own, for both tools.".replace("\n", "\\n"))
    say()
    say(
        f"- **jobroot** runs in watch mode, `reconcile.py -r ROOT -p {args.period:g}` (root set up with `-s -e slurm --settle 0`, "
        "other options at their defaults, so at most 50 submissions per sweep), as a user who keeps it running would. "
        f"The folders are renamed into inbox/ {args.period / 2:g} s after the watcher starts (half a period: the average wait "
        "for the next sweep); wall time ends when all are in complete/. CPU is the watcher's process from start to SIGTERM."
    )
    say(
        "- **submitit** runs in a Python driver: `AutoExecutor(folder=...)`, `timeout_min=5, nodes=1, tasks_per_node=1`, then "
        '`executor.submit(CommandFunction(["bash", "job.sh"], cwd=folder))` per folder (plain) or `executor.map_array` over a '
        "function calling that CommandFunction (one job array), then `job.result()` for each job. Wall time runs from its first "
        "submission to its last result; CPU is the driver's process, including Python's start and `import submitit`."
    )
    say(
        "- Calls are counted with a shim per Slurm command first on PATH; the shims cost "
        f"{per_call * 1000:.1f} ms CPU per call, included in both CPU figures. Calls inside jobs (`SLURM_JOB_ID` set) are counted apart."
    )
    job_cpu = f"{burn_job:.2f} s" if burn_job is not None else "an unknown amount (sacct gave no TotalCPU)"
    say(
        f"- The jobs' own CPU is not in the CPU figures: a job that burnt {job_cpu} of CPU (sacct TotalCPU) added "
        f"{burn_rusage:.3f} s to the rusage of the `sbatch --wait` that submitted and waited for it."
    )
    for name, runs in samples.items():
        if not runs:
            continue
        first = runs[0]
        extra = ""
        if first.submitted is not None:
            extra = f" Its submissions took {statistics.median([s.submitted - s.started for s in runs if s.submitted]):.1f} s (median)."
        if most_job_ids(first):
            extra += f" Its largest sacct call named {most_job_ids(first)} job ids, one `-j` each."
        say(f"- {name}, repetition 1: {timeline(first)}.{extra}")
    say()
    say("Per repetition (wall s / CPU s / sbatch+squeue+sacct+other calls):")
    say()
    for name, runs in samples.items():
        cells = [
            f"{s.wall:.1f} / {s.cpu:.2f} / {s.count('sbatch')}+{s.count('squeue')}+{s.count('sacct')}+{sum(s.others().values())}"
            for s in runs
        ]
        say(f"- {name}: " + "; ".join(cells))
    args.output.write_text("\n".join(out) + "\n")
    print(f"\nwritten to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
