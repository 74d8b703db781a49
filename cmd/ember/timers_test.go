package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestTimerConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ember.yaml")
	if err := os.WriteFile(path, []byte("scheduler: {stats_interval: 30s}\naudit: {period: 10m}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.Scheduler.StatsInterval != 30*time.Second || c.Scheduler.StaleAfter != 90*time.Second || c.Audit.Period != 10*time.Minute {
		t.Fatalf("timers %+v %+v", c.Scheduler, c.Audit)
	}
	t.Setenv("EMBER_SCHEDULER_STALE_AFTER", "5m")
	t.Setenv("EMBER_AUDIT_PERIOD", "24h")
	if c, err = loadConfig(path); err != nil || c.Scheduler.StaleAfter != 5*time.Minute || c.Audit.Period != 24*time.Hour {
		t.Fatalf("env overrides: %+v %+v %v", c.Scheduler, c.Audit, err)
	}
	t.Setenv("EMBER_AUDIT_PERIOD", "hourly")
	if _, err = loadConfig(path); err == nil || !strings.Contains(err.Error(), "EMBER_AUDIT_PERIOD") {
		t.Fatalf("bad duration: %v", err)
	}
	t.Setenv("EMBER_AUDIT_PERIOD", "")
	t.Setenv("EMBER_SCHEDULER_STALE_AFTER", "10s")
	if _, err = loadConfig(path); err == nil || !strings.Contains(err.Error(), "stale_after") {
		t.Fatalf("stale_after below the interval: %v", err)
	}
	c = &Config{}
	c.setDefaults()
	if c.Scheduler.StatsInterval != time.Minute || c.Scheduler.StaleAfter != 3*time.Minute || c.Audit.Period != time.Hour {
		t.Fatalf("defaults %+v %+v", c.Scheduler, c.Audit)
	}
}
