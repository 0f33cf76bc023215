#!/usr/bin/env bash
# Demo: set up a fresh root on the local engine, drop the example jobs in, sweep until all are done.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=${1:-$(mktemp -d "${TMPDIR:-/tmp}/jobroot-demo.XXXXXX")}
reconcile() { python3 -m jobroot "$@"; }

reconcile -r "$root" -s -e local --settle 0
cp -R "$here"/jobs/. "$root/inbox/"
echo "dropped $(ls "$root/inbox" | wc -l) jobs into $root/inbox; sweeping every second (what cron does every minute)"
for _ in $(seq 60); do
  reconcile -r "$root"
  if [ -z "$(ls -A "$root/inbox")" ] && [ -z "$(ls -A "$root/pending")" ]; then break; fi
  sleep 1
done
echo
echo "== ls $root/complete"
ls "$root/complete"
for job in "$root"/complete/*/; do
  echo "== $(basename "$job")"
  [ -f "$job/job_output.txt" ] && sed 's/^/   output: /' "$job/job_output.txt"
  [ -f "$job/job_error.txt" ] && sed 's/^/   error:  /' "$job/job_error.txt"
done
echo
echo "== $root/reconcile.log"
cat "$root/reconcile.log"
