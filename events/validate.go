package events

import (
	"fmt"
	"regexp"
	"unicode"
	"unicode/utf8"
)

// ValidationError says which field of an input is wrong and why. It becomes
// an .error result with code "invalid".
type ValidationError struct {
	Field  string
	Reason string
}

func (e *ValidationError) Error() string { return e.Field + ": " + e.Reason }

func invalid(field, format string, args ...any) error {
	return &ValidationError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Resource ids reach command lines (volume-<id>), so they must be canonical
// lowercase UUIDs and nothing else.
var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// Keystone writes project and user ids as 32 hex digits; other clouds use
// UUIDs. Both are accepted; they are compared, never passed to a command.
var ownerRE = regexp.MustCompile(`^([0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$`)

// backendRE bounds backend names: they appear in result sources (/ember/<name>).
var backendRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

func checkUUID(field, v string) error {
	if v == "" {
		return invalid(field, "is required")
	}
	if !uuidRE.MatchString(v) {
		return invalid(field, "%q is not a canonical lowercase UUID", clip(v))
	}
	return nil
}

func checkOwner(field, v string) error {
	if v == "" {
		return invalid(field, "is required")
	}
	if !ownerRE.MatchString(v) {
		return invalid(field, "%q is not a UUID or 32 hex digits", clip(v))
	}
	return nil
}

func checkSize(field string, v int) error {
	if v < 1 || v > 65536 {
		return invalid(field, "%d is outside 1..65536", v)
	}
	return nil
}

func checkBackendName(field, v string) error {
	if v != "" && !backendRE.MatchString(v) {
		return invalid(field, "%q is not a backend name", clip(v))
	}
	return nil
}

// checkText accepts free text (names, volume types, zones): valid UTF-8
// without control characters, at most max bytes. Free text is stored and
// echoed in results; it never reaches a command.
func checkText(field, v string, max int) error {
	if len(v) > max {
		return invalid(field, "longer than %d bytes", max)
	}
	if !utf8.ValidString(v) {
		return invalid(field, "is not valid UTF-8")
	}
	for _, r := range v {
		if unicode.IsControl(r) {
			return invalid(field, "contains a control character")
		}
	}
	return nil
}

func checkMetadata(field string, m map[string]string) error {
	if len(m) > 64 {
		return invalid(field, "has %d keys, at most 64", len(m))
	}
	for k, v := range m {
		if k == "" {
			return invalid(field, "has an empty key")
		}
		if err := checkText(field+"."+clip(k), k, 255); err != nil {
			return err
		}
		if err := checkText(field+"."+clip(k), v, 255); err != nil {
			return err
		}
	}
	return nil
}

// clip keeps hostile values short in error messages.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
