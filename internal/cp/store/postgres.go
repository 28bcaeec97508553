package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// notifyChannel carries "<schema> <version>" after every committed write,
// so that every CP sharing the database learns about it at once.
const notifyChannel = "kongfb_config"

type pgDriver struct {
	pool   *pgxpool.Pool
	listen *pgx.ConnConfig
	loc    string
	schema string // configured schema ("" = server default search_path)
	scope  string // the schema in use, the NOTIFY payload prefix
	poll   time.Duration
	log    *slog.Logger
}

// pgPoolConfig builds the pool configuration. The password never appears
// in a connection string (pgx error messages quote connection strings).
func pgPoolConfig(p PostgresConfig) (*pgxpool.Config, string, error) {
	var pc *pgxpool.Config
	var err error
	if p.DSN != "" {
		pc, err = pgxpool.ParseConfig(p.DSN)
		if err != nil {
			return nil, "", fmt.Errorf("postgres connection string: %w", err)
		}
	} else {
		u := url.URL{
			Scheme: "postgres",
			User:   url.User(p.User),
			Host:   net.JoinHostPort(p.Host, strconv.Itoa(p.Port)),
			Path:   "/" + p.Database,
		}
		sslmode := p.SSLMode
		if sslmode == "" {
			sslmode = "disable"
		}
		u.RawQuery = url.Values{"sslmode": {sslmode}}.Encode()
		pc, err = pgxpool.ParseConfig(u.String())
		if err != nil {
			return nil, "", fmt.Errorf("postgres settings (host %s, port %d, user %s, database %s): %w",
				p.Host, p.Port, p.User, p.Database, err)
		}
		if p.Password != "" {
			pc.ConnConfig.Password = p.Password
		}
	}
	if p.Schema != "" {
		pc.ConnConfig.RuntimeParams["search_path"] = quoteIdent(p.Schema)
	}
	app := p.ApplicationName
	if app == "" {
		app = "kongfb"
	}
	pc.ConnConfig.RuntimeParams["application_name"] = app
	if p.ConnectTimeout > 0 {
		pc.ConnConfig.ConnectTimeout = p.ConnectTimeout
	} else if pc.ConnConfig.ConnectTimeout == 0 {
		pc.ConnConfig.ConnectTimeout = 5 * time.Second // Kong's pg_timeout
	}
	if p.MaxConns > 0 {
		pc.MaxConns = p.MaxConns
	} else {
		pc.MaxConns = 8
	}
	loc := fmt.Sprintf("postgres://%s@%s/%s", pc.ConnConfig.User,
		net.JoinHostPort(pc.ConnConfig.Host, strconv.Itoa(int(pc.ConnConfig.Port))), pc.ConnConfig.Database)
	if p.Schema != "" {
		loc += "?search_path=" + url.QueryEscape(p.Schema)
	}
	return pc, loc, nil
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func openPostgres(ctx context.Context, p PostgresConfig, poll time.Duration, log *slog.Logger) (*pgDriver, error) {
	pc, loc, err := pgPoolConfig(p)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("open postgres %s: %w", loc, err)
	}
	if poll <= 0 {
		poll = DefaultPollInterval
	}
	d := &pgDriver{pool: pool, listen: pc.ConnConfig.Copy(), loc: loc, schema: p.Schema, poll: poll, log: log}
	// The schema names this store in NOTIFY payloads, which tells apart the
	// notifications of several stores in one database (e.g. tests).
	d.scope = p.Schema
	err = d.run(ctx, nil, func(q querier) error {
		var s *string
		if err := q.QueryRow(ctx, "SELECT current_schema()").Scan(&s); err != nil {
			return err
		}
		if d.scope == "" && s != nil {
			d.scope = *s
		}
		return nil
	})
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres %s: %w", loc, err)
	}
	if d.scope == "" {
		d.scope = "public"
	}
	return d, nil
}

func (d *pgDriver) backend() string  { return BackendPostgres }
func (d *pgDriver) location() string { return d.loc }
func (d *pgDriver) dialect() string  { return BackendPostgres }

func (d *pgDriver) close() error {
	d.pool.Close()
	return nil
}

func (d *pgDriver) ping(ctx context.Context) error {
	return d.run(ctx, nil, func(q querier) error {
		var one int
		return q.QueryRow(ctx, "SELECT 1").Scan(&one)
	})
}

func (d *pgDriver) write(ctx context.Context, fn func(q querier) error) error {
	return d.run(ctx, &pgx.TxOptions{}, fn)
}

func (d *pgDriver) read(ctx context.Context, snapshot bool, fn func(q querier) error) error {
	if !snapshot {
		return d.run(ctx, nil, fn)
	}
	return d.run(ctx, &pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, fn)
}

// migrationTx serialises migrators (several CPs may start at once) with a
// transaction-scoped advisory lock keyed by the schema.
func (d *pgDriver) migrationTx(ctx context.Context, fn func(q querier) error) error {
	return d.run(ctx, &pgx.TxOptions{}, func(q querier) error {
		if err := q.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext(?))", "kongfb_migrations:"+d.schema); err != nil {
			return fmt.Errorf("take migration lock: %w", err)
		}
		if d.schema != "" {
			if err := q.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+quoteIdent(d.schema)); err != nil {
				return fmt.Errorf("create schema %s: %w", d.schema, err)
			}
		}
		return fn(q)
	})
}

func (d *pgDriver) tableExists(ctx context.Context, q querier, name string) (bool, error) {
	var ok bool
	err := q.QueryRow(ctx, "SELECT to_regclass(?) IS NOT NULL", name).Scan(&ok)
	return ok, err
}

// run executes fn, in a transaction when opts is set, retrying what is safe
// to retry: serialization failures and deadlocks (the server rolled back),
// and connection failures that happened before COMMIT was sent (nothing was
// committed; the pool is reset so that connections killed together, e.g. by
// a server restart or pg_terminate_backend, are not reused one by one).
func (d *pgDriver) run(ctx context.Context, opts *pgx.TxOptions, fn func(q querier) error) error {
	for attempt := 1; ; attempt++ {
		err, inCommit := d.try(ctx, opts, fn)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		retry := false
		switch {
		case isSerializationFailure(err) && attempt < 10:
			retry = true
		case isConnError(err) && !inCommit && attempt < 3:
			d.pool.Reset()
			retry = true
		}
		if !retry {
			if isConnError(err) {
				if inCommit {
					err = fmt.Errorf("connection lost during COMMIT, the change may or may not be applied: %w", err)
				}
				return unavailable(err)
			}
			return err
		}
		t := time.NewTimer(time.Duration(attempt*attempt) * 20 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

func (d *pgDriver) try(ctx context.Context, opts *pgx.TxOptions, fn func(q querier) error) (err error, inCommit bool) {
	if opts == nil {
		return fn(&pgQ{q: d.pool}), false
	}
	tx, err := d.pool.BeginTx(ctx, *opts)
	if err != nil {
		return fmt.Errorf("begin postgres transaction: %w", err), false
	}
	if err := fn(&pgQ{q: tx}); err != nil {
		// The rollback must not hang on a dead server; the connection is
		// discarded by the pool if it fails.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		_ = tx.Rollback(rctx)
		cancel()
		return err, false
	}
	if err := tx.Commit(ctx); err != nil {
		var pgErr *pgconn.PgError
		// An error answered by the server means the transaction was rolled back.
		return fmt.Errorf("commit postgres transaction: %w", err), !errors.As(err, &pgErr)
	}
	return nil, false
}

func isSerializationFailure(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40001" || pgErr.Code == "40P01")
}

// isConnError reports errors meaning the server cannot be reached or the
// connection was lost: refused/reset connections, server shutdown or
// terminated backend (57P01..57P03), connection exceptions (class 08),
// insufficient resources (class 53, e.g. too many connections).
func isConnError(err error) bool {
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		c := pgErr.Code
		return strings.HasPrefix(c, "08") || strings.HasPrefix(c, "53") ||
			c == "57P01" || c == "57P02" || c == "57P03"
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	// Conn-busy and similar failures pgx guarantees happened before sending.
	return pgconn.SafeToRetry(err)
}

// copyRows uses COPY, by far the fastest way to load a whole configuration.
func (d *pgDriver) copyRows(ctx context.Context, q querier, table string, cols []string, rows [][]any) error {
	pq, ok := q.(*pgQ)
	if !ok {
		return fmt.Errorf("copy into %s: not in a transaction", table)
	}
	tx, ok := pq.q.(pgx.Tx)
	if !ok {
		return fmt.Errorf("copy into %s: not in a transaction", table)
	}
	_, err := tx.CopyFrom(ctx, pgx.Identifier{table}, cols, pgx.CopyFromRows(rows))
	return err
}

// jsonArg: a string parameter for a jsonb column is sent as JSON text.
func (d *pgDriver) jsonArg(b []byte) any { return string(b) }

func (d *pgDriver) notify(ctx context.Context, q querier, version uint64) error {
	if err := q.Exec(ctx, "SELECT pg_notify(?, ?)", notifyChannel, d.scope+" "+strconv.FormatUint(version, 10)); err != nil {
		return fmt.Errorf("notify config change: %w", err)
	}
	return nil
}

// watch LISTENs on a dedicated connection, and polls every poll interval
// as well: after a reconnect, when a notification could have been missed,
// and as the fallback while LISTEN cannot be set up.
func (d *pgDriver) watch(ctx context.Context, poll func(), publish func(uint64)) {
	scope := d.scope
	backoff := d.poll
	for ctx.Err() == nil {
		conn, err := pgx.ConnectConfig(ctx, d.listen)
		if err == nil {
			if _, err = conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
				_ = conn.Close(context.Background())
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			d.log.Debug("store: postgres LISTEN unavailable, polling", "location", d.loc, "err", err)
			poll()
			if !sleepCtx(ctx, backoff) {
				return
			}
			continue
		}
		poll() // catch up with what happened while not listening
		d.listenLoop(ctx, conn, scope, poll, publish)
		_ = conn.Close(context.Background())
	}
}

func (d *pgDriver) listenLoop(ctx context.Context, conn *pgx.Conn, scope string, poll func(), publish func(uint64)) {
	for {
		wctx, cancel := context.WithTimeout(ctx, d.poll)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if conn.IsClosed() || !errors.Is(err, context.DeadlineExceeded) && !pgconn.Timeout(err) {
				d.log.Debug("store: postgres LISTEN connection lost", "location", d.loc, "err", err)
				return
			}
			poll()
			continue
		}
		s, v, ok := strings.Cut(n.Payload, " ")
		if !ok || s != scope {
			continue
		}
		if ver, err := strconv.ParseUint(v, 10, 64); err == nil {
			publish(ver)
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// pgQ adapts a pool or transaction to querier, rebinding '?' to $n.
type pgQ struct {
	q interface {
		Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
		Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
		QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	}
}

var rebindCache sync.Map

// rebind turns '?' placeholders into $1, $2…; the engine's SQL has no '?'
// inside literals.
func rebind(q string) string {
	if v, ok := rebindCache.Load(q); ok {
		return v.(string)
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(q[i])
	}
	out := b.String()
	if strings.Count(q, "?") < 64 { // do not cache the long generated IN lists
		rebindCache.Store(q, out)
	}
	return out
}

func (p *pgQ) Exec(ctx context.Context, q string, args ...any) error {
	_, err := p.q.Exec(ctx, rebind(q), args...)
	return err
}

func (p *pgQ) Query(ctx context.Context, q string, args ...any) (rowsIter, error) {
	r, err := p.q.Query(ctx, rebind(q), args...)
	if err != nil {
		return nil, err
	}
	return r, nil
}

func (p *pgQ) QueryRow(ctx context.Context, q string, args ...any) rowScanner {
	return pgRow{p.q.QueryRow(ctx, rebind(q), args...)}
}

type pgRow struct{ r pgx.Row }

func (r pgRow) Scan(dest ...any) error {
	err := r.r.Scan(dest...)
	if errors.Is(err, pgx.ErrNoRows) {
		return errNoRows
	}
	return err
}
