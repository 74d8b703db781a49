package functions

import "github.com/ember-storage/ember/events"

// Notification is the volume's notification payload (Cinder's field
// names), as its results carry it; the audit timer's volume.exists uses it.
func (v *Volume) Notification() events.ResultData { return v.data() }

// SnapshotNotification is the payload of a snapshot of v (Cinder's
// snapshot notification fields: volume_size is the volume's size when the
// snapshot was taken, or its size now if the record does not say).
func (v *Volume) SnapshotNotification(s Snapshot) events.ResultData {
	size := s.VolumeSizeGB
	if size == 0 {
		size = v.SizeGB
	}
	return events.ResultData{
		TenantID: v.ProjectID, UserID: v.UserID, VolumeID: v.ID, SnapshotID: s.ID, VolumeSize: size,
		Status: s.Status, Host: v.Backend, Backend: v.Backend, DisplayName: s.Name,
		AvailabilityZone: v.AvailabilityZone, CreatedAt: s.CreatedAt, ProviderLocation: s.ProviderLocation,
	}
}
