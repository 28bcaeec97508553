package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// SQLiteFile is the database file name inside the data directory (prefix).
const SQLiteFile = "kongfb.db"

// DefaultSQLiteBusyTimeout is how long a write waits for another process
// holding the write lock before the store reports ErrUnavailable.
const DefaultSQLiteBusyTimeout = 10 * time.Second

// sqliteDriver keeps two pools on the same file: one connection for writes
// (SQLite allows one writer; BEGIN IMMEDIATE takes the lock up front so two
// processes never deadlock upgrading read locks) and several read
// connections, which WAL mode lets run alongside the writer.
type sqliteDriver struct {
	path string
	wdb  *sql.DB
	rdb  *sql.DB
	poll time.Duration
}

func sqliteDSN(path string, write bool, busy time.Duration) string {
	var b strings.Builder
	b.WriteString(path)
	fmt.Fprintf(&b, "?_pragma=busy_timeout(%d)", busy.Milliseconds())
	if write {
		// FULL: a commit is on disk (WAL fsynced) before the write is
		// acknowledged; config writes are rare, durability matters more.
		b.WriteString("&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate")
	} else {
		b.WriteString("&_pragma=query_only(1)")
	}
	return b.String()
}

// openSQLite opens the database file. With create=false a missing file is
// reported as ErrNotBootstrapped instead of being created empty.
func openSQLite(path string, create bool, poll, busy time.Duration) (*sqliteDriver, error) {
	if busy <= 0 {
		busy = DefaultSQLiteBusyTimeout
	}
	if strings.ContainsRune(path, '?') {
		return nil, fmt.Errorf("sqlite path %q: must not contain '?'", path)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite path %q: %w", path, err)
	}
	if _, err := os.Stat(abs); errors.Is(err, os.ErrNotExist) {
		if !create {
			return nil, fmt.Errorf("sqlite database %s does not exist: %w", abs, ErrNotBootstrapped)
		}
		if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
			return nil, fmt.Errorf("create data directory %s: %w", filepath.Dir(abs), err)
		}
		// The database holds private keys and credentials: create it
		// owner-only (SQLite would use 0644; its -wal and -shm files copy
		// the database file's mode).
		f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil && !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("create sqlite database %s: %w", abs, err)
		}
		if f != nil {
			_ = f.Close()
		}
	} else if err != nil {
		return nil, unavailable(fmt.Errorf("sqlite database %s: %w", abs, err))
	}
	wdb, err := sql.Open("sqlite", sqliteDSN(abs, true, busy))
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", abs, err)
	}
	wdb.SetMaxOpenConns(1)
	wdb.SetMaxIdleConns(1)
	wdb.SetConnMaxIdleTime(0)
	// The writer connection creates the file and switches it to WAL before
	// any reader opens it. Switching the journal mode needs an exclusive
	// lock, and SQLite answers SQLITE_BUSY at once, without its busy
	// handler, while another process or connection does the same (several
	// CPs bootstrapping one new file): retry for the busy timeout.
	deadline := time.Now().Add(busy)
	for wait := 5 * time.Millisecond; ; wait = min(2*wait, 100*time.Millisecond) {
		err := wdb.Ping()
		if err == nil {
			break
		}
		if !isSQLiteBusy(err) || time.Now().Add(wait).After(deadline) {
			wdb.Close()
			return nil, classifySQLite(fmt.Errorf("open sqlite %s: %w", abs, err))
		}
		time.Sleep(wait)
	}
	rdb, err := sql.Open("sqlite", sqliteDSN(abs, false, busy))
	if err != nil {
		wdb.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", abs, err)
	}
	rdb.SetMaxOpenConns(8)
	rdb.SetMaxIdleConns(8)
	if poll <= 0 {
		poll = DefaultPollInterval
	}
	return &sqliteDriver{path: abs, wdb: wdb, rdb: rdb, poll: poll}, nil
}

func (d *sqliteDriver) backend() string  { return BackendSQLite }
func (d *sqliteDriver) location() string { return d.path }
func (d *sqliteDriver) dialect() string  { return BackendSQLite }

func (d *sqliteDriver) close() error {
	err1 := d.rdb.Close()
	err2 := d.wdb.Close()
	return errors.Join(err1, err2)
}

func (d *sqliteDriver) ping(ctx context.Context) error {
	var one int
	if err := d.rdb.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return classifySQLite(fmt.Errorf("ping sqlite %s: %w", d.path, err))
	}
	return nil
}

func (d *sqliteDriver) write(ctx context.Context, fn func(q querier) error) error {
	return classifySQLite(d.tx(ctx, d.wdb, nil, fn))
}

func (d *sqliteDriver) migrationTx(ctx context.Context, fn func(q querier) error) error {
	return d.write(ctx, fn)
}

func (d *sqliteDriver) read(ctx context.Context, snapshot bool, fn func(q querier) error) error {
	if !snapshot {
		return classifySQLite(fn(sqliteQ{d.rdb}))
	}
	// A WAL read transaction sees one snapshot from its first read on.
	return classifySQLite(d.tx(ctx, d.rdb, &sql.TxOptions{ReadOnly: true}, fn))
}

func (d *sqliteDriver) tx(ctx context.Context, db *sql.DB, opts *sql.TxOptions, fn func(q querier) error) error {
	tx, err := db.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("begin sqlite transaction: %w", err)
	}
	if err := fn(sqliteQ{tx}); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit sqlite transaction: %w", err)
	}
	return nil
}

// copyRows inserts with multi-row VALUES lists, well under SQLite's limit
// of 32766 parameters per statement.
func (d *sqliteDriver) copyRows(ctx context.Context, q querier, table string, cols []string, rows [][]any) error {
	per := max(1, 2000/len(cols))
	one := "(" + inList(len(cols)) + ")"
	for start := 0; start < len(rows); start += per {
		chunk := rows[start:min(start+per, len(rows))]
		var b strings.Builder
		b.WriteString("INSERT INTO " + table + " (" + strings.Join(cols, ", ") + ") VALUES ")
		args := make([]any, 0, len(chunk)*len(cols))
		for i, r := range chunk {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(one)
			args = append(args, r...)
		}
		if err := q.Exec(ctx, b.String(), args...); err != nil {
			return err
		}
	}
	return nil
}

func (d *sqliteDriver) jsonArg(b []byte) any { return string(b) }

func (d *sqliteDriver) notify(context.Context, querier, uint64) error { return nil }

// watch polls: another process writing the same file has no way to signal
// this one. Own commits are published by the engine directly.
func (d *sqliteDriver) watch(ctx context.Context, poll func(), _ func(uint64)) {
	t := time.NewTicker(d.poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			poll()
		}
	}
}

func (d *sqliteDriver) tableExists(ctx context.Context, q querier, name string) (bool, error) {
	var n int
	err := q.QueryRow(ctx, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?", name).Scan(&n)
	return n > 0, err
}

// classifySQLite marks errors meaning "the database cannot serve now" as
// ErrUnavailable: lock held beyond the busy timeout, I/O errors, full disk,
// file gone or unreadable.
func isSQLiteBusy(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && (se.Code()&0xff == sqlite3.SQLITE_BUSY || se.Code()&0xff == sqlite3.SQLITE_LOCKED)
}

func classifySQLite(err error) error {
	if err == nil {
		return nil
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL,
			sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PROTOCOL, sqlite3.SQLITE_NOTADB,
			sqlite3.SQLITE_CORRUPT:
			return unavailable(err)
		}
	}
	return err
}

// sqliteQ adapts *sql.DB / *sql.Tx to querier.
type sqliteQ struct {
	q interface {
		ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
		QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
		QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	}
}

func (s sqliteQ) Exec(ctx context.Context, q string, args ...any) error {
	_, err := s.q.ExecContext(ctx, q, args...)
	return err
}

func (s sqliteQ) Query(ctx context.Context, q string, args ...any) (rowsIter, error) {
	r, err := s.q.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return sqlRows{r}, nil
}

func (s sqliteQ) QueryRow(ctx context.Context, q string, args ...any) rowScanner {
	return sqlRow{s.q.QueryRowContext(ctx, q, args...)}
}

type sqlRows struct{ *sql.Rows }

func (r sqlRows) Close() { _ = r.Rows.Close() }

type sqlRow struct{ r *sql.Row }

func (r sqlRow) Scan(dest ...any) error {
	err := r.r.Scan(dest...)
	if errors.Is(err, sql.ErrNoRows) {
		return errNoRows
	}
	return err
}
