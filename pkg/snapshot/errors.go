package snapshot

import (
	"errors"
	"fmt"
)

// Reasons a snapshot is refused. Every error Decode returns is an *Error
// whose Reason is one of these, so callers can branch with errors.Is and
// operators read the reason in the message.
var (
	ErrTooLarge        = errors.New("over the size limit")
	ErrTruncated       = errors.New("truncated object")
	ErrFormat          = errors.New("not a kongfb snapshot or Kong config.json")
	ErrUnsupported     = errors.New("unsupported snapshot")
	ErrChecksum        = errors.New("checksum mismatch")
	ErrBadSignature    = errors.New("bad signature")
	ErrUnsigned        = errors.New("unsigned")
	ErrUntrustedSigner = errors.New("untrusted signer")
	ErrKeyMismatch     = errors.New("object key does not match its manifest")
	ErrVersion         = errors.New("gateway version not accepted")
	ErrDecrypt         = errors.New("cannot decrypt")
	ErrInvalidConfig   = errors.New("invalid config")
	ErrEmptyConfig     = errors.New("empty config")
	// ErrNoSnapshot is wrapped by the errors that say no usable object was
	// found at all (NoMatchingVersionError, NoValidSnapshotError).
	ErrNoSnapshot = errors.New("no usable fallback config")
)

// Error is a refused snapshot: the object's name, why, and the detail.
type Error struct {
	Object string // the object key or file name given to Decode
	Reason error  // one of the Err* sentinels above
	Detail string // human detail, e.g. "payload is 10 bytes, manifest says 20"
	Err    error  // underlying error, if any (e.g. *config.ValidationError)
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("snapshot %q: %v", e.Object, e.Reason)
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap exposes both the reason and the cause to errors.Is / errors.As.
func (e *Error) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Reason}
	}
	return []error{e.Reason, e.Err}
}

func newErr(object string, reason error, format string, args ...any) *Error {
	return &Error{Object: object, Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

func wrapErr(object string, reason error, err error, format string, args ...any) *Error {
	return &Error{Object: object, Reason: reason, Detail: fmt.Sprintf(format, args...), Err: err}
}
