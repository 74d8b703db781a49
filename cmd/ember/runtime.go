package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/drivers/backupstore"
	"github.com/ember-storage/ember/drivers/imagestore"
	"github.com/ember-storage/ember/drivers/sshexec"
	"github.com/ember-storage/ember/events"
	"github.com/ember-storage/ember/functions"
	"github.com/ember-storage/ember/router"
)

// runtime is one running Ember: its functions, delivery and HTTP endpoints.
type runtime struct {
	cfg     *Config
	rdb     redis.UniversalClient
	svc     *router.Service
	http    *http.Server
	httpLn  net.Listener
	reg     *prometheus.Registry
	log     *slog.Logger
	onClose []func()
	timers  timerSet // backend stats and audits (timers.go)
}

// newRuntime builds everything the config describes; only names in
// only (when not empty) are served.
func newRuntime(cfg *Config, only []string, log *slog.Logger) (*runtime, error) {
	rt := &runtime{cfg: cfg, log: log, reg: prometheus.NewRegistry()}
	rt.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	rdb, err := redisClient(cfg)
	if err != nil {
		return nil, err
	}
	rt.rdb = rdb
	env := &functions.Env{Instance: cfg.Instance, Backends: map[string]drivers.Driver{},
		VolumeTypes: cfg.VolumeTypes, DefaultBackend: cfg.DefaultBackend}
	for _, b := range cfg.Backends {
		ex, err := executorFor(cfg, b)
		if err != nil {
			return nil, err
		}
		d, err := drivers.Open(b, drivers.Bounded(ex, b.MaxCommands))
		if err != nil {
			return nil, err
		}
		env.Backends[b.Name] = d
	}
	sched := newScheduler(rdb, cfg)
	env.Scheduler = sched
	if err := cfg.stores(env); err != nil {
		return nil, err
	}
	fns, err := pickFunctions(functions.All(env), only)
	if err != nil {
		return nil, err
	}
	guard := router.NewGuard(rdb, cfg.Redis.KeyPrefix, cfg.Delivery.Lease, cfg.Delivery.DoneTTL)
	rcfg := router.Config{
		Brokers: cfg.Kafka.Brokers, TopicPrefix: cfg.Kafka.TopicPrefix, GroupPrefix: cfg.Kafka.GroupPrefix,
		GroupInstanceID: cfg.Kafka.GroupInstanceID,
		OutputMode:      events.Mode(cfg.Kafka.OutputMode), Partitions: cfg.Kafka.Partitions,
		ReplicationFactor: cfg.Kafka.ReplicationFactor, NackDelay: cfg.Delivery.NackDelay,
		MaxInFlight: cfg.Delivery.MaxInFlight,
		Retry: router.RetryPolicy{Attempts: cfg.Delivery.Retry.Attempts, Initial: cfg.Delivery.Retry.Initial,
			Ceiling: cfg.Delivery.Retry.Ceiling},
		CrashAt: getenv(router.CrashAtEnv),
	}
	if err := rcfg.Secure(cfg.Kafka.KafkaSecurity); err != nil {
		_ = rdb.Close()
		return nil, err
	}
	svc, err := router.New(rcfg, guard, env, fns, router.NewMetrics(rt.reg), log)
	if err != nil {
		return nil, err
	}
	rt.svc = svc
	if err := rt.setupTimers(rcfg, env, sched); err != nil {
		_ = svc.Close()
		return nil, err
	}
	log.Info("functions ready", "functions", strings.Join(functions.Types(fns), ","), "backends", len(env.Backends),
		"brokers", strings.Join(cfg.Kafka.Brokers, ","))
	return rt, nil
}

func redisClient(cfg *Config) (redis.UniversalClient, error) {
	if len(cfg.Redis.Cluster.Addrs) > 0 {
		copt := &redis.ClusterOptions{Addrs: cfg.Redis.Cluster.Addrs}
		if err := cfg.secureRedisCluster(copt); err != nil {
			return nil, err
		}
		return redis.NewClusterClient(copt), nil
	}
	opt, err := redis.ParseURL(cfg.Redis.URL)
	if err != nil {
		return nil, fmt.Errorf("redis.url: %w", err)
	}
	if err := cfg.secureRedis(opt); err != nil {
		return nil, err
	}
	return redis.NewClient(opt), nil
}

// stores adds the configured backup and image stores to env.
func (cfg *Config) stores(env *functions.Env) error {
	if cfg.Backups.Dir != "" {
		st := &backupstore.Store{Dir: cfg.Backups.Dir, ChunkSize: cfg.Backups.ChunkSize, Compression: cfg.Backups.Compression}
		if err := st.Validate(); err != nil {
			return fmt.Errorf("backups: %w", err)
		}
		env.Backups = st
	}
	if cfg.Images.Dir != "" {
		st := &imagestore.Store{Dir: cfg.Images.Dir}
		if err := st.Validate(); err != nil {
			return fmt.Errorf("images: %w", err)
		}
		env.Images = st
	}
	if len(cfg.Images.AllowedPrefixes) > 0 {
		env.Fetcher = &imagestore.Fetcher{AllowedPrefixes: cfg.Images.AllowedPrefixes, TempDir: cfg.Images.TempDir}
	}
	return nil
}

// executorFor returns the executor of a backend's host.
func executorFor(cfg *Config, b drivers.Backend) (drivers.Executor, error) {
	timeout := cfg.Delivery.CommandTimeout
	switch {
	case b.Host == "" || b.Host == "local":
		return drivers.LocalExecutor{DefaultTimeout: timeout}, nil
	case strings.HasPrefix(b.Host, "ssh://"):
		if cfg.SSH.KeyFile == "" || cfg.SSH.KnownHostsFile == "" {
			return nil, fmt.Errorf("backend %q: host %s needs ssh.key_file and ssh.known_hosts_file", b.Name, b.Host)
		}
		ex, err := sshexec.New(sshexec.Config{URL: b.Host, KeyFile: cfg.SSH.KeyFile,
			KnownHostsFile: cfg.SSH.KnownHostsFile, DefaultTimeout: timeout})
		if err != nil {
			return nil, fmt.Errorf("backend %q: %w", b.Name, err)
		}
		return ex, nil
	}
	return nil, fmt.Errorf("backend %q: host %q is neither local nor ssh://user@host:port", b.Name, b.Host)
}

// pickFunctions keeps the functions --functions names.
func pickFunctions(all map[string]functions.Function, only []string) (map[string]functions.Function, error) {
	if len(only) == 0 {
		return all, nil
	}
	out := map[string]functions.Function{}
	for _, name := range only {
		f, ok := all[name]
		if !ok {
			return nil, fmt.Errorf("--functions: %q is not a function here (have: %s)", name, strings.Join(functions.Types(all), ", "))
		}
		out[name] = f
	}
	return out, nil
}

// serveHTTP starts /healthz (the process is alive), /readyz (consuming,
// Redis answers) and /metrics.
func (rt *runtime) serveHTTP(addr string) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if !rt.svc.IsRunning() {
			http.Error(w, "not consuming yet", http.StatusServiceUnavailable)
			return
		}
		if err := rt.rdb.Ping(ctx).Err(); err != nil {
			http.Error(w, "redis: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.Handle("/metrics", promhttp.HandlerFor(rt.reg, promhttp.HandlerOpts{}))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("http %s: %w", addr, err)
	}
	rt.httpLn = ln
	rt.http = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := rt.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			rt.log.Error("http", "err", err)
		}
	}()
	return nil
}

// run consumes until ctx ends, then shuts down in order.
func (rt *runtime) run(ctx context.Context) error {
	stopTimers := rt.startTimers(ctx)
	err := rt.svc.Run(ctx)
	stopTimers()
	rt.close()
	return err
}

func (rt *runtime) close() {
	_ = rt.svc.Close()
	if rt.http != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = rt.http.Shutdown(sctx)
		cancel()
	}
	_ = rt.rdb.Close()
	for _, f := range rt.onClose {
		f()
	}
}
