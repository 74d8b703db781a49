// Package sheepdog is the Sheepdog backend: volumes are VDIs volume-<id>,
// snapshots are VDI snapshots tagged snapshot-<id>, managed with the `dog`
// CLI with the semantics of Cinder's last SheepdogClient (cinder/volume/
// drivers/sheepdog.py, removed in Train).
//
// Sheepdog is no longer developed (upstream archived in 2018) and packaged
// nowhere. The tests build its last upstream source and run the driver on
// real one- and two-node clusters (sheepdog_real_test.go); the transcripts
// (sheepdog_test.go) keep what one host cannot show, and their outputs are
// checked against the real dog's.
package sheepdog

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/ember-storage/ember/drivers"
)

func init() { drivers.Register("sheepdog", Open) }

// Options are the sheepdog backend's configuration keys (Cinder's
// sheepdog_store_address and sheepdog_store_port): the sheep daemon that
// dog talks to, from the storage host the executor reaches.
type Options struct {
	Address string `json:"address"` // default 127.0.0.1
	Port    int    `json:"port"`    // default 7000
}

// Driver is the sheepdog backend.
type Driver struct {
	drivers.Unsupported
	addr string
	port string
	ex   drivers.Executor
}

// hostRE bounds the address: an IPv4/IPv6 literal or a host name; it
// reaches argv, where a leading "-" would read as an option.
var hostRE = regexp.MustCompile(`^[A-Za-z0-9:\[][A-Za-z0-9.:\[\]-]*$`)

// Open builds a sheepdog driver for b.
func Open(b drivers.Backend, ex drivers.Executor) (drivers.Driver, error) {
	var o Options
	if err := drivers.DecodeOptions(b.Options, &o); err != nil {
		return nil, err
	}
	if o.Address == "" {
		o.Address = "127.0.0.1"
	}
	if o.Port == 0 {
		o.Port = 7000
	}
	if !hostRE.MatchString(o.Address) {
		return nil, fmt.Errorf("options: address %q is not a host name or IP address", o.Address)
	}
	if o.Port < 1 || o.Port > 65535 {
		return nil, fmt.Errorf("options: port %d is outside 1..65535", o.Port)
	}
	return &Driver{Unsupported: drivers.Unsupported{Driver: "sheepdog"}, addr: o.Address, port: strconv.Itoa(o.Port), ex: ex}, nil
}

// dogCmd is `dog <command> <subcommand> -a <addr> -p <port> params...`, the
// order Cinder's _run_dog uses. LANG too, as Cinder sets it: dog's messages
// are what this driver reads.
func (d *Driver) dogCmd(command, sub string, params ...string) drivers.Command {
	args := append([]string{"dog", command, sub, "-a", d.addr, "-p", d.port}, params...)
	return drivers.Command{Args: args, Env: []string{"LC_ALL=C", "LANG=C"}}
}

// run runs c and classifies the outcome under op.
//
// dog prints "failed to connect to <addr>:<port>: Connection refused" and
// may still exit 0 (`dog vdi delete` does, see runDelete), so stderr is
// read on success too: failing to reach the sheep this driver talks to is
// KindUnavailable, retryable, whatever the exit code. The same message
// about another node of the cluster is not: `dog node info` prints it, and
// exits 0 with the figures of the nodes it reached, while the cluster has
// not yet noticed that node is gone.
func (d *Driver) run(ctx context.Context, op string, c drivers.Command) (drivers.Output, error) {
	out, err := d.ex.Run(ctx, c)
	stderr := string(out.Stderr)
	if ce, ok := drivers.AsCommandError(err); ok {
		stderr = ce.Stderr
	}
	if d.connectFailed(stderr) {
		if err == nil {
			err = &drivers.CommandError{Args: c.Args, ExitCode: 0, Stderr: stderr}
		}
		return out, drivers.Wrap(drivers.KindUnavailable, op, err)
	}
	return out, classify(op, err)
}

// connectFailed reports whether dog could not reach this driver's sheep.
func (d *Driver) connectFailed(stderr string) bool {
	// dog prints an IPv6 address in brackets.
	plain, bracketed := "failed to connect to "+d.addr+":"+d.port+":", "failed to connect to ["+d.addr+"]:"+d.port+":"
	for _, line := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(line, plain) || strings.HasPrefix(line, bracketed) {
			return true
		}
	}
	return false
}

// unreachableNodes counts the distinct nodes dog could not connect to.
func unreachableNodes(stderr string) int {
	seen := map[string]bool{}
	for _, line := range strings.Split(stderr, "\n") {
		if rest, ok := strings.CutPrefix(line, "failed to connect to "); ok {
			node, _, _ := strings.Cut(rest, ": ")
			seen[node] = true
		}
	}
	return len(seen)
}

// dogErrors maps dog's messages (sd_strerror in sheepdog's lib/sd.c and
// the messages of dog/vdi.c) to kinds.
var dogErrors = []struct {
	text string
	kind drivers.Kind
}{
	{"No VDI found", drivers.KindNotFound},
	{"Failed to find requested tag", drivers.KindNotFound},
	{"VDI exists already", drivers.KindConflict},
	{"is existed", drivers.KindConflict}, // "maybe snapshot id (0) or tag (…) is existed"
	{"Shrinking VDIs is not implemented", drivers.KindConflict},
	{"size is too large", drivers.KindInvalid}, // "New VDI size is too large", "VDI size is too large"
	{"Server has no space for new objects", drivers.KindNoCapacity},
	{"Maximum number of VDIs reached", drivers.KindNoCapacity},
	{"Cannot get information from any nodes", drivers.KindUnavailable},
	{"Waiting for other nodes to join cluster", drivers.KindUnavailable},
	{"System is shutting down", drivers.KindUnavailable},
	{"System is still booting", drivers.KindUnavailable},
	{"IO has halted", drivers.KindUnavailable},
	{"Cluster is recovering", drivers.KindUnavailable},
	// Not formatted is no transient state: an operator must run
	// `dog cluster format`. Retrying would only delay the error.
	{"Waiting for cluster to be formatted", drivers.KindBackend},
}

func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	ce, ok := drivers.AsCommandError(err)
	if !ok || ce.TimedOut {
		return drivers.Wrap(drivers.KindOf(err), op, err)
	}
	for _, e := range dogErrors {
		if strings.Contains(ce.Stderr, e.text) {
			return drivers.Wrap(e.kind, op, err)
		}
	}
	return drivers.Wrap(drivers.KindBackend, op, err)
}

// checkCluster requires `dog cluster info` to start with "Cluster status:
// running" (Cinder's check_cluster_status). Cinder checked once at start-up;
// Ember has no start-up hook in the driver contract, so it checks before
// every create and in GetVolumeStats, whose failure takes the backend out
// of scheduling.
func (d *Driver) checkCluster(ctx context.Context) error {
	const op = "dog cluster info"
	out, err := d.run(ctx, op, d.dogCmd("cluster", "info"))
	if err != nil {
		return err
	}
	status := string(out.Stdout)
	first, _, _ := strings.Cut(status, "\n")
	switch {
	case strings.HasPrefix(status, "Cluster status: running"):
		return nil
	case strings.HasPrefix(status, "Cluster status: Waiting for cluster to be formatted"):
		return drivers.Errorf(drivers.KindBackend, op, "%s: the cluster is not formatted; run `dog cluster format`", first)
	case strings.HasPrefix(status, "Cluster status: Waiting for other nodes to join cluster"):
		return drivers.Errorf(drivers.KindUnavailable, op, "%s: start every sheep daemon", first)
	}
	return drivers.Errorf(drivers.KindUnavailable, op, "cluster is not running: %q", first)
}
