package remotefs

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/drivers/exectest"
	"github.com/ember-storage/ember/drivers/remotefs/chaintest"
)

// convertOutput is what qemu-img 7.2 printed on stdout here for
// `qemu-img convert -p -f raw -O raw` of a 1 GiB raw file holding 64 KiB at
// 0 and 64 MiB at 512 MiB: one update per carriage return, the last one
// twice, then a newline.
const convertOutput = "    (0.00/100%)\r    (3.22/100%)\r    (6.34/100%)\r    (9.46/100%)\r    (12.59/100%)\r" +
	"    (15.71/100%)\r    (18.83/100%)\r    (21.95/100%)\r    (25.07/100%)\r    (28.20/100%)\r    (31.32/100%)\r" +
	"    (34.44/100%)\r    (37.56/100%)\r    (40.68/100%)\r    (43.80/100%)\r    (46.93/100%)\r    (50.05/100%)\r" +
	"    (53.17/100%)\r    (56.29/100%)\r    (59.41/100%)\r    (62.54/100%)\r    (65.66/100%)\r    (68.78/100%)\r" +
	"    (71.90/100%)\r    (75.02/100%)\r    (78.15/100%)\r    (81.27/100%)\r    (84.39/100%)\r    (87.51/100%)\r" +
	"    (90.63/100%)\r    (93.76/100%)\r    (96.88/100%)\r    (100.00/100%)\r    (100.00/100%)\r\n"

// convertPercents are convertOutput's updates, truncated to whole percents.
var convertPercents = []int{0, 3, 6, 9, 12, 15, 18, 21, 25, 28, 31, 34, 37, 40, 43, 46, 50, 53, 56, 59, 62, 65,
	68, 71, 75, 78, 81, 84, 87, 90, 93, 96, 100, 100}

// percents collects what a copy reports through its context.
type percents struct {
	mu  sync.Mutex
	got []int
}

func (p *percents) ctx() context.Context {
	return drivers.WithProgress(context.Background(), func(pct int) {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.got = append(p.got, pct)
	})
}

func (p *percents) list() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.got)
}

// qemu-img's updates reach the reporter however the output is cut into
// writes; whatever else it prints is not a percent.
func TestConvertProgress(t *testing.T) {
	for _, chunk := range []int{1, 7, 20, len(convertOutput)} {
		var p percents
		w := &convertProgress{ctx: p.ctx()}
		for s := convertOutput; s != ""; {
			n := min(chunk, len(s))
			if got, err := w.Write([]byte(s[:n])); got != n || err != nil {
				t.Fatalf("write: %d %v", got, err)
			}
			s = s[n:]
		}
		if got := p.list(); !slices.Equal(got, convertPercents) {
			t.Errorf("writes of %d bytes: reported %v\nwant %v", chunk, got, convertPercents)
		}
	}
	var p percents
	w := &convertProgress{ctx: p.ctx()}
	for _, noise := range []string{
		"qemu-img: warning: something\n", "(50.00/100%", "50.00/100%)\r", "(NaN/100%)\r", "(101.00/100%)\r",
		"(-1.00/100%)\r", "(1e1/50%)\r", "(" + strings.Repeat("0", 70) + "42.00/100%)\r", "()\r",
	} {
		_, _ = w.Write([]byte(noise))
	}
	if got := p.list(); len(got) != 0 {
		t.Fatalf("noise reported as progress: %v", got)
	}
	// Without a reporter the output is read and dropped.
	if _, err := (&convertProgress{ctx: context.Background()}).Write([]byte(convertOutput)); err != nil {
		t.Fatal(err)
	}
}

// A clone runs qemu-img convert with -p (transcript: the recorded output
// above) and passes each update on to the request's reporter.
func TestCloneReportsProgress(t *testing.T) {
	clone := cDir + "/volume-" + chaintest.Clone
	steps := exectest.Parse(rawBase + `
$ test -e ` + clone + `
? 1
$ df -B1 --output=size,avail ` + cDir + `
   1B-blocks       Avail
270553174016 82864152576
`)
	steps = append(steps,
		exectest.Step{Args: []string{"find", cDir, "-ignore_readdir_race", "-maxdepth", "1", "-type", "f",
			"-regextype", "posix-extended", "-regex", `.*/volume-[0-9a-f-]{36}(\.[0-9a-f-]{36})?`, "-printf", "%s %f\n"},
			Stdout: "1073741824 volume-" + vid + "\n"},
		exectest.Step{Args: []string{"qemu-img", "convert", "-p", "-f", "raw", "-O", "raw", cBase, clone + ".tmp-create"},
			Stdout: convertOutput},
		exectest.Step{Args: []string{"mv", "-f", "-T", "--", clone + ".tmp-create", clone}})
	d, err := New(Config{Driver: "glusterfs", Shares: []string{cShare}, Dir: func(string) string { return cDir },
		Format: "raw", MaxOverSubscriptionRatio: 20}, exectest.New(t, steps...))
	if err != nil {
		t.Fatal(err)
	}
	var p percents
	mu, err := d.CreateClonedVolume(p.ctx(), drivers.Volume{ID: chaintest.Clone, SizeGB: 1},
		drivers.Volume{ID: vid, SizeGB: 1, ProviderLocation: cShare})
	if err != nil || mu.ProviderLocation != cShare {
		t.Fatalf("clone: %+v %v", mu, err)
	}
	if got := p.list(); !slices.Equal(got, convertPercents) {
		t.Fatalf("reported %v\nwant %v", got, convertPercents)
	}
}
