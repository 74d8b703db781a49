package functions

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/events"
)

const (
	vol  = "6f1f3c1e-7a42-4c55-9d6a-2b8e0e4c1a01"
	proj = "0c9d5c3f2b1a4e8d9f7a6b5c4d3e2f10"
	user = "3d2c1b0a-9f8e-4d7c-8b6a-5f4e3d2c1b0a"
)

// fakeDriver is an in-process stand-in that answers create/delete with err.
type fakeDriver struct {
	drivers.Unsupported
	err   error
	calls int
}

func (f *fakeDriver) CreateVolume(context.Context, drivers.Volume) (drivers.ModelUpdate, error) {
	f.calls++
	return drivers.ModelUpdate{ProviderLocation: "/x"}, f.err
}

func (f *fakeDriver) DeleteVolume(context.Context, drivers.Volume) error { f.calls++; return f.err }

func request(t *testing.T, typ string, data any, rec *Volume) *Request {
	t.Helper()
	raw, _ := json.Marshal(data)
	r, err := events.NewInput(typ, "/t", "id-1", raw, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	in, err := events.Decode(r.Headers, r.Value, typ)
	if err != nil {
		t.Fatal(err)
	}
	return &Request{Input: in, Volume: rec}
}

func TestCreateVolumeOutcomes(t *testing.T) {
	create := map[string]any{"volume_id": vol, "project_id": proj, "user_id": user, "size_gb": 10}
	cases := []struct {
		name       string
		record     *Volume
		driverErr  error
		wantType   string
		wantCode   string
		wantStatus string // of the stored record; "" = unchanged
		wantCalls  int
	}{
		{name: "new", wantType: "volume.create.end", wantStatus: StatusAvailable, wantCalls: 1},
		{name: "exists same", record: &Volume{ID: vol, ProjectID: proj, SizeGB: 10, Backend: "b", Status: StatusAvailable},
			wantType: "volume.create.end", wantStatus: StatusAvailable},
		{name: "exists other size", record: &Volume{ID: vol, ProjectID: proj, SizeGB: 5, Backend: "b", Status: StatusAvailable},
			wantType: "volume.create.error", wantCode: "conflict"},
		{name: "other project", record: &Volume{ID: vol, ProjectID: "ffffffffffffffffffffffffffffffff", SizeGB: 10, Status: StatusAvailable},
			wantType: "volume.create.error", wantCode: CodeForbidden},
		{name: "tombstone", record: &Volume{ID: vol, ProjectID: proj, Status: StatusDeleted},
			wantType: "volume.create.error", wantCode: CodeVolumeDeleted},
		{name: "no space", driverErr: drivers.Errorf(drivers.KindNoCapacity, "create", "full"),
			wantType: "volume.create.error", wantCode: "no_capacity", wantStatus: StatusError, wantCalls: 1},
		{name: "failed before, try again", record: &Volume{ID: vol, ProjectID: proj, SizeGB: 10, Backend: "b", Status: StatusError},
			wantType: "volume.create.end", wantStatus: StatusAvailable, wantCalls: 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := &fakeDriver{err: c.driverErr}
			f := &CreateVolume{&Env{Instance: "i", Backends: map[string]drivers.Driver{"b": d}}}
			out, err := f.Run(context.Background(), request(t, events.VolumeRequested, create, c.record))
			if err != nil {
				t.Fatal(err)
			}
			r := out.Results[0]
			if r.Type != c.wantType || (c.wantCode != "" && (r.Data.Error == nil || r.Data.Error.Code != c.wantCode)) {
				t.Fatalf("got %s %+v", r.Type, r.Data.Error)
			}
			if got := ""; out.Volume != nil {
				got = out.Volume.Status
				if got != c.wantStatus {
					t.Fatalf("record status %q, want %q", got, c.wantStatus)
				}
			} else if c.wantStatus != "" {
				t.Fatalf("record unchanged, want %q", c.wantStatus)
			}
			if d.calls != c.wantCalls {
				t.Fatalf("driver calls %d, want %d", d.calls, c.wantCalls)
			}
		})
	}
}

func TestTransientDriverErrorIsRetriedNotAnswered(t *testing.T) {
	d := &fakeDriver{err: drivers.Errorf(drivers.KindUnavailable, "create", "host down")}
	f := &CreateVolume{&Env{Instance: "i", Backends: map[string]drivers.Driver{"b": d}}}
	_, err := f.Run(context.Background(), request(t, events.VolumeRequested,
		map[string]any{"volume_id": vol, "project_id": proj, "user_id": user, "size_gb": 1}, nil))
	if err == nil || !Retryable(err) {
		t.Fatalf("want a retryable error, got %v", err)
	}
}

func TestDeleteRefusesBusyVolumes(t *testing.T) {
	for name, rec := range map[string]*Volume{
		"attached":       {ID: vol, ProjectID: proj, Backend: "b", Status: StatusInUse, Attachments: map[string]string{"a": "h"}},
		"with snapshots": {ID: vol, ProjectID: proj, Backend: "b", Status: StatusAvailable, Snapshots: map[string]Snapshot{"s": {ID: "s"}}},
	} {
		d := &fakeDriver{}
		f := &DeleteVolume{&Env{Instance: "i", Backends: map[string]drivers.Driver{"b": d}}}
		out, _ := f.Run(context.Background(), request(t, events.VolumeDeleted, map[string]any{"volume_id": vol, "project_id": proj}, rec))
		if out.Results[0].Data.Error == nil || out.Results[0].Data.Error.Code != string(drivers.KindBusy) || d.calls != 0 || out.Volume != nil {
			t.Errorf("%s: %+v calls=%d", name, out.Results[0].Data, d.calls)
		}
	}
}
