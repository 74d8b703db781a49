package functions

import (
	"context"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/events"
)

// AttachVolume serves volume.attach.requested: the driver exports the volume
// and authorizes the connector; .end carries connection_info, in which a
// CHAP secret is only ever sealed to the requester's key (docs/DESIGN.md).
type AttachVolume struct{ onVolume }

func newAttachVolume(env *Env) *AttachVolume {
	f := &AttachVolume{onVolume{env: env, typ: events.VolumeAttachRequested, active: StatusAttaching}}
	f.data = attachmentData
	return f
}

func (f *AttachVolume) Run(ctx context.Context, r *Request) (Outcome, error) {
	p := r.Input.Payload.(*events.VolumeAttach)
	began := f.env.now()
	v, d, err := f.existing(r, StatusAvailable, StatusInUse)
	if err != nil {
		return f.Fail(r, err), nil
	}
	for id, host := range v.Attachments {
		if id != p.AttachmentID {
			// Cinder's default: a volume is not multi-attach.
			return f.Fail(r, fail(string(drivers.KindBusy), "volume %s is attached to %s (attachment %s); detach it first", v.ID, host, id)), nil
		}
	}
	c := p.Connector
	info, err := d.InitializeConnection(ctx, dv(v), p.AttachmentID, drivers.Connector{Initiator: c.Initiator, Host: c.Host,
		IP: c.IP, Multipath: c.Multipath, PublicKey: c.PublicKey})
	if err != nil {
		return driverFailure(f, r, err)
	}
	if v.Attachments == nil {
		v.Attachments = map[string]string{}
	}
	v.Attachments[p.AttachmentID] = c.Host
	v.Status = StatusInUse
	return f.end(r, v, began, StatusInUse, func(d *events.ResultData) { d.ConnectionInfo = info }), nil
}

// DetachVolume serves volume.detach.requested. Detaching what is not
// attached is success.
type DetachVolume struct{ onVolume }

func newDetachVolume(env *Env) *DetachVolume {
	f := &DetachVolume{onVolume{env: env, typ: events.VolumeDetachRequested, active: StatusDetaching}}
	f.data = attachmentData
	return f
}

func (f *DetachVolume) Run(ctx context.Context, r *Request) (Outcome, error) {
	p := r.Input.Payload.(*events.VolumeDetach)
	began := f.env.now()
	v := r.Volume
	if v == nil || v.Tombstoned() {
		return f.gone(r, began, StatusAvailable), nil
	}
	if err := ownedBy(v, p.ProjectID); err != nil {
		return f.Fail(r, err), nil
	}
	v = v.Clone()
	delete(v.Attachments, p.AttachmentID)
	if len(v.Attachments) == 0 {
		// The export goes with the last attachment. It is removed even when
		// the record knows no attachment: an attach that crashed after the
		// driver exported and before it was recorded leaves a target that
		// only this call will clean up.
		d, err := f.env.driver(v.Backend)
		if err != nil {
			return f.Fail(r, err), nil
		}
		c := p.Connector
		err = d.TerminateConnection(ctx, dv(v), p.AttachmentID, drivers.Connector{Initiator: c.Initiator, Host: c.Host, IP: c.IP})
		if err != nil && !drivers.IsKind(err, drivers.KindNotFound) && !drivers.IsKind(err, drivers.KindNotSupported) {
			return driverFailure(f, r, err)
		}
		v.Attachments = nil
		if v.Status == StatusInUse {
			v.Status = StatusAvailable
		}
	}
	return f.end(r, v, began, v.Status, nil), nil
}

func attachmentData(r *Request, v *Volume, status string) events.ResultData {
	d := v.data()
	d.Status = status
	switch p := r.Input.Payload.(type) {
	case *events.VolumeAttach:
		d.AttachmentID = p.AttachmentID
	case *events.VolumeDetach:
		d.AttachmentID = p.AttachmentID
	}
	return d
}
