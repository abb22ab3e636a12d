// Package store persists what QSP must not lose across restarts: SLO
// rollups and alert states from the engine, transitions, notifications
// waiting for delivery, incidents, policy decisions, gate evaluations,
// deploy markers and playbook runs. SQLite (modernc.org/sqlite, pure Go,
// WAL mode) is the default; PostgreSQL serves several replicas. Both run
// the same SQL, written with ? placeholders and rebound for PostgreSQL.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// Store is the database. It is safe for concurrent use.
type Store struct {
	db      *sql.DB
	dialect dialect
	logger  *slog.Logger
	now     func() time.Time
}

// dialect holds what differs between SQLite and PostgreSQL.
type dialect struct {
	name string
	// rebind turns ? placeholders into the driver's.
	rebind func(string) string
}

var sqliteDialect = dialect{name: "sqlite", rebind: func(q string) string { return q }}

// Errors.
var (
	// ErrNotFound is returned when a looked-up row does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict is returned when a write loses to another (a claimed
	// notification, an acknowledged incident).
	ErrConflict = errors.New("conflict")
)

// Options configure Open.
type Options struct {
	// Driver is "sqlite" (default) or "postgres".
	Driver string
	// Path is the SQLite database file.
	Path string
	// DSN is the PostgreSQL connection string.
	DSN    string
	Logger *slog.Logger
	Now    func() time.Time
}

// Open opens (creating if needed) the database and migrates it to the
// current schema.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	var s *Store
	switch opts.Driver {
	case "", "sqlite":
		db, err := openSQLite(opts.Path)
		if err != nil {
			return nil, err
		}
		s = &Store{db: db, dialect: sqliteDialect}
	case "postgres":
		db, err := openPostgres(ctx, opts.DSN)
		if err != nil {
			return nil, err
		}
		s = &Store{db: db, dialect: postgresDialect}
	default:
		return nil, fmt.Errorf("store: unknown driver %q: want sqlite or postgres", opts.Driver)
	}
	s.logger = opts.Logger.With("component", "store")
	s.now = opts.Now
	if err := s.migrate(ctx); err != nil {
		s.db.Close()
		return nil, err
	}
	return s, nil
}

func openSQLite(path string) (*sql.DB, error) {
	if path == "" {
		return nil, errors.New("store: sqlite needs a path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	q := url.Values{}
	// WAL lets readers (API) run beside the writer (engine); synchronous
	// NORMAL keeps committed transactions through a process crash.
	for _, p := range []string{"journal_mode(WAL)", "busy_timeout(10000)", "synchronous(NORMAL)", "foreign_keys(1)"} {
		q.Add("_pragma", p)
	}
	// Write transactions take the lock up front, so two writers queue
	// instead of deadlocking on a lock upgrade.
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+abs+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	db.SetMaxOpenConns(4)
	if err := db.Ping(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return db, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Driver returns "sqlite" or "postgres".
func (s *Store) Driver() string { return s.dialect.name }

// DB returns the underlying database, for tests and health checks.
func (s *Store) DB() *sql.DB { return s.db }

func (s *Store) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return s.db.ExecContext(ctx, s.dialect.rebind(q), args...)
}

func (s *Store) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return s.db.QueryContext(ctx, s.dialect.rebind(q), args...)
}

func (s *Store) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	return s.db.QueryRowContext(ctx, s.dialect.rebind(q), args...)
}

// scanAll reads rows (of s.query or a transaction's query) to the end,
// one value per row read by scan, in order, and closes them. The first
// error of scan is returned as is; otherwise it returns the values (nil
// when there are none) and rows.Err().
func scanAll[T any](rows *sql.Rows, scan func(row rowScanner) (T, error)) ([]T, error) {
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// tx runs fn in a transaction, committing when it returns nil.
func (s *Store) tx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// txRetry is tx for writes that replicas make to the same rows at the
// same moment (rollups, alert states, statuses while SLOs change hands):
// PostgreSQL may abort one of two such transactions as a deadlock or a
// serialization failure, and running it again is then the documented
// remedy. fn must have no effect outside the transaction.
func (s *Store) txRetry(ctx context.Context, fn func(tx *sql.Tx) error) error {
	var err error
	for attempt := range 5 {
		if err = s.tx(ctx, fn); err == nil || !retryable(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(attempt+1) * time.Duration(10+rand.IntN(40)) * time.Millisecond):
		}
	}
	return err
}

// retryable reports whether err is PostgreSQL's deadlock_detected (40P01)
// or serialization_failure (40001).
func retryable(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "SQLSTATE 40P01") || strings.Contains(msg, "SQLSTATE 40001")
}

func (s *Store) txExec(ctx context.Context, tx *sql.Tx, q string, args ...any) (sql.Result, error) {
	return tx.ExecContext(ctx, s.dialect.rebind(q), args...)
}

// sortedLast returns a sorted copy of xs with one element per key, the
// last given: a write of many rows in one statement must name each row
// once, and one after the other the last write would win. The order
// also makes concurrent writers lock rows in the same order.
func sortedLast[T any](xs []T, cmp func(a, b T) int) []T {
	xs = slices.Clone(xs)
	slices.SortStableFunc(xs, cmp)
	out := xs[:0]
	for i, x := range xs {
		if i+1 < len(xs) && cmp(x, xs[i+1]) == 0 {
			continue
		}
		out = append(out, x)
	}
	return out
}

// insertRows inserts n rows in statements of at most batch rows each, so a
// thousand rows cost a few round trips instead of a thousand: head is
// "INSERT INTO t (a, b) VALUES ", tail what follows the values (an ON
// CONFLICT clause), and row(i) the width values of row i. batch times
// width must stay under SQLite's 32766 parameters.
func (s *Store) insertRows(ctx context.Context, tx *sql.Tx, head, tail string, n, width, batch int, row func(i int) []any) error {
	one := "(" + inPlaceholders(width) + ")"
	for i := 0; i < n; i += batch {
		end := min(i+batch, n)
		var q strings.Builder
		q.WriteString(head)
		args := make([]any, 0, width*(end-i))
		for j := i; j < end; j++ {
			if j > i {
				q.WriteString(", ")
			}
			q.WriteString(one)
			args = append(args, row(j)...)
		}
		q.WriteString(tail)
		if _, err := s.txExec(ctx, tx, q.String(), args...); err != nil {
			return err
		}
	}
	return nil
}

// Check verifies the database is readable and consistent: SQLite's
// integrity check, or a round trip to PostgreSQL.
func (s *Store) Check(ctx context.Context) error {
	if s.dialect.name != "sqlite" {
		return s.db.PingContext(ctx)
	}
	rows, err := s.db.QueryContext(ctx, "PRAGMA quick_check")
	if err != nil {
		return fmt.Errorf("integrity check: %w", err)
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var msg string
		if err := rows.Scan(&msg); err != nil {
			return fmt.Errorf("integrity check: %w", err)
		}
		if msg != "ok" {
			problems = append(problems, msg)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("integrity check: %w", err)
	}
	if len(problems) > 0 {
		return fmt.Errorf("integrity check: %s", strings.Join(problems, "; "))
	}
	return nil
}

func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMs(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}
