package events

import (
	"strings"
	"testing"
)

// FuzzDecode feeds hostile records to the decoder: it must never panic, and
// whatever it accepts must carry ids that are safe to put on a command line.
func FuzzDecode(f *testing.F) {
	good := createData(vol, 10)
	f.Add("1.0", "req-1", "/portal", VolumeRequested, vol, "application/json", good)
	f.Add("1.0", "req-1", "/portal", VolumeRequested, "../../etc", "application/json", createData("../../etc", 1))
	f.Add("1.0", "x", "/s", VolumeRequested, vol, "application/cloudevents+json", `{"specversion":"1.0","id":"a","source":"/b","type":"volume.requested","subject":"`+vol+`","datacontenttype":"application/json","data":`+good+`}`)
	f.Add("0.3", "", "", "", "", "", "")
	f.Add("1.0", "id", "/s", VolumeRequested, vol, "application/json", `{"volume_id":"`+vol+`","size_gb":1e400}`)
	f.Fuzz(func(t *testing.T, spec, id, source, typ, subject, ct, value string) {
		h := map[string]string{"ce_specversion": spec, "ce_id": id, "ce_source": source, "ce_type": typ,
			"ce_subject": subject, "content-type": ct}
		req, err := Decode(h, []byte(value), VolumeRequested)
		if err != nil {
			return
		}
		p := req.Payload.(*VolumeRequest)
		for _, s := range []string{p.VolumeID, req.VolumeID(), req.ResourceID()} {
			if !uuidRE.MatchString(s) || strings.ContainsAny(s, "/;$ `") {
				t.Fatalf("accepted an unsafe id %q", s)
			}
		}
		if p.SizeGB < 1 || p.SizeGB > 65536 {
			t.Fatalf("accepted size %d", p.SizeGB)
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	h, v := binary(VolumeRequested, vol, createData(vol, 10))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := Decode(h, v, VolumeRequested); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBuildResult(b *testing.B) {
	h, v := binary(VolumeRequested, vol, createData(vol, 10))
	req, _ := Decode(h, v, VolumeRequested)
	r := Result{Type: "volume.create.end", Source: "/ember/local", Data: ResultData{TenantID: proj, VolumeID: vol, Size: 10, Status: "available"}}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := Build(req, r, Binary); err != nil {
			b.Fatal(err)
		}
	}
}
