package exectest

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/ember-storage/ember/drivers"
)

// failures is a testing.TB that keeps the errors a transcript reports
// instead of failing the test, so that the checks can be seen to fire.
type failures struct {
	testing.TB
	errs []string
}

func (f *failures) Helper() {}
func (f *failures) Errorf(format string, args ...any) {
	f.errs = append(f.errs, fmt.Sprintf(format, args...))
}

func TestRequireEnv(t *testing.T) {
	f := &failures{TB: t}
	tr := New(f, Parse("$ lvs\n$ lvs\n$ dog vdi list\n")...).RequireEnv("LC_ALL=C", "LANG=C")
	ctx := context.Background()
	for _, env := range [][]string{{"LANG=C", "LC_ALL=C"}, {"LC_ALL=C"}} {
		if _, err := tr.Run(ctx, drivers.Command{Args: []string{"lvs"}, Env: env}); err != nil {
			t.Fatal(err)
		}
	}
	if len(f.errs) != 1 || !strings.Contains(f.errs[0], "step 2: lvs runs without LANG=C") {
		t.Fatalf("errors %q, want one naming step 2 and LANG=C", f.errs)
	}
	// A command's own variables beside the required ones are fine.
	if _, err := tr.Run(ctx, drivers.Command{Args: []string{"dog", "vdi", "list"}, Env: []string{"LC_ALL=C", "TZ=UTC", "LANG=C"}}); err != nil {
		t.Fatal(err)
	}
	if len(f.errs) != 1 {
		t.Fatalf("errors %q", f.errs)
	}
}
