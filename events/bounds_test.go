package events

import (
	"errors"
	"strings"
	"testing"
)

// TestDecodeBoundsEveryHeader: what arrives beside the data is bounded
// before anything is parsed, so that no result and no dead letter can grow
// past what the producer sends.
func TestDecodeBoundsEveryHeader(t *testing.T) {
	big := strings.Repeat("a", MaxAttributeBytes+1)
	cases := []struct {
		name string
		kv   []string
	}{
		{"headers over the bound", []string{"x-padding", strings.Repeat("p", MaxHeaderBytes)}},
		{"long id", []string{"ce_id", big}},
		{"long source", []string{"ce_source", "/" + big}},
		{"long extension", []string{"ce_correlationid", big}},
		{"tracestate of a megabyte", []string{"ce_tracestate", "v=" + strings.Repeat("a", 1<<20)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h, v := binary(VolumeRequested, vol, createData(vol, 1), c.kv...)
			_, err := Decode(h, v, VolumeRequested)
			var env *EnvelopeError
			if !errors.As(err, &env) {
				t.Fatalf("err %v, want an envelope error (dead letter)", err)
			}
		})
	}
	t.Run("structured record over the bound", func(t *testing.T) {
		h := map[string]string{"content-type": "application/cloudevents+json"}
		_, err := Decode(h, []byte(`{"pad":"`+strings.Repeat("a", MaxStructuredBytes)+`"}`), VolumeRequested)
		var env *EnvelopeError
		if !errors.As(err, &env) || !strings.Contains(err.Error(), "structured event is") {
			t.Fatalf("err %v", err)
		}
	})
}

// TestTraceStateIsCutAtAMemberBoundary: W3C Trace Context allows at most 32
// members, and 512 characters must be propagated; Ember keeps the first
// members within both and drops the rest, empty members included.
func TestTraceStateIsCutAtAMemberBoundary(t *testing.T) {
	var members []string
	for i := 0; i < 40; i++ {
		members = append(members, "k"+strings.Repeat("x", i%3)+"="+strings.Repeat("v", 20))
	}
	h, v := binary(VolumeRequested, vol, createData(vol, 1), "ce_tracestate", " ,"+strings.Join(members, " , "),
		"ce_traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	req, err := Decode(h, v, VolumeRequested)
	if err != nil {
		t.Fatal(err)
	}
	ts, _ := req.Event.Extensions()[ExtTraceState].(string)
	got := strings.Split(ts, ",")
	if len(ts) > MaxTraceStateBytes || len(got) > MaxTraceStateMembers || got[0] != members[0] || len(got) < 10 {
		t.Fatalf("tracestate %d bytes, %d members: %q", len(ts), len(got), ts)
	}
	for i, m := range got {
		if m != members[i] {
			t.Fatalf("member %d is %q, want %q", i, m, members[i])
		}
	}
	rec, err := Build(req, Result{Type: "volume.create.start", Source: "/ember/x"}, Binary)
	if err != nil || rec.Headers["ce_tracestate"] != ts {
		t.Fatalf("result tracestate %q (%v), want %q", rec.Headers["ce_tracestate"], err, ts)
	}
}

// TestBuildBoundsErrorMessages: an .error's message may quote a storage
// host at length; it is cut on a UTF-8 boundary.
func TestBuildBoundsErrorMessages(t *testing.T) {
	h, v := binary(VolumeRequested, vol, createData(vol, 1))
	req, err := Decode(h, v, VolumeRequested)
	if err != nil {
		t.Fatal(err)
	}
	msg := strings.Repeat("é", MaxErrorMessageBytes)
	rec, err := Build(req, Result{Type: "volume.create.error", Source: "/ember/x",
		Data: ResultData{Error: &ErrorInfo{Code: "backend", Message: msg}}}, Binary)
	if err != nil {
		t.Fatal(err)
	}
	e, err := ReadRecord(rec.Headers, rec.Value)
	if err != nil {
		t.Fatal(err)
	}
	var d ResultData
	if err := e.DataAs(&d); err != nil {
		t.Fatal(err)
	}
	if len(d.Error.Message) > MaxErrorMessageBytes || !strings.HasSuffix(d.Error.Message, "…") || !strings.HasPrefix(d.Error.Message, "éé") {
		t.Fatalf("message of %d bytes: %.20q…", len(d.Error.Message), d.Error.Message)
	}
	if rec.Size() > MaxResultBytes {
		t.Fatalf("result of %d bytes", rec.Size())
	}
}

func TestFingerprintTellsRequestsApart(t *testing.T) {
	h, v := binary(VolumeRequested, vol, createData(vol, 1))
	a, _ := Decode(h, v, VolumeRequested)
	// The same request with other spacing and key order is the same.
	h2, v2 := binary(VolumeRequested, vol, `{ "size_gb": 1, "name": "db; rm -rf / $(reboot)", "user_id": "`+user+`", "project_id": "`+proj+`", "volume_id": "`+vol+`" }`)
	b, err := Decode(h2, v2, VolumeRequested)
	if err != nil {
		t.Fatal(err)
	}
	h3, v3 := binary(VolumeRequested, vol, createData(vol, 2))
	c, _ := Decode(h3, v3, VolumeRequested)
	if a.Fingerprint() != b.Fingerprint() || a.Fingerprint() == c.Fingerprint() {
		t.Fatalf("fingerprints %s %s %s", a.Fingerprint(), b.Fingerprint(), c.Fingerprint())
	}
}
