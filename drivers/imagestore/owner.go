package imagestore

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ember-storage/ember/drivers"
)

// ErrForbidden is the cause of every refusal to let a project upload to an
// image id that another project owns, or read an image it may not read.
// Callers answer it with code forbidden; its messages name no owner.
var ErrForbidden = errors.New("the image belongs to another project")

// ownerSuffix names the owner record beside an image: <image_id>.owner for
// <image_id>.raw and <image_id>.qcow2, and in general the image's file name
// without its last extension, then .owner (cirros.img: cirros.owner).
const ownerSuffix = ".owner"

// Owner is an image's owner record, <Dir>/<image_id>.owner. ProjectID
// empty means the operator's (an owner file written by hand to share an
// image placed by hand).
type Owner struct {
	ProjectID string `json:"project_id,omitempty"`
	// Public lets every project create volumes from the image. Only the
	// owner sets it (by uploading again with public given).
	Public bool `json:"public"`
}

// Uploader is who uploads an image, and whether it asks to share it.
type Uploader struct {
	ProjectID string
	// Public, when set, makes the image readable by every project (true)
	// or by its owner only (false). Nil leaves an existing image as it is;
	// a new image is private.
	Public *bool
}

func (s *Store) ownerPath(imageID string) string {
	return filepath.Join(s.Dir, imageID+ownerSuffix)
}

// readOwner reads an owner record; found is false when there is none.
func readOwner(path string) (o Owner, found bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return Owner{}, false, nil
	}
	if err != nil {
		return Owner{}, false, drivers.Wrap(drivers.KindBackend, "read owner record", err)
	}
	if err := json.Unmarshal(b, &o); err != nil {
		// Never trust half of a record: refuse rather than guess.
		return Owner{}, false, drivers.Errorf(drivers.KindBackend, "read owner record", "%s does not parse", filepath.Base(path))
	}
	return o, true, nil
}

// claim makes u the owner of imageID, or checks that it is, before any
// byte of the image is written. The record is created whole or not at all
// (a synced temp file, hard-linked to its name: link fails if the name
// exists), so of two uploads racing on one id exactly one creates it and
// the other reads it. A crash after the record and before the image
// leaves an id its owner's retry finishes and nobody else may take.
//
// An image file without a record (placed by an operator, or uploaded
// before owners were recorded) is the operator's: no project may write it.
func (s *Store) claim(imageID string, u Uploader) error {
	if u.ProjectID == "" {
		return drivers.Errorf(drivers.KindInvalid, "claim image "+imageID, "no project given")
	}
	path := s.ownerPath(imageID)
	for attempt := 0; attempt < 2; attempt++ {
		o, found, err := readOwner(path)
		if err != nil {
			return err
		}
		if found {
			if o.ProjectID != u.ProjectID {
				return fmt.Errorf("image %s: %w", imageID, ErrForbidden)
			}
			if u.Public != nil && *u.Public != o.Public {
				o.Public = *u.Public
				return s.writeOwner(imageID, o, false)
			}
			return nil
		}
		for _, f := range []string{FormatRaw, FormatQcow2} {
			if _, err := os.Lstat(filepath.Join(s.Dir, imageID+"."+f)); err == nil {
				return fmt.Errorf("image %s: %w", imageID, ErrForbidden)
			}
		}
		o = Owner{ProjectID: u.ProjectID, Public: u.Public != nil && *u.Public}
		err = s.writeOwner(imageID, o, true)
		if !errors.Is(err, os.ErrExist) {
			return err
		}
		// Another upload created the record first: read whose it is.
	}
	return drivers.Errorf(drivers.KindBackend, "claim image "+imageID, "owner record keeps changing")
}

// writeOwner writes o as imageID's record through a synced temp file:
// linked to its name when create (os.ErrExist if it is there), renamed
// over it otherwise.
func (s *Store) writeOwner(imageID string, o Owner, create bool) error {
	op := "write owner record of image " + imageID
	b, err := json.Marshal(o)
	if err != nil {
		return drivers.Wrap(drivers.KindBackend, op, err)
	}
	// Not tmpPrefix+imageID: Put's removeTemps would take it from under
	// a concurrent claim.
	f, err := os.CreateTemp(s.Dir, tmpPrefix+"owner-"+imageID+"-*")
	if err != nil {
		return drivers.Wrap(drivers.KindBackend, op, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op once renamed
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return drivers.Wrap(drivers.KindBackend, op, err)
	}
	if create {
		err = os.Link(tmp, s.ownerPath(imageID))
		if errors.Is(err, os.ErrExist) {
			return err
		}
	} else {
		err = os.Rename(tmp, s.ownerPath(imageID))
	}
	if err != nil {
		return drivers.Wrap(drivers.KindBackend, op, err)
	}
	return drivers.Wrap(drivers.KindBackend, op, syncDir(s.Dir))
}

// Readable checks that project may read the image file real (a resolved
// path inside Dir): its owner record must name project or say public. A
// file without a record is the operator's and readable only when an owner
// file written by the operator says public. Owner records and temp files
// are not images.
func (s *Store) Readable(real, project string) error {
	name := filepath.Base(real)
	if strings.HasSuffix(name, ownerSuffix) || strings.HasPrefix(name, tmpPrefix) {
		return drivers.Errorf(drivers.KindInvalid, fetchOp, "%s is not an image", name)
	}
	stem := strings.TrimSuffix(name, filepath.Ext(name))
	o, found, err := readOwner(filepath.Join(filepath.Dir(real), stem+ownerSuffix))
	if err != nil {
		return err
	}
	if found && (o.Public || (o.ProjectID != "" && o.ProjectID == project)) {
		return nil
	}
	return fmt.Errorf("source image: %w", ErrForbidden)
}

// holds reports whether the resolved path real is inside the store's
// directory (resolved too).
func (s *Store) holds(real string) bool {
	if s == nil || s.Dir == "" {
		return false
	}
	dir, err := filepath.EvalSymlinks(s.Dir)
	if err != nil {
		return false // no directory yet: it holds nothing
	}
	return (location{scheme: "file", path: real}).within(location{scheme: "file", path: dir})
}
