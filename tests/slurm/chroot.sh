#!/usr/bin/env bash
# A second Slurm generation for the tests: Debian 13 (Slurm 24.11, Python 3.13) in a chroot.
#
#   chroot.sh prepare        create the chroot (debootstrap, Debian's packages) or reuse it; mount what it needs
#   chroot.sh run CMD...     run CMD inside it, in this checkout (same path), with CI passed through
#   chroot.sh stop           stop the chroot's Slurm daemons, munged and mariadbd (its ports are the host's);
#                            unmount what prepare and run bound into it
#
# Only Debian's package mirror is used (the one apt already uses). Exit 77: cannot be done here (not root,
# no apt-get). The daemons are started inside by tests/slurm/cluster.sh, as on the host; run one
# cluster at a time (same ports).
set -euo pipefail

DIR=${JOBROOT_CHROOT:-/var/tmp/jobroot-trixie}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
log() { printf 'chroot: %s\n' "$*" >&2; }
PACKAGES="slurmctld slurmd slurm-client slurmdbd munge mariadb-server python3 python3-pytest python3-filelock python3-dateutil hostname procps"

mounted() { grep -q " $1 " /proc/self/mounts; }

unmount_all() {  # before anything is removed, and when the tests are done: nothing of the host stays bound in
  for d in "$DIR$REPO" "$DIR/tmp" "$DIR/proc" "$DIR/sys" "$DIR/dev"; do
    while mounted "$d"; do umount -R -l "$d"; done
  done
}

mount_all() {
  for d in proc sys dev; do
    mkdir -p "$DIR/$d"
    mounted "$DIR/$d" || mount --rbind "/$d" "$DIR/$d"
  done
  mkdir -p "$DIR/tmp"
  mounted "$DIR/tmp" || mount --bind /tmp "$DIR/tmp"
  if [ ! -e "$DIR$REPO/pyproject.toml" ]; then  # a checkout under /tmp is already there
    mkdir -p "$DIR$REPO"
    mount --bind "$REPO" "$DIR$REPO"
  fi
  cp /etc/hosts "$DIR/etc/hosts"
  cp /etc/resolv.conf "$DIR/etc/resolv.conf" 2>/dev/null || true
}

case "${1:-}" in
prepare)
  [ "$(id -u)" = 0 ] || { log "needs root"; exit 77; }
  command -v apt-get >/dev/null || { log "no apt-get"; exit 77; }
  if [ ! -e "$DIR/.jobroot-ready" ] || [ "$(cat "$DIR/.jobroot-ready")" != "$PACKAGES" ]; then
    command -v debootstrap >/dev/null || {
      apt-get update -qq -o DPkg::Lock::Timeout=300 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends debootstrap >/dev/null
    }
    mirror=$(sed -n 's/^URIs: *\(http[^ ]*\/debian\)$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)
    mirror=${mirror:-http://deb.debian.org/debian}
    if [ ! -x "$DIR/usr/bin/apt-get" ]; then
      log "debootstrap trixie from $mirror into $DIR"
      unmount_all
      rm -rf --one-file-system "$DIR"
      debootstrap --variant=minbase trixie "$DIR" "$mirror" >/dev/null
    fi
    printf '#!/bin/sh\nexit 101\n' > "$DIR/usr/sbin/policy-rc.d"  # packages start no daemon inside
    chmod 755 "$DIR/usr/sbin/policy-rc.d"
    mount_all
    log "installing Slurm 24.11, MariaDB and Python 3.13 inside"
    # shellcheck disable=SC2086
    chroot "$DIR" sh -c "apt-get update -qq -o DPkg::Lock::Timeout=300 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends $PACKAGES >/dev/null"
    printf '%s' "$PACKAGES" > "$DIR/.jobroot-ready"
  fi
  mount_all
  log "ready: $(chroot "$DIR" sh -c 'slurmd -V; python3 --version' | tr '\n' ' ')"
  ;;
run)
  shift
  mount_all
  exec chroot "$DIR" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 CI="${CI:-}" \
    sh -c 'cd "$1" && shift && exec "$@"' sh "$REPO" "$@"
  ;;
stop)  # every process whose root is the chroot: its Slurm daemons, munged, mariadbd
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/root" 2>/dev/null)" = "$DIR" ] && kill "${p#/proc/}" 2>/dev/null || true
  done
  for _ in $(seq 100); do
    left=0
    for p in /proc/[0-9]*; do [ "$(readlink "$p/root" 2>/dev/null)" = "$DIR" ] && left=1 && break; done
    [ "$left" = 0 ] && { unmount_all; exit 0; }
    sleep 0.1
  done
  log "some processes of the chroot did not stop"; exit 1
  ;;
*)
  echo "usage: $0 prepare | run CMD... | stop" >&2
  exit 2
  ;;
esac
