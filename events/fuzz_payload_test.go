package events

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ember-storage/ember/drivers"
)

// One fuzz target per input type: each feeds hostile JSON to that type's
// payload validator. Their seed corpora are in testdata/fuzz/<Target>/;
// `make test` runs each for a bounded time (deploy/testenv/test.sh).
//
// Properties, for any input:
//   - decoding and validating never panics;
//   - a payload that validates carries ids that drivers.CheckID accepts (so
//     volume-<id> and snapshot-<id> are safe names), owner ids of the
//     Keystone form, and backend names and formats without path or shell
//     metacharacters: only free text (names, metadata, connector fields)
//     may hold those, and free text never reaches a command;
//   - decode → validate → marshal → publish (NewInput) → Decode gives the
//     same payload, byte for byte once marshalled again.

func FuzzVolumeRequested(f *testing.F) {
	fuzzPayload(f, VolumeRequested, createData(vol, 10),
		`{"volume_id":"`+vol+`","project_id":"`+proj+`","user_id":"`+user+`","size_gb":1,"source":{"kind":"image","url":"https://images/x.qcow2"},"metadata":{"k":"v"},"backend":"lvm-1"}`)
}

func FuzzVolumeDeleted(f *testing.F) {
	fuzzPayload(f, VolumeDeleted, `{"volume_id":"`+vol+`","project_id":"`+proj+`"}`)
}

func FuzzVolumeExtendRequested(f *testing.F) {
	fuzzPayload(f, VolumeExtendRequested, `{"volume_id":"`+vol+`","project_id":"`+proj+`","new_size_gb":20}`)
}

func FuzzVolumeAttachRequested(f *testing.F) {
	fuzzPayload(f, VolumeAttachRequested, attachData)
}

func FuzzVolumeDetachRequested(f *testing.F) {
	fuzzPayload(f, VolumeDetachRequested, attachData)
}

func FuzzSnapshotRequested(f *testing.F) {
	fuzzPayload(f, SnapshotRequested, `{"snapshot_id":"`+user+`","volume_id":"`+vol+`","project_id":"`+proj+`","name":"nightly"}`)
}

func FuzzSnapshotDeleted(f *testing.F) {
	fuzzPayload(f, SnapshotDeleted, `{"snapshot_id":"`+user+`","volume_id":"`+vol+`","project_id":"`+proj+`"}`)
}

func FuzzBackupRequested(f *testing.F) {
	fuzzPayload(f, BackupRequested, `{"backup_id":"`+user+`","volume_id":"`+vol+`","project_id":"`+proj+`","incremental":true}`)
}

func FuzzBackupRestoreRequested(f *testing.F) {
	fuzzPayload(f, BackupRestoreRequested, `{"backup_id":"`+user+`","volume_id":"`+vol+`","project_id":"`+proj+`"}`)
}

func FuzzVolumeUploadRequested(f *testing.F) {
	fuzzPayload(f, VolumeUploadRequested, `{"volume_id":"`+vol+`","project_id":"`+proj+`","image_id":"`+user+`","disk_format":"qcow2"}`)
}

func FuzzVolumeMigrateRequested(f *testing.F) {
	fuzzPayload(f, VolumeMigrateRequested, `{"volume_id":"`+vol+`","project_id":"`+proj+`","dest_backend":"lvm-2"}`)
}

const attachData = `{"volume_id":"` + vol + `","project_id":"` + proj + `","attachment_id":"` + user +
	`","connector":{"initiator":"iqn.1993-08.org.debian:01:abc","host":"compute-1","ip":"10.0.0.5","multipath":true}}`

// TestFuzzTargetsCoverEveryInputType keeps the list above complete.
func TestFuzzTargetsCoverEveryInputType(t *testing.T) {
	covered := map[string]bool{VolumeRequested: true, VolumeDeleted: true, VolumeExtendRequested: true,
		VolumeAttachRequested: true, VolumeDetachRequested: true, SnapshotRequested: true, SnapshotDeleted: true,
		BackupRequested: true, BackupRestoreRequested: true, VolumeUploadRequested: true, VolumeMigrateRequested: true}
	for _, typ := range InputTypes() {
		if !covered[typ] {
			t.Errorf("input type %s has no fuzz target", typ)
		}
	}
}

// shellOrPath are the bytes that must never reach an object name or an
// argument built from an id.
const shellOrPath = "/\\;&|$`'\"<>(){}[]*?!~#%^=, \t\r\n\x00"

func fuzzPayload(f *testing.F, typ string, seeds ...string) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParsePayload(typ, data)
		if err != nil {
			return
		}
		checkSafe(t, typ, p)
		// Round trip through the wire, as emit publishes and Ember reads.
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatalf("marshal a valid payload: %v", err)
		}
		rec, err := NewInput(typ, "/fuzz", "fuzz-1", b, time.Unix(0, 0))
		if err != nil {
			t.Fatalf("a valid payload does not publish: %v\n%s", err, b)
		}
		req, err := Decode(rec.Headers, rec.Value, typ)
		if err != nil {
			t.Fatalf("a published valid payload does not decode: %v\n%s", err, rec.Value)
		}
		b2, _ := json.Marshal(req.Payload)
		if !bytes.Equal(b, b2) {
			t.Fatalf("round trip changed the payload:\n%s\n%s", b, b2)
		}
		if req.VolumeID() != p.Volume() || req.ResourceID() != p.Resource() || rec.Key != p.Volume() {
			t.Fatalf("subject/partition key: %q %q %q, payload %q %q", req.VolumeID(), req.ResourceID(), rec.Key, p.Volume(), p.Resource())
		}
	})
}

// checkSafe asserts what a validated payload promises the drivers.
func checkSafe(t *testing.T, typ string, p Payload) {
	t.Helper()
	for _, id := range []string{p.Volume(), p.Resource()} {
		if err := drivers.CheckID(id); err != nil {
			t.Fatalf("%s: accepted id %q: %v", typ, id, err)
		}
	}
	for _, mk := range []func(string) (string, error){drivers.VolumeName, drivers.SnapshotName} {
		name, err := mk(p.Resource())
		if err != nil || strings.ContainsAny(name, shellOrPath) || strings.Contains(name, "..") {
			t.Fatalf("%s: unsafe name %q (%v)", typ, name, err)
		}
	}
	if !ownerRE.MatchString(p.Project()) {
		t.Fatalf("%s: accepted project %q", typ, p.Project())
	}
	walkFields(reflect.ValueOf(p).Elem(), "", func(field string, v string) {
		switch {
		case v == "":
		case strings.HasSuffix(field, "_id") && field != "project_id" && field != "user_id", field == "source.id":
			if err := drivers.CheckID(v); err != nil {
				t.Fatalf("%s: accepted %s %q", typ, field, v)
			}
		case field == "project_id" || field == "user_id":
			if !ownerRE.MatchString(v) {
				t.Fatalf("%s: accepted %s %q", typ, field, v)
			}
		case field == "backend" || field == "dest_backend":
			if strings.ContainsAny(v, shellOrPath) || v == "." || v == ".." || strings.HasPrefix(v, "-") {
				t.Fatalf("%s: accepted backend name %q", typ, v)
			}
		case field == "disk_format":
			if v != "raw" && v != "qcow2" {
				t.Fatalf("%s: accepted disk_format %q", typ, v)
			}
		case field == "source.kind":
			if v != SourceSnapshot && v != SourceVolume && v != SourceImage && v != SourceBackup {
				t.Fatalf("%s: accepted source kind %q", typ, v)
			}
		}
	})
}

// walkFields calls fn on every string field of a payload, by JSON name
// (nested ones as parent.child).
func walkFields(v reflect.Value, prefix string, fn func(field, v string)) {
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return
	}
	for i := 0; i < v.NumField(); i++ {
		name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("json"), ",")
		fv := v.Field(i)
		switch fv.Kind() {
		case reflect.String:
			fn(prefix+name, fv.String())
		case reflect.Struct, reflect.Pointer:
			walkFields(fv, prefix+name+".", fn)
		}
	}
}
