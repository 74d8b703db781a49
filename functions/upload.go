package functions

import (
	"context"
	"errors"
	"io"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/drivers/imagestore"
	"github.com/ember-storage/ember/events"
)

// UploadVolume serves volume.upload.requested (Cinder's copy_volume_to_image):
// the volume's bytes become image <image_id>.<disk_format> in the image store,
// owned by the request's project. An image id is the first uploader's: an
// upload by another project to it is refused (forbidden) and writes
// nothing. The owner's upload with "public" given sets whether every
// project may create volumes from the image; without it the image stays
// as it is (new images are private).
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
	up := imagestore.Uploader{ProjectID: p.ProjectID, Public: p.Public}
	err = stream(ctx, r, size,
		func(ctx context.Context, w io.Writer) error { return d.ReadVolume(ctx, dv(v), w) },
		func(ctx context.Context, rd io.Reader) error {
			return f.env.Images.Put(ctx, p.ImageID, p.DiskFormat, up, rd, size)
		})
	if errors.Is(err, imagestore.ErrForbidden) {
		// Another project's image id, or one the operator placed: nothing
		// was written, and the answer says nothing more of that image.
		return f.Fail(r, fail(CodeForbidden, "image %s belongs to another project", p.ImageID)), nil
	}
	if err != nil {
		return driverFailure(f, r, err)
	}
	// The volume is unchanged: no record to store.
	out := f.end(r, v, began, StatusAvailable, nil)
	out.Volume = nil
	return out, nil
}
