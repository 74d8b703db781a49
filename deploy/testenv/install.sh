#!/usr/bin/env bash
# Installs the Debian packages that the tests need, once: the real servers and
# storage tools that Ember's tests run against (see docs/TESTING.md).
set -euo pipefail
pkgs=(redis-server qemu-utils qemu-block-extra glusterfs-server glusterfs-client lvm2
      thin-provisioning-tools tgt libiscsi-bin ceph-mon ceph-osd ceph-common ceph-mgr
      uuid-runtime openssh-server openssh-client iproute2 procps util-linux
      autoconf automake libtool pkg-config make gcc yasm liburcu-dev zlib1g-dev)
# The last line builds Sheepdog from source (deploy/testenv/sheepdog.sh): no
# distribution packages it any more.
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "testenv: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian starts some of these as services on install; the tests start their own.
for svc in redis-server glusterd tgt ssh; do
  systemctl stop "$svc" >/dev/null 2>&1 || service "$svc" stop >/dev/null 2>&1 || true
done
