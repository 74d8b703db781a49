#!/usr/bin/env bash
# A real userspace iSCSI target (tgtd) for the tests, checked from the initiator side with
# libiscsi's tools. Root; Debian packages tgt libiscsi-bin (deploy/testenv/install.sh).
# The kernel here has no SCSI initiator: iscsiadm cannot attach; libiscsi and qemu-img iscsi:// can.
#
# Usage: tgt.sh up WORKDIR | tgt.sh down WORKDIR
#   TGT_PORTAL        ip:port to listen on (default 127.0.0.1:3260)
#   TGT_CONTROL_PORT  tgtd's management socket number, tgtd -C / tgtadm -C (default 0).
#                     Give each concurrent tgtd its own, or tgtadm talks to the wrong one.
# `up` records pid, portal and control port in WORKDIR, so `down` needs only WORKDIR.
#
# tgtd ignores SIGTERM (seen here even with no target left), so `down` deletes this tgtd's targets and
# accounts, asks it to shut down through its own socket, waits for the pid, and only then
# escalates to SIGTERM and SIGKILL. It signals nothing but the pid it started.
set -euo pipefail
cmd=${1:?up|down}; w=${2:?WORKDIR}

alive() { # alive PID: the process exists and is a tgtd (not a recycled pid)
  [ -r "/proc/$1/comm" ] && [ "$(cat "/proc/$1/comm" 2>/dev/null)" = tgtd ]
}

case $cmd in
up)
  portal=${TGT_PORTAL:-127.0.0.1:3260}; cport=${TGT_CONTROL_PORT:-0}
  mkdir -p "$w"
  if [ -f "$w/tgtd.pid" ] && alive "$(cat "$w/tgtd.pid")"; then
    echo "tgt.sh: tgtd already running from $w (pid $(cat "$w/tgtd.pid"))" >&2; exit 1
  fi
  setsid nohup tgtd -f -C "$cport" --iscsi "portal=$portal" >"$w/tgtd.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$w/tgtd.pid"; echo "$cport" >"$w/control_port"; echo "$portal" >"$w/portal"
  for _ in $(seq 100); do
    # Both: tgtd answers, and the answer is ours. Another tgtd on the same control
    # port would answer while ours died on the lock.
    # Gone is gone; not yet named tgtd is the child still on its way
    # through setsid and nohup to exec tgtd (a loaded machine): wait. Taking
    # that for an exit leaked the tgtd that came up a moment later.
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "tgt.sh: tgtd exited at start (control port $cport in use?):" >&2; cat "$w/tgtd.log" >&2; exit 1
    fi
    if alive "$pid" && tgtadm -C "$cport" --op show --mode sys >/dev/null 2>&1; then
      echo "tgt.sh: tgtd pid $pid on $portal, control port $cport" >&2; exit 0
    fi
    sleep 0.1
  done
  echo "tgt.sh: tgtd did not answer within 10s:" >&2; cat "$w/tgtd.log" >&2
  kill -KILL "$pid" 2>/dev/null || true
  exit 1
  ;;
down)
  [ -f "$w/tgtd.pid" ] || exit 0
  pid=$(cat "$w/tgtd.pid"); cport=$(cat "$w/control_port" 2>/dev/null || echo 0)
  if alive "$pid"; then
    for tid in $(tgtadm -C "$cport" --lld iscsi --op show --mode target 2>/dev/null | sed -n 's/^Target \([0-9]*\):.*/\1/p'); do
      tgtadm -C "$cport" --lld iscsi --op delete --force --mode target --tid "$tid" >/dev/null 2>&1 || true
    done
    for user in $(tgtadm -C "$cport" --lld iscsi --op show --mode account 2>/dev/null | sed -n 's/^    \([^ ]*\).*/\1/p'); do
      tgtadm -C "$cport" --lld iscsi --op delete --mode account --user "$user" >/dev/null 2>&1 || true
    done
    tgtadm -C "$cport" --op update --mode sys --name State -v offline >/dev/null 2>&1 || true
    tgtadm -C "$cport" --op delete --mode system >/dev/null 2>&1 || true
    for sig in NONE TERM KILL; do
      if [ "$sig" != NONE ]; then
        echo "tgt.sh: tgtd pid $pid still running, sending SIG$sig" >&2
        kill -"$sig" "$pid" 2>/dev/null || true
      fi
      for _ in $(seq 50); do alive "$pid" || break; sleep 0.1; done
      alive "$pid" || break
    done
    if alive "$pid"; then echo "tgt.sh: tgtd pid $pid survived SIGKILL" >&2; exit 1; fi
    # tgtd leaves its socket files behind. Remove them only here, where the tgtd that
    # owned them was alive and ours (when `up` failed, they may be another tgtd's).
    rm -f "/var/run/tgtd/socket.$cport" "/var/run/tgtd/socket.$cport.lock"
  fi
  rm -f "$w/tgtd.pid"
  ;;
*)
  echo "usage: tgt.sh up|down WORKDIR" >&2; exit 2
  ;;
esac
