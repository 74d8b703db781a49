package remotefs

import (
	"context"

	"github.com/ember-storage/ember/drivers"
)

// InitializeConnection attaches the volume in one of two ways, by what its
// active file is:
//
//   - raw, the base file itself (no snapshots): exported through tgtd with
//     the file as LUN 1's backing store, and answered with tgt's iSCSI
//     connection_info (target_iqn, target_portal, target_lun 1, CHAP with
//     the password sealed to c.PublicKey or left out);
//   - qcow2 (a qcow2 volume, or a snapshot chain): tgt would serve the
//     qcow2 container as raw bytes, so nothing is exported and the answer
//     is Cinder's remotefs connection_info: driver_volume_type glusterfs,
//     nfs or local, data {export: the share, name: the active file's name,
//     format: "qcow2", options: the share's mount options}.
//
// The base file of a raw backend is always opened as raw (readChain): a
// qcow2 header a guest wrote into its disk is raw bytes like any other, and
// tgt serves them as such; it never reaches a host as qcow2, which would
// let the guest choose what the host opens (format probing, OSSA-2015-014).
//
// With target_helper none both ways answer not_supported. The volume has
// one target whatever the number of its attachments: attaching an attached
// volume returns the same target and credentials.
func (d *Driver) InitializeConnection(ctx context.Context, vol drivers.Volume, attachmentID string, c drivers.Connector) (drivers.ConnectionInfo, error) {
	const op = "initialize connection"
	if !d.target.Enabled() {
		return drivers.ConnectionInfo{}, d.target.NotSupported("initialize_connection")
	}
	v, err := d.mustLocate(ctx, op, vol.ID, vol.ProviderLocation)
	if err != nil {
		return drivers.ConnectionInfo{}, err
	}
	_, ch, err := d.activeChain(ctx, op, v)
	if err != nil {
		return drivers.ConnectionInfo{}, err
	}
	a := ch.active()
	if len(ch) == 1 && a.Format == "raw" {
		return d.target.Attach(ctx, vol.ID, v.path(a.file()), c)
	}
	return drivers.ConnectionInfo{
		DriverVolumeType: d.cfg.VolumeType,
		Data: map[string]any{
			"export":  v.share,
			"name":    a.file(),
			"format":  a.Format,
			"options": d.cfg.MountOptions,
		},
	}, nil
}

// TerminateConnection removes the volume's tgt target, its CHAP account
// and its target file. A target that is gone is success, and so is a
// volume that never had one (a qcow2 volume: the host unmounts on its
// own, and tgtd is not asked).
//
// It ends every attachment of the volume, whatever attachmentID and c say:
// a volume has one target for all of them. The function layer calls it
// when the last attachment of the volume goes, and not before.
func (d *Driver) TerminateConnection(ctx context.Context, vol drivers.Volume, attachmentID string, c drivers.Connector) error {
	if !d.target.Enabled() {
		return d.target.NotSupported("terminate_connection")
	}
	if err := drivers.CheckID(vol.ID); err != nil {
		return err
	}
	// A volume whose active file is qcow2 was never exported: tgtd need
	// not even run. Its format cannot have changed since the attach, for
	// snapshots (which make qcow2 overlays) are refused while a volume is
	// attached. Any doubt (the volume gone, the chain unreadable) falls
	// through to removing the target, which is idempotent.
	if v, err := d.mustLocate(ctx, "terminate connection", vol.ID, vol.ProviderLocation); err == nil {
		if _, ch, err := d.activeChain(ctx, "terminate connection", v); err == nil && (len(ch) > 1 || ch.active().Format != "raw") {
			return nil
		}
	}
	return d.target.Detach(ctx, vol.ID)
}
