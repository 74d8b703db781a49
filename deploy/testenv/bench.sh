#!/usr/bin/env bash
# `make bench`: benchmarks against a real redis-server and a real Kafka
# broker (with their baselines measured in the same run). Compare runs with
# benchstat.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
here="$root/deploy/testenv"
work="$root/.testenv"
rport=${EMBER_TEST_REDIS_PORT:-16379}
kport=${EMBER_TEST_KAFKA_PORT:-19092}
"$here/install.sh"
cleanup() {
  "$here/redis.sh" down "$work/redis-bench" || true
  "$here/kafka.sh" down "$work/kafka-bench" || true
}
trap cleanup EXIT
"$here/redis.sh" up "$work/redis-bench" "$rport"
"$here/kafka.sh" up "$work/kafka-bench" "$kport"
export EMBER_TEST_REDIS="redis://127.0.0.1:$rport/0"
export EMBER_TEST_KAFKA="127.0.0.1:$kport"
cd "$root"
go test -run '^$' -bench . -benchmem -count "${BENCH_COUNT:-5}" ./events/ ./router/ ./router/kafkasub/ ./drivers/backupstore/ | tee "$work/bench.txt"
echo "results in $work/bench.txt (compare two runs with: go run golang.org/x/perf/cmd/benchstat@latest old.txt new.txt)"
