#!/usr/bin/env bash
# `make run`: what `ember dev` needs beyond Go. Its file backend makes
# snapshots (qcow2 overlays), clones and image copies with qemu-img; blank
# raw volumes, deletes and extends need nothing more. Installs Debian's
# qemu-utils when it is missing and this is root on a Debian machine;
# otherwise says what will not work and goes on.
set -euo pipefail
command -v qemu-img >/dev/null && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "dev: installing qemu-utils (qemu-img, for snapshots and copies)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends qemu-utils >/dev/null
  exit 0
fi
echo "dev: qemu-img not found: snapshots, clones and image copies will answer .error until qemu-utils is installed" >&2
