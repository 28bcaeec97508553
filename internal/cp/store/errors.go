package store

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// Sentinel errors. Test with errors.Is; they are usually wrapped with the
// collection and id.
var (
	// ErrNotFound: no row with that id or key (Kong code 6 / 404).
	ErrNotFound = errors.New("not found")
	// ErrUnavailable: the database cannot be reached or refused to work
	// (connection refused or lost, server shutting down, busy beyond the
	// timeout). The Admin API answers 503. Errors matching it also unwrap to
	// the driver's error.
	ErrUnavailable = errors.New("database unavailable")
	// ErrClosed: the Store was closed.
	ErrClosed = errors.New("store closed")
	// ErrNotBootstrapped: the database has no kongfb schema yet
	// (`kongfb migrations bootstrap`).
	ErrNotBootstrapped = errors.New("database needs bootstrapping")
	// ErrPendingMigrations: the schema is older than this binary
	// (`kongfb migrations up`).
	ErrPendingMigrations = errors.New("database has pending migrations")
	// ErrSchemaTooNew: the database was migrated by a newer kongfb.
	ErrSchemaTooNew = errors.New("database schema is newer than this kongfb")
	// ErrInvalidArgument: a call the store cannot make sense of (unknown
	// unique key, bad page size, malformed row); a programming error in the
	// caller rather than bad user input, which the Admin API validates first.
	ErrInvalidArgument = errors.New("invalid argument")
)

// UniqueViolation: another row already has these values for a unique key
// (Kong code 5, HTTP 409).
type UniqueViolation struct {
	Collection string
	// ID of the row already holding the key.
	ExistingID string
	// Fields are the key's fields and values in Admin-API form, e.g.
	// {"username": "alice"} or for plugins {"name": "basic-auth",
	// "route": {"id": "…"}, "service": nil, "consumer": nil}.
	Fields map[string]any
}

func (e *UniqueViolation) Error() string { return e.KongMessage() }

// KongMessage is Kong's message: UNIQUE violation detected on '{username="alice"}'.
func (e *UniqueViolation) KongMessage() string {
	return "UNIQUE violation detected on '" + LuaTable(e.Fields) + "'"
}

// PrimaryKeyViolation: a row with that id already exists (Kong code 3).
type PrimaryKeyViolation struct {
	Collection string
	ID         string
}

func (e *PrimaryKeyViolation) Error() string { return e.KongMessage() }

// KongMessage is Kong's message: primary key violation on key '{id="…"}'.
func (e *PrimaryKeyViolation) KongMessage() string {
	return "primary key violation on key '" + LuaTable(map[string]any{"id": e.ID}) + "'"
}

// KongFields is Kong's `fields` object for the error.
func (e *PrimaryKeyViolation) KongFields() map[string]any { return map[string]any{"id": e.ID} }

// ForeignKeyViolation: a row references a parent that does not exist (Kong
// code 4).
type ForeignKeyViolation struct {
	Collection    string // the referencing collection, e.g. "routes"
	ID            string // the referencing row
	Field         string // e.g. "service"
	RefCollection string // e.g. "services"
	RefID         string
}

func (e *ForeignKeyViolation) Error() string { return e.KongMessage() }

// KongMessage is Kong's message: the foreign key '{id="…"}' does not
// reference an existing 'services' entity.
func (e *ForeignKeyViolation) KongMessage() string {
	return "the foreign key '" + LuaTable(map[string]any{"id": e.RefID}) +
		"' does not reference an existing '" + e.RefCollection + "' entity."
}

// KongFields is Kong's `fields`: {"service": {"id": "…"}}.
func (e *ForeignKeyViolation) KongFields() map[string]any {
	return map[string]any{e.Field: map[string]any{"id": e.RefID}}
}

// ReferencedBy: the row cannot be deleted because rows of another
// collection reference it with a restricting foreign key (Kong code 4,
// fields {"@referenced_by": "routes"}).
type ReferencedBy struct {
	Collection   string // the row being deleted, e.g. "services"
	ID           string
	ReferencedBy string // the referencing collection, e.g. "routes"
	ReferrerID   string // one referencing row
}

func (e *ReferencedBy) Error() string { return e.KongMessage() }

// KongMessage is Kong's message: an existing 'routes' entity references this
// 'services' entity.
func (e *ReferencedBy) KongMessage() string {
	return "an existing '" + e.ReferencedBy + "' entity references this '" + e.Collection + "' entity"
}

// KongFields is Kong's `fields`: {"@referenced_by": "routes"}.
func (e *ReferencedBy) KongFields() map[string]any {
	return map[string]any{"@referenced_by": e.ReferencedBy}
}

// InvalidOffsetError: ListOptions.Offset is not a token this store issued
// (Kong code 7).
type InvalidOffsetError struct {
	Offset string
	Reason string // e.g. "bad base64 encoding"
}

func (e *InvalidOffsetError) Error() string { return e.KongMessage() }

// KongMessage is Kong's message: 'x' is not a valid offset: bad base64 encoding.
func (e *InvalidOffsetError) KongMessage() string {
	return "'" + e.Offset + "' is not a valid offset: " + e.Reason
}

// unavailableError marks a driver error as ErrUnavailable while keeping it
// in the chain for logs.
type unavailableError struct{ err error }

func (e *unavailableError) Error() string { return "database unavailable: " + e.err.Error() }
func (e *unavailableError) Unwrap() error { return e.err }
func (e *unavailableError) Is(target error) bool {
	return target == ErrUnavailable
}

func unavailable(err error) error {
	if err == nil || errors.Is(err, ErrUnavailable) {
		return err
	}
	return &unavailableError{err: err}
}

func invalidArg(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidArgument, fmt.Sprintf(format, a...))
}

// LuaTable renders a value the way Kong's error messages print Lua tables
// (pl.pretty.write with no indent): keys sorted, identifiers bare and other
// keys as ["key"], strings quoted, JSON null as null, e.g.
// {consumer=null,name="basic-auth",route={id="…"}}. The Admin API uses it
// for all its messages.
func LuaTable(v any) string {
	var b strings.Builder
	writeLua(&b, v)
	return b.String()
}

func writeLua(b *strings.Builder, v any) {
	switch t := v.(type) {
	case nil:
		b.WriteString("null")
	case string:
		b.WriteString(strconv.Quote(t))
	case bool:
		b.WriteString(strconv.FormatBool(t))
	case float64:
		if t == math.Trunc(t) && math.Abs(t) < 1e15 {
			b.WriteString(strconv.FormatInt(int64(t), 10))
		} else {
			b.WriteString(strconv.FormatFloat(t, 'g', -1, 64))
		}
	case int:
		b.WriteString(strconv.Itoa(t))
	case int64:
		b.WriteString(strconv.FormatInt(t, 10))
	case map[string]any:
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			if isLuaIdent(k) {
				b.WriteString(k)
			} else {
				b.WriteString("[" + strconv.Quote(k) + "]")
			}
			b.WriteByte('=')
			writeLua(b, t[k])
		}
		b.WriteByte('}')
	case []any:
		b.WriteByte('{')
		for i, e := range t {
			if i > 0 {
				b.WriteByte(',')
			}
			writeLua(b, e)
		}
		b.WriteByte('}')
	case []string:
		b.WriteByte('{')
		for i, e := range t {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Quote(e))
		}
		b.WriteByte('}')
	default:
		fmt.Fprint(b, t)
	}
}

func isLuaIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (i > 0 && r >= '0' && r <= '9') {
			continue
		}
		return false
	}
	return true
}
