package functions

import "github.com/ember-storage/ember/events"

// Volume statuses, Cinder's words.
const (
	StatusCreating      = "creating"
	StatusAvailable     = "available"
	StatusInUse         = "in-use"
	StatusDeleting      = "deleting"
	StatusDeleted       = "deleted"
	StatusError         = "error"
	StatusErrorDeleting = "error_deleting"
)

// Volume is the registry record of one volume (SPEC §4): enough to find its
// backend, refuse other projects, answer duplicates and produce audits. A
// deleted volume keeps its record as a tombstone, so that a late create is
// refused.
type Volume struct {
	ID               string              `json:"id"`
	ProjectID        string              `json:"project_id"`
	UserID           string              `json:"user_id,omitempty"`
	Backend          string              `json:"backend,omitempty"`
	SizeGB           int                 `json:"size_gb,omitempty"`
	Status           string              `json:"status"`
	Name             string              `json:"name,omitempty"`
	VolumeType       string              `json:"volume_type,omitempty"`
	AvailabilityZone string              `json:"availability_zone,omitempty"`
	ProviderLocation string              `json:"provider_location,omitempty"`
	Metadata         map[string]string   `json:"metadata,omitempty"`
	CreatedAt        string              `json:"created_at,omitempty"`
	LaunchedAt       string              `json:"launched_at,omitempty"`
	DeletedAt        string              `json:"deleted_at,omitempty"`
	Snapshots        map[string]Snapshot `json:"snapshots,omitempty"`
	Attachments      map[string]string   `json:"attachments,omitempty"` // attachment id → host
	Backups          map[string]Backup   `json:"backups,omitempty"`
	// Migration is set while a migration that has copied the volume to its
	// new backend (Backend) has yet to delete the old copy.
	Migration *Migration `json:"migration,omitempty"`
	// MigratingTo names the backend a migration has begun to copy the
	// volume to, before its checkpoint: what that backend then holds under
	// the volume's name is this migration's to overwrite. Without it, a
	// volume found there is not the migration's (functions/migrate.go).
	MigratingTo string `json:"migrating_to,omitempty"`
}

// Migration is the checkpoint of a migration between its two steps.
type Migration struct {
	FromBackend          string `json:"from_backend"`
	FromProviderLocation string `json:"from_provider_location,omitempty"`
}

// Snapshot is a snapshot's part of its volume's record.
type Snapshot struct {
	ID               string `json:"id"`
	Name             string `json:"name,omitempty"`
	Status           string `json:"status"`
	VolumeSizeGB     int    `json:"volume_size,omitempty"` // the volume's size when it was taken
	ProviderLocation string `json:"provider_location,omitempty"`
	CreatedAt        string `json:"created_at,omitempty"`
}

// Backup is a backup's part of its volume's record; its data is in the
// backup store. It outlives the volume (the record stays as a tombstone).
type Backup struct {
	ID          string `json:"id"`
	Status      string `json:"status"`
	SizeGB      int    `json:"size"`
	ParentID    string `json:"parent_id,omitempty"`
	ObjectCount int    `json:"object_count,omitempty"`
	CreatedAt   string `json:"created_at,omitempty"`
}

// Tombstoned reports whether the volume was deleted.
func (v *Volume) Tombstoned() bool { return v != nil && v.Status == StatusDeleted }

// neverExisted reports a tombstone left by a delete of an id no volume ever
// had (it arrived before its create, or named a stranger's id). It refuses
// a late create of that id from the project that deleted it; another
// project's create replaces it, so that a delete cannot squat an id for
// every other project.
func (v *Volume) neverExisted() bool { return v.Tombstoned() && v.Backend == "" && v.CreatedAt == "" }

// Clone returns a deep copy, so that an outcome never aliases the record it
// was computed from.
func (v *Volume) Clone() *Volume {
	if v == nil {
		return nil
	}
	c := *v
	c.Metadata = cloneMap(v.Metadata)
	c.Attachments = cloneMap(v.Attachments)
	if v.Migration != nil {
		m := *v.Migration
		c.Migration = &m
	}
	if v.Backups != nil {
		c.Backups = make(map[string]Backup, len(v.Backups))
		for k, b := range v.Backups {
			c.Backups[k] = b
		}
	}
	if v.Snapshots != nil {
		c.Snapshots = make(map[string]Snapshot, len(v.Snapshots))
		for k, s := range v.Snapshots {
			c.Snapshots[k] = s
		}
	}
	return &c
}

func cloneMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// data is the notification payload that describes the volume.
func (v *Volume) data() events.ResultData {
	return events.ResultData{
		TenantID: v.ProjectID, UserID: v.UserID, VolumeID: v.ID, Size: v.SizeGB, Status: v.Status,
		Host: v.Backend, Backend: v.Backend, VolumeType: v.VolumeType, DisplayName: v.Name,
		AvailabilityZone: v.AvailabilityZone, CreatedAt: v.CreatedAt, LaunchedAt: v.LaunchedAt,
		DeletedAt: v.DeletedAt, ProviderLocation: v.ProviderLocation, Metadata: v.Metadata,
	}
}
