#!/usr/bin/env bash
# A real redis-server on loopback. Usage: redis.sh up DIR [PORT] | redis.sh down DIR
# No persistence, unless EMBER_REDIS_PERSIST=1: then an append-only file in
# DIR, fsynced on every write, survives a restart (the reliability tests).
set -euo pipefail
verb=${1:?usage: redis.sh up|down DIR [PORT]}
work=${2:?usage: redis.sh up|down DIR [PORT]}
port=${3:-16379}
case "$verb" in
up)
  mkdir -p "$work"; work=$(cd "$work" && pwd)
  if redis-cli -p "$port" ping >/dev/null 2>&1; then
    echo "testenv: FAILED: 127.0.0.1:$port is already served by another redis-server" >&2; exit 1
  fi
  rm -f "$work/redis.pid"
  persist=(--appendonly no)
  if [ "${EMBER_REDIS_PERSIST:-}" = 1 ]; then persist=(--appendonly yes --appendfsync always); fi
  redis-server --port "$port" --bind 127.0.0.1 --save "" "${persist[@]}" --dir "$work" \
    --daemonize yes --pidfile "$work/redis.pid" --logfile "$work/redis.log"
  for _ in $(seq 1 50); do
    # PONG from the server this script started (its pid), not another one.
    if [ -f "$work/redis.pid" ] && redis-cli -p "$port" info server 2>/dev/null | tr -d '\r' \
         | grep -qx "process_id:$(cat "$work/redis.pid")"; then
      echo "testenv: redis up on 127.0.0.1:$port" >&2; exit 0
    fi
    sleep 0.1
  done
  echo "testenv: FAILED to start redis-server on 127.0.0.1:$port" >&2; cat "$work/redis.log" >&2 || true; exit 1 ;;
down)
  if [ -f "$work/redis.pid" ]; then
    pid=$(cat "$work/redis.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    rm -f "$work/redis.pid"
  fi ;;
*) echo "usage: redis.sh up|down DIR [PORT]" >&2; exit 2 ;;
esac
