package tgt

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"regexp"

	"golang.org/x/crypto/nacl/box"

	"github.com/ember-storage/ember/drivers"
)

// CHAP is one incoming CHAP account of a target: the initiator logs in with
// it. Its String, GoString and MarshalJSON leave the password out, so that
// logging or storing an Export cannot leak it.
type CHAP struct {
	Username string
	Password string
}

// chapRE bounds what may reach tgt's config file and tgtadm's argv: no
// whitespace (the config splits on it), nothing a shell or URL would
// interpret. tgtd takes secrets of any length; iSCSI initiators commonly
// require 12 to 16 bytes at least.
var chapRE = regexp.MustCompile(`^[A-Za-z0-9]{12,64}$`)

// NewCHAP makes fresh credentials from crypto/rand. rand.Text gives 26
// base32 characters (130 bits); the username is cut to 20 because it is
// not a secret, only unique among tgtd's accounts.
func NewCHAP() CHAP {
	return CHAP{Username: rand.Text()[:20], Password: rand.Text()}
}

// Validate reports whether c can be written into a target file.
func (c CHAP) Validate() error {
	if !chapRE.MatchString(c.Username) || !chapRE.MatchString(c.Password) {
		return drivers.Errorf(drivers.KindInvalid, "check chap",
			"CHAP username and password must be 12 to 64 letters or digits")
	}
	return nil
}

func (c CHAP) String() string { return "CHAP{" + c.Username + " ********}" }
func (c CHAP) GoString() string {
	return fmt.Sprintf("tgt.CHAP{Username:%q, Password:\"********\"}", c.Username)
}

// MarshalJSON writes the username only: a CHAP that reaches JSON is on its
// way to a log, a registry or an event, none of which may hold the secret.
func (c CHAP) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Username string `json:"username"`
	}{c.Username})
}

// SealScheme names the sealing in connection_info, so that a client knows
// how to open auth_password_sealed.
const SealScheme = "nacl-sealedbox-x25519"

// GenerateSealKey makes an X25519 key pair for a requester: it puts the
// public key in its connector and keeps the private one to open the sealed
// password. Both are standard base64 of 32 bytes.
func GenerateSealKey() (publicKeyB64, privateKeyB64 string, err error) {
	pub, priv, err := box.GenerateKey(rand.Reader)
	if err != nil {
		return "", "", err
	}
	return base64.StdEncoding.EncodeToString(pub[:]), base64.StdEncoding.EncodeToString(priv[:]), nil
}

// SealSecret seals secret for the holder of the X25519 private key that
// matches publicKeyB64 (NaCl anonymous sealed box). The result is base64.
// Sealing is randomised: sealing the same secret twice gives two different
// ciphertexts that open to the same secret.
func SealSecret(publicKeyB64, secret string) (string, error) {
	pub, err := decodeKey("public", publicKeyB64)
	if err != nil {
		return "", err
	}
	sealed, err := box.SealAnonymous(nil, []byte(secret), pub, rand.Reader)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(sealed), nil
}

// OpenSealed opens what SealSecret sealed, with the requester's private key.
func OpenSealed(privateKeyB64, sealedB64 string) (string, error) {
	priv, err := decodeKey("private", privateKeyB64)
	if err != nil {
		return "", err
	}
	// The sealed box binds the recipient's public key into its nonce, so it
	// is needed to open; it follows from the private key.
	ek, err := ecdh.X25519().NewPrivateKey(priv[:])
	if err != nil {
		return "", drivers.Wrap(drivers.KindInvalid, "open sealed secret", err)
	}
	var pub [32]byte
	copy(pub[:], ek.PublicKey().Bytes())
	sealed, err := base64.StdEncoding.DecodeString(sealedB64)
	if err != nil {
		return "", drivers.Wrap(drivers.KindInvalid, "open sealed secret", err)
	}
	plain, ok := box.OpenAnonymous(nil, sealed, &pub, priv)
	if !ok {
		return "", drivers.Errorf(drivers.KindInvalid, "open sealed secret", "not sealed for this key, or damaged")
	}
	return string(plain), nil
}

func decodeKey(which, b64 string) (*[32]byte, error) {
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(raw) != 32 {
		return nil, drivers.Errorf(drivers.KindInvalid, "decode "+which+" key",
			"want standard base64 of a 32-byte X25519 key")
	}
	var k [32]byte
	copy(k[:], raw)
	return &k, nil
}
