package store

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"slices"
	"strings"
	"time"
)

// Rollup is the persisted rollup of one SLO group.
type Rollup struct {
	Key         string
	SLO         string
	PlanHash    string
	Data        []byte
	LastSampled int64 // minute
	UpdatedAt   time.Time
}

// SaveRollups writes rollups in one transaction, replacing older ones.
func (s *Store) SaveRollups(ctx context.Context, rs []Rollup) error {
	if len(rs) == 0 {
		return nil
	}
	// One order for every writer: two replicas writing the same rollups
	// while an SLO changes hands lock the rows in the same order.
	rs = sortedLast(rs, func(a, b Rollup) int { return strings.Compare(a.Key, b.Key) })
	return s.txRetry(ctx, func(tx *sql.Tx) error {
		// Rollups are up to tens of kilobytes: 50 to a statement.
		return s.insertRows(ctx, tx, `INSERT INTO rollups (key, slo, plan_hash, data, last_sampled, updated_at) VALUES `,
			` ON CONFLICT (key) DO UPDATE SET slo = excluded.slo, plan_hash = excluded.plan_hash, data = excluded.data,
				last_sampled = excluded.last_sampled, updated_at = excluded.updated_at`,
			len(rs), 6, 50, func(i int) []any {
				r := rs[i]
				return []any{r.Key, r.SLO, r.PlanHash, r.Data, r.LastSampled, ms(r.UpdatedAt)}
			})
	})
}

// LoadRollups returns every persisted rollup.
func (s *Store) LoadRollups(ctx context.Context) ([]Rollup, error) {
	return s.loadRollups(ctx, `SELECT key, slo, plan_hash, data, last_sampled, updated_at FROM rollups`)
}

func (s *Store) loadRollups(ctx context.Context, q string, args ...any) ([]Rollup, error) {
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return scanAll(rows, func(row rowScanner) (Rollup, error) {
		var r Rollup
		var updated int64
		if err := row.Scan(&r.Key, &r.SLO, &r.PlanHash, &r.Data, &r.LastSampled, &updated); err != nil {
			return Rollup{}, err
		}
		r.UpdatedAt = fromMs(updated)
		return r, nil
	})
}

// DeleteRollups removes the rollups of SLOs no longer declared.
func (s *Store) DeleteRollups(ctx context.Context, keys []string) error {
	keys = slices.Sorted(slices.Values(keys))
	return s.txRetry(ctx, func(tx *sql.Tx) error {
		for _, k := range keys {
			if _, err := s.txExec(ctx, tx, `DELETE FROM rollups WHERE key = ?`, k); err != nil {
				return err
			}
		}
		return nil
	})
}

// AlertState is the persisted state of one alert.
type AlertState struct {
	Key         string
	Severity    string
	State       string
	ActiveSince time.Time
	FiredAt     time.Time
	ResolvedAt  time.Time
}

// LoadAlertStates returns every persisted alert state.
func (s *Store) LoadAlertStates(ctx context.Context) ([]AlertState, error) {
	rows, err := s.query(ctx, `SELECT key, severity, state, active_since, fired_at, resolved_at FROM alert_states`)
	if err != nil {
		return nil, err
	}
	return scanAll(rows, func(row rowScanner) (AlertState, error) {
		var a AlertState
		var since, fired, resolved int64
		if err := row.Scan(&a.Key, &a.Severity, &a.State, &since, &fired, &resolved); err != nil {
			return AlertState{}, err
		}
		a.ActiveSince, a.FiredAt, a.ResolvedAt = fromMs(since), fromMs(fired), fromMs(resolved)
		return a, nil
	})
}

// Transition is a persisted alert transition.
type Transition struct {
	ID        int64
	At        time.Time
	Key       string
	SLO       string
	Service   string
	Severity  string
	Alert     string
	From      string
	To        string
	Condition string
	Status    json.RawMessage
}

// RecordTransitions stores transitions and the alert states they lead to
// in one transaction, so a restart resumes exactly where the alerts were
// and never re-alerts.
func (s *Store) RecordTransitions(ctx context.Context, ts []Transition, states []AlertState) error {
	if len(ts) == 0 && len(states) == 0 {
		return nil
	}
	now := s.now()
	states = sortedLast(states, func(a, b AlertState) int {
		return cmp.Or(strings.Compare(a.Key, b.Key), strings.Compare(a.Severity, b.Severity))
	})
	return s.txRetry(ctx, func(tx *sql.Tx) error {
		for _, t := range ts {
			status := t.Status
			if status == nil {
				status = json.RawMessage("null")
			}
			if _, err := s.txExec(ctx, tx, `INSERT INTO transitions (at, key, slo, service, severity, alert, from_state, to_state, condition, status)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				ms(t.At), t.Key, t.SLO, t.Service, t.Severity, t.Alert, t.From, t.To, t.Condition, string(status)); err != nil {
				return err
			}
		}
		return s.insertRows(ctx, tx, `INSERT INTO alert_states (key, severity, state, active_since, fired_at, resolved_at, updated_at) VALUES `,
			` ON CONFLICT (key, severity) DO UPDATE SET state = excluded.state, active_since = excluded.active_since,
				fired_at = excluded.fired_at, resolved_at = excluded.resolved_at, updated_at = excluded.updated_at`,
			len(states), 7, 200, func(i int) []any {
				a := states[i]
				return []any{a.Key, a.Severity, a.State, ms(a.ActiveSince), ms(a.FiredAt), ms(a.ResolvedAt), ms(now)}
			})
	})
}

// TransitionFilter selects transitions.
type TransitionFilter struct {
	SLO      string
	Service  string
	From, To time.Time
	Limit    int
}

// Transitions returns transitions matching f, newest first.
func (s *Store) Transitions(ctx context.Context, f TransitionFilter) ([]Transition, error) {
	q := `SELECT id, at, key, slo, service, severity, alert, from_state, to_state, condition, status FROM transitions WHERE 1=1`
	var args []any
	if f.SLO != "" {
		q += ` AND slo = ?`
		args = append(args, f.SLO)
	}
	if f.Service != "" {
		q += ` AND service = ?`
		args = append(args, f.Service)
	}
	if !f.From.IsZero() {
		q += ` AND at >= ?`
		args = append(args, ms(f.From))
	}
	if !f.To.IsZero() {
		q += ` AND at < ?`
		args = append(args, ms(f.To))
	}
	if f.Limit <= 0 {
		f.Limit = 100
	}
	q += ` ORDER BY at DESC, id DESC LIMIT ?`
	args = append(args, f.Limit)
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return scanAll(rows, func(row rowScanner) (Transition, error) {
		var t Transition
		var at int64
		var status string
		if err := row.Scan(&t.ID, &at, &t.Key, &t.SLO, &t.Service, &t.Severity, &t.Alert, &t.From, &t.To, &t.Condition, &status); err != nil {
			return Transition{}, err
		}
		t.At = fromMs(at)
		t.Status = json.RawMessage(status)
		return t, nil
	})
}
