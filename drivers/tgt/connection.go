package tgt

import "github.com/ember-storage/ember/drivers"

// ConnectionInfo is what the attaching host needs to log in to e, in the
// shape of Cinder's iSCSI connection properties. It never holds the CHAP
// password in plain text: with sealKey (the requester's base64 X25519 public
// key from its connector) the password is sealed for the requester in
// auth_password_sealed; without one it is left out.
func ConnectionInfo(e Export, c drivers.Connector, sealKey string) (drivers.ConnectionInfo, error) {
	data := map[string]any{
		// The requester is told the target; it need not discover it
		// through SendTargets.
		"target_discovered": false,
		"target_iqn":        e.IQN,
		"target_portal":     e.Portal,
		"target_lun":        e.LUN,
		"volume_id":         e.VolumeID,
	}
	if c.Multipath {
		// os-brick reads the plural keys for multipath; tgt has one portal.
		data["target_iqns"] = []string{e.IQN}
		data["target_portals"] = []string{e.Portal}
		data["target_luns"] = []int{e.LUN}
	}
	if e.CHAP != nil {
		data["auth_method"] = "CHAP"
		data["auth_username"] = e.CHAP.Username
		if sealKey != "" {
			sealed, err := SealSecret(sealKey, e.CHAP.Password)
			if err != nil {
				return drivers.ConnectionInfo{}, err
			}
			data["auth_password_sealed"] = sealed
			data["auth_password_seal"] = SealScheme
		}
	}
	return drivers.ConnectionInfo{DriverVolumeType: "iscsi", Data: data}, nil
}
