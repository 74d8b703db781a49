package rbd

import (
	"context"
	"strings"

	"github.com/ember-storage/ember/drivers"
)

// monMap is the part of `ceph mon dump --format json` this driver reads.
type monMap struct {
	FSID string `json:"fsid"`
	Mons []struct {
		Name string `json:"name"`
		// Addr is the monitor's legacy address "host:port/nonce", the one
		// Cinder hands to os-brick and libvirt.
		Addr string `json:"addr"`
	} `json:"mons"`
}

// monitors returns the hosts and ports of the cluster's monitors, as
// Cinder's _get_mon_addrs reads them.
func (d *Driver) monitors(ctx context.Context) (monMap, []string, []string, error) {
	var mm monMap
	if err := d.runJSON(ctx, "ceph mon dump", d.cephCmd("mon", "dump", "--format", "json"), &mm); err != nil {
		return monMap{}, nil, nil, err
	}
	var hosts, ports []string
	for _, m := range mm.Mons {
		hostPort, _, _ := strings.Cut(m.Addr, "/")
		i := strings.LastIndex(hostPort, ":")
		if i < 0 {
			continue
		}
		hosts = append(hosts, strings.Trim(hostPort[:i], "[]"))
		ports = append(ports, hostPort[i+1:])
	}
	if len(hosts) == 0 {
		return monMap{}, nil, nil, drivers.Errorf(drivers.KindBackend, "ceph mon dump", "no monitor address in the monitor map")
	}
	return mm, hosts, ports, nil
}

// InitializeConnection tells a host how to open the volume with librbd:
// there is nothing to export, the client talks to the monitors and OSDs
// itself. The data carries Cinder's keys for driver_volume_type "rbd" (what
// os-brick and Nova read). It names the cephx user and, when configured,
// the libvirt secret that holds its key; never the key itself.
func (d *Driver) InitializeConnection(ctx context.Context, v drivers.Volume, attachmentID string, c drivers.Connector) (drivers.ConnectionInfo, error) {
	name, err := drivers.VolumeName(v.ID)
	if err != nil {
		return drivers.ConnectionInfo{}, err
	}
	_, exists, err := d.info(ctx, name)
	if err != nil {
		return drivers.ConnectionInfo{}, err
	}
	if !exists {
		return drivers.ConnectionInfo{}, drivers.Errorf(drivers.KindNotFound, "initialize connection "+name, "no such image in pool %s", d.o.Pool)
	}
	_, hosts, ports, err := d.monitors(ctx)
	if err != nil {
		return drivers.ConnectionInfo{}, err
	}
	data := map[string]any{
		"name":          d.o.Pool + "/" + name,
		"hosts":         hosts,
		"ports":         ports,
		"cluster_name":  "ceph",
		"auth_enabled":  true,
		"auth_username": d.o.User,
		"secret_type":   "ceph",
		"volume_id":     v.ID,
		"discard":       true,
	}
	if d.o.SecretUUID != "" {
		data["secret_uuid"] = d.o.SecretUUID
	}
	return drivers.ConnectionInfo{DriverVolumeType: "rbd", Data: data}, nil
}

// TerminateConnection has nothing to undo: InitializeConnection exported
// nothing and authorized no one.
func (d *Driver) TerminateConnection(ctx context.Context, v drivers.Volume, attachmentID string, c drivers.Connector) error {
	_, err := drivers.VolumeName(v.ID)
	return err
}
