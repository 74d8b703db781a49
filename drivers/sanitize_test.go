package drivers

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestSanitize(t *testing.T) {
	long := strings.Repeat("x", 600)
	for _, tc := range []struct{ name, in, want string }{
		{"plain", "lvcreate: Volume group \"vg\" has insufficient free space", "lvcreate: Volume group \"vg\" has insufficient free space"},
		{"qemu curl error",
			"qemu-img: Could not open 'http://169.254.169.254/latest/meta-data/iam': CURL: Error opening file: The requested URL returned error: 404\n",
			"qemu-img: Could not open '<url>': CURL: Error opening file: The requested URL returned error: 404"},
		{"json pseudo-protocol", `json:{"driver":"http","url":"http://10.0.0.1:8080/x"}`, `json:{"driver":"http","url":"<url>"}`},
		{"several schemes", "gluster+tcp://h/v/f and nbd+unix:///exp?socket=/s and HTTPS://A.B/c d", "<url> and <url> and <url> d"},
		{"scheme split by a control byte", "http\x00://10.0.0.1/", "http <url>"},
		{"newlines and escapes", "line one\nline two\r\x1b[31mred\x1b[0m\t.", "line one line two  [31mred [0m ."},
		{"bidi override", "abc\u202edcba", "abc dcba"},
		{"invalid utf-8", "a\xffb", "a\uFFFDb"},
		{"empty", "", ""},
		{"bounded", long, strings.Repeat("x", MaxMessage) + "…"},
		{"bounded on a rune", strings.Repeat("x", MaxMessage-1) + "é", strings.Repeat("x", MaxMessage-1) + "…"},
		{"URL past the cut", strings.Repeat("x", 500) + " http://" + strings.Repeat("a", 100), strings.Repeat("x", 500) + " <url>"},
	} {
		got := Sanitize(tc.in)
		if got != tc.want {
			t.Errorf("%s: Sanitize(%q)\n got %q\nwant %q", tc.name, tc.in, got, tc.want)
		}
		if len(got) > MaxMessage+len("…") || !utf8.ValidString(got) || strings.Contains(got, "://") {
			t.Errorf("%s: %q is not sanitized", tc.name, got)
		}
	}
}

// A failed command's message never carries a URL, from its stderr or its
// arguments, and is bounded.
func TestCommandErrorIsSanitized(t *testing.T) {
	ce := &CommandError{
		Args:     []string{"qemu-img", "info", "http://10.1.2.3/secret"},
		ExitCode: 1,
		Stderr:   "qemu-img: Could not open 'http://10.1.2.3/secret': CURL: x\n" + strings.Repeat("y", 2000),
	}
	msg := ce.Error()
	if strings.Contains(msg, "10.1.2.3") || strings.Contains(msg, "://") || len(msg) > 2*MaxMessage {
		t.Fatalf("message not sanitized (%d bytes): %q", len(msg), msg)
	}
	if !strings.HasPrefix(msg, "qemu-img info <url>: exit 1: qemu-img: Could not open '<url>'") {
		t.Fatalf("message %q", msg)
	}
}
