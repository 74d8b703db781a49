package events

import (
	"errors"
	"testing"
)

// The optional public flag of volume.upload.requested: a boolean or
// absent; anything else is invalid before any function runs.
func TestVolumeUploadPublicFlag(t *testing.T) {
	base := `{"volume_id":"5b0f0a4e-3c1d-4f6e-9a8b-7c6d5e4f3a2b","project_id":"8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a",` +
		`"image_id":"1a2b3c4d-5e6f-4a8b-9c0d-1e2f3a4b5c6d","disk_format":"raw"`
	for _, tc := range []struct {
		extra string
		want  *bool
		bad   bool
	}{
		{extra: ``},
		{extra: `,"public":null`},
		{extra: `,"public":true`, want: boolPtr(true)},
		{extra: `,"public":false`, want: boolPtr(false)},
		{extra: `,"public":"true"`, bad: true},
		{extra: `,"public":1`, bad: true},
		{extra: `,"public":{}`, bad: true},
	} {
		p, err := ParsePayload(VolumeUploadRequested, []byte(base+tc.extra+`}`))
		if tc.bad {
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Errorf("%s: err %v, want a validation error", tc.extra, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.extra, err)
			continue
		}
		got := p.(*VolumeUpload).Public
		if (got == nil) != (tc.want == nil) || (got != nil && *got != *tc.want) {
			t.Errorf("%s: public %v, want %v", tc.extra, got, tc.want)
		}
	}
}

func boolPtr(b bool) *bool { return &b }
