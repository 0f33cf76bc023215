#!/usr/bin/env bash
# Capture real qsub/qstat/qacct output from the test cell into tests/data/ (run as root, cell up).
# Each fixture's first line is the command that produced it. Takes about a minute.
# The *-qmaster-down and qsub-user-limit fixtures were taken by hand (sge_qmaster stopped; max_u_jobs 1).
set -euo pipefail
export SGE_ROOT=/var/lib/gridengine SGE_CELL=default TZ=UTC  # as the engine runs its commands
out=$(cd "$(dirname "$0")/../data" && pwd)
work=$(mktemp -d /tmp/capture.XXXXXX)
cd "$work"
ver=8.1.9
job() {  # job NAME BODY [qsub options]: prints qsub's terse answer
  local name=$1 body=$2; shift 2
  mkdir -p "$work/$name" && printf '#!/bin/bash\n%b\n' "$body" > "$work/$name/job.sh"
  (cd "$work/$name" && qsub -terse -cwd -A "jobroot-$name" "$@" job.sh)
}
capture() {  # capture NAME COMMAND...
  local name=$1; shift
  { printf '%s\n' "$*"; "$@"; } > "$out/gridengine-$ver-$name.txt" 2>&1 || true
}
for _ in $(seq 60); do [ -z "$(qstat -u root)" ] && break; sleep 1; done  # start from an empty queue
begin=$(date +%Y%m%d%H%M)
job ok 'echo hi'
job three 'exit 3'
job signal 'kill -9 $$'
job interrupt 'exit 130'
job array '#$ -t 1-3\n[ "$SGE_TASK_ID" = 2 ] && exit 4\necho task'
running=$(job deleted-running 'sleep 300')
queued=$(job deleted-held 'true' -h)
job error-state 'true' -o /nonexistent/dir/out >/dev/null
job waiting 'true' -h >/dev/null
slow=$(job slow-array 'sleep 30' -t 1-3 -tc 1)
capture qsub-unknown-queue bash -c "cd $work/ok && qsub -terse -cwd -q nope.q job.sh"
capture qsub-bad-option bash -c "cd $work/ok && qsub -terse -cwd -l nosuchresource=1 job.sh"
for _ in $(seq 30); do qstat -u root | grep -q " r " && break; sleep 1; done
sleep 2
capture qstat qstat -xml -u root
error_id=$(qstat -u root | awk '$5 == "Eqw" {print $1}')
capture qstat-j qstat -xml -j "$error_id,$running"
qdel "$running" "$queued" >/dev/null
qdel "$error_id" "${slow%%.*}" >/dev/null
sleep 25  # the cell's reporting flush: finished jobs reach the accounting file 6-14 s after they end
capture qacct qacct -o root -b "$begin" -j
capture qacct-nothing qacct -o root -b "$(date -u -d '+1 day' +%Y%m%d%H%M)" -j  # nothing began after tomorrow
qdel -u root >/dev/null 2>&1 || true
rm -rf "$work"
