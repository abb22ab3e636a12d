package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/qsp-dev/qsp/internal/externaltest"
)

// eachStorePair runs fn against two stores on one database, as two
// replicas (or a restart) see it: SQLite opened twice on one file, and
// PostgreSQL connected twice to one database.
func eachStorePair(t *testing.T, fn func(t *testing.T, s, other *Store)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "qsp.db")
		open := func() *Store {
			s, err := Open(context.Background(), Options{Path: path})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}
		s := open()
		fn(t, s, open())
	})
	t.Run("postgres", func(t *testing.T) {
		if pg == nil {
			if pgMissing {
				externaltest.Missing(t, "PostgreSQL: %v", pgErr)
			}
			t.Fatalf("PostgreSQL did not start: %v", pgErr)
		}
		dsn := pg.CreateDB(t, fmt.Sprintf("qsp_test_%d", dbSeq.Add(1)))
		open := func() *Store {
			s, err := Open(context.Background(), Options{Driver: "postgres", DSN: dsn})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}
		s := open()
		fn(t, s, open())
	})
}

var pbT0 = time.Date(2026, 3, 6, 10, 0, 0, 0, time.UTC)

func pbRun(id, key, state string, created time.Time) PlaybookRun {
	return PlaybookRun{
		ID: id, IdempotencyKey: key, Playbook: "search-scale-up", Service: "search", Actuator: "search/scale",
		State: state, CreatedAt: created, UpdatedAt: created, Data: json.RawMessage(`{"id":"` + id + `"}`),
	}
}

func TestPlaybookRunInsertIsIdempotent(t *testing.T) {
	eachStorePair(t, func(t *testing.T, s, other *Store) {
		ctx := context.Background()
		ok, err := s.InsertPlaybookRun(ctx, pbRun("r1", "k1", PlaybookRunNew, pbT0))
		if err != nil || !ok {
			t.Fatalf("first insert: got %v, %v; want true, nil", ok, err)
		}
		ok, err = s.InsertPlaybookRun(ctx, pbRun("r2", "k1", PlaybookRunNew, pbT0))
		if err != nil || ok {
			t.Fatalf("insert with the same idempotency key: got %v, %v; want false, nil", ok, err)
		}
		if _, err := s.PlaybookRun(ctx, "r2"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("run r2: got %v, want ErrNotFound", err)
		}
		got, err := s.PlaybookRun(ctx, "r1")
		if err != nil {
			t.Fatal(err)
		}
		if got.Version != 1 || got.State != PlaybookRunNew || !got.CreatedAt.Equal(pbT0) || string(got.Data) != `{"id":"r1"}` {
			t.Fatalf("stored run: got %+v", got)
		}
	})
}

func TestPlaybookRunUpdateIsVersioned(t *testing.T) {
	eachStorePair(t, func(t *testing.T, s, other *Store) {
		ctx := context.Background()
		if _, err := s.InsertPlaybookRun(ctx, pbRun("r1", "k1", PlaybookRunNew, pbT0)); err != nil {
			t.Fatal(err)
		}
		r, _ := s.PlaybookRun(ctx, "r1")
		r.State = PlaybookRunPending
		r.ExpiresAt = pbT0.Add(time.Hour)
		v, err := s.UpdatePlaybookRun(ctx, r)
		if err != nil || v != 2 {
			t.Fatalf("update: got %d, %v; want 2, nil", v, err)
		}
		// A second writer that read version 1 loses.
		r.State = PlaybookRunQueued
		if _, err := s.UpdatePlaybookRun(ctx, r); !errors.Is(err, ErrConflict) {
			t.Fatalf("stale update: got %v, want ErrConflict", err)
		}
		if _, err := s.UpdatePlaybookRun(ctx, PlaybookRun{ID: "nope", Version: 1}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("update of a missing run: got %v, want ErrNotFound", err)
		}
		got, _ := s.PlaybookRun(ctx, "r1")
		if got.State != PlaybookRunPending || !got.ExpiresAt.Equal(pbT0.Add(time.Hour)) {
			t.Fatalf("stored run after the lost update: got %+v", got)
		}
	})
}

func TestPlaybookRunDueAndClaim(t *testing.T) {
	eachStorePair(t, func(t *testing.T, s, other *Store) {
		ctx := context.Background()
		now := pbT0.Add(time.Hour)
		cases := []struct {
			id    string
			state string
			set   func(r *PlaybookRun)
			due   bool
		}{
			{"queued-due", PlaybookRunQueued, func(r *PlaybookRun) { r.NextAttemptAt = now }, true},
			{"queued-later", PlaybookRunQueued, func(r *PlaybookRun) { r.NextAttemptAt = now.Add(time.Second) }, false},
			{"queued-leased", PlaybookRunQueued, func(r *PlaybookRun) { r.Owner, r.LeaseUntil = "a", now.Add(time.Minute) }, false},
			{"retrying-due", PlaybookRunRetrying, func(r *PlaybookRun) { r.NextAttemptAt = now.Add(-time.Minute) }, true},
			{"retrying-later", PlaybookRunRetrying, func(r *PlaybookRun) { r.NextAttemptAt = now.Add(time.Minute) }, false},
			{"pending-expired", PlaybookRunPending, func(r *PlaybookRun) { r.ExpiresAt = now }, true},
			{"pending-open", PlaybookRunPending, func(r *PlaybookRun) { r.ExpiresAt = now.Add(time.Minute) }, false},
			{"running-lease-over", PlaybookRunRunning, func(r *PlaybookRun) { r.Owner, r.LeaseUntil = "dead", now.Add(-time.Second) }, true},
			{"running-leased", PlaybookRunRunning, func(r *PlaybookRun) { r.Owner, r.LeaseUntil = "alive", now.Add(time.Second) }, false},
			{"new-lease-over", PlaybookRunNew, func(r *PlaybookRun) { r.Owner, r.LeaseUntil = "dead", now.Add(-time.Second) }, true},
			{"new-leased", PlaybookRunNew, func(r *PlaybookRun) { r.Owner, r.LeaseUntil = "alive", now.Add(time.Second) }, false},
			{"succeeded", "succeeded", func(r *PlaybookRun) {}, false},
		}
		want := map[string]bool{}
		for i, c := range cases {
			r := pbRun(c.id, c.id, c.state, pbT0.Add(time.Duration(i)*time.Second))
			c.set(&r)
			if _, err := s.InsertPlaybookRun(ctx, r); err != nil {
				t.Fatal(err)
			}
			want[c.id] = c.due
		}
		due, err := s.DuePlaybookRuns(ctx, now, 100)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, id := range due {
			got[id] = true
		}
		for _, c := range cases {
			if got[c.id] != c.due {
				t.Errorf("%s: due got %v, want %v", c.id, got[c.id], c.due)
			}
			_, err := s.ClaimPlaybookRun(ctx, c.id, "me", now, now.Add(time.Minute))
			if c.due != (err == nil) {
				t.Errorf("%s: claim got %v, want due=%v", c.id, err, c.due)
			}
			if err != nil && !errors.Is(err, ErrConflict) {
				t.Errorf("%s: claim error %v is not ErrConflict", c.id, err)
			}
		}
		// Claimed runs are leased: nothing is due twice.
		due, err = s.DuePlaybookRuns(ctx, now, 100)
		if err != nil || len(due) != 0 {
			t.Fatalf("due after the claims: got %v, %v; want none", due, err)
		}
		r, _ := s.PlaybookRun(ctx, "pending-expired")
		if r.State != PlaybookRunPending || r.Owner != "me" {
			t.Fatalf("a claim must keep the state and set the owner: got %+v", r)
		}
	})
}

// TestPlaybookRunClaimIsExclusive claims one due run from many goroutines
// with their own connections at once: exactly one wins.
func TestPlaybookRunClaimIsExclusive(t *testing.T) {
	eachStorePair(t, func(t *testing.T, s, other *Store) {
		ctx := context.Background()
		r := pbRun("r1", "k1", PlaybookRunQueued, pbT0)
		if _, err := s.InsertPlaybookRun(ctx, r); err != nil {
			t.Fatal(err)
		}
		// The second store stands in for a second replica.
		var wg sync.WaitGroup
		var mu sync.Mutex
		winners := 0
		for i := range 8 {
			st := s
			if i%2 == 1 {
				st = other
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := st.ClaimPlaybookRun(ctx, "r1", fmt.Sprintf("runner-%d", i), pbT0, pbT0.Add(time.Minute))
				switch {
				case err == nil:
					mu.Lock()
					winners++
					mu.Unlock()
				case !errors.Is(err, ErrConflict):
					t.Errorf("claim: %v", err)
				}
			}()
		}
		wg.Wait()
		if winners != 1 {
			t.Fatalf("claims won: got %d, want 1", winners)
		}
	})
}

// TestActOnActuatorIsAtomic lets many runs on one actuator try to act at
// once under a guard that allows one act: exactly one acts.
func TestActOnActuatorIsAtomic(t *testing.T) {
	eachStorePair(t, func(t *testing.T, s, other *Store) {
		ctx := context.Background()
		const n = 8
		for i := range n {
			if _, err := s.InsertPlaybookRun(ctx, pbRun(fmt.Sprintf("r%d", i), fmt.Sprintf("k%d", i), PlaybookRunRunning, pbT0)); err != nil {
				t.Fatal(err)
			}
		}
		errCooldown := errors.New("cooldown")
		var wg sync.WaitGroup
		var mu sync.Mutex
		acted, stopped := 0, 0
		for i := range n {
			st := s
			if i%2 == 1 {
				st = other
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, err := st.PlaybookRun(ctx, fmt.Sprintf("r%d", i))
				if err != nil {
					t.Error(err)
					return
				}
				r.State = "succeeded"
				_, err = st.ActOnActuator(ctx, r, pbT0.Add(time.Second), pbT0.Add(-time.Hour), func(acts []PlaybookAct) error {
					if len(acts) > 0 {
						return fmt.Errorf("%w: %s acted at %s", errCooldown, acts[0].RunID, acts[0].At)
					}
					return nil
				})
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					acted++
				case errors.Is(err, errCooldown):
					stopped++
				default:
					t.Errorf("act: %v", err)
				}
			}()
		}
		wg.Wait()
		if acted != 1 || stopped != n-1 {
			t.Fatalf("acted %d, stopped %d; want 1 and %d", acted, stopped, n-1)
		}
		acts, err := s.PlaybookActs(ctx, "search/scale", pbT0.Add(-time.Hour))
		if err != nil || len(acts) != 1 || !acts[0].At.Equal(pbT0.Add(time.Second)) {
			t.Fatalf("acts: got %+v, %v; want one at %s", acts, err, pbT0.Add(time.Second))
		}
		r, _ := s.PlaybookRun(ctx, acts[0].RunID)
		if r.State != "succeeded" || r.Version != 2 || !r.ActedAt.Equal(pbT0.Add(time.Second)) {
			t.Fatalf("the run that acted: got %+v", r)
		}
		// Runs that acted before since are not counted.
		acts, _ = s.PlaybookActs(ctx, "search/scale", pbT0.Add(2*time.Second))
		if len(acts) != 0 {
			t.Fatalf("acts after the act: got %+v, want none", acts)
		}
	})
}

func TestPlaybookRunsListAndOpen(t *testing.T) {
	eachStorePair(t, func(t *testing.T, s, other *Store) {
		ctx := context.Background()
		states := []string{"succeeded", PlaybookRunPending, "suppressed", PlaybookRunQueued, "failed"}
		for i, st := range states {
			r := pbRun(fmt.Sprintf("r%d", i), fmt.Sprintf("k%d", i), st, pbT0.Add(time.Duration(i)*time.Minute))
			if i == 4 {
				r.Playbook, r.Service, r.Actuator = "checkout-rollback", "checkout", "checkout/rollback"
			}
			if _, err := s.InsertPlaybookRun(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		cases := []struct {
			name  string
			f     PlaybookRunFilter
			want  []string
			total int
		}{
			{"all newest first", PlaybookRunFilter{}, []string{"r4", "r3", "r2", "r1", "r0"}, 5},
			{"by playbook", PlaybookRunFilter{Playbook: "search-scale-up"}, []string{"r3", "r2", "r1", "r0"}, 4},
			{"by service and state", PlaybookRunFilter{Service: "search", State: "suppressed"}, []string{"r2"}, 1},
			{"page", PlaybookRunFilter{Limit: 2, Offset: 1}, []string{"r3", "r2"}, 5},
			{"time range", PlaybookRunFilter{From: pbT0.Add(time.Minute), To: pbT0.Add(3 * time.Minute)}, []string{"r2", "r1"}, 2},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				runs, total, err := s.PlaybookRuns(ctx, c.f)
				if err != nil {
					t.Fatal(err)
				}
				var ids []string
				for _, r := range runs {
					ids = append(ids, r.ID)
				}
				if fmt.Sprint(ids) != fmt.Sprint(c.want) || total != c.total {
					t.Fatalf("got %v (total %d), want %v (total %d)", ids, total, c.want, c.total)
				}
			})
		}
		open, err := s.OpenPlaybookRuns(ctx, "search/scale", "r3")
		if err != nil || len(open) != 1 || open[0].ID != "r1" {
			t.Fatalf("open runs except r3: got %+v, %v; want r1", open, err)
		}
		last, err := s.LastPlaybookRuns(ctx)
		if err != nil || len(last) != 2 || last["search-scale-up"].ID != "r3" || last["checkout-rollback"].ID != "r4" {
			t.Fatalf("last runs: got %+v, %v", last, err)
		}
	})
}

func TestPlaybookArmsAndSettings(t *testing.T) {
	eachStorePair(t, func(t *testing.T, s, other *Store) {
		ctx := context.Background()
		arms := []PlaybookArm{
			{Playbook: "p", Key: "slo-a", Armed: false, ChangedAt: pbT0, UpdatedAt: pbT0},
			{Playbook: "p", Key: "slo-b", Armed: true, AboveSince: pbT0.Add(time.Minute), HoldUntil: pbT0.Add(time.Hour), UpdatedAt: pbT0},
		}
		if err := s.SavePlaybookArms(ctx, arms); err != nil {
			t.Fatal(err)
		}
		arms[0].Armed, arms[0].ChangedAt = true, pbT0.Add(time.Hour)
		if err := s.SavePlaybookArms(ctx, arms[:1]); err != nil {
			t.Fatal(err)
		}
		if _, err := s.PlaybookSetting(ctx, "kill_switch"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unset setting: got %v, want ErrNotFound", err)
		}
		set := PlaybookSetting{Name: "kill_switch", Value: "on", UpdatedBy: "alice", Note: "incident 42", UpdatedAt: pbT0}
		if err := s.SetPlaybookSetting(ctx, set); err != nil {
			t.Fatal(err)
		}
		// Both are seen by another connection (a restart, a replica).
		s2 := other
		got, err := s2.PlaybookArms(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || !got[0].Armed || !got[0].ChangedAt.Equal(pbT0.Add(time.Hour)) || !got[1].Armed || !got[1].AboveSince.Equal(pbT0.Add(time.Minute)) || !got[1].HoldUntil.Equal(pbT0.Add(time.Hour)) {
			t.Fatalf("arms: got %+v", got)
		}
		gs, err := s2.PlaybookSetting(ctx, "kill_switch")
		if err != nil || gs != set {
			t.Fatalf("setting: got %+v, %v; want %+v", gs, err, set)
		}
		if err := s2.DeletePlaybookArms(ctx, "p"); err != nil {
			t.Fatal(err)
		}
		if got, _ := s2.PlaybookArms(ctx); len(got) != 0 {
			t.Fatalf("arms after delete: got %+v", got)
		}
	})
}
