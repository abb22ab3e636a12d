package engine

import (
	"maps"
	"math"
	"slices"

	"github.com/qsp-dev/qsp/internal/policy"
	"github.com/qsp-dev/qsp/internal/slo"
	"github.com/qsp-dev/qsp/internal/spec"
)

// FillPolicyInput fills the part of a policy input that gates and
// playbooks share, so that both decide on the same view: the tier and
// labels of service in.Service.Name, its SLOs (PolicySLO), and the
// pending and firing page and ticket alerts of every SLO, since a policy
// may weigh a dependency's page. A nil snapshot fills in no SLO or alert.
func (s *Snapshot) FillPolicyInput(in *policy.Input, set *spec.Set) {
	if in.Service.Labels == nil {
		in.Service.Labels = map[string]string{}
	}
	if svc := set.Service(in.Service.Name); svc != nil {
		in.Service.Tier = svc.Spec.Tier
		maps.Copy(in.Service.Labels, svc.Spec.Labels)
	}
	in.SLOs, in.Alerts = []policy.SLO{}, []policy.Alert{}
	if s == nil {
		return
	}
	for _, st := range s.Statuses {
		if st.Service == in.Service.Name {
			in.SLOs = append(in.SLOs, st.PolicySLO(set))
		}
		for _, a := range st.Alerts {
			if (a.Severity == policy.SeverityPage || a.Severity == policy.SeverityTicket) && (a.State == slo.Pending || a.State == slo.Firing) {
				in.Alerts = append(in.Alerts, policy.Alert{SLO: st.Key, Service: st.Service, Category: st.Category, Severity: a.Severity, State: string(a.State)})
			}
		}
	}
}

// PolicySLO maps the status to the policy's input; gates and playbooks
// decide on the same view of an SLO. States the policy does not
// know map onto the nearest it does: pending is a warning, unknown (not
// evaluated yet) is no data. Numbers that are not finite (no events) are
// left out or zero, with the state no_data, so that a policy never reads a
// budget that does not exist.
func (st *Status) PolicySLO(set *spec.Set) policy.SLO {
	s := policy.SLO{
		Name: st.Key, Category: st.Category, Objective: finite(st.Objective),
		BudgetRemaining: st.Budget.RemainingRatio, BudgetConsumed: st.Budget.ConsumedRatio,
		BurnRates: map[string]float64{},
	}
	switch st.State {
	case StateOK:
		s.State = policy.StateOK
	case StatePending:
		s.State = policy.StateWarning
	case StateFiring:
		s.State, s.FiringSeverity = policy.StateFiring, policy.SeverityTicket
		if a := st.Alert(policy.SeverityPage); a != nil && a.State == slo.Firing {
			s.FiringSeverity = policy.SeverityPage
		}
	case StateLowTraffic:
		s.State = policy.StateLowTraffic
	default: // no_data, unknown
		s.State = policy.StateNoData
	}
	if notFinite(s.BudgetRemaining) || notFinite(s.BudgetConsumed) {
		s.BudgetRemaining, s.BudgetConsumed, s.State = 0, 0, policy.StateNoData
	}
	for _, w := range st.Windows {
		if w.BurnRate != nil && !notFinite(*w.BurnRate) {
			s.BurnRates[w.Name] = *w.BurnRate
		}
	}
	if o := set.SLO(st.SLO); o != nil {
		s.HasBudgetPolicy = len(o.Spec.BudgetPolicy) > 0
	}
	if f := st.Exhaustion; f != nil {
		s.Forecast.Method = f.Name()
		if f.Exhausts && !notFinite(f.Seconds) {
			s.Forecast.Exhausts, s.Forecast.HoursToExhaustion = true, f.Seconds/3600
		}
	}
	if p := st.PolicyStep; p != nil && slices.Contains(spec.BudgetPolicyActions, p.Action) {
		s.PolicyStep = &policy.PolicyStep{Consumed: finite(p.Consumed), Action: p.Action, Message: p.Message}
	}
	return s
}

func notFinite(f float64) bool { return math.IsNaN(f) || math.IsInf(f, 0) }

func finite(f float64) float64 {
	if notFinite(f) {
		return 0
	}
	return f
}
