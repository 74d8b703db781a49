#!/usr/bin/env bash
# A real LVM volume group on a loop device, for the lvm driver's tests. Root;
# Debian package lvm2 (deploy/testenv/install.sh).
#
# These machines have no device-mapper, so LVM runs with activation off:
# lvcreate, lvextend, lvrename, lvremove and the vgs/lvs reports work for real
# on metadata; snapshots, thin pools and any data I/O to an LV fail ("Can't
# create snapshot without using device-mapper kernel driver"). Those paths are
# tested with command transcripts instead.
#
# Usage: lvm.sh up WORKDIR [VG] [SIZE] | lvm.sh down WORKDIR [VG]
# After `up`, export LVM_SYSTEM_DIR=WORKDIR/etc for every lvm command: the
# config's device filter admits only this loop device, so the VG is private to
# WORKDIR even when other tests run their own VG of the same name.
set -euo pipefail
cmd=${1:?up|down}; w=${2:?WORKDIR}; vg=${3:-cinder-volumes}; size=${4:-2G}
export LVM_SYSTEM_DIR=$w/etc
# Quiet LVM's complaint about descriptors inherited from the caller (Go's
# test binary, the shell): it goes to stderr and would pollute the reports.
export LVM_SUPPRESS_FD_WARNINGS=1
case $cmd in
up)
  mkdir -p "$w/etc/backup" "$w/etc/archive" "$w/lock"
  truncate -s "$size" "$w/pv.img"
  dev=$(losetup -f --show "$w/pv.img"); echo "$dev" > "$w/loopdev"
  cat > "$w/etc/lvm.conf" <<CONF
devices { scan = [ "/dev" ] filter = [ "a|^$dev\$|", "r|.*|" ] obtain_device_list_from_udev = 0 external_device_info_source = "none" }
global { activation = 0 use_lvmlockd = 0 locking_dir = "$w/lock" }
activation { udev_sync = 0 udev_rules = 0 monitoring = 0 }
backup { backup = 1 backup_dir = "$w/etc/backup" archive = 1 archive_dir = "$w/etc/archive" }
CONF
  pvcreate -q "$dev" >/dev/null; vgcreate -q "$vg" "$dev" >/dev/null
  echo "$w/etc"
  ;;
down)
  [ -d "$w" ] || exit 0
  vgremove -q -f "$vg" >/dev/null 2>&1 || true
  if [ -f "$w/loopdev" ]; then dev=$(cat "$w/loopdev"); pvremove -q "$dev" >/dev/null 2>&1 || true; losetup -d "$dev" || true; fi
  rm -rf "$w"
  ;;
esac
