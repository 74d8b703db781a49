package main

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"

	ce "github.com/cloudevents/sdk-go/v2/event"
)

// Event is what billing needs of one Ember event: Cinder's notification
// fields, read from the CloudEvent's data.
type Event struct {
	Type    string
	Time    time.Time // the event's time attribute
	Project string    // tenant_id
	Volume  string    // volume_id
	SizeGB  int       // size
	// Audit period of volume.exists.
	PeriodBeginning, PeriodEnding time.Time
}

// Types are the event types billing reads.
var Types = []string{"volume.create.end", "volume.resize.end", "volume.delete.end", "volume.exists"}

// payload is the part of the data billing reads (Cinder's field names).
type payload struct {
	TenantID             string `json:"tenant_id"`
	VolumeID             string `json:"volume_id"`
	Size                 int    `json:"size"`
	AuditPeriodBeginning string `json:"audit_period_beginning"`
	AuditPeriodEnding    string `json:"audit_period_ending"`
}

const cinderTime = "2006-01-02T15:04:05.000000Z"

// FromCloudEvent reads one event.
func FromCloudEvent(e ce.Event) (Event, error) {
	var p payload
	if err := json.Unmarshal(e.Data(), &p); err != nil {
		return Event{}, fmt.Errorf("%s %s: %w", e.Type(), e.ID(), err)
	}
	ev := Event{Type: e.Type(), Time: e.Time(), Project: p.TenantID, Volume: p.VolumeID, SizeGB: p.Size}
	if e.Type() == "volume.exists" {
		var err1, err2 error
		ev.PeriodBeginning, err1 = time.Parse(cinderTime, p.AuditPeriodBeginning)
		ev.PeriodEnding, err2 = time.Parse(cinderTime, p.AuditPeriodEnding)
		if err1 != nil || err2 != nil {
			return Event{}, fmt.Errorf("volume.exists %s: bad audit period %q–%q", e.ID(), p.AuditPeriodBeginning, p.AuditPeriodEnding)
		}
		if ev.Time.IsZero() {
			ev.Time = ev.PeriodEnding
		}
	}
	if ev.Volume == "" || ev.Time.IsZero() {
		return Event{}, fmt.Errorf("%s %s: no volume_id or time", e.Type(), e.ID())
	}
	return ev, nil
}

// step is a volume's size from a time on.
type step struct {
	at   time.Time
	size int
}

// GBHours integrates each volume's size over [from, to) and sums it per
// project. A volume's size changes at its create.end, resize.end and
// delete.end (0). volume.exists fills in a volume whose create was not seen
// (created before the events at hand): it existed with that size since
// its audit period's beginning. It never overrides a size that change
// events gave, since its size is that at publication, after the period.
func GBHours(evs []Event, from, to time.Time) map[string]float64 {
	order := map[string]int{"volume.exists": 0, "volume.create.end": 1, "volume.resize.end": 2, "volume.delete.end": 3}
	byVol := map[string][]Event{}
	for _, e := range evs {
		if _, ok := order[e.Type]; ok {
			byVol[e.Volume] = append(byVol[e.Volume], e)
		}
	}
	out := map[string]float64{}
	for _, es := range byVol {
		sort.SliceStable(es, func(i, j int) bool {
			if !es[i].Time.Equal(es[j].Time) {
				return es[i].Time.Before(es[j].Time)
			}
			return order[es[i].Type] < order[es[j].Type]
		})
		var steps []step
		project := ""
		for _, e := range es {
			if e.Project != "" {
				project = e.Project
			}
			switch e.Type {
			case "volume.create.end", "volume.resize.end":
				steps = append(steps, step{e.Time, e.SizeGB})
			case "volume.delete.end":
				steps = append(steps, step{e.Time, 0})
			case "volume.exists":
				if len(steps) == 0 {
					steps = append(steps, step{e.PeriodBeginning, e.SizeGB})
				}
			}
		}
		total := 0.0
		for i, s := range steps {
			end := to
			if i+1 < len(steps) && steps[i+1].at.Before(to) {
				end = steps[i+1].at
			}
			begin := s.at
			if begin.Before(from) {
				begin = from
			}
			if end.After(begin) {
				total += float64(s.size) * end.Sub(begin).Hours()
			}
		}
		if total > 0 {
			out[project] += total
		}
	}
	return out
}
