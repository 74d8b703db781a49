#!/usr/bin/env bash
# A real single-host Ceph cluster (1 mon, 1 OSD on memstore, optional mgr) for RBD tests.
# Root; Debian packages ceph-mon ceph-osd ceph-common (ceph-mgr for `ceph df`), uuid-runtime.
# Usage: ceph.sh up WORKDIR [mgr] | ceph.sh down WORKDIR ; then export CEPH_CONF=WORKDIR/ceph.conf
# The client.admin key is in WORKDIR/keyring. The project's copy of /work/shared/recipes/ceph.sh;
# used by drivers/rbd's tests.
# Facts seen here: up in ~6 s (memstore); without a mgr `ceph df` reports zeros; cloning an
# unprotected snapshot needs `ceph osd set-require-min-compat-client mimic` (done below);
# no krbd/rbd-nbd in this kernel: librbd, the rbd CLI and qemu-img rbd: work.
# Changed from the recipe: the mgr reads its own keyring (with the global one it failed
# "handle_auth_bad_method" and never started), `up` waits until the mgr is available and
# fails when the OSD or the mgr does not come up; CEPH_MON_PORT moves the monitor off 3300.
set -euo pipefail
cmd=${1:?up|down}; w=${2:?WORKDIR}
port=${CEPH_MON_PORT:-3300} # tests pick a free one so that two clusters can coexist
export CEPH_CONF=$w/ceph.conf
case $cmd in
up)
  rm -rf "$w"; mkdir -p "$w/run" "$w/log" "$w/mon.a" "$w/osd.0" "$w/crash"
  fsid=$(uuidgen)
  cat > "$CEPH_CONF" <<CONF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$port
mon initial members = a
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = $w/keyring
run dir = $w/run
admin socket = $w/run/\$name.asok
log file = $w/log/\$name.log
pid file = $w/run/\$name.pid
crash dir = $w/crash
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
ms bind ipv6 = false
public addr = 127.0.0.1
[mon]
mon data = $w/mon.\$id
[mgr]
mgr data = $w/mgr.\$id
keyring = $w/mgr.\$id/keyring
[osd]
osd data = $w/osd.\$id
keyring = $w/osd.\$id/keyring
osd objectstore = memstore
memstore device bytes = 2147483648
osd memory target = 939524096
CONF
  ceph-authtool --create-keyring "$w/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  ceph-authtool "$w/keyring" --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' >/dev/null
  monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$port]" "$w/monmap" >/dev/null
  ceph-mon --mkfs -i a --monmap "$w/monmap" --keyring "$w/keyring"
  ceph-mon -i a
  uuid=$(uuidgen); id=$(ceph osd new "$uuid")
  ceph-osd -i "$id" --mkfs --mkkey --osd-uuid "$uuid" --no-mon-config >/dev/null 2>&1
  ceph auth add "osd.$id" osd 'allow *' mon 'allow profile osd' -i "$w/osd.$id/keyring" >/dev/null
  ceph osd crush add-bucket "$(hostname)" host >/dev/null
  ceph osd crush move "$(hostname)" root=default >/dev/null
  ceph osd crush add "osd.$id" 1.0 host="$(hostname)" >/dev/null
  ceph-osd -i "$id"
  up=
  for _ in $(seq 300); do ceph osd stat 2>/dev/null | grep -q '1 up' && { up=1; break; }; sleep 0.2; done
  [ -n "$up" ] || { echo "ceph.sh: osd.$id did not come up; see $w/log" >&2; exit 1; }
  ceph osd set-require-min-compat-client mimic --yes-i-really-mean-it >/dev/null 2>&1 || true
  if [ "${3:-}" = mgr ]; then
    mkdir -p "$w/mgr.x"; ceph auth get-or-create mgr.x mon 'allow profile mgr' osd 'allow *' mds 'allow *' > "$w/mgr.x/keyring"
    ceph-mgr -i x
    up=
    for _ in $(seq 300); do ceph mgr stat 2>/dev/null | grep -q '"available": true' && { up=1; break; }; sleep 0.2; done
    [ -n "$up" ] || { echo "ceph.sh: mgr.x did not become available; see $w/log" >&2; exit 1; }
  fi
  ;;
down)
  for f in "$w"/run/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
  for f in "$w"/run/*.pid; do p=$(cat "$f" 2>/dev/null) || continue; for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done; done
  ;;
esac
