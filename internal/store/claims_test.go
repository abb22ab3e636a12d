package store

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestClaimNotificationsOnce has three replicas claim and deliver the same
// outbox concurrently: every notification is delivered by exactly one of
// them; a claim that lapses (its replica died) is claimed again; a
// replica's own live claims come back to it (its retries).
func TestClaimNotificationsOnce(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
		s.now = func() time.Time { return now }
		for i := range 60 {
			if _, err := s.exec(ctx, `INSERT INTO notifications (target, key, severity, fingerprint, status, dedupe_key, payload, state, attempts, last_error, created_at, next_attempt_at, expires_at, delivered_at)
				VALUES (?, ?, 'page', 'fp', 'firing', ?, '{}', ?, 0, '', ?, 0, ?, 0)`, "am", fmt.Sprintf("k%d", i), fmt.Sprintf("d%d", i), NotificationPending, ms(now), ms(now.Add(time.Hour))); err != nil {
				t.Fatal(err)
			}
		}
		var mu sync.Mutex
		claimed := map[int64]string{}
		// r1 claims a batch and dies before delivering it.
		first, err := s.ClaimNotifications(ctx, "am", "r1", time.Minute, 0, 7)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range first {
			claimed[n.ID] = "r1"
		}
		var wg sync.WaitGroup
		for _, r := range []string{"r2", "r3"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					ns, err := s.ClaimNotifications(ctx, "am", r, time.Minute, 0, 7)
					if err != nil {
						t.Error(err)
						return
					}
					if len(ns) == 0 {
						return
					}
					mu.Lock()
					for _, n := range ns {
						if prev, dup := claimed[n.ID]; dup {
							t.Errorf("notification %d claimed by %s and %s", n.ID, prev, r)
						}
						claimed[n.ID] = r
					}
					mu.Unlock()
					ids := make([]int64, len(ns))
					for i, n := range ns {
						ids[i] = n.ID
					}
					if err := s.MarkDelivered(ctx, ids, now); err != nil {
						t.Error(err)
						return
					}
					for i := 1; i < len(ns); i++ {
						if ns[i].ID < ns[i-1].ID {
							t.Errorf("claimed out of order: %d before %d", ns[i-1].ID, ns[i].ID)
						}
					}
				}
			}()
		}
		wg.Wait()
		var r1 []int64
		for id, r := range claimed {
			if r == "r1" {
				r1 = append(r1, id)
			}
		}
		if len(claimed) != 60 || len(r1) != 7 {
			t.Fatalf("claimed %d of 60, %d by r1 (want its one batch of 7)", len(claimed), len(r1))
		}
		// r1's claim holds: nobody else may take its notifications.
		ns, _ := s.ClaimNotifications(ctx, "am", "r2", time.Minute, 0, 100)
		if len(ns) != 0 {
			t.Errorf("r2 claimed %d notifications r1 still holds", len(ns))
		}
		// r1 died: its lease lapses and r2 delivers them; delivered ones
		// are never claimed again.
		now = now.Add(2 * time.Minute)
		ns, err = s.ClaimNotifications(ctx, "am", "r2", time.Minute, 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(ns) != len(r1) {
			t.Fatalf("after r1's lease lapsed r2 claimed %d, want r1's %d", len(ns), len(r1))
		}
		// r2's own claims come back to it while they last (retries).
		if again, _ := s.ClaimNotifications(ctx, "am", "r2", time.Minute, 0, 100); len(again) != len(r1) {
			t.Errorf("r2 re-claimed %d of its own, want %d", len(again), len(r1))
		}
		if err := s.MarkDelivered(ctx, r1, now); err != nil {
			t.Fatal(err)
		}
		now = now.Add(2 * time.Minute)
		if ns, _ := s.ClaimNotifications(ctx, "am", "r3", time.Minute, 0, 100); len(ns) != 0 {
			t.Errorf("claimed %d delivered notifications", len(ns))
		}
	})
}

// TestClaimLapsesWithHeartbeat: a replica's claim lapses as soon as its
// heartbeat is older than the cluster's TTL, long before a long lease ends;
// a live replica keeps its claim.
func TestClaimLapsesWithHeartbeat(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
		s.now = func() time.Time { return now }
		for i := range 4 {
			if _, err := s.exec(ctx, `INSERT INTO notifications (target, key, severity, fingerprint, status, dedupe_key, payload, state, attempts, last_error, created_at, next_attempt_at, expires_at, delivered_at)
				VALUES (?, ?, 'page', 'fp', 'firing', ?, '{}', ?, 0, '', ?, 0, ?, 0)`, "am", fmt.Sprintf("k%d", i), fmt.Sprintf("d%d", i), NotificationPending, ms(now), ms(now.Add(time.Hour))); err != nil {
				t.Fatal(err)
			}
		}
		const lease, ttl = 2 * time.Minute, 10 * time.Second
		for _, r := range []string{"r1", "r2"} {
			if err := s.Heartbeat(ctx, r, "", now); err != nil {
				t.Fatal(err)
			}
		}
		if ns, err := s.ClaimNotifications(ctx, "am", "r1", lease, ttl, 2); err != nil || len(ns) != 2 {
			t.Fatalf("r1 claimed %d: %v", len(ns), err)
		}
		// r1 is alive: r2 gets only the two r1 does not hold.
		now = now.Add(5 * time.Second)
		s.Heartbeat(ctx, "r2", "", now)
		if ns, _ := s.ClaimNotifications(ctx, "am", "r2", lease, ttl, 10); len(ns) != 2 {
			t.Fatalf("with r1 alive r2 claimed %d, want the 2 unclaimed", len(ns))
		}
		// r1 stops beating: 11s after its last heartbeat its claims lapse,
		// although its lease runs for almost two more minutes.
		now = now.Add(6 * time.Second)
		s.Heartbeat(ctx, "r2", "", now)
		if ns, _ := s.ClaimNotifications(ctx, "am", "r2", lease, ttl, 10); len(ns) != 4 {
			t.Fatalf("after r1 died r2 claimed %d, want all 4 (2 its own, 2 r1's)", len(ns))
		}
		// Without alive, only the lease counts: r3 cannot take r2's.
		if ns, _ := s.ClaimNotifications(ctx, "am", "r3", lease, 0, 10); len(ns) != 0 {
			t.Fatalf("r3 claimed %d of r2's live claims", len(ns))
		}
	})
}
