package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/qsp-dev/qsp/internal/alert"
	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/gate"
	"github.com/qsp-dev/qsp/internal/playbook"
	"github.com/qsp-dev/qsp/internal/spec"
	"github.com/qsp-dev/qsp/internal/store"
)

// Timings of the records of a past incident, after its fault began.
const (
	// pastAckAfter is how long the on-call took to acknowledge a page.
	pastAckAfter = 3 * time.Minute
	// pastResolveAfter is how long after the fault's end the alerts
	// resolved (the short window cooling down).
	pastResolveAfter = 2 * time.Minute
)

// gateOf names the example gate of a service; "" for none.
var gateOf = map[string]string{"checkout": "checkout-deploy", "auth": "auth-deploy"}

// seedHistory writes what QSP would have recorded of the past incidents
// inside the written history (the fault ended before its end): the
// incidents with their timelines, the deploys before them with the gate
// evaluations that let them out, and the playbook runs that answered
// them. The incidents, report and postmortem pages then have content from
// the first second. They are titled as live incidents are (alert.Title),
// with the services' names from set. It returns the number of incidents
// written.
func seedHistory(ctx context.Context, st *store.Store, set *spec.Set, end time.Time, history time.Duration) (int, error) {
	n := 0
	for i, p := range pastIncidents {
		if p.slo == "" || p.ago > history || p.ago < p.length+pastResolveAfter {
			continue
		}
		first := end.Add(-p.ago).Truncate(time.Minute)
		detected, resolved := first.Add(p.detect), first.Add(p.length+pastResolveAfter)
		acked := detected.Add(pastAckAfter)
		if p.version != "" {
			if err := seedDeploy(ctx, st, i, p, first.Add(-p.deploy)); err != nil {
				return n, err
			}
		}
		// The live titling names the service's deploy in the hour before
		// the trouble.
		var deployed string
		if p.version != "" && p.deploy <= time.Hour {
			deployed = p.version
		}
		title := alert.Title(engine.Transition{Service: p.service, SLO: p.slo, Key: p.slo, Severity: "page", Alert: "SLOBurnRatePage"}, set, first, deployed)
		detail := "past incident of the demo history: " + p.what
		_, err := st.CreateIncident(ctx, store.Incident{
			Service: p.service, Title: title, Severity: "page", State: store.IncidentClosed,
			OpenedAt: detected, FirstBadAt: first, DetectedAt: detected, AckedAt: acked, AckedBy: "demo on-call", AckNote: "looking into it",
			ResolvedAt: resolved, UpdatedAt: resolved,
			Alerts: []store.IncidentAlert{{Key: p.slo, Severity: "page", Fingerprint: fmt.Sprintf("demo-history-%d", i), Name: "SLOBurnRatePage", SLO: p.slo,
				Labels: map[string]string{"service": p.service, "slo": p.slo, "severity": "page"}, State: store.AlertResolved, FiredAt: detected, ResolvedAt: resolved}},
			Events: []store.IncidentEvent{
				{At: first, Kind: alert.EventFirstBad, Key: p.slo, Detail: detail},
				{At: detected, Kind: alert.EventDetected, Key: p.slo, Severity: "page", Detail: "the page tier's burn-rate condition held"},
				{At: detected, Kind: alert.EventAlertFired, Key: p.slo, Severity: "page"},
				{At: acked, Kind: alert.EventAcknowledged, Actor: "demo on-call", Detail: "looking into it"},
				{At: resolved, Kind: alert.EventAlertResolved, Key: p.slo, Severity: "page"},
				{At: resolved, Kind: alert.EventResolved},
			},
		})
		if err != nil {
			return n, fmt.Errorf("demo history: %w", err)
		}
		n++
		if p.playbook != "" {
			if err := seedRun(ctx, st, i, p, detected); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// seedDeploy records the deploy before a past incident: through its
// service's gate, which passed it, or as a CD system's marker.
func seedDeploy(ctx context.Context, st *store.Store, i int, p pastIncident, at time.Time) error {
	d := store.Deploy{At: at, Service: p.service, Version: p.version, Source: store.DeploySourceEvents, Description: "demo history"}
	if g := gateOf[p.service]; g != "" {
		ev := gate.Evaluation{ID: fmt.Sprintf("demo-history-%d", i), Gate: g, Service: p.service, State: gate.StatePass,
			Change:  gate.Change{Kind: "feature", Version: p.version, Description: "demo history"},
			Summary: "pass: budget left and no canary regression", CreatedAt: at, UpdatedAt: at.Add(time.Minute), FinishedAt: at.Add(time.Minute),
			Reasons: []gate.Reason{}}
		data, err := json.Marshal(&ev)
		if err != nil {
			return fmt.Errorf("demo history: %w", err)
		}
		err = st.SaveGateEvaluation(ctx, store.GateEvaluation{ID: ev.ID, Gate: g, Service: p.service, State: string(ev.State), ChangeKind: "feature",
			Version: p.version, CreatedAt: at, UpdatedAt: ev.UpdatedAt, FinishedAt: ev.FinishedAt, Data: data})
		if err != nil {
			return fmt.Errorf("demo history: %w", err)
		}
		d = store.Deploy{Key: "gate|" + ev.ID, At: at, Service: p.service, Version: p.version, Source: store.DeploySourceGate,
			Gate: g, EvaluationID: ev.ID, Verdict: string(ev.State), Description: "demo history"}
	}
	if err := st.RecordDeploy(ctx, d); err != nil {
		return fmt.Errorf("demo history: %w", err)
	}
	return nil
}

// seedRun records the playbook run that answered a past incident's page.
func seedRun(ctx context.Context, st *store.Store, i int, p pastIncident, at time.Time) error {
	state := playbook.StateSucceeded
	if p.playbook == "auth-restart-workers" {
		// The example playbook is still in dry-run.
		state = playbook.StateDryRun
	}
	id := fmt.Sprintf("demo-history-%d", i)
	run := playbook.Run{ID: id, Playbook: p.playbook, Service: p.service, Actuator: p.service + "/" + p.playbook, State: state,
		Reason: "demo history: the playbook answered the page", DryRun: state == playbook.StateDryRun, IdempotencyKey: id,
		Trigger: playbook.Trigger{Event: "alert_fired", SLO: p.slo, Key: p.slo, Severity: "page", At: at, Reason: p.slo + " paged"},
		Steps:   []playbook.Step{}, Events: []playbook.Event{}, CreatedAt: at, UpdatedAt: at.Add(time.Minute), ActedAt: at.Add(time.Minute), FinishedAt: at.Add(time.Minute)}
	data, err := json.Marshal(&run)
	if err != nil {
		return fmt.Errorf("demo history: %w", err)
	}
	_, err = st.InsertPlaybookRun(ctx, store.PlaybookRun{ID: id, IdempotencyKey: id, Playbook: p.playbook, Service: p.service, Actuator: run.Actuator,
		State: string(state), CreatedAt: at, UpdatedAt: run.UpdatedAt, ActedAt: run.ActedAt, Data: data})
	if err != nil {
		return fmt.Errorf("demo history: %w", err)
	}
	return nil
}
