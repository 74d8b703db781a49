package drivers

import (
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxMessage bounds what Sanitize keeps of a message, in bytes.
const MaxMessage = 512

// urlRE matches a URL-like token: scheme://… up to whitespace or a quote.
// The scheme is optional so that "http\x00://host", whose control byte
// became a space, is caught too.
var urlRE = regexp.MustCompile(`(?:[A-Za-z][A-Za-z0-9+.\-]*)?://[^\s'"<>` + "`" + `]*`)

// Sanitize makes text from a storage host (a command's stderr, an error
// message built from it) fit to hand to a requester: every URL becomes
// "<url>", control and format characters (newlines, escapes, bidi
// overrides) become spaces, invalid UTF-8 is replaced, and the result is cut
// to MaxMessage bytes, ending in "…" when cut.
//
// Why: what a storage host's tools print can carry what a hostile image
// made them reach (qemu-img's curl errors name the URL a guest wrote into
// an image header, and may quote the answer), and a requester must learn
// neither the addresses nor the contents of what the host can reach.
func Sanitize(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return ' '
		}
		return r
	}, s)
	s = RedactURLs(s)
	s = strings.TrimSpace(s)
	if len(s) <= MaxMessage {
		return s
	}
	cut := MaxMessage
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// RedactURLs replaces every URL in s with "<url>", leaving the rest as it
// is.
func RedactURLs(s string) string { return urlRE.ReplaceAllString(s, "<url>") }
