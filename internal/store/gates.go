package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/qsp-dev/qsp/internal/policy"
)

// Version 3: the decision log, gate evaluations, when each vulnerability
// finding was first seen, and deploy markers.
//
// decisions keep the policy input as the policies saw it, so a decision
// can be audited and replayed. gate_evaluations keep the whole evaluation
// document (data) next to the columns the API filters on. first-seen keys
// are written once and never updated: the age of a finding must survive
// restarts and redeploys. deploys have a natural key (key) that makes a
// retried events request or an evaluation's second write idempotent.
func init() {
	register(3, `CREATE TABLE decisions (
		id       TEXT PRIMARY KEY,
		at       BIGINT NOT NULL,
		point    TEXT NOT NULL,
		subject  TEXT NOT NULL,
		service  TEXT NOT NULL,
		result   TEXT NOT NULL,
		reasons  TEXT NOT NULL,
		policies TEXT NOT NULL,
		input    TEXT NOT NULL
	);
	CREATE INDEX decisions_at ON decisions (at);
	CREATE INDEX decisions_service_at ON decisions (service, at);
	CREATE TABLE gate_evaluations (
		id          TEXT PRIMARY KEY,
		gate        TEXT NOT NULL,
		service     TEXT NOT NULL,
		state       TEXT NOT NULL,
		change_kind TEXT NOT NULL,
		version     TEXT NOT NULL,
		decision_id TEXT NOT NULL,
		created_at  BIGINT NOT NULL,
		updated_at  BIGINT NOT NULL,
		finished_at BIGINT NOT NULL,
		data        TEXT NOT NULL
	);
	CREATE INDEX gate_evaluations_created ON gate_evaluations (created_at);
	CREATE INDEX gate_evaluations_gate_created ON gate_evaluations (gate, created_at);
	CREATE INDEX gate_evaluations_state ON gate_evaluations (state);
	CREATE TABLE vulnerability_first_seen (
		key        TEXT PRIMARY KEY,
		first_seen BIGINT NOT NULL
	);
	CREATE TABLE deploys (
		id            {{id}},
		key           TEXT NOT NULL UNIQUE,
		at            BIGINT NOT NULL,
		service       TEXT NOT NULL,
		version       TEXT NOT NULL,
		source        TEXT NOT NULL,
		gate          TEXT NOT NULL,
		evaluation_id TEXT NOT NULL,
		verdict       TEXT NOT NULL,
		description   TEXT NOT NULL,
		labels        TEXT NOT NULL
	);
	CREATE INDEX deploys_service_at ON deploys (service, at);
	CREATE INDEX deploys_at ON deploys (at);`)
}

// maxListPage bounds one page of a list query.
const maxListPage = 10000

// listPage defaults and clamps a limit and an offset.
func listPage(limit, offset int) (int, int) {
	if limit <= 0 {
		limit = 100
	}
	return min(limit, maxListPage), max(offset, 0)
}

// whereClause builds a WHERE clause from conditions with ? placeholders.
type whereClause struct {
	conds []string
	args  []any
}

func (w *whereClause) add(cond string, arg any) {
	w.conds = append(w.conds, cond)
	w.args = append(w.args, arg)
}

func (w *whereClause) addIf(ok bool, cond string, arg any) {
	if ok {
		w.add(cond, arg)
	}
}

func (w *whereClause) sql() string {
	if len(w.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(w.conds, " AND ")
}

// RecordDecision stores a policy decision with its input and reasons: the
// decision log. It implements policy.Recorder; recording the same
// decision twice keeps the first.
func (s *Store) RecordDecision(ctx context.Context, d *policy.Decision) error {
	if d == nil || d.ID == "" {
		return errors.New("record decision: no decision ID")
	}
	reasons, err := json.Marshal(nonNilSlice(d.Reasons))
	if err != nil {
		return fmt.Errorf("record decision %s: %w", d.ID, err)
	}
	policies, err := json.Marshal(nonNilSlice(d.Policies))
	if err != nil {
		return fmt.Errorf("record decision %s: %w", d.ID, err)
	}
	input := string(d.Input)
	if input == "" {
		input = "null"
	}
	_, err = s.exec(ctx, `INSERT INTO decisions (id, at, point, subject, service, result, reasons, policies, input)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
		d.ID, ms(d.Time), d.Point, d.Subject, d.Service, string(d.Result), string(reasons), string(policies), input)
	if err != nil {
		return fmt.Errorf("record decision %s: %w", d.ID, err)
	}
	return nil
}

var _ policy.Recorder = (*Store)(nil)

// DecisionFilter selects decisions. Empty fields match everything.
type DecisionFilter struct {
	Point, Subject, Service string
	Result                  string
	From, To                time.Time
	// Limit defaults to 100 and is capped at 10000.
	Limit, Offset int
}

// Decisions returns the decisions matching f, newest first, without their
// input (Decision returns one with it), and the number of matches.
func (s *Store) Decisions(ctx context.Context, f DecisionFilter) ([]*policy.Decision, int, error) {
	var w whereClause
	w.addIf(f.Point != "", "point = ?", f.Point)
	w.addIf(f.Subject != "", "subject = ?", f.Subject)
	w.addIf(f.Service != "", "service = ?", f.Service)
	w.addIf(f.Result != "", "result = ?", f.Result)
	w.addIf(!f.From.IsZero(), "at >= ?", ms(f.From))
	w.addIf(!f.To.IsZero(), "at < ?", ms(f.To))
	var total int
	if err := s.queryRow(ctx, `SELECT COUNT(*) FROM decisions`+w.sql(), w.args...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("list decisions: %w", err)
	}
	limit, offset := listPage(f.Limit, f.Offset)
	rows, err := s.query(ctx, `SELECT id, at, point, subject, service, result, reasons, policies FROM decisions`+w.sql()+
		` ORDER BY at DESC, id DESC LIMIT ? OFFSET ?`, append(w.args, limit, offset)...)
	if err != nil {
		return nil, 0, fmt.Errorf("list decisions: %w", err)
	}
	out, err := scanAll(rows, func(row rowScanner) (*policy.Decision, error) { return scanDecision(row, false) })
	if err != nil {
		return nil, 0, fmt.Errorf("list decisions: %w", err)
	}
	return nonNilSlice(out), total, nil
}

// Decision returns one decision with its input, or ErrNotFound.
func (s *Store) Decision(ctx context.Context, id string) (*policy.Decision, error) {
	row := s.queryRow(ctx, `SELECT id, at, point, subject, service, result, reasons, policies, input FROM decisions WHERE id = ?`, id)
	d, err := scanDecision(row, true)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("decision %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("decision %s: %w", id, err)
	}
	return d, nil
}

// rowScanner is a *sql.Row or *sql.Rows.
type rowScanner interface {
	Scan(dest ...any) error
}

func scanDecision(r rowScanner, withInput bool) (*policy.Decision, error) {
	var d policy.Decision
	var at int64
	var result, reasons, policies, input string
	dest := []any{&d.ID, &at, &d.Point, &d.Subject, &d.Service, &result, &reasons, &policies}
	if withInput {
		dest = append(dest, &input)
	}
	if err := r.Scan(dest...); err != nil {
		return nil, err
	}
	d.Time = fromMs(at)
	d.Result = policy.Result(result)
	if err := json.Unmarshal([]byte(reasons), &d.Reasons); err != nil {
		return nil, fmt.Errorf("decision %s: reasons: %w", d.ID, err)
	}
	if err := json.Unmarshal([]byte(policies), &d.Policies); err != nil {
		return nil, fmt.Errorf("decision %s: policies: %w", d.ID, err)
	}
	if withInput {
		d.Input = json.RawMessage(input)
	}
	return &d, nil
}

// GateEvaluation is the stored form of one gate evaluation: the columns
// lists filter on, and the whole evaluation document in Data (the gate
// package owns its shape).
type GateEvaluation struct {
	ID         string
	Gate       string
	Service    string
	State      string
	ChangeKind string
	Version    string
	DecisionID string
	CreatedAt  time.Time
	UpdatedAt  time.Time
	FinishedAt time.Time
	Data       json.RawMessage
}

// SaveGateEvaluation inserts an evaluation or replaces the stored one with
// the same ID (progress, then the result).
func (s *Store) SaveGateEvaluation(ctx context.Context, e GateEvaluation) error {
	if e.ID == "" {
		return errors.New("save gate evaluation: no ID")
	}
	data := string(e.Data)
	if data == "" {
		data = "null"
	}
	_, err := s.exec(ctx, `INSERT INTO gate_evaluations (id, gate, service, state, change_kind, version, decision_id, created_at, updated_at, finished_at, data)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET gate = excluded.gate, service = excluded.service, state = excluded.state,
		change_kind = excluded.change_kind, version = excluded.version, decision_id = excluded.decision_id,
		updated_at = excluded.updated_at, finished_at = excluded.finished_at, data = excluded.data`,
		e.ID, e.Gate, e.Service, e.State, e.ChangeKind, e.Version, e.DecisionID, ms(e.CreatedAt), ms(e.UpdatedAt), ms(e.FinishedAt), data)
	if err != nil {
		return fmt.Errorf("save gate evaluation %s: %w", e.ID, err)
	}
	return nil
}

// GateEvaluationFilter selects gate evaluations. Empty fields match
// everything.
type GateEvaluationFilter struct {
	Gate, Service, State string
	From, To             time.Time
	// Limit defaults to 100 and is capped at 10000.
	Limit, Offset int
}

// GateEvaluations returns the evaluations matching f, newest first, and
// the number of matches.
func (s *Store) GateEvaluations(ctx context.Context, f GateEvaluationFilter) ([]GateEvaluation, int, error) {
	var w whereClause
	w.addIf(f.Gate != "", "gate = ?", f.Gate)
	w.addIf(f.Service != "", "service = ?", f.Service)
	w.addIf(f.State != "", "state = ?", f.State)
	w.addIf(!f.From.IsZero(), "created_at >= ?", ms(f.From))
	w.addIf(!f.To.IsZero(), "created_at < ?", ms(f.To))
	var total int
	if err := s.queryRow(ctx, `SELECT COUNT(*) FROM gate_evaluations`+w.sql(), w.args...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("list gate evaluations: %w", err)
	}
	limit, offset := listPage(f.Limit, f.Offset)
	rows, err := s.query(ctx, `SELECT `+evaluationColumns+` FROM gate_evaluations`+w.sql()+
		` ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?`, append(w.args, limit, offset)...)
	if err != nil {
		return nil, 0, fmt.Errorf("list gate evaluations: %w", err)
	}
	out, err := scanAll(rows, scanEvaluation)
	if err != nil {
		return nil, 0, fmt.Errorf("list gate evaluations: %w", err)
	}
	return nonNilSlice(out), total, nil
}

// GateEvaluation returns one evaluation, or ErrNotFound.
func (s *Store) GateEvaluation(ctx context.Context, id string) (GateEvaluation, error) {
	e, err := scanEvaluation(s.queryRow(ctx, `SELECT `+evaluationColumns+` FROM gate_evaluations WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return GateEvaluation{}, fmt.Errorf("gate evaluation %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return GateEvaluation{}, fmt.Errorf("gate evaluation %s: %w", id, err)
	}
	return e, nil
}

const evaluationColumns = `id, gate, service, state, change_kind, version, decision_id, created_at, updated_at, finished_at, data`

func scanEvaluation(r rowScanner) (GateEvaluation, error) {
	var e GateEvaluation
	var created, updated, finished int64
	var data string
	if err := r.Scan(&e.ID, &e.Gate, &e.Service, &e.State, &e.ChangeKind, &e.Version, &e.DecisionID, &created, &updated, &finished, &data); err != nil {
		return GateEvaluation{}, err
	}
	e.CreatedAt, e.UpdatedAt, e.FinishedAt = fromMs(created), fromMs(updated), fromMs(finished)
	e.Data = json.RawMessage(data)
	return e, nil
}

// FirstSeen returns when key (a vulnerability finding) was first seen,
// recording now when it is new. It implements the vulnerability package's
// first-seen port; FirstSeenAll does the same for many keys at once.
func (s *Store) FirstSeen(ctx context.Context, key string, now time.Time) (time.Time, error) {
	m, err := s.FirstSeenAll(ctx, []string{key}, now)
	if err != nil {
		return time.Time{}, err
	}
	return m[key], nil
}

// FirstSeenAll returns when each key was first seen, recording now for
// the keys that are new, in one transaction: the known keys are read in
// chunks (a report re-scanned in every build has mostly known keys), and
// only new ones are inserted, so thousands of findings cost a few
// statements and one commit, not thousands.
func (s *Store) FirstSeenAll(ctx context.Context, keys []string, now time.Time) (map[string]time.Time, error) {
	out := make(map[string]time.Time, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	// Sorted and unique: two transactions inserting overlapping keys take
	// their row locks in the same order, so PostgreSQL cannot deadlock.
	keys = slices.Compact(slices.Sorted(slices.Values(keys)))
	at := now.UnixMilli()
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if err := s.readFirstSeen(ctx, tx, keys, out); err != nil {
			return err
		}
		var missing []string
		for _, k := range keys {
			if _, ok := out[k]; !ok {
				missing = append(missing, k)
			}
		}
		if len(missing) == 0 {
			return nil
		}
		ins, err := tx.PrepareContext(ctx, s.dialect.rebind(`INSERT INTO vulnerability_first_seen (key, first_seen) VALUES (?, ?) ON CONFLICT (key) DO NOTHING`))
		if err != nil {
			return err
		}
		defer ins.Close()
		for _, k := range missing {
			if _, err := ins.ExecContext(ctx, k, at); err != nil {
				return err
			}
		}
		// Read them back: a concurrent transaction may have won the insert
		// with its own time.
		return s.readFirstSeen(ctx, tx, missing, out)
	})
	if err != nil {
		return nil, fmt.Errorf("first seen: %w", err)
	}
	for _, k := range keys {
		if _, ok := out[k]; !ok {
			return nil, fmt.Errorf("first seen: key %q not recorded", k)
		}
	}
	return out, nil
}

// firstSeenChunk is how many keys one look-up reads: well under the
// parameter limits of SQLite (32766) and PostgreSQL (65535).
const firstSeenChunk = 500

// readFirstSeen adds the stored first-seen times of keys to out.
func (s *Store) readFirstSeen(ctx context.Context, tx *sql.Tx, keys []string, out map[string]time.Time) error {
	for chunk := range slices.Chunk(keys, firstSeenChunk) {
		args := make([]any, len(chunk))
		for i, k := range chunk {
			args[i] = k
		}
		q := `SELECT key, first_seen FROM vulnerability_first_seen WHERE key IN (` + inPlaceholders(len(chunk)) + `)`
		rows, err := tx.QueryContext(ctx, s.dialect.rebind(q), args...)
		if err != nil {
			return err
		}
		for rows.Next() {
			var k string
			var first int64
			if err := rows.Scan(&k, &first); err != nil {
				rows.Close()
				return err
			}
			out[k] = time.UnixMilli(first).UTC()
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if err := rows.Err(); err != nil {
			return err
		}
	}
	return nil
}

// Deploy is a deploy marker: a version of a service going out, from the
// events API (Source "events") or a gate evaluation (Source "gate", with
// the gate, the evaluation and its verdict).
type Deploy struct {
	ID int64 `json:"id"`
	// Key makes writes idempotent: a marker with a key already stored
	// updates that marker (a gate evaluation's verdict) instead of adding
	// one. Empty derives it from Source, Service, Version and At.
	Key          string            `json:"-"`
	At           time.Time         `json:"time"`
	Service      string            `json:"service"`
	Version      string            `json:"version,omitempty"`
	Source       string            `json:"source"`
	Gate         string            `json:"gate,omitempty"`
	EvaluationID string            `json:"evaluationId,omitempty"`
	Verdict      string            `json:"verdict,omitempty"`
	Description  string            `json:"description,omitempty"`
	Labels       map[string]string `json:"labels"`
}

// Sources of deploy markers.
const (
	DeploySourceEvents = "events"
	DeploySourceGate   = "gate"
)

// RecordDeploy stores a deploy marker, or updates the verdict and
// description of the marker with the same key.
func (s *Store) RecordDeploy(ctx context.Context, d Deploy) error {
	if d.Service == "" {
		return errors.New("record deploy: no service")
	}
	if d.At.IsZero() {
		return errors.New("record deploy: no time")
	}
	key := d.Key
	if key == "" {
		key = fmt.Sprintf("%s|%s|%s|%d", d.Source, d.Service, d.Version, d.At.UnixMilli())
	}
	labels, err := json.Marshal(nonNilMap(d.Labels))
	if err != nil {
		return fmt.Errorf("record deploy: %w", err)
	}
	_, err = s.exec(ctx, `INSERT INTO deploys (key, at, service, version, source, gate, evaluation_id, verdict, description, labels)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (key) DO UPDATE SET verdict = excluded.verdict, description = excluded.description, labels = excluded.labels`,
		key, ms(d.At), d.Service, d.Version, d.Source, d.Gate, d.EvaluationID, d.Verdict, d.Description, string(labels))
	if err != nil {
		return fmt.Errorf("record deploy of %s: %w", d.Service, err)
	}
	return nil
}

// DeployFilter selects deploy markers. Empty fields match everything.
type DeployFilter struct {
	Service  string
	From, To time.Time
	// Limit defaults to 100 and is capped at 10000.
	Limit, Offset int
}

// Deploys returns the markers matching f, newest first, and the number of
// matches.
func (s *Store) Deploys(ctx context.Context, f DeployFilter) ([]Deploy, int, error) {
	var w whereClause
	w.addIf(f.Service != "", "service = ?", f.Service)
	w.addIf(!f.From.IsZero(), "at >= ?", ms(f.From))
	w.addIf(!f.To.IsZero(), "at < ?", ms(f.To))
	var total int
	if err := s.queryRow(ctx, `SELECT COUNT(*) FROM deploys`+w.sql(), w.args...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("list deploys: %w", err)
	}
	limit, offset := listPage(f.Limit, f.Offset)
	rows, err := s.query(ctx, `SELECT id, key, at, service, version, source, gate, evaluation_id, verdict, description, labels FROM deploys`+w.sql()+
		` ORDER BY at DESC, id DESC LIMIT ? OFFSET ?`, append(w.args, limit, offset)...)
	if err != nil {
		return nil, 0, fmt.Errorf("list deploys: %w", err)
	}
	out, err := scanAll(rows, func(row rowScanner) (Deploy, error) {
		var d Deploy
		var at int64
		var labels string
		if err := row.Scan(&d.ID, &d.Key, &at, &d.Service, &d.Version, &d.Source, &d.Gate, &d.EvaluationID, &d.Verdict, &d.Description, &labels); err != nil {
			return Deploy{}, err
		}
		d.At = fromMs(at)
		if err := json.Unmarshal([]byte(labels), &d.Labels); err != nil {
			return Deploy{}, fmt.Errorf("deploy %d labels: %w", d.ID, err)
		}
		return d, nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("list deploys: %w", err)
	}
	return nonNilSlice(out), total, nil
}

func nonNilSlice[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func nonNilMap[K comparable, V any](m map[K]V) map[K]V {
	if m == nil {
		return map[K]V{}
	}
	return m
}
