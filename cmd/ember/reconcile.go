package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"sort"
	"syscall"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/router"
	"github.com/ember-storage/ember/router/reconcile"
)

// cmdReconcile compares each configured backend's volume objects with the
// registry (router/reconcile) and prints what does not match; --remove
// deletes the orphans. Exit 0: clean; 1: orphans, missing, unregistered or unknown
// volumes remain, or the sweep failed; 2: usage.
func cmdReconcile(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("reconcile", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "configuration file: backends and Redis (required)")
	remove := fs.Bool("remove", false, "delete orphans (under each volume's lock, after re-reading its record)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	all := fs.Bool("all", false, "print ok volumes too")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *configPath == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: ember reconcile --config FILE [--remove] [--json] [--all]")
		return 2
	}
	cfg, err := loadConfig(*configPath)
	if err != nil {
		fmt.Fprintln(stderr, "ember reconcile:", err)
		return 2
	}
	backends := map[string]drivers.Driver{}
	for _, b := range cfg.Backends {
		ex, err := executorFor(cfg, b)
		if err != nil {
			fmt.Fprintln(stderr, "ember reconcile:", err)
			return 2
		}
		d, err := drivers.Open(b, ex)
		if err != nil {
			fmt.Fprintf(stderr, "ember reconcile: backend %q: %v\n", b.Name, err)
			return 2
		}
		backends[b.Name] = d
	}
	rdb, err := redisClient(cfg)
	if err != nil {
		fmt.Fprintln(stderr, "ember reconcile:", err)
		return 2
	}
	defer rdb.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	guard := router.NewGuard(rdb, cfg.Redis.KeyPrefix, cfg.Delivery.Lease, cfg.Delivery.DoneTTL)
	rep, err := reconcile.Reconcile(ctx, guard, backends, reconcile.Options{Remove: *remove, Log: newLogger(stderr)})
	if err != nil {
		fmt.Fprintln(stderr, "ember reconcile:", err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintln(stderr, "ember reconcile:", err)
			return 1
		}
	} else {
		printReconcile(stdout, rep, *all)
	}
	if !rep.Clean() {
		return 1
	}
	return 0
}

// printReconcile prints one tab-separated line per finding (backend,
// volume id, class, reason), then one per backend that was not swept, then
// a summary line.
func printReconcile(w io.Writer, rep reconcile.Report, all bool) {
	for _, f := range rep.Findings {
		if f.Class == reconcile.OK && !all {
			continue
		}
		reason := f.Reason
		if f.Removed {
			reason += "; removed"
		}
		if f.Error != "" {
			reason += "; removal failed: " + f.Error
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", f.Backend, f.VolumeID, f.Class, reason)
	}
	failed := 0
	for _, b := range rep.Backends {
		switch {
		case b.Error != "":
			failed++
			fmt.Fprintf(w, "%s\t-\terror\tlisting failed: %s\n", b.Name, b.Error)
		case b.Skipped != "":
			fmt.Fprintf(w, "%s\t-\tskipped\t%s\n", b.Name, b.Skipped)
		}
	}
	classes := make([]string, 0, len(rep.Counts))
	for c := range rep.Counts {
		classes = append(classes, string(c))
	}
	sort.Strings(classes)
	summary := ""
	for _, c := range classes {
		summary += fmt.Sprintf(" %s=%d", c, rep.Counts[reconcile.Class(c)])
	}
	state := "clean"
	if !rep.Clean() {
		state = "not clean"
	}
	fmt.Fprintf(w, "reconcile: %s: %d backends (%d failed to list), %d volumes:%s removed=%d\n",
		state, len(rep.Backends), failed, len(rep.Findings), summary, rep.Removed)
}
