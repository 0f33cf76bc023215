#!/usr/bin/env bash
# Install (apt-get, as root) and start a one-host Grid Engine cell (Son of Grid Engine 8.1.9), for the tests.
#   sge_qmaster -> sge_execd, each waited for before the next; one queue all.q on this host.
# Idempotent: daemons already running are reused. `cluster.sh stop` stops both.
# Exit 0: the cell answers qsub, qstat and qacct. Exit 77: cannot be done here (no root, no apt).
set -euo pipefail

export SGE_ROOT=/var/lib/gridengine SGE_CELL=default
log() { printf 'gridengine: %s\n' "$*" >&2; }
wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local limit=$1 what=$2; shift 2
  for _ in $(seq $((limit * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  log "$what did not come up within ${limit}s"; return 1
}
running() { pgrep -x "$1" >/dev/null; }

if [ "${1:-}" = stop ]; then
  for daemon in sge_execd sge_qmaster; do
    if running "$daemon"; then pkill -x "$daemon"; while running "$daemon"; do sleep 0.1; done; fi
  done
  exit 0
fi

[ "$(id -u)" = 0 ] || { log "needs root to install and start Grid Engine"; exit 77; }
host=$(hostname -s)
if ! command -v qsub >/dev/null || [ ! -x /usr/lib/gridengine/sge_qmaster ] || [ ! -x /usr/lib/gridengine/sge_execd ]; then
  command -v apt-get >/dev/null || { log "no apt-get: install Grid Engine by hand"; exit 77; }
  log "installing Grid Engine from Debian's packages"
  for pkg in gridengine-common gridengine-master gridengine-client gridengine-exec; do
    printf '%s shared/gridengineconfig boolean true\n%s shared/gridenginemaster string %s\n%s shared/gridenginecell string default\n' \
      "$pkg" "$pkg" "$host" "$pkg"
  done | debconf-set-selections
  apt-get update -qq -o DPkg::Lock::Timeout=300
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends \
    gridengine-master gridengine-exec gridengine-client >/dev/null
fi

common=$SGE_ROOT/$SGE_CELL/common
# The host-name trap: 127.0.0.1 resolves to `localhost` first, and qmaster refuses a client whose name
# differs from the one the host calls itself. Both files are read when sge_qmaster starts.
echo "$host localhost" > "$common/host_aliases"
echo "$host" > "$common/act_qmaster"

if ! running sge_qmaster; then
  log "starting sge_qmaster"
  /usr/lib/gridengine/sge_qmaster
fi
wait_for 60 sge_qmaster qconf -sh
qconf -ah "$host" >/dev/null 2>&1 || true  # admin host (the install may have made it one already)
qconf -as "$host" >/dev/null 2>&1 || true  # submit host

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Root may submit (min_uid 0); the file given to -Mconf must be named `global`.
qconf -sconf > "$tmp/global"
if ! grep -qE '^min_uid +0$' "$tmp/global" || ! grep -qE '^min_gid +0$' "$tmp/global"; then
  sed -i -e 's/^min_uid .*/min_uid                      0/' -e 's/^min_gid .*/min_gid                      0/' "$tmp/global"
  qconf -Mconf "$tmp/global" >/dev/null
fi
# Schedule every second, not every 15 s: a trivial job ends 2-5 s after qsub.
qconf -ssconf > "$tmp/sched"
if ! grep -qE '^schedule_interval +0:0:1$' "$tmp/sched"; then
  sed -i -e 's/^schedule_interval .*/schedule_interval                 0:0:1/' \
    -e 's/^flush_submit_sec .*/flush_submit_sec                  1/' \
    -e 's/^flush_finish_sec .*/flush_finish_sec                  1/' "$tmp/sched"
  qconf -Msconf "$tmp/sched" >/dev/null
fi

if ! running sge_execd; then
  log "starting sge_execd"
  /usr/lib/gridengine/sge_execd
fi
wait_for 60 "sge_execd" bash -c "qhost -h $host | awk 'NR>3 && \$4 != \"-\" {ok=1} END {exit !ok}'"

if ! qconf -sql 2>/dev/null | grep -qx all.q; then
  cat > "$tmp/all.q" <<QUEUE
qname                 all.q
hostlist              $host
seq_no                0
load_thresholds       NONE
suspend_thresholds    NONE
nsuspend              1
suspend_interval      00:05:00
priority              0
min_cpu_interval      00:05:00
processors            UNDEFINED
qtype                 BATCH INTERACTIVE
ckpt_list             NONE
pe_list               make
rerun                 FALSE
slots                 8
tmpdir                /tmp
shell                 /bin/bash
prolog                NONE
epilog                NONE
shell_start_mode      unix_behavior
starter_method        NONE
suspend_method        NONE
resume_method         NONE
terminate_method      NONE
notify                00:00:60
owner_list            NONE
user_lists            NONE
xuser_lists           NONE
subordinate_list      NONE
complex_values        NONE
projects              NONE
xprojects             NONE
calendar              NONE
initial_state         default
s_rt                  INFINITY
h_rt                  INFINITY
s_cpu                 INFINITY
h_cpu                 INFINITY
s_fsize               INFINITY
h_fsize               INFINITY
s_data                INFINITY
h_data                INFINITY
s_stack               INFINITY
h_stack               INFINITY
s_core                INFINITY
h_core                INFINITY
s_rss                 INFINITY
h_rss                 INFINITY
s_vmem                INFINITY
h_vmem                INFINITY
QUEUE
  qconf -Aq "$tmp/all.q" >/dev/null
fi
wait_for 60 "the queue all.q" bash -c "qstat -f -q all.q | grep -q '^all.q@'"
log "cell ready on $host"
