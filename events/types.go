// Package events owns Ember's wire: the CloudEvents attributes and their
// Kafka binding, the payload of every input type with its validation, and
// the construction of result events with deterministic ids. No other package
// reads a Kafka header.
package events

// Input event types (SPEC §3). Each is also the name of its Kafka topic,
// before the configured prefix.
const (
	VolumeRequested        = "volume.requested"
	VolumeDeleted          = "volume.deleted"
	VolumeExtendRequested  = "volume.extend.requested"
	VolumeAttachRequested  = "volume.attach.requested"
	VolumeDetachRequested  = "volume.detach.requested"
	SnapshotRequested      = "snapshot.requested"
	SnapshotDeleted        = "snapshot.deleted"
	BackupRequested        = "backup.requested"
	BackupRestoreRequested = "backup.restore.requested"
	VolumeUploadRequested  = "volume.upload.requested"
	VolumeMigrateRequested = "volume.migrate.requested"
)

// Result phases. A result type is "<operation>.<phase>", e.g. volume.create.end.
const (
	PhaseStart    = "start"
	PhaseEnd      = "end"
	PhaseError    = "error"
	PhaseProgress = "progress"
)

// Timer-driven result types.
const (
	BackendStats   = "backend.stats"
	VolumeExists   = "volume.exists"
	SnapshotExists = "snapshot.exists"
)

// operations maps each input type to the operation its results are named by
// (Cinder's notification names: a volume.extend.requested yields volume.resize.*).
var operations = map[string]string{
	VolumeRequested:        "volume.create",
	VolumeDeleted:          "volume.delete",
	VolumeExtendRequested:  "volume.resize",
	VolumeAttachRequested:  "volume.attach",
	VolumeDetachRequested:  "volume.detach",
	SnapshotRequested:      "snapshot.create",
	SnapshotDeleted:        "snapshot.delete",
	BackupRequested:        "backup.create",
	BackupRestoreRequested: "backup.restore",
	VolumeUploadRequested:  "volume.upload",
	VolumeMigrateRequested: "volume.migrate",
}

// InputTypes lists every input type, in SPEC order.
func InputTypes() []string {
	return []string{VolumeRequested, VolumeDeleted, VolumeExtendRequested, VolumeAttachRequested,
		VolumeDetachRequested, SnapshotRequested, SnapshotDeleted, BackupRequested,
		BackupRestoreRequested, VolumeUploadRequested, VolumeMigrateRequested}
}

// Operation returns the result operation of an input type ("" if unknown).
func Operation(inputType string) string { return operations[inputType] }

// ResultType returns the result type of an input type in a phase,
// e.g. ResultType(VolumeExtendRequested, PhaseEnd) = "volume.resize.end".
func ResultType(inputType, phase string) string {
	op := operations[inputType]
	if op == "" {
		return ""
	}
	return op + "." + phase
}

// ResultTypes lists the result types an input type can produce.
func ResultTypes(inputType string) []string {
	return []string{ResultType(inputType, PhaseStart), ResultType(inputType, PhaseProgress),
		ResultType(inputType, PhaseEnd), ResultType(inputType, PhaseError)}
}
