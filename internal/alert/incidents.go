package alert

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/slo"
	"github.com/qsp-dev/qsp/internal/spec"
	"github.com/qsp-dev/qsp/internal/store"
)

// EngineView is what incidents need from the engine; *engine.Engine
// implements it. Both methods are safe to call from OnTransitions.
type EngineView interface {
	// BadSince returns the first minute of the current stretch of bad
	// minutes of an SLO group (see engine.Engine.BadSince).
	BadSince(key string, threshold float64) (time.Time, bool)
	// Snapshot returns the statuses after the last cycle.
	Snapshot() *engine.Snapshot
}

// IncidentOptions configure Incidents. Store is required.
type IncidentOptions struct {
	Store *store.Store
	// Engine gives the first bad minute of a paging SLO; without it the
	// alert's pending start is used.
	Engine EngineView
	// Specs returns the current spec set, for labels and tiers.
	Specs       func() *spec.Set
	ExternalURL string
	Logger      *slog.Logger
	Registerer  prometheus.Registerer
	// Now is the clock of acknowledgements and of the resolve hold.
	Now func() time.Time
	// ResolveHold is how long every SLO of an open incident must stay
	// back within objective on its shortest alert window before OnCycle resolves
	// it, though long-window alerts still fire. Zero means
	// DefaultResolveHold.
	ResolveHold time.Duration
	// ReopenWithin is how soon after an incident closed a page of one of
	// its SLO groups reopens it instead of opening another. Zero means
	// DefaultReopenWithin.
	ReopenWithin time.Duration
}

// DefaultReopenWithin is the reopen window when none is configured.
const DefaultReopenWithin = time.Hour

// DefaultResolveHold is the resolve hold when none is configured.
const DefaultResolveHold = 10 * time.Minute

// Incidents groups alerts into incidents and keeps their timelines.
//
// An incident opens when a page fires: a burn-rate page, a telemetry
// alert whose spec pages on no data, or QSPSourceDown (the incident of the
// telemetry source, with no service). The service's alerts firing at that
// moment join it, and so does every further alert of the service that
// fires while it is open, tickets included. It closes when every SLO of
// it has been back within objective on its short windows for the resolve
// hold, or when all its alerts have resolved and none fired again for
// the hold (see OnCycle); a page of one of its SLO groups within
// ReopenWithin of that reopens it. A page of another SLO group after the
// incident's SLOs recovered is a new trouble: it closes the old incident
// and opens its own. Tickets alone never open one.
// Its timeline has the first bad minute, the detection (the page firing),
// the acknowledgement (by whom, via the API) and the resolution, which
// give time to detect (detected - first bad) and time to repair
// (resolved - first bad).
type Incidents struct {
	opts   IncidentOptions
	logger *slog.Logger
	ttd    *prometheus.HistogramVec
	ttr    *prometheus.HistogramVec
	opened *prometheus.CounterVec
	// mu serialises OnTransitions and OnCycle: one service's incident is
	// looked up and changed by one call at a time.
	mu sync.Mutex
	// recovered is when each open incident's SLOs were last seen all
	// back within objective, by incident ID; guarded by mu.
	recovered map[int64]time.Time
}

// Timeline event kinds.
const (
	EventFirstBad      = "first_bad"
	EventDetected      = "detected"
	EventAlertFired    = "alert_fired"
	EventAlertResolved = "alert_resolved"
	EventAcknowledged  = "acknowledged"
	EventResolved      = "resolved"
	EventReopened      = "reopened"
)

// NewIncidents checks the options and builds the incident keeper.
func NewIncidents(opts IncidentOptions) (*Incidents, error) {
	if opts.Store == nil {
		return nil, errors.New("incidents: no store")
	}
	if opts.Specs == nil {
		opts.Specs = func() *spec.Set { return nil }
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.ResolveHold <= 0 {
		opts.ResolveHold = DefaultResolveHold
	}
	if opts.ReopenWithin <= 0 {
		opts.ReopenWithin = DefaultReopenWithin
	}
	i := &Incidents{opts: opts, logger: opts.Logger.With("component", "incidents"), recovered: map[int64]time.Time{}}
	// Buckets from a good detection (under 2 minutes) to a slow burn found
	// by a ticket-sized window, and from a quick rollback to a long fix.
	i.ttd = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "qsp_incident_time_to_detect_seconds",
		Help:    "Time from an incident's first bad minute to the page that opened it, by service.",
		Buckets: []float64{30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400}}, []string{"service"})
	i.ttr = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "qsp_incident_time_to_repair_seconds",
		Help:    "Time from an incident's first bad minute to the resolution of its last alert, by service.",
		Buckets: []float64{60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 259200}}, []string{"service"})
	i.opened = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "qsp_incidents_opened_total",
		Help: "Incidents opened, by service."}, []string{"service"})
	opts.Registerer.MustRegister(i.ttd, i.ttr, i.opened)
	return i, nil
}

// OnTransitions opens, grows and closes incidents. It is called from the
// engine's goroutine after the dispatcher; a store error is logged and
// the transition skipped, never retried into a wrong timeline.
func (i *Incidents) OnTransitions(ctx context.Context, ts []engine.Transition) {
	i.mu.Lock()
	defer i.mu.Unlock()
	set := i.opts.Specs()
	for _, t := range ts {
		var err error
		switch {
		case t.To == slo.Firing:
			err = i.fired(ctx, t, set, false)
		case t.To == slo.Resolved && t.From == slo.Firing:
			err = i.resolved(ctx, t)
		}
		if err != nil {
			i.logger.Error("update incidents", "key", t.Key, "severity", t.Severity, "to", t.To, "err", err)
		}
	}
}

func (i *Incidents) fired(ctx context.Context, t engine.Transition, set *spec.Set, retried bool) error {
	a := Build(t, set, i.opts.ExternalURL, "")
	ia := store.IncidentAlert{Key: t.Key, Severity: t.Severity, Fingerprint: Fingerprint(a.Labels), Name: t.Alert, SLO: t.SLO,
		Labels: a.Labels, State: store.AlertFiring, FiredAt: t.At}
	cause := causeOf(t, set)
	firstBad := i.firstBad(t)
	open, err := i.opts.Store.Incidents(ctx, store.IncidentFilter{Service: t.Service, HasService: true, Cause: cause, HasCause: true, State: store.IncidentOpen, WithAlerts: true, Limit: 1})
	if err != nil {
		return err
	}
	if len(open) == 1 {
		if since, ok := i.newTrouble(open[0], t, firstBad); ok {
			// The incident's SLOs had recovered before this trouble
			// began, and it is another SLO's: the old incident is over
			// (one open incident per service and cause).
			detail := fmt.Sprintf("every SLO of the incident back within objective since %s UTC; %s began a new trouble at %s UTC",
				since.UTC().Format("15:04"), t.SLO, firstBad.UTC().Format("15:04"))
			if err := i.close(ctx, open[0], t.At, since, "superseded", detail); err != nil {
				return err
			}
			open = nil
		}
	}
	if len(open) == 0 {
		// Another cause's incident whose trouble began at about the same
		// time is the same trouble seen by another SLO: an outage burns
		// availability and latency together.
		all, err := i.opts.Store.Incidents(ctx, store.IncidentFilter{Service: t.Service, HasService: true, State: store.IncidentOpen, WithAlerts: true, Limit: 20})
		if err != nil {
			return err
		}
		for _, o := range all {
			if _, recovering := i.newTrouble(o, t, firstBad); recovering {
				continue
			}
			if d := firstBad.Sub(o.FirstBadAt); d < sameTrouble && d > -sameTrouble {
				open = []*store.Incident{o}
				break
			}
		}
	}
	tier := Tier(t, set)
	if len(open) == 1 {
		return i.opts.Store.UpdateIncident(ctx, store.IncidentUpdate{
			ID: open[0].ID, UpdatedAt: t.At, Alerts: []store.IncidentAlert{ia},
			Events: []store.IncidentEvent{{At: t.At, Kind: EventAlertFired, Key: t.Key, Severity: t.Severity, Detail: alertDetail(t, tier)}},
		})
	}
	if tier != spec.SeverityPage {
		return nil
	}
	if reopened, err := i.reopen(ctx, t, cause, ia, tier); err != nil || reopened {
		return err
	}
	inc := store.Incident{
		Service: t.Service, Cause: cause, Title: i.title(ctx, t, set, firstBad), Severity: spec.SeverityPage, OpenedAt: t.At, FirstBadAt: firstBad, DetectedAt: t.At, UpdatedAt: t.At,
		Alerts: []store.IncidentAlert{ia},
		Events: []store.IncidentEvent{
			{At: firstBad, Kind: EventFirstBad, Key: t.Key, Severity: t.Severity, Detail: "first bad minute"},
			{At: t.At, Kind: EventDetected, Key: t.Key, Severity: t.Severity, Detail: alertDetail(t, tier)},
		},
	}
	// Alerts of the service already firing (a ticket that came first) are
	// the same trouble: they join, and the incident closes after them.
	for _, other := range i.firingOf(t, set) {
		if other.cause != cause {
			continue
		}
		// An alert still firing for an earlier incident (the long
		// window of its page) is that trouble's, not this one's.
		if taken, err := i.opts.Store.AlertInIncident(ctx, other.alert.Key, other.alert.Severity); err != nil {
			return err
		} else if taken {
			continue
		}
		inc.Alerts = append(inc.Alerts, other.alert)
		inc.Events = append(inc.Events, store.IncidentEvent{At: other.alert.FiredAt, Kind: EventAlertFired, Key: other.alert.Key,
			Severity: other.alert.Severity, Detail: other.detail})
	}
	id, err := i.opts.Store.CreateIncident(ctx, inc)
	if errors.Is(err, store.ErrConflict) && !retried {
		// A replica sharing the store opened the service's incident
		// meanwhile: join it.
		return i.fired(ctx, t, set, true)
	}
	if err != nil {
		return err
	}
	i.opened.WithLabelValues(t.Service).Inc()
	i.ttd.WithLabelValues(t.Service).Observe(t.At.Sub(firstBad).Seconds())
	i.logger.Info("incident opened", "id", id, "service", t.Service, "key", t.Key, "time_to_detect", t.At.Sub(firstBad))
	return nil
}

// newTrouble reports whether a page of t, whose trouble began at
// firstBad, is a trouble of its own rather than part of the open
// incident inc: inc has been recovering (every SLO back within objective,
// or every alert resolved) since before firstBad, and t is of an SLO
// group inc does not hold. A group of inc firing again is the same
// trouble coming back. since is when inc began recovering.
func (i *Incidents) newTrouble(inc *store.Incident, t engine.Transition, firstBad time.Time) (since time.Time, ok bool) {
	since, recovering := i.recovered[inc.ID]
	if last, done := lastResolved(inc.Alerts); done && (!recovering || last.Before(since)) {
		since, recovering = last, true
	}
	if !recovering || firstBad.Before(since) || holds(inc, t.Key) {
		return time.Time{}, false
	}
	return since, true
}

// holds reports whether an incident has an alert of SLO group key.
func holds(inc *store.Incident, key string) bool {
	return slices.ContainsFunc(inc.Alerts, func(a store.IncidentAlert) bool { return a.Key == key })
}

// reopen opens the service's last closed incident of the cause again
// when t's group is one of its alerts' and it closed within ReopenWithin:
// a trouble that comes back (a leaking worker killed and restarted, a
// flapping dependency) is one incident, not one per bout.
func (i *Incidents) reopen(ctx context.Context, t engine.Transition, cause string, ia store.IncidentAlert, tier string) (bool, error) {
	last, err := i.opts.Store.Incidents(ctx, store.IncidentFilter{Service: t.Service, HasService: true, Cause: cause, HasCause: true,
		State: store.IncidentClosed, WithAlerts: true, Limit: 1})
	if err != nil || len(last) == 0 {
		return false, err
	}
	inc := last[0]
	if gap := t.At.Sub(inc.ResolvedAt); gap < 0 || gap > i.opts.ReopenWithin || !holds(inc, t.Key) {
		return false, nil
	}
	detail := fmt.Sprintf("%s fired again %s after the incident resolved: reopened (%s)", t.Key, humanGap(t.At.Sub(inc.ResolvedAt)), alertDetail(t, tier))
	err = i.opts.Store.ReopenIncident(ctx, inc.ID, t.At, []store.IncidentAlert{ia},
		[]store.IncidentEvent{{At: t.At, Kind: EventReopened, Key: t.Key, Severity: t.Severity, Detail: detail}})
	if errors.Is(err, store.ErrConflict) {
		return false, nil // a replica opened one meanwhile: create and join it
	}
	if err != nil {
		return false, err
	}
	i.logger.Info("incident reopened", "id", inc.ID, "service", t.Service, "key", t.Key, "after", t.At.Sub(inc.ResolvedAt))
	return true, nil
}

// humanGap writes a gap between events in whole minutes, or seconds
// under one.
func humanGap(d time.Duration) string {
	if d < time.Minute {
		return d.Round(time.Second).String()
	}
	return spec.Duration(d.Round(time.Minute)).String()
}

// close closes an open incident at at, resolved since resolved (when it
// recovered: the hold confirms a recovery, it does not lengthen the
// repair), with the reason detail; ErrConflict (closed meanwhile, by a
// replica) is not an error.
func (i *Incidents) close(ctx context.Context, inc *store.Incident, at, resolved time.Time, reason, detail string) error {
	resolved = minTime(resolved, at)
	err := i.opts.Store.UpdateIncident(ctx, store.IncidentUpdate{ID: inc.ID, UpdatedAt: at, Close: true, ResolvedAt: resolved,
		Events: []store.IncidentEvent{{At: at, Kind: EventResolved, Detail: detail}}})
	delete(i.recovered, inc.ID)
	if errors.Is(err, store.ErrConflict) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("resolve incident %d: %w", inc.ID, err)
	}
	i.ttr.WithLabelValues(inc.Service).Observe(resolved.Sub(inc.FirstBadAt).Seconds())
	i.logger.Info("incident resolved", "id", inc.ID, "service", inc.Service, "reason", reason, "time_to_repair", resolved.Sub(inc.FirstBadAt))
	return nil
}

type firingAlert struct {
	alert  store.IncidentAlert
	detail string
	cause  string
}

// sameTrouble is how close two first bad minutes of one service must be
// for alerts of different causes to be one trouble.
const sameTrouble = 15 * time.Minute

// Causes of incidents besides the SLO categories.
const (
	causeNoData = "no data"
	causeSource = "telemetry source"
)

// causeOf is the trouble an alert is part of: its SLO's category (a
// bot attack on a security SLO and a memory leak on a performance SLO of
// one service are two incidents), "no data" for telemetry alerts, so one
// telemetry loss is one incident of the service.
func causeOf(t engine.Transition, set *spec.Set) string {
	switch {
	case t.Alert == engine.AlertSourceDown || t.Key == "":
		return causeSource
	case t.Severity == engine.SeverityNoData:
		return causeNoData
	case t.Status != nil && t.Status.Category != "":
		return string(t.Status.Category)
	}
	if set != nil {
		if s := set.SLO(t.SLO); s != nil {
			return string(s.Spec.Category)
		}
	}
	return ""
}

// title names an incident in words for the people it pages (see
// Title), with the service's deploy in the hour before the trouble began
// as the first suspect.
func (i *Incidents) title(ctx context.Context, t engine.Transition, set *spec.Set, firstBad time.Time) string {
	var version string
	if t.Alert != engine.AlertSourceDown && t.Key != "" && t.Severity != engine.SeverityNoData {
		deps, _, err := i.opts.Store.Deploys(ctx, store.DeployFilter{Service: t.Service, From: firstBad.Add(-time.Hour), To: firstBad.Add(time.Minute), Limit: 1})
		if err == nil && len(deps) > 0 {
			version = deps[0].Version
		}
	}
	return Title(t, set, firstBad, version)
}

// Title names the incident a page opens in words: "Checkout latency p99
// burning its error budget since 03:21 UTC, after deploy v2.14.0". t is
// the page's transition (Service, SLO, Key, Severity and Alert are
// used), firstBad the trouble's first bad minute and deployed the
// version of the service's deploy just before it ("" for none; a
// telemetry loss names none). The services' display names come from
// set, which may be nil.
func Title(t engine.Transition, set *spec.Set, firstBad time.Time, deployed string) string {
	since := firstBad.UTC().Format("15:04") + " UTC"
	svc := t.Service
	if set != nil {
		if sv := set.Service(t.Service); sv != nil && sv.Metadata.DisplayName != "" {
			svc = sv.Metadata.DisplayName
		}
	}
	svc = upperFirst(svc)
	var what string
	switch {
	case t.Alert == engine.AlertSourceDown || t.Key == "":
		return "Telemetry source down since " + since
	case t.Severity == engine.SeverityNoData:
		what = "has no telemetry"
		if t.SLO != "" {
			what = sloWords(t.Service, t.SLO) + " has no telemetry"
		}
		return strings.TrimSpace(svc+" "+what) + " since " + since
	default:
		what = sloWords(t.Service, t.SLO) + " burning its error budget"
		if t.SLO == "" {
			what = t.Alert
		}
	}
	title := strings.TrimSpace(svc+" "+what) + " since " + since
	if deployed != "" {
		title += ", after deploy " + deployed
	}
	return title
}

// sloWords writes an SLO name without its service prefix, in words:
// "checkout-latency-p99" of checkout is "latency p99".
func sloWords(service, name string) string {
	w := strings.TrimPrefix(name, service+"-")
	return strings.ReplaceAll(w, "-", " ")
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	r := []rune(s)
	return strings.ToUpper(string(r[0])) + string(r[1:])
}

// firingOf returns the other alerts of t's service firing in the engine's
// latest snapshot.
func (i *Incidents) firingOf(t engine.Transition, set *spec.Set) []firingAlert {
	if i.opts.Engine == nil || t.Service == "" {
		return nil
	}
	var out []firingAlert
	for _, st := range i.opts.Engine.Snapshot().Statuses {
		if st.Service != t.Service {
			continue
		}
		for _, as := range st.Alerts {
			if as.State != slo.Firing || (st.Key == t.Key && as.Severity == t.Severity) {
				continue
			}
			ot := engine.Transition{Key: st.Key, SLO: st.SLO, Service: st.Service, Severity: as.Severity, Alert: as.Name,
				From: slo.Pending, To: slo.Firing, At: as.FiredAt, Condition: as.Condition, Status: st}
			a := Build(ot, set, i.opts.ExternalURL, "")
			out = append(out, firingAlert{
				alert: store.IncidentAlert{Key: st.Key, Severity: as.Severity, Fingerprint: Fingerprint(a.Labels), Name: as.Name, SLO: st.SLO,
					Labels: a.Labels, State: store.AlertFiring, FiredAt: as.FiredAt},
				detail: alertDetail(ot, Tier(ot, set)),
				cause:  causeOf(ot, set),
			})
		}
	}
	return out
}

// firstBad is the start of the trouble a page reports: the first minute of
// the current stretch of minutes burning faster than the budget allows,
// the end of the last minute with telemetry for a telemetry alert, or
// when the source went down; else when the alert's condition started.
func (i *Incidents) firstBad(t engine.Transition) time.Time {
	since := t.At
	if t.Status != nil {
		if as := t.Status.Alert(t.Severity); as != nil && !as.Since.IsZero() {
			since = as.Since
		}
	}
	switch {
	case t.Alert == engine.AlertSourceDown || t.Key == "":
		if i.opts.Engine != nil {
			if sd := i.opts.Engine.Snapshot().SourceDown; sd != nil && !sd.Since.IsZero() {
				return minTime(sd.Since, t.At)
			}
		}
	case t.Severity == engine.SeverityNoData:
		if t.Status != nil && !t.Status.DataUntil.IsZero() {
			return minTime(t.Status.DataUntil, t.At)
		}
	default:
		if i.opts.Engine != nil {
			if bad, ok := i.opts.Engine.BadSince(t.Key, 1); ok {
				return minTime(bad, t.At)
			}
		}
	}
	return minTime(since, t.At)
}

// resolved records an alert's resolution in the incidents that list it.
// It never closes an incident: that waits for the resolve hold (see
// OnCycle), so a trouble that comes back at once (a leaking worker
// restarted) stays one incident. An incident closed while the alert's
// long window still fired records the resolution too, so its page does
// not show the alert firing for ever.
func (i *Incidents) resolved(ctx context.Context, t engine.Transition) error {
	incs, err := i.opts.Store.OpenIncidentsWithAlert(ctx, t.Key, t.Severity)
	if err != nil {
		return err
	}
	for _, inc := range incs {
		u := store.IncidentUpdate{ID: inc.ID, UpdatedAt: t.At,
			Events: []store.IncidentEvent{{At: t.At, Kind: EventAlertResolved, Key: t.Key, Severity: t.Severity, Detail: t.Alert + " resolved"}}}
		for _, a := range inc.Alerts {
			if a.Key == t.Key && a.Severity == t.Severity && a.State != store.AlertResolved {
				a.State, a.ResolvedAt = store.AlertResolved, t.At
				u.Alerts = append(u.Alerts, a)
			}
		}
		err := i.opts.Store.UpdateIncident(ctx, u)
		if errors.Is(err, store.ErrConflict) {
			continue // closed meanwhile by a replica: recorded below
		}
		if err != nil {
			return err
		}
	}
	return i.opts.Store.ResolveClosedIncidentAlert(ctx, t.Key, t.Severity, t.At)
}

func alertDetail(t engine.Transition, tier string) string {
	d := fmt.Sprintf("%s %s fired", t.Alert, tier)
	if t.Key != "" {
		d += " for " + t.Key
	}
	if t.Condition != "" && t.Severity != engine.SeverityNoData {
		d += " (" + t.Condition + ")"
	}
	return d
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// Incident is an incident as the API shows it.
type Incident struct {
	ID         int64     `json:"id"`
	Service    string    `json:"service"`
	Title      string    `json:"title"`
	Severity   string    `json:"severity"`
	State      string    `json:"state"` // open or closed
	OpenedAt   time.Time `json:"openedAt"`
	FirstBadAt time.Time `json:"firstBadAt"`
	DetectedAt time.Time `json:"detectedAt"`
	AckedAt    time.Time `json:"acknowledgedAt,omitzero"`
	AckedBy    string    `json:"acknowledgedBy,omitempty"`
	AckNote    string    `json:"acknowledgeNote,omitempty"`
	ResolvedAt time.Time `json:"resolvedAt,omitzero"`
	// TimeToDetect and TimeToRepair are in seconds; TimeToRepair is set
	// once the incident is closed.
	TimeToDetect      float64           `json:"timeToDetectSeconds"`
	TimeToRepair      *float64          `json:"timeToRepairSeconds,omitempty"`
	TimeToAcknowledge *float64          `json:"timeToAcknowledgeSeconds,omitempty"`
	Alerts            []IncidentAlert   `json:"alerts"`
	Timeline          []IncidentEvent   `json:"timeline,omitempty"`
	FiringAlerts      int               `json:"firingAlerts"`
	Links             map[string]string `json:"links,omitempty"`
}

// IncidentAlert is an alert of an incident.
type IncidentAlert struct {
	Key         string            `json:"key"`
	Severity    string            `json:"severity"`
	Alert       string            `json:"alert"`
	SLO         string            `json:"slo,omitempty"`
	Fingerprint string            `json:"fingerprint"`
	Labels      map[string]string `json:"labels"`
	State       string            `json:"state"`
	FiredAt     time.Time         `json:"firedAt"`
	ResolvedAt  time.Time         `json:"resolvedAt,omitzero"`
}

// IncidentEvent is an entry of an incident's timeline.
type IncidentEvent struct {
	At       time.Time `json:"at"`
	Kind     string    `json:"kind"`
	Key      string    `json:"key,omitempty"`
	Severity string    `json:"severity,omitempty"`
	By       string    `json:"by,omitempty"`
	Detail   string    `json:"detail,omitempty"`
}

func fromStore(s *store.Incident, externalURL string) Incident {
	inc := Incident{ID: s.ID, Service: s.Service, Title: s.Title, Severity: s.Severity, State: s.State, OpenedAt: s.OpenedAt,
		FirstBadAt: s.FirstBadAt, DetectedAt: s.DetectedAt, AckedAt: s.AckedAt, AckedBy: s.AckedBy, AckNote: s.AckNote, ResolvedAt: s.ResolvedAt,
		TimeToDetect: s.DetectedAt.Sub(s.FirstBadAt).Seconds(), Alerts: []IncidentAlert{}}
	if s.State == store.IncidentClosed && !s.ResolvedAt.IsZero() {
		v := s.ResolvedAt.Sub(s.FirstBadAt).Seconds()
		inc.TimeToRepair = &v
	}
	if !s.AckedAt.IsZero() {
		v := s.AckedAt.Sub(s.DetectedAt).Seconds()
		inc.TimeToAcknowledge = &v
	}
	for _, a := range s.Alerts {
		inc.Alerts = append(inc.Alerts, IncidentAlert{Key: a.Key, Severity: a.Severity, Alert: a.Name, SLO: a.SLO, Fingerprint: a.Fingerprint,
			Labels: a.Labels, State: a.State, FiredAt: a.FiredAt, ResolvedAt: a.ResolvedAt})
		if a.State == store.AlertFiring {
			inc.FiringAlerts++
		}
	}
	for _, e := range s.Events {
		inc.Timeline = append(inc.Timeline, IncidentEvent{At: e.At, Kind: e.Kind, Key: e.Key, Severity: e.Severity, By: e.Actor, Detail: e.Detail})
	}
	if externalURL != "" {
		inc.Links = map[string]string{"self": fmt.Sprintf("%s/api/v1/incidents/%d", externalURL, s.ID)}
	}
	return inc
}

// IncidentFilter selects incidents for List.
type IncidentFilter struct {
	// Service filters by service; HasService makes "" mean the telemetry
	// source's incidents rather than all.
	Service    string
	HasService bool
	State      string // open, closed or "" for both
	Limit      int
	Offset     int // incidents skipped, newest first
}

func (f IncidentFilter) store() store.IncidentFilter {
	return store.IncidentFilter{Service: f.Service, HasService: f.HasService, State: f.State, Limit: f.Limit, Offset: f.Offset}
}

// Count returns how many incidents match f, Limit and Offset aside.
func (i *Incidents) Count(ctx context.Context, f IncidentFilter) (int, error) {
	return i.opts.Store.CountIncidents(ctx, f.store())
}

// List returns incidents matching f, newest first, with their alerts.
func (i *Incidents) List(ctx context.Context, f IncidentFilter) ([]Incident, error) {
	sf := f.store()
	sf.WithAlerts = true
	incs, err := i.opts.Store.Incidents(ctx, sf)
	if err != nil {
		return nil, err
	}
	out := make([]Incident, len(incs))
	for k, s := range incs {
		out[k] = fromStore(s, i.opts.ExternalURL)
	}
	return out, nil
}

// Get returns one incident with its alerts and timeline, or ErrNotFound.
func (i *Incidents) Get(ctx context.Context, id int64) (Incident, error) {
	s, err := i.opts.Store.Incident(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return Incident{}, fmt.Errorf("incident %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return Incident{}, err
	}
	return fromStore(s, i.opts.ExternalURL), nil
}

// Ack acknowledges an open incident on behalf of by. It is idempotent:
// acknowledging again returns the incident as it was first acknowledged.
// It returns ErrNotFound for an unknown incident and ErrClosed for a
// closed one.
func (i *Incidents) Ack(ctx context.Context, id int64, by, note string) (Incident, error) {
	s, changed, err := i.opts.Store.AckIncident(ctx, id, by, note, i.opts.Now())
	switch {
	case errors.Is(err, store.ErrNotFound):
		return Incident{}, fmt.Errorf("incident %d: %w", id, ErrNotFound)
	case errors.Is(err, store.ErrConflict):
		return Incident{}, fmt.Errorf("incident %d: %w", id, ErrClosed)
	case err != nil:
		return Incident{}, err
	}
	if changed {
		i.logger.Info("incident acknowledged", "id", id, "by", by)
	}
	return fromStore(s, i.opts.ExternalURL), nil
}

// Durations summarises a set of durations, in seconds.
type Durations struct {
	Count  int     `json:"count"`
	Mean   float64 `json:"mean"`
	Median float64 `json:"median"`
	P90    float64 `json:"p90"`
	Max    float64 `json:"max"`
}

// ServiceStats are a service's incident SLIs over a period: mean time to
// detect (M5) and to repair (M6), with their spread.
type ServiceStats struct {
	Service      string    `json:"service"`
	Incidents    int       `json:"incidents"`
	Open         int       `json:"open"`
	Acknowledged int       `json:"acknowledged"`
	TimeToDetect Durations `json:"timeToDetectSeconds"`
	// TimeToRepair covers closed incidents only.
	TimeToRepair      Durations `json:"timeToRepairSeconds"`
	TimeToAcknowledge Durations `json:"timeToAcknowledgeSeconds"`
}

// Stats returns per-service incident SLIs for incidents opened in
// [from, to), sorted by service.
func (i *Incidents) Stats(ctx context.Context, from, to time.Time) ([]ServiceStats, error) {
	incs, err := i.opts.Store.Incidents(ctx, store.IncidentFilter{OpenedFrom: from, OpenedTo: to, Limit: 10000})
	if err != nil {
		return nil, err
	}
	type acc struct {
		s             ServiceStats
		ttd, ttr, tta []float64
	}
	by := map[string]*acc{}
	for _, inc := range incs {
		a := by[inc.Service]
		if a == nil {
			a = &acc{s: ServiceStats{Service: inc.Service}}
			by[inc.Service] = a
		}
		a.s.Incidents++
		a.ttd = append(a.ttd, inc.DetectedAt.Sub(inc.FirstBadAt).Seconds())
		if inc.State == store.IncidentOpen {
			a.s.Open++
		} else if !inc.ResolvedAt.IsZero() {
			a.ttr = append(a.ttr, inc.ResolvedAt.Sub(inc.FirstBadAt).Seconds())
		}
		if !inc.AckedAt.IsZero() {
			a.s.Acknowledged++
			a.tta = append(a.tta, inc.AckedAt.Sub(inc.DetectedAt).Seconds())
		}
	}
	out := make([]ServiceStats, 0, len(by))
	for _, a := range by {
		a.s.TimeToDetect, a.s.TimeToRepair, a.s.TimeToAcknowledge = summarizeDurations(a.ttd), summarizeDurations(a.ttr), summarizeDurations(a.tta)
		out = append(out, a.s)
	}
	sort.Slice(out, func(x, y int) bool { return out[x].Service < out[y].Service })
	return out, nil
}

// summarizeDurations computes count, mean, median, p90 (nearest rank) and
// max.
func summarizeDurations(xs []float64) Durations {
	if len(xs) == 0 {
		return Durations{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	sum := 0.0
	for _, x := range s {
		sum += x
	}
	median := s[len(s)/2]
	if len(s)%2 == 0 {
		median = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	rank := int(math.Ceil(0.9*float64(len(s)))) - 1
	return Durations{Count: len(s), Mean: sum / float64(len(s)), Median: median, P90: s[max(rank, 0)], Max: s[len(s)-1]}
}

// OnCycle resolves the open incidents whose SLOs have all been back
// within objective on their short windows for the resolve hold: the
// multi-window reset. The long window of a burn-rate alert keeps it firing
// long after a rollback, and the incident must not stay open that long.
// It is called after every evaluation cycle with the engine's snapshot;
// an incident any of whose alerts the snapshot does not know (another
// replica's SLO) closes once all its alerts have resolved for the hold.
func (i *Incidents) OnCycle(ctx context.Context) {
	i.mu.Lock()
	defer i.mu.Unlock()
	var snap *engine.Snapshot
	if i.opts.Engine != nil {
		snap = i.opts.Engine.Snapshot()
	}
	if err := i.resolveRecovered(ctx, snap); err != nil {
		i.logger.Error("resolve recovered incidents", "err", err)
	}
}

func (i *Incidents) resolveRecovered(ctx context.Context, snap *engine.Snapshot) error {
	open, err := i.opts.Store.Incidents(ctx, store.IncidentFilter{State: store.IncidentOpen, WithAlerts: true, Limit: 1000})
	if err != nil {
		return err
	}
	var byKey map[string]*engine.Status
	if snap != nil {
		byKey = make(map[string]*engine.Status, len(snap.Statuses))
		for _, st := range snap.Statuses {
			byKey[st.Key] = st
		}
	}
	now := i.opts.Now()
	seen := make(map[int64]bool, len(open))
	for _, inc := range open {
		seen[inc.ID] = true
		since, detail, done := i.recovery(inc, byKey, snap, now)
		if !done {
			continue
		}
		if err := i.close(ctx, inc, now, since, "recovered", detail); err != nil {
			return err
		}
	}
	for id := range i.recovered {
		if !seen[id] {
			delete(i.recovered, id)
		}
	}
	return nil
}

// recovery tells whether the open incident inc has recovered for the
// resolve hold at now, since when and why: every alert resolved and none
// fired again for the hold, which needs no snapshot (low traffic on the
// short window, another replica's SLO), or every SLO back within
// objective (see allRecovered) since a cycle at least the hold ago. It
// keeps i.recovered, when each incident was first seen recovered.
func (i *Incidents) recovery(inc *store.Incident, byKey map[string]*engine.Status, snap *engine.Snapshot, now time.Time) (since time.Time, detail string, done bool) {
	hold := spec.Duration(i.opts.ResolveHold)
	if quiet, ok := lastResolved(inc.Alerts); ok && now.Sub(quiet) >= i.opts.ResolveHold {
		return quiet, fmt.Sprintf("every alert of the incident resolved, the last at %s UTC; resolve hold of %s passed",
			quiet.UTC().Format("15:04"), hold), true
	}
	if snap == nil || len(inc.Alerts) == 0 || !allRecovered(inc.Alerts, byKey, snap) {
		delete(i.recovered, inc.ID)
		return time.Time{}, "", false
	}
	since, ok := i.recovered[inc.ID]
	if !ok {
		i.recovered[inc.ID] = now
		return time.Time{}, "", false
	}
	if now.Sub(since) < i.opts.ResolveHold {
		return time.Time{}, "", false
	}
	return since, fmt.Sprintf("every SLO of the incident back within objective on its shortest alert window since %s UTC; resolve hold of %s passed",
		since.UTC().Format("15:04"), hold), true
}

// lastResolved returns when the last of an incident's alerts resolved,
// with ok false while any still fires.
func lastResolved(alerts []store.IncidentAlert) (last time.Time, ok bool) {
	for _, a := range alerts {
		if a.State != store.AlertResolved {
			return time.Time{}, false
		}
		if a.ResolvedAt.After(last) {
			last = a.ResolvedAt
		}
	}
	return last, len(alerts) > 0
}

// allRecovered reports whether every alert of an incident has its SLO
// back within objective: the source up again for QSPSourceDown, telemetry
// back for a no-data alert, and for a burn-rate alert its SLO's shortest
// alert window (the 5m of a 1h/5m page) with events and burning within
// the budget (below 1x): the multi-window reset. Longer windows still
// remember the trouble for hours. An alert whose SLO the snapshot does
// not know is not recovered.
func allRecovered(alerts []store.IncidentAlert, byKey map[string]*engine.Status, snap *engine.Snapshot) bool {
	for _, a := range alerts {
		if a.Key == "" || a.Name == engine.AlertSourceDown {
			if snap.SourceDown != nil {
				return false
			}
			continue
		}
		st := byKey[a.Key]
		if st == nil || st.State == engine.StateNoData || st.State == engine.StateUnknown {
			return false
		}
		if a.Severity == engine.SeverityNoData {
			continue
		}
		if !withinObjective(st) {
			return false
		}
	}
	return true
}

// withinObjective reports whether the shortest alert window of an SLO
// has events and burns below 1x, or none of its alerts is active.
func withinObjective(st *engine.Status) bool {
	var shortest *slo.ConditionResult
	active := false
	for k := range st.Alerts {
		as := &st.Alerts[k]
		if as.Severity == engine.SeverityNoData {
			continue
		}
		active = active || as.State == slo.Firing || as.State == slo.Pending
		for c := range as.Conditions {
			if shortest == nil || as.Conditions[c].Condition.Short < shortest.Condition.Short {
				shortest = &as.Conditions[c]
			}
		}
	}
	if shortest == nil {
		return !active
	}
	return !shortest.NoData && !shortest.LowTraffic && shortest.ShortBurn < 1
}
