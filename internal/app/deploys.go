package app

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/gate"
	"github.com/qsp-dev/qsp/internal/store"
)

func init() { componentBuilders = append(componentBuilders, buildDeployImpacts) }

// buildDeployImpacts joins deploy markers with the engine's rollups: the
// API and the UI show each marker's impact (apiExtra "deployImpact"), the
// gates cite the last deploy's, and /metrics exports it as
// qsp_deploy_budget_consumed. It runs before buildGates (file order).
func buildDeployImpacts(_ context.Context, a *App) error {
	di := &deployImpacts{store: a.store, engine: a.engine, span: engine.DefaultImpactSpan, now: a.now}
	a.apiExtra["deployImpact"] = di
	return a.registry.Register(di)
}

// deployImpacts measures the budget each deploy consumed.
type deployImpacts struct {
	store  *store.Store
	engine *engine.Engine
	span   time.Duration
	now    func() time.Time
}

// Impact returns the impact of one deploy on each SLO of its service.
func (d *deployImpacts) Impact(dep store.Deploy) []engine.DeployImpact {
	return d.engine.DeployImpact(dep.Service, dep.At, d.span)
}

// isDeploy says whether a marker is a version that went out: events
// markers are; a gate's marker only when it passed.
func isDeploy(m store.Deploy) bool {
	return m.Source != store.DeploySourceGate || m.Verdict == string(gate.StatePass)
}

// Last is a gate.LastDeployFunc: the service's newest deploy before now.
func (d *deployImpacts) Last(ctx context.Context, service string, now time.Time) (*engine.DeployReport, error) {
	ms, _, err := d.store.Deploys(ctx, store.DeployFilter{Service: service, To: now, Limit: 20})
	if err != nil {
		return nil, err
	}
	for _, m := range ms {
		if isDeploy(m) {
			return &engine.DeployReport{Deploy: m, Impact: d.Impact(m)}, nil
		}
	}
	return nil, nil
}

var deployBudgetDesc = prometheus.NewDesc("qsp_deploy_budget_consumed",
	"Share of the error budget an SLO consumed in the span after its service's last deploy (span=\"after\") and in the same span before it (span=\"before\").",
	[]string{"service", "slo", "version", "span"}, nil)

// Describe implements prometheus.Collector.
func (d *deployImpacts) Describe(ch chan<- *prometheus.Desc) { ch <- deployBudgetDesc }

// Collect implements prometheus.Collector: the last deploy of each
// service within the last day, one read of the deploys table.
func (d *deployImpacts) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	now := d.now()
	ms, _, err := d.store.Deploys(ctx, store.DeployFilter{From: now.Add(-24 * time.Hour), To: now, Limit: 1000})
	if err != nil {
		return // the scrape goes on without it; the store's own metrics say why
	}
	seen := map[string]bool{}
	for _, m := range ms { // newest first
		if seen[m.Service] || !isDeploy(m) {
			continue
		}
		seen[m.Service] = true
		for _, imp := range d.Impact(m) {
			ch <- prometheus.MustNewConstMetric(deployBudgetDesc, prometheus.GaugeValue, imp.After.Budget, m.Service, imp.SLO, m.Version, "after")
			ch <- prometheus.MustNewConstMetric(deployBudgetDesc, prometheus.GaugeValue, imp.Before.Budget, m.Service, imp.SLO, m.Version, "before")
		}
	}
}

// lastDeploy returns the gates' look-up of the last deploy, when the
// impacts are built.
func lastDeploy(a *App) gate.LastDeployFunc {
	if di, ok := a.apiExtra["deployImpact"].(*deployImpacts); ok {
		return di.Last
	}
	return nil
}
