package drivers

import (
	"fmt"
	"testing"
)

func TestVolumeID(t *testing.T) {
	const id = "0b5cbf4e-8f0a-4c1e-9d5c-2f1a7a3c9e10"
	for name, want := range map[string]bool{
		"volume-" + id: true, "volume-" + id + ".info": false, "volume-" + id + ".tmp-create": false,
		"volume-" + id + ".deleted": false, "volume-" + id + "." + id: false, "snapshot-" + id: false,
		"_snapshot-" + id: false, "volume-0B5CBF4E-8F0A-4C1E-9D5C-2F1A7A3C9E10": false, "volume-": false,
		"xvolume-" + id: false, "volume-" + id + "\n": false, "": false,
	} {
		if got, ok := VolumeID(name); ok != want || (ok && got != id) {
			t.Errorf("VolumeID(%q) = %q, %v", name, got, ok)
		}
	}
	const id2 = "7d1f3e2a-4b5c-4d6e-8f90-a1b2c3d4e5f6"
	got := VolumeIDs([]string{"volume-" + id2, "", "volume-" + id, "volume-" + id2, "volume-" + id + ".info"})
	if fmt.Sprint(got) != fmt.Sprint([]string{id, id2}) {
		t.Errorf("VolumeIDs: %v", got)
	}
}
