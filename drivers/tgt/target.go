package tgt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/ember-storage/ember/drivers"
)

const (
	// DefaultIQNPrefix is Cinder's iscsi_target_prefix.
	DefaultIQNPrefix = "iqn.2010-10.org.openstack:"
	// DefaultPortal is where tgtd listens unless configured otherwise.
	DefaultPortal = "127.0.0.1:3260"
	// volumeLUN is where the volume appears: tgt reserves LUN 0 of every
	// target for its controller.
	volumeLUN = 1
)

// Config configures a Target. Zero fields take Cinder's defaults.
type Config struct {
	// Executor runs tgtadm, tgt-admin and the file commands on the storage host.
	Executor drivers.Executor
	// VolumesDir holds one persistent target file per exported volume
	// (Cinder's volumes_dir, e.g. /var/lib/ember/volumes).
	VolumesDir string
	// IQNPrefix precedes volume-<id> in target names.
	IQNPrefix string
	// Portal is the ip:port initiators connect to, as tgtd listens on it.
	Portal string
	// WriteCache is Cinder's iscsi_write_cache: "on" (default) or "off".
	WriteCache string
	// ControlPort selects tgtd's management socket (tgtd -C N); 0 is tgtd's
	// default. Several tgtd instances on one host differ by it.
	ControlPort int
}

// SetDefaults fills the zero fields.
func (c *Config) SetDefaults() {
	if c.IQNPrefix == "" {
		c.IQNPrefix = DefaultIQNPrefix
	}
	if c.Portal == "" {
		c.Portal = DefaultPortal
	}
	if c.WriteCache == "" {
		c.WriteCache = "on"
	}
}

var iqnPrefixRE = regexp.MustCompile(`^iqn\.[0-9]{4}-[0-9]{2}\.[a-z0-9.-]+:([a-z0-9.:-]*)$`)

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	var errs []error
	if c.Executor == nil {
		errs = append(errs, errors.New("executor is required"))
	}
	if err := checkPath("volumes_dir", c.VolumesDir); err != nil {
		errs = append(errs, err)
	}
	if !iqnPrefixRE.MatchString(c.IQNPrefix) {
		errs = append(errs, fmt.Errorf("iqn prefix %q: want iqn.yyyy-mm.reversed.domain: ending in ':' or a name part", c.IQNPrefix))
	}
	if host, port, err := net.SplitHostPort(c.Portal); err != nil || net.ParseIP(host) == nil || port == "" {
		errs = append(errs, fmt.Errorf("portal %q: want ip:port", c.Portal))
	}
	if c.WriteCache != "on" && c.WriteCache != "off" {
		errs = append(errs, fmt.Errorf("write cache %q: want on or off", c.WriteCache))
	}
	if c.ControlPort < 0 || c.ControlPort > 32767 { // tgtd -C refuses more
		errs = append(errs, fmt.Errorf("control port %d: out of range", c.ControlPort))
	}
	return errors.Join(errs...)
}

// Target exports volumes as iSCSI targets of one tgtd.
type Target struct{ cfg Config }

// New checks cfg, after filling its defaults, and returns a Target.
func New(cfg Config) (*Target, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("tgt: %w", err)
	}
	return &Target{cfg: cfg}, nil
}

// Export is a volume's live iSCSI target.
type Export struct {
	VolumeID string
	IQN      string
	Portal   string
	LUN      int
	// TID is tgtd's target id: local to one tgtd run, for diagnosis only.
	TID int
	// AuthMethod is "CHAP", or "" for a target without authentication.
	AuthMethod string
	CHAP       *CHAP
}

// IQN is the target name of a volume: <prefix>volume-<id>.
func (t *Target) IQN(volumeID string) (string, error) {
	name, err := drivers.VolumeName(volumeID)
	if err != nil {
		return "", err
	}
	return t.cfg.IQNPrefix + name, nil
}

// Export makes devicePath (a block device or a raw file on the storage
// host) LUN 1 of target <prefix>volume-<id>, with chap as its incoming
// account (nil: no authentication), as Cinder's create_iscsi_target.
//
// It is idempotent: exporting an exported volume returns the same target.
// Credentials already in the volume's target file win over chap, so a
// redelivered attach does not invalidate those handed out the first time;
// the returned Export carries the ones in force.
func (t *Target) Export(ctx context.Context, volumeID, devicePath string, chap *CHAP) (Export, error) {
	iqn, err := t.IQN(volumeID)
	if err != nil {
		return Export{}, err
	}
	if err := checkPath("device path", devicePath); err != nil {
		return Export{}, drivers.Wrap(drivers.KindInvalid, "export "+iqn, err)
	}
	if chap != nil {
		if err := chap.Validate(); err != nil {
			return Export{}, err
		}
	}
	file := t.file(volumeID)
	op := "export " + path.Base(file)

	prev, existed, err := t.readFile(ctx, file)
	if err != nil {
		return Export{}, classify(op, err)
	}
	if existed {
		if c, ok := parseCHAP(prev); ok {
			chap = &c
		}
	}
	want := t.stanza(iqn, devicePath, chap)
	if !existed || prev != want {
		if err := t.writeFile(ctx, file, want); err != nil {
			return Export{}, classify(op, err)
		}
	}
	// tgt-admin diffs the file against tgtd's state and creates, updates or
	// leaves the target; unchanged targets are left alone, so a repeated
	// update is harmless.
	if _, err := t.run(ctx, t.tgtAdmin("-c", file, "--update", iqn), nil); err != nil {
		if !existed {
			// As Cinder: a failed export leaves no target file behind
			// that a later include of volumes_dir would bring to life.
			// An older file stays; it may describe a live target.
			_, _ = t.run(ctx, []string{"rm", "-f", file}, nil)
		}
		return Export{}, classify(op, err)
	}
	live, err := t.verify(ctx, op, file, iqn, devicePath, chap)
	if err != nil {
		if !existed && errors.Is(err, errNoLUN) {
			// The target this call made serves nothing; leave no trace.
			if rerr := t.Remove(ctx, volumeID); rerr != nil {
				err = errors.Join(err, rerr)
			}
		}
		return Export{}, err
	}
	e := Export{VolumeID: volumeID, IQN: iqn, Portal: t.cfg.Portal, LUN: volumeLUN, TID: live.TID, CHAP: chap}
	if chap != nil {
		e.AuthMethod = "CHAP"
	}
	return e, nil
}

// errNoLUN marks an export whose target tgtd made without the volume's LUN:
// tgt-admin creates the target and exits 0 when the backing store cannot be
// opened (missing, or busy).
var errNoLUN = errors.New("target has no LUN 1 after tgt-admin --update (backing store missing or busy?)")

// verify checks that tgtd serves iqn with devicePath as LUN 1 and chap's
// account bound, recreating a missing LUN once, as Cinder does for tgt's
// habit of dropping it when the device was busy.
func (t *Target) verify(ctx context.Context, op, file, iqn, devicePath string, chap *CHAP) (liveTarget, error) {
	targets, err := t.show(ctx)
	if err != nil {
		return liveTarget{}, classify(op, err)
	}
	live, ok := findTarget(targets, iqn)
	if !ok {
		return liveTarget{}, drivers.Errorf(drivers.KindBackend, op,
			"tgt-admin --update %s succeeded but tgtd (control port %d) lists no such target: check that tgt-admin and tgtd share the control port and that %s is readable",
			iqn, t.cfg.ControlPort, file)
	}
	if _, ok := live.LUNs[volumeLUN]; !ok {
		args := t.tgtadm("--lld", "iscsi", "--op", "new", "--mode", "logicalunit",
			"--tid", strconv.Itoa(live.TID), "--lun", strconv.Itoa(volumeLUN), "-b", devicePath)
		if _, err := t.run(ctx, args, nil); err != nil {
			return liveTarget{}, classify(op, fmt.Errorf("%w; creating it: %w", errNoLUN, err))
		}
		if targets, err = t.show(ctx); err != nil {
			return liveTarget{}, classify(op, err)
		}
		if live, ok = findTarget(targets, iqn); !ok || live.LUNs[volumeLUN] == "" {
			return liveTarget{}, drivers.Wrap(drivers.KindBackend, op, fmt.Errorf("%w, even after tgtadm created it", errNoLUN))
		}
	}
	// tgt-admin skips a target that initiators are logged in to; what tgtd
	// serves may then differ from the file. Serving another device or other
	// credentials than asked must not pass as success.
	if got := live.LUNs[volumeLUN]; got != devicePath {
		return liveTarget{}, drivers.Errorf(drivers.KindConflict, op,
			"target %s (%d sessions) serves %s, not %s; tgt-admin does not update a target in use",
			iqn, live.Nexuses, got, devicePath)
	}
	switch {
	case chap != nil && !slices.Contains(live.Accounts, chap.Username):
		return liveTarget{}, drivers.Errorf(drivers.KindConflict, op,
			"target %s (%d sessions) does not have CHAP account %s bound (has %v)", iqn, live.Nexuses, chap.Username, live.Accounts)
	case chap == nil && len(live.Accounts) > 0:
		return liveTarget{}, drivers.Errorf(drivers.KindConflict, op,
			"target %s (%d sessions) requires CHAP account(s) %v but was asked to export without authentication", iqn, live.Nexuses, live.Accounts)
	}
	return live, nil
}

// Remove deletes the volume's target, its CHAP account and its target file,
// as Cinder's remove_iscsi_target. Removing what is gone is success.
// Initiators still logged in are disconnected (tgt-admin --force).
func (t *Target) Remove(ctx context.Context, volumeID string) error {
	iqn, err := t.IQN(volumeID)
	if err != nil {
		return err
	}
	file := t.file(volumeID)
	op := "remove export " + path.Base(file)

	prev, existed, err := t.readFile(ctx, file)
	if err != nil {
		return classify(op, err)
	}
	// tgtd keeps accounts after their target is deleted; each export made
	// its own, so each removal deletes it. The file names it even when a
	// crashed removal already took the target away.
	var accounts []string
	if c, ok := parseCHAP(prev); existed && ok {
		accounts = append(accounts, c.Username)
	}
	targets, err := t.show(ctx)
	if err != nil {
		return classify(op, err)
	}
	if live, ok := findTarget(targets, iqn); ok {
		accounts = append(accounts, live.Accounts...)
		if _, err := t.run(ctx, t.tgtAdmin("--force", "--delete", iqn), nil); err != nil && !gone(err) {
			return classify(op, err)
		}
		if targets, err = t.show(ctx); err != nil {
			return classify(op, err)
		}
		// Some tgt versions fail silently on --force (Cinder bug 1305343);
		// tgtadm deletes by tid whatever tgt-admin left.
		if live, ok := findTarget(targets, iqn); ok {
			args := t.tgtadm("--lld", "iscsi", "--op", "delete", "--force", "--mode", "target", "--tid", strconv.Itoa(live.TID))
			if _, err := t.run(ctx, args, nil); err != nil && !gone(err) {
				return classify(op, err)
			}
			if targets, err = t.show(ctx); err != nil {
				return classify(op, err)
			}
			if live, ok := findTarget(targets, iqn); ok {
				return drivers.Errorf(drivers.KindBackend, op, "tgtd still lists target %s (tid %d) after tgt-admin and tgtadm deleted it", iqn, live.TID)
			}
		}
	}
	slices.Sort(accounts)
	for _, user := range slices.Compact(accounts) {
		if boundElsewhere(targets, user) {
			continue
		}
		args := t.tgtadm("--lld", "iscsi", "--op", "delete", "--mode", "account", "--user", user)
		if _, err := t.run(ctx, args, nil); err != nil && !gone(err) {
			return classify(op, err)
		}
	}
	if existed {
		if _, err := t.run(ctx, []string{"rm", "-f", file}, nil); err != nil {
			return classify(op, err)
		}
	}
	return nil
}

func boundElsewhere(targets []liveTarget, user string) bool {
	for _, t := range targets {
		if slices.Contains(t.Accounts, user) {
			return true
		}
	}
	return false
}

// gone reports tgtadm's answers for what does not exist: the non-fatal
// errors of Cinder's remove_iscsi_target, and a missing account.
func gone(err error) bool {
	ce, ok := drivers.AsCommandError(err)
	if !ok {
		return false
	}
	for _, s := range []string{"can't find the target", "access control rule does not exist", "can't find the account"} {
		if strings.Contains(ce.Stderr, s) {
			return true
		}
	}
	return false
}

// classify keeps err's command, exit code and stderr and gives it a kind:
// tgtd not answering on its socket is transient (a restart, a crash that
// systemd will undo), the rest is the kind err already has.
func classify(op string, err error) error {
	if ce, ok := drivers.AsCommandError(err); ok && !ce.TimedOut &&
		(ce.ExitCode == 107 || strings.Contains(ce.Stderr, "Transport endpoint is not connected") ||
			strings.Contains(ce.Stderr, "can't connect to the tgt daemon")) {
		return drivers.Wrap(drivers.KindUnavailable, op+": tgtd is not answering", err)
	}
	return drivers.Wrap(drivers.KindOf(err), op, err)
}

func (t *Target) file(volumeID string) string {
	return path.Join(t.cfg.VolumesDir, "volume-"+volumeID)
}

// stanza is the target file's text, in the layout of Cinder's VOLUME_CONF.
func (t *Target) stanza(iqn, devicePath string, chap *CHAP) string {
	var b strings.Builder
	fmt.Fprintf(&b, "<target %s>\n    backing-store %s\n    driver iscsi\n", iqn, devicePath)
	if chap != nil {
		fmt.Fprintf(&b, "    incominguser %s %s\n", chap.Username, chap.Password)
	}
	fmt.Fprintf(&b, "    write-cache %s\n</target>\n", t.cfg.WriteCache)
	return b.String()
}

var incomingRE = regexp.MustCompile(`(?m)^\s*incominguser\s+(\S+)\s+(\S+)\s*$`)

// parseCHAP reads the incoming account from a target file.
func parseCHAP(stanza string) (CHAP, bool) {
	m := incomingRE.FindStringSubmatch(stanza)
	if m == nil {
		return CHAP{}, false
	}
	c := CHAP{Username: m[1], Password: m[2]}
	return c, c.Validate() == nil
}

// readFile returns the target file's text; existed is false when there is none.
func (t *Target) readFile(ctx context.Context, file string) (text string, existed bool, err error) {
	out, err := t.run(ctx, []string{"cat", file}, nil)
	if err != nil {
		if ce, ok := drivers.AsCommandError(err); ok && strings.Contains(ce.Stderr, "No such file or directory") {
			return "", false, nil
		}
		return "", false, err
	}
	return string(out.Stdout), true, nil
}

// writeFile replaces file with text atomically, through the executor. The
// temporary file is made 0600 before the secret goes in, since the
// directory may be world-readable; rename makes the switch atomic, so tgtd
// or a reboot never reads half a stanza. The volume lock serialises
// exports of one volume, so the temporary name needs no uniqueness.
func (t *Target) writeFile(ctx context.Context, file, text string) error {
	tmp := path.Join(path.Dir(file), "."+path.Base(file)+".tmp")
	steps := []struct {
		args  []string
		stdin io.Reader
	}{
		{[]string{"mkdir", "-p", path.Dir(file)}, nil},
		{[]string{"install", "-m", "0600", "/dev/null", tmp}, nil},
		{[]string{"tee", tmp}, strings.NewReader(text)},
		{[]string{"mv", "-fT", tmp, file}, nil},
	}
	for _, s := range steps {
		if _, err := t.run(ctx, s.args, s.stdin); err != nil {
			return err
		}
	}
	return nil
}

func (t *Target) show(ctx context.Context) ([]liveTarget, error) {
	out, err := t.run(ctx, t.tgtadm("--lld", "iscsi", "--op", "show", "--mode", "target"), nil)
	if err != nil {
		return nil, err
	}
	return parseTargets(string(out.Stdout)), nil
}

func (t *Target) tgtadm(args ...string) []string { return t.withPort("tgtadm", args) }

func (t *Target) tgtAdmin(args ...string) []string { return t.withPort("tgt-admin", args) }

// withPort adds -C only when configured, so the default argv is Cinder's.
func (t *Target) withPort(prog string, args []string) []string {
	argv := []string{prog}
	if t.cfg.ControlPort != 0 {
		argv = append(argv, "-C", strconv.Itoa(t.cfg.ControlPort))
	}
	return append(argv, args...)
}

func (t *Target) run(ctx context.Context, args []string, stdin io.Reader) (drivers.Output, error) {
	c := drivers.Command{Args: args, Env: []string{"LC_ALL=C"}, Stdin: stdin}
	if args[0] == "tee" {
		// tee echoes what it writes; that is the secret, keep it out of buffers.
		c.Stdout = io.Discard
	}
	return t.cfg.Executor.Run(ctx, c)
}

// pathRE admits the paths volumes live at (/dev/<vg>/volume-<id>,
// <dir>/volume-<id>, <mount_base>/<md5>/volume-<id>) and nothing that tgt's
// config syntax (whitespace, <, >, #) or a command line would read otherwise.
var pathRE = regexp.MustCompile(`^/[A-Za-z0-9._/+:-]*$`)

func checkPath(what, p string) error {
	if !pathRE.MatchString(p) || path.Clean(p) != p {
		return fmt.Errorf("%s %q: want a clean absolute path of letters, digits and . _ / + : -", what, p)
	}
	return nil
}
