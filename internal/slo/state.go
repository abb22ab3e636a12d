package slo

import "time"

// AlertState is where an alert is in its life.
type AlertState string

// The alert states, as Prometheus names them.
const (
	Inactive AlertState = "inactive"
	Pending  AlertState = "pending"
	Firing   AlertState = "firing"
	Resolved AlertState = "resolved"
)

// Alert is the state of one alert (an SLO and a severity).
type Alert struct {
	State AlertState `json:"state"`
	// ActiveSince is when the condition started to hold (pending start).
	ActiveSince time.Time `json:"activeSince,omitzero"`
	// FiredAt is when the alert last went to firing.
	FiredAt time.Time `json:"firedAt,omitzero"`
	// ResolvedAt is when it last resolved.
	ResolvedAt time.Time `json:"resolvedAt,omitzero"`
}

// KeepResolved is how long a resolved alert stays resolved before it
// becomes inactive, so receivers see the resolution (Prometheus does the
// same for 15 minutes).
const KeepResolved = 15 * time.Minute

// Step advances the alert at now, given whether its condition holds and
// how long it must hold (forDur) before firing. It returns the new state
// and whether it changed.
func (a Alert) Step(now time.Time, active bool, forDur time.Duration) (Alert, bool) {
	prev := a.State
	if prev == "" {
		prev = Inactive
		a.State = Inactive
	}
	switch {
	case active && (a.State == Inactive || a.State == Resolved):
		a.ActiveSince = now
		a.State = Pending
		if forDur <= 0 {
			a.State, a.FiredAt = Firing, now
		}
	case active && a.State == Pending:
		if now.Sub(a.ActiveSince) >= forDur {
			a.State, a.FiredAt = Firing, now
		}
	case !active && a.State == Pending:
		a.State, a.ActiveSince = Inactive, time.Time{}
	case !active && a.State == Firing:
		a.State, a.ResolvedAt = Resolved, now
	case !active && a.State == Resolved:
		if now.Sub(a.ResolvedAt) >= KeepResolved {
			a.State = Inactive
		}
	}
	return a, a.State != prev
}
