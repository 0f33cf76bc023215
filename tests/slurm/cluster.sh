#!/usr/bin/env bash
# Install (apt-get, as root) and start a single-node Slurm cluster with accounting, for the tests.
#   munged -> mariadbd -> slurmdbd -> slurmctld -> slurmd, each waited for before the next.
# Idempotent: daemons already running are reused. `cluster.sh stop` stops the Slurm daemons in reverse
# order; `cluster.sh stop-all` stops munged and mariadbd as well. `cluster.sh second` also starts a
# second cluster, `second` (its own slurmctld and slurmd on ports 6827-6828, /etc/slurm-second), registered
# in the same slurmdbd: jobs reach it with `-M second`.
# Exit 0: the cluster answers sbatch, squeue and sacct. Exit 77: cannot be done here (no root, no apt).
set -euo pipefail

log() { printf 'cluster: %s\n' "$*" >&2; }
wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local limit=$1 what=$2; shift 2
  for _ in $(seq $((limit * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  log "$what did not come up within ${limit}s"; return 1
}
pid_alive() {  # the PID file names a live daemon (not a stale PID reused by another process)
  local pid
  pid=$(cat "$1" 2>/dev/null) && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  case "$(cat "/proc/$pid/comm" 2>/dev/null)" in slurm*|munged|mariadbd|mysqld) return 0 ;; *) return 1 ;; esac
}

if [ "${1:-}" = stop ] || [ "${1:-}" = stop-all ]; then  # stop-all: munged and mariadbd too
  pidfiles="/run/slurmd-second.pid /run/slurmctld-second.pid /run/slurmd.pid /run/slurmctld.pid /run/slurmdbd.pid"
  [ "$1" = stop-all ] && pidfiles="$pidfiles /run/munge/munged.pid /run/mysqld/mysqld.pid"
  for pidfile in $pidfiles; do
    if pid_alive "$pidfile"; then kill "$(cat "$pidfile")"; while pid_alive "$pidfile"; do sleep 0.1; done; fi
  done
  exit 0
fi

[ "$(id -u)" = 0 ] || { log "needs root to install and start Slurm"; exit 77; }
if ! command -v slurmctld >/dev/null || ! command -v slurmdbd >/dev/null || ! command -v mariadbd >/dev/null \
   || ! command -v munged >/dev/null || ! command -v sbatch >/dev/null || ! command -v slurmd >/dev/null; then
  command -v apt-get >/dev/null || { log "no apt-get: install Slurm, slurmdbd, munge and MariaDB by hand"; exit 77; }
  log "installing Slurm, slurmdbd, munge and MariaDB from Debian's packages"
  apt-get update -qq -o DPkg::Lock::Timeout=300
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends \
    slurmctld slurmd slurm-client slurmdbd munge mariadb-server >/dev/null
fi

host=$(hostname -s)
dbpass=slurmtest
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge /run/mysqld /var/log/mysql
chown slurm:slurm /var/spool/slurmctld /var/log/slurm
chown munge:munge /run/munge
chown mysql:mysql /run/mysqld /var/log/mysql

# The node line comes from `slurmd -C`, widened to 8 CPUs so tests can run jobs side by side.
mem=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -n 1)
cat > /etc/slurm/slurm.conf.new <<CONF
ClusterName=testcluster
SlurmctldHost=${host}(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoreFlags=job_comment
AccountingStorageEnforce=associations,limits,qos
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MailProg=/bin/true
SchedulerParameters=batch_sched_delay=0
MinJobAge=5
KillWait=2
SlurmdParameters=config_overrides
NodeName=${host} NodeAddr=127.0.0.1 CPUs=8 Boards=1 SocketsPerBoard=1 CoresPerSocket=8 ThreadsPerCore=1 RealMemory=${mem:-1000} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
PartitionName=maint Nodes=ALL MaxTime=INFINITE State=UP
CONF
cat > /etc/slurm/slurmdbd.conf.new <<CONF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
PidFile=/run/slurmdbd.pid
LogFile=/var/log/slurm/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=${dbpass}
StorageLoc=slurm_acct_db
CONF
configs="slurm.conf slurmdbd.conf"
# Slurm 23 and newer refuse to start slurmd without cgroups unless told not to use them.
if [ "$(slurmd -V | sed -n 's/^slurm[^ ]* \([0-9]*\)\..*/\1/p')" -ge 23 ] 2>/dev/null; then
  printf 'CgroupPlugin=disabled\n' > /etc/slurm/cgroup.conf.new
  configs="$configs cgroup.conf"
fi
changed=0
for f in $configs; do
  if cmp -s "/etc/slurm/$f.new" "/etc/slurm/$f"; then rm "/etc/slurm/$f.new"; else mv "/etc/slurm/$f.new" "/etc/slurm/$f"; changed=1; fi
done
chown slurm:slurm /etc/slurm/slurmdbd.conf
chmod 600 /etc/slurm/slurmdbd.conf
# The second cluster: the same, on its own ports, spool and PID files.
mkdir -p /etc/slurm-second /var/spool/slurmctld-second /var/spool/slurmd-second
chown slurm:slurm /var/spool/slurmctld-second
sed -e 's/^ClusterName=.*/ClusterName=second/' -e 's#^\([A-Za-z]*\)=/var/spool/\([a-z]*\)$#\1=/var/spool/\2-second#' \
    -e 's#^\([A-Za-z]*PidFile\)=/run/\([a-z]*\)\.pid$#\1=/run/\2-second.pid#' \
    -e 's#^\([A-Za-z]*LogFile\)=/var/log/slurm/\([a-z]*\)\.log$#\1=/var/log/slurm/\2-second.log#' /etc/slurm/slurm.conf \
    > /etc/slurm-second/slurm.conf.new
printf 'SlurmctldPort=6827\nSlurmdPort=6828\n' >> /etc/slurm-second/slurm.conf.new
[ -e /etc/slurm/cgroup.conf ] && cp /etc/slurm/cgroup.conf /etc/slurm-second/cgroup.conf
if cmp -s /etc/slurm-second/slurm.conf.new /etc/slurm-second/slurm.conf; then rm /etc/slurm-second/slurm.conf.new
else mv /etc/slurm-second/slurm.conf.new /etc/slurm-second/slurm.conf; changed=1; fi
if [ "$changed" = 1 ]; then "$0" stop; fi  # a new configuration: restart the Slurm daemons

if ! (munge -n | unmunge) >/dev/null 2>&1; then
  log "starting munged"
  runuser -u munge -- /usr/sbin/munged
  wait_for 10 munged sh -c 'munge -n | unmunge'
fi
if ! mariadb-admin ping >/dev/null 2>&1; then
  log "starting mariadbd"
  # Only its socket: a second cluster (tests/slurm/chroot.sh) runs its own beside the host's.
  setsid -f /usr/sbin/mariadbd --user=mysql --skip-networking >/var/log/mysql/mariadbd.out 2>&1 </dev/null
  wait_for 30 mariadbd mariadb-admin ping
fi
mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
  CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '${dbpass}';
  GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
if ! pid_alive /run/slurmdbd.pid; then
  log "starting slurmdbd"
  /usr/sbin/slurmdbd
fi
wait_for 30 slurmdbd sacctmgr -n show cluster
if ! pid_alive /run/slurmctld.pid; then
  log "starting slurmctld"
  /usr/sbin/slurmctld
fi
wait_for 30 slurmctld scontrol ping
if ! pid_alive /run/slurmd.pid; then
  log "starting slurmd"
  /usr/sbin/slurmd
fi
wait_for 30 "an idle node" sh -c 'sinfo -h -o %t | grep -Eq "idle|mix|alloc"'
wait_for 30 "the cluster in accounting" sh -c 'sacctmgr -n -P show cluster format=cluster | grep -q testcluster'
# A federation left by an interrupted run of tests/test_slurm_clusters.py would federate every later job.
sacctmgr -i delete federation jobroot-test >/dev/null 2>&1 || true
# A QOS with a wall-time limit, for the refusal tests (enforced: AccountingStorageEnforce above).
if ! sacctmgr -n -P show qos format=name | grep -qx short; then
  sacctmgr -i -Q add qos short MaxWall=00:01:00 Flags=DenyOnLimit >/dev/null  # refused at submission
  sacctmgr -i -Q modify user root set qos+=short >/dev/null
fi
if [ "${1:-}" = second ]; then
  if ! pid_alive /run/slurmctld-second.pid; then
    log "starting the second cluster's slurmctld"
    SLURM_CONF=/etc/slurm-second/slurm.conf /usr/sbin/slurmctld
  fi
  wait_for 30 "the second slurmctld" env SLURM_CONF=/etc/slurm-second/slurm.conf scontrol ping
  if ! pid_alive /run/slurmd-second.pid; then
    log "starting the second cluster's slurmd"
    SLURM_CONF=/etc/slurm-second/slurm.conf /usr/sbin/slurmd
  fi
  wait_for 30 "an idle node in the second cluster" sh -c 'sinfo -M second -h -o %t | grep -Eq "idle|mix|alloc"'
  wait_for 30 "the second cluster in accounting" sh -c 'sacctmgr -n -P show cluster format=cluster | grep -qx second'
fi
log "ready: $(sinfo -h -o '%P %D %t %c CPUs')"
