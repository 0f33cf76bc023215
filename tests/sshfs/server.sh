#!/usr/bin/env bash
# A throwaway sshd on 127.0.0.1 for the sshfs upload tests: installs openssh-server, sshfs and rsync
# (apt-get, as root), makes a host key and a client key in DIR, starts sshd on a free port.
#   server.sh DIR        -> prints the port; DIR/id_ed25519 is the client key, DIR/sshd.pid the daemon
#   server.sh stop DIR   -> stops that sshd
# Exit 77: cannot be done here (no root, no apt-get, no /dev/fuse).
set -euo pipefail
log() { printf 'sshfs: %s\n' "$*" >&2; }
if [ "${1:-}" = stop ]; then
  [ -f "$2/sshd.pid" ] && kill "$(cat "$2/sshd.pid")" 2>/dev/null || true
  exit 0
fi
dir=$1
[ "$(id -u)" = 0 ] || { log "needs root to install and start sshd"; exit 77; }
[ -c /dev/fuse ] || { log "no /dev/fuse"; exit 77; }
if [ ! -x /usr/sbin/sshd ] || ! command -v sshfs >/dev/null || ! command -v rsync >/dev/null; then
  command -v apt-get >/dev/null || { log "no apt-get: install openssh-server, sshfs and rsync by hand"; exit 77; }
  log "installing openssh-server, sshfs and rsync from Debian's packages"
  apt-get update -qq -o DPkg::Lock::Timeout=300
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends openssh-server openssh-client sshfs rsync >/dev/null
fi
mkdir -p "$dir" /run/sshd
chmod 700 "$dir"
[ -f "$dir/host_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/host_key"
[ -f "$dir/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/id_ed25519"
cp "$dir/id_ed25519.pub" "$dir/authorized_keys"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$dir/sshd_config" <<CONF
Port $port
ListenAddress 127.0.0.1
HostKey $dir/host_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $dir/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
CONF
/usr/sbin/sshd -f "$dir/sshd_config" -E "$dir/sshd.log"
for _ in $(seq 50); do
  ssh -p "$port" -i "$dir/id_ed25519" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes \
    -o LogLevel=ERROR root@127.0.0.1 true 2>/dev/null && { echo "$port"; exit 0; }
  sleep 0.1
done
log "sshd did not answer on port $port: $(tail -3 "$dir/sshd.log")"
exit 1
