package store

import (
	"context"
	"database/sql"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// migrations are the schema, one version per entry, applied in order and
// recorded in schema_migrations. Never edit a released migration: add one.
// {{id}} and {{blob}} are replaced per dialect. Each concern registers its
// own versions from its file (see register), so the schema of alerts,
// decisions and playbooks sits next to the code that uses it.
var migrations = map[int]string{
	// 1: engine state.
	1: `CREATE TABLE rollups (
		key          TEXT PRIMARY KEY,
		slo          TEXT NOT NULL,
		plan_hash    TEXT NOT NULL,
		data         {{blob}} NOT NULL,
		last_sampled BIGINT NOT NULL,
		updated_at   BIGINT NOT NULL
	);
	CREATE TABLE alert_states (
		key          TEXT NOT NULL,
		severity     TEXT NOT NULL,
		state        TEXT NOT NULL,
		active_since BIGINT NOT NULL,
		fired_at     BIGINT NOT NULL,
		resolved_at  BIGINT NOT NULL,
		updated_at   BIGINT NOT NULL,
		PRIMARY KEY (key, severity)
	);
	CREATE TABLE transitions (
		id         {{id}},
		at         BIGINT NOT NULL,
		key        TEXT NOT NULL,
		slo        TEXT NOT NULL,
		service    TEXT NOT NULL,
		severity   TEXT NOT NULL,
		alert      TEXT NOT NULL,
		from_state TEXT NOT NULL,
		to_state   TEXT NOT NULL,
		condition  TEXT NOT NULL,
		status     TEXT NOT NULL
	);
	CREATE INDEX transitions_slo_at ON transitions (slo, at);`,
}

// register adds migration version v. Versions are assigned per concern:
// 1 engine, 2 alerting and incidents, 3 decisions, gates and deploys,
// 4 playbooks, 5 replicas; later ones take the next free number.
func register(v int, sql string) {
	if _, dup := migrations[v]; dup {
		panic(fmt.Sprintf("store: migration %d registered twice", v))
	}
	migrations[v] = sql
}

func (s *Store) migrate(ctx context.Context) error {
	if s.dialect.name == "postgres" {
		// Replicas starting together take turns: one migrates, the others
		// find the schema done.
		conn, err := s.db.Conn(ctx)
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		defer conn.Close()
		if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock(7261700)`); err != nil {
			return fmt.Errorf("migrate: lock: %w", err)
		}
		defer conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(7261700)`)
	}
	if _, err := s.exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	applied := map[int]bool{}
	rows, err := s.query(ctx, `SELECT version FROM schema_migrations`)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return fmt.Errorf("migrate: %w", err)
		}
		applied[v] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for v := range applied {
		if _, known := migrations[v]; !known {
			return fmt.Errorf("migrate: the database has schema version %d, which this qsp does not know: upgrade qsp", v)
		}
	}
	// Versions are applied in order; each is recorded on its own, so a
	// version added between two others (concerns register their own)
	// is still applied once.
	for _, v := range slices.Sorted(maps.Keys(migrations)) {
		if applied[v] {
			continue
		}
		stmts := s.dialectSQL(migrations[v])
		err := s.tx(ctx, func(tx *sql.Tx) error {
			for _, stmt := range strings.Split(stmts, ";") {
				if strings.TrimSpace(stmt) == "" {
					continue
				}
				if _, err := tx.ExecContext(ctx, stmt); err != nil {
					return err
				}
			}
			_, err := s.txExec(ctx, tx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`, v, s.now().UnixMilli())
			return err
		})
		if err != nil {
			return fmt.Errorf("migrate to version %d: %w", v, err)
		}
		s.logger.Info("schema migrated", "version", v)
	}
	return nil
}

func (s *Store) dialectSQL(q string) string {
	id, blob := "INTEGER PRIMARY KEY AUTOINCREMENT", "BLOB"
	if s.dialect.name == "postgres" {
		id, blob = "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "BYTEA"
	}
	return strings.NewReplacer("{{id}}", id, "{{blob}}", blob).Replace(q)
}
