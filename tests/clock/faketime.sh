#!/usr/bin/env bash
# Install Debian's faketime (apt-get, as root) for the moved-clock run of tests/test_clock.py; print its path.
# Exit 0: faketime is there. Exit 77: cannot be done here (no root, no apt).
set -euo pipefail
if command -v faketime >/dev/null; then command -v faketime; exit 0; fi
[ "$(id -u)" = 0 ] || { echo "faketime: needs root to install it" >&2; exit 77; }
command -v apt-get >/dev/null || { echo "faketime: no apt-get: install faketime (libfaketime) by hand" >&2; exit 77; }
echo "faketime: installing Debian's faketime package" >&2
apt-get update -qq -o DPkg::Lock::Timeout=300
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends faketime >/dev/null
command -v faketime
