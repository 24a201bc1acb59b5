#!/usr/bin/env bash
# Installs the named Debian packages (as root, or through sudo); `apt-get update` runs once per RUN_DIR.
# Usage: deploy/apt-install.sh package...
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUN_DIR=${RUN_DIR:-$ROOT/.run}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

[ $# -gt 0 ] || { echo "usage: $0 package..." >&2; exit 2; }
printf '[apt] installing Debian packages: %s\n' "$*" >&2
mkdir -p "$RUN_DIR"
if [ ! -f "$RUN_DIR/.apt-updated" ]; then
  as_root apt-get update -qq >&2
  touch "$RUN_DIR/.apt-updated"
fi
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
