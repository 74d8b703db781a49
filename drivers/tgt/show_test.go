package tgt

import (
	"reflect"
	"testing"
)

// Output of tgtadm 1.0.85 on this machine, with a second target that has an
// initiator logged in and an outgoing account.
const showOutput = `Target 1: iqn.2010-10.org.openstack:volume-11111111-2222-3333-4444-555555555555
    System information:
        Driver: iscsi
        State: ready
    I_T nexus information:
    LUN information:
        LUN: 0
            Type: controller
            SCSI ID: IET     00010000
            SCSI SN: beaf10
            Size: 0 MB, Block size: 1
            Online: Yes
            Removable media: No
            Prevent removal: No
            Readonly: No
            SWP: No
            Thin-provisioning: No
            Backing store type: null
            Backing store path: None
            Backing store flags: 
        LUN: 1
            Type: disk
            SCSI ID: IET     00010001
            SCSI SN: beaf11
            Size: 67 MB, Block size: 512
            Online: Yes
            Removable media: No
            Prevent removal: No
            Readonly: No
            SWP: No
            Thin-provisioning: No
            Backing store type: rdwr
            Backing store path: /tmp/tgtexp/disk.img
            Backing store flags: 
    Account information:
        user1
    ACL information:
        ALL
Target 2: iqn.2010-10.org.openstack:volume-22222222-2222-3333-4444-555555555555
    System information:
        Driver: iscsi
        State: ready
    I_T nexus information:
        I_T nexus: 3
            Initiator: iqn.2008-11.org.linux-kvm: alias: none
            Connection: 0
                IP Address: 127.0.0.1
    LUN information:
        LUN: 0
            Type: controller
            Backing store path: None
        LUN: 1
            Type: disk
            Backing store path: /dev/cinder-volumes/volume-22222222-2222-3333-4444-555555555555
    Account information:
        user2
        mutual (outgoing)
    ACL information:
        ALL
`

func TestParseTargets(t *testing.T) {
	want := []liveTarget{
		{TID: 1, IQN: "iqn.2010-10.org.openstack:volume-11111111-2222-3333-4444-555555555555",
			LUNs: map[int]string{0: "None", 1: "/tmp/tgtexp/disk.img"}, Accounts: []string{"user1"}},
		{TID: 2, IQN: "iqn.2010-10.org.openstack:volume-22222222-2222-3333-4444-555555555555",
			LUNs:     map[int]string{0: "None", 1: "/dev/cinder-volumes/volume-22222222-2222-3333-4444-555555555555"},
			Accounts: []string{"user2"}, Nexuses: 1},
	}
	if got := parseTargets(showOutput); !reflect.DeepEqual(got, want) {
		t.Errorf("parseTargets:\n got %+v\nwant %+v", got, want)
	}
	if got := parseTargets(""); len(got) != 0 {
		t.Errorf("no targets: %+v", got)
	}
}
