// Package rbd is the Ceph RADOS block device backend, a port of the
// semantics of Cinder's rbd.py: volumes are RBD images volume-<id> in one
// pool, snapshots are RBD snapshots volume-<id>@snapshot-<id>, volumes from
// snapshots and clones of volumes are copy-on-write RBD clones.
//
// It drives the rbd and ceph command-line tools (with --format json) rather
// than go-ceph: go-ceph binds librados/librbd through cgo, which would tie
// the ember binary to Ceph's C libraries at build and run time and would let
// the driver act only on the machine it runs on. The CLIs go through the same
// Executor as every other driver, so one code path serves a local storage
// host and one reached over SSH, and tests can record them as transcripts.
package rbd

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"

	"github.com/ember-storage/ember/drivers"
)

func init() { drivers.Register("rbd", Open) }

// Options are the rbd backend's configuration keys (Cinder's rbd_* options).
type Options struct {
	Pool    string `json:"pool"`    // default "volumes"
	Conf    string `json:"conf"`    // default /etc/ceph/ceph.conf
	User    string `json:"user"`    // cephx user without "client.", default "admin"
	Keyring string `json:"keyring"` // optional; otherwise the one ceph.conf names
	// SecretUUID names the libvirt secret that holds the user's key on the
	// compute hosts (Cinder's rbd_secret_uuid). It is a reference, not the key.
	SecretUUID string `json:"secret_uuid"`
	// FlattenVolumeFromSnapshot makes volumes created from snapshots full
	// copies, so that they never hold their snapshot (Cinder's
	// rbd_flatten_volume_from_snapshot).
	FlattenVolumeFromSnapshot bool    `json:"flatten_volume_from_snapshot"`
	MaxOverSubscriptionRatio  float64 `json:"max_over_subscription_ratio"` // default 20, as Cinder
	ReservedPercentage        int     `json:"reserved_percentage"`
}

// Driver is the rbd backend.
type Driver struct {
	drivers.Unsupported
	o  Options
	ex drivers.Executor
}

// nameRE bounds what a pool or user name from the configuration may look
// like: it reaches argv, and a leading "-" would read as an option.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)

// Open builds an rbd driver for b.
func Open(b drivers.Backend, ex drivers.Executor) (drivers.Driver, error) {
	var o Options
	if err := drivers.DecodeOptions(b.Options, &o); err != nil {
		return nil, err
	}
	if o.Pool == "" {
		o.Pool = "volumes"
	}
	if o.Conf == "" {
		o.Conf = "/etc/ceph/ceph.conf"
	}
	if o.User == "" {
		o.User = "admin"
	}
	if o.MaxOverSubscriptionRatio == 0 {
		o.MaxOverSubscriptionRatio = 20
	}
	switch {
	case !nameRE.MatchString(o.Pool):
		return nil, fmt.Errorf("options: pool %q is not a pool name", o.Pool)
	case !nameRE.MatchString(o.User):
		return nil, fmt.Errorf("options: user %q is not a cephx user name", o.User)
	case !path.IsAbs(o.Conf):
		return nil, fmt.Errorf("options: conf %q must be an absolute path", o.Conf)
	case o.Keyring != "" && !path.IsAbs(o.Keyring):
		return nil, fmt.Errorf("options: keyring %q must be an absolute path", o.Keyring)
	case o.MaxOverSubscriptionRatio < 1:
		return nil, fmt.Errorf("options: max_over_subscription_ratio %v must be at least 1", o.MaxOverSubscriptionRatio)
	case o.ReservedPercentage < 0 || o.ReservedPercentage > 100:
		return nil, fmt.Errorf("options: reserved_percentage %d is outside 0..100", o.ReservedPercentage)
	}
	return &Driver{Unsupported: drivers.Unsupported{Driver: "rbd"}, o: o, ex: ex}, nil
}

// auth is what every rbd and ceph command needs to reach the cluster.
func (d *Driver) auth(tool string) []string {
	a := []string{tool, "--id", d.o.User, "--conf", d.o.Conf}
	if d.o.Keyring != "" {
		a = append(a, "--keyring", d.o.Keyring)
	}
	return a
}

// rbdCmd is `rbd <auth> --pool <pool> args...`. Image specs in args are
// relative to the pool.
func (d *Driver) rbdCmd(args ...string) drivers.Command {
	a := append(d.auth("rbd"), "--pool", d.o.Pool)
	return drivers.Command{Args: append(a, args...), Env: []string{"LC_ALL=C"}}
}

// cephCmd is `ceph <auth> args...`.
func (d *Driver) cephCmd(args ...string) drivers.Command {
	return drivers.Command{Args: append(d.auth("ceph"), args...), Env: []string{"LC_ALL=C"}}
}

// run runs c and classifies its failure under op.
func (d *Driver) run(ctx context.Context, op string, c drivers.Command) (drivers.Output, error) {
	out, err := d.ex.Run(ctx, c)
	return out, classify(op, err)
}

// runJSON runs c and decodes its stdout into v.
func (d *Driver) runJSON(ctx context.Context, op string, c drivers.Command, v any) error {
	out, err := d.run(ctx, op, c)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(out.Stdout, v); err != nil {
		return drivers.Wrap(drivers.KindBackend, op, fmt.Errorf("reading %s: %w", c, err))
	}
	return nil
}

// errnoRE finds the errno that rbd and ceph print: "(2) No such file or
// directory" (rbd, librados) or "[errno 110] RADOS timed out" (ceph).
var errnoRE = regexp.MustCompile(`\((\d+)\) [A-Z]|\[errno (\d+)\]`)

// errnoOf returns the errno a failed command reported, or 0. Both tools
// exit with the errno ("Error ENOENT: unrecognized pool" exits 2), except
// where ceph exits 1 and names it on stderr.
//
// Stderr may hold other errnos before the failure's own: Ceph's client
// start-up logs warnings such as "asok(...) AdminSocketConfigObs::init:
// failed: ... bind_and_listen: ... (17) File exists" when two commands of
// the same cephx user share an admin socket path (seen through ember serve:
// the stats timer's `ceph df` beside a create's `rbd info`, which then read
// as EEXIST, a conflict, instead of ENOENT). So an errno on stderr that
// agrees with the exit code wins, then the last one printed (the tool's own
// "rbd: ...: (2) No such file or directory" comes last), then the exit code.
func errnoOf(ce *drivers.CommandError) int {
	ms := errnoRE.FindAllStringSubmatch(ce.Stderr, -1)
	last := 0
	for _, m := range ms {
		n, _ := strconv.Atoi(m[1] + m[2])
		if n == ce.ExitCode && n > 1 {
			return n
		}
		last = n
	}
	if last != 0 {
		return last
	}
	if ce.ExitCode > 1 {
		return ce.ExitCode
	}
	return 0
}

// Errnos as Linux numbers them; rbd and ceph report them from librados.
const (
	errENOENT    = 2
	errEBUSY     = 16
	errEEXIST    = 17
	errEINVAL    = 22
	errENOSPC    = 28
	errENOTEMPTY = 39
	errESHUTDOWN = 108
	errETIMEDOUT = 110
	errEDQUOT    = 122
)

// classify maps a failed rbd or ceph command to a kind, by the errno it
// reported. A missing pool is a configuration error, not a missing image:
// a delete must never succeed because the pool name is wrong.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	ce, ok := drivers.AsCommandError(err)
	if !ok || ce.TimedOut {
		return drivers.Wrap(drivers.KindOf(err), op, err)
	}
	if strings.Contains(ce.Stderr, "error opening pool") || strings.Contains(ce.Stderr, "error opening default pool") {
		return drivers.Wrap(drivers.KindBackend, op, err)
	}
	if strings.Contains(ce.Stderr, "couldn't connect to the cluster") || strings.Contains(ce.Stderr, "error connecting to the cluster") {
		return drivers.Wrap(drivers.KindUnavailable, op, err)
	}
	kind := drivers.KindBackend
	switch errnoOf(ce) {
	case errENOENT:
		kind = drivers.KindNotFound
	case errEEXIST:
		kind = drivers.KindConflict
	case errEBUSY, errENOTEMPTY:
		kind = drivers.KindBusy
	case errENOSPC, errEDQUOT:
		kind = drivers.KindNoCapacity
	case errETIMEDOUT, errESHUTDOWN:
		kind = drivers.KindUnavailable
	}
	return drivers.Wrap(kind, op, err)
}

// errnoIs reports whether err is a command failure with errno n.
func errnoIs(err error, n int) bool {
	ce, ok := drivers.AsCommandError(err)
	return ok && !ce.TimedOut && errnoOf(ce) == n
}

// mib is a size in GiB as rbd's --size wants it (MiB by default).
func mib(sizeGB int) string { return strconv.Itoa(sizeGB * 1024) }
