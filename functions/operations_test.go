package functions

import (
	"context"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/events"
)

// recorder is an in-process stand-in driver that records each call by
// name and fails the ones named in fail. The real drivers are exercised by
// router/operations_test.go and the drivers' own tests.
type recorder struct {
	drivers.Unsupported
	mu    sync.Mutex
	calls []string
	fail  map[string]error
}

func (r *recorder) call(name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, name)
	return r.fail[name]
}

// sameCalls compares call lists; a streaming copy's read and write run
// side by side, so their order between themselves is not checked.
func sameCalls(got, want []string) bool {
	norm := func(cs []string) []string {
		out := slices.Clone(cs)
		for i := 0; i+1 < len(out); i++ {
			if out[i] == "write" && out[i+1] == "read" {
				out[i], out[i+1] = "read", "write"
			}
		}
		return out
	}
	return slices.Equal(norm(got), norm(want))
}

func (r *recorder) CreateVolume(_ context.Context, v drivers.Volume) (drivers.ModelUpdate, error) {
	return drivers.ModelUpdate{ProviderLocation: "loc"}, r.call("create")
}
func (r *recorder) DeleteVolume(context.Context, drivers.Volume) error { return r.call("delete") }
func (r *recorder) ExtendVolume(context.Context, drivers.Volume, int) error {
	return r.call("extend")
}
func (r *recorder) CreateSnapshot(context.Context, drivers.Snapshot) (drivers.ModelUpdate, error) {
	return drivers.ModelUpdate{ProviderLocation: "snaploc"}, r.call("snapshot")
}
func (r *recorder) DeleteSnapshot(context.Context, drivers.Snapshot) error {
	return r.call("delete_snapshot")
}
func (r *recorder) InitializeConnection(context.Context, drivers.Volume, string, drivers.Connector) (drivers.ConnectionInfo, error) {
	return drivers.ConnectionInfo{DriverVolumeType: "iscsi"}, r.call("attach")
}
func (r *recorder) TerminateConnection(context.Context, drivers.Volume, string, drivers.Connector) error {
	return r.call("detach")
}
func (r *recorder) ReadVolume(_ context.Context, v drivers.Volume, w io.Writer) error {
	if err := r.call("read"); err != nil {
		return err
	}
	_, err := io.CopyN(w, strings.NewReader(strings.Repeat("x", 1<<20)), 1<<20)
	return err
}
func (r *recorder) WriteVolume(_ context.Context, v drivers.Volume, rd io.Reader) error {
	if err := r.call("write"); err != nil {
		return err
	}
	_, err := io.Copy(io.Discard, rd)
	return err
}

func available() *Volume {
	return &Volume{ID: vol, ProjectID: proj, Backend: "b", SizeGB: 1, Status: StatusAvailable}
}

const other = "ffffffffffffffffffffffffffffffff"

// TestOperationsOnExistingVolumes pins what each function does before and
// instead of calling the driver: the refusals run nothing and change
// nothing; done work is success without a second call.
func TestOperationsOnExistingVolumes(t *testing.T) {
	snap := "7a0b1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d"
	att := "8b1c2d3e-4f5a-4b6c-9d7e-8f9a0b1c2d3e"
	conn := map[string]any{"initiator": "iqn.1993-08.org.debian:01:h", "host": "h", "ip": "127.0.0.1"}
	withSnap := available()
	withSnap.Snapshots = map[string]Snapshot{snap: {ID: snap, Status: StatusAvailable, VolumeSizeGB: 1}}
	attached := available()
	attached.Status, attached.Attachments = StatusInUse, map[string]string{att: "h"}
	cases := []struct {
		name      string
		typ       string
		data      map[string]any
		record    *Volume
		fail      map[string]error
		wantPhase string
		wantCode  string
		wantCalls []string
		// wantRecord checks the stored record; nil means "unchanged".
		wantRecord func(*Volume) bool
	}{
		{name: "extend", typ: events.VolumeExtendRequested, data: map[string]any{"new_size_gb": 3}, record: available(),
			wantPhase: "end", wantCalls: []string{"extend"}, wantRecord: func(v *Volume) bool { return v.SizeGB == 3 }},
		{name: "extend to the size it has", typ: events.VolumeExtendRequested, data: map[string]any{"new_size_gb": 1}, record: available(),
			wantPhase: "end", wantRecord: func(v *Volume) bool { return v.SizeGB == 1 }},
		{name: "extend an unknown volume", typ: events.VolumeExtendRequested, data: map[string]any{"new_size_gb": 3},
			wantPhase: "error", wantCode: "not_found"},
		{name: "extend another project's", typ: events.VolumeExtendRequested, data: map[string]any{"new_size_gb": 3, "project_id": other},
			record: available(), wantPhase: "error", wantCode: CodeForbidden},
		{name: "extend fails in the driver", typ: events.VolumeExtendRequested, data: map[string]any{"new_size_gb": 3}, record: available(),
			fail:      map[string]error{"extend": drivers.Errorf(drivers.KindBackend, "lvextend", "boom")},
			wantPhase: "error", wantCode: "backend_error", wantCalls: []string{"extend"},
			wantRecord: func(v *Volume) bool { return v.Status == StatusErrorExtending && v.SizeGB == 1 }},
		{name: "snapshot", typ: events.SnapshotRequested, data: map[string]any{"snapshot_id": snap}, record: available(),
			wantPhase: "end", wantCalls: []string{"snapshot"},
			wantRecord: func(v *Volume) bool { return v.Snapshots[snap].ProviderLocation == "snaploc" }},
		{name: "snapshot that exists", typ: events.SnapshotRequested, data: map[string]any{"snapshot_id": snap}, record: withSnap,
			wantPhase: "end", wantRecord: func(v *Volume) bool { return len(v.Snapshots) == 1 }},
		{name: "snapshot of an attached volume", typ: events.SnapshotRequested, data: map[string]any{"snapshot_id": snap}, record: attached,
			wantPhase: "error", wantCode: "volume_busy"},
		{name: "snapshot fails in the driver", typ: events.SnapshotRequested, data: map[string]any{"snapshot_id": snap}, record: available(),
			fail:      map[string]error{"snapshot": drivers.Errorf(drivers.KindBackend, "qemu-img", "boom")},
			wantPhase: "error", wantCode: "backend_error", wantCalls: []string{"snapshot"},
			wantRecord: func(v *Volume) bool {
				return v.Status == StatusAvailable && v.Snapshots[snap].Status == StatusSnapshotError
			}},
		{name: "delete snapshot", typ: events.SnapshotDeleted, data: map[string]any{"snapshot_id": snap}, record: withSnap,
			wantPhase: "end", wantCalls: []string{"delete_snapshot"}, wantRecord: func(v *Volume) bool { return len(v.Snapshots) == 0 }},
		{name: "delete a snapshot that is gone", typ: events.SnapshotDeleted, data: map[string]any{"snapshot_id": snap}, record: available(),
			wantPhase: "end", wantRecord: func(v *Volume) bool { return len(v.Snapshots) == 0 }},
		// Undoing on a volume the registry does not know (never seen, or
		// forgotten by a Redis that restarted empty) is success, and writes
		// no record: one would be a volume with no backend and no status.
		{name: "delete a snapshot of an unknown volume", typ: events.SnapshotDeleted, data: map[string]any{"snapshot_id": snap},
			wantPhase: "end"},
		{name: "detach from an unknown volume", typ: events.VolumeDetachRequested, data: map[string]any{"attachment_id": att, "connector": conn},
			wantPhase: "end"},
		{name: "attach", typ: events.VolumeAttachRequested, data: map[string]any{"attachment_id": att, "connector": conn}, record: available(),
			wantPhase: "end", wantCalls: []string{"attach"},
			wantRecord: func(v *Volume) bool { return v.Status == StatusInUse && v.Attachments[att] == "h" }},
		{name: "attach a second host", typ: events.VolumeAttachRequested,
			data: map[string]any{"attachment_id": "9c2d3e4f-5a6b-4c7d-8e8f-9a0b1c2d3e4f", "connector": conn}, record: attached,
			wantPhase: "error", wantCode: "volume_busy"},
		{name: "detach the last attachment", typ: events.VolumeDetachRequested, data: map[string]any{"attachment_id": att, "connector": conn},
			record: attached, wantPhase: "end", wantCalls: []string{"detach"},
			wantRecord: func(v *Volume) bool { return v.Status == StatusAvailable && len(v.Attachments) == 0 }},
		{name: "detach what is not recorded still removes the export", typ: events.VolumeDetachRequested,
			data: map[string]any{"attachment_id": att, "connector": conn}, record: available(),
			wantPhase: "end", wantCalls: []string{"detach"}, wantRecord: func(v *Volume) bool { return v.Status == StatusAvailable }},
		{name: "migrate", typ: events.VolumeMigrateRequested, data: map[string]any{"dest_backend": "c"}, record: available(),
			wantPhase: "end", wantCalls: []string{"create", "read", "write", "delete"},
			wantRecord: func(v *Volume) bool { return v.Backend == "c" && v.Migration == nil && v.ProviderLocation == "loc" }},
		{name: "migrate resumes after its checkpoint", typ: events.VolumeMigrateRequested, data: map[string]any{"dest_backend": "c"},
			record: func() *Volume {
				v := available()
				v.Backend, v.Migration = "c", &Migration{FromBackend: "b", FromProviderLocation: "old"}
				return v
			}(),
			wantPhase: "end", wantCalls: []string{"delete"},
			wantRecord: func(v *Volume) bool { return v.Backend == "c" && v.Migration == nil }},
		{name: "migrate where it is", typ: events.VolumeMigrateRequested, data: map[string]any{"dest_backend": "b"}, record: available(),
			wantPhase: "end", wantRecord: func(v *Volume) bool { return v.Backend == "b" }},
		{name: "migrate to an unknown backend", typ: events.VolumeMigrateRequested, data: map[string]any{"dest_backend": "nowhere"},
			record: available(), wantPhase: "error", wantCode: CodeInvalid},
		{name: "migrate with snapshots", typ: events.VolumeMigrateRequested, data: map[string]any{"dest_backend": "c"}, record: withSnap,
			wantPhase: "error", wantCode: "volume_busy"},
		{name: "migrate copy fails: the partial copy goes", typ: events.VolumeMigrateRequested, data: map[string]any{"dest_backend": "c"},
			record: available(), fail: map[string]error{"write": drivers.Errorf(drivers.KindBackend, "dd", "boom")},
			wantPhase: "error", wantCode: "backend_error", wantCalls: []string{"create", "read", "write", "delete"}},
		{name: "backup without a store", typ: events.BackupRequested, data: map[string]any{"backup_id": snap}, record: available(),
			wantPhase: "error", wantCode: "not_supported"},
		{name: "upload without a store", typ: events.VolumeUploadRequested, data: map[string]any{"image_id": snap, "disk_format": "raw"},
			record: available(), wantPhase: "error", wantCode: "not_supported"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := &recorder{fail: c.fail}
			env := &Env{Instance: "i", Backends: map[string]drivers.Driver{"b": d, "c": d}}
			data := map[string]any{"volume_id": vol, "project_id": proj}
			for k, v := range c.data {
				data[k] = v
			}
			req := request(t, c.typ, data, c.record)
			var saved *Volume
			req.Save = func(_ context.Context, v *Volume) error { saved = v; return nil }
			fn := All(env)[c.typ]
			out, err := fn.Run(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			r := out.Results[0]
			if r.Type != events.ResultType(c.typ, c.wantPhase) {
				t.Fatalf("got %s %+v", r.Type, r.Data.Error)
			}
			if c.wantCode != "" && (r.Data.Error == nil || r.Data.Error.Code != c.wantCode) {
				t.Fatalf("error %+v, want code %s", r.Data.Error, c.wantCode)
			}
			if !sameCalls(d.calls, c.wantCalls) {
				t.Fatalf("driver calls %v, want %v", d.calls, c.wantCalls)
			}
			switch {
			case c.wantRecord == nil && out.Volume != nil && c.typ != events.VolumeMigrateRequested:
				t.Fatalf("record changed to %+v, want unchanged", out.Volume)
			case c.wantRecord != nil && (out.Volume == nil || !c.wantRecord(out.Volume)):
				t.Fatalf("record %+v", out.Volume)
			}
			if c.name == "migrate" && (saved == nil || saved.Migration == nil || saved.Backend != "c") {
				t.Fatalf("migrate did not checkpoint before deleting the source: %+v", saved)
			}
			if c.wantCode == CodeForbidden && r.Data.Size != 0 {
				t.Fatalf("a refusal to another project tells it about the volume: %+v", r.Data)
			}
		})
	}
}

// TestTransientFailuresAreRetried: an unreachable storage host is the
// router's to retry, not an .error.
func TestTransientFailuresAreRetried(t *testing.T) {
	d := &recorder{fail: map[string]error{"extend": drivers.Errorf(drivers.KindUnavailable, "ssh", "host down")}}
	env := &Env{Instance: "i", Backends: map[string]drivers.Driver{"b": d}}
	_, err := All(env)[events.VolumeExtendRequested].Run(context.Background(),
		request(t, events.VolumeExtendRequested, map[string]any{"volume_id": vol, "project_id": proj, "new_size_gb": 2}, available()))
	if err == nil || !Retryable(err) {
		t.Fatalf("want a retryable error, got %v", err)
	}
}

// assistedDriver is a stand-in source that moves volumes itself when the
// destination's location_info says it can (as LVM does between VGs).
type assistedDriver struct {
	recorder
	location string
}

func (a *assistedDriver) GetVolumeStats(context.Context) (drivers.Stats, error) {
	return drivers.Stats{LocationInfo: a.location}, nil
}

func (a *assistedDriver) MigrateVolume(_ context.Context, v drivers.Volume, dest string) (bool, drivers.ModelUpdate, error) {
	a.call("migrate:" + dest)
	return dest == "near", drivers.ModelUpdate{ProviderLocation: "vg2"}, nil
}

// The driver copies when it can; the record then moves (the checkpoint)
// before the source is deleted, as after a streaming copy.
func TestMigrateLetsTheDriverMoveWhenItCan(t *testing.T) {
	for _, c := range []struct {
		location string
		// Each driver's calls, in order; "checkpoint" is a Save that moves
		// the record. A driver that migrates itself knows what it left at
		// the destination: no Volume.MigratingTo marker is saved first.
		src, dst []string
	}{
		{"near", []string{"migrate:near", "checkpoint", "delete"}, nil},
		{"far", []string{"migrate:far", "read", "checkpoint", "delete"}, []string{"create", "write"}},
	} {
		src, dst := &assistedDriver{}, &assistedDriver{location: c.location}
		env := &Env{Instance: "i", Backends: map[string]drivers.Driver{"b": src, "c": dst}}
		req := request(t, events.VolumeMigrateRequested, map[string]any{"volume_id": vol, "project_id": proj, "dest_backend": "c"}, available())
		var saved *Volume
		req.Save = func(_ context.Context, v *Volume) error { saved = v; return src.call("checkpoint") }
		out, err := All(env)[events.VolumeMigrateRequested].Run(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if out.Results[0].Type != "volume.migrate.end" || out.Volume.Backend != "c" || out.Volume.Migration != nil ||
			!slices.Equal(src.calls, c.src) || !slices.Equal(dst.calls, c.dst) {
			t.Fatalf("%s: %s, record %+v, calls %v / %v", c.location, out.Results[0].Type, out.Volume, src.calls, dst.calls)
		}
		if saved == nil || saved.Backend != "c" || saved.Migration == nil || saved.Migration.FromBackend != "b" {
			t.Fatalf("%s: checkpoint %+v", c.location, saved)
		}
	}
}

// A destination whose stats cannot be read because its host is away is
// retried, not migrated by a streaming copy to the same unreachable host.
func TestMigrateRetriesWhenTheDestinationIsAway(t *testing.T) {
	src := &assistedDriver{}
	dst := &awayDriver{}
	env := &Env{Instance: "i", Backends: map[string]drivers.Driver{"b": src, "c": dst}}
	_, err := All(env)[events.VolumeMigrateRequested].Run(context.Background(),
		request(t, events.VolumeMigrateRequested, map[string]any{"volume_id": vol, "project_id": proj, "dest_backend": "c"}, available()))
	if err == nil || !Retryable(err) || len(src.calls) != 0 || len(dst.calls) != 0 {
		t.Fatalf("want a retryable error and no copy, got %v, calls %v / %v", err, src.calls, dst.calls)
	}
}

type awayDriver struct{ recorder }

func (a *awayDriver) GetVolumeStats(context.Context) (drivers.Stats, error) {
	return drivers.Stats{}, drivers.Errorf(drivers.KindUnavailable, "ssh storage2", "connection refused")
}
