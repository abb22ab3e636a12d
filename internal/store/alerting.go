package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Version 2: alerting and incidents.
//
// notified_alerts hold, per alert (SLO group key and severity), what QSP
// last told its receivers: the labels it fired with (a resolve must carry
// the same labels, so the fingerprint matches), and whether it is firing,
// which the Alertmanager resend loop reads. notifications are the outbox:
// one row per alert event and receiver, written before anything is sent
// and marked delivered only after the receiver answered 2xx; dedupe_key
// makes a replayed event a no-op. incidents group alerts of one service;
// incident_events are their timeline.
func init() {
	register(2, `CREATE TABLE notified_alerts (
		key           TEXT NOT NULL,
		severity      TEXT NOT NULL,
		fingerprint   TEXT NOT NULL,
		name          TEXT NOT NULL,
		slo           TEXT NOT NULL,
		service       TEXT NOT NULL,
		labels        TEXT NOT NULL,
		annotations   TEXT NOT NULL,
		state         TEXT NOT NULL,
		starts_at     BIGINT NOT NULL,
		ends_at       BIGINT NOT NULL,
		generator_url TEXT NOT NULL,
		updated_at    BIGINT NOT NULL,
		PRIMARY KEY (key, severity)
	);
	CREATE INDEX notified_alerts_state ON notified_alerts (state);
	CREATE TABLE notifications (
		id              {{id}},
		target          TEXT NOT NULL,
		key             TEXT NOT NULL,
		severity        TEXT NOT NULL,
		fingerprint     TEXT NOT NULL,
		status          TEXT NOT NULL,
		dedupe_key      TEXT NOT NULL,
		payload         TEXT NOT NULL,
		state           TEXT NOT NULL,
		attempts        INTEGER NOT NULL,
		last_error      TEXT NOT NULL,
		created_at      BIGINT NOT NULL,
		next_attempt_at BIGINT NOT NULL,
		expires_at      BIGINT NOT NULL,
		delivered_at    BIGINT NOT NULL
	);
	CREATE UNIQUE INDEX notifications_dedupe ON notifications (dedupe_key);
	CREATE INDEX notifications_target_state ON notifications (target, state, id);
	CREATE INDEX notifications_alert ON notifications (key, severity, id);
	CREATE TABLE incidents (
		id           {{id}},
		service      TEXT NOT NULL,
		title        TEXT NOT NULL,
		severity     TEXT NOT NULL,
		state        TEXT NOT NULL,
		opened_at    BIGINT NOT NULL,
		first_bad_at BIGINT NOT NULL,
		detected_at  BIGINT NOT NULL,
		acked_at     BIGINT NOT NULL,
		acked_by     TEXT NOT NULL,
		ack_note     TEXT NOT NULL,
		resolved_at  BIGINT NOT NULL,
		updated_at   BIGINT NOT NULL
	);
	CREATE INDEX incidents_service_state ON incidents (service, state);
	CREATE INDEX incidents_opened ON incidents (opened_at);
	CREATE TABLE incident_alerts (
		incident_id BIGINT NOT NULL REFERENCES incidents (id),
		key         TEXT NOT NULL,
		severity    TEXT NOT NULL,
		fingerprint TEXT NOT NULL,
		name        TEXT NOT NULL,
		slo         TEXT NOT NULL,
		labels      TEXT NOT NULL,
		state       TEXT NOT NULL,
		fired_at    BIGINT NOT NULL,
		resolved_at BIGINT NOT NULL,
		PRIMARY KEY (incident_id, key, severity)
	);
	CREATE INDEX incident_alerts_alert ON incident_alerts (key, severity, state);
	CREATE TABLE incident_events (
		id          {{id}},
		incident_id BIGINT NOT NULL REFERENCES incidents (id),
		at          BIGINT NOT NULL,
		kind        TEXT NOT NULL,
		key         TEXT NOT NULL,
		severity    TEXT NOT NULL,
		actor       TEXT NOT NULL,
		detail      TEXT NOT NULL
	);
	CREATE INDEX incident_events_incident ON incident_events (incident_id, at);`)
}

// NotifiedAlert is what QSP last told its receivers about one alert (an
// SLO group and a severity).
type NotifiedAlert struct {
	Key      string
	Severity string // page, ticket or no_data, as the engine names it
	// Fingerprint identifies the label set, as Alertmanager computes it.
	Fingerprint  string
	Name         string // alertname
	SLO          string
	Service      string
	Labels       map[string]string
	Annotations  map[string]string
	State        string // AlertFiring or AlertResolved
	StartsAt     time.Time
	EndsAt       time.Time // resolution time; zero while firing
	GeneratorURL string
	UpdatedAt    time.Time
}

// Notified alert states.
const (
	AlertFiring   = "firing"
	AlertResolved = "resolved"
)

// Notification is one outbox row: an alert event for one receiver.
type Notification struct {
	ID          int64
	Target      string // the receiver's stable name
	Key         string
	Severity    string
	Fingerprint string
	Status      string // firing or resolved
	// DedupeKey is unique: enqueueing the same event twice keeps one row.
	DedupeKey     string
	Payload       json.RawMessage
	State         string // NotificationPending, ...
	Attempts      int
	LastError     string
	CreatedAt     time.Time
	NextAttemptAt time.Time
	ExpiresAt     time.Time
	DeliveredAt   time.Time
}

// Notification states. Pending rows are retried until delivered or past
// their expiry; failed rows were refused by the receiver for good.
const (
	NotificationPending   = "pending"
	NotificationDelivered = "delivered"
	NotificationFailed    = "failed"
	NotificationExpired   = "expired"
)

// EnqueueAlerts records alert states and their notifications in one
// transaction: either the state change and every receiver's row are
// stored, or nothing is. A notification whose dedupe key exists is
// skipped. It returns how many notifications were inserted.
func (s *Store) EnqueueAlerts(ctx context.Context, alerts []NotifiedAlert, ns []Notification) (int, error) {
	if len(alerts) == 0 && len(ns) == 0 {
		return 0, nil
	}
	inserted := 0
	err := s.tx(ctx, func(tx *sql.Tx) error {
		inserted = 0
		for _, a := range alerts {
			labels, err := encodeLabels(a.Labels)
			if err != nil {
				return err
			}
			annotations, err := encodeLabels(a.Annotations)
			if err != nil {
				return err
			}
			if _, err := s.txExec(ctx, tx, `INSERT INTO notified_alerts (key, severity, fingerprint, name, slo, service, labels, annotations, state, starts_at, ends_at, generator_url, updated_at)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
				ON CONFLICT (key, severity) DO UPDATE SET fingerprint = excluded.fingerprint, name = excluded.name, slo = excluded.slo,
				service = excluded.service, labels = excluded.labels, annotations = excluded.annotations, state = excluded.state,
				starts_at = excluded.starts_at, ends_at = excluded.ends_at, generator_url = excluded.generator_url, updated_at = excluded.updated_at`,
				a.Key, a.Severity, a.Fingerprint, a.Name, a.SLO, a.Service, labels, annotations, a.State,
				ms(a.StartsAt), ms(a.EndsAt), a.GeneratorURL, ms(a.UpdatedAt)); err != nil {
				return fmt.Errorf("record alert %s/%s: %w", a.Key, a.Severity, err)
			}
		}
		for _, n := range ns {
			state := n.State
			if state == "" {
				state = NotificationPending
			}
			res, err := s.txExec(ctx, tx, `INSERT INTO notifications (target, key, severity, fingerprint, status, dedupe_key, payload, state, attempts, last_error, created_at, next_attempt_at, expires_at, delivered_at)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, '', ?, ?, ?, 0)
				ON CONFLICT (dedupe_key) DO NOTHING`,
				n.Target, n.Key, n.Severity, n.Fingerprint, n.Status, n.DedupeKey, string(n.Payload), state,
				ms(n.CreatedAt), ms(n.NextAttemptAt), ms(n.ExpiresAt))
			if err != nil {
				return fmt.Errorf("enqueue notification for %s: %w", n.Target, err)
			}
			if k, err := res.RowsAffected(); err == nil {
				inserted += int(k)
			}
		}
		return nil
	})
	return inserted, err
}

// NotifiedAlertFilter selects notified alerts; empty fields match all.
type NotifiedAlertFilter struct {
	State string
	Keys  []string
}

// NotifiedAlerts returns the alerts matching f, ordered by key and
// severity.
func (s *Store) NotifiedAlerts(ctx context.Context, f NotifiedAlertFilter) ([]NotifiedAlert, error) {
	q := `SELECT key, severity, fingerprint, name, slo, service, labels, annotations, state, starts_at, ends_at, generator_url, updated_at
		FROM notified_alerts WHERE 1=1`
	var args []any
	if f.State != "" {
		q += ` AND state = ?`
		args = append(args, f.State)
	}
	if f.Keys != nil {
		if len(f.Keys) == 0 {
			return nil, nil
		}
		q += ` AND key IN (` + inPlaceholders(len(f.Keys)) + `)`
		for _, k := range f.Keys {
			args = append(args, k)
		}
	}
	q += ` ORDER BY key, severity`
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("notified alerts: %w", err)
	}
	return scanAll(rows, func(row rowScanner) (NotifiedAlert, error) {
		var a NotifiedAlert
		var labels, annotations string
		var starts, ends, updated int64
		err := row.Scan(&a.Key, &a.Severity, &a.Fingerprint, &a.Name, &a.SLO, &a.Service, &labels, &annotations, &a.State, &starts, &ends, &a.GeneratorURL, &updated)
		if err != nil {
			return NotifiedAlert{}, fmt.Errorf("notified alerts: %w", err)
		}
		if a.Labels, err = unencodeLabels(labels); err != nil {
			return NotifiedAlert{}, fmt.Errorf("notified alert %s/%s labels: %w", a.Key, a.Severity, err)
		}
		if a.Annotations, err = unencodeLabels(annotations); err != nil {
			return NotifiedAlert{}, fmt.Errorf("notified alert %s/%s annotations: %w", a.Key, a.Severity, err)
		}
		a.StartsAt, a.EndsAt, a.UpdatedAt = fromMs(starts), fromMs(ends), fromMs(updated)
		return a, nil
	})
}

const notificationColumns = `id, target, key, severity, fingerprint, status, dedupe_key, payload, state, attempts, last_error, created_at, next_attempt_at, expires_at, delivered_at`

// PendingNotifications returns up to limit pending notifications of a
// target, oldest first: the order they must be delivered in.
func (s *Store) PendingNotifications(ctx context.Context, target string, limit int) ([]Notification, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.query(ctx, `SELECT `+notificationColumns+` FROM notifications WHERE target = ? AND state = ? ORDER BY id LIMIT ?`,
		target, NotificationPending, limit)
	if err != nil {
		return nil, fmt.Errorf("pending notifications: %w", err)
	}
	return scanNotifications(rows, true)
}

// NotificationFilter selects notifications; empty fields match all.
type NotificationFilter struct {
	Target      string
	State       string
	Key         string
	Severity    string
	WithPayload bool
	Limit       int // default 1000
}

// Notifications returns notifications matching f, oldest first.
func (s *Store) Notifications(ctx context.Context, f NotificationFilter) ([]Notification, error) {
	q := `SELECT ` + notificationColumns + ` FROM notifications WHERE 1=1`
	var args []any
	for _, c := range []struct{ col, v string }{{"target", f.Target}, {"state", f.State}, {"key", f.Key}, {"severity", f.Severity}} {
		if c.v != "" {
			q += ` AND ` + c.col + ` = ?`
			args = append(args, c.v)
		}
	}
	if f.Limit <= 0 {
		f.Limit = 1000
	}
	q += ` ORDER BY id LIMIT ?`
	args = append(args, f.Limit)
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("notifications: %w", err)
	}
	return scanNotifications(rows, f.WithPayload)
}

// LatestNotifications returns, for every target and alert, the newest
// notification (without payload): the delivery state the API shows next
// to each alert.
func (s *Store) LatestNotifications(ctx context.Context) ([]Notification, error) {
	rows, err := s.query(ctx, `SELECT `+notificationColumns+` FROM notifications WHERE id IN
		(SELECT MAX(id) FROM notifications GROUP BY target, key, severity) ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("latest notifications: %w", err)
	}
	return scanNotifications(rows, false)
}

func scanNotifications(rows *sql.Rows, withPayload bool) ([]Notification, error) {
	return scanAll(rows, func(row rowScanner) (Notification, error) {
		var n Notification
		var payload string
		var created, next, expires, delivered int64
		if err := row.Scan(&n.ID, &n.Target, &n.Key, &n.Severity, &n.Fingerprint, &n.Status, &n.DedupeKey, &payload, &n.State,
			&n.Attempts, &n.LastError, &created, &next, &expires, &delivered); err != nil {
			return Notification{}, fmt.Errorf("scan notification: %w", err)
		}
		if withPayload {
			n.Payload = json.RawMessage(payload)
		}
		n.CreatedAt, n.NextAttemptAt, n.ExpiresAt, n.DeliveredAt = fromMs(created), fromMs(next), fromMs(expires), fromMs(delivered)
		return n, nil
	})
}

// MarkDelivered marks notifications delivered at at. Only pending rows
// change, so a row that expired meanwhile keeps its state.
func (s *Store) MarkDelivered(ctx context.Context, ids []int64, at time.Time) error {
	return s.updateNotifications(ctx, ids, `state = ?, delivered_at = ?, attempts = attempts + 1, last_error = ''`, NotificationDelivered, ms(at))
}

// MarkRetry records a failed attempt on pending notifications and when
// the next one is due.
func (s *Store) MarkRetry(ctx context.Context, ids []int64, next time.Time, lastErr string) error {
	return s.updateNotifications(ctx, ids, `attempts = attempts + 1, next_attempt_at = ?, last_error = ?`, ms(next), truncateUTF8(lastErr, 1000))
}

// MarkFailed marks notifications the receiver refused for good.
func (s *Store) MarkFailed(ctx context.Context, ids []int64, lastErr string) error {
	return s.updateNotifications(ctx, ids, `state = ?, attempts = attempts + 1, last_error = ?`, NotificationFailed, truncateUTF8(lastErr, 1000))
}

func (s *Store) updateNotifications(ctx context.Context, ids []int64, set string, args ...any) error {
	if len(ids) == 0 {
		return nil
	}
	q := `UPDATE notifications SET ` + set + ` WHERE state = ? AND id IN (` + inPlaceholders(len(ids)) + `)`
	all := append(args, NotificationPending)
	for _, id := range ids {
		all = append(all, id)
	}
	if _, err := s.exec(ctx, q, all...); err != nil {
		return fmt.Errorf("update notifications: %w", err)
	}
	return nil
}

// ExpireNotifications marks pending notifications past their expiry as
// expired and returns how many per target.
func (s *Store) ExpireNotifications(ctx context.Context, now time.Time) (map[string]int, error) {
	out := map[string]int{}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, s.dialect.rebind(`SELECT target, COUNT(*) FROM notifications WHERE state = ? AND expires_at <= ? GROUP BY target`),
			NotificationPending, ms(now))
		if err != nil {
			return err
		}
		for rows.Next() {
			var target string
			var n int
			if err := rows.Scan(&target, &n); err != nil {
				rows.Close()
				return err
			}
			out[target] = n
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(out) == 0 {
			return nil
		}
		_, err = s.txExec(ctx, tx, `UPDATE notifications SET state = ? WHERE state = ? AND expires_at <= ?`, NotificationExpired, NotificationPending, ms(now))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("expire notifications: %w", err)
	}
	return out, nil
}

// PruneNotifications deletes settled (not pending) notifications created
// before before.
func (s *Store) PruneNotifications(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.exec(ctx, `DELETE FROM notifications WHERE state <> ? AND created_at < ?`, NotificationPending, ms(before))
	if err != nil {
		return 0, fmt.Errorf("prune notifications: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}

// NotificationCounts returns the number of notifications per target and
// state.
func (s *Store) NotificationCounts(ctx context.Context) (map[string]map[string]int, error) {
	rows, err := s.query(ctx, `SELECT target, state, COUNT(*) FROM notifications GROUP BY target, state`)
	if err != nil {
		return nil, fmt.Errorf("notification counts: %w", err)
	}
	defer rows.Close()
	out := map[string]map[string]int{}
	for rows.Next() {
		var target, state string
		var n int
		if err := rows.Scan(&target, &state, &n); err != nil {
			return nil, fmt.Errorf("notification counts: %w", err)
		}
		if out[target] == nil {
			out[target] = map[string]int{}
		}
		out[target][state] = n
	}
	return out, rows.Err()
}

// Incident is a service's trouble from the first page to the last
// resolution: the alerts it grouped and its timeline.
type Incident struct {
	ID      int64
	Service string
	// Cause is the kind of trouble within the service (the SLO category,
	// "no data"): a service has at most one open incident per cause, so a
	// memory leak does not merge into another SLO class's bot attack.
	// Written at creation only; filter on it with IncidentFilter.Cause.
	Cause    string
	Title    string
	Severity string
	State    string // IncidentOpen or IncidentClosed
	OpenedAt time.Time
	// FirstBadAt is the first bad minute before detection.
	FirstBadAt time.Time
	DetectedAt time.Time
	AckedAt    time.Time
	AckedBy    string
	AckNote    string
	ResolvedAt time.Time
	UpdatedAt  time.Time
	// Alerts and Events are loaded by Incident and by list queries that
	// ask for them.
	Alerts []IncidentAlert
	Events []IncidentEvent
}

// Incident states.
const (
	IncidentOpen   = "open"
	IncidentClosed = "closed"
)

// IncidentAlert is an alert grouped into an incident.
type IncidentAlert struct {
	Key         string
	Severity    string
	Fingerprint string
	Name        string
	SLO         string
	Labels      map[string]string
	State       string // AlertFiring or AlertResolved
	FiredAt     time.Time
	ResolvedAt  time.Time
}

// IncidentEvent is one entry of an incident's timeline.
type IncidentEvent struct {
	ID       int64
	At       time.Time
	Kind     string
	Key      string
	Severity string
	Actor    string
	Detail   string
}

// CreateIncident stores a new open incident with its alerts and events
// and returns its ID.
func (s *Store) CreateIncident(ctx context.Context, inc Incident) (int64, error) {
	var id int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		state := inc.State
		if state == "" {
			state = IncidentOpen
		}
		row := tx.QueryRowContext(ctx, s.dialect.rebind(`INSERT INTO incidents (service, cause, title, severity, state, opened_at, first_bad_at, detected_at, acked_at, acked_by, ack_note, resolved_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`),
			inc.Service, inc.Cause, inc.Title, inc.Severity, state, ms(inc.OpenedAt), ms(inc.FirstBadAt), ms(inc.DetectedAt),
			ms(inc.AckedAt), inc.AckedBy, inc.AckNote, ms(inc.ResolvedAt), ms(inc.UpdatedAt))
		if err := row.Scan(&id); err != nil {
			return err
		}
		return s.writeIncidentParts(ctx, tx, id, inc.Alerts, inc.Events)
	})
	if isUniqueViolation(err) {
		// Another replica opened the service's incident first.
		return 0, fmt.Errorf("create incident: an incident of %q (%s) is already open: %w", inc.Service, inc.Cause, ErrConflict)
	}
	if err != nil {
		return 0, fmt.Errorf("create incident: %w", err)
	}
	return id, nil
}

// IncidentUpdate changes an incident: alerts are upserted, events
// appended, and Close closes it at ResolvedAt. Acknowledgement fields are
// never touched here (see AckIncident).
type IncidentUpdate struct {
	ID         int64
	Severity   string // unchanged when empty
	Close      bool
	ResolvedAt time.Time
	UpdatedAt  time.Time
	Alerts     []IncidentAlert
	Events     []IncidentEvent
}

// UpdateIncident applies u in one transaction. It returns ErrNotFound for
// an unknown incident and ErrConflict when it is already closed.
func (s *Store) UpdateIncident(ctx context.Context, u IncidentUpdate) error {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var state string
		if err := tx.QueryRowContext(ctx, s.dialect.rebind(`SELECT state FROM incidents WHERE id = ?`), u.ID).Scan(&state); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return ErrNotFound
			}
			return err
		}
		if state != IncidentOpen {
			return ErrConflict
		}
		set, args := `updated_at = ?`, []any{ms(u.UpdatedAt)}
		if u.Severity != "" {
			set += `, severity = ?`
			args = append(args, u.Severity)
		}
		if u.Close {
			set += `, state = ?, resolved_at = ?`
			args = append(args, IncidentClosed, ms(u.ResolvedAt))
		}
		args = append(args, u.ID)
		if _, err := s.txExec(ctx, tx, `UPDATE incidents SET `+set+` WHERE id = ?`, args...); err != nil {
			return err
		}
		return s.writeIncidentParts(ctx, tx, u.ID, u.Alerts, u.Events)
	})
	if err != nil {
		return fmt.Errorf("update incident %d: %w", u.ID, err)
	}
	return nil
}

func (s *Store) writeIncidentParts(ctx context.Context, tx *sql.Tx, id int64, alerts []IncidentAlert, events []IncidentEvent) error {
	for _, a := range alerts {
		labels, err := encodeLabels(a.Labels)
		if err != nil {
			return err
		}
		if _, err := s.txExec(ctx, tx, `INSERT INTO incident_alerts (incident_id, key, severity, fingerprint, name, slo, labels, state, fired_at, resolved_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (incident_id, key, severity) DO UPDATE SET fingerprint = excluded.fingerprint, name = excluded.name, slo = excluded.slo,
			labels = excluded.labels, state = excluded.state, fired_at = excluded.fired_at, resolved_at = excluded.resolved_at`,
			id, a.Key, a.Severity, a.Fingerprint, a.Name, a.SLO, labels, a.State, ms(a.FiredAt), ms(a.ResolvedAt)); err != nil {
			return err
		}
	}
	for _, e := range events {
		if _, err := s.txExec(ctx, tx, `INSERT INTO incident_events (incident_id, at, kind, key, severity, actor, detail) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			id, ms(e.At), e.Kind, e.Key, e.Severity, e.Actor, e.Detail); err != nil {
			return err
		}
	}
	return nil
}

// AckIncident acknowledges an open incident. It is idempotent: an
// incident acknowledged before is returned unchanged with changed false.
// A closed incident gives ErrConflict, an unknown one ErrNotFound.
func (s *Store) AckIncident(ctx context.Context, id int64, by, note string, at time.Time) (inc *Incident, changed bool, err error) {
	err = s.tx(ctx, func(tx *sql.Tx) error {
		res, err := s.txExec(ctx, tx, `UPDATE incidents SET acked_at = ?, acked_by = ?, ack_note = ?, updated_at = ? WHERE id = ? AND state = ? AND acked_at = 0`,
			ms(at), by, note, ms(at), id, IncidentOpen)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			changed = true
			_, err := s.txExec(ctx, tx, `INSERT INTO incident_events (incident_id, at, kind, key, severity, actor, detail) VALUES (?, ?, ?, '', '', ?, ?)`,
				id, ms(at), "acknowledged", by, note)
			return err
		}
		var state string
		if err := tx.QueryRowContext(ctx, s.dialect.rebind(`SELECT state FROM incidents WHERE id = ?`), id).Scan(&state); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return ErrNotFound
			}
			return err
		}
		if state != IncidentOpen {
			return ErrConflict
		}
		return nil // acknowledged before: idempotent
	})
	if err != nil {
		return nil, false, fmt.Errorf("acknowledge incident %d: %w", id, err)
	}
	inc, err = s.Incident(ctx, id)
	return inc, changed, err
}

const incidentColumns = `id, service, title, severity, state, opened_at, first_bad_at, detected_at, acked_at, acked_by, ack_note, resolved_at, updated_at`

func scanIncident(r rowScanner) (*Incident, error) {
	var inc Incident
	var opened, firstBad, detected, acked, resolved, updated int64
	if err := r.Scan(&inc.ID, &inc.Service, &inc.Title, &inc.Severity, &inc.State, &opened, &firstBad, &detected, &acked,
		&inc.AckedBy, &inc.AckNote, &resolved, &updated); err != nil {
		return nil, err
	}
	inc.OpenedAt, inc.FirstBadAt, inc.DetectedAt = fromMs(opened), fromMs(firstBad), fromMs(detected)
	inc.AckedAt, inc.ResolvedAt, inc.UpdatedAt = fromMs(acked), fromMs(resolved), fromMs(updated)
	return &inc, nil
}

// Incident returns an incident with its alerts and timeline, or
// ErrNotFound.
func (s *Store) Incident(ctx context.Context, id int64) (*Incident, error) {
	inc, err := scanIncident(s.queryRow(ctx, `SELECT `+incidentColumns+` FROM incidents WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("incident %d: %w", id, err)
	}
	if err := s.loadIncidentParts(ctx, []*Incident{inc}, true); err != nil {
		return nil, err
	}
	return inc, nil
}

// IncidentFilter selects incidents; empty fields match all.
type IncidentFilter struct {
	Service string
	// HasService filters on Service even when it is empty (the incidents
	// of the telemetry source have no service).
	HasService bool
	// Cause, with HasCause, selects one cause (see Incident.Cause).
	Cause    string
	HasCause bool
	State    string
	// OpenedFrom and OpenedTo bound the opening time, [from, to).
	OpenedFrom, OpenedTo time.Time
	// WithAlerts loads each incident's alerts; WithEvents its timeline.
	WithAlerts, WithEvents bool
	Limit                  int // default 1000, at most 10000
	Offset                 int // incidents skipped, newest first
}

// incidentWhere is the WHERE clause of f and its arguments.
func incidentWhere(f IncidentFilter) (string, []any) {
	q := ` WHERE 1=1`
	var args []any
	if f.Service != "" || f.HasService {
		q += ` AND service = ?`
		args = append(args, f.Service)
	}
	if f.Cause != "" || f.HasCause {
		q += ` AND cause = ?`
		args = append(args, f.Cause)
	}
	if f.State != "" {
		q += ` AND state = ?`
		args = append(args, f.State)
	}
	if !f.OpenedFrom.IsZero() {
		q += ` AND opened_at >= ?`
		args = append(args, ms(f.OpenedFrom))
	}
	if !f.OpenedTo.IsZero() {
		q += ` AND opened_at < ?`
		args = append(args, ms(f.OpenedTo))
	}
	return q, args
}

// CountIncidents returns how many incidents match f, Limit and Offset
// aside.
func (s *Store) CountIncidents(ctx context.Context, f IncidentFilter) (int, error) {
	where, args := incidentWhere(f)
	var n int
	if err := s.queryRow(ctx, `SELECT COUNT(*) FROM incidents`+where, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count incidents: %w", err)
	}
	return n, nil
}

// Incidents returns incidents matching f, newest first.
func (s *Store) Incidents(ctx context.Context, f IncidentFilter) ([]*Incident, error) {
	where, args := incidentWhere(f)
	q := `SELECT ` + incidentColumns + ` FROM incidents` + where
	limit := f.Limit
	if limit <= 0 {
		limit = 1000
	}
	limit = min(limit, 10000)
	q += ` ORDER BY opened_at DESC, id DESC LIMIT ? OFFSET ?`
	args = append(args, limit, max(f.Offset, 0))
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("incidents: %w", err)
	}
	out, err := scanAll(rows, scanIncident)
	if err != nil {
		return nil, fmt.Errorf("incidents: %w", err)
	}
	if f.WithAlerts || f.WithEvents {
		if err := s.loadIncidentParts(ctx, out, f.WithEvents); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// OpenIncidentsWithAlert returns the open incidents an alert is grouped
// into (with their alerts).
func (s *Store) OpenIncidentsWithAlert(ctx context.Context, key, severity string) ([]*Incident, error) {
	rows, err := s.query(ctx, `SELECT `+prefixColumns("i.", incidentColumns)+` FROM incidents i
		JOIN incident_alerts a ON a.incident_id = i.id
		WHERE i.state = ? AND a.key = ? AND a.severity = ? ORDER BY i.id`, IncidentOpen, key, severity)
	if err != nil {
		return nil, fmt.Errorf("incidents with alert: %w", err)
	}
	out, err := scanAll(rows, scanIncident)
	if err != nil {
		return nil, fmt.Errorf("incidents with alert: %w", err)
	}
	if err := s.loadIncidentParts(ctx, out, false); err != nil {
		return nil, err
	}
	return out, nil
}

// ReopenIncident opens a closed incident again at at, with alerts
// upserted and events appended: a trouble that came back soon after its
// incident closed. It returns ErrNotFound for an unknown incident and
// ErrConflict when it is open already or its service has another open
// incident of its cause.
func (s *Store) ReopenIncident(ctx context.Context, id int64, at time.Time, alerts []IncidentAlert, events []IncidentEvent) error {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := s.txExec(ctx, tx, `UPDATE incidents SET state = ?, resolved_at = 0, updated_at = ? WHERE id = ? AND state = ?`,
			IncidentOpen, ms(at), id, IncidentClosed)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			var state string
			if err := tx.QueryRowContext(ctx, s.dialect.rebind(`SELECT state FROM incidents WHERE id = ?`), id).Scan(&state); errors.Is(err, sql.ErrNoRows) {
				return ErrNotFound
			}
			return ErrConflict
		}
		return s.writeIncidentParts(ctx, tx, id, alerts, events)
	})
	if isUniqueViolation(err) {
		err = ErrConflict
	}
	if err != nil {
		return fmt.Errorf("reopen incident %d: %w", id, err)
	}
	return nil
}

// ResolveClosedIncidentAlert records an alert's resolution in the closed
// incidents that still list it as firing: an incident closes once its
// SLOs have recovered for the resolve hold, while the long window of a
// burn-rate alert may keep it firing for hours after. Their timelines and
// states are left as they were.
func (s *Store) ResolveClosedIncidentAlert(ctx context.Context, key, severity string, at time.Time) error {
	if _, err := s.exec(ctx, `UPDATE incident_alerts SET state = ?, resolved_at = ?
		WHERE key = ? AND severity = ? AND state = ? AND incident_id IN (SELECT id FROM incidents WHERE state = ?)`,
		AlertResolved, ms(at), key, severity, AlertFiring, IncidentClosed); err != nil {
		return fmt.Errorf("resolve alert %s (%s) of closed incidents: %w", key, severity, err)
	}
	return nil
}

// AlertInIncident reports whether an incident, open or closed, lists an
// alert as firing: the incident it belongs to while it fires.
func (s *Store) AlertInIncident(ctx context.Context, key, severity string) (bool, error) {
	var n int
	if err := s.queryRow(ctx, `SELECT COUNT(*) FROM incident_alerts WHERE key = ? AND severity = ? AND state = ?`,
		key, severity, AlertFiring).Scan(&n); err != nil {
		return false, fmt.Errorf("incidents of alert %s (%s): %w", key, severity, err)
	}
	return n > 0, nil
}

func prefixColumns(p, cols string) string {
	parts := strings.Split(cols, ", ")
	for i := range parts {
		parts[i] = p + parts[i]
	}
	return strings.Join(parts, ", ")
}

func (s *Store) loadIncidentParts(ctx context.Context, incs []*Incident, withEvents bool) error {
	if len(incs) == 0 {
		return nil
	}
	byID := make(map[int64]*Incident, len(incs))
	args := make([]any, 0, len(incs))
	for _, inc := range incs {
		byID[inc.ID] = inc
		inc.Alerts = []IncidentAlert{}
		args = append(args, inc.ID)
	}
	// Large lists are loaded in chunks to stay under parameter limits.
	for start := 0; start < len(args); start += 500 {
		chunk := args[start:min(start+500, len(args))]
		ph := inPlaceholders(len(chunk))
		rows, err := s.query(ctx, `SELECT incident_id, key, severity, fingerprint, name, slo, labels, state, fired_at, resolved_at
			FROM incident_alerts WHERE incident_id IN (`+ph+`) ORDER BY fired_at, key, severity`, chunk...)
		if err != nil {
			return fmt.Errorf("incident alerts: %w", err)
		}
		for rows.Next() {
			var id, fired, resolved int64
			var a IncidentAlert
			var labels string
			if err := rows.Scan(&id, &a.Key, &a.Severity, &a.Fingerprint, &a.Name, &a.SLO, &labels, &a.State, &fired, &resolved); err != nil {
				rows.Close()
				return fmt.Errorf("incident alerts: %w", err)
			}
			if a.Labels, err = unencodeLabels(labels); err != nil {
				rows.Close()
				return fmt.Errorf("incident %d alert labels: %w", id, err)
			}
			a.FiredAt, a.ResolvedAt = fromMs(fired), fromMs(resolved)
			byID[id].Alerts = append(byID[id].Alerts, a)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("incident alerts: %w", err)
		}
		if !withEvents {
			continue
		}
		rows, err = s.query(ctx, `SELECT incident_id, id, at, kind, key, severity, actor, detail
			FROM incident_events WHERE incident_id IN (`+ph+`) ORDER BY at, id`, chunk...)
		if err != nil {
			return fmt.Errorf("incident events: %w", err)
		}
		for rows.Next() {
			var id, at int64
			var e IncidentEvent
			if err := rows.Scan(&id, &e.ID, &at, &e.Kind, &e.Key, &e.Severity, &e.Actor, &e.Detail); err != nil {
				rows.Close()
				return fmt.Errorf("incident events: %w", err)
			}
			e.At = fromMs(at)
			byID[id].Events = append(byID[id].Events, e)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("incident events: %w", err)
		}
	}
	return nil
}

// inPlaceholders returns n placeholders for an IN list: "?, ?, ?".
func inPlaceholders(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat("?, ", n-1) + "?"
}

func encodeLabels(m map[string]string) (string, error) {
	if m == nil {
		m = map[string]string{}
	}
	b, err := json.Marshal(m)
	return string(b), err
}

func unencodeLabels(s string) (map[string]string, error) {
	m := map[string]string{}
	if s == "" {
		return m, nil
	}
	err := json.Unmarshal([]byte(s), &m)
	return m, err
}

func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	// Cut on a rune boundary.
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}
