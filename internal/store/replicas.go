package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

func init() {
	register(5, `CREATE TABLE replicas (
		id           TEXT PRIMARY KEY,
		addr         TEXT NOT NULL,
		started_at   BIGINT NOT NULL,
		heartbeat_at BIGINT NOT NULL
	);
	CREATE TABLE slo_statuses (
		key          TEXT PRIMARY KEY,
		slo          TEXT NOT NULL,
		replica      TEXT NOT NULL,
		evaluated_at BIGINT NOT NULL,
		status       TEXT NOT NULL
	);
	CREATE INDEX slo_statuses_slo ON slo_statuses (slo);`)
}

// Replica is one QSP process sharing the database.
type Replica struct {
	ID          string
	Addr        string
	StartedAt   time.Time
	HeartbeatAt time.Time
}

// Heartbeat records that replica id is alive now.
func (s *Store) Heartbeat(ctx context.Context, id, addr string, started time.Time) error {
	_, err := s.exec(ctx, `INSERT INTO replicas (id, addr, started_at, heartbeat_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET addr = excluded.addr, heartbeat_at = excluded.heartbeat_at`,
		id, addr, ms(started), ms(s.now()))
	return err
}

// Replicas returns the replicas whose last heartbeat is within ttl, by id.
func (s *Store) Replicas(ctx context.Context, ttl time.Duration) ([]Replica, error) {
	rows, err := s.query(ctx, `SELECT id, addr, started_at, heartbeat_at FROM replicas WHERE heartbeat_at >= ? ORDER BY id`, ms(s.now().Add(-ttl)))
	if err != nil {
		return nil, err
	}
	return scanAll(rows, func(row rowScanner) (Replica, error) {
		var r Replica
		var started, hb int64
		if err := row.Scan(&r.ID, &r.Addr, &started, &hb); err != nil {
			return Replica{}, err
		}
		r.StartedAt, r.HeartbeatAt = fromMs(started), fromMs(hb)
		return r, nil
	})
}

// LeaveReplica removes a replica that shuts down cleanly, so the others
// take its SLOs over at once instead of after the lease expires.
func (s *Store) LeaveReplica(ctx context.Context, id string) error {
	_, err := s.exec(ctx, `DELETE FROM replicas WHERE id = ?`, id)
	return err
}

// StatusRow is the latest status of one SLO group, as the replica that
// evaluates it published it.
type StatusRow struct {
	Key         string
	SLO         string
	Replica     string
	EvaluatedAt time.Time
	Status      json.RawMessage
}

// SaveStatuses publishes statuses in one transaction, many rows per
// statement: a replica publishes every SLO it evaluates every cycle.
func (s *Store) SaveStatuses(ctx context.Context, rows []StatusRow) error {
	if len(rows) == 0 {
		return nil
	}
	rows = sortedLast(rows, func(a, b StatusRow) int { return strings.Compare(a.Key, b.Key) })
	return s.txRetry(ctx, func(tx *sql.Tx) error {
		return s.insertRows(ctx, tx, `INSERT INTO slo_statuses (key, slo, replica, evaluated_at, status) VALUES `,
			` ON CONFLICT (key) DO UPDATE SET slo = excluded.slo, replica = excluded.replica,
				evaluated_at = excluded.evaluated_at, status = excluded.status
				WHERE slo_statuses.evaluated_at <= excluded.evaluated_at`,
			len(rows), 5, 200, func(i int) []any {
				r := rows[i]
				return []any{r.Key, r.SLO, r.Replica, ms(r.EvaluatedAt), string(r.Status)}
			})
	})
}

// Statuses returns every published status.
func (s *Store) Statuses(ctx context.Context) ([]StatusRow, error) {
	rows, err := s.query(ctx, `SELECT key, slo, replica, evaluated_at, status FROM slo_statuses ORDER BY key`)
	if err != nil {
		return nil, err
	}
	return scanAll(rows, func(row rowScanner) (StatusRow, error) {
		var r StatusRow
		var at int64
		var status string
		if err := row.Scan(&r.Key, &r.SLO, &r.Replica, &at, &status); err != nil {
			return StatusRow{}, err
		}
		r.EvaluatedAt = fromMs(at)
		r.Status = json.RawMessage(status)
		return r, nil
	})
}

// StatusesVersion changes whenever a status is published or deleted:
// readers compare it to skip reading statuses that did not change.
// Publishing only moves evaluated_at forward, so the row count and the sum
// of evaluated_at together change with every write.
func (s *Store) StatusesVersion(ctx context.Context) (string, error) {
	var n, sum int64
	err := s.queryRow(ctx, `SELECT COUNT(*), CAST(COALESCE(SUM(evaluated_at), 0) AS BIGINT) FROM slo_statuses`).Scan(&n, &sum)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%d/%d", n, sum), nil
}

// DeleteStatuses removes the statuses of SLOs not in keepSLOs: SLOs no
// longer declared.
func (s *Store) DeleteStatuses(ctx context.Context, keepSLOs []string) error {
	rows, err := s.query(ctx, `SELECT DISTINCT slo FROM slo_statuses`)
	if err != nil {
		return err
	}
	published, err := scanAll(rows, func(row rowScanner) (string, error) {
		var slo string
		return slo, row.Scan(&slo)
	})
	if err != nil {
		return err
	}
	keep := make(map[string]bool, len(keepSLOs))
	for _, slo := range keepSLOs {
		keep[slo] = true
	}
	var gone []string
	for _, slo := range published {
		if !keep[slo] {
			gone = append(gone, slo)
		}
	}
	if len(gone) == 0 {
		return nil
	}
	return s.txRetry(ctx, func(tx *sql.Tx) error {
		for _, slo := range gone {
			if _, err := s.txExec(ctx, tx, `DELETE FROM slo_statuses WHERE slo = ?`, slo); err != nil {
				return err
			}
		}
		return nil
	})
}

// LoadRollup returns the persisted rollup of one SLO group (its status
// key), or ErrNotFound.
func (s *Store) LoadRollup(ctx context.Context, key string) (Rollup, error) {
	rs, err := s.loadRollups(ctx, `SELECT key, slo, plan_hash, data, last_sampled, updated_at FROM rollups WHERE key = ?`, key)
	if err != nil {
		return Rollup{}, err
	}
	if len(rs) == 0 {
		return Rollup{}, ErrNotFound
	}
	return rs[0], nil
}

// LoadRollupsOf returns the persisted rollups of the SLOs named, with a
// few queries however many there are: a replica that takes over a dead
// one's SLOs reads them in one go.
func (s *Store) LoadRollupsOf(ctx context.Context, slos ...string) ([]Rollup, error) {
	var out []Rollup
	for chunk := range slices.Chunk(slos, 500) {
		args := make([]any, len(chunk))
		for i, name := range chunk {
			args[i] = name
		}
		rs, err := s.loadRollups(ctx, `SELECT key, slo, plan_hash, data, last_sampled, updated_at FROM rollups WHERE slo IN (`+inPlaceholders(len(chunk))+`)`, args...)
		if err != nil {
			return nil, err
		}
		out = append(out, rs...)
	}
	return out, nil
}
