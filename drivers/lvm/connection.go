package lvm

import (
	"context"

	"github.com/ember-storage/ember/drivers"
)

// InitializeConnection exports /dev/<vg>/volume-<id> through tgtd and tells
// the host how to log in (Cinder's create_export + initialize_connection
// with the tgtadm helper): driver_volume_type "iscsi", target_iqn,
// target_portal, target_lun 1 and, with CHAP, auth_method, auth_username
// and the password sealed to c.PublicKey (auth_password_sealed), or left
// out when the connector sent no key.
//
// The volume has one target whatever the number of its attachments:
// attachmentID does not change it, and attaching an attached volume
// returns the same target and credentials. An LV that is not active (LVM
// autoactivation off, a skip-activation flag) is activated first, since
// tgtd serves only a device that exists.
func (d *Driver) InitializeConnection(ctx context.Context, v drivers.Volume, attachmentID string, c drivers.Connector) (drivers.ConnectionInfo, error) {
	if !d.target.Enabled() {
		return drivers.ConnectionInfo{}, d.target.NotSupported("initialize_connection")
	}
	name, l, err := d.existing(ctx, v, "initialize connection")
	if err != nil {
		return drivers.ConnectionInfo{}, err
	}
	// lv_attr's fifth letter is the state: 'a' active, '-' not.
	if len(l.Attr) > 4 && l.Attr[4] == '-' {
		if err := d.vg.activate(ctx, name, false); err != nil {
			return drivers.ConnectionInfo{}, err
		}
	}
	return d.target.Attach(ctx, v.ID, l.path(d.vg.name), c)
}

// TerminateConnection removes the volume's target, its CHAP account and
// its target file (Cinder's terminate_connection + remove_export). A target
// that is gone is success; the LV is not looked at, so a volume deleted
// meanwhile detaches too.
//
// It ends every attachment of the volume, whatever attachmentID and c say:
// a volume has one target for all of them. The function layer calls it
// when the last attachment of the volume goes, and not before.
func (d *Driver) TerminateConnection(ctx context.Context, v drivers.Volume, attachmentID string, c drivers.Connector) error {
	if !d.target.Enabled() {
		return d.target.NotSupported("terminate_connection")
	}
	if err := drivers.CheckID(v.ID); err != nil {
		return err
	}
	return d.target.Detach(ctx, v.ID)
}
