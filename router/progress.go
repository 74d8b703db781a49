package router

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/ember-storage/ember/events"
)

// progress returns the callback that publishes <op>.progress at most once a
// second (and always for 100%). Progress results are not stored: a re-run
// reports its own, with the same id for the same percent.
func (d *delivery) progress(ctx context.Context, in *events.Request) func(int) {
	var mu sync.Mutex
	var last time.Time
	lastPct := -1
	clock := d.now
	if clock == nil {
		clock = time.Now
	}
	return func(pct int) {
		mu.Lock()
		defer mu.Unlock()
		now := clock()
		if pct <= lastPct || (pct < 100 && now.Sub(last) < time.Second) || ctx.Err() != nil {
			return
		}
		last, lastPct = now, pct
		p := pct
		rec, err := events.Build(in, events.Result{
			Type: events.ResultType(in.Type(), events.PhaseProgress), Source: "/ember/" + d.env.Instance,
			Discriminator: strconv.Itoa(pct), Data: events.ResultData{VolumeID: in.VolumeID(), Percent: &p},
		}, d.cfg.OutputMode)
		if err == nil {
			err = d.publish(rec)
		}
		if err != nil {
			d.log.Warn("progress not published", "err", err)
		}
	}
}
