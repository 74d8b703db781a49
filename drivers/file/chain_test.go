package file

import (
	"context"
	"encoding/json"
	"os/exec"
	"testing"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/drivers/remotefs/chaintest"
)

// The snapshot chain of the remote-filesystem base, on a local directory
// with real qemu-img.
func TestSnapshotChain(t *testing.T) {
	for _, format := range []string{"raw", "qcow2"} {
		t.Run(format, func(t *testing.T) {
			d, dir := open(t, format)
			chaintest.Scenario(t, d, dir, dir, format)
		})
	}
}

func TestReadWriteRoundTrip(t *testing.T) {
	for _, format := range []string{"raw", "qcow2"} {
		t.Run(format, func(t *testing.T) {
			d, _ := open(t, format)
			v := drivers.Volume{ID: vid, SizeGB: 1}
			if _, err := d.CreateVolume(context.Background(), v); err != nil {
				t.Fatal(err)
			}
			chaintest.RoundTrip(t, d, v)
		})
	}
}

type qemuImage struct {
	Format      string `json:"format"`
	VirtualSize int64  `json:"virtual-size"`
}

// imageInfo reads an image as qemu-img sees it; ok is false when it is absent.
func imageInfo(ctx context.Context, p string) (qemuImage, bool, error) {
	out, err := exec.CommandContext(ctx, "qemu-img", "info", "--output=json", p).Output()
	if err != nil {
		return qemuImage{}, false, nil
	}
	var ii qemuImage
	err = json.Unmarshal(out, &ii)
	return ii, err == nil, err
}
