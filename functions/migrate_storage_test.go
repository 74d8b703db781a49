package functions

import (
	"context"
	"testing"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/events"
)

func TestLocationsShare(t *testing.T) {
	for _, c := range []struct {
		a, b, loc string
		want      bool
	}{
		{"rbd:fsid1:volumes", "rbd:fsid1:volumes", "", true},
		{"rbd:fsid1:volumes", "rbd:fsid1:fast", "", false},
		{"sheepdog:10.0.0.1:7000", "sheepdog:10.0.0.2:7000", "", false},
		{"LVMVolumeDriver:host1:vg1:default:0", "LVMVolumeDriver:host1:vg1:thin:0", "vg1", true},
		{"LVMVolumeDriver:host1:vg1:default:0", "LVMVolumeDriver:host1:vg2:default:0", "vg1", false},
		{"LVMVolumeDriver:host1:vg1:default:0", "LVMVolumeDriver:host2:vg1:default:0", "vg1", false},
		{"file:/srv/a", "file:/srv/a/", "/srv/a", true},
		{"file:/srv/a", "file:/srv/b", "/srv/a", false},
		{"glusterfs:h1:/gv0,h2:/gv1", "glusterfs:h2:/gv1,h3:/gv2", "h2:/gv1", true},  // the volume's share is shared
		{"glusterfs:h1:/gv0,h2:/gv1", "glusterfs:h2:/gv1,h3:/gv2", "h1:/gv0", false}, // it is not
		{"glusterfs:h1:/gv0,h2:/gv1", "glusterfs:h2:/gv1", "", true},                 // unknown share, overlap
		{"nfs:h1:/export", "glusterfs:h1:/export", "h1:/export", false},
	} {
		if got := locationsShare(c.a, c.b, c.loc); got != c.want {
			t.Errorf("%s vs %s (volume on %q): %v, want %v", c.a, c.b, c.loc, got, c.want)
		}
	}
}

// located is a stand-in backend with a location_info and a listing.
type located struct {
	recorder
	location, format string
	ids              []string
}

func (l *located) GetVolumeStats(context.Context) (drivers.Stats, error) {
	return drivers.Stats{LocationInfo: l.location, Extra: map[string]any{"volume_format": l.format}}, nil
}
func (l *located) ListVolumes(context.Context) ([]string, error) { return l.ids, nil }

func migrate(t *testing.T, src, dst drivers.Driver, rec *Volume) (Outcome, error, []*Volume) {
	t.Helper()
	env := &Env{Instance: "i", Backends: map[string]drivers.Driver{"b": src, "c": dst}}
	req := request(t, events.VolumeMigrateRequested, map[string]any{"volume_id": vol, "project_id": proj, "dest_backend": "c"}, rec)
	var saved []*Volume
	req.Save = func(_ context.Context, v *Volume) error { saved = append(saved, v.Clone()); return nil }
	out, err := All(env)[events.VolumeMigrateRequested].Run(context.Background(), req)
	return out, err, saved
}

func TestMigrateOnOneStorage(t *testing.T) {
	for _, c := range []struct {
		name                       string
		srcLoc, dstLoc, dstFmt     string
		dstHolds, begun            bool
		wantType, wantBackend      string
		wantCode                   string
		wantSrcCalls, wantDstCalls []string
	}{
		{name: "same storage, alike: record only", srcLoc: "file:/d", dstLoc: "file:/d", dstFmt: "raw", dstHolds: true,
			wantType: "volume.migrate.end", wantBackend: "c"},
		{name: "same storage, other format: refused", srcLoc: "file:/d", dstLoc: "file:/d", dstFmt: "qcow2", dstHolds: true,
			wantType: "volume.migrate.error", wantCode: CodeInvalid},
		{name: "not the same by location, but the destination holds it: refused", srcLoc: "file:/d", dstLoc: "file:/e", dstFmt: "raw", dstHolds: true,
			wantType: "volume.migrate.error", wantCode: string(drivers.KindConflict)},
		{name: "the destination holds what this migration began: copied over", srcLoc: "file:/d", dstLoc: "file:/e", dstFmt: "raw", dstHolds: true, begun: true,
			wantType: "volume.migrate.end", wantBackend: "c", wantSrcCalls: []string{"read", "delete"}, wantDstCalls: []string{"create", "write"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			src := &located{location: c.srcLoc, format: "raw"}
			dst := &located{location: c.dstLoc, format: c.dstFmt}
			if c.dstHolds {
				dst.ids = []string{vol}
			}
			rec := available()
			rec.ProviderLocation = "/d"
			if c.begun {
				rec.MigratingTo = "c"
			}
			out, err, _ := migrate(t, src, dst, rec)
			if err != nil {
				t.Fatal(err)
			}
			r := out.Results[0]
			if r.Type != c.wantType || (c.wantCode != "" && (r.Data.Error == nil || r.Data.Error.Code != c.wantCode)) {
				t.Fatalf("%s %+v", r.Type, r.Data.Error)
			}
			if c.wantBackend != "" && (out.Volume == nil || out.Volume.Backend != c.wantBackend || out.Volume.MigratingTo != "" || out.Volume.Migration != nil) {
				t.Fatalf("record %+v", out.Volume)
			}
			if !sameCalls(src.calls, c.wantSrcCalls) || !sameCalls(dst.calls, c.wantDstCalls) {
				t.Fatalf("calls %v / %v, want %v / %v", src.calls, dst.calls, c.wantSrcCalls, c.wantDstCalls)
			}
		})
	}
}

// After the checkpoint: the old copy is deleted, except where the old and
// the new backend are one storage (the old copy is the volume); an old
// backend gone from the configuration is retried (and, when retries run
// out, dead-lettered for a replay), not answered at once.
func TestMigrateSecondStep(t *testing.T) {
	moved := available()
	moved.Backend, moved.ProviderLocation = "c", "/d"
	moved.Migration = &Migration{FromBackend: "b", FromProviderLocation: "/d"}

	src, dst := &located{location: "file:/d", format: "raw"}, &located{location: "file:/d", format: "raw", ids: []string{vol}}
	out, err, _ := migrate(t, src, dst, moved.Clone())
	if err != nil || out.Results[0].Type != "volume.migrate.end" || len(src.calls) != 0 || out.Volume.Migration != nil {
		t.Fatalf("one storage: %v %+v, calls %v", err, out, src.calls)
	}

	src = &located{location: "file:/old", format: "raw"}
	elsewhere := moved.Clone()
	elsewhere.Migration.FromProviderLocation = "/old"
	out, err, _ = migrate(t, src, dst, elsewhere)
	if err != nil || out.Results[0].Type != "volume.migrate.end" || !sameCalls(src.calls, []string{"delete"}) {
		t.Fatalf("two storages: %v %+v, calls %v", err, out, src.calls)
	}

	gone := elsewhere.Clone()
	gone.Migration.FromBackend = "retired"
	_, err, _ = migrate(t, src, dst, gone)
	if err == nil || !Retryable(err) {
		t.Fatalf("old backend not configured: %v, want a retryable error", err)
	}
}
