package drivers

import "regexp"

// uuidRE is the only shape of id that may reach a command line: lowercase
// hex in 8-4-4-4-12 groups. Events validate ids too; drivers check again so
// that no caller can hand them a path or an option.
var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// CheckID returns an error of KindInvalid unless id is a canonical UUID.
func CheckID(id string) error {
	if !uuidRE.MatchString(id) {
		return Errorf(KindInvalid, "check id", "%q is not a canonical lowercase UUID", id)
	}
	return nil
}

// VolumeName is Cinder's object name for a volume: volume-<id>.
func VolumeName(id string) (string, error) {
	if err := CheckID(id); err != nil {
		return "", err
	}
	return "volume-" + id, nil
}

// SnapshotName is Cinder's object name for a snapshot: snapshot-<id>.
func SnapshotName(id string) (string, error) {
	if err := CheckID(id); err != nil {
		return "", err
	}
	return "snapshot-" + id, nil
}

// Bytes converts a size in GiB to bytes, refusing sizes outside the contract.
func Bytes(sizeGB int) (int64, error) {
	if sizeGB < 1 || sizeGB > 65536 {
		return 0, Errorf(KindInvalid, "check size", "size %d GB is outside 1..65536", sizeGB)
	}
	return int64(sizeGB) * GiB, nil
}
