package main

import (
	"bytes"
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/drivers/file"
	"github.com/ember-storage/ember/events"
	"github.com/ember-storage/ember/internal/pipetest"
)

const (
	projA = "0c9d5c3f2b1a4e8d9f7a6b5c4d3e2f10"
	projB = "1d9d5c3f2b1a4e8d9f7a6b5c4d3e2f11"
	userA = "3d2c1b0a-9f8e-4d7c-8b6a-5f4e3d2c1b0a"
)

// TestScriptedSequenceGBHours runs the script through the real
// pipeline (Kafka, Redis, the file driver, the audit timer) with the
// functions' clock set by the test, then reads the topics as the billing
// job does:
//
//	10:00 create 10 GB         (project A)
//	11:00 audit [10:00, 11:00), then extend to 20 GB
//	12:00 audit [11:00, 12:00), then delete
//	13:00 audit [12:00, 13:00)
//
// By hand: 10 GB × 1 h + 20 GB × 1 h = 30 GB-hours for 10:00–13:00, and
// 10 × 0.5 + 20 × 0.5 = 15 for 10:30–11:30.
func TestScriptedSequenceGBHours(t *testing.T) {
	dir := t.TempDir()
	d, err := file.Open(drivers.Backend{Name: "local", Driver: "file", Options: map[string]any{"dir": dir}},
		drivers.LocalExecutor{DefaultTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	p := pipetest.New(t, map[string]drivers.Driver{"local": d}, events.VolumeRequested, events.VolumeExtendRequested, events.VolumeDeleted)
	ctx := context.Background()
	if err := p.Stats(time.Hour).Once(ctx); err != nil {
		t.Fatal(err)
	}
	p.Start()
	audit := p.Audit(time.Hour)
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	vol := uuid.NewString()

	p.SetNow(t0)
	p.Do(events.VolumeRequested, map[string]any{"volume_id": vol, "project_id": projA, "user_id": userA, "size_gb": 10})
	p.SetNow(t0.Add(time.Hour))
	if n, err := audit.Publish(ctx, t0, t0.Add(time.Hour)); err != nil || n != 1 {
		t.Fatalf("audit 10:00: %d %v", n, err)
	}
	if r := p.Do(events.VolumeExtendRequested, map[string]any{"volume_id": vol, "project_id": projA, "new_size_gb": 20}); r.Data.Size != 20 {
		t.Fatalf("resize.end size %d", r.Data.Size)
	}
	p.SetNow(t0.Add(2 * time.Hour))
	if n, err := audit.Publish(ctx, t0.Add(time.Hour), t0.Add(2*time.Hour)); err != nil || n != 1 {
		t.Fatalf("audit 11:00: %d %v", n, err)
	}
	p.Do(events.VolumeDeleted, map[string]any{"volume_id": vol, "project_id": projA})
	p.SetNow(t0.Add(3 * time.Hour))
	if n, err := audit.Publish(ctx, t0.Add(2*time.Hour), t0.Add(3*time.Hour)); err != nil || n != 0 {
		t.Fatalf("audit 12:00: %d %v (a deleted volume is not audited)", n, err)
	}
	p.Results.Wait(t, events.VolumeExists, "", 2)

	evs, err := Read(p.Cfg.Brokers, p.Cfg.TopicPrefix)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 5 {
		t.Fatalf("read %d events, want create.end, 2 × exists, resize.end, delete.end: %+v", len(evs), evs)
	}
	for _, c := range []struct {
		from, to time.Time
		want     float64
	}{
		{t0, t0.Add(3 * time.Hour), 30},
		{t0.Add(30 * time.Minute), t0.Add(90 * time.Minute), 15},
		{t0.Add(-24 * time.Hour), t0.Add(24 * time.Hour), 30},
		{t0.Add(2 * time.Hour), t0.Add(3 * time.Hour), 0},
	} {
		got := GBHours(evs, c.from, c.to)[projA]
		if math.Abs(got-c.want) > 1e-9 {
			t.Errorf("GB-hours %s–%s = %v, want %v", c.from.Format("15:04"), c.to.Format("15:04"), got, c.want)
		}
	}
	var out bytes.Buffer
	if code := run([]string{"--kafka", strings.Join(p.Cfg.Brokers, ","), "--topic-prefix", p.Cfg.TopicPrefix,
		"--from", "2026-03-01T10:00:00Z", "--to", "2026-03-01T13:00:00Z"}, &out, &out); code != 0 {
		t.Fatalf("billing exited %d: %s", code, out.String())
	}
	if !strings.Contains(out.String(), projA+"\t30.000\n") {
		t.Fatalf("billing printed:\n%s", out.String())
	}
	t.Logf("billing printed:\n%s", out.String())
}

// TestExistsFillsInAMissedCreate: a volume whose create is older than the
// events at hand is billed from its first audit period on.
func TestExistsFillsInAMissedCreate(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	h := time.Hour
	evs := []Event{
		{Type: "volume.exists", Time: t0.Add(h), Project: projB, Volume: "v", SizeGB: 5, PeriodBeginning: t0, PeriodEnding: t0.Add(h)},
		{Type: "volume.exists", Time: t0.Add(2 * h), Project: projB, Volume: "v", SizeGB: 5, PeriodBeginning: t0.Add(h), PeriodEnding: t0.Add(2 * h)},
		{Type: "volume.resize.end", Time: t0.Add(150 * time.Minute), Project: projB, Volume: "v", SizeGB: 8},
		// An exists published after the resize reports the new size; it
		// does not rewrite the history the change events gave.
		{Type: "volume.exists", Time: t0.Add(3 * h), Project: projB, Volume: "v", SizeGB: 8, PeriodBeginning: t0.Add(2 * h), PeriodEnding: t0.Add(3 * h)},
		{Type: "volume.delete.end", Time: t0.Add(3 * h), Project: projB, Volume: "v", SizeGB: 8},
	}
	// 5 GB from 10:00 to 12:30, 8 GB to 13:00: 12.5 + 4 = 16.5.
	if got := GBHours(evs, t0.Add(-h), t0.Add(5*h))[projB]; got != 16.5 {
		t.Fatalf("GB-hours %v, want 16.5", got)
	}
}
