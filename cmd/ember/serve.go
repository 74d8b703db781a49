package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"syscall"
)

func cmdServe(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "ember.yaml", "configuration file (SPEC §6)")
	only := fs.String("functions", "", "comma-separated input types to serve (default: all)")
	httpAddr := fs.String("http", "", "address of /healthz, /readyz and /metrics (default from config, 127.0.0.1:8080)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log := newLogger(stderr)
	cfg, err := loadConfig(*configPath)
	if err != nil {
		fmt.Fprintln(stderr, "ember serve:", err)
		return 1
	}
	if *httpAddr != "" {
		cfg.HTTP = *httpAddr
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rt, err := newRuntime(cfg, splitList(*only), log)
	if err != nil {
		fmt.Fprintln(stderr, "ember serve:", err)
		return 1
	}
	if err := rt.serveHTTP(cfg.HTTP); err != nil {
		rt.close()
		fmt.Fprintln(stderr, "ember serve:", err)
		return 1
	}
	log.Info("serving", "http", rt.httpLn.Addr().String())
	if err := rt.run(ctx); err != nil {
		fmt.Fprintln(stderr, "ember serve:", err)
		return 1
	}
	return 0
}
