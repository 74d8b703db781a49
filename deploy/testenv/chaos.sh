#!/usr/bin/env bash
# `make chaos`: the long reliability campaign (docs/RELIABILITY.md) against
# a Kafka 4.1 broker and a redis-server of its own (ports 61092/61379 unless
# EMBER_CHAOS_KAFKA_PORT / EMBER_CHAOS_REDIS_PORT say otherwise; the broker
# and Redis restart tests start further ones of their own in 61000-64999).
# `make test` runs the same tests at small counts.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
here="$root/deploy/testenv"
work="$root/.testenv/chaos"
kport=${EMBER_CHAOS_KAFKA_PORT:-61092}
rport=${EMBER_CHAOS_REDIS_PORT:-61379}

"$here/install.sh"
mkdir -p "$work"
cleanup() {
  "$here/kafka.sh" down "$work/kafka" || true
  "$here/redis.sh" down "$work/redis" || true
}
trap cleanup EXIT
"$here/redis.sh" up "$work/redis" "$rport"
"$here/kafka.sh" up "$work/kafka" "$kport"

export EMBER_TEST_KAFKA="127.0.0.1:$kport"
export EMBER_TEST_REDIS="redis://127.0.0.1:$rport/0"
export EMBER_CHAOS_KILLS=${EMBER_CHAOS_KILLS:-50}
export EMBER_CHAOS_RESTARTS=${EMBER_CHAOS_RESTARTS:-3}
export EMBER_CHAOS_REBALANCES=${EMBER_CHAOS_REBALANCES:-3}
cd "$root"
echo "chaos: $EMBER_CHAOS_KILLS kills, $EMBER_CHAOS_RESTARTS broker restarts, $EMBER_CHAOS_REBALANCES rebalance rounds" >&2
go test -race -count=1 -timeout 90m -v \
  -run '^(TestChaosCrashCampaign|TestBrokerRestart|TestRedisRestart|TestRebalance|TestLostLeaseDoesNotPublish)$' \
  ./cmd/ember ./router 2>&1 | tee "$work/chaos.log" | grep -E '^(=== RUN|--- |PASS|FAIL|ok|\s+.*RELIABILITY)'
# The crash campaign again with the replica as a static group member
# (kafka.group_instance_id), restarted under the same id: the figures of
# both memberships side by side (docs/RELIABILITY.md).
echo "chaos: $EMBER_CHAOS_KILLS kills, static group membership" >&2
EMBER_CHAOS_STATIC=1 go test -race -count=1 -timeout 60m -v -run '^TestChaosCrashCampaign$' ./cmd/ember 2>&1 \
  | tee "$work/chaos-static.log" | grep -E '^(=== RUN|--- |PASS|FAIL|ok|\s+.*RELIABILITY)'
grep -q '^FAIL' "$work/chaos.log" "$work/chaos-static.log" && exit 1 || true
