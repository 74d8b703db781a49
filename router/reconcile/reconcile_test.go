package reconcile

import (
	"context"
	"encoding/json"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/functions"
	"github.com/ember-storage/ember/internal/testenv"
	"github.com/ember-storage/ember/router"
)

// fake is a backend whose objects are a set of ids.
type fake struct {
	drivers.Unsupported
	mu       sync.Mutex
	ids      map[string]bool
	location string
	listErr  error
	lists    int
	onList   func(n int) // called before the n-th listing answers
	deleted  []string
}

func newFake(location string, ids ...string) *fake {
	f := &fake{location: location, ids: map[string]bool{}}
	for _, id := range ids {
		f.ids[id] = true
	}
	return f
}

func (f *fake) ListVolumes(context.Context) ([]string, error) {
	f.mu.Lock()
	f.lists++
	n, hook := f.lists, f.onList
	f.mu.Unlock()
	if hook != nil {
		hook(n)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.listErr != nil {
		return nil, f.listErr
	}
	var out []string
	for id := range f.ids {
		out = append(out, id)
	}
	sort.Strings(out)
	return out, nil
}

func (f *fake) GetVolumeStats(context.Context) (drivers.Stats, error) {
	return drivers.Stats{LocationInfo: f.location}, nil
}

func (f *fake) DeleteVolume(_ context.Context, v drivers.Volume) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.ids, v.ID)
	f.deleted = append(f.deleted, v.ID)
	return nil
}

// notLister is a backend that cannot list.
type notLister struct{ drivers.Unsupported }

type env struct {
	t      *testing.T
	rdb    *redis.Client
	guard  *router.Guard
	prefix string
}

func newEnv(t *testing.T) *env {
	rdb := testenv.Redis(t)
	prefix := "r" + testenv.Unique()
	return &env{t: t, rdb: rdb, prefix: prefix, guard: router.NewGuard(rdb, prefix, 5*time.Second, time.Hour)}
}

func (e *env) record(v functions.Volume) {
	e.t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		e.t.Fatal(err)
	}
	e.setRaw(v.ID, raw)
}

func (e *env) setRaw(id string, raw []byte) {
	e.t.Helper()
	if err := e.rdb.Set(context.Background(), e.prefix+":{"+id+"}:vol", raw, 0).Err(); err != nil {
		e.t.Fatal(err)
	}
}

func find(t *testing.T, rep Report, backend, id string) Finding {
	t.Helper()
	for _, f := range rep.Findings {
		if f.Backend == backend && f.VolumeID == id {
			return f
		}
	}
	t.Fatalf("no finding for %s on %s in %+v", id, backend, rep.Findings)
	return Finding{}
}

// Two backend entries over one storage (the same location_info) see each
// other's volumes: those are not orphans, and nothing is removed. A record
// on a backend not configured here, or an unreadable one, is unknown.
func TestSharedStorageAndUnknowns(t *testing.T) {
	e := newEnv(t)
	live, noBackendErr, elsewhere, garbled := uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()
	shared := []string{live, noBackendErr, elsewhere, garbled}
	a, alias := newFake("file:/srv/a", shared...), newFake("file:/srv/a", shared...)
	e.record(functions.Volume{ID: live, Backend: "a", Status: functions.StatusAvailable})
	e.record(functions.Volume{ID: noBackendErr, Status: functions.StatusError})
	e.record(functions.Volume{ID: elsewhere, Backend: "gone", Status: functions.StatusAvailable})
	e.setRaw(garbled, []byte("{not json"))
	rep, err := Reconcile(context.Background(), e.guard,
		map[string]drivers.Driver{"a": a, "alias": alias, "nolist": notLister{}}, Options{Remove: true})
	if err != nil {
		t.Fatal(err)
	}
	for backend, want := range map[string]Class{"a": OK, "alias": OK} {
		if f := find(t, rep, backend, live); f.Class != want {
			t.Errorf("%s on %s: %+v", live, backend, f)
		}
	}
	if f := find(t, rep, "alias", live); !strings.Contains(f.Reason, "shares this storage") {
		t.Errorf("alias: %+v", f)
	}
	if f := find(t, rep, "a", elsewhere); f.Class != Unknown || !strings.Contains(f.Reason, "not configured here") {
		t.Errorf("record on an unconfigured backend: %+v", f)
	}
	if f := find(t, rep, "a", garbled); f.Class != Unknown || !strings.Contains(f.Reason, "unreadable") {
		t.Errorf("unreadable record: %+v", f)
	}
	// A create that failed before it was placed: no data was ever written.
	if f := find(t, rep, "a", noBackendErr); f.Class != Orphan || !f.Removed {
		t.Errorf("error record without a backend: %+v", f)
	}
	if len(a.deleted) != 1 || len(alias.deleted) != 1 || a.deleted[0] != noBackendErr {
		t.Errorf("deleted: a %v, alias %v", a.deleted, alias.deleted)
	}
	var skipped bool
	for _, b := range rep.Backends {
		skipped = skipped || (b.Name == "nolist" && b.Skipped != "")
	}
	if !skipped || rep.Clean() {
		t.Errorf("backends %+v, clean %v", rep.Backends, rep.Clean())
	}
}

// Removal reads the record again under the lock: a volume whose record
// appeared after the sweep classified it (a create that completed) is not
// removed. A listing that fails makes no finding and the report unclean.
func TestRemovalRechecksUnderTheLock(t *testing.T) {
	e := newEnv(t)
	late, gone, missing, unregistered := uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()
	a, c := newFake("a", late, gone, unregistered), newFake("c")
	e.record(functions.Volume{ID: missing, Backend: "a", Status: functions.StatusAvailable})
	e.record(functions.Volume{ID: gone, Backend: "a", Status: functions.StatusDeleted, DeletedAt: "2026-01-02T03:04:05.000000"})
	// late's record says c: its copy on a is an orphan when classified.
	e.record(functions.Volume{ID: late, Backend: "c", Status: functions.StatusAvailable})
	// The second listing (the missing check) comes after the orphans were
	// classified and before they are removed: late's migration to a
	// completes, and its record now names a.
	a.onList = func(n int) {
		if n == 2 {
			e.record(functions.Volume{ID: late, Backend: "a", Status: functions.StatusAvailable})
		}
	}
	broken := newFake("b")
	broken.listErr = drivers.Errorf(drivers.KindUnavailable, "list", "share gone")
	rep, err := Reconcile(context.Background(), e.guard, map[string]drivers.Driver{"a": a, "b": broken, "c": c}, Options{Remove: true})
	if err != nil {
		t.Fatal(err)
	}
	if f := find(t, rep, "a", late); f.Class != OK || f.Removed || !strings.Contains(f.Reason, "under the lock") {
		t.Errorf("late record: %+v", f)
	}
	if f := find(t, rep, "a", gone); f.Class != Orphan || !f.Removed {
		t.Errorf("orphan: %+v", f)
	}
	// No record at all (Redis lost it, or Ember never made it): kept.
	if f := find(t, rep, "a", unregistered); f.Class != Unregistered || f.Removed {
		t.Errorf("unregistered: %+v", f)
	}
	if f := find(t, rep, "a", missing); f.Class != Missing {
		t.Errorf("missing: %+v", f)
	}
	if len(a.deleted) != 1 || a.deleted[0] != gone {
		t.Errorf("deleted %v, want only %s", a.deleted, gone)
	}
	var failed bool
	for _, b := range rep.Backends {
		failed = failed || (b.Name == "b" && strings.Contains(b.Error, "share gone"))
	}
	if !failed || rep.Clean() {
		t.Errorf("a failed listing: %+v clean=%v", rep.Backends, rep.Clean())
	}
	for _, id := range []string{late, gone} {
		if held, _ := e.guard.Held(context.Background(), id); held {
			t.Errorf("%s left locked", id)
		}
	}
}

// A registry that cannot be read fails the sweep: no finding without it.
func TestRegistryUnreachable(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer rdb.Close()
	g := router.NewGuard(rdb, "x", 5*time.Second, time.Hour)
	a := newFake("a", uuid.NewString())
	_, err := Reconcile(context.Background(), g, map[string]drivers.Driver{"a": a}, Options{Remove: true})
	if err == nil || len(a.deleted) != 0 {
		t.Fatalf("err %v, deleted %v", err, a.deleted)
	}
}
