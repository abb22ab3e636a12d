package store

import (
	"context"
	"testing"
	"time"
)

// TestRevokedSessionsShared: a session revoked through one process is
// revoked for every process on the same database, and revocations past
// their session's expiry are pruned.
func TestRevokedSessionsShared(t *testing.T) {
	eachStorePair(t, func(t *testing.T, s, other *Store) {
		ctx := context.Background()
		for _, st := range []*Store{s, other} {
			if revoked, err := st.SessionRevoked(ctx, "abc"); err != nil || revoked {
				t.Fatalf("before revocation: %v %v", revoked, err)
			}
		}
		if err := s.RevokeSession(ctx, "abc", time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		// Revoking twice is fine (sign-out in two tabs).
		if err := s.RevokeSession(ctx, "abc", time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		for _, st := range []*Store{s, other} {
			if revoked, err := st.SessionRevoked(ctx, "abc"); err != nil || !revoked {
				t.Fatalf("after revocation: %v %v", revoked, err)
			}
		}
		if revoked, err := other.SessionRevoked(ctx, "another"); err != nil || revoked {
			t.Fatalf("another session: %v %v", revoked, err)
		}
		// An expired one is dropped at the next revocation.
		if err := s.RevokeSession(ctx, "old", time.Unix(0, 0)); err != nil {
			t.Fatal(err)
		}
		if err := other.RevokeSession(ctx, "new", time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if revoked, err := s.SessionRevoked(ctx, "old"); err != nil || revoked {
			t.Fatalf("an expired revocation is kept: %v %v", revoked, err)
		}
	})
}
