package events

import (
	"net/url"
	"strings"
)

// Payload is the data of an input event.
type Payload interface {
	// Validate checks every field; an invalid payload runs nothing.
	Validate() error
	// Volume is the volume the operation touches: its lock, its partition key.
	Volume() string
	// Resource is the id the event is about: its subject.
	Resource() string
	// Project owns the request; it must own the volume.
	Project() string
}

// newPayload returns an empty payload for an input type.
func newPayload(typ string) Payload {
	switch typ {
	case VolumeRequested:
		return &VolumeRequest{}
	case VolumeDeleted:
		return &VolumeDelete{}
	case VolumeExtendRequested:
		return &VolumeExtend{}
	case VolumeAttachRequested:
		return &VolumeAttach{}
	case VolumeDetachRequested:
		return &VolumeDetach{}
	case SnapshotRequested:
		return &SnapshotRequest{}
	case SnapshotDeleted:
		return &SnapshotDelete{}
	case BackupRequested:
		return &BackupRequest{}
	case BackupRestoreRequested:
		return &BackupRestore{}
	case VolumeUploadRequested:
		return &VolumeUpload{}
	case VolumeMigrateRequested:
		return &VolumeMigrate{}
	}
	return nil
}

// Source kinds of a volume.requested.
const (
	SourceSnapshot = "snapshot"
	SourceVolume   = "volume"
	SourceImage    = "image"
	SourceBackup   = "backup"
)

// VolumeSource says what a new volume is made from.
type VolumeSource struct {
	Kind string `json:"kind"`
	ID   string `json:"id,omitempty"`
	URL  string `json:"url,omitempty"`
}

// VolumeRequest is the data of volume.requested.
type VolumeRequest struct {
	VolumeID         string            `json:"volume_id"`
	ProjectID        string            `json:"project_id"`
	UserID           string            `json:"user_id"`
	SizeGB           int               `json:"size_gb"`
	Name             string            `json:"name,omitempty"`
	VolumeType       string            `json:"volume_type,omitempty"`
	Backend          string            `json:"backend,omitempty"`
	AvailabilityZone string            `json:"availability_zone,omitempty"`
	Source           *VolumeSource     `json:"source,omitempty"`
	Metadata         map[string]string `json:"metadata,omitempty"`
}

func (p *VolumeRequest) Validate() error {
	if err := firstErr(checkUUID("volume_id", p.VolumeID), checkOwner("project_id", p.ProjectID),
		checkOwner("user_id", p.UserID), checkSize("size_gb", p.SizeGB),
		checkText("name", p.Name, 255), checkText("volume_type", p.VolumeType, 255),
		checkBackendName("backend", p.Backend), checkText("availability_zone", p.AvailabilityZone, 255),
		checkMetadata("metadata", p.Metadata)); err != nil {
		return err
	}
	if s := p.Source; s != nil {
		switch s.Kind {
		case SourceSnapshot, SourceVolume, SourceBackup:
			if err := checkUUID("source.id", s.ID); err != nil {
				return err
			}
			if s.ID == p.VolumeID {
				return invalid("source.id", "is the volume being created")
			}
		case SourceImage:
			if s.ID != "" {
				if err := checkUUID("source.id", s.ID); err != nil {
					return err
				}
			}
			if err := checkImageURL("source.url", s.URL); err != nil {
				return err
			}
		default:
			return invalid("source.kind", "%q is not snapshot, volume, image or backup", clip(s.Kind))
		}
	}
	return nil
}

// checkImageURL checks the form only; which prefixes may be fetched is the
// image fetcher's decision, from configuration.
func checkImageURL(field, v string) error {
	if v == "" {
		return invalid(field, "is required for an image source")
	}
	if len(v) > 2048 {
		return invalid(field, "longer than 2048 bytes")
	}
	u, err := url.Parse(v)
	if err != nil {
		return invalid(field, "is not a URL")
	}
	switch strings.ToLower(u.Scheme) {
	case "file", "http", "https":
		return nil
	}
	return invalid(field, "scheme %q is not file, http or https", clip(u.Scheme))
}

func (p *VolumeRequest) Volume() string   { return p.VolumeID }
func (p *VolumeRequest) Resource() string { return p.VolumeID }
func (p *VolumeRequest) Project() string  { return p.ProjectID }

// VolumeDelete is the data of volume.deleted.
type VolumeDelete struct {
	VolumeID  string `json:"volume_id"`
	ProjectID string `json:"project_id"`
}

func (p *VolumeDelete) Validate() error {
	return firstErr(checkUUID("volume_id", p.VolumeID), checkOwner("project_id", p.ProjectID))
}
func (p *VolumeDelete) Volume() string   { return p.VolumeID }
func (p *VolumeDelete) Resource() string { return p.VolumeID }
func (p *VolumeDelete) Project() string  { return p.ProjectID }

// VolumeExtend is the data of volume.extend.requested.
type VolumeExtend struct {
	VolumeID  string `json:"volume_id"`
	ProjectID string `json:"project_id"`
	NewSizeGB int    `json:"new_size_gb"`
}

func (p *VolumeExtend) Validate() error {
	return firstErr(checkUUID("volume_id", p.VolumeID), checkOwner("project_id", p.ProjectID),
		checkSize("new_size_gb", p.NewSizeGB))
}
func (p *VolumeExtend) Volume() string   { return p.VolumeID }
func (p *VolumeExtend) Resource() string { return p.VolumeID }
func (p *VolumeExtend) Project() string  { return p.ProjectID }

// Connector describes the attaching host.
type Connector struct {
	Initiator string `json:"initiator"`
	Host      string `json:"host"`
	IP        string `json:"ip"`
	Multipath bool   `json:"multipath,omitempty"`
	// PublicKey, when given, is the requester's X25519 key (base64): CHAP
	// secrets are sealed to it in connection_info (docs/DESIGN.md).
	PublicKey string `json:"public_key,omitempty"`
}

func (c *Connector) validate() error {
	return firstErr(checkText("connector.initiator", c.Initiator, 223), nonEmpty("connector.initiator", c.Initiator),
		checkText("connector.host", c.Host, 255), checkText("connector.ip", c.IP, 64),
		checkText("connector.public_key", c.PublicKey, 128))
}

// VolumeAttach is the data of volume.attach.requested.
type VolumeAttach struct {
	VolumeID     string    `json:"volume_id"`
	ProjectID    string    `json:"project_id"`
	AttachmentID string    `json:"attachment_id"`
	Connector    Connector `json:"connector"`
}

func (p *VolumeAttach) Validate() error {
	return firstErr(checkUUID("volume_id", p.VolumeID), checkOwner("project_id", p.ProjectID),
		checkUUID("attachment_id", p.AttachmentID), p.Connector.validate())
}
func (p *VolumeAttach) Volume() string   { return p.VolumeID }
func (p *VolumeAttach) Resource() string { return p.VolumeID }
func (p *VolumeAttach) Project() string  { return p.ProjectID }

// VolumeDetach is the data of volume.detach.requested.
type VolumeDetach VolumeAttach

func (p *VolumeDetach) Validate() error  { return (*VolumeAttach)(p).Validate() }
func (p *VolumeDetach) Volume() string   { return p.VolumeID }
func (p *VolumeDetach) Resource() string { return p.VolumeID }
func (p *VolumeDetach) Project() string  { return p.ProjectID }

// SnapshotRequest is the data of snapshot.requested.
type SnapshotRequest struct {
	SnapshotID string `json:"snapshot_id"`
	VolumeID   string `json:"volume_id"`
	ProjectID  string `json:"project_id"`
	Name       string `json:"name,omitempty"`
}

func (p *SnapshotRequest) Validate() error {
	return firstErr(checkUUID("snapshot_id", p.SnapshotID), checkUUID("volume_id", p.VolumeID),
		checkOwner("project_id", p.ProjectID), checkText("name", p.Name, 255))
}
func (p *SnapshotRequest) Volume() string   { return p.VolumeID }
func (p *SnapshotRequest) Resource() string { return p.SnapshotID }
func (p *SnapshotRequest) Project() string  { return p.ProjectID }

// SnapshotDelete is the data of snapshot.deleted.
type SnapshotDelete struct {
	SnapshotID string `json:"snapshot_id"`
	VolumeID   string `json:"volume_id"`
	ProjectID  string `json:"project_id"`
}

func (p *SnapshotDelete) Validate() error {
	return firstErr(checkUUID("snapshot_id", p.SnapshotID), checkUUID("volume_id", p.VolumeID),
		checkOwner("project_id", p.ProjectID))
}
func (p *SnapshotDelete) Volume() string   { return p.VolumeID }
func (p *SnapshotDelete) Resource() string { return p.SnapshotID }
func (p *SnapshotDelete) Project() string  { return p.ProjectID }

// BackupRequest is the data of backup.requested.
type BackupRequest struct {
	BackupID    string `json:"backup_id"`
	VolumeID    string `json:"volume_id"`
	ProjectID   string `json:"project_id"`
	Incremental bool   `json:"incremental,omitempty"`
}

func (p *BackupRequest) Validate() error {
	return firstErr(checkUUID("backup_id", p.BackupID), checkUUID("volume_id", p.VolumeID),
		checkOwner("project_id", p.ProjectID))
}
func (p *BackupRequest) Volume() string   { return p.VolumeID }
func (p *BackupRequest) Resource() string { return p.BackupID }
func (p *BackupRequest) Project() string  { return p.ProjectID }

// BackupRestore is the data of backup.restore.requested.
type BackupRestore struct {
	BackupID  string `json:"backup_id"`
	VolumeID  string `json:"volume_id"`
	ProjectID string `json:"project_id"`
}

func (p *BackupRestore) Validate() error {
	return firstErr(checkUUID("backup_id", p.BackupID), checkUUID("volume_id", p.VolumeID),
		checkOwner("project_id", p.ProjectID))
}
func (p *BackupRestore) Volume() string   { return p.VolumeID }
func (p *BackupRestore) Resource() string { return p.BackupID }
func (p *BackupRestore) Project() string  { return p.ProjectID }

// VolumeUpload is the data of volume.upload.requested.
type VolumeUpload struct {
	VolumeID   string `json:"volume_id"`
	ProjectID  string `json:"project_id"`
	ImageID    string `json:"image_id"`
	DiskFormat string `json:"disk_format"`
	// Public, when given, shares the image with every project (true) or
	// keeps it to its owner (false); omitted keeps an image as it is, and
	// a new one private. Only the image's owner project may set it: the
	// upload of another project is refused. A value that is not a JSON
	// boolean is invalid (decoding fails).
	Public *bool `json:"public,omitempty"`
}

func (p *VolumeUpload) Validate() error {
	if err := firstErr(checkUUID("volume_id", p.VolumeID), checkOwner("project_id", p.ProjectID),
		checkUUID("image_id", p.ImageID)); err != nil {
		return err
	}
	if p.DiskFormat != "raw" && p.DiskFormat != "qcow2" {
		return invalid("disk_format", "%q is not raw or qcow2", clip(p.DiskFormat))
	}
	return nil
}
func (p *VolumeUpload) Volume() string   { return p.VolumeID }
func (p *VolumeUpload) Resource() string { return p.VolumeID }
func (p *VolumeUpload) Project() string  { return p.ProjectID }

// VolumeMigrate is the data of volume.migrate.requested.
type VolumeMigrate struct {
	VolumeID    string `json:"volume_id"`
	ProjectID   string `json:"project_id"`
	DestBackend string `json:"dest_backend"`
}

func (p *VolumeMigrate) Validate() error {
	return firstErr(checkUUID("volume_id", p.VolumeID), checkOwner("project_id", p.ProjectID),
		nonEmpty("dest_backend", p.DestBackend), checkBackendName("dest_backend", p.DestBackend))
}
func (p *VolumeMigrate) Volume() string   { return p.VolumeID }
func (p *VolumeMigrate) Resource() string { return p.VolumeID }
func (p *VolumeMigrate) Project() string  { return p.ProjectID }

func nonEmpty(field, v string) error {
	if v == "" {
		return invalid(field, "is required")
	}
	return nil
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
