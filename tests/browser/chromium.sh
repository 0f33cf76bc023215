#!/usr/bin/env bash
# Install Debian's headless-capable Chromium (apt-get, as root) for the status page tests; print its path.
# Exit 0: Chromium is there. Exit 77: cannot be done here (no root, no apt).
set -euo pipefail
for name in chromium chromium-browser; do
  if command -v "$name" >/dev/null; then command -v "$name"; exit 0; fi
done
[ "$(id -u)" = 0 ] || { echo "chromium: needs root to install it" >&2; exit 77; }
command -v apt-get >/dev/null || { echo "chromium: no apt-get: install Chromium by hand" >&2; exit 77; }
echo "chromium: installing Debian's chromium package" >&2
apt-get update -qq -o DPkg::Lock::Timeout=300
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends chromium fonts-dejavu-core >/dev/null
command -v chromium
