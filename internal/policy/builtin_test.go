package policy

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/qsp-dev/qsp/internal/spec"
)

// testNow is the clock of every test engine.
var testNow = time.Date(2026, 3, 6, 10, 0, 0, 0, time.UTC) // a Friday

func fixedClock() time.Time { return testNow }

// gateInput is a gate request that every built-in lets through quietly
// except where a case changes it: a feature with one healthy SLO of each
// category and no security check.
func gateInput(mods ...func(*Input)) Input {
	in := Input{
		Point:   PointGate,
		Gate:    "checkout-deploy",
		Service: Service{Name: "checkout", Tier: 1},
		Change:  &Change{Kind: ChangeFeature, Version: "1.4.2"},
		SLOs: []SLO{
			healthySLO("checkout-availability", spec.Quality),
			healthySLO("checkout-waf", spec.Security),
			healthySLO("checkout-latency", spec.Performance),
		},
	}
	for _, m := range mods {
		m(&in)
	}
	return in
}

func playbookInput(mods ...func(*Input)) Input {
	in := Input{
		Point:    PointPlaybook,
		Playbook: "shed-bot-traffic",
		Service:  Service{Name: "checkout"},
		Action:   &Action{Name: "waf-challenge", Kind: "throttle"},
		Trigger:  &Trigger{SLO: "checkout-waf", Category: spec.Security, Event: "firing", Severity: SeverityPage},
		SLOs: []SLO{
			healthySLO("checkout-availability", spec.Quality),
			healthySLO("checkout-waf", spec.Security),
		},
	}
	for _, m := range mods {
		m(&in)
	}
	return in
}

func healthySLO(name string, c spec.Category) SLO {
	return SLO{Name: name, Category: c, Objective: 0.999, BudgetRemaining: 0.6, BudgetConsumed: 0.4,
		BurnRates: map[string]float64{"5m": 0.9, "1h": 1.2}, State: StateOK, HasBudgetPolicy: true}
}

// setSLO replaces the SLO named name with f applied to it.
func setSLO(name string, f func(*SLO)) func(*Input) {
	return func(in *Input) {
		for i := range in.SLOs {
			if in.SLOs[i].Name == name {
				f(&in.SLOs[i])
				return
			}
		}
		panic("no SLO " + name)
	}
}

func spent(remaining float64) func(*SLO) {
	return func(s *SLO) { s.BudgetRemaining, s.BudgetConsumed = remaining, 1-remaining }
}

func step(consumed float64, action, msg string) func(*SLO) {
	return func(s *SLO) { s.PolicyStep = &PolicyStep{Consumed: consumed, Action: action, Message: msg} }
}

func both(fs ...func(*SLO)) func(*SLO) {
	return func(s *SLO) {
		for _, f := range fs {
			f(s)
		}
	}
}

func kind(k, version string) func(*Input) {
	return func(in *Input) { in.Change.Kind, in.Change.Version = k, version }
}

type builtinCase struct {
	name       string
	in         Input
	priorities []spec.Category
	result     Result
	want       []Reason // of the policy under test, in order
}

// runBuiltinCases evaluates each case and compares the reasons of policy
// and the decision's result. The base inputs keep the other built-ins
// quiet, so the result is this policy's.
func runBuiltinCases(t *testing.T, policy string, cases []builtinCase) {
	t.Helper()
	engines := map[string]*Engine{}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			key := fmt.Sprint(tc.priorities)
			e := engines[key]
			if e == nil {
				e = newTestEngine(t, Options{Priorities: tc.priorities})
				engines[key] = e
			}
			d, err := e.Evaluate(context.Background(), tc.in)
			if err != nil {
				t.Fatalf("Evaluate: %v", err)
			}
			var got []Reason
			for _, r := range d.Reasons {
				if r.Policy == policy {
					got = append(got, r)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("reasons of %s:\ngot  %s\nwant %s", policy, reasonLines(got), reasonLines(tc.want))
			}
			if d.Result != tc.result {
				t.Errorf("result: got %s, want %s (reasons: %s)", d.Result, tc.result, reasonLines(d.Reasons))
			}
		})
	}
}

func newTestEngine(t testing.TB, opts Options) *Engine {
	t.Helper()
	if opts.Now == nil {
		opts.Now = fixedClock
	}
	e, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return e
}

func reasonLines(rs []Reason) string {
	s := ""
	for _, r := range rs {
		s += "\n  " + r.String()
	}
	if s == "" {
		return "(none)"
	}
	return s
}

func deny(policy, msg string) Reason { return Reason{Policy: policy, Level: LevelDeny, Message: msg} }
func warn(policy, msg string) Reason { return Reason{Policy: policy, Level: LevelWarn, Message: msg} }
func info(policy, msg string) Reason { return Reason{Policy: policy, Level: LevelInfo, Message: msg} }

func TestErrorBudget(t *testing.T) {
	const p = BuiltinErrorBudget
	frozen := setSLO("checkout-availability", both(spent(-0.043), step(1, spec.ActionFreeze, "")))
	frozenWithNote := setSLO("checkout-availability", both(spent(-0.043), step(1, spec.ActionFreeze, "only P0 fixes")))
	exhaustedNoPolicy := setSLO("checkout-availability", func(s *SLO) {
		spent(0)(s)
		s.HasBudgetPolicy = false
	})
	freezeWhy := "SLO checkout-availability has consumed 104.3% of its error budget (budget policy: freeze at 100.0%)"
	cases := []builtinCase{
		{
			name:   "every SLO within budget",
			in:     gateInput(),
			result: Allow,
			want:   []Reason{info(p, "every SLO within budget (3 checked)")},
		},
		{
			name:   "freeze step denies a feature",
			in:     gateInput(frozen),
			result: Deny,
			want: []Reason{deny(p, "feature 1.4.2 may not deploy: "+freezeWhy+
				"; only fixes, rollbacks and mitigations may deploy now")},
		},
		{
			name:   "freeze step message is quoted",
			in:     gateInput(frozenWithNote, kind(ChangeConfig, "")),
			result: Deny,
			want: []Reason{deny(p, `config may not deploy: SLO checkout-availability has consumed 104.3% of its error budget `+
				`(budget policy: freeze at 100.0%, "only P0 fixes"); only fixes, rollbacks and mitigations may deploy now`)},
		},
		{
			name:   "fix passes a freeze with a warning",
			in:     gateInput(frozen, kind(ChangeFix, "1.4.3")),
			result: Warn,
			want:   []Reason{warn(p, "fix 1.4.3 allowed despite the freeze: "+freezeWhy)},
		},
		{
			name:   "rollback passes a freeze with a warning",
			in:     gateInput(frozen, kind(ChangeRollback, "1.4.1")),
			result: Warn,
			want:   []Reason{warn(p, "rollback 1.4.1 allowed despite the freeze: "+freezeWhy)},
		},
		{
			name: "mitigation passes a freeze with a warning",
			in: gateInput(frozen, func(in *Input) {
				in.Change = &Change{Kind: ChangeMitigation, Version: "1.4.4", Category: spec.Quality}
			}),
			result: Warn,
			want:   []Reason{warn(p, "mitigation 1.4.4 allowed despite the freeze: "+freezeWhy)},
		},
		{
			name:   "without budget policy an exhausted budget freezes",
			in:     gateInput(exhaustedNoPolicy, kind(ChangeConfig, "cfg-7")),
			result: Deny,
			want: []Reason{deny(p, "config cfg-7 may not deploy: SLO checkout-availability has exhausted its error budget "+
				"(100.0% consumed); only fixes, rollbacks and mitigations may deploy now")},
		},
		{
			name:   "with budget policy an overspent budget freezes only at a freeze step",
			in:     gateInput(setSLO("checkout-latency", spent(-0.25))),
			result: Allow,
			want:   []Reason{info(p, "SLO checkout-latency spent the error budget, but no budget policy step freezes deploys (3 checked)")},
		},
		{
			name:   "warn step warns",
			in:     gateInput(setSLO("checkout-latency", both(spent(0.2), step(0.75, spec.ActionWarn, "slow down")))),
			result: Warn,
			want:   []Reason{warn(p, `SLO checkout-latency has consumed 80.0% of its error budget (budget policy: warn at 75.0%, "slow down")`)},
		},
		{
			name:   "notify step is not the gate's concern",
			in:     gateInput(setSLO("checkout-latency", both(spent(0.1), step(0.9, spec.ActionPage, "")))),
			result: Allow,
			want:   []Reason{info(p, "every SLO within budget (3 checked)")},
		},
		{
			name: "no data cannot vouch for a budget",
			in: gateInput(setSLO("checkout-waf", func(s *SLO) {
				s.State = StateNoData
				both(spent(-1), step(1, spec.ActionFreeze, ""))(s)
			})),
			result: Warn,
			want:   []Reason{warn(p, "SLO checkout-waf has no data: its error budget cannot be checked")},
		},
		{
			name: "gate minimum remaining budget",
			in: gateInput(setSLO("checkout-latency", spent(0.05)), func(in *Input) {
				in.Checks = &Checks{Budget: &BudgetCheck{MinRemaining: 0.1}}
			}),
			result: Deny,
			want: []Reason{deny(p, "feature 1.4.2 may not deploy: SLO checkout-latency has 5.0% of its error budget left, "+
				"the gate requires 10.0%; only fixes, rollbacks and mitigations may deploy now")},
		},
		{
			name: "gate maximum burn rate",
			in: gateInput(setSLO("checkout-availability", func(s *SLO) { s.BurnRates["1h"] = 14.4 }), func(in *Input) {
				in.Checks = &Checks{Budget: &BudgetCheck{MaxBurnRate: 10}}
			}),
			result: Deny,
			want: []Reason{deny(p, "feature 1.4.2 may not deploy: SLO checkout-availability burns its error budget at 14.4x over 1h, "+
				"the gate allows at most 10.0x; only fixes, rollbacks and mitigations may deploy now")},
		},
		{
			name: "budget check scope leaves out other SLOs",
			in: gateInput(frozen, func(in *Input) {
				in.Checks = &Checks{Budget: &BudgetCheck{SLOs: []string{"checkout-latency"}}}
			}),
			result: Allow,
			want:   []Reason{info(p, "every SLO within budget (1 checked)")},
		},
		{
			name: "budget check naming an SLO without evaluation",
			in: gateInput(func(in *Input) {
				in.Checks = &Checks{Budget: &BudgetCheck{SLOs: []string{"checkout-latency", "checkout-typo"}}}
			}),
			result: Warn,
			want:   []Reason{warn(p, "SLO checkout-typo named by the budget check has no evaluation: its error budget cannot be checked")},
		},
		{
			name: "two frozen SLOs give two reasons",
			in: gateInput(frozen, setSLO("checkout-latency", func(s *SLO) {
				s.HasBudgetPolicy = false
				spent(-0.5)(s)
			})),
			result: Deny,
			want: []Reason{
				deny(p, "feature 1.4.2 may not deploy: SLO checkout-availability has consumed 104.3% of its error budget "+
					"(budget policy: freeze at 100.0%); only fixes, rollbacks and mitigations may deploy now"),
				deny(p, "feature 1.4.2 may not deploy: SLO checkout-latency has exhausted its error budget (150.0% consumed); "+
					"only fixes, rollbacks and mitigations may deploy now"),
			},
		},
		{
			name:   "no SLOs",
			in:     gateInput(func(in *Input) { in.SLOs = nil }),
			result: Allow,
			want:   []Reason{info(p, "no SLO to check")},
		},
		{
			name:   "not consulted at playbooks",
			in:     playbookInput(setSLO("checkout-availability", both(spent(-1), step(1, spec.ActionFreeze, "")))),
			result: Warn, // the trade-off policy's throttle warning
			want:   nil,
		},
	}
	runBuiltinCases(t, p, cases)
}

func TestTradeOff(t *testing.T) {
	const p = BuiltinTradeOff
	mitigation := func(latency float64) func(*Input) {
		return func(in *Input) {
			in.Change = &Change{Kind: ChangeMitigation, Version: "2.3.1", Category: spec.Security,
				ExpectedImpact: &Impact{Latency: latency}}
		}
	}
	alert := func(service string, c spec.Category, severity, state string) func(*Input) {
		return func(in *Input) {
			in.Alerts = append(in.Alerts, Alert{SLO: service + "-" + string(c), Service: service, Category: c, Severity: severity, State: state})
		}
	}
	const order = "(priorities: quality > security > performance)"
	cases := []builtinCase{
		{
			name:   "no category, no trade-off",
			in:     gateInput(),
			result: Allow,
			want:   []Reason{info(p, "no category declared: no trade-off to weigh")},
		},
		{
			name:   "security mitigation without cost",
			in:     gateInput(mitigation(0)),
			result: Allow,
			want:   []Reason{info(p, "security mitigation 2.3.1 costs no other category "+order)},
		},
		{
			name:   "security mitigation raising latency is allowed with a warning",
			in:     gateInput(mitigation(0.2)),
			result: Warn,
			want: []Reason{warn(p, "security mitigation 2.3.1 allowed although it raises latency by 20.0%: "+
				"the performance budget of SLO checkout-latency will burn (security outranks performance)")},
		},
		{
			name:   "denied while an availability page fires for the service",
			in:     gateInput(mitigation(0.2), alert("checkout", spec.Quality, SeverityPage, AlertFiring)),
			result: Deny,
			want: []Reason{deny(p, "security mitigation 2.3.1 raises latency by 20.0% while quality page checkout-quality "+
				"is firing for checkout: quality outranks security "+order)},
		},
		{
			name: "denied while the SLO state is a firing page",
			in: gateInput(mitigation(0.2), setSLO("checkout-availability", func(s *SLO) {
				s.State, s.FiringSeverity = StateFiring, SeverityPage
			})),
			result: Deny,
			want: []Reason{deny(p, "security mitigation 2.3.1 raises latency by 20.0% while quality page checkout-availability "+
				"is firing for checkout: quality outranks security "+order)},
		},
		{
			name:   "a page of another service does not block",
			in:     gateInput(mitigation(0.2), alert("payments", spec.Quality, SeverityPage, AlertFiring)),
			result: Warn,
			want: []Reason{warn(p, "security mitigation 2.3.1 allowed although it raises latency by 20.0%: "+
				"the performance budget of SLO checkout-latency will burn (security outranks performance)")},
		},
		{
			name:   "a ticket or a pending page does not block",
			in:     gateInput(mitigation(0.2), alert("checkout", spec.Quality, SeverityTicket, AlertFiring), alert("checkout", spec.Quality, SeverityPage, AlertPending)),
			result: Warn,
			want: []Reason{warn(p, "security mitigation 2.3.1 allowed although it raises latency by 20.0%: "+
				"the performance budget of SLO checkout-latency will burn (security outranks performance)")},
		},
		{
			name:   "a performance page does not block a security mitigation",
			in:     gateInput(mitigation(0.2), alert("checkout", spec.Performance, SeverityPage, AlertFiring)),
			result: Warn,
			want: []Reason{warn(p, "security mitigation 2.3.1 allowed although it raises latency by 20.0%: "+
				"the performance budget of SLO checkout-latency will burn (security outranks performance)")},
		},
		{
			name: "a performance optimisation disabling a security control is denied",
			in: gateInput(func(in *Input) {
				in.Change = &Change{Kind: ChangeConfig, Version: "cfg-9", Category: spec.Performance,
					ExpectedImpact: &Impact{Latency: -0.3, DisablesSecurityControls: []string{"waf-sqli"}}}
			}),
			result: Deny,
			want:   []Reason{deny(p, "performance config cfg-9 disables security control waf-sqli: security outranks performance "+order)},
		},
		{
			name: "a performance feature raising errors is denied",
			in: gateInput(func(in *Input) {
				in.Change = &Change{Kind: ChangeFeature, Version: "1.5.0", Category: spec.Performance,
					ExpectedImpact: &Impact{ErrorRate: 0.05}}
			}),
			result: Deny,
			want:   []Reason{deny(p, "performance feature 1.5.0 raises the error rate by 5.0%: quality outranks performance "+order)},
		},
		{
			name:       "configured priorities put security first",
			in:         gateInput(mitigation(0.2), alert("checkout", spec.Quality, SeverityPage, AlertFiring)),
			priorities: []spec.Category{spec.Security, spec.Quality, spec.Performance},
			result:     Warn,
			want: []Reason{warn(p, "security mitigation 2.3.1 allowed although it raises latency by 20.0%: "+
				"the performance budget of SLO checkout-latency will burn (security outranks performance)")},
		},
		{
			name:   "playbook throttle for a security SLO costs latency",
			in:     playbookInput(),
			result: Warn,
			want: []Reason{warn(p, "security playbook action waf-challenge (throttle) allowed although it throttles traffic, "+
				"which raises latency: the performance budget will burn (security outranks performance)")},
		},
		{
			name: "playbook throttle waits while availability pages",
			in: playbookInput(func(in *Input) {
				in.Action.ExpectedImpact = &Impact{Latency: 0.15}
			}, alert("checkout", spec.Quality, SeverityPage, AlertFiring)),
			result: Deny,
			want: []Reason{deny(p, "security playbook action waf-challenge (throttle) raises latency by 15.0% while quality page "+
				"checkout-quality is firing for checkout: quality outranks security "+order)},
		},
		{
			name: "playbook rollback without cost",
			in: playbookInput(func(in *Input) {
				in.Action = &Action{Name: "rollback", Kind: "rollback"}
				in.Trigger.Category = spec.Quality
			}),
			result: Allow,
			want:   []Reason{info(p, "quality playbook action rollback (rollback) costs no other category "+order)},
		},
	}
	runBuiltinCases(t, p, cases)
}

func TestVulnerabilities(t *testing.T) {
	const p = BuiltinVulnerabilities
	security := func(s SecurityCheck) func(*Input) {
		return func(in *Input) { in.Checks = &Checks{Security: &s} }
	}
	fixed := func(id, sev, pkg string, age float64) Finding {
		return Finding{ID: id, Severity: sev, Package: pkg, InstalledVersion: "1.0", FixedVersion: "1.1", AgeDays: age}
	}
	findings := []Finding{
		fixed("CVE-2024-0003", "critical", "zlib", 3),
		fixed("CVE-2024-0001", "critical", "openssl", 45.4),
		fixed("CVE-2024-0010", "high", "libxml2", 31),
		fixed("CVE-2024-0011", "high", "", 29.6),
		fixed("CVE-2024-0020", "medium", "curl", 90),
	}
	cases := []builtinCase{
		{
			name:   "no security check",
			in:     gateInput(),
			result: Allow,
			want:   []Reason{info(p, "no security check at this gate")},
		},
		{
			name: "within thresholds",
			in: gateInput(security(SecurityCheck{
				Counts:      map[string]int{"high": 2, "medium": 1},
				MaxFindings: map[string]int{"critical": 0, "high": 5},
				Findings:    findings[2:],
			})),
			result: Allow,
			want:   []Reason{info(p, "3 findings within thresholds (critical 0 of at most 0, high 2 of at most 5)")},
		},
		{
			name:   "without thresholds",
			in:     gateInput(security(SecurityCheck{Counts: map[string]int{"low": 1}})),
			result: Allow,
			want:   []Reason{info(p, "1 finding, no severity threshold set")},
		},
		{
			name: "too many critical findings, worst first",
			in: gateInput(security(SecurityCheck{
				Counts:      map[string]int{"critical": 2, "high": 2, "medium": 1},
				MaxFindings: map[string]int{"critical": 0, "high": 2},
				Findings:    findings,
			})),
			result: Deny,
			want:   []Reason{deny(p, "2 critical findings, at most 0 allowed: CVE-2024-0001 (openssl), CVE-2024-0003 (zlib)")},
		},
		{
			name: "long lists are cut after five",
			in: gateInput(security(SecurityCheck{
				Counts:      map[string]int{"high": 7},
				MaxFindings: map[string]int{"high": 1},
				Findings: []Finding{
					fixed("H1", "high", "", 1), fixed("H2", "high", "", 2), fixed("H3", "high", "", 3), fixed("H4", "high", "", 4),
					fixed("H5", "high", "", 5), fixed("H6", "high", "", 6), fixed("H7", "high", "", 7),
				},
			})),
			result: Deny,
			want:   []Reason{deny(p, "7 high findings, at most 1 allowed: H7, H6, H5, H4, H3 and 2 more")},
		},
		{
			name: "counts without findings",
			in: gateInput(security(SecurityCheck{
				Counts:      map[string]int{"critical": 1},
				MaxFindings: map[string]int{"critical": 0},
			})),
			result: Deny,
			want:   []Reason{deny(p, "1 critical finding, at most 0 allowed: no IDs in the input")},
		},
		{
			name: "age of high or worse",
			in: gateInput(security(SecurityCheck{
				Counts:      map[string]int{"critical": 2, "high": 2, "medium": 1},
				MaxAgeDays:  30,
				AgeSeverity: "high",
				Findings:    findings,
			})),
			result: Deny,
			want: []Reason{deny(p, "2 findings of severity high or worse open for more than 30 days: "+
				"CVE-2024-0001 (openssl, 45 days), CVE-2024-0010 (libxml2, 31 days)")},
		},
		{
			name: "age of any severity",
			in: gateInput(security(SecurityCheck{
				Counts:     map[string]int{"critical": 2, "high": 2, "medium": 1},
				MaxAgeDays: 30.5,
				Findings:   findings,
			})),
			result: Deny,
			want: []Reason{deny(p, "3 findings of any severity open for more than 30.5 days: "+
				"CVE-2024-0001 (openssl, 45 days), CVE-2024-0010 (libxml2, 31 days), CVE-2024-0020 (curl, 90 days)")},
		},
		{
			name: "findings without a fix warn",
			in: gateInput(security(SecurityCheck{
				Counts:      map[string]int{"high": 1, "low": 1},
				MaxFindings: map[string]int{"critical": 0},
				Findings: []Finding{
					{ID: "CVE-2024-0100", Severity: "high", Package: "glibc", AgeDays: 2},
					fixed("CVE-2024-0101", "low", "tar", 1),
				},
			})),
			result: Warn,
			want:   []Reason{warn(p, "1 finding has no fix yet: CVE-2024-0100 (glibc)")},
		},
		{
			name: "deny and warn together",
			in: gateInput(security(SecurityCheck{
				Counts:      map[string]int{"critical": 1, "unknown": 1},
				MaxFindings: map[string]int{"critical": 0},
				Findings: []Finding{
					{ID: "CVE-2024-0200", Severity: "critical", AgeDays: 1},
					{ID: "GHSA-xxxx", Severity: "unknown", Package: "left-pad", AgeDays: 400},
				},
			})),
			result: Deny,
			want: []Reason{
				deny(p, "1 critical finding, at most 0 allowed: CVE-2024-0200"),
				warn(p, "2 findings have no fix yet: CVE-2024-0200, GHSA-xxxx (left-pad)"),
			},
		},
	}
	runBuiltinCases(t, p, cases)
}
