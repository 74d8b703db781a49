package remotefs

import (
	"context"
	"strings"
	"testing"

	"github.com/ember-storage/ember/drivers"
	"github.com/ember-storage/ember/drivers/exectest"
)

// The backing chain is walked one file at a time, each opened with the
// format it has by construction under prlimit, and a backing file is
// followed only when its name and format are the volume's own. Transcripts:
// the JSON is qemu-img 7.2's for images made as described; the transcript
// fails the test on any command after the refusal, so nothing opens what a
// hostile header names.

const (
	ov1 = "volume-" + vid + "." + sid1
	ov2 = "volume-" + vid + "." + sid2
)

// infoStep is `qemu-img info -f format` of file in cDir answering json.
func infoStep(format, file, json string) exectest.Step {
	return exectest.Step{Args: drivers.QemuImgInfo(format, cDir+"/"+file), Stdout: json}
}

// overlayJSON is what qemu-img says of a qcow2 overlay whose header names
// backing (and backingFmt, when set); extra is more JSON members.
func overlayJSON(file, backing, backingFmt, extra string) string {
	s := `{
    "virtual-size": 1073741824,
    "filename": "` + cDir + "/" + file + `",
    "cluster-size": 65536,
    "format": "qcow2",
    "actual-size": 200704,`
	if backingFmt != "" {
		s += `
    "backing-filename-format": "` + backingFmt + `",`
	}
	if backing != "" {
		s += `
    "full-backing-filename": "` + backing + `",
    "backing-filename": "` + backing + `",`
	}
	return s + extra + `
    "dirty-flag": false
}
`
}

func rawJSON(file string) string {
	return `{
    "virtual-size": 1073741824,
    "filename": "` + cDir + "/" + file + `",
    "format": "raw",
    "actual-size": 4096,
    "dirty-flag": false
}
`
}

func TestReadChain(t *testing.T) {
	base := "volume-" + vid
	other := "volume-55555555-5555-4555-8555-555555555555"
	const url = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"
	dataFile := `
    "format-specific": {"type": "qcow2", "data": {"compat": "1.1", "data-file": "` + url + `", "data-file-raw": false, "corrupt": false, "extended-l2": false}},`
	for _, tc := range []struct {
		name   string
		format string // the backend's volume_format
		top    string
		steps  []exectest.Step
		want   []string // the chain's files; nil for a refusal
		refuse string   // what the refusal says
	}{
		{"raw base", "raw", base, []exectest.Step{infoStep("raw", base, rawJSON(base))}, []string{base}, ""},
		{"two overlays on a raw base", "raw", ov2, []exectest.Step{
			infoStep("qcow2", ov2, overlayJSON(ov2, ov1, "qcow2", "")),
			infoStep("qcow2", ov1, overlayJSON(ov1, base, "raw", "")),
			infoStep("raw", base, rawJSON(base)),
		}, []string{ov2, ov1, base}, ""},
		{"qcow2 base", "qcow2", ov1, []exectest.Step{
			infoStep("qcow2", ov1, overlayJSON(ov1, base, "qcow2", "")),
			infoStep("qcow2", base, overlayJSON(base, "", "", "")),
		}, []string{ov1, base}, ""},
		{"overlay naming a URL", "raw", ov1, []exectest.Step{infoStep("qcow2", ov1, overlayJSON(ov1, url, "raw", ""))}, nil, "not one of the volume's files"},
		{"overlay naming a json: filename", "raw", ov1, []exectest.Step{infoStep("qcow2", ov1, overlayJSON(ov1, `json:{\"driver\": \"http\", \"url\": \"`+url+`\"}`, "raw", ""))}, nil, "not one of the volume's files"},
		{"overlay naming nbd:", "raw", ov1, []exectest.Step{infoStep("qcow2", ov1, overlayJSON(ov1, "nbd:127.0.0.1:10809", "raw", ""))}, nil, "not one of the volume's files"},
		{"overlay naming a host file", "raw", ov1, []exectest.Step{infoStep("qcow2", ov1, overlayJSON(ov1, "/etc/shadow", "raw", ""))}, nil, "not one of the volume's files"},
		{"overlay naming the base by path", "raw", ov1, []exectest.Step{infoStep("qcow2", ov1, overlayJSON(ov1, cDir+"/"+base, "raw", ""))}, nil, "not one of the volume's files"},
		{"overlay naming another volume", "raw", ov1, []exectest.Step{infoStep("qcow2", ov1, overlayJSON(ov1, other, "raw", ""))}, nil, "not one of the volume's files"},
		{"overlay naming another directory", "raw", ov1, []exectest.Step{infoStep("qcow2", ov1, overlayJSON(ov1, "../x/"+base, "raw", ""))}, nil, "not one of the volume's files"},
		{"overlay without a backing format", "raw", ov1, []exectest.Step{infoStep("qcow2", ov1, overlayJSON(ov1, base, "", ""))}, nil, "without a format"},
		{"overlay calling a raw base qcow2", "raw", ov1, []exectest.Step{infoStep("qcow2", ov1, overlayJSON(ov1, base, "qcow2", ""))}, nil, "another format than raw"},
		{"overlay calling an overlay raw", "raw", ov2, []exectest.Step{infoStep("qcow2", ov2, overlayJSON(ov2, ov1, "raw", ""))}, nil, "another format than qcow2"},
		{"overlay with an external data file", "raw", ov1, []exectest.Step{infoStep("qcow2", ov1, overlayJSON(ov1, base, "raw", dataFile))}, nil, "external data file"},
		{"qcow2 base with an external data file", "qcow2", base, []exectest.Step{infoStep("qcow2", base, overlayJSON(base, "", "", dataFile))}, nil, "external data file"},
		{"qcow2 base naming a backing file", "qcow2", base, []exectest.Step{infoStep("qcow2", base, overlayJSON(base, url, "raw", ""))}, nil, "the base"},
		{"loop", "raw", ov2, []exectest.Step{
			infoStep("qcow2", ov2, overlayJSON(ov2, ov1, "qcow2", "")),
			infoStep("qcow2", ov1, overlayJSON(ov1, ov2, "qcow2", "")),
		}, nil, "already in the chain"},
		{"chain ending above the base", "raw", ov1, []exectest.Step{infoStep("qcow2", ov1, overlayJSON(ov1, "", "", ""))}, nil, "not at the volume's base"},
		{"missing backing file", "raw", ov1, []exectest.Step{
			infoStep("qcow2", ov1, overlayJSON(ov1, base, "raw", "")),
			{Args: drivers.QemuImgInfo("raw", cDir+"/"+base), ExitCode: 1,
				Stderr: "qemu-img: Could not open '" + cDir + "/" + base + "': Could not open '" + cDir + "/" + base + "': No such file or directory\n"},
		}, nil, "does not exist"},
		{"another format reported", "raw", ov1, []exectest.Step{infoStep("qcow2", ov1, rawJSON(ov1))}, nil, "another format"},
		{"qemu-img killed by its limits", "raw", base, []exectest.Step{{Args: drivers.QemuImgInfo("raw", cDir+"/"+base), ExitCode: -1}}, nil, "exit -1"},
		{"not a file of the volume", "raw", other, nil, nil, "not a file of"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := New(Config{Driver: "glusterfs", Shares: []string{cShare}, Dir: func(string) string { return cDir },
				Format: tc.format, MaxOverSubscriptionRatio: 20}, exectest.New(t, tc.steps...).RequireEnv("LC_ALL=C"))
			if err != nil {
				t.Fatal(err)
			}
			c, ok, err := d.readChain(context.Background(), volume{id: vid, share: cShare, dir: cDir, name: base}, tc.top)
			if tc.want == nil {
				if !drivers.IsKind(err, drivers.KindBackend) || !strings.Contains(err.Error(), tc.refuse) {
					t.Fatalf("want a backend_error saying %q, got %v (chain %v)", tc.refuse, err, c)
				}
				if msg := err.Error(); strings.Contains(msg, "://") || strings.Contains(msg, "169.254") || strings.Contains(msg, "nbd:") {
					t.Fatalf("the refusal echoes the name: %s", msg)
				}
				return
			}
			if err != nil || !ok {
				t.Fatalf("readChain: %v %v", ok, err)
			}
			var got []string
			for _, im := range c {
				got = append(got, im.file())
			}
			if strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Fatalf("chain %v, want %v", got, tc.want)
			}
		})
	}
}

// A top file that does not exist is not an error: the caller decides.
func TestReadChainMissingTop(t *testing.T) {
	p := cDir + "/" + ov1
	d, err := New(Config{Driver: "glusterfs", Shares: []string{cShare}, Dir: func(string) string { return cDir },
		Format: "raw", MaxOverSubscriptionRatio: 20}, exectest.New(t, exectest.Step{Args: drivers.QemuImgInfo("qcow2", p), ExitCode: 1,
		Stderr: "qemu-img: Could not open '" + p + "': Could not open '" + p + "': No such file or directory\n"}))
	if err != nil {
		t.Fatal(err)
	}
	if c, ok, err := d.readChain(context.Background(), volume{id: vid, share: cShare, dir: cDir, name: "volume-" + vid}, ov1); ok || err != nil {
		t.Fatalf("want not found, got %v %v %v", c, ok, err)
	}
}
