package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

func init() {
	register(9, `CREATE TABLE revoked_sessions (
		id         TEXT PRIMARY KEY,
		expires_at BIGINT NOT NULL
	);
	CREATE INDEX revoked_sessions_expires ON revoked_sessions (expires_at)`)
}

// RevokeSession records that UI session id was ended (sign-out); every
// replica on this database refuses its cookie from now on. Records whose
// session has expired anyway are dropped here.
func (s *Store) RevokeSession(ctx context.Context, id string, expires time.Time) error {
	if _, err := s.exec(ctx, `INSERT INTO revoked_sessions (id, expires_at) VALUES (?, ?) ON CONFLICT (id) DO NOTHING`, id, expires.UnixMilli()); err != nil {
		return fmt.Errorf("revoke session: %w", err)
	}
	if _, err := s.exec(ctx, `DELETE FROM revoked_sessions WHERE expires_at < ?`, s.now().UnixMilli()); err != nil {
		return fmt.Errorf("revoke session: prune: %w", err)
	}
	return nil
}

// SessionRevoked reports whether UI session id was revoked.
func (s *Store) SessionRevoked(ctx context.Context, id string) (bool, error) {
	var one int
	err := s.queryRow(ctx, `SELECT 1 FROM revoked_sessions WHERE id = ?`, id).Scan(&one)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("session revoked: %w", err)
	}
	return true, nil
}
