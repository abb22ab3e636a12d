package store

import (
	"context"
	"testing"
	"time"
)

// Published statuses: the version moves with every write, and statuses of
// SLOs no longer declared are deleted.
func TestStatusesVersionAndDelete(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
		version := func() string {
			t.Helper()
			v, err := s.StatusesVersion(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
		empty := version()
		rows := []StatusRow{
			{Key: "a", SLO: "a", Replica: "r1", EvaluatedAt: t0, Status: []byte(`{"key":"a"}`)},
			{Key: `b{tenant="x"}`, SLO: "b", Replica: "r2", EvaluatedAt: t0, Status: []byte(`{"key":"b1"}`)},
			{Key: `b{tenant="y"}`, SLO: "b", Replica: "r2", EvaluatedAt: t0, Status: []byte(`{"key":"b2"}`)},
		}
		if err := s.SaveStatuses(ctx, rows); err != nil {
			t.Fatal(err)
		}
		v1 := version()
		if v1 == empty || version() != v1 {
			t.Fatalf("version after the first publish: %q (empty %q), then %q", v1, empty, version())
		}
		// A later evaluation of one status moves the version.
		rows[0].EvaluatedAt = t0.Add(15 * time.Second)
		if err := s.SaveStatuses(ctx, rows[:1]); err != nil {
			t.Fatal(err)
		}
		v2 := version()
		if v2 == v1 {
			t.Errorf("version did not move with a new evaluation: %q", v2)
		}
		// b is no longer declared.
		if err := s.DeleteStatuses(ctx, []string{"a", "c"}); err != nil {
			t.Fatal(err)
		}
		got, err := s.Statuses(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].Key != "a" {
			t.Errorf("after deleting b: %+v", got)
		}
		if version() == v2 {
			t.Errorf("version did not move with a deletion")
		}
	})
}
