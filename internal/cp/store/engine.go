package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// querier is the part of a transaction (or connection pool) the engine
// uses. SQL is written with '?' placeholders; the PostgreSQL driver
// rebinds them.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) error
	Query(ctx context.Context, sql string, args ...any) (rowsIter, error)
	QueryRow(ctx context.Context, sql string, args ...any) rowScanner
}

type rowsIter interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// rowScanner.Scan returns errNoRows when the query matched nothing.
type rowScanner interface {
	Scan(dest ...any) error
}

var errNoRows = errors.New("no rows")

// driver is what a backend provides to the engine.
type driver interface {
	backend() string
	location() string
	// write runs fn in a transaction holding the database's write lock and
	// commits it. fn may run again when the backend retries a transaction
	// that did not commit. Driver errors come back classified (ErrUnavailable).
	write(ctx context.Context, fn func(q querier) error) error
	// read runs fn on a read-only view; snapshot asks for one consistent
	// snapshot across statements.
	read(ctx context.Context, snapshot bool, fn func(q querier) error) error
	// copyRows bulk-inserts rows into table inside a write transaction.
	copyRows(ctx context.Context, q querier, table string, cols []string, rows [][]any) error
	// jsonArg converts encoded JSON to the parameter type of the data column.
	jsonArg(b []byte) any
	// notify runs inside a write transaction after the change (PostgreSQL
	// NOTIFY, delivered on commit).
	notify(ctx context.Context, q querier, version uint64) error
	// watch runs until ctx ends: it calls poll every poll interval and
	// whenever it may have missed a change, and publish with versions other
	// processes announce.
	watch(ctx context.Context, poll func(), publish func(uint64))
	ping(ctx context.Context) error
	close() error

	// Migrations.
	// migrationTx runs fn in a transaction that excludes other migrators.
	migrationTx(ctx context.Context, fn func(q querier) error) error
	// tableExists reports whether name exists in the store's schema.
	tableExists(ctx context.Context, q querier, name string) (bool, error)
	// dialect is the migrations directory name.
	dialect() string
}

// engine implements Store over a driver.
type engine struct {
	drv    driver
	log    *slog.Logger
	w      *watcher
	closed atomic.Bool
	cancel context.CancelFunc
	done   chan struct{}
}

func newEngine(ctx context.Context, drv driver, log *slog.Logger) (*engine, error) {
	e := &engine{drv: drv, log: log, w: newWatcher(), done: make(chan struct{})}
	v, err := e.Version(ctx)
	if err != nil {
		return nil, err
	}
	e.w.publish(v)
	wctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	go func() {
		defer close(e.done)
		drv.watch(wctx, func() { e.poll(wctx) }, e.w.publish)
	}()
	return e, nil
}

// poll reads the version for the watcher. A failure (database down) is
// only logged: the next poll or notification catches up.
func (e *engine) poll(ctx context.Context) {
	seq := e.w.sequence()
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, err := e.Version(pctx)
	if err != nil {
		if ctx.Err() == nil {
			e.log.Debug("store: poll config version", "backend", e.drv.backend(), "err", err)
		}
		return
	}
	e.w.polled(v, seq)
}

func (e *engine) Backend() string  { return e.drv.backend() }
func (e *engine) Location() string { return e.drv.location() }

func (e *engine) Close() error {
	if !e.closed.CompareAndSwap(false, true) {
		return nil
	}
	e.cancel()
	<-e.done
	e.w.close()
	return e.drv.close()
}

func (e *engine) Ping(ctx context.Context) error {
	if e.closed.Load() {
		return ErrClosed
	}
	return e.drv.ping(ctx)
}

func (e *engine) Watch(ctx context.Context) <-chan uint64 {
	return e.w.subscribe(ctx)
}

// write runs fn in a write transaction after incrementing the version, and
// publishes the new version once committed.
func (e *engine) write(ctx context.Context, fn func(q querier) error) (uint64, error) {
	if e.closed.Load() {
		return 0, ErrClosed
	}
	var version uint64
	err := e.drv.write(ctx, func(q querier) error {
		var v int64
		if err := q.QueryRow(ctx, "UPDATE kongfb_meta SET version = version + 1 WHERE id = 1 RETURNING version").Scan(&v); err != nil {
			return fmt.Errorf("increment config version: %w", err)
		}
		if err := fn(q); err != nil {
			return err
		}
		version = uint64(v)
		return e.drv.notify(ctx, q, version)
	})
	if err != nil {
		return 0, err
	}
	e.w.publish(version)
	return version, nil
}

func (e *engine) read(ctx context.Context, snapshot bool, fn func(q querier) error) error {
	if e.closed.Load() {
		return ErrClosed
	}
	return e.drv.read(ctx, snapshot, fn)
}

func (e *engine) Version(ctx context.Context) (uint64, error) {
	var v int64
	err := e.read(ctx, false, func(q querier) error {
		return q.QueryRow(ctx, "SELECT version FROM kongfb_meta WHERE id = 1").Scan(&v)
	})
	if err != nil {
		return 0, fmt.Errorf("read config version: %w", err)
	}
	return uint64(v), nil
}

// getRaw returns the stored JSON of a row, or an ErrNotFound error.
func getRaw(ctx context.Context, q querier, coll, id string) ([]byte, error) {
	var data []byte
	err := q.QueryRow(ctx, "SELECT data FROM kongfb_entities WHERE coll = ? AND id = ?", coll, id).Scan(&data)
	if errors.Is(err, errNoRows) {
		return nil, fmt.Errorf("%s %s: %w", coll, id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get %s %s: %w", coll, id, err)
	}
	return data, nil
}

func getRow(ctx context.Context, q querier, coll, id string) (Row, error) {
	data, err := getRaw(ctx, q, coll, id)
	if err != nil {
		return nil, err
	}
	return decodeRow(data)
}

func (e *engine) Get(ctx context.Context, coll, id string) (Row, error) {
	if _, err := checkColl(coll); err != nil {
		return nil, err
	}
	var row Row
	err := e.read(ctx, false, func(q querier) error {
		var err error
		row, err = getRow(ctx, q, coll, id)
		return err
	})
	return row, err
}

func (e *engine) GetByKey(ctx context.Context, coll string, key Key) (Row, error) {
	m, err := checkColl(coll)
	if err != nil {
		return nil, err
	}
	if id, ok := key["id"].(string); ok && len(key) == 1 {
		return e.Get(ctx, coll, id)
	}
	u, err := uniqueForKey(m, key)
	if err != nil {
		return nil, err
	}
	var row Row
	err = e.read(ctx, false, func(q querier) error {
		var data []byte
		err := q.QueryRow(ctx, `SELECT e.data FROM kongfb_uniques u
			JOIN kongfb_entities e ON e.coll = u.coll AND e.id = u.id
			WHERE u.coll = ? AND u.ukey = ? AND u.uvalue = ?`, coll, u.key, u.value).Scan(&data)
		if errors.Is(err, errNoRows) {
			return fmt.Errorf("%s %s: %w", coll, LuaTable(u.fields), ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("get %s by %s: %w", coll, u.key, err)
		}
		row, err = decodeRow(data)
		return err
	})
	return row, err
}

func (e *engine) List(ctx context.Context, coll string, opts ListOptions) (Page, error) {
	m, err := checkColl(coll)
	if err != nil {
		return Page{}, err
	}
	size, err := pageSize(opts.Size)
	if err != nil {
		return Page{}, err
	}
	var sb strings.Builder
	args := []any{coll}
	sb.WriteString("SELECT e.id, e.data FROM kongfb_entities e WHERE e.coll = ?")
	if opts.Offset != "" {
		parts, err := decodeOffset(opts.Offset, 1)
		if err != nil {
			return Page{}, err
		}
		sb.WriteString(" AND e.id > ?")
		args = append(args, parts[0])
	}
	if f := opts.Filter; f != nil {
		if _, ok := m.ForeignKey(f.Field); !ok {
			return Page{}, invalidArg("%s has no foreign key %q to filter on", coll, f.Field)
		}
		sb.WriteString(" AND e.id IN (SELECT r.id FROM kongfb_refs r WHERE r.coll = ? AND r.field = ? AND r.ref_id = ?)")
		args = append(args, coll, f.Field, f.ID)
	}
	if len(opts.Tags) > 0 {
		if opts.TagMatch == MatchAny {
			sb.WriteString(" AND EXISTS (SELECT 1 FROM kongfb_tags t WHERE t.coll = e.coll AND t.id = e.id AND t.tag IN (")
			for i, t := range opts.Tags {
				if i > 0 {
					sb.WriteString(", ")
				}
				sb.WriteString("?")
				args = append(args, t)
			}
			sb.WriteString("))")
		} else {
			for _, t := range opts.Tags {
				sb.WriteString(" AND EXISTS (SELECT 1 FROM kongfb_tags t WHERE t.coll = e.coll AND t.id = e.id AND t.tag = ?)")
				args = append(args, t)
			}
		}
	}
	// One row more than asked tells whether a next page exists, so the last
	// page carries no offset (decK stops on its absence).
	sb.WriteString(" ORDER BY e.id LIMIT ?")
	args = append(args, size+1)

	var page Page
	err = e.read(ctx, false, func(q querier) error {
		page = Page{}
		rows, err := q.Query(ctx, sb.String(), args...)
		if err != nil {
			return fmt.Errorf("list %s: %w", coll, err)
		}
		defer rows.Close()
		var lastID string
		for rows.Next() {
			var id string
			var data []byte
			if err := rows.Scan(&id, &data); err != nil {
				return fmt.Errorf("list %s: %w", coll, err)
			}
			if len(page.Rows) == size {
				page.NextOffset = encodeOffset(lastID)
				break
			}
			row, err := decodeRow(data)
			if err != nil {
				return fmt.Errorf("list %s: row %s: %w", coll, id, err)
			}
			page.Rows = append(page.Rows, row)
			lastID = id
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("list %s: %w", coll, err)
		}
		return nil
	})
	return page, err
}

func (e *engine) ListTags(ctx context.Context, opts TagListOptions) (TagPage, error) {
	size, err := pageSize(opts.Size)
	if err != nil {
		return TagPage{}, err
	}
	var sb strings.Builder
	var args []any
	sb.WriteString("SELECT coll, id, tag FROM kongfb_tags WHERE 1 = 1")
	if opts.Tag != "" {
		sb.WriteString(" AND tag = ?")
		args = append(args, opts.Tag)
	}
	if opts.Offset != "" {
		parts, err := decodeOffset(opts.Offset, 3)
		if err != nil {
			return TagPage{}, err
		}
		sb.WriteString(" AND (coll > ? OR (coll = ? AND (id > ? OR (id = ? AND tag > ?))))")
		args = append(args, parts[0], parts[0], parts[1], parts[1], parts[2])
	}
	sb.WriteString(" ORDER BY coll, id, tag LIMIT ?")
	args = append(args, size+1)
	var page TagPage
	err = e.read(ctx, false, func(q querier) error {
		page = TagPage{}
		rows, err := q.Query(ctx, sb.String(), args...)
		if err != nil {
			return fmt.Errorf("list tags: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var t TagRow
			if err := rows.Scan(&t.EntityName, &t.EntityID, &t.Tag); err != nil {
				return fmt.Errorf("list tags: %w", err)
			}
			if len(page.Rows) == size {
				last := page.Rows[size-1]
				page.NextOffset = encodeOffset(last.EntityName, last.EntityID, last.Tag)
				break
			}
			page.Rows = append(page.Rows, t)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("list tags: %w", err)
		}
		return nil
	})
	return page, err
}

// put writes row (normalised) over prev (nil for a new row) after checking
// unique and foreign keys, and rewrites its index rows.
func (e *engine) put(ctx context.Context, q querier, m *CollectionMeta, row, prev Row, touch bool) (Row, error) {
	id := row["id"].(string)
	stamp(m, row, prev, now(), touch)
	ix := buildIndex(m, row)
	for _, u := range ix.uniques {
		var owner string
		err := q.QueryRow(ctx, "SELECT id FROM kongfb_uniques WHERE coll = ? AND ukey = ? AND uvalue = ?",
			m.Name, u.key, u.value).Scan(&owner)
		if errors.Is(err, errNoRows) || (err == nil && owner == id) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("check unique %s %s: %w", m.Name, u.key, err)
		}
		return nil, &UniqueViolation{Collection: m.Name, ExistingID: owner, Fields: u.fields}
	}
	for _, r := range ix.refs {
		var one int
		err := q.QueryRow(ctx, "SELECT 1 FROM kongfb_entities WHERE coll = ? AND id = ?", r.refColl, r.refID).Scan(&one)
		if errors.Is(err, errNoRows) {
			return nil, &ForeignKeyViolation{Collection: m.Name, ID: id, Field: r.field, RefCollection: r.refColl, RefID: r.refID}
		}
		if err != nil {
			return nil, fmt.Errorf("check foreign key %s.%s: %w", m.Name, r.field, err)
		}
	}
	data, err := encodeRow(row)
	if err != nil {
		return nil, err
	}
	if prev != nil {
		if err := q.Exec(ctx, "UPDATE kongfb_entities SET data = ? WHERE coll = ? AND id = ?", e.drv.jsonArg(data), m.Name, id); err != nil {
			return nil, fmt.Errorf("update %s %s: %w", m.Name, id, err)
		}
		if err := deleteIndex(ctx, q, m.Name, []string{id}); err != nil {
			return nil, err
		}
	} else {
		if err := q.Exec(ctx, "INSERT INTO kongfb_entities (coll, id, data) VALUES (?, ?, ?)", m.Name, id, e.drv.jsonArg(data)); err != nil {
			return nil, fmt.Errorf("insert %s %s: %w", m.Name, id, err)
		}
	}
	if err := insertIndex(ctx, q, m.Name, id, ix); err != nil {
		return nil, err
	}
	return decodeRow(data)
}

func insertIndex(ctx context.Context, q querier, coll, id string, ix index) error {
	for _, u := range ix.uniques {
		if err := q.Exec(ctx, "INSERT INTO kongfb_uniques (coll, ukey, uvalue, id) VALUES (?, ?, ?, ?)", coll, u.key, u.value, id); err != nil {
			return fmt.Errorf("index %s %s unique %s: %w", coll, id, u.key, err)
		}
	}
	for _, r := range ix.refs {
		if err := q.Exec(ctx, "INSERT INTO kongfb_refs (coll, id, field, ref_coll, ref_id) VALUES (?, ?, ?, ?, ?)", coll, id, r.field, r.refColl, r.refID); err != nil {
			return fmt.Errorf("index %s %s reference %s: %w", coll, id, r.field, err)
		}
	}
	for _, t := range ix.tags {
		if err := q.Exec(ctx, "INSERT INTO kongfb_tags (coll, id, tag) VALUES (?, ?, ?)", coll, id, t); err != nil {
			return fmt.Errorf("index %s %s tag: %w", coll, id, err)
		}
	}
	return nil
}

// deleteChunk bounds the number of parameters of one DELETE … IN (…).
const deleteChunk = 500

func inList(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

// deleteIndex removes the index rows of ids.
func deleteIndex(ctx context.Context, q querier, coll string, ids []string) error {
	return deleteFrom(ctx, q, []string{"kongfb_uniques", "kongfb_refs", "kongfb_tags"}, coll, ids)
}

func deleteFrom(ctx context.Context, q querier, tables []string, coll string, ids []string) error {
	for start := 0; start < len(ids); start += deleteChunk {
		chunk := ids[start:min(start+deleteChunk, len(ids))]
		args := make([]any, 0, len(chunk)+1)
		args = append(args, coll)
		for _, id := range chunk {
			args = append(args, id)
		}
		for _, t := range tables {
			if err := q.Exec(ctx, "DELETE FROM "+t+" WHERE coll = ? AND id IN ("+inList(len(chunk))+")", args...); err != nil {
				return fmt.Errorf("delete %s from %s: %w", coll, t, err)
			}
		}
	}
	return nil
}

func (e *engine) Insert(ctx context.Context, coll string, row Row) (Row, error) {
	m, err := checkColl(coll)
	if err != nil {
		return nil, err
	}
	nrow, err := normalizeRow(m, row)
	if err != nil {
		return nil, err
	}
	var out Row
	_, err = e.write(ctx, func(q querier) error {
		r := clone(nrow)
		id := r["id"].(string)
		var one int
		err := q.QueryRow(ctx, "SELECT 1 FROM kongfb_entities WHERE coll = ? AND id = ?", coll, id).Scan(&one)
		if err == nil {
			return &PrimaryKeyViolation{Collection: coll, ID: id}
		}
		if !errors.Is(err, errNoRows) {
			return fmt.Errorf("insert %s %s: %w", coll, id, err)
		}
		out, err = e.put(ctx, q, m, r, nil, true)
		return err
	})
	return out, err
}

func (e *engine) Upsert(ctx context.Context, coll string, row Row) (Row, error) {
	m, err := checkColl(coll)
	if err != nil {
		return nil, err
	}
	if id, _ := row["id"].(string); id == "" {
		return nil, invalidArg("upsert %s: row has no id (use UpsertByKey or Insert)", coll)
	}
	nrow, err := normalizeRow(m, row)
	if err != nil {
		return nil, err
	}
	var out Row
	_, err = e.write(ctx, func(q querier) error {
		var err error
		out, err = e.upsert(ctx, q, m, clone(nrow))
		return err
	})
	return out, err
}

func (e *engine) upsert(ctx context.Context, q querier, m *CollectionMeta, r Row) (Row, error) {
	prev, err := getRow(ctx, q, m.Name, r["id"].(string))
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	return e.put(ctx, q, m, r, prev, true)
}

func (e *engine) UpsertByKey(ctx context.Context, coll, keyField string, row Row) (Row, error) {
	m, err := checkColl(coll)
	if err != nil {
		return nil, err
	}
	var uk *UniqueKey
	for i := range m.Uniques {
		if len(m.Uniques[i].Fields) == 1 && m.Uniques[i].Fields[0] == keyField {
			uk = &m.Uniques[i]
		}
	}
	if uk == nil {
		return nil, invalidArg("upsert %s: %q is not a unique field", coll, keyField)
	}
	if row[keyField] == nil {
		return nil, invalidArg("upsert %s: row has no %s", coll, keyField)
	}
	nrow, err := normalizeRow(m, row)
	if err != nil {
		return nil, err
	}
	u, ok := uniqueOf(m, *uk, nrow)
	if !ok {
		return nil, invalidArg("upsert %s: malformed %s", coll, keyField)
	}
	var out Row
	_, err = e.write(ctx, func(q querier) error {
		r := clone(nrow)
		var owner string
		err := q.QueryRow(ctx, "SELECT id FROM kongfb_uniques WHERE coll = ? AND ukey = ? AND uvalue = ?", coll, u.key, u.value).Scan(&owner)
		switch {
		case err == nil:
			r["id"] = owner
		case !errors.Is(err, errNoRows):
			return fmt.Errorf("upsert %s by %s: %w", coll, keyField, err)
		}
		out, err = e.upsert(ctx, q, m, r)
		return err
	})
	return out, err
}

func (e *engine) Update(ctx context.Context, coll, id string, fn UpdateFunc) (Row, error) {
	m, err := checkColl(coll)
	if err != nil {
		return nil, err
	}
	var out Row
	_, err = e.write(ctx, func(q querier) error {
		data, err := getRaw(ctx, q, coll, id)
		if err != nil {
			return err
		}
		prev, err := decodeRow(data)
		if err != nil {
			return err
		}
		cur, err := decodeRow(data) // fn's own copy: it may modify it freely
		if err != nil {
			return err
		}
		next, err := fn(cur)
		if err != nil {
			return err
		}
		if next == nil {
			return invalidArg("update %s %s: update function returned no row", coll, id)
		}
		if nid, ok := next["id"]; ok && nid != nil && nid != id {
			return invalidArg("update %s %s: the id cannot change (got %v)", coll, id, nid)
		}
		next, err = normalizeRow(m, withID(next, id))
		if err != nil {
			return err
		}
		out, err = e.put(ctx, q, m, next, prev, true)
		return err
	})
	return out, err
}

func withID(r Row, id string) Row {
	c := clone(r)
	c["id"] = id
	return c
}

type collID struct{ coll, id string }

// referrer is a row referencing another through field.
type referrer struct {
	c     collID
	field string
}

func (e *engine) Delete(ctx context.Context, coll, id string) error {
	if _, err := checkColl(coll); err != nil {
		return err
	}
	_, err := e.write(ctx, func(q querier) error {
		var one int
		err := q.QueryRow(ctx, "SELECT 1 FROM kongfb_entities WHERE coll = ? AND id = ?", coll, id).Scan(&one)
		if errors.Is(err, errNoRows) {
			return fmt.Errorf("%s %s: %w", coll, id, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("delete %s %s: %w", coll, id, err)
		}
		// Breadth-first over the references: cascading rows join the set;
		// restricting references are checked once the set is complete, so a
		// referrer that is itself deleted by cascade does not block.
		set := []collID{{coll, id}}
		in := map[collID]bool{{coll, id}: true}
		type restriction struct{ parent, child collID }
		var restricts []restriction
		for i := 0; i < len(set); i++ {
			p := set[i]
			rows, err := q.Query(ctx, "SELECT coll, id, field FROM kongfb_refs WHERE ref_coll = ? AND ref_id = ?", p.coll, p.id)
			if err != nil {
				return fmt.Errorf("delete %s %s: find references: %w", coll, id, err)
			}
			var found []referrer
			for rows.Next() {
				var c collID
				var field string
				if err := rows.Scan(&c.coll, &c.id, &field); err != nil {
					rows.Close()
					return fmt.Errorf("delete %s %s: find references: %w", coll, id, err)
				}
				found = append(found, referrer{c, field})
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return fmt.Errorf("delete %s %s: find references: %w", coll, id, err)
			}
			for _, f := range found {
				cm, _ := Meta(f.c.coll)
				fk, _ := cm.ForeignKey(f.field)
				if fk.OnDelete != Cascade {
					restricts = append(restricts, restriction{p, f.c})
					continue
				}
				if !in[f.c] {
					in[f.c] = true
					set = append(set, f.c)
				}
			}
		}
		for _, r := range restricts {
			if !in[r.child] {
				return &ReferencedBy{Collection: r.parent.coll, ID: r.parent.id, ReferencedBy: r.child.coll, ReferrerID: r.child.id}
			}
		}
		byColl := map[string][]string{}
		for _, c := range set {
			byColl[c.coll] = append(byColl[c.coll], c.id)
		}
		for c, ids := range byColl {
			if err := deleteFrom(ctx, q, []string{"kongfb_entities", "kongfb_uniques", "kongfb_refs", "kongfb_tags"}, c, ids); err != nil {
				return err
			}
		}
		return nil
	})
	return err
}

// preparedColl is one collection of a ReplaceAll, checked and encoded.
type preparedColl struct {
	meta *CollectionMeta
	ids  []string
	data [][]byte
	ix   []index
}

func (e *engine) ReplaceAll(ctx context.Context, colls map[string][]Row) (uint64, error) {
	prep, err := prepareReplace(colls, now())
	if err != nil {
		return 0, err
	}
	return e.write(ctx, func(q querier) error {
		for _, t := range []string{"kongfb_entities", "kongfb_uniques", "kongfb_refs", "kongfb_tags"} {
			if err := q.Exec(ctx, "DELETE FROM "+t); err != nil {
				return fmt.Errorf("replace: clear %s: %w", t, err)
			}
		}
		var ents, uniqs, refs, tags [][]any
		for _, p := range prep {
			for i, id := range p.ids {
				ents = append(ents, []any{p.meta.Name, id, e.drv.jsonArg(p.data[i])})
				for _, u := range p.ix[i].uniques {
					uniqs = append(uniqs, []any{p.meta.Name, u.key, u.value, id})
				}
				for _, r := range p.ix[i].refs {
					refs = append(refs, []any{p.meta.Name, id, r.field, r.refColl, r.refID})
				}
				for _, t := range p.ix[i].tags {
					tags = append(tags, []any{p.meta.Name, id, t})
				}
			}
		}
		for _, c := range []struct {
			table string
			cols  []string
			rows  [][]any
		}{
			{"kongfb_entities", []string{"coll", "id", "data"}, ents},
			{"kongfb_uniques", []string{"coll", "ukey", "uvalue", "id"}, uniqs},
			{"kongfb_refs", []string{"coll", "id", "field", "ref_coll", "ref_id"}, refs},
			{"kongfb_tags", []string{"coll", "id", "tag"}, tags},
		} {
			if len(c.rows) == 0 {
				continue
			}
			if err := e.drv.copyRows(ctx, q, c.table, c.cols, c.rows); err != nil {
				return fmt.Errorf("replace: write %s: %w", c.table, err)
			}
		}
		return nil
	})
}

// prepareReplace normalises and checks a whole new content in memory:
// duplicate ids, unique keys and references are all resolved within it.
func prepareReplace(colls map[string][]Row, t time.Time) ([]*preparedColl, error) {
	names := make([]string, 0, len(colls))
	for name := range colls {
		names = append(names, name)
	}
	sort.Strings(names)
	ids := map[string]map[string]bool{}
	uniques := map[string]string{} // coll \x00 key \x00 value -> id
	var out []*preparedColl
	for _, name := range names {
		m, err := checkColl(name)
		if err != nil {
			return nil, fmt.Errorf("replace: %w", err)
		}
		p := &preparedColl{meta: m}
		seen := map[string]bool{}
		ids[name] = seen
		for i, in := range colls[name] {
			row, err := normalizeRow(m, in)
			if err != nil {
				return nil, fmt.Errorf("replace: %s[%d]: %w", name, i, err)
			}
			stamp(m, row, nil, t, false)
			id := row["id"].(string)
			if seen[id] {
				return nil, fmt.Errorf("replace: %s[%d]: %w", name, i, &PrimaryKeyViolation{Collection: name, ID: id})
			}
			seen[id] = true
			ix := buildIndex(m, row)
			for _, u := range ix.uniques {
				k := name + "\x00" + u.key + "\x00" + u.value
				if owner, dup := uniques[k]; dup {
					return nil, fmt.Errorf("replace: %s[%d]: %w", name, i, &UniqueViolation{Collection: name, ExistingID: owner, Fields: u.fields})
				}
				uniques[k] = id
			}
			data, err := encodeRow(row)
			if err != nil {
				return nil, fmt.Errorf("replace: %s[%d]: %w", name, i, err)
			}
			p.ids = append(p.ids, id)
			p.data = append(p.data, data)
			p.ix = append(p.ix, ix)
		}
		out = append(out, p)
	}
	for _, p := range out {
		for i, ix := range p.ix {
			for _, r := range ix.refs {
				if !ids[r.refColl][r.refID] {
					return nil, fmt.Errorf("replace: %s[%d]: %w", p.meta.Name, i, &ForeignKeyViolation{
						Collection: p.meta.Name, ID: p.ids[i], Field: r.field, RefCollection: r.refColl, RefID: r.refID})
				}
			}
		}
	}
	return out, nil
}

func (e *engine) Export(ctx context.Context) (*Snapshot, error) {
	raw, err := e.ExportRaw(ctx)
	if err != nil {
		return nil, err
	}
	snap := &Snapshot{Version: raw.Version, Collections: make(map[string][]Row, len(raw.Collections))}
	for coll, rows := range raw.Collections {
		out := make([]Row, len(rows))
		for i, data := range rows {
			row, err := decodeRow(data)
			if err != nil {
				return nil, fmt.Errorf("export: %s %s: %w", coll, rawID(data), err)
			}
			out[i] = row
		}
		snap.Collections[coll] = out
	}
	return snap, nil
}

// rawID is a row's id for messages about a row that does not decode.
func rawID(data []byte) string {
	var r struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(data, &r)
	return r.ID
}

func (e *engine) ExportRaw(ctx context.Context) (*RawSnapshot, error) {
	var snap *RawSnapshot
	err := e.read(ctx, true, func(q querier) error {
		snap = &RawSnapshot{Collections: map[string][]json.RawMessage{}}
		var v int64
		if err := q.QueryRow(ctx, "SELECT version FROM kongfb_meta WHERE id = 1").Scan(&v); err != nil {
			return fmt.Errorf("export: read version: %w", err)
		}
		snap.Version = uint64(v)
		rows, err := q.Query(ctx, "SELECT coll, id, data FROM kongfb_entities ORDER BY coll, id")
		if err != nil {
			return fmt.Errorf("export: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var coll, id string
			var data []byte
			if err := rows.Scan(&coll, &id, &data); err != nil {
				return fmt.Errorf("export: %w", err)
			}
			// The driver may reuse data's memory for the next row.
			snap.Collections[coll] = append(snap.Collections[coll], json.RawMessage(bytes.Clone(data)))
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("export: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return snap, nil
}

func clone(r Row) Row {
	c := make(Row, len(r))
	for k, v := range r {
		c[k] = v
	}
	return c
}

// watcher fans versions out to Watch subscribers.
type watcher struct {
	mu     sync.Mutex
	cur    uint64
	known  bool
	seq    uint64 // incremented by every publish, see polled
	subs   map[chan uint64]struct{}
	stop   chan struct{}
	closed bool
}

func newWatcher() *watcher {
	return &watcher{subs: map[chan uint64]struct{}{}, stop: make(chan struct{})}
}

func (w *watcher) sequence() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seq
}

// publish records a version known to be current (a commit or a
// notification) if it is newer than the last one.
func (w *watcher) publish(v uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.known && v <= w.cur {
		return
	}
	w.set(v)
}

// polled records a version read by a poll that started at sequence seq. A
// lower version than the current one is believed only if nothing was
// published meanwhile (the database was restored or re-created), not when
// the poll merely raced with a commit.
func (w *watcher) polled(v, seq uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.known && (v == w.cur || (v < w.cur && seq != w.seq)) {
		return
	}
	w.set(v)
}

func (w *watcher) set(v uint64) {
	w.cur, w.known = v, true
	w.seq++
	for ch := range w.subs {
		// Keep only the latest version in the 1-slot buffer. Only the
		// publisher sends, under mu, so after draining the send cannot block.
		select {
		case ch <- v:
		default:
			select {
			case <-ch:
			default:
			}
			ch <- v
		}
	}
}

func (w *watcher) subscribe(ctx context.Context) <-chan uint64 {
	ch := make(chan uint64, 1)
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		close(ch)
		return ch
	}
	if w.known {
		ch <- w.cur
	}
	w.subs[ch] = struct{}{}
	w.mu.Unlock()
	go func() {
		select {
		case <-ctx.Done():
		case <-w.stop:
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		if _, ok := w.subs[ch]; ok {
			delete(w.subs, ch)
			close(ch)
		}
	}()
	return ch
}

func (w *watcher) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	w.closed = true
	close(w.stop)
	for ch := range w.subs {
		delete(w.subs, ch)
		close(ch)
	}
}
