package drivers

import (
	"context"
	"errors"
	"fmt"
)

// Kind classifies a storage error so that callers decide by kind, not by string.
type Kind string

const (
	KindInvalid      Kind = "invalid"       // bad parameters; permanent
	KindNotFound     Kind = "not_found"     // a source that must exist does not; permanent
	KindConflict     Kind = "conflict"      // exists with other parameters; permanent
	KindNoCapacity   Kind = "no_capacity"   // not enough space; permanent
	KindBusy         Kind = "volume_busy"   // e.g. a volume with snapshots; permanent
	KindNotSupported Kind = "not_supported" // the driver cannot do this; permanent
	KindUnavailable  Kind = "unavailable"   // host unreachable, timeout; transient
	KindBackend      Kind = "backend_error" // a command failed in a way we do not classify
)

// Retryable reports whether an error of this kind may succeed if tried again.
func (k Kind) Retryable() bool { return k == KindUnavailable }

// Error is a classified storage error. Op names the operation ("lvcreate
// volume-<id>"), Err keeps the cause (often a *CommandError).
type Error struct {
	Kind Kind
	Op   string
	Err  error
}

func (e *Error) Error() string {
	if e.Op == "" {
		return e.Err.Error()
	}
	return e.Op + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf builds a classified error.
func Errorf(kind Kind, op, format string, args ...any) error {
	return &Error{Kind: kind, Op: op, Err: fmt.Errorf(format, args...)}
}

// Wrap classifies err under op. A nil err stays nil; an err that is already
// classified keeps its kind unless kind is given explicitly.
func Wrap(kind Kind, op string, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Kind: kind, Op: op, Err: err}
}

// KindOf returns the kind of err: its *Error's kind, KindUnavailable for
// timeouts and cancellations, KindBackend otherwise.
func KindOf(err error) Kind {
	var de *Error
	if errors.As(err, &de) {
		return de.Kind
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return KindUnavailable
	}
	var ce *CommandError
	if errors.As(err, &ce) && ce.TimedOut {
		return KindUnavailable
	}
	return KindBackend
}

// IsKind reports whether err is classified as kind.
func IsKind(err error, kind Kind) bool { return err != nil && KindOf(err) == kind }
