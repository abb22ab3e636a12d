package store

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Replicas sharing a PostgreSQL store deliver each notification once: a
// replica claims a batch of pending notifications with a lease, and the
// others skip it until the lease lapses (the replica died mid-delivery),
// after which one of them claims it again. Receivers get every
// notification at least once, normally exactly once.
func init() {
	register(6, `ALTER TABLE notifications ADD COLUMN claimed_by TEXT NOT NULL DEFAULT '';
	ALTER TABLE notifications ADD COLUMN claimed_until BIGINT NOT NULL DEFAULT 0`)
	// At most one open incident per service, whichever replica opens it.
	register(7, `CREATE UNIQUE INDEX incidents_one_open ON incidents (service) WHERE state = 'open'`)
	// Then at most one open incident per service and cause (issue 22):
	// a service's unrelated troubles are separate incidents. The version
	// is high so that migrations added meanwhile on other branches keep
	// their numbers.
	register(220, `ALTER TABLE incidents ADD COLUMN cause TEXT NOT NULL DEFAULT '';
	DROP INDEX incidents_one_open;
	CREATE UNIQUE INDEX incidents_one_open_cause ON incidents (service, cause) WHERE state = 'open'`)
}

// isUniqueViolation reports whether err is a unique constraint failure of
// SQLite or PostgreSQL (SQLSTATE 23505).
func isUniqueViolation(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	return strings.Contains(msg, "UNIQUE constraint failed") || strings.Contains(msg, "SQLSTATE 23505") || strings.Contains(msg, "duplicate key value")
}

// ClaimNotifications claims up to limit pending notifications of a target
// for replica until now+lease, oldest first, and returns them. Rows another
// replica holds a live claim on are skipped; on PostgreSQL concurrent
// claimers never block each other (FOR UPDATE SKIP LOCKED). With alive set,
// a claim also lapses as soon as its holder has not sent a heartbeat
// (Heartbeat) within alive: a dead replica's notifications go out when the
// cluster notices the death, not when the lease ends.
func (s *Store) ClaimNotifications(ctx context.Context, target, replica string, lease, alive time.Duration, limit int) ([]Notification, error) {
	if limit <= 0 {
		limit = 100
	}
	now := s.now()
	lock := ""
	if s.dialect.name == "postgres" {
		lock = " FOR UPDATE SKIP LOCKED"
	}
	dead, args := "", []any{replica, ms(now.Add(lease)), target, NotificationPending, ms(now), replica}
	if alive > 0 {
		dead = ` OR claimed_by NOT IN (SELECT id FROM replicas WHERE heartbeat_at >= ?)`
		args = append(args, ms(now.Add(-alive)))
	}
	q := `UPDATE notifications SET claimed_by = ?, claimed_until = ?
		WHERE id IN (SELECT id FROM notifications
			WHERE target = ? AND state = ? AND (claimed_until < ? OR claimed_by = ?` + dead + `)
			ORDER BY id LIMIT ?` + lock + `)
		RETURNING ` + notificationColumns
	rows, err := s.query(ctx, q, append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("claim notifications: %w", err)
	}
	ns, err := scanNotifications(rows, true)
	if err != nil {
		return nil, err
	}
	// RETURNING gives no order; delivery must be oldest first.
	sortNotifications(ns)
	return ns, nil
}

func sortNotifications(ns []Notification) {
	for i := 1; i < len(ns); i++ {
		for j := i; j > 0 && ns[j].ID < ns[j-1].ID; j-- {
			ns[j], ns[j-1] = ns[j-1], ns[j]
		}
	}
}
