package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
)

func init() {
	register(8, `CREATE TABLE secrets (
		name  TEXT PRIMARY KEY,
		value TEXT NOT NULL
	)`)
}

// Secret returns the random secret called name, creating it with size
// bytes on first use. Every process on the same database gets the same
// bytes, so a UI session signed by one replica is valid on the others and
// survives a restart; the database is already trusted with incidents and
// decisions, and the secret is never logged or served.
func (s *Store) Secret(ctx context.Context, name string, size int) ([]byte, error) {
	b := make([]byte, size)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("secret %q: %w", name, err)
	}
	// The first writer wins; everyone reads what it wrote.
	if _, err := s.exec(ctx, `INSERT INTO secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING`, name, hex.EncodeToString(b)); err != nil {
		return nil, fmt.Errorf("secret %q: %w", name, err)
	}
	var v string
	if err := s.queryRow(ctx, `SELECT value FROM secrets WHERE name = ?`, name).Scan(&v); err != nil {
		return nil, fmt.Errorf("secret %q: %w", name, err)
	}
	out, err := hex.DecodeString(v)
	if err != nil || len(out) != size {
		return nil, fmt.Errorf("secret %q: stored value is not %d hex-encoded bytes", name, size)
	}
	return out, nil
}
