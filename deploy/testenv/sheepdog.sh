#!/usr/bin/env bash
# Real Sheepdog nodes for the sheepdog driver's tests, built from the last
# upstream source (commit 3ebe5ea7fb0a, 2018; no distribution packages it any
# more). The nodes use the `local` cluster driver: membership through a
# shared-memory file, no corosync, zookeeper, FUSE or kernel module. Nodes
# started on the same file form one cluster.
#
#   sheepdog.sh build                   build sheep and dog once; prints the prefix (bin/ under it)
#   sheepdog.sh up DIR PORT [SHMFILE]   start a node on 127.0.0.1:PORT storing in DIR (not formatted);
#                                       SHMFILE defaults to DIR/cluster.shm; a second node given the
#                                       first one's file joins its cluster
#   sheepdog.sh format PORT COPIES      `dog cluster format -c COPIES` through the node on PORT
#   sheepdog.sh down DIR                stop the node of DIR by its PID (SIGTERM, then SIGKILL)
#
# The source tarball comes from EMBER_SHEEPDOG_SRC; without it, the
# sheepdog-3ebe5ea.tar.gz in shared/third_party beside the repository. It is
# `git archive` of upstream's commit 3ebe5ea7fb0ad1ad7af593b69a382489249baa87
# (github.com/sheepdog/sheepdog, GPL-2.0):
#   git archive --prefix=sheepdog-3ebe5ea/ 3ebe5ea7fb0a | gzip > sheepdog-3ebe5ea.tar.gz
# The build (about 40 s on two cores) lands in ~/.cache/ember/sheepdog-<rev>
# (EMBER_CACHE moves ~/.cache/ember); nothing is copied into the repository.
# Build dependencies (deploy/testenv/install.sh): autoconf automake libtool
# pkg-config make gcc yasm liburcu-dev zlib1g-dev.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
src=${EMBER_SHEEPDOG_SRC:-$(dirname "$root")/shared/third_party/sheepdog-3ebe5ea.tar.gz}
cache=${EMBER_CACHE:-$HOME/.cache/ember}

die() { echo "sheepdog.sh: $*" >&2; exit 1; }

# rev is the source's commit: git archive writes it into the tar header;
# without git, the tarball's name says it.
rev() {
  local r=""
  if command -v git >/dev/null; then r=$(gzip -dc "$src" | git get-tar-commit-id 2>/dev/null || true); fi
  [ -n "$r" ] && { echo "${r:0:12}"; return; }
  r=$(basename "$src"); r=${r#sheepdog-}; echo "${r%%.tar*}"
}

build() {
  [ -f "$src" ] || die "no Sheepdog source at $src. The sheepdog tests build Sheepdog from upstream's last commit:
  git clone https://github.com/sheepdog/sheepdog && cd sheepdog &&
  git archive --prefix=sheepdog-3ebe5ea/ 3ebe5ea7fb0a | gzip > /some/where/sheepdog-3ebe5ea.tar.gz
then set EMBER_SHEEPDOG_SRC=/some/where/sheepdog-3ebe5ea.tar.gz"
  local prefix; prefix=$cache/sheepdog-$(rev)
  if [ -x "$prefix/bin/sheep" ] && [ -x "$prefix/bin/dog" ]; then echo "$prefix"; return; fi
  for t in autoreconf automake libtoolize pkg-config make gcc yasm; do
    command -v "$t" >/dev/null || die "$t is missing: deploy/testenv/install.sh installs Sheepdog's build dependencies"
  done
  mkdir -p "$cache"
  # Test packages run in parallel and may all want the build: one builds,
  # the others wait for it and find it done.
  exec 9>"$prefix.lock"
  flock -w 600 9 || die "another build of $prefix holds $prefix.lock for 10 minutes"
  if [ -x "$prefix/bin/sheep" ] && [ -x "$prefix/bin/dog" ]; then echo "$prefix"; return; fi
  b=$(mktemp -d) # global: the EXIT trap runs after build returns
  trap 'rm -rf "$b"' EXIT
  echo "sheepdog.sh: building $src into $prefix (about 40 s, once)" >&2
  tar -xzf "$src" -C "$b"
  cd "$b"/sheepdog-*
  ./autogen.sh >"$b/build.log" 2>&1 || { tail -20 "$b/build.log" >&2; die "autogen.sh failed"; }
  # -fcommon: gcc >= 10 defaults to -fno-common, and dog's link then fails
  # on sha1_init defined in two objects.
  ./configure --disable-corosync --disable-sheepfs --prefix="$prefix" CFLAGS="-g -O2 -fcommon" >>"$b/build.log" 2>&1 ||
    { tail -20 "$b/build.log" >&2; die "configure failed"; }
  make -j"$(nproc)" >>"$b/build.log" 2>&1 || { tail -30 "$b/build.log" >&2; die "make failed"; }
  mkdir -p "$prefix.tmp/bin"
  cp sheep/sheep dog/dog "$prefix.tmp/bin/"
  rm -rf "$prefix"; mv "$prefix.tmp" "$prefix"
  echo "$prefix"
}

case "${1:?build|up|format|down}" in
build) build ;;
up)
  dir=${2:?DIR}; port=${3:?PORT}; shm=${4:-$dir/cluster.shm}
  prefix=$(build)
  mkdir -p "$dir/store"
  [ -f "$dir/sheep.pid" ] && kill -0 "$(cat "$dir/sheep.pid")" 2>/dev/null && die "a node of $dir runs already"
  # -f: stay in the foreground, so that $! is the daemon; -b: loopback only;
  # -z: a zone per node (the port), or every node of one host shares the
  # zone of 127.0.0.1 and two copies have nowhere to go.
  "$prefix/bin/sheep" -f -b 127.0.0.1 -z "$port" -c "local:$shm" -p "$port" -l "dir=$dir" "$dir/store" >"$dir/sheep.out" 2>&1 &
  pid=$!
  echo "$pid" >"$dir/sheep.pid"
  for _ in $(seq 100); do
    "$prefix/bin/dog" node list -a 127.0.0.1 -p "$port" >/dev/null 2>&1 && exit 0
    kill -0 "$pid" 2>/dev/null || { cat "$dir/sheep.out" "$dir/sheep.log" >&2 2>/dev/null || true; die "sheep on port $port exited; log above"; }
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
  die "sheep on port $port did not answer within 10 s; see $dir/sheep.log" ;;
format)
  port=${2:?PORT}; copies=${3:?COPIES}
  prefix=$(build)
  # stdin closed: dog asks before formatting with more copies than zones,
  # and the answer is no.
  "$prefix/bin/dog" cluster format -c "$copies" -a 127.0.0.1 -p "$port" </dev/null >/dev/null
  # dog exits 0 whether or not the cluster was formatted: look.
  "$prefix/bin/dog" cluster info -a 127.0.0.1 -p "$port" | grep -q '^Cluster status: running' ||
    die "dog cluster format -c $copies through port $port left the cluster not running: $("$prefix/bin/dog" cluster info -a 127.0.0.1 -p "$port" 2>&1 | head -1)" ;;
down)
  dir=${2:?DIR}; [ -f "$dir/sheep.pid" ] || exit 0
  pid=$(cat "$dir/sheep.pid")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$dir/sheep.pid" ;;
*) die "unknown command $1 (build|up|format|down)" ;;
esac
