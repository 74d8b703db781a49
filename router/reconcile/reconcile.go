// Package reconcile is the sweep that closes, after the fact, what the
// fencing token cannot stop (DELIVERY.md): a storage command that a stale
// owner launched may land after another owner moved on, and leave an object
// that no registry record accounts for. Reconcile compares each backend's
// volume objects (drivers.Lister) with the registry and reports what does
// not match; when asked, it removes orphans, one at a time, under the
// volume's lock and only after reading the record again under it.
//
// Safety rules:
//   - Nothing listed is removed unless it is an orphan both in the sweep and
//     in the record re-read under the volume's lock (Guard.Lock), taken with
//     the sweep's own owner; a volume whose lock is held is skipped.
//   - An object with no record at all is unregistered, never an orphan:
//     after a Redis that lost its data every live volume looks like that.
//   - A listing error makes no finding: an object that is not listed is
//     never acted on, and "missing" (a record without its object) is only
//     ever reported.
//   - An object whose record lives on another backend is an orphan only when
//     that backend is configured here and reports another storage location
//     (GetVolumeStats' location_info): two backend entries over one storage
//     would otherwise see each other's volumes as orphans.
package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/google/uuid"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/functions"
	"github.com/ember-storage/ember/router"
	"github.com/ember-storage/ember/router/timers"
)

// Class is what the sweep found of one volume on one backend.
type Class string

const (
	// OK: the object belongs to a record on this backend.
	OK Class = "ok"
	// Orphan: a tombstone, a record on another backend that is not
	// migrating away from this one, or a create that failed before it was
	// placed. What --remove deletes.
	Orphan Class = "orphan"
	// Unregistered: no record at all. Ember writes a volume's record when
	// its first create completes and never deletes it (a delete leaves a
	// tombstone), so this is an object Ember did not make (a Cinder volume
	// on a shared volume group), a create still between its driver call and
	// its commit, or a volume whose record was lost with Redis (a Redis
	// without persistence restarted empty: every live volume is then here).
	// Reported, never removed: only an operator can tell which.
	Unregistered Class = "unregistered"
	// InFlight: the volume's lock is held; an operation is under way.
	InFlight Class = "in_flight"
	// Migrating: a migration moved the volume away from this backend; its
	// second step deletes this copy.
	Migrating Class = "migrating"
	// Missing: a live record (available, in-use) on this backend whose
	// object is not there. Reported only, never acted on.
	Missing Class = "missing"
	// Unknown: the sweep cannot tell (an unreadable record, a record on a
	// backend not configured here, a storage location it could not read).
	// Never acted on.
	Unknown Class = "unknown"
)

// Finding is one volume on one backend.
type Finding struct {
	Backend  string `json:"backend"`
	VolumeID string `json:"volume_id"`
	Class    Class  `json:"class"`
	Reason   string `json:"reason"`
	// Removed: the orphan was deleted from the backend.
	Removed bool `json:"removed,omitempty"`
	// Error is why a removal failed.
	Error string `json:"error,omitempty"`
}

// BackendReport is one backend's part of the sweep.
type BackendReport struct {
	Name   string `json:"name"`
	Listed int    `json:"listed"`
	// Skipped says why the backend was not swept (its driver cannot list).
	Skipped string `json:"skipped,omitempty"`
	// Error is why its listing failed.
	Error string `json:"error,omitempty"`
}

// Report is the outcome of a sweep.
type Report struct {
	Backends []BackendReport `json:"backends"`
	// Findings, by backend then volume id; ok volumes included.
	Findings []Finding     `json:"findings"`
	Counts   map[Class]int `json:"counts"`
	Removed  int           `json:"removed"`
}

// Clean reports whether nothing needs an operator: no orphan left, nothing
// missing, unregistered or unknown, no error.
func (r Report) Clean() bool {
	for _, b := range r.Backends {
		if b.Error != "" {
			return false
		}
	}
	for _, f := range r.Findings {
		if f.Error != "" || f.Class == Missing || f.Class == Unknown || f.Class == Unregistered || (f.Class == Orphan && !f.Removed) {
			return false
		}
	}
	return true
}

// Options configure a sweep.
type Options struct {
	// Remove deletes orphans through their backend's driver.
	Remove bool
	// Owner names the sweep in the locks it takes (default
	// "reconcile-<uuid>"); it must not contain '|'.
	Owner string
	Log   *slog.Logger
}

// LockTag is the request part of the locks the sweep takes (Guard.Lock).
const LockTag = "reconcile"

// Reconcile sweeps every backend that is a drivers.Lister. It fails only
// when the registry cannot be read; a backend that cannot be listed is
// reported in its BackendReport.
func Reconcile(ctx context.Context, g *router.Guard, backends map[string]drivers.Driver, opts Options) (Report, error) {
	if opts.Owner == "" {
		opts.Owner = "reconcile-" + uuid.NewString()
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	s := &sweep{g: g, backends: backends, opts: opts, locs: map[string]location{}}
	return s.run(ctx)
}

type sweep struct {
	g        *router.Guard
	backends map[string]drivers.Driver
	opts     Options
	locs     map[string]location // storage location by backend, read when needed
}

type location struct {
	info string
	err  error
}

func (s *sweep) run(ctx context.Context) (Report, error) {
	rep := Report{Findings: []Finding{}, Counts: map[Class]int{}}
	names := make([]string, 0, len(s.backends))
	for n := range s.backends {
		names = append(names, n)
	}
	sort.Strings(names)
	// List first, then read the registry: a volume created in between has
	// its record by then, and cannot pass for an orphan.
	listed := map[string]map[string]bool{}
	for _, n := range names {
		br := BackendReport{Name: n}
		ids, err := s.list(ctx, n)
		switch {
		case errors.Is(err, errNotLister):
			br.Skipped = "its driver cannot list its volumes"
		case err != nil:
			br.Error = err.Error()
			s.opts.Log.Warn("reconcile: list", "backend", n, "err", err)
		default:
			br.Listed = len(ids)
			listed[n] = set(ids)
		}
		rep.Backends = append(rep.Backends, br)
	}
	vols, err := (&timers.Audit{RDB: s.g.Client(), Prefix: s.g.Prefix(), Log: s.opts.Log}).Registry(ctx)
	if err != nil {
		return rep, fmt.Errorf("reconcile: %w", err)
	}
	registry := make(map[string]*functions.Volume, len(vols))
	for _, v := range vols {
		registry[v.ID] = v
	}

	for _, n := range names {
		for _, id := range sorted(listed[n]) {
			f, err := s.classifyListed(ctx, n, id, registry)
			if err != nil {
				return rep, err
			}
			rep.Findings = append(rep.Findings, f)
		}
		missing, err := s.missing(ctx, n, listed, vols)
		if err != nil {
			return rep, err
		}
		rep.Findings = append(rep.Findings, missing...)
	}
	sort.SliceStable(rep.Findings, func(i, j int) bool {
		a, b := rep.Findings[i], rep.Findings[j]
		if a.Backend != b.Backend {
			return a.Backend < b.Backend
		}
		return a.VolumeID < b.VolumeID
	})

	if s.opts.Remove {
		for i := range rep.Findings {
			if rep.Findings[i].Class == Orphan {
				s.remove(ctx, &rep.Findings[i])
			}
		}
	}
	for _, f := range rep.Findings {
		rep.Counts[f.Class]++
		if f.Removed {
			rep.Removed++
		}
	}
	return rep, nil
}

var errNotLister = errors.New("not a lister")

func (s *sweep) list(ctx context.Context, backend string) ([]string, error) {
	l, ok := s.backends[backend].(drivers.Lister)
	if !ok {
		return nil, errNotLister
	}
	return l.ListVolumes(ctx)
}

// classifyListed classifies an object listed on backend. Its record is the
// scanned one, or read now if the scan had none (or could not read it).
func (s *sweep) classifyListed(ctx context.Context, backend, id string, registry map[string]*functions.Volume) (Finding, error) {
	f := Finding{Backend: backend, VolumeID: id}
	v, ok := registry[id]
	if !ok {
		raw, err := s.g.Volume(ctx, id)
		if err != nil {
			return f, fmt.Errorf("reconcile: read record %s: %w", id, err)
		}
		if v, err = decode(raw); err != nil {
			f.Class, f.Reason = Unknown, err.Error()
			return f, nil
		}
	}
	f.Class, f.Reason = s.classify(ctx, backend, v)
	if f.Class == OK {
		return f, nil
	}
	held, err := s.g.Held(ctx, id)
	if err != nil {
		return f, fmt.Errorf("reconcile: %w", err)
	}
	if held {
		f.Class, f.Reason = InFlight, "the volume's lock is held (an operation is under way); skipped"
	}
	return f, nil
}

// decode reads a record as stored (nil: no record).
func decode(raw []byte) (*functions.Volume, error) {
	if raw == nil {
		return nil, nil
	}
	v := new(functions.Volume)
	if err := json.Unmarshal(raw, v); err != nil {
		return nil, fmt.Errorf("unreadable registry record: %v", err)
	}
	return v, nil
}

// classify decides what an object of volume v (nil: no record) on backend is.
func (s *sweep) classify(ctx context.Context, backend string, v *functions.Volume) (Class, string) {
	switch {
	case v == nil:
		return Unregistered, "no registry record: not made by Ember, a create under way, or a record lost with Redis; never removed"
	case v.Tombstoned():
		return Orphan, "the record is a tombstone (deleted at " + v.DeletedAt + ")"
	case v.Backend == backend:
		return OK, "status " + v.Status
	case v.Migration != nil && v.Migration.FromBackend == backend:
		return Migrating, "migrated to " + v.Backend + "; the migration's second step deletes this copy"
	case v.Backend == "" && v.Status == functions.StatusError:
		return Orphan, "the record (status error) names no backend"
	case v.Backend == "":
		return Unknown, "the record (status " + v.Status + ") names no backend"
	}
	shared, err := s.shared(ctx, backend, v.Backend)
	switch {
	case err != nil:
		return Unknown, fmt.Sprintf("the record is on backend %s (status %s); cannot tell whether it shares this storage: %v", v.Backend, v.Status, err)
	case shared:
		return OK, fmt.Sprintf("the record is on backend %s (status %s), which shares this storage", v.Backend, v.Status)
	}
	return Orphan, fmt.Sprintf("the record is on backend %s (status %s)", v.Backend, v.Status)
}

// shared reports whether backends a and b are one storage: the same
// location_info in their stats.
func (s *sweep) shared(ctx context.Context, a, b string) (bool, error) {
	la, lb := s.location(ctx, a), s.location(ctx, b)
	if err := errors.Join(la.err, lb.err); err != nil {
		return false, err
	}
	return la.info == lb.info, nil
}

func (s *sweep) location(ctx context.Context, backend string) location {
	if l, ok := s.locs[backend]; ok {
		return l
	}
	var l location
	d, ok := s.backends[backend]
	if !ok {
		l.err = fmt.Errorf("backend %s is not configured here", backend)
	} else if st, err := d.GetVolumeStats(ctx); err != nil {
		l.err = fmt.Errorf("%s stats: %w", backend, err)
	} else if st.LocationInfo == "" {
		l.err = fmt.Errorf("%s reports no location_info", backend)
	} else {
		l.info = st.LocationInfo
	}
	s.locs[backend] = l
	return l
}

// missing finds the live records on backend whose object it did not list.
// The backend is listed again and each record read again first: a volume
// created, deleted or migrated since the first listing is not missing.
func (s *sweep) missing(ctx context.Context, backend string, listed map[string]map[string]bool, vols []*functions.Volume) ([]Finding, error) {
	have, ok := listed[backend]
	if !ok {
		return nil, nil // not listed: nothing can be said
	}
	var cand []string
	for _, v := range vols {
		if v.Backend == backend && live(v.Status) && !have[v.ID] {
			cand = append(cand, v.ID)
		}
	}
	if len(cand) == 0 {
		return nil, nil
	}
	ids, err := s.list(ctx, backend)
	if err != nil {
		return []Finding{{Backend: backend, VolumeID: cand[0], Class: Unknown,
			Reason: fmt.Sprintf("%d records have no object in the first listing; the second failed: %v", len(cand), err)}}, nil
	}
	again := set(ids)
	var out []Finding
	for _, id := range cand {
		if again[id] {
			continue
		}
		raw, err := s.g.Volume(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("reconcile: read record %s: %w", id, err)
		}
		v, err := decode(raw)
		if err != nil || v == nil || v.Backend != backend || !live(v.Status) {
			continue // changed since the scan
		}
		f := Finding{Backend: backend, VolumeID: id, Class: Missing,
			Reason: "the record (status " + v.Status + ") is on this backend, its object is not"}
		held, err := s.g.Held(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("reconcile: %w", err)
		}
		if held {
			f.Class, f.Reason = InFlight, "no object for the record, but the volume's lock is held (an operation is under way); skipped"
		}
		out = append(out, f)
	}
	return out, nil
}

// live: a record whose object must exist on its backend.
func live(status string) bool {
	return status == functions.StatusAvailable || status == functions.StatusInUse
}

// remove deletes an orphan under the volume's lock, after reading its
// record again under it.
func (s *sweep) remove(ctx context.Context, f *Finding) {
	c, err := s.g.Lock(ctx, f.VolumeID, LockTag, s.opts.Owner)
	if err != nil {
		f.Error = err.Error()
		return
	}
	if c.State != router.Claimed {
		f.Class, f.Reason = InFlight, "the volume's lock was taken before the removal; skipped"
		return
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := s.g.Release(rctx, f.VolumeID, c.Lock); err != nil {
			s.opts.Log.Warn("reconcile: release", "volume", f.VolumeID, "err", err) // it expires after its lease
		}
	}()
	v, err := decode(c.Volume)
	if err != nil {
		f.Class, f.Reason = Unknown, err.Error()+" (read under the lock)"
		return
	}
	if class, reason := s.classify(ctx, f.Backend, v); class != Orphan {
		f.Class, f.Reason = class, reason+" (read under the lock)"
		return
	}
	lctx, stop := s.g.KeepLease(ctx, f.VolumeID, c.Lock, c.At)
	// An orphan goes with its snapshots where the driver can do that
	// (drivers.Purger); DeleteVolume refuses a volume that has some.
	d := s.backends[f.Backend]
	if p, ok := d.(drivers.Purger); ok {
		err = p.PurgeVolume(lctx, drivers.Volume{ID: f.VolumeID})
	} else {
		err = d.DeleteVolume(lctx, drivers.Volume{ID: f.VolumeID})
	}
	lost := stop()
	switch {
	case err != nil && lost:
		f.Error = "lost the volume's lock while deleting: " + err.Error()
	case err != nil:
		f.Error = err.Error()
	default:
		f.Removed = true
		s.opts.Log.Info("reconcile: removed orphan", "backend", f.Backend, "volume", f.VolumeID, "reason", f.Reason)
	}
}

func set(ids []string) map[string]bool {
	m := make(map[string]bool, len(ids))
	for _, id := range ids {
		m[id] = true
	}
	return m
}

func sorted(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
