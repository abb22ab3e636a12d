package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Version 4: playbook runs, hysteresis state, actuators and settings.
//
// playbook_runs hold every run, stopped or not: the audit log. The
// columns are what the runner claims and filters on; data is the whole
// run document (the playbook package owns its shape: trigger, inputs,
// policy decisions, approval, steps, events). idempotency_key is unique,
// so a trigger seen twice (a replayed transition, a second replica, a
// restart) creates one run. Every write after the insert is conditional
// on version (optimistic locking), and executing a run needs a claim, an
// UPDATE that only succeeds while the run is due, so that several
// replicas on one PostgreSQL never execute a run twice.
//
// playbook_arms keep the hysteresis state of burn-rate triggers per
// playbook and SLO group, so a restart neither re-fires nor forgets that
// the burn rate has been above the trigger level since a given time.
//
// playbook_actuators have one row per actuator (a service and a kind of
// action): the row is locked while a run is admitted to act, so the
// cooldown and run-limit checks and the act itself are one atomic step
// even on PostgreSQL.
//
// playbook_settings hold runtime switches: the kill switch.
func init() {
	register(4, `CREATE TABLE playbook_runs (
		id              TEXT PRIMARY KEY,
		idempotency_key TEXT NOT NULL UNIQUE,
		playbook        TEXT NOT NULL,
		service         TEXT NOT NULL,
		actuator        TEXT NOT NULL,
		state           TEXT NOT NULL,
		version         BIGINT NOT NULL,
		owner           TEXT NOT NULL,
		lease_until     BIGINT NOT NULL,
		next_attempt_at BIGINT NOT NULL,
		expires_at      BIGINT NOT NULL,
		acted_at        BIGINT NOT NULL,
		created_at      BIGINT NOT NULL,
		updated_at      BIGINT NOT NULL,
		data            TEXT NOT NULL
	);
	CREATE INDEX playbook_runs_created ON playbook_runs (created_at);
	CREATE INDEX playbook_runs_playbook_created ON playbook_runs (playbook, created_at);
	CREATE INDEX playbook_runs_service_created ON playbook_runs (service, created_at);
	CREATE INDEX playbook_runs_state_next ON playbook_runs (state, next_attempt_at);
	CREATE INDEX playbook_runs_actuator_acted ON playbook_runs (actuator, acted_at);
	CREATE INDEX playbook_runs_actuator_state ON playbook_runs (actuator, state);
	CREATE TABLE playbook_arms (
		playbook    TEXT NOT NULL,
		key         TEXT NOT NULL,
		armed       INTEGER NOT NULL,
		above_since BIGINT NOT NULL,
		hold_until  BIGINT NOT NULL,
		changed_at  BIGINT NOT NULL,
		updated_at  BIGINT NOT NULL,
		PRIMARY KEY (playbook, key)
	);
	CREATE TABLE playbook_actuators (
		actuator   TEXT PRIMARY KEY,
		last_run   TEXT NOT NULL,
		updated_at BIGINT NOT NULL
	);
	CREATE TABLE playbook_settings (
		name       TEXT PRIMARY KEY,
		value      TEXT NOT NULL,
		updated_by TEXT NOT NULL,
		note       TEXT NOT NULL,
		updated_at BIGINT NOT NULL
	)`)
}

// Playbook run states the store's queries know: which runs are open and
// which are due for the runner. The playbook package defines the rest.
const (
	// PlaybookRunNew: inserted, its guards not yet passed.
	PlaybookRunNew = "new"
	// PlaybookRunPending: waiting for an approval until expires_at.
	PlaybookRunPending = "pending"
	// PlaybookRunQueued: admitted (and approved, if needed), due at
	// next_attempt_at.
	PlaybookRunQueued = "queued"
	// PlaybookRunRunning: claimed by owner until lease_until.
	PlaybookRunRunning = "running"
	// PlaybookRunRetrying: an action failed and is retried at
	// next_attempt_at.
	PlaybookRunRetrying = "retrying"
)

// openRunStates are the states of runs that have not ended.
var openRunStates = []string{PlaybookRunNew, PlaybookRunPending, PlaybookRunQueued, PlaybookRunRunning, PlaybookRunRetrying}

// PlaybookRun is the stored form of one playbook run: the columns the
// runner claims and lists filter on, and the whole run document in Data.
type PlaybookRun struct {
	ID             string
	IdempotencyKey string
	Playbook       string
	Service        string
	// Actuator is what the run acts on (a service and a kind of action);
	// cooldowns and run limits count acts per actuator.
	Actuator string
	State    string
	// Version increases with every write; writes name the version they
	// read and fail with ErrConflict when another write came first.
	Version int64
	// Owner is the runner that claimed the run, until LeaseUntil.
	Owner         string
	LeaseUntil    time.Time
	NextAttemptAt time.Time
	// ExpiresAt ends a pending approval.
	ExpiresAt time.Time
	// ActedAt is when the run acted (executed, or dry-ran); zero if it
	// did not.
	ActedAt   time.Time
	CreatedAt time.Time
	UpdatedAt time.Time
	Data      json.RawMessage
}

// PlaybookAct is one run that acted on an actuator.
type PlaybookAct struct {
	RunID    string
	Playbook string
	At       time.Time
}

const playbookRunColumns = `id, idempotency_key, playbook, service, actuator, state, version, owner, lease_until, next_attempt_at, expires_at, acted_at, created_at, updated_at, data`

func scanPlaybookRun(r rowScanner) (PlaybookRun, error) {
	var p PlaybookRun
	var lease, next, expires, acted, created, updated int64
	var data string
	if err := r.Scan(&p.ID, &p.IdempotencyKey, &p.Playbook, &p.Service, &p.Actuator, &p.State, &p.Version, &p.Owner,
		&lease, &next, &expires, &acted, &created, &updated, &data); err != nil {
		return PlaybookRun{}, err
	}
	p.LeaseUntil, p.NextAttemptAt, p.ExpiresAt = fromMs(lease), fromMs(next), fromMs(expires)
	p.ActedAt, p.CreatedAt, p.UpdatedAt = fromMs(acted), fromMs(created), fromMs(updated)
	p.Data = json.RawMessage(data)
	return p, nil
}

func scanPlaybookAct(r rowScanner) (PlaybookAct, error) {
	var a PlaybookAct
	var t int64
	if err := r.Scan(&a.RunID, &a.Playbook, &t); err != nil {
		return PlaybookAct{}, err
	}
	a.At = fromMs(t)
	return a, nil
}

func runData(d json.RawMessage) string {
	if len(d) == 0 {
		return "null"
	}
	return string(d)
}

// InsertPlaybookRun stores a new run unless a run with its idempotency
// key exists; it reports whether it inserted. The stored version is 1.
func (s *Store) InsertPlaybookRun(ctx context.Context, r PlaybookRun) (bool, error) {
	if r.ID == "" || r.IdempotencyKey == "" {
		return false, errors.New("insert playbook run: no ID or idempotency key")
	}
	res, err := s.exec(ctx, `INSERT INTO playbook_runs (`+playbookRunColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (idempotency_key) DO NOTHING`,
		r.ID, r.IdempotencyKey, r.Playbook, r.Service, r.Actuator, r.State, r.Owner, ms(r.LeaseUntil), ms(r.NextAttemptAt),
		ms(r.ExpiresAt), ms(r.ActedAt), ms(r.CreatedAt), ms(r.UpdatedAt), runData(r.Data))
	if err != nil {
		return false, fmt.Errorf("insert playbook run %s: %w", r.ID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("insert playbook run %s: %w", r.ID, err)
	}
	return n == 1, nil
}

// UpdatePlaybookRun writes r over the stored run if the stored version is
// still r.Version, and returns the new version. It returns ErrConflict
// when another write came first and ErrNotFound when there is no such
// run. ActedAt is not written: only ActOnActuator sets it.
func (s *Store) UpdatePlaybookRun(ctx context.Context, r PlaybookRun) (int64, error) {
	res, err := s.exec(ctx, `UPDATE playbook_runs SET state = ?, version = version + 1, owner = ?, lease_until = ?,
		next_attempt_at = ?, expires_at = ?, updated_at = ?, data = ? WHERE id = ? AND version = ?`,
		r.State, r.Owner, ms(r.LeaseUntil), ms(r.NextAttemptAt), ms(r.ExpiresAt), ms(r.UpdatedAt), runData(r.Data), r.ID, r.Version)
	if err != nil {
		return 0, fmt.Errorf("update playbook run %s: %w", r.ID, err)
	}
	return s.versionResult(ctx, res, r.ID, r.Version)
}

// versionResult turns the result of a versioned UPDATE into the new
// version, ErrConflict or ErrNotFound.
func (s *Store) versionResult(ctx context.Context, res sql.Result, id string, version int64) (int64, error) {
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("update playbook run %s: %w", id, err)
	}
	if n == 1 {
		return version + 1, nil
	}
	if _, err := s.PlaybookRun(ctx, id); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("update playbook run %s (version %d): %w", id, version, ErrConflict)
}

// ClaimPlaybookRun makes owner the owner of a due run until leaseUntil
// and returns it; the state is left for the owner to change. A run is due
// when no lease on it is current and it is queued or retrying with
// next_attempt_at at or before now, pending with expires_at at or before
// now (to expire it), or new or running (its owner died mid-way). A run
// that is not due (another runner claimed it first, or it ended) is
// ErrConflict. The claim is one UPDATE, atomic on SQLite and PostgreSQL
// alike. The owner gives the lease up (a zero LeaseUntil) with the write
// that ends its work on the run.
func (s *Store) ClaimPlaybookRun(ctx context.Context, id, owner string, now, leaseUntil time.Time) (PlaybookRun, error) {
	res, err := s.exec(ctx, `UPDATE playbook_runs SET owner = ?, lease_until = ?, version = version + 1, updated_at = ?
		WHERE id = ? AND `+dueCondition, append([]any{owner, ms(leaseUntil), ms(now), id}, dueArgs(now)...)...)
	if err != nil {
		return PlaybookRun{}, fmt.Errorf("claim playbook run %s: %w", id, err)
	}
	c, err := res.RowsAffected()
	if err != nil {
		return PlaybookRun{}, fmt.Errorf("claim playbook run %s: %w", id, err)
	}
	if c != 1 {
		return PlaybookRun{}, fmt.Errorf("claim playbook run %s: %w", id, ErrConflict)
	}
	return s.PlaybookRun(ctx, id)
}

// dueCondition selects the runs a runner may claim; dueArgs are its
// arguments. The leading state IN (...) lets the state index skip the
// ended runs, which are most of the table.
const dueCondition = `state IN (?, ?, ?, ?, ?) AND lease_until < ? AND (
	(state IN (?, ?) AND next_attempt_at <= ?) OR
	(state = ? AND expires_at <= ?) OR
	state IN (?, ?))`

func dueArgs(now time.Time) []any {
	n := ms(now)
	return []any{PlaybookRunNew, PlaybookRunPending, PlaybookRunQueued, PlaybookRunRunning, PlaybookRunRetrying,
		n, PlaybookRunQueued, PlaybookRunRetrying, n, PlaybookRunPending, n, PlaybookRunNew, PlaybookRunRunning}
}

// DuePlaybookRuns returns the IDs of runs ClaimPlaybookRun would claim at
// now, the longest due first, at most limit.
func (s *Store) DuePlaybookRuns(ctx context.Context, now time.Time, limit int) ([]string, error) {
	limit, _ = listPage(limit, 0)
	rows, err := s.query(ctx, `SELECT id FROM playbook_runs WHERE `+dueCondition+
		` ORDER BY next_attempt_at, created_at, id LIMIT ?`, append(dueArgs(now), limit)...)
	if err != nil {
		return nil, fmt.Errorf("due playbook runs: %w", err)
	}
	out, err := scanAll(rows, func(row rowScanner) (string, error) {
		var id string
		err := row.Scan(&id)
		return id, err
	})
	if err != nil {
		return nil, fmt.Errorf("due playbook runs: %w", err)
	}
	return out, nil
}

// ActOnActuator decides atomically whether run r may act on its
// actuator, and if so records that it acted at and writes r (as
// UpdatePlaybookRun does, version-checked). allow sees the runs that
// acted on the actuator at or after since, oldest first, and returns nil
// to let r act or an error to stop it; that error is returned as is and
// nothing is written. The actuator's row is locked for the decision, so
// two runs never both pass a cooldown, on SQLite or PostgreSQL. It
// returns the new version.
func (s *Store) ActOnActuator(ctx context.Context, r PlaybookRun, at, since time.Time, allow func(acts []PlaybookAct) error) (int64, error) {
	var version int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := s.txExec(ctx, tx, `INSERT INTO playbook_actuators (actuator, last_run, updated_at) VALUES (?, '', 0)
			ON CONFLICT (actuator) DO NOTHING`, r.Actuator); err != nil {
			return err
		}
		// The UPDATE takes the row lock on PostgreSQL (SQLite's immediate
		// transaction already holds the database's write lock).
		if _, err := s.txExec(ctx, tx, `UPDATE playbook_actuators SET updated_at = ? WHERE actuator = ?`, ms(at), r.Actuator); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, s.dialect.rebind(`SELECT id, playbook, acted_at FROM playbook_runs
			WHERE actuator = ? AND acted_at > 0 AND acted_at >= ? AND id <> ? ORDER BY acted_at, id`), r.Actuator, ms(since), r.ID)
		if err != nil {
			return err
		}
		acts, err := scanAll(rows, scanPlaybookAct)
		if err != nil {
			return err
		}
		if err := allow(acts); err != nil {
			return err
		}
		res, err := s.txExec(ctx, tx, `UPDATE playbook_runs SET state = ?, version = version + 1, owner = ?, lease_until = ?,
			next_attempt_at = ?, expires_at = ?, acted_at = ?, updated_at = ?, data = ? WHERE id = ? AND version = ?`,
			r.State, r.Owner, ms(r.LeaseUntil), ms(r.NextAttemptAt), ms(r.ExpiresAt), ms(at), ms(r.UpdatedAt), runData(r.Data), r.ID, r.Version)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n != 1 {
			return fmt.Errorf("act on %s: run %s (version %d): %w", r.Actuator, r.ID, r.Version, ErrConflict)
		}
		version = r.Version + 1
		_, err = s.txExec(ctx, tx, `UPDATE playbook_actuators SET last_run = ? WHERE actuator = ?`, r.ID, r.Actuator)
		return err
	})
	if err != nil {
		return 0, err
	}
	return version, nil
}

// PlaybookActs returns the runs that acted on actuator at or after
// since, oldest first: what the guards count before a run is admitted.
func (s *Store) PlaybookActs(ctx context.Context, actuator string, since time.Time) ([]PlaybookAct, error) {
	rows, err := s.query(ctx, `SELECT id, playbook, acted_at FROM playbook_runs
		WHERE actuator = ? AND acted_at > 0 AND acted_at >= ? ORDER BY acted_at, id`, actuator, ms(since))
	if err != nil {
		return nil, fmt.Errorf("playbook acts on %s: %w", actuator, err)
	}
	out, err := scanAll(rows, scanPlaybookAct)
	if err != nil {
		return nil, fmt.Errorf("playbook acts on %s: %w", actuator, err)
	}
	return out, nil
}

// OpenPlaybookRuns returns the runs on actuator that have not ended
// (new, pending, queued, running, retrying), oldest first, except the
// run with ID except.
func (s *Store) OpenPlaybookRuns(ctx context.Context, actuator, except string) ([]PlaybookRun, error) {
	args := []any{actuator, except}
	for _, st := range openRunStates {
		args = append(args, st)
	}
	rows, err := s.query(ctx, `SELECT `+playbookRunColumns+` FROM playbook_runs WHERE actuator = ? AND id <> ? AND state IN (`+
		inPlaceholders(len(openRunStates))+`) ORDER BY created_at, id`, args...)
	if err != nil {
		return nil, fmt.Errorf("open playbook runs on %s: %w", actuator, err)
	}
	out, err := scanAll(rows, scanPlaybookRun)
	if err != nil {
		return nil, fmt.Errorf("open playbook runs on %s: %w", actuator, err)
	}
	return out, nil
}

// PlaybookRun returns one run, or ErrNotFound.
func (s *Store) PlaybookRun(ctx context.Context, id string) (PlaybookRun, error) {
	r, err := scanPlaybookRun(s.queryRow(ctx, `SELECT `+playbookRunColumns+` FROM playbook_runs WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return PlaybookRun{}, fmt.Errorf("playbook run %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return PlaybookRun{}, fmt.Errorf("playbook run %s: %w", id, err)
	}
	return r, nil
}

// PlaybookRunFilter selects playbook runs. Empty fields match
// everything.
type PlaybookRunFilter struct {
	Playbook, Service, State string
	From, To                 time.Time
	// Limit defaults to 100 and is capped at 10000.
	Limit, Offset int
}

// PlaybookRuns returns the runs matching f, newest first, and the number
// of matches.
func (s *Store) PlaybookRuns(ctx context.Context, f PlaybookRunFilter) ([]PlaybookRun, int, error) {
	var w whereClause
	w.addIf(f.Playbook != "", "playbook = ?", f.Playbook)
	w.addIf(f.Service != "", "service = ?", f.Service)
	w.addIf(f.State != "", "state = ?", f.State)
	w.addIf(!f.From.IsZero(), "created_at >= ?", ms(f.From))
	w.addIf(!f.To.IsZero(), "created_at < ?", ms(f.To))
	var total int
	if err := s.queryRow(ctx, `SELECT COUNT(*) FROM playbook_runs`+w.sql(), w.args...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("list playbook runs: %w", err)
	}
	limit, offset := listPage(f.Limit, f.Offset)
	rows, err := s.query(ctx, `SELECT `+playbookRunColumns+` FROM playbook_runs`+w.sql()+
		` ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?`, append(w.args, limit, offset)...)
	if err != nil {
		return nil, 0, fmt.Errorf("list playbook runs: %w", err)
	}
	out, err := scanAll(rows, scanPlaybookRun)
	if err != nil {
		return nil, 0, fmt.Errorf("list playbook runs: %w", err)
	}
	return nonNilSlice(out), total, nil
}

// LastPlaybookRuns returns the newest run of each playbook.
func (s *Store) LastPlaybookRuns(ctx context.Context) (map[string]PlaybookRun, error) {
	rows, err := s.query(ctx, `SELECT `+prefixColumns("r.", playbookRunColumns)+` FROM playbook_runs r
		JOIN (SELECT playbook, MAX(created_at) AS created_at FROM playbook_runs GROUP BY playbook) l
		ON l.playbook = r.playbook AND l.created_at = r.created_at ORDER BY r.playbook, r.id`)
	if err != nil {
		return nil, fmt.Errorf("last playbook runs: %w", err)
	}
	defer rows.Close()
	out := map[string]PlaybookRun{}
	for rows.Next() {
		r, err := scanPlaybookRun(rows)
		if err != nil {
			return nil, fmt.Errorf("last playbook runs: %w", err)
		}
		// Two runs in the same millisecond: the later ID (time-ordered)
		// wins.
		out[r.Playbook] = r
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("last playbook runs: %w", err)
	}
	return out, nil
}

// PlaybookArm is the hysteresis state of a burn-rate trigger for one
// playbook and SLO group.
type PlaybookArm struct {
	Playbook string
	Key      string
	// Armed: the trigger fires when the burn rate holds at or above its
	// level; disarmed until it falls to the clear level.
	Armed bool
	// AboveSince is when the burn rate rose to the trigger level while
	// armed; zero when it is below.
	AboveSince time.Time
	// HoldUntil defers the next firing: a guard (cooldown, run limit)
	// held the last one back until then.
	HoldUntil time.Time
	// ChangedAt is when Armed last changed.
	ChangedAt time.Time
	UpdatedAt time.Time
}

// PlaybookArms returns every stored hysteresis state.
func (s *Store) PlaybookArms(ctx context.Context) ([]PlaybookArm, error) {
	rows, err := s.query(ctx, `SELECT playbook, key, armed, above_since, hold_until, changed_at, updated_at FROM playbook_arms ORDER BY playbook, key`)
	if err != nil {
		return nil, fmt.Errorf("playbook arms: %w", err)
	}
	out, err := scanAll(rows, func(row rowScanner) (PlaybookArm, error) {
		var a PlaybookArm
		var armed int
		var above, hold, changed, updated int64
		if err := row.Scan(&a.Playbook, &a.Key, &armed, &above, &hold, &changed, &updated); err != nil {
			return PlaybookArm{}, err
		}
		a.Armed = armed != 0
		a.AboveSince, a.HoldUntil, a.ChangedAt, a.UpdatedAt = fromMs(above), fromMs(hold), fromMs(changed), fromMs(updated)
		return a, nil
	})
	if err != nil {
		return nil, fmt.Errorf("playbook arms: %w", err)
	}
	return out, nil
}

// SavePlaybookArms writes hysteresis states in one transaction.
func (s *Store) SavePlaybookArms(ctx context.Context, arms []PlaybookArm) error {
	if len(arms) == 0 {
		return nil
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		for _, a := range arms {
			armed := 0
			if a.Armed {
				armed = 1
			}
			if _, err := s.txExec(ctx, tx, `INSERT INTO playbook_arms (playbook, key, armed, above_since, hold_until, changed_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)
				ON CONFLICT (playbook, key) DO UPDATE SET armed = excluded.armed, above_since = excluded.above_since, hold_until = excluded.hold_until,
				changed_at = excluded.changed_at, updated_at = excluded.updated_at`,
				a.Playbook, a.Key, armed, ms(a.AboveSince), ms(a.HoldUntil), ms(a.ChangedAt), ms(a.UpdatedAt)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("save playbook arms: %w", err)
	}
	return nil
}

// DeletePlaybookArms removes the hysteresis states of a playbook (no
// longer declared, or its trigger changed).
func (s *Store) DeletePlaybookArms(ctx context.Context, playbook string) error {
	if _, err := s.exec(ctx, `DELETE FROM playbook_arms WHERE playbook = ?`, playbook); err != nil {
		return fmt.Errorf("delete playbook arms of %s: %w", playbook, err)
	}
	return nil
}

// PlaybookSetting is a runtime switch of the playbook runner, such as the
// kill switch, with who set it and why.
type PlaybookSetting struct {
	Name      string
	Value     string
	UpdatedBy string
	Note      string
	UpdatedAt time.Time
}

// PlaybookSetting returns a setting, or ErrNotFound when it was never
// set.
func (s *Store) PlaybookSetting(ctx context.Context, name string) (PlaybookSetting, error) {
	var p PlaybookSetting
	var at int64
	err := s.queryRow(ctx, `SELECT name, value, updated_by, note, updated_at FROM playbook_settings WHERE name = ?`, name).
		Scan(&p.Name, &p.Value, &p.UpdatedBy, &p.Note, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return PlaybookSetting{}, fmt.Errorf("playbook setting %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return PlaybookSetting{}, fmt.Errorf("playbook setting %s: %w", name, err)
	}
	p.UpdatedAt = fromMs(at)
	return p, nil
}

// SetPlaybookSetting writes a setting.
func (s *Store) SetPlaybookSetting(ctx context.Context, p PlaybookSetting) error {
	_, err := s.exec(ctx, `INSERT INTO playbook_settings (name, value, updated_by, note, updated_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_by = excluded.updated_by, note = excluded.note,
		updated_at = excluded.updated_at`, p.Name, p.Value, p.UpdatedBy, p.Note, ms(p.UpdatedAt))
	if err != nil {
		return fmt.Errorf("set playbook setting %s: %w", p.Name, err)
	}
	return nil
}
