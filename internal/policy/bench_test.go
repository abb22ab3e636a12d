package policy

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	"github.com/qsp-dev/qsp/internal/spec"
)

// benchPolicies are two user policies of the size teams write.
func benchPolicies() []*spec.Policy {
	return []*spec.Policy{
		userPolicy("no-friday-features", fridayFeatures, withData(map[string]any{"days": []any{"Saturday", "Sunday"}})),
		userPolicy("tier0-care", `package team.care
warn contains msg if {
	input.service.tier <= 1
	some s in input.slos
	s.burn_rates["1h"] > 2
	msg := sprintf("SLO %s burns at %v over 1h on a tier %d service", [s.name, s.burn_rates["1h"], input.service.tier])
}
deny contains msg if {
	input.checks.canary.verdict == "fail"
	msg := sprintf("canary failed on %s", [concat(", ", input.checks.canary.failed_metrics)])
}`),
	}
}

// realisticGate is a gate request of a mid-size service: six SLOs, one
// frozen, a budget, security and canary check, and 40 findings.
func realisticGate() Input {
	in := gateInput(func(in *Input) {
		in.Change = &Change{Kind: ChangeMitigation, Version: "2.3.1", Category: spec.Security, ExpectedImpact: &Impact{Latency: 0.12}}
		in.SLOs = append(in.SLOs,
			healthySLO("checkout-errors", spec.Quality),
			healthySLO("checkout-vuln-age", spec.Security),
			healthySLO("checkout-saturation", spec.Performance))
		in.Alerts = []Alert{
			{SLO: "checkout-latency", Service: "checkout", Category: spec.Performance, Severity: SeverityTicket, State: AlertFiring},
			{SLO: "payments-availability", Service: "payments", Category: spec.Quality, Severity: SeverityPage, State: AlertFiring},
		}
		sec := &SecurityCheck{
			Counts:      map[string]int{},
			MaxFindings: map[string]int{"critical": 0, "high": 10},
			MaxAgeDays:  30, AgeSeverity: "high",
		}
		for i := range 40 {
			sev := spec.Severities[i%len(spec.Severities)]
			f := Finding{ID: fmt.Sprintf("CVE-2025-%04d", i), Severity: sev, Package: fmt.Sprintf("pkg%d", i%7),
				InstalledVersion: "1.0.0", AgeDays: float64(i * 3)}
			if i%3 != 0 {
				f.FixedVersion = "1.0.1"
			}
			sec.Findings = append(sec.Findings, f)
			sec.Counts[sev]++
		}
		in.Checks = &Checks{
			Budget:   &BudgetCheck{MinRemaining: 0.1, MaxBurnRate: 10},
			Security: sec,
			Canary:   &CanaryCheck{Verdict: "pass", Score: 97.5, FailedMetrics: []string{}},
		}
	}, setSLO("checkout-availability", both(spent(-0.043), step(1, spec.ActionFreeze, "only fixes"))))
	return in
}

// BenchmarkEvaluate is one gate decision under the three built-ins and
// two user policies, recorder disabled.
func BenchmarkEvaluate(b *testing.B) {
	e := newTestEngine(b, Options{Policies: benchPolicies()})
	in := realisticGate()
	d, err := e.Evaluate(context.Background(), in)
	if err != nil {
		b.Fatal(err)
	}
	if d.Result != Deny || len(d.Reasons) < 5 {
		b.Fatalf("unexpected decision %s: %s", d.Result, reasonLines(d.Reasons))
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Evaluate(context.Background(), in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEvaluateUnprepared is the reference: the same decision the
// naive way, parsing and compiling every module and query per decision
// (rego.New(...).Eval for each policy).
func BenchmarkEvaluateUnprepared(b *testing.B) {
	e := newTestEngine(b, Options{Policies: benchPolicies()})
	in, err := normalize(realisticGate(), testNow)
	if err != nil {
		b.Fatal(err)
	}
	raw, _ := json.Marshal(in)
	var doc any
	if err := json.Unmarshal(raw, &doc); err != nil {
		b.Fatal(err)
	}
	var modules []func(*rego.Rego)
	for _, s := range e.byKey {
		modules = append(modules, rego.Module(s.key, s.text))
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, p := range e.policies {
			if !p.applies(PointGate) {
				continue
			}
			opts := append([]func(*rego.Rego){
				rego.Query(fmt.Sprintf(queryTemplate, p.pkg)),
				rego.Input(doc),
				rego.Store(inmem.NewFromObject(map[string]any{"qsp": map[string]any{"params": p.params,
					"config": map[string]any{"priorities": categoryStrings(DefaultPriorities)}}})),
				rego.SetRegoVersion(ast.RegoV1),
			}, modules...)
			if _, err := rego.New(opts...).Eval(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkNew is the cost of a reload: compiling the built-ins and two
// user policies and preparing their queries.
func BenchmarkNew(b *testing.B) {
	policies := benchPolicies()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := New(Options{Policies: policies}); err != nil {
			b.Fatal(err)
		}
	}
}
