// Package store is the control plane's durable configuration store: Kong's
// entities in their normalised Admin-API form, kept in SQLite (one file under
// the data directory, no cgo) or PostgreSQL (shared by several CPs).
//
// Rows are map[string]any exactly as pkg/config.ValidateEntity returns them:
// every field present, foreign keys as {"id": "<uuid>"}. The store does not
// validate fields; it enforces what Kong's database enforces: primary keys,
// unique fields, foreign keys with Kong's on-delete behaviour (cascade or
// restrict), and it keeps a configuration version that every committed change
// increments in the same transaction. The rules per collection are in meta.go
// and mirror Kong 3.9's entity schemas.
//
// Both backends share one SQL engine (engine.go) over four tables: the
// entities as JSON, and three index tables (unique keys, foreign references,
// tags) the engine maintains in the same transaction as the entity row.
// Every write transaction starts by incrementing the version row, which takes
// the database's write lock (SQLite BEGIN IMMEDIATE, a PostgreSQL row lock):
// writes are serialised, so a read-check-write inside one transaction cannot
// lose an update, even across processes sharing the database.
package store

import (
	"context"
	"encoding/json"
	"sort"
	"strconv"
	"time"
)

// Row is one entity in Admin-API form. Values are what encoding/json
// produces (string, float64, bool, nil, []any, map[string]any) once a row has
// been through the store; integers beyond 2^53 therefore lose precision.
type Row = map[string]any

// Key identifies a row by one of its collection's unique keys, e.g.
// {"name": "svc"} or, for targets, {"upstream": {"id": u}, "target": "a:80"}.
// Foreign-key values may be given as {"id": x} or as the bare id string.
type Key = map[string]any

// DefaultPageSize and MaxPageSize are Kong's Admin API page-size limits.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// TagMatch says how several tags in ListOptions.Tags combine.
type TagMatch int

const (
	// MatchAll keeps rows carrying every tag (Kong's ?tags=a,b).
	MatchAll TagMatch = iota
	// MatchAny keeps rows carrying at least one tag (Kong's ?tags=a/b).
	MatchAny
)

// ForeignFilter restricts a listing to rows whose foreign key Field
// references ID, e.g. {Field: "service", ID: s} for GET /services/{s}/routes
// or {Field: "upstream", ID: u} for GET /upstreams/{u}/targets.
type ForeignFilter struct {
	Field string
	ID    string
}

// ListOptions selects one page of a collection.
type ListOptions struct {
	// Size is the page size, 1..MaxPageSize; 0 means DefaultPageSize.
	Size int
	// Offset is the opaque token of a previous Page.NextOffset; "" starts at
	// the first page. A token that does not decode yields *InvalidOffsetError.
	Offset string
	// Tags filters by tag; empty means no filter.
	Tags     []string
	TagMatch TagMatch
	// Filter, if set, keeps only rows referencing a given parent.
	Filter *ForeignFilter
}

// Page is one page of rows ordered by id. NextOffset is "" on the last page
// (the Admin API then omits "offset" and sets "next": null).
type Page struct {
	Rows       []Row
	NextOffset string
}

// TagListOptions selects one page of GET /tags or GET /tags/{tag}.
type TagListOptions struct {
	Tag    string // "" lists every tag
	Size   int
	Offset string
}

// TagRow is one element of GET /tags: an entity carrying a tag.
type TagRow struct {
	EntityName string `json:"entity_name"`
	EntityID   string `json:"entity_id"`
	Tag        string `json:"tag"`
}

// TagPage is one page of TagRows.
type TagPage struct {
	Rows       []TagRow
	NextOffset string
}

// Snapshot is a consistent copy of the whole store at Version.
type Snapshot struct {
	Version uint64
	// Collections holds every non-empty collection, rows ordered by id.
	Collections map[string][]Row
}

// RawSnapshot is a Snapshot whose rows are the JSON objects the store
// holds, undecoded: for a reader that parses the whole configuration itself
// (the push loop's config.Reparser, which skips rows it has seen before).
type RawSnapshot struct {
	Version uint64
	// Collections holds every non-empty collection, rows ordered by id.
	Collections map[string][]json.RawMessage
}

// Document is the snapshot as one flattened export document
// ({"_format_version":"3.0","_transform":false,<collection>:[rows]…},
// collections in name order): the input config.FromEntities builds from the
// decoded rows, as text.
func (s *RawSnapshot) Document() []byte {
	n := 64
	colls := make([]string, 0, len(s.Collections))
	for c, rows := range s.Collections {
		colls = append(colls, c)
		n += len(c) + 8
		for _, r := range rows {
			n += len(r) + 1
		}
	}
	sort.Strings(colls)
	b := make([]byte, 0, n)
	b = append(b, `{"_format_version":"3.0","_transform":false`...)
	for _, c := range colls {
		b = append(b, ',')
		b = strconv.AppendQuote(b, c)
		b = append(b, ':', '[')
		for i, r := range s.Collections[c] {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, r...)
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

// UpdateFunc receives a copy of the current row and returns the full new
// row (e.g. the PATCH body merged into it and validated). It runs inside the
// write transaction and may run more than once when PostgreSQL asks for a
// retry, so it must not have side effects. Returning an error aborts the
// update with that error.
type UpdateFunc func(current Row) (Row, error)

// Store is the control plane's configuration store. Every method is safe
// for concurrent use. A write returns only after its transaction committed;
// a write that fails leaves the store and its version unchanged.
//
// Errors: ErrNotFound, *UniqueViolation, *PrimaryKeyViolation,
// *ForeignKeyViolation, *ReferencedBy, *InvalidOffsetError, ErrUnavailable
// (the database cannot be reached: HTTP 503), ErrClosed; test them with
// errors.Is / errors.As.
type Store interface {
	// Get returns the row of coll with the given id.
	Get(ctx context.Context, coll, id string) (Row, error)
	// GetByKey returns the row matching one of coll's unique keys (see
	// meta.go: endpoint keys such as services.name, consumers.username,
	// targets (upstream, target), plugins' cache key).
	GetByKey(ctx context.Context, coll string, key Key) (Row, error)
	// List returns one page of coll ordered by id.
	List(ctx context.Context, coll string, opts ListOptions) (Page, error)
	// ListTags returns one page of (entity, tag) pairs ordered by
	// collection, id and tag (GET /tags, GET /tags/{tag}).
	ListTags(ctx context.Context, opts TagListOptions) (TagPage, error)

	// Insert creates a row (POST). A missing id is generated; created_at and
	// updated_at are set (targets: seconds with millisecond precision). An
	// existing id is a *PrimaryKeyViolation. It returns the stored row.
	Insert(ctx context.Context, coll string, row Row) (Row, error)
	// Upsert creates or completely replaces the row with row["id"] (PUT
	// /{coll}/{uuid}). created_at is kept from the existing row unless the
	// new row sets it.
	Upsert(ctx context.Context, coll string, row Row) (Row, error)
	// UpsertByKey creates or replaces the row whose unique field keyField
	// equals row[keyField] (PUT /{coll}/{name}): an existing row keeps its id,
	// a new one gets row["id"] or a generated id.
	UpsertByKey(ctx context.Context, coll, keyField string, row Row) (Row, error)
	// Update replaces the row with id by fn(current) (PATCH, and PUT on
	// targets); ErrNotFound if it does not exist. The id cannot change.
	Update(ctx context.Context, coll, id string, fn UpdateFunc) (Row, error)
	// Delete removes the row and, as Kong does, the rows that cascade with
	// it (plugins with their route/service/consumer, targets with their
	// upstream, snis with their certificate, credentials with their
	// consumer). A row still referenced by a restricting foreign key (routes
	// of a service) is not deleted: *ReferencedBy. ErrNotFound if absent.
	Delete(ctx context.Context, coll, id string) error
	// ReplaceAll atomically replaces the whole store content by colls
	// (collections not in colls end up empty), checking primary keys,
	// unique keys and foreign keys across the new content. On error nothing
	// changes. It returns the new version.
	ReplaceAll(ctx context.Context, colls map[string][]Row) (uint64, error)

	// Export returns every row and the version they correspond to, read in
	// one consistent snapshot (PostgreSQL REPEATABLE READ).
	Export(ctx context.Context) (*Snapshot, error)
	// ExportRaw is Export without decoding the rows.
	ExportRaw(ctx context.Context) (*RawSnapshot, error)
	// Version returns the configuration version: 0 for a new store,
	// incremented by every committed change.
	Version(ctx context.Context) (uint64, error)
	// Watch returns a channel that first receives the current version and
	// then every version change this store observes: its own commits at
	// once, other processes' commits through PostgreSQL LISTEN/NOTIFY or by
	// polling every Config.PollInterval. Versions are coalesced: a slow
	// reader sees only the latest. The channel is closed when ctx ends or
	// the store is closed.
	Watch(ctx context.Context) <-chan uint64

	// Ping checks that the database answers (ErrUnavailable otherwise).
	Ping(ctx context.Context) error
	// Backend returns "sqlite" or "postgres"; Location where the data is,
	// without credentials (for logs and GET /).
	Backend() string
	Location() string
	// Close stops watchers and releases connections.
	Close() error
}

// now is replaceable in tests of timestamp handling.
var now = time.Now
