#!/usr/bin/env bash
# `make bench`: benchmarks against a real redis-server (and in-process
# baselines measured in the same run). Compare runs with benchstat.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
here="$root/deploy/testenv"
work="$root/.testenv"
rport=${EMBER_TEST_REDIS_PORT:-16379}
"$here/install.sh"
trap '"$here/redis.sh" down "$work/redis-bench" || true' EXIT
"$here/redis.sh" up "$work/redis-bench" "$rport"
export EMBER_TEST_REDIS="redis://127.0.0.1:$rport/0"
cd "$root"
go test -run '^$' -bench . -benchmem -count "${BENCH_COUNT:-5}" ./events/ ./router/ ./drivers/backupstore/ | tee "$work/bench.txt"
echo "results in $work/bench.txt (compare two runs with: go run golang.org/x/perf/cmd/benchstat@latest old.txt new.txt)"
