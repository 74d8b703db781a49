#!/usr/bin/env bash
# A real single-node GlusterFS volume for tests (adapted from the team's recipe).
# Root; Debian packages glusterfs-server glusterfs-client (deploy/testenv/install.sh).
# Usage: glusterfs.sh up WORKDIR | glusterfs.sh down WORKDIR
# After `up`: volume gv0 is served by a glusterd of its own (working dir WORKDIR/state),
# its share name is printed on stdout and written to WORKDIR/share, and it is mounted
# at WORKDIR/mnt. `down` unmounts every mount under WORKDIR (also those a driver made),
# stops the volume and glusterd, by PID.
# Facts seen here: a brick on 127.0.0.1/localhost is refused, the hostname works;
# plain `qemu-img commit` on the FUSE mount aborts ("First cluster in emptied image is in use"),
# `qemu-img commit -d` works; qemu's native gluster:// costs ~10 s per image open.
set -euo pipefail
cmd=${1:?up|down}; w=${2:?WORKDIR}
case $w in /*) ;; *) w=$(pwd)/$w ;; esac
g=(gluster --mode=script --log-file="$w/log/cli.log")
case $cmd in
up)
  rm -rf "$w"; mkdir -p "$w/state" "$w/log" "$w/brick" "$w/mnt"
  cp -r /var/lib/glusterd/. "$w/state/"
  sed "s|option working-directory .*|option working-directory $w/state|" /etc/glusterfs/glusterd.vol > "$w/glusterd.vol"
  glusterd -f "$w/glusterd.vol" -p "$w/glusterd.pid" -l "$w/log/glusterd.log"
  for _ in $(seq 100); do "${g[@]}" pool list >/dev/null 2>&1 && break; sleep 0.1; done
  "${g[@]}" volume create gv0 "$(hostname):$w/brick" force >/dev/null
  "${g[@]}" volume start gv0 >/dev/null
  mount -t glusterfs -o log-file="$w/log/mnt.log" "127.0.0.1:/gv0" "$w/mnt"
  echo "127.0.0.1:/gv0" > "$w/share"
  cat "$w/share"
  ;;
down)
  # Deepest first, so that nested mounts come off before their parents.
  findmnt -rn -o TARGET | { grep -F "$w/" || true; } | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
  if [ -d "$w/log" ]; then
    "${g[@]}" volume stop gv0 force >/dev/null 2>&1 || true
    "${g[@]}" volume delete gv0 >/dev/null 2>&1 || true
  fi
  if [ -f "$w/glusterd.pid" ]; then
    pid=$(cat "$w/glusterd.pid"); kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  ;;
esac
