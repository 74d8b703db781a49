#!/usr/bin/env bash
# `make test`: install what the tests need, start a real Kafka 4.1 broker and
# a real redis-server, run every test with the race detector, stop them.
# A component that cannot start fails the run.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
here="$root/deploy/testenv"
work="$root/.testenv"
kport=${EMBER_TEST_KAFKA_PORT:-19092}
rport=${EMBER_TEST_REDIS_PORT:-16379}

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
cd "$root"
echo "testenv: gofmt, go vet" >&2
unformatted=$(gofmt -l . | grep -v '^.testenv/' || true)
if [ -n "$unformatted" ]; then echo "gofmt needed:"; echo "$unformatted"; exit 1; fi
go vet ./...
echo "testenv: go test -race ./..." >&2
go test -race -count=1 -timeout 30m ${EMBER_TEST_FLAGS:-} ./...
# Budgets are execution counts, not durations: with a duration, Go 1.26's
# fuzz coordinator can report a spurious "context deadline exceeded" failure
# at the deadline on a loaded machine (golang/go#75804, fixed in Go 1.27).
echo "testenv: bounded fuzzing of the envelope decoder" >&2
go test -run '^$' -fuzz '^FuzzDecode$' -fuzztime "${EMBER_FUZZTIME:-400000x}" ./events/
# One target per payload validator (events/fuzz_payload_test.go); -fuzz takes
# one target at a time. New crashers land in events/testdata/fuzz/<Target>/.
targets=$(go test -list '^Fuzz' ./events/ | grep '^Fuzz' | grep -v '^FuzzDecode$')
if [ -z "$targets" ]; then echo "testenv: no payload fuzz targets found in ./events" >&2; exit 1; fi
for target in $targets; do
  echo "testenv: bounded fuzzing of $target" >&2
  go test -run '^$' -fuzz "^$target\$" -fuzztime "${EMBER_PAYLOAD_FUZZTIME:-150000x}" ./events/
done
