// Package tgt exports volumes over iSCSI through the Linux SCSI target
// framework's userspace daemon (tgtd), as Cinder's TgtAdm target helper
// (cinder/volume/targets/tgt.py) does. The lvm, file and remote-filesystem
// drivers share it for attach (create_export + initialize_connection) and
// detach (terminate_connection + remove_export).
//
// # How a volume is exported
//
// Every exported volume has one persistent target file,
// <volumes_dir>/volume-<id>, holding the same stanza Cinder writes:
//
//	<target iqn.2010-10.org.openstack:volume-<id>>
//	    backing-store /dev/cinder-volumes/volume-<id>
//	    driver iscsi
//	    incominguser <username> <password>
//	    write-cache on
//	</target>
//
// Export writes it (mode 0600: it holds the CHAP secret) through the
// executor, so the same code works on a local or an SSH storage host, then
// runs `tgt-admin -c <file> --update <iqn>` and checks with `tgtadm --op show
// --mode target` that tgtd lists the target with LUN 1 on the right backing
// store. tgt-admin is pointed at the volume's own file rather than at
// /etc/tgt/targets.conf, so Ember needs no tgt configuration to export; for
// targets to come back after a reboot of the storage host the operator adds
// `include <volumes_dir>/*` to /etc/tgt/targets.conf, as Cinder's install
// guide asks.
//
// # CHAP credentials
//
// Credentials are random (crypto/rand: 100-bit username, 130-bit password,
// base32, so they fit tgt's config syntax and a libiscsi URL unescaped) and
// made per export: the first attachment of an unexported volume gets fresh
// ones, Remove (detach) destroys them with the target and its tgtd account.
// Their only copy at rest is the target file on the storage host, as in
// Cinder; they are not stored in the Redis registry or in events. A repeated
// Export (a redelivered attach, a second attachment) reads them back from
// that file and returns the same ones, as Cinder's create_export does, so a
// retried attach never invalidates credentials already handed out.
// Deriving credentials from a keyed hash of the attachment id was the
// alternative; it would add a long-lived master secret to the configuration
// for no gain in idempotency, since the file already gives that.
//
// The requester receives the password only sealed for it: the attach
// request's connector carries an X25519 public key (base64, 32 bytes) and
// ConnectionInfo puts the password, sealed with NaCl's anonymous sealed box
// (X25519 + XSalsa20-Poly1305), into auth_password_sealed. Only the holder
// of the private key can open it (OpenSealed); the result event, the Kafka
// log and anything that archives them see ciphertext. Without a key the
// password is left out and only auth_method and auth_username are given:
// the requester must then obtain the secret out of band, or attach fails.
// CHAP's String, GoString and MarshalJSON never show the password, so a
// logged or marshalled Export cannot leak it either.
package tgt
