# Ember. Quickstart: `make run` (everything in one process), `make test`.
GO ?= go
BIN := bin/ember

.PHONY: run build test test-short chaos bench fuzz clean

build:
	$(GO) build -o $(BIN) ./cmd/ember

# ember dev: in-process Kafka (kfake) and Redis (miniredis), a local file backend
# (qemu-utils installed first when missing, for snapshots and copies).
run: build
	deploy/dev-deps.sh
	./$(BIN) dev

# Every test, against a real Kafka 4.1 broker and a real redis-server (and the
# real storage components each driver package starts): installs what is
# missing, starts, runs, stops.
test:
	deploy/testenv/test.sh

# The fast set: unit tests and in-process stand-ins only.
test-short:
	$(GO) test -short -race ./...

# The long reliability campaign (docs/RELIABILITY.md): 50 SIGKILLs of
# `ember serve` in a row under load (dynamic, then static group membership), 3 broker restarts, Redis restarts with
# and without persistence, 3 rounds of instances joining and leaving, a lost
# lease. `make test` runs the same tests at small counts (8 kills, 1 round).
chaos:
	deploy/testenv/chaos.sh

bench:
	deploy/testenv/bench.sh

clean:
	rm -rf bin .testenv
