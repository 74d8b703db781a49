package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/ember-storage/ember/drivers"
)

// cmdDev runs everything in one process: an in-process Kafka-protocol broker
// (kfake), an in-process Redis (miniredis) and one file backend. These
// stand-ins are for a first look; production runs `ember serve`.
func cmdDev(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	kafkaAddr := fs.String("kafka", "127.0.0.1:9092", "address of the in-process Kafka broker")
	httpAddr := fs.String("http", "127.0.0.1:8080", "address of /healthz, /readyz and /metrics")
	dataDir := fs.String("data-dir", "./ember-data", "where the local file backend keeps volumes")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log := newLogger(stderr)
	dir, err := filepath.Abs(filepath.Join(*dataDir, "volumes"))
	if err == nil {
		err = os.MkdirAll(dir, 0o755)
	}
	if err != nil {
		fmt.Fprintln(stderr, "ember dev:", err)
		return 1
	}

	cluster, err := kfake.NewCluster(
		kfake.ListenFn(func(network, _ string) (net.Listener, error) { return net.Listen(network, *kafkaAddr) }),
		kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(8),
	)
	if err != nil {
		fmt.Fprintf(stderr, "ember dev: kafka on %s: %v\n", *kafkaAddr, err)
		return 1
	}
	defer cluster.Close()
	mr := miniredis.NewMiniRedis()
	if err := mr.Start(); err != nil {
		fmt.Fprintln(stderr, "ember dev: redis:", err)
		return 1
	}
	defer mr.Close()
	// miniredis expires keys only when told: advance its clock with the wall
	// clock so that lock leases of a killed request run out.
	stopClock := make(chan struct{})
	defer close(stopClock)
	go func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stopClock:
				return
			case <-t.C:
				mr.FastForward(250 * time.Millisecond)
			}
		}
	}()

	cfg := &Config{}
	cfg.Kafka.Brokers = cluster.ListenAddrs()
	cfg.Redis.URL = "redis://" + mr.Addr() + "/0"
	cfg.HTTP = *httpAddr
	opts := map[string]any{"dir": dir, "format": "raw"}
	// Attach exports through tgtd; without its tools, say so at once
	// (not_supported) rather than retrying a daemon that is not there.
	attach := "iSCSI through tgt (tgtd must be running)"
	if _, err := exec.LookPath("tgtadm"); err != nil {
		opts["target_helper"] = "none"
		attach = "not supported here (no tgtadm: install Debian's tgt and start tgtd)"
	}
	cfg.Backends = []drivers.Backend{{Name: "local", Driver: "file", Host: "local", Options: opts}}
	cfg.DefaultBackend = "local"
	cfg.Backups.Dir = filepath.Join(filepath.Dir(dir), "backups")
	cfg.Images.Dir = filepath.Join(filepath.Dir(dir), "images")
	cfg.Images.AllowedPrefixes = []string{"file://" + cfg.Images.Dir + "/"}
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		fmt.Fprintln(stderr, "ember dev:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rt, err := newRuntime(cfg, nil, log)
	if err != nil {
		fmt.Fprintln(stderr, "ember dev:", err)
		return 1
	}
	if err := rt.serveHTTP(cfg.HTTP); err != nil {
		rt.close()
		fmt.Fprintln(stderr, "ember dev:", err)
		return 1
	}
	self := os.Args[0] // the command to type, e.g. ./bin/ember
	go func() {
		select {
		case <-rt.svc.Running():
		case <-ctx.Done():
			return
		}
		fmt.Fprintf(stdout, `
Ember dev is running (in-process stand-ins: kfake for Kafka, miniredis for Redis).
  kafka    %s
  redis    %s
  volumes  %s  (backend "local", driver file; backups and images beside it)
  http     http://%s/healthz  /readyz  /metrics
  attach   %s

In another shell, create a 1 GB volume and wait for its result:
  echo '{"volume_id":"%s","project_id":"%s","user_id":"%s","size_gb":1}' \
    | %s emit volume.requested --data - --wait
Delete it:
  echo '{"volume_id":"%s","project_id":"%s"}' | %s emit volume.deleted --data - --wait
Stop with Ctrl-C.
`, cfg.Kafka.Brokers[0], mr.Addr(), dir, rt.httpLn.Addr(), attach, exampleVolume, exampleProject, exampleUser, self, exampleVolume, exampleProject, self)
	}()
	if err := rt.run(ctx); err != nil {
		fmt.Fprintln(stderr, "ember dev:", err)
		return 1
	}
	return 0
}

const (
	exampleVolume  = "5b0f0a4e-3c1d-4f6e-9a8b-7c6d5e4f3a2b"
	exampleProject = "8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a"
	exampleUser    = "1a2b3c4d-5e6f-4a8b-9c0d-1e2f3a4b5c6d"
)
