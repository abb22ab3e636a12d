package playbook

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"

	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/slo"
	"github.com/qsp-dev/qsp/internal/spec"
	"github.com/qsp-dev/qsp/internal/store"
)

// event is one trigger of one playbook: an episode, named by its
// idempotency key.
type event struct {
	pb   *spec.Playbook
	trig Trigger
	key  string
}

// idempotencyKey names a trigger episode of a playbook: the SLO group
// and severity with the time the alert fired (or resolved, or the burn
// rate rose), the gate evaluation, or the scheduled time. One episode is
// one run, however often the trigger is seen (replayed transitions,
// reconciliation with the snapshot, restarts, other replicas).
func idempotencyKey(playbook string, t Trigger) string {
	var subject string
	switch t.Event {
	case EventGate:
		subject = t.Gate + "|" + t.Evaluation
	case EventSchedule:
		subject = t.Schedule
	default:
		subject = t.Key + "|" + t.Severity
	}
	return playbook + "|" + t.Event + "|" + subject + "|" + strconv.FormatInt(t.At.UnixMilli(), 10)
}

func newEvent(pb *spec.Playbook, t Trigger) event {
	return event{pb: pb, trig: t, key: idempotencyKey(pb.Name(), t)}
}

// stateEvent returns the event of an SLO state trigger for an alert
// that changed to state to, if the trigger asks for it.
func stateEvent(pb *spec.Playbook, set *spec.Set, st *engine.Status, as *engine.AlertStatus, to slo.AlertState, at time.Time) (event, bool) {
	tr := pb.Spec.Trigger
	if st == nil || tr.SLO == "" || tr.BurnRate != nil || st.SLO != tr.SLO || at.IsZero() {
		return event{}, false
	}
	sevOK := (as.Severity == spec.SeverityPage || as.Severity == spec.SeverityTicket) && (tr.Severity == "" || tr.Severity == as.Severity)
	for _, on := range tr.On {
		var ev string
		switch {
		case on == spec.OnFiring && to == slo.Firing && sevOK:
			ev = EventFiring
		case on == spec.OnResolved && to == slo.Resolved && sevOK:
			ev = EventResolved
		case on == spec.OnNoData && to == slo.Firing && as.Severity == engine.SeverityNoData:
			ev = EventNoData
		default:
			continue
		}
		return newEvent(pb, sloTrigger(set, st, ev, as, at)), true
	}
	return event{}, false
}

// sloTrigger describes an SLO state trigger.
func sloTrigger(set *spec.Set, st *engine.Status, ev string, as *engine.AlertStatus, at time.Time) Trigger {
	t := Trigger{
		Event: ev, SLO: st.SLO, Key: st.Key, Group: st.Group, Category: st.Category, Severity: as.Severity,
		Alert: as.Name, Condition: as.Condition, At: at, Budget: finite(st.Budget.RemainingRatio),
	}
	if t.Category == "" {
		if o := set.SLO(st.SLO); o != nil {
			t.Category = o.Spec.Category
		}
	}
	// The burn rate that matters is the long window of the alert's
	// condition ("1h/5m"); without one, the shortest standard window.
	w := 5 * time.Minute
	if long, _, ok := strings.Cut(as.Condition, "/"); ok {
		if d, err := model.ParseDuration(long); err == nil {
			w = time.Duration(d)
		}
	}
	if ws := st.WindowStat(w); ws != nil && ws.BurnRate != nil && !bad(*ws.BurnRate) {
		t.BurnRate, t.Window = *ws.BurnRate, ws.Name
	}
	switch ev {
	case EventFiring:
		t.Reason = fmt.Sprintf("SLO %s: %s alert %s firing since %s", st.Key, as.Severity, as.Name, clock(at))
		if t.Window != "" {
			t.Reason += fmt.Sprintf(" (burn rate %s over %s)", num(t.BurnRate), t.Window)
		}
	case EventResolved:
		t.Reason = fmt.Sprintf("SLO %s: %s alert %s resolved at %s", st.Key, as.Severity, as.Name, clock(at))
	case EventNoData:
		t.Reason = fmt.Sprintf("SLO %s: no telemetry (%s firing since %s)", st.Key, as.Name, clock(at))
	}
	return t
}

// transitionEvents returns the events of the state triggers an engine
// transition matches.
func transitionEvents(set *spec.Set, t engine.Transition) []event {
	if t.Status == nil || t.SLO == "" {
		return nil // the source-down alert belongs to no SLO
	}
	as := t.Status.Alert(t.Severity)
	a := engine.AlertStatus{Severity: t.Severity, Name: t.Alert, State: t.To, Condition: t.Condition}
	if as != nil {
		a.Condition = as.Condition
	}
	var out []event
	for _, pb := range set.Playbooks {
		if ev, ok := stateEvent(pb, set, t.Status, &a, t.To, t.At); ok {
			out = append(out, ev)
		}
	}
	return out
}

// snapshotEvents reconciles the state triggers with the engine's
// snapshot: an alert firing (or resolved) now yields its episode's event,
// which the idempotency key dedupes against the transition that already
// delivered it. It catches what a transition could not deliver: the queue
// was full, or QSP restarted between the engine recording a transition
// and a run being recorded for it. A change made by the snapshot's own
// evaluation is left to its transition, which is on its way: the engine
// publishes the snapshot before the incident keeper has seen the
// transition, and a run admitted from the snapshot would name no
// incident. The next snapshot catches it if the transition was lost.
func snapshotEvents(set *spec.Set, snap *engine.Snapshot) []event {
	var out []event
	for _, pb := range set.Playbooks {
		tr := pb.Spec.Trigger
		if tr.SLO == "" || len(tr.On) == 0 {
			continue
		}
		for _, st := range snap.SLO(tr.SLO) {
			for i := range st.Alerts {
				as := &st.Alerts[i]
				at := as.FiredAt
				if as.State == slo.Resolved {
					at = as.ResolvedAt
				} else if as.State != slo.Firing {
					continue
				}
				if at.Equal(snap.At) {
					continue
				}
				if ev, ok := stateEvent(pb, set, st, as, as.State, at); ok {
					out = append(out, ev)
				}
			}
		}
	}
	return out
}

// arm is the hysteresis state of a burn-rate trigger for one playbook
// and SLO group.
type arm struct {
	store.PlaybookArm
	// sig is the trigger it belongs to; a reload that changes the
	// trigger starts it afresh.
	sig   string
	dirty bool
}

func armKey(playbook, key string) string { return playbook + "\x00" + key }

func burnSig(tr spec.Trigger) string {
	br := tr.BurnRate
	return fmt.Sprintf("%s|%s|%g|%g|%s", tr.SLO, br.Window, br.Above, br.Below, br.For)
}

// burnEvents steps the hysteresis of every burn-rate trigger on the
// snapshot: armed, it fires once the burn rate has stayed at or above the
// trigger level for `for` and disarms; disarmed, it re-arms once the burn
// rate falls to the clear level. A missing burn rate (no data) holds the
// state. Changed states are marked dirty for the store; the caller saves
// them after the events' runs are recorded, so a crash in between fires
// the same episode (same key) again rather than losing it.
func (r *Runner) burnEvents(set *spec.Set, snap *engine.Snapshot) []event {
	if snap.At.IsZero() {
		return nil
	}
	at := snap.At
	r.armsMu.Lock()
	defer r.armsMu.Unlock()
	var out []event
	for _, pb := range set.Playbooks {
		tr := pb.Spec.Trigger
		br := tr.BurnRate
		if tr.SLO == "" || br == nil {
			continue
		}
		below := br.Below
		if below == 0 {
			below = br.Above / 2
		}
		sig := burnSig(tr)
		for _, st := range snap.SLO(tr.SLO) {
			ws := st.WindowStat(br.Window.D())
			if ws == nil || ws.BurnRate == nil || bad(*ws.BurnRate) {
				continue
			}
			burn := *ws.BurnRate
			k := armKey(pb.Name(), st.Key)
			a := r.arms[k]
			if a == nil || a.sig != sig {
				a = &arm{PlaybookArm: store.PlaybookArm{Playbook: pb.Name(), Key: st.Key, Armed: true, ChangedAt: at}, sig: sig, dirty: true}
				r.arms[k] = a
			}
			switch {
			case a.Armed && burn >= br.Above:
				if a.AboveSince.IsZero() {
					a.AboveSince, a.dirty = at, true
				}
				if at.Sub(a.AboveSince) >= br.For.D() && !at.Before(a.HoldUntil) {
					// A firing a guard held back fires again as its own
					// episode, named by the time the guard lifted.
					episode := a.AboveSince
					if a.HoldUntil.After(episode) {
						episode = a.HoldUntil
					}
					t := Trigger{
						Event: EventBurnRate, SLO: st.SLO, Key: st.Key, Group: st.Group, Category: st.Category,
						BurnRate: burn, Window: ws.Name, Above: br.Above, Below: below, At: episode,
						Budget: finite(st.Budget.RemainingRatio),
					}
					t.Reason = fmt.Sprintf("SLO %s: burn rate %s over %s at or above %s since %s", st.Key, num(burn), ws.Name, num(br.Above), clock(a.AboveSince))
					if br.For > 0 {
						t.Reason += " (for " + br.For.String() + ")"
					}
					if episode != a.AboveSince {
						t.Reason += "; held back by a guard until " + clock(episode)
					}
					t.Reason += fmt.Sprintf("; re-arms at or below %s", num(below))
					out = append(out, newEvent(pb, t))
					a.Armed, a.ChangedAt, a.dirty = false, at, true
				}
			case a.Armed && (!a.AboveSince.IsZero() || !a.HoldUntil.IsZero()):
				// The burn fell below the trigger level: the episode and
				// any held firing are over.
				a.AboveSince, a.HoldUntil, a.dirty = time.Time{}, time.Time{}, true
			case !a.Armed && burn <= below:
				a.Armed, a.AboveSince, a.HoldUntil, a.ChangedAt, a.dirty = true, time.Time{}, time.Time{}, at, true
			}
		}
	}
	return out
}

// holdArm re-arms the burn-rate trigger of ev, which a guard held back
// until until: it fires again then if the burn rate still holds. A
// firing suppressed by a guard that lifts is deferred, not lost, so a
// service whose burn persists gets its action once the cooldown or run
// limit allows; the kill switch, a run in flight, policies and
// operators end the episode.
func (r *Runner) holdArm(ev event, until time.Time) {
	if ev.trig.Event != EventBurnRate {
		return
	}
	r.armsMu.Lock()
	defer r.armsMu.Unlock()
	if a := r.arms[armKey(ev.pb.Name(), ev.trig.Key)]; a != nil && !a.Armed {
		a.Armed, a.HoldUntil, a.dirty = true, until, true
	}
}

// dirtyArms returns the changed hysteresis states and marks them clean.
func (r *Runner) dirtyArms(now time.Time) []store.PlaybookArm {
	r.armsMu.Lock()
	defer r.armsMu.Unlock()
	var out []store.PlaybookArm
	for _, a := range r.arms {
		if a.dirty {
			a.UpdatedAt, a.dirty = now, false
			out = append(out, a.PlaybookArm)
		}
	}
	return out
}

// gateLookback is how old a failed gate evaluation may be and still
// trigger: failures while QSP was down for a short while are caught up,
// old ones are not acted on.
const gateLookback = time.Hour

// gateEvents polls the store for failed evaluations of the gates that
// trigger playbooks. The gate runner writes every evaluation there, so
// the store is the hook: no coupling to the gate package, and failures
// of evaluations run by another replica are seen too.
func (r *Runner) gateEvents(ctx context.Context, set *spec.Set, now time.Time) []event {
	var out []event
	failed := map[string][]store.GateEvaluation{} // by gate: one query per gate a cycle
	for _, pb := range set.Playbooks {
		g := pb.Spec.Trigger.Gate
		if g == "" {
			continue
		}
		evs, ok := failed[g]
		if !ok {
			var err error
			evs, _, err = r.store.GateEvaluations(ctx, store.GateEvaluationFilter{Gate: g, State: "fail", From: now.Add(-24 * time.Hour), Limit: 100})
			if err != nil {
				r.log.Warn("poll gate evaluations", "playbook", pb.Name(), "gate", g, "err", err)
				continue
			}
			failed[g] = evs
		}
		for _, e := range evs {
			at := e.FinishedAt
			if at.IsZero() {
				at = e.UpdatedAt
			}
			if at.Before(now.Add(-gateLookback)) {
				continue
			}
			t := Trigger{Event: EventGate, Gate: g, Evaluation: e.ID, At: at,
				Reason: fmt.Sprintf("gate %s failed for %s %s", g, e.Service, e.Version)}
			// An evaluation seen before is not decoded again: its
			// document holds every finding and can be large.
			if key := idempotencyKey(pb.Name(), t); !r.seen[key].IsZero() {
				r.seen[key] = now
				continue
			}
			var doc struct {
				Summary string `json:"summary"`
			}
			_ = json.Unmarshal(e.Data, &doc)
			if doc.Summary != "" {
				t.Reason += ": " + doc.Summary
			}
			out = append(out, newEvent(pb, t))
		}
	}
	return out
}

// scheduleEvents returns the events of scheduled playbooks whose time
// came since the last cycle; when several times passed (a stall), only
// the latest runs.
func (r *Runner) scheduleEvents(set *spec.Set, now time.Time) []event {
	var out []event
	for _, pb := range set.Playbooks {
		s := pb.Spec.Trigger.Schedule
		if s == "" {
			continue
		}
		sc, err := spec.ParseSchedule(s)
		if err != nil {
			continue // validation rejects it; nothing to run
		}
		last, ok := r.schedLast[pb.Name()]
		if !ok {
			last = now.Add(-r.opts.Interval)
		}
		r.schedLast[pb.Name()] = now
		var slot time.Time
		for t, n := sc.Next(last), 0; !t.IsZero() && !t.After(now) && n < 100000; t, n = sc.Next(t), n+1 {
			slot = t
		}
		if slot.IsZero() {
			continue
		}
		out = append(out, newEvent(pb, Trigger{Event: EventSchedule, Schedule: s, At: slot,
			Reason: fmt.Sprintf("schedule %q at %s", s, clock(slot))}))
	}
	return out
}

func bad(f float64) bool { return math.IsNaN(f) || math.IsInf(f, 0) }

func finite(f float64) float64 {
	if bad(f) {
		return 0
	}
	return f
}

// num formats a burn rate or level for reasons: 14.4, 0.5, 120.
func num(f float64) string { return strconv.FormatFloat(math.Round(f*100)/100, 'f', -1, 64) }
