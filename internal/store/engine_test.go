package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

func TestRebind(t *testing.T) {
	for in, want := range map[string]string{
		`SELECT a FROM t WHERE b = ? AND c = ?`: `SELECT a FROM t WHERE b = $1 AND c = $2`,
		`SELECT '?' FROM t WHERE b = ?`:         `SELECT '?' FROM t WHERE b = $1`,
		`INSERT INTO t (a, b) VALUES (?, ?)`:    `INSERT INTO t (a, b) VALUES ($1, $2)`,
		`SELECT 'it''s ?' FROM t WHERE x = ?`:   `SELECT 'it''s ?' FROM t WHERE x = $1`,
		`SELECT 1`:                              `SELECT 1`,
	} {
		if got := rebindDollar(in); got != want {
			t.Errorf("rebind(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMigrationsAreIdempotent(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		if err := s.migrate(ctx); err != nil {
			t.Fatalf("second migration run: %v", err)
		}
		var n int
		if err := s.queryRow(ctx, `SELECT COUNT(*) FROM schema_migrations`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != len(migrations) {
			t.Errorf("schema_migrations has %d rows, want %d", n, len(migrations))
		}
		if err := s.Check(ctx); err != nil {
			t.Errorf("check: %v", err)
		}
	})
}

func TestRollupsAndAlertStates(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
		rs := []Rollup{
			{Key: "a", SLO: "a", PlanHash: "h1", Data: []byte{1, 2, 3}, LastSampled: 42, UpdatedAt: now},
			{Key: `b{tenant="x"}`, SLO: "b", PlanHash: "h2", Data: bytes.Repeat([]byte{0, 255}, 10000), LastSampled: 7, UpdatedAt: now},
		}
		if err := s.SaveRollups(ctx, rs); err != nil {
			t.Fatal(err)
		}
		rs[0].Data = []byte{9}
		if err := s.SaveRollups(ctx, rs[:1]); err != nil {
			t.Fatal(err)
		}
		got, err := s.LoadRollups(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 {
			t.Fatalf("got %d rollups, want 2", len(got))
		}
		byKey := map[string]Rollup{}
		for _, r := range got {
			byKey[r.Key] = r
		}
		if !bytes.Equal(byKey["a"].Data, []byte{9}) || byKey["a"].LastSampled != 42 || !byKey["a"].UpdatedAt.Equal(now) {
			t.Errorf("rollup a: %+v", byKey["a"])
		}
		if !bytes.Equal(byKey[`b{tenant="x"}`].Data, rs[1].Data) {
			t.Error("binary data changed on the way through")
		}
		if err := s.DeleteRollups(ctx, []string{"a"}); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.LoadRollups(ctx); len(got) != 1 {
			t.Errorf("after delete: %d rollups", len(got))
		}

		tr := []Transition{{At: now, Key: "a", SLO: "a", Service: "shop", Severity: "page", Alert: "SLOErrorBudgetBurn", From: "inactive", To: "firing", Condition: "1h/5m", Status: json.RawMessage(`{"state":"firing"}`)}}
		st := []AlertState{{Key: "a", Severity: "page", State: "firing", ActiveSince: now, FiredAt: now}}
		if err := s.RecordTransitions(ctx, tr, st); err != nil {
			t.Fatal(err)
		}
		st[0].State, st[0].ResolvedAt = "resolved", now.Add(time.Hour)
		if err := s.RecordTransitions(ctx, nil, st); err != nil {
			t.Fatal(err)
		}
		states, err := s.LoadAlertStates(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(states) != 1 || states[0].State != "resolved" || !states[0].FiredAt.Equal(now) || !states[0].ResolvedAt.Equal(now.Add(time.Hour)) {
			t.Errorf("alert states: %+v", states)
		}
		ts, err := s.Transitions(ctx, TransitionFilter{SLO: "a"})
		if err != nil {
			t.Fatal(err)
		}
		if len(ts) != 1 || ts[0].Condition != "1h/5m" || string(ts[0].Status) != `{"state":"firing"}` || !ts[0].At.Equal(now) {
			t.Errorf("transitions: %+v", ts)
		}
		if ts, _ := s.Transitions(ctx, TransitionFilter{From: now.Add(time.Minute)}); len(ts) != 0 {
			t.Errorf("time filter: got %d", len(ts))
		}
	})
}

// Many rows are written a batch to a statement; a key given twice is
// written once, with the last value, as row-by-row writes left it.
func TestBatchedWritesKeepTheLast(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		var rs []Rollup
		for i := range 120 {
			rs = append(rs, Rollup{Key: fmt.Sprintf("slo-%03d", i), SLO: fmt.Sprintf("slo-%03d", i), PlanHash: "h", Data: []byte{byte(i)}})
		}
		rs = append(rs, Rollup{Key: "slo-007", SLO: "slo-007", PlanHash: "h", Data: []byte("last")})
		if err := s.SaveRollups(ctx, rs); err != nil {
			t.Fatal(err)
		}
		got, err := s.LoadRollups(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 120 {
			t.Fatalf("%d rollups, want 120", len(got))
		}
		if r, err := s.LoadRollup(ctx, "slo-007"); err != nil || string(r.Data) != "last" {
			t.Errorf("slo-007: %q, %v; want the last written", r.Data, err)
		}
		states := []AlertState{{Key: "a", Severity: "page", State: "pending"}, {Key: "a", Severity: "page", State: "firing"}, {Key: "a", Severity: "ticket", State: "pending"}}
		if err := s.RecordTransitions(ctx, nil, states); err != nil {
			t.Fatal(err)
		}
		as, err := s.LoadAlertStates(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(as) != 2 || as[0].State != "firing" && as[1].State != "firing" {
			t.Errorf("alert states: %+v; want page firing and ticket pending", as)
		}
	})
}
