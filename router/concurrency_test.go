package router

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/events"
	"github.com/ember-storage/ember/functions"
)

// gatedCreate holds the CreateVolume of one volume until the test opens
// the gate: a long copy, as long as the test wants.
type gatedCreate struct {
	drivers.Driver
	volume  string
	entered chan struct{}
	gate    chan struct{}
}

func (g *gatedCreate) CreateVolume(ctx context.Context, v drivers.Volume) (drivers.ModelUpdate, error) {
	if v.ID == g.volume {
		close(g.entered)
		select {
		case <-g.gate:
		case <-ctx.Done():
			return drivers.ModelUpdate{}, ctx.Err()
		}
	}
	return g.Driver.CreateVolume(ctx, v)
}

// TestOneVolumeInOrderOthersBeside: a create of volume V that runs until
// the test lets it end, then an extend of V sent right behind it, then 50
// creates of other volumes, all on V's partition of the real broker. The
// 50 complete while V's create still runs (nothing waits behind a slow
// request of another volume: no head-of-line blocking), and V's extend
// starts only after V's create ended (order per volume).
func TestOneVolumeInOrderOthersBeside(t *testing.T) {
	slow := uuid.NewString()
	g := &gatedCreate{volume: slow, entered: make(chan struct{}), gate: make(chan struct{})}
	p := newPipeline(t, func(p *pipeline) {
		p.types = []string{events.VolumeRequested, events.VolumeExtendRequested}
	})
	p.extend = func(env *functions.Env) {
		g.Driver = p.driver
		env.Backends["local"] = g
	}
	p.start()
	send := func(typ string, data map[string]any) string {
		rec, err := events.NewInput(typ, "/test", uuid.NewString(), mustJSON(data), time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		p.publish(typ, rec, 0)
		return rec.ID
	}
	create := send(events.VolumeRequested, createData(slow, 1))
	select {
	case <-g.entered:
	case <-time.After(60 * time.Second):
		t.Fatal("the slow create never reached the driver")
	}
	// Right behind it on its topic and partition, a second create of V (a
	// retry by its client, with a new id): it is handed out only after the
	// first one ended. The extend has its own topic; it waits for V's lock,
	// parked, without holding up anything else.
	again := send(events.VolumeRequested, createData(slow, 1))
	extend := send(events.VolumeExtendRequested, map[string]any{"volume_id": slow, "project_id": projA, "new_size_gb": 2})
	var others []string
	for i := 0; i < 50; i++ {
		others = append(others, send(events.VolumeRequested, createData(uuid.NewString(), 1)))
	}
	for _, id := range others {
		p.results.Wait(t, "volume.create.end", id, 1)
	}
	if n := len(p.results.Of("volume.create.end", create)); n != 0 {
		t.Fatal("the slow create ended before the gate opened")
	}
	if len(p.results.Of("volume.resize.start", extend)) != 0 || len(p.results.Of("volume.create.start", again)) != 0 {
		t.Fatal("a later request of the slow volume started while its create ran")
	}
	close(g.gate)
	end := p.results.Wait(t, "volume.create.end", create, 1)[0]
	start := p.results.Wait(t, "volume.resize.start", extend, 1)[0]
	resized := p.results.Wait(t, "volume.resize.end", extend, 1)[0]
	if start.Time.Before(end.Time) || resized.Data.Size != 2 {
		t.Fatalf("extend started at %s, before the create ended at %s (size %d)", start.Time, end.Time, resized.Data.Size)
	}
	if s := p.results.Wait(t, "volume.create.start", again, 1)[0]; s.Time.Before(end.Time) {
		t.Fatalf("the second create of the volume started at %s, before the first ended at %s", s.Time, end.Time)
	}
	t.Logf("50 creates of other volumes on the slow volume's partition ended while it ran; its extend ran after it")
}
