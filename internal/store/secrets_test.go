package store

import (
	"bytes"
	"context"
	"testing"
)

func TestSecretSharedAndStable(t *testing.T) {
	eachStorePair(t, func(t *testing.T, s, other *Store) {
		ctx := context.Background()
		a, err := s.Secret(ctx, "session", 32)
		if err != nil {
			t.Fatal(err)
		}
		if len(a) != 32 || bytes.Equal(a, make([]byte, 32)) {
			t.Fatalf("secret = %x, want 32 random bytes", a)
		}
		b, err := other.Secret(ctx, "session", 32)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Fatalf("second process got %x, first %x: replicas would reject each other's sessions", b, a)
		}
		c, err := s.Secret(ctx, "another", 32)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(a, c) {
			t.Fatal("two secrets have the same bytes")
		}
		if _, err := s.Secret(ctx, "session", 16); err == nil {
			t.Fatal("asking for another size of an existing secret succeeded")
		}
	})
}
