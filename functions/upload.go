package functions

import (
	"context"
	"io"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/events"
)

// UploadVolume serves volume.upload.requested (Cinder's copy_volume_to_image):
// the volume's bytes become image <image_id>.<disk_format> in the image store.
type UploadVolume struct{ onVolume }

func newUploadVolume(env *Env) *UploadVolume {
	f := &UploadVolume{onVolume{env: env, typ: events.VolumeUploadRequested, active: StatusUploading}}
	f.data = func(r *Request, v *Volume, status string) events.ResultData {
		p := r.Input.Payload.(*events.VolumeUpload)
		d := v.data()
		d.Status, d.ImageID, d.DiskFormat = status, p.ImageID, p.DiskFormat
		return d
	}
	return f
}

func (f *UploadVolume) Run(ctx context.Context, r *Request) (Outcome, error) {
	p := r.Input.Payload.(*events.VolumeUpload)
	began := f.env.now()
	if f.env.Images == nil {
		return f.Fail(r, fail(string(drivers.KindNotSupported), "no image store is configured (images.dir)")), nil
	}
	v, d, err := f.existing(r, StatusAvailable)
	if err != nil {
		return f.Fail(r, err), nil
	}
	size, err := drivers.Bytes(v.SizeGB)
	if err != nil {
		return f.Fail(r, err), nil
	}
	err = stream(ctx, r, size,
		func(ctx context.Context, w io.Writer) error { return d.ReadVolume(ctx, dv(v), w) },
		func(ctx context.Context, rd io.Reader) error {
			return f.env.Images.Put(ctx, p.ImageID, p.DiskFormat, rd, size)
		})
	if err != nil {
		return driverFailure(f, r, err)
	}
	// The volume is unchanged: no record to store.
	out := f.end(r, v, began, StatusAvailable, nil)
	out.Volume = nil
	return out, nil
}
