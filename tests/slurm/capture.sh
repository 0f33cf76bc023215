#!/usr/bin/env bash
# Capture real squeue/sacct/sbatch output from the test cluster into tests/data/ (run as root, cluster up).
# Each fixture's first line is the command that produced it. Takes ~2 minutes (a TIMEOUT takes 62-90 s).
set -euo pipefail
export TZ=UTC SLURM_TIME_FORMAT=standard  # as the engine runs its queries (engines/_slurmenv.py)
out=$(cd "$(dirname "$0")/../data" && pwd)
work=$(mktemp -d /tmp/capture.XXXXXX)
cd "$work"
S=$'\x1f'
ver=$(sinfo --version | awk '{print $2}')  # 24.11's sbatch --version wants a configuration; sinfo's does not
job() { mkdir -p "$work/$1" && printf '#!/bin/bash\n%b\n' "$2" > "$work/$1/job.sh" && (cd "$work/$1" && sbatch --parsable --comment="jobroot-$1" job.sh); }
capture() {  # capture NAME COMMAND...
  local name=$1; shift
  { printf '%s\n' "$*"; "$@"; } > "$out/slurm-$ver-$name.txt" 2>&1 || true
}
for _ in $(seq 60); do [ -z "$(squeue -h -t all)" ] && break; sleep 1; done  # start from an empty queue
start=$(date +%Y-%m-%dT%H:%M:%S)
sleep 1
job ok 'echo hi'
job three 'exit 3'
job signal 'kill -9 $$'
job array '#SBATCH --array=1-3\n[ "$SLURM_ARRAY_TASK_ID" = 2 ] && exit 4\necho task'
job pending-array '#SBATCH --array=1-6%1\nsleep 2'
job pipe-name '#SBATCH --job-name=with|pipe\nsleep 1'
mkdir -p "$work/new
line" && printf '#!/bin/bash\necho nl\n' > "$work/new
line/job.sh" && (cd "$work/new
line" && sbatch --parsable job.sh)
cancel=$(job cancelled 'sleep 300')
timeout_id=$(job timeout '#SBATCH --time=00:00:01\nsleep 300')
sleep 1
scancel "$cancel"
sleep 0.5
capture squeue squeue --noheader --array --states=all --user=root "--format=%i$S%T$S%V$S%k$S%Z"
for _ in $(seq 120); do
  sacct -X -n -j "$timeout_id" -o State | grep -q TIMEOUT && break
  sleep 1
done
sleep 2
capture sacct sacct -X --noheader --parsable2 "--delimiter=$S" --user=root "--starttime=$start" --endtime=now \
  --format=JobID,State,ExitCode,Submit,End,Comment,WorkDir
printf '#!/bin/bash\n#SBATCH -p nope\necho x\n' > "$work/badpart.sh"
capture sbatch-invalid-partition sbatch --parsable "$work/badpart.sh"
printf 'echo no shebang\n' > "$work/noshebang.sh"
capture sbatch-no-shebang sbatch --parsable "$work/noshebang.sh"
capture sbatch-unknown-option sbatch --parsable --bogus-option "$work/badpart.sh"
printf '#!/bin/bash\r\necho dos\r\n' > "$work/dos.sh"
capture sbatch-dos sbatch --parsable "$work/dos.sh"
ls "$out"
