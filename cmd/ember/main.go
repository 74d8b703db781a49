// Command ember runs Ember's functions (serve), all of Ember in one process
// for a first look (dev), and the client side: emit a request and wait for
// its results, inspect and replay dead letters.
package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"

	"github.com/Shopify/sarama"
)

// version is set with -ldflags "-X main.version=…"; otherwise the module's.
var version = ""

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

const usage = `usage: ember <command> [flags]

commands:
  dev      everything in one process: in-process Kafka and Redis, a local file backend
  serve    run the functions against real Kafka and Redis (--config ember.yaml)
  emit     publish one request; with --wait print its results
  dlq      list or replay dead letters
  reconcile compare backends with the registry; report orphans (--remove deletes them)
  version  print the version
`

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "dev":
		return cmdDev(rest, stdout, stderr)
	case "serve":
		return cmdServe(rest, stderr)
	case "emit":
		return cmdEmit(rest, stdin, stdout, stderr)
	case "dlq":
		return cmdDLQ(rest, stdout, stderr)
	case "reconcile":
		return cmdReconcile(rest, stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "ember", versionString())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "ember: unknown command %q\n\n%s", cmd, usage)
	return 2
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		v := bi.Main.Version
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " (" + s.Value[:12] + ")"
			}
		}
		return v
	}
	return "unknown"
}

func newLogger(w io.Writer) *slog.Logger {
	level := slog.LevelInfo
	switch strings.ToLower(os.Getenv("EMBER_LOG_LEVEL")) {
	case "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	}
	h := slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})
	if level == slog.LevelDebug {
		// The Kafka client's own account of joins, syncs, heartbeats and
		// session ends: what a stalled consumer group needs to be read.
		sarama.Logger = slog.NewLogLogger(h.WithAttrs([]slog.Attr{slog.String("component", "sarama")}), slog.LevelDebug)
	}
	return slog.New(h)
}

func getenv(k string) string { return os.Getenv(k) }

// splitList splits a comma-separated flag value.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
