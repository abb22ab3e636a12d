// Package alert acts on the engine's alert transitions: it turns them into
// notifications for Alertmanager (API v2) and generic webhooks, and groups
// them into incidents.
//
// Data flow: engine.OnTransitions → Dispatcher.OnTransitions (build the
// alert, dedupe by fingerprint, write one outbox row per receiver in one
// transaction) → one worker per receiver (expire, send with a per-target
// timeout, retry with exponential backoff and jitter, mark delivered after
// a 2xx) → Alertmanager or the webhook. Rows survive restarts, so delivery
// is at least once. Alertmanager also gets every firing alert again each
// resend interval, as it expects from Prometheus. Incidents.OnTransitions
// opens an incident when a page fires, groups further alerts of the same
// service into it and closes it when they have all resolved; its timeline
// gives time to detect and time to repair.
package alert

import (
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/prometheus/common/model"

	"github.com/qsp-dev/qsp/internal/engine"
)

// Alert is one alert as receivers see it, in Alertmanager's model.
type Alert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	StartsAt    time.Time         `json:"startsAt"`
	// EndsAt is the resolution time of a resolved alert. Firing alerts
	// sent to Alertmanager get now + 4 resend intervals at send time.
	EndsAt       time.Time `json:"endsAt,omitzero"`
	GeneratorURL string    `json:"generatorURL"`
}

// Fingerprint identifies an alert by its labels exactly as Alertmanager
// does (FNV-1a over the sorted label pairs), so QSP's dedupe, its API and
// Alertmanager's API agree on which alert is which. It is stable across
// restarts and versions.
func Fingerprint(labels map[string]string) string {
	ls := make(model.LabelSet, len(labels))
	for k, v := range labels {
		ls[model.LabelName(k)] = model.LabelValue(v)
	}
	return ls.Fingerprint().String()
}

// Notification statuses.
const (
	StatusFiring   = "firing"
	StatusResolved = "resolved"
)

// Message is one notification: an alert event with the transition that
// caused it and the SLO's status at that moment. It is stored in the
// outbox as JSON when the transition happens, and it is exactly the body a
// webhook receives, so a retry sends the same bytes.
type Message struct {
	// Version of the message format.
	Version string `json:"version"`
	// ID names the event (fingerprint, status, time): the same for every
	// receiver and every retry, so receivers can drop duplicates.
	ID          string `json:"id"`
	Status      string `json:"status"` // firing or resolved
	Fingerprint string `json:"fingerprint"`
	Alert
	Transition TransitionInfo `json:"transition"`
	Summary    *StatusSummary `json:"summary,omitempty"`

	// raw is the message as stored in the outbox, which webhooks send as
	// is: the same bytes on every retry, fields of newer versions kept.
	raw []byte
}

// body returns the JSON a webhook receives: the stored bytes, or the
// encoding of a message that was never stored.
func (m *Message) body() ([]byte, error) {
	if m.raw != nil {
		return m.raw, nil
	}
	return json.Marshal(m)
}

// MessageVersion is the current Message format.
const MessageVersion = "1"

// TransitionInfo is the engine transition a message reports.
type TransitionInfo struct {
	Key       string    `json:"key"`
	SLO       string    `json:"slo,omitempty"`
	Service   string    `json:"service,omitempty"`
	Severity  string    `json:"severity"` // page, ticket or no_data
	Alert     string    `json:"alert"`
	From      string    `json:"from"`
	To        string    `json:"to"`
	At        time.Time `json:"at"`
	Condition string    `json:"condition,omitempty"`
}

// StatusSummary is the part of the SLO's status a receiver needs to judge
// an alert without calling back.
type StatusSummary struct {
	State     string  `json:"state"`
	Reason    string  `json:"reason,omitempty"`
	Objective float64 `json:"objective"`
	Window    string  `json:"window"`
	// SLI over the SLO window; nil without events.
	SLI             *float64 `json:"sli"`
	BudgetRemaining float64  `json:"budgetRemaining"` // ratio of the budget left
	// BurnRates by window name ("1h"), for windows with events.
	BurnRates map[string]float64 `json:"burnRates,omitempty"`
	DataUntil time.Time          `json:"dataUntil,omitzero"`
}

func summarize(st *engine.Status) *StatusSummary {
	if st == nil {
		return nil
	}
	s := &StatusSummary{State: string(st.State), Reason: st.Reason, Objective: st.Objective, Window: st.Window,
		SLI: st.SLI, BudgetRemaining: st.Budget.RemainingRatio, DataUntil: st.DataUntil}
	for _, w := range st.Windows {
		if w.BurnRate != nil {
			if s.BurnRates == nil {
				s.BurnRates = map[string]float64{}
			}
			s.BurnRates[w.Name] = *w.BurnRate
		}
	}
	return s
}

// eventID names an alert event.
func eventID(fingerprint, status string, at time.Time) string {
	return fingerprint + ":" + status + ":" + strconv.FormatInt(at.UnixMilli(), 10)
}

// Errors.
var (
	// ErrNotFound is returned for an unknown incident.
	ErrNotFound = errors.New("not found")
	// ErrClosed is returned when acknowledging a closed incident.
	ErrClosed = errors.New("incident is closed")
)
