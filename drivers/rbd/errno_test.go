package rbd

import (
	"testing"

	"github.com/ember-storage/ember/drivers"
)

// A Ceph start-up warning with its own errno before the failure's must not
// decide the kind: seen through ember serve, where two client.admin
// commands raced for one admin socket and a missing image read as a
// conflict.
func TestClassifyIgnoresEarlierLogErrnos(t *testing.T) {
	asok := "2026-11-25T10:31:32.976+0000 7fabdfe92380 -1 asok(0x562829b3b6d0) AdminSocketConfigObs::init: failed: " +
		"AdminSocket::bind_and_listen: failed to bind the UNIX domain socket to '/run/client.admin.asok': (17) File exists\n"
	for _, c := range []struct {
		stderr string
		exit   int
		want   drivers.Kind
	}{
		{asok + "rbd: error opening image volume-x: (2) No such file or directory\n", 2, drivers.KindNotFound},
		{asok + "rbd: error opening image volume-x: (2) No such file or directory\n", 1, drivers.KindNotFound},
		{asok + "rbd: create error: (17) File exists\n", 17, drivers.KindConflict},
		{"rbd: image has snapshots - not removing\n(39) Directory not empty\n", 39, drivers.KindBusy},
		{"Error ENOENT: unrecognized pool 'x'\n", 2, drivers.KindNotFound},
	} {
		err := classify("op", &drivers.CommandError{Args: []string{"rbd"}, ExitCode: c.exit, Stderr: c.stderr})
		if !drivers.IsKind(err, c.want) {
			t.Errorf("exit %d, stderr %q: got %v, want %s", c.exit, c.stderr, err, c.want)
		}
	}
}
