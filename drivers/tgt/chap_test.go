package tgt

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/ember-storage/ember/drivers"
)

func TestSealedSecretRoundTrip(t *testing.T) {
	pub, priv, err := GenerateSealKey()
	if err != nil {
		t.Fatal(err)
	}
	secret := NewCHAP().Password
	a, err := SealSecret(pub, secret)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := SealSecret(pub, secret)
	if a == b || strings.Contains(a, secret) {
		t.Errorf("sealing is not randomised, or shows the secret: %q %q", a, b)
	}
	for _, sealed := range []string{a, b} {
		if got, err := OpenSealed(priv, sealed); err != nil || got != secret {
			t.Errorf("OpenSealed = %q, %v; want the secret", got, err)
		}
	}

	_, otherPriv, _ := GenerateSealKey()
	if _, err := OpenSealed(otherPriv, a); !drivers.IsKind(err, drivers.KindInvalid) {
		t.Errorf("another key opened the seal: %v", err)
	}
	damaged := []byte(a)
	damaged[10] ^= 1
	if _, err := OpenSealed(priv, string(damaged)); err == nil {
		t.Error("a damaged seal opened")
	}
	for _, key := range []string{"", "not base64!", "c2hvcnQ="} {
		if _, err := SealSecret(key, secret); !drivers.IsKind(err, drivers.KindInvalid) {
			t.Errorf("SealSecret(%q) = %v, want invalid", key, err)
		}
	}
}

func TestConnectionInfoNeverHoldsThePassword(t *testing.T) {
	chap := NewCHAP()
	e := Export{VolumeID: vid, IQN: iqn, Portal: "10.0.0.5:3260", LUN: 1, TID: 4, AuthMethod: "CHAP", CHAP: &chap}
	pub, priv, err := GenerateSealKey()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		key     string
		c       drivers.Connector
		sealed  bool
		plurals bool
	}{
		{"sealed for the requester", pub, drivers.Connector{Initiator: "iqn.1993-08.org.debian:01:abc", Host: "compute1"}, true, false},
		{"no key: password left out", "", drivers.Connector{Initiator: "iqn.1993-08.org.debian:01:abc"}, false, false},
		{"multipath", pub, drivers.Connector{Multipath: true}, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ci, err := ConnectionInfo(e, tc.c, tc.key)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := json.Marshal(ci)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(raw), chap.Password) {
				t.Fatalf("connection_info holds the password in plain text: %s", raw)
			}
			var got struct {
				Type string         `json:"driver_volume_type"`
				Data map[string]any `json:"data"`
			}
			if err := json.Unmarshal(raw, &got); err != nil {
				t.Fatal(err)
			}
			d := got.Data
			if got.Type != "iscsi" || d["target_iqn"] != iqn || d["target_portal"] != "10.0.0.5:3260" ||
				d["target_lun"] != 1.0 || d["target_discovered"] != false || d["volume_id"] != vid ||
				d["auth_method"] != "CHAP" || d["auth_username"] != chap.Username {
				t.Errorf("connection_info = %s", raw)
			}
			if _, ok := d["auth_password"]; ok {
				t.Error("auth_password present")
			}
			sealed, ok := d["auth_password_sealed"].(string)
			if ok != tc.sealed {
				t.Fatalf("auth_password_sealed present %v, want %v: %s", ok, tc.sealed, raw)
			}
			if tc.sealed {
				if pw, err := OpenSealed(priv, sealed); err != nil || pw != chap.Password {
					t.Errorf("requester opens %q, %v; want the CHAP password", pw, err)
				}
				if d["auth_password_seal"] != SealScheme {
					t.Errorf("auth_password_seal = %v", d["auth_password_seal"])
				}
			}
			if _, ok := d["target_portals"]; ok != tc.plurals {
				t.Errorf("multipath keys present %v, want %v", ok, tc.plurals)
			}
		})
	}

	if _, err := ConnectionInfo(e, drivers.Connector{}, "bogus"); !drivers.IsKind(err, drivers.KindInvalid) {
		t.Errorf("a bad seal key gave %v, want invalid", err)
	}
	noAuth, _ := ConnectionInfo(Export{VolumeID: vid, IQN: iqn, Portal: "10.0.0.5:3260", LUN: 1}, drivers.Connector{}, pub)
	if _, ok := noAuth.Data["auth_method"]; ok {
		t.Errorf("auth keys for a target without CHAP: %v", noAuth.Data)
	}
}

// An Export travels through logs and registries; its password must not.
func TestExportDoesNotPrintThePassword(t *testing.T) {
	chap := NewCHAP()
	e := Export{VolumeID: vid, IQN: iqn, CHAP: &chap}
	raw, _ := json.Marshal(e)
	for _, s := range []string{fmt.Sprintf("%v", e), fmt.Sprintf("%+v", e), fmt.Sprintf("%#v", e),
		fmt.Sprint(chap), fmt.Sprintf("%#v", chap), string(raw)} {
		if strings.Contains(s, chap.Password) {
			t.Errorf("password shown in %s", s)
		}
		if !strings.Contains(s, chap.Username) {
			t.Errorf("username missing from %s", s)
		}
	}
}

func TestNewCHAPIsFreshAndValid(t *testing.T) {
	a, b := NewCHAP(), NewCHAP()
	if a == b || a.Password == b.Password {
		t.Error("two NewCHAP calls gave the same secret")
	}
	if err := a.Validate(); err != nil || len(a.Password) < 26 {
		t.Errorf("NewCHAP() = %v (%d chars): %v", a, len(a.Password), err)
	}
}
