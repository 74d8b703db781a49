package router

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/ember-storage/ember/events"
	"github.com/ember-storage/ember/functions"
)

// heldLock is a source volume's lock held for one request.
type heldLock struct {
	volumeID, lock string
	at             time.Time
}

// lockSources locks the volumes a Sourced function reads besides its own,
// in id order, and puts their records in req.Sources. If one is busy, the
// ones taken are given back and ErrBusy returned: the request waits its
// turn like any other (two creates that each hold the other's source both
// back off, with jitter, instead of deadlocking).
func (d *delivery) lockSources(ctx context.Context, in *events.Request, volumeID, reqKey string, req *functions.Request) ([]heldLock, error) {
	sf, ok := d.fn.(functions.Sourced)
	if !ok {
		return nil, nil
	}
	ids, err := sf.Sources(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("sources of %s: %w", volumeID, err)
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	var held []heldLock
	req.Sources = map[string]*functions.Volume{}
	for _, id := range ids {
		if id == volumeID {
			req.Sources[id] = req.Volume
			continue
		}
		c, err := d.guard.Lock(ctx, id, reqKey, d.owner)
		if err == nil && c.State == Busy {
			err = ErrBusy
		}
		if err != nil {
			d.releaseSources(ctx, held)
			return nil, err
		}
		held = append(held, heldLock{id, c.Lock, c.At})
		var v *functions.Volume
		if c.Volume != nil {
			v = new(functions.Volume)
			if err := json.Unmarshal(c.Volume, v); err != nil {
				d.releaseSources(ctx, held)
				return nil, fmt.Errorf("registry record of %s: %w", id, err)
			}
		}
		req.Sources[id] = v
	}
	return held, nil
}

func (d *delivery) releaseSources(ctx context.Context, held []heldLock) {
	for _, h := range held {
		_ = d.guard.Release(context.WithoutCancel(ctx), h.volumeID, h.lock)
	}
}
