# Ember. Quickstart: `make run` (everything in one process), `make test`.
GO ?= go
BIN := bin/ember

.PHONY: run build test test-short bench fuzz clean

build:
	$(GO) build -o $(BIN) ./cmd/ember

# ember dev: in-process Kafka (kfake) and Redis (miniredis), a local file backend.
run: build
	./$(BIN) dev

# Every test, against a real Kafka 4.1 broker and a real redis-server (and the
# real storage components each driver package starts): installs what is
# missing, starts, runs, stops.
test:
	deploy/testenv/test.sh

# The fast set: unit tests and in-process stand-ins only.
test-short:
	$(GO) test -short -race ./...

bench:
	deploy/testenv/bench.sh

clean:
	rm -rf bin .testenv
