package events

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

const (
	vol  = "6f1f3c1e-7a42-4c55-9d6a-2b8e0e4c1a01"
	proj = "0c9d5c3f2b1a4e8d9f7a6b5c4d3e2f10"
	user = "3d2c1b0a-9f8e-4d7c-8b6a-5f4e3d2c1b0a"
)

func binary(typ, subject, data string, extra ...string) (map[string]string, []byte) {
	h := map[string]string{
		"ce_specversion": "1.0", "ce_id": "req-1", "ce_source": "/portal",
		"ce_type": typ, "ce_subject": subject, "content-type": "application/json",
	}
	for i := 0; i+1 < len(extra); i += 2 {
		if extra[i+1] == "" {
			delete(h, extra[i])
		} else {
			h[extra[i]] = extra[i+1]
		}
	}
	return h, []byte(data)
}

func createData(volumeID string, size int) string {
	b, _ := json.Marshal(map[string]any{"volume_id": volumeID, "project_id": proj, "user_id": user, "size_gb": size, "name": "db; rm -rf / $(reboot)"})
	return string(b)
}

func TestDecode(t *testing.T) {
	good := createData(vol, 10)
	cases := []struct {
		name     string
		headers  map[string]string // replaces the valid binary headers
		set      map[string]string // changes them ("" deletes)
		value    []byte
		envelope bool   // want an EnvelopeError (dead letter)
		invalid  string // want a ValidationError naming this field
	}{
		{name: "binary ok"},
		{name: "structured ok", headers: map[string]string{"content-type": "application/cloudevents+json; charset=utf-8"},
			value: []byte(`{"specversion":"1.0","id":"req-1","source":"/portal","type":"volume.requested","subject":"` + vol + `","datacontenttype":"application/json","data":` + good + `}`)},
		{name: "not json structured", headers: map[string]string{"content-type": "application/cloudevents+json"}, value: []byte("{oops"), envelope: true},
		{name: "structured 0.3", headers: map[string]string{"content-type": "application/cloudevents+json"},
			value: []byte(`{"specversion":"0.3","id":"req-1","source":"/portal","type":"volume.requested","subject":"` + vol + `","datacontenttype":"application/json","data":` + good + `}`), envelope: true},
		{name: "plain record", headers: map[string]string{}, value: []byte("hello"), envelope: true},
		{name: "wrong specversion", set: map[string]string{"ce_specversion": "0.3"}, envelope: true},
		{name: "no id", set: map[string]string{"ce_id": ""}, envelope: true},
		{name: "no source", set: map[string]string{"ce_source": ""}, envelope: true},
		{name: "no subject", set: map[string]string{"ce_subject": ""}, envelope: true},
		{name: "xml data", set: map[string]string{"content-type": "application/xml"}, envelope: true},
		{name: "type for another topic", set: map[string]string{"ce_type": "volume.deleted"}, envelope: true},
		{name: "bad time", set: map[string]string{"ce_time": "yesterday"}, envelope: true},
		{name: "data not json", value: []byte("not json"), invalid: "data"},
		{name: "data too big", value: []byte(`{"name":"` + strings.Repeat("x", MaxDataBytes) + `"}`), invalid: "data"},
		{name: "trailing data", value: []byte(good + good), invalid: "data"},
		{name: "path in volume id", set: map[string]string{"ce_subject": "../../etc"}, value: []byte(createData("../../etc", 1)), invalid: "volume_id"},
		{name: "shell in volume id", set: map[string]string{"ce_subject": "x;reboot"}, value: []byte(createData("x;reboot", 1)), invalid: "volume_id"},
		{name: "uppercase id", value: []byte(createData(strings.ToUpper(vol), 1)), invalid: "volume_id"},
		{name: "size zero", value: []byte(createData(vol, 0)), invalid: "size_gb"},
		{name: "size too big", value: []byte(createData(vol, 65537)), invalid: "size_gb"},
		{name: "subject mismatch", set: map[string]string{"ce_subject": "6f1f3c1e-7a42-4c55-9d6a-2b8e0e4c1a02"}, invalid: "subject"},
		{name: "partitionkey mismatch", set: map[string]string{"ce_partitionkey": "6f1f3c1e-7a42-4c55-9d6a-2b8e0e4c1a02"}, invalid: "partitionkey"},
		{name: "bad source kind", value: []byte(`{"volume_id":"` + vol + `","project_id":"` + proj + `","user_id":"` + user + `","size_gb":1,"source":{"kind":"magic"}}`), invalid: "source.kind"},
		{name: "image gopher url", value: []byte(`{"volume_id":"` + vol + `","project_id":"` + proj + `","user_id":"` + user + `","size_gb":1,"source":{"kind":"image","url":"gopher://x"}}`), invalid: "source.url"},
		{name: "control char name", value: []byte(`{"volume_id":"` + vol + `","project_id":"` + proj + `","user_id":"` + user + `","size_gb":1,"name":"a\u0000b"}`), invalid: "name"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h, v := binary(VolumeRequested, vol, good)
			if c.headers != nil {
				h = c.headers
			}
			if c.set != nil {
				for k, val := range c.set {
					if val == "" {
						delete(h, k)
					} else {
						h[k] = val
					}
				}
			}
			if c.value != nil {
				v = c.value
			}
			req, err := Decode(h, v, VolumeRequested)
			var ee *EnvelopeError
			var ve *ValidationError
			switch {
			case c.envelope:
				if !errors.As(err, &ee) {
					t.Fatalf("want EnvelopeError, got %v", err)
				}
			case c.invalid != "":
				if !errors.As(err, &ve) || ve.Field != c.invalid {
					t.Fatalf("want ValidationError on %s, got %v", c.invalid, err)
				}
				if req == nil {
					t.Fatal("a validation error must come with the request, for its .error result")
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				p := req.Payload.(*VolumeRequest)
				if p.VolumeID != vol || p.SizeGB != 10 || p.Name != "db; rm -rf / $(reboot)" {
					t.Fatalf("payload %+v", p)
				}
			}
		})
	}
}

func TestBuildIsDeterministicAndCarriesLineage(t *testing.T) {
	h, v := binary(VolumeRequested, vol, createData(vol, 10),
		"ce_traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "ce_correlationid", "order-7")
	req, err := Decode(h, v, VolumeRequested)
	if err != nil {
		t.Fatal(err)
	}
	r := Result{Type: "volume.create.end", Source: "/ember/local", Time: time.Unix(1700000000, 0),
		Data: ResultData{TenantID: proj, VolumeID: vol, Size: 10, Status: "available"}}
	a, err := Build(req, r, Binary)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Build(req, r, Binary)
	if a.ID != b.ID || string(a.Value) != string(b.Value) {
		t.Fatal("the same result built twice differs")
	}
	if a.ID != ResultID("/portal", "req-1", "volume.create.end", "") {
		t.Fatal("id not derived from (source, id, type)")
	}
	if other, _ := Build(req, Result{Type: "volume.create.start", Source: "/ember/local"}, Binary); other.ID == a.ID {
		t.Fatal("start and end share an id")
	}
	want := map[string]string{"ce_causationid": "req-1", "ce_correlationid": "order-7", "ce_partitionkey": vol,
		"ce_subject": vol, "ce_source": "/ember/local", "ce_type": "volume.create.end", "content-type": "application/json"}
	for k, val := range want {
		if a.Headers[k] != val {
			t.Errorf("%s = %q, want %q", k, a.Headers[k], val)
		}
	}
	if a.Key != vol {
		t.Errorf("key %q", a.Key)
	}
	tp := a.Headers["ce_traceparent"]
	if !strings.HasPrefix(tp, "00-4bf92f3577b34da6a3ce929d0e0e4736-") || strings.Contains(tp, "00f067aa0ba902b7") || !strings.HasSuffix(tp, "-01") {
		t.Errorf("traceparent not continued: %s", tp)
	}
	// A consumer reads it back, binary and structured.
	for _, mode := range []Mode{Binary, Structured} {
		rec, _ := Build(req, r, mode)
		e, err := ReadRecord(rec.Headers, rec.Value)
		if err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		var d ResultData
		if err := e.DataAs(&d); err != nil || d.Size != 10 || d.TenantID != proj || e.ID() != a.ID {
			t.Fatalf("%s: read back %+v %v", mode, d, err)
		}
	}
}

func TestUncorrelatedRequestGetsItsOwnIDAndATrace(t *testing.T) {
	h, v := binary(VolumeRequested, vol, createData(vol, 1))
	req, _ := Decode(h, v, VolumeRequested)
	rec, _ := Build(req, Result{Type: "volume.create.start", Source: "/ember/x"}, Binary)
	if rec.Headers["ce_correlationid"] != "req-1" {
		t.Fatalf("correlationid %q", rec.Headers["ce_correlationid"])
	}
	if !traceparentRE.MatchString(rec.Headers["ce_traceparent"]) {
		t.Fatalf("traceparent %q", rec.Headers["ce_traceparent"])
	}
	if _, ok := rec.Headers["ce_time"]; ok {
		t.Fatal("a start without a request time must carry none (reproducible)")
	}
}

func TestResultTypes(t *testing.T) {
	if got := ResultType(VolumeExtendRequested, PhaseEnd); got != "volume.resize.end" {
		t.Fatal(got)
	}
	for _, typ := range InputTypes() {
		if Operation(typ) == "" || newPayload(typ) == nil {
			t.Errorf("%s has no operation or payload", typ)
		}
	}
}
