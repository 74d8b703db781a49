// Package drivers holds the storage contract: the Driver interface that every
// backend implements, the executor that runs their commands, typed errors and a
// registry of drivers by name (in the manner of database/sql). Callers never
// import a concrete driver; they Open one by the name in the configuration.
package drivers

import (
	"context"
	"io"
)

// GiB is the unit of every size in the contract.
const GiB int64 = 1 << 30

// Volume is what a driver needs to know of a volume. IDs are validated UUIDs:
// drivers build object names from them and from nothing else.
type Volume struct {
	ID     string
	SizeGB int
	// ProviderLocation is what the driver returned when it created the volume
	// (a share, a pool, a path), kept in the registry and handed back.
	ProviderLocation string
}

// Snapshot is a point-in-time copy of a volume.
type Snapshot struct {
	ID               string
	VolumeID         string
	VolumeSizeGB     int
	ProviderLocation string
}

// Connector describes the host that wants to attach a volume (Cinder's connector).
type Connector struct {
	Initiator string `json:"initiator"`
	Host      string `json:"host"`
	IP        string `json:"ip"`
	Multipath bool   `json:"multipath,omitempty"`
	// PublicKey is the requester's base64 X25519 key, when it sent one:
	// CHAP secrets in connection_info are sealed to it (tgt.SealSecret),
	// and left out without it.
	PublicKey string `json:"public_key,omitempty"`
}

// ConnectionInfo tells the attaching host how to reach the volume. It never
// carries a secret in plain text.
type ConnectionInfo struct {
	DriverVolumeType string         `json:"driver_volume_type"`
	Data             map[string]any `json:"data"`
}

// ModelUpdate is what a create returns for the registry.
type ModelUpdate struct {
	ProviderLocation string
}

// Stats are a backend's capacity figures with Cinder's field names.
type Stats struct {
	TotalCapacityGB          float64 `json:"total_capacity_gb"`
	FreeCapacityGB           float64 `json:"free_capacity_gb"`
	ProvisionedCapacityGB    float64 `json:"provisioned_capacity_gb"`
	ReservedPercentage       int     `json:"reserved_percentage"`
	ThinProvisioningSupport  bool    `json:"thin_provisioning_support"`
	ThickProvisioningSupport bool    `json:"thick_provisioning_support"`
	MaxOverSubscriptionRatio float64 `json:"max_over_subscription_ratio"`
	TotalVolumes             int     `json:"total_volumes"`
	LocationInfo             string  `json:"location_info"`
	// Extra holds driver-specific figures (e.g. thin pool data percent).
	Extra map[string]any `json:"extra,omitempty"`
}

// Driver is one storage backend. Every method is idempotent in CSI's sense:
// creating what already exists with the same parameters succeeds, deleting
// what is gone succeeds. Drivers check before they act.
//
// A driver that cannot do an operation returns an *Error of KindNotSupported;
// embed Unsupported to get that for every method not yet written.
type Driver interface {
	CreateVolume(ctx context.Context, v Volume) (ModelUpdate, error)
	DeleteVolume(ctx context.Context, v Volume) error
	ExtendVolume(ctx context.Context, v Volume, newSizeGB int) error

	CreateSnapshot(ctx context.Context, s Snapshot) (ModelUpdate, error)
	DeleteSnapshot(ctx context.Context, s Snapshot) error
	CreateVolumeFromSnapshot(ctx context.Context, v Volume, s Snapshot) (ModelUpdate, error)
	CreateClonedVolume(ctx context.Context, v Volume, src Volume) (ModelUpdate, error)

	// InitializeConnection exports the volume (create_export) and
	// authorizes the connector; TerminateConnection undoes both.
	InitializeConnection(ctx context.Context, v Volume, attachmentID string, c Connector) (ConnectionInfo, error)
	TerminateConnection(ctx context.Context, v Volume, attachmentID string, c Connector) error

	// ReadVolume streams the volume's raw bytes (SizeGB GiB) to w; WriteVolume
	// replaces the content of an existing volume with raw bytes from r. Backup,
	// restore, image copy and migration are built on these two.
	ReadVolume(ctx context.Context, v Volume, w io.Writer) error
	WriteVolume(ctx context.Context, v Volume, r io.Reader) error

	GetVolumeStats(ctx context.Context) (Stats, error)
}

// Unsupported answers KindNotSupported for every operation. Drivers embed it
// and override what they implement.
type Unsupported struct{ Driver string }

func (u Unsupported) no(op string) error {
	return &Error{Kind: KindNotSupported, Op: op, Err: errorString(u.Driver + " driver does not support " + op)}
}

func (u Unsupported) CreateVolume(context.Context, Volume) (ModelUpdate, error) {
	return ModelUpdate{}, u.no("create_volume")
}
func (u Unsupported) DeleteVolume(context.Context, Volume) error { return u.no("delete_volume") }
func (u Unsupported) ExtendVolume(context.Context, Volume, int) error {
	return u.no("extend_volume")
}
func (u Unsupported) CreateSnapshot(context.Context, Snapshot) (ModelUpdate, error) {
	return ModelUpdate{}, u.no("create_snapshot")
}
func (u Unsupported) DeleteSnapshot(context.Context, Snapshot) error {
	return u.no("delete_snapshot")
}
func (u Unsupported) CreateVolumeFromSnapshot(context.Context, Volume, Snapshot) (ModelUpdate, error) {
	return ModelUpdate{}, u.no("create_volume_from_snapshot")
}
func (u Unsupported) CreateClonedVolume(context.Context, Volume, Volume) (ModelUpdate, error) {
	return ModelUpdate{}, u.no("create_cloned_volume")
}
func (u Unsupported) InitializeConnection(context.Context, Volume, string, Connector) (ConnectionInfo, error) {
	return ConnectionInfo{}, u.no("initialize_connection")
}
func (u Unsupported) TerminateConnection(context.Context, Volume, string, Connector) error {
	return u.no("terminate_connection")
}
func (u Unsupported) ReadVolume(context.Context, Volume, io.Writer) error {
	return u.no("read_volume")
}
func (u Unsupported) WriteVolume(context.Context, Volume, io.Reader) error {
	return u.no("write_volume")
}
func (u Unsupported) GetVolumeStats(context.Context) (Stats, error) {
	return Stats{}, u.no("get_volume_stats")
}

type errorString string

func (e errorString) Error() string { return string(e) }
