package lvm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/drivers/exectest"
	"github.com/ember-storage/ember/events"
	"github.com/ember-storage/ember/functions"
)

// Same-host migration from lvm-1 (VG cinder-volumes) to lvm-2 (VG fast-vg)
// on storage1, through the migrate function as the router runs it, on
// transcripts: dd between LVs needs device-mapper.

const (
	destVG    = "fast-vg"
	destInfo  = "LVMVolumeDriver:storage1:" + destVG + ":default:0"
	projectID = "8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a"
)

var (
	volName = "volume-" + vid
	srcDev  = "/dev/cinder-volumes/" + volName
	destDev = "/dev/" + destVG + "/" + volName
)

// in moves a report row or a vgs answer to vg.
func in(vg, s string) string {
	return strings.ReplaceAll(s, `"vg_name":"cinder-volumes"`, `"vg_name":"`+vg+`"`)
}

func listOf(vg string, rows ...string) exectest.Step {
	for i := range rows {
		rows[i] = in(vg, rows[i])
	}
	return step(lvsB+vg, lvsJSON(rows...))
}

// destStats is lvm-2's GetVolumeStats, which gives its location_info.
func destStats() []exectest.Step {
	return []exectest.Step{
		step("hostname", "storage1\n"),
		destVGInfo(),
		step("lvs --reportformat json --units g --nosuffix -o "+lvFields+" "+destVG, lvsJSON()),
	}
}

func destVGInfo() exectest.Step {
	return step("vgs --reportformat json --units g --nosuffix -o "+vgFields+" "+destVG,
		in(destVG, vgsJSON(`"vg_name":"cinder-volumes", "vg_size":"20.00", "vg_free":"20.00", "lv_count":"0", "vg_uuid":"y"`)))
}

// migState is what a migration has done so far, on the host and in Redis.
type migState int

const (
	fresh        migState = iota // nothing in fast-vg; the record on lvm-1
	pending                      // fast-vg holds the LV, tagged: its copy is under way
	copied                       // the copy is whole (tag gone); the record still on lvm-1
	checkpointed                 // the record on lvm-2, remembering lvm-1; the source still there
	sourceGone                   // the source removed; the request not complete
)

// event is one thing a migration does: a command, or the checkpoint.
type event struct {
	step       exectest.Step
	checkpoint bool
	leaves     migState
}

func (e event) String() string {
	if e.checkpoint {
		return "checkpoint"
	}
	return strings.Join(e.step.Args, " ")
}

// migration lists, in order, what the migrate function runs when it finds
// the volume in state s.
func migration(s migState) []event {
	var evs []event
	add := func(st exectest.Step, now migState) {
		s = now
		evs = append(evs, event{step: st, leaves: now})
	}
	if s < checkpointed {
		for _, st := range destStats() {
			add(st, s)
		}
		add(step("hostname", "storage1\n"), s)
		add(destVGInfo(), s)
		add(listOf("cinder-volumes", vol1G), s)
		// What an earlier try left in fast-vg goes first: the volume may
		// have been written since (its record stayed available).
		switch s {
		case fresh:
			add(listOf(destVG), s)
		case pending, copied:
			tags := copyPendingTag
			if s == copied {
				tags = ""
			}
			add(listOf(destVG, lvRowJSON(volName, "1073741824", "-wi-a-----", "", "", "", tags)), s)
			add(exectest.Step{Args: lvremove(removeConfig, destVG+"/"+volName), Stdout: saysRemoved(volName)}, fresh)
		}
		add(fail(lvsB+destVG+"/"+volName, 5, "  Failed to find logical volume \""+destVG+"/"+volName+"\"\n"), s)
		add(step("vgs --reportformat json --units b --nosuffix -o vg_name,vg_free "+destVG,
			in(destVG, vgsJSON(`"vg_name":"cinder-volumes", "vg_free":"21470642176"`))), s)
		add(step("lvcreate -n "+volName+" "+destVG+" -L 1g --addtag "+copyPendingTag, saysCreated(volName)), pending)
		add(step("dd count=0 if="+srcDev+" of="+destDev+" iflag=direct", ""), s)
		add(step("dd count=0 if="+srcDev+" of="+destDev+" oflag=direct", ""), s)
		add(exectest.Step{Args: strings.Fields("dd if=" + srcDev + " of=" + destDev + " count=1073741824 bs=1M iflag=count_bytes,direct oflag=direct"),
			Stderr: "1024+0 records in\n1024+0 records out\n1073741824 bytes (1.1 GB, 1.0 GiB) copied, 4.21 s, 255 MB/s\n"}, s)
		add(step("lvchange --deltag "+copyPendingTag+" "+destVG+"/"+volName, saysChanged(destVG, volName)), copied)
		s = checkpointed
		evs = append(evs, event{checkpoint: true, leaves: s})
	}
	if s == checkpointed {
		add(listOf("cinder-volumes", vol1G), s)
		add(exectest.Step{Args: lvremove(removeConfig, "cinder-volumes/"+volName), Stdout: saysRemoved(volName)}, sourceGone)
	} else {
		add(listOf("cinder-volumes"), s) // the delete of step 2 finds it gone
	}
	return evs
}

// crashingHost is the storage host and Redis as one process sees them: it
// lets limit events happen (commands and the checkpoint, in order), then
// the process is gone and nothing it asks for happens any more.
type crashingHost struct {
	ex    drivers.Executor
	mu    sync.Mutex
	limit int // < 0: no crash
	log   []string
}

func (h *crashingHost) happen(what string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.limit >= 0 && len(h.log) == h.limit {
		return false
	}
	h.log = append(h.log, what)
	return true
}

func (h *crashingHost) Run(ctx context.Context, c drivers.Command) (drivers.Output, error) {
	if !h.happen(c.String()) {
		return drivers.Output{}, drivers.Errorf(drivers.KindUnavailable, "ssh storage1", "connection refused")
	}
	return h.ex.Run(ctx, c)
}

// migrate runs the migrate function once on the record rec; the host plays
// evs and lets limit events happen. saved is the last checkpoint written.
func migrate(t *testing.T, evs []event, limit int, rec *functions.Volume) (out functions.Outcome, saved *functions.Volume, err error) {
	t.Helper()
	happen := evs
	if limit >= 0 && limit < len(evs) {
		happen = evs[:limit]
	}
	var steps []exectest.Step
	for _, e := range happen {
		if !e.checkpoint {
			steps = append(steps, e.step)
		}
	}
	h := &crashingHost{ex: exectest.New(t, steps...).RequireEnv("LC_ALL=C"), limit: limit}
	backend := func(name string, opts map[string]any) drivers.Driver {
		opts["volume_clear"] = "none"
		d, err := New(drivers.Backend{Name: name, Driver: "lvm", Options: opts}, h)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	env := &functions.Env{Instance: "ember", Backends: map[string]drivers.Driver{
		"lvm-1": backend("lvm-1", map[string]any{}),
		"lvm-2": backend("lvm-2", map[string]any{"volume_group": destVG}),
	}}
	data, _ := json.Marshal(map[string]any{"volume_id": vid, "project_id": projectID, "dest_backend": "lvm-2"})
	r, err := events.NewInput(events.VolumeMigrateRequested, "/t", "mig-1", data, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	input, err := events.Decode(r.Headers, r.Value, events.VolumeMigrateRequested)
	if err != nil {
		t.Fatal(err)
	}
	req := &functions.Request{Input: input, Volume: rec.Clone(), Save: func(_ context.Context, v *functions.Volume) error {
		if !h.happen("checkpoint") {
			return errors.New("redis: connection refused")
		}
		saved = v.Clone()
		return nil
	}}
	out, err = functions.All(env)[events.VolumeMigrateRequested].Run(context.Background(), req)
	// The checkpoint came where the events put it, between the commands.
	var want []string
	for _, e := range evs[:min(len(h.log), len(evs))] {
		want = append(want, e.String())
	}
	if strings.Join(h.log, "\n") != strings.Join(want, "\n") {
		t.Errorf("ran:\n  %s\nwant:\n  %s", strings.Join(h.log, "\n  "), strings.Join(want, "\n  "))
	}
	return out, saved, err
}

func onSource() *functions.Volume {
	return &functions.Volume{ID: vid, ProjectID: projectID, Backend: "lvm-1", ProviderLocation: "cinder-volumes", SizeGB: 1, Status: functions.StatusAvailable}
}

// A crash after any number of events, then the request delivered again:
// it finishes, and the registry never names a copy that is not whole.
func TestMigrateSurvivesACrashAtEveryStep(t *testing.T) {
	full := migration(fresh)
	for n := 0; n <= len(full); n++ {
		state := fresh
		if n > 0 {
			state = full[n-1].leaves
		}
		t.Run(fmt.Sprintf("crash after %d: %s", n, strings.Fields(full[max(n-1, 0)].String())[0]), func(t *testing.T) {
			rec := onSource()
			out, saved, err := migrate(t, full, n, rec)
			if n < len(full) && (err == nil || !functions.Retryable(err)) {
				t.Fatalf("a crash must be retried, not answered: %v %+v", err, out.Results)
			}
			if (saved != nil) != (state >= checkpointed) {
				t.Fatalf("state %d, checkpoint %+v", state, saved)
			}
			if saved != nil {
				// The record moved only once the copy was whole.
				if saved.Backend != "lvm-2" || saved.ProviderLocation != destVG || saved.Migration == nil ||
					*saved.Migration != (functions.Migration{FromBackend: "lvm-1", FromProviderLocation: "cinder-volumes"}) {
					t.Fatalf("checkpoint %+v", saved)
				}
				rec = saved // what Redis holds: the request never completed
			}
			out, again, err := migrate(t, migration(state), -1, rec)
			if err != nil || out.Results[0].Type != "volume.migrate.end" {
				t.Fatalf("re-run: %v %+v", err, out.Results)
			}
			if v := out.Volume; v.Backend != "lvm-2" || v.ProviderLocation != destVG || v.Migration != nil || v.Status != functions.StatusAvailable {
				t.Fatalf("re-run left the record %+v", v)
			}
			if (again != nil) != (state < checkpointed) {
				t.Fatalf("re-run from state %d checkpointed %+v", state, again)
			}
		})
	}
}

// A copy that fails for good (a read error on the source) removes what it
// wrote in the destination and answers .error; the record stays on the
// source, untouched.
func TestMigrateCopyFailureRemovesThePartialCopy(t *testing.T) {
	var failed []event
	for _, e := range migration(fresh) {
		if strings.HasPrefix(e.String(), "dd if=") {
			for _, st := range []exectest.Step{
				fail(e.String(), 1, "dd: error reading '"+srcDev+"': Input/output error\n"),
				listOf(destVG, lvRowJSON(volName, "1073741824", "-wi-a-----", "", "", "", copyPendingTag)),
				{Args: lvremove(removeConfig, destVG+"/"+volName), Stdout: saysRemoved(volName)},
			} {
				failed = append(failed, event{step: st})
			}
			break
		}
		failed = append(failed, e)
	}
	out, saved, err := migrate(t, failed, -1, onSource())
	if err != nil || out.Results[0].Type != "volume.migrate.error" || out.Volume != nil || saved != nil {
		t.Fatalf("%v %+v, record %+v, checkpoint %+v", err, out.Results, out.Volume, saved)
	}
}

func TestMigrateOnlyToTheSameHost(t *testing.T) {
	d, _ := open(t, nil, step("hostname", "storage1\n"))
	// another host: not ours to optimise, and nothing runs beyond hostname
	if moved, _, err := d.MigrateVolume(context.Background(), drivers.Volume{ID: vid, SizeGB: 1}, "LVMVolumeDriver:storage2:fast-vg:default:0"); moved || err != nil {
		t.Fatalf("other host: moved=%v err=%v", moved, err)
	}
	for _, info := range []string{"LVMVolumeDriver:storage1:-rf:default:0", "LVMVolumeDriver:storage1:fast-vg:thick:0", "RBDDriver:x:y:z:0", ""} {
		if moved, _, err := d.MigrateVolume(context.Background(), drivers.Volume{ID: vid, SizeGB: 1}, info); moved || err != nil {
			t.Errorf("location_info %q: moved=%v err=%v", info, moved, err)
		}
	}
}

// An earlier Ember deleted the source before its checkpoint; a crash in
// between left the record on the source and the whole copy in fast-vg. The
// re-run takes the copy: the data is there and nowhere else.
func TestMigrateAfterTheOldOrderCrashed(t *testing.T) {
	var steps []exectest.Step
	steps = append(steps, destStats()...)
	steps = append(steps, step("hostname", "storage1\n"), destVGInfo(), listOf("cinder-volumes"),
		step(lvsB+destVG+"/"+volName, lvsJSON(in(destVG, lvRowJSON(volName, "1073741824", "-wi-a-----", "", "", "", "")))),
		listOf("cinder-volumes"))
	evs := make([]event, 0, len(steps)+1)
	for i, st := range steps {
		if i == len(steps)-1 {
			evs = append(evs, event{checkpoint: true})
		}
		evs = append(evs, event{step: st})
	}
	out, saved, err := migrate(t, evs, -1, onSource())
	if err != nil || out.Results[0].Type != "volume.migrate.end" || out.Volume.Backend != "lvm-2" || saved == nil {
		t.Fatalf("%v %+v record %+v checkpoint %+v", err, out.Results, out.Volume, saved)
	}
}
