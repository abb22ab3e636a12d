package gate

import (
	"context"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/qsp-dev/qsp/internal/gate/vuln"
	"github.com/qsp-dev/qsp/internal/policy"
	"github.com/qsp-dev/qsp/internal/store"
)

const securityGates = `
---
apiVersion: qsp/v1
kind: Gate
metadata: {name: checkout-security}
spec:
  service: checkout
  security:
    reports: [reports/trivy.json]
    maxFindings: {critical: 2, high: 4}
    maxAge: 30d
    ageSeverity: high
---
apiVersion: qsp/v1
kind: Gate
metadata: {name: search-security}
spec:
  service: search
  security:
    maxAge: 30d
---
apiVersion: qsp/v1
kind: Gate
metadata: {name: strict}
spec:
  service: checkout
  security:
    maxFindings: {critical: 0}
---
apiVersion: qsp/v1
kind: Gate
metadata: {name: fixable-only}
spec:
  service: checkout
  security:
    onlyFixable: true
    ignore: [GHSA-4v7x-pqxf-cx7m]
    maxFindings: {high: 2, medium: 1, low: 0}
---
apiVersion: qsp/v1
kind: Gate
metadata: {name: checkout-budget-and-security}
spec:
  service: checkout
  budget: {}
  security:
    maxFindings: {critical: 5}
`

// securityFixture has healthy services: the error-budget policy, which
// applies at every gate, has nothing to say.
func securityFixture(t *testing.T) *fixture {
	f := newFixture(t, fixtureOptions{specs: baseSpecs + securityGates, now: testNow, series: healthySeries()})
	f.files["reports/trivy.json"] = testdata(t, "trivy-checkout.json")
	return f
}

func grypeReport(t *testing.T) Report {
	return Report{Name: "grype.json", Content: testdata(t, "grype-checkout.json")}
}

// TestSecurityGateReports judges a Trivy report (read from the gate's
// spec.security.reports) and a Grype report (uploaded) of the same image.
// The expected counts are worked out by hand from the fixtures, which
// follow the scanners' documented JSON schemas:
//
//	trivy  CVE-2024-0727 libcrypto3  MEDIUM                      fix
//	       CVE-2024-2511 libssl3     UNKNOWN, nvd vendor 3: high  fix
//	       CVE-2024-4741 libssl3     (none), redhat source 4: critical fix
//	       CVE-2023-42363 busybox    MEDIUM                      no fix
//	       CVE-2024-0567 gnutls      LOW (the top-level rating wins) fix
//	       CVE-2023-45288 x/net      HIGH                        fix
//	       CVE-2023-39325 x/net      HIGH                        fix
//	grype  CVE-2024-0727 libcrypto3  Medium: the same finding
//	       GHSA-4v7x-pqxf-cx7m x/net Medium, alias CVE-2023-45288: the same
//	                                 finding, Trivy's high kept
//	       CVE-2024-24790 stdlib     Critical                    fix
//	       CVE-2024-28182 nghttp2    Unknown, related nvd High   fix
//	       CVE-2016-2781 coreutils   Negligible: low             wont-fix
//
// 10 findings: critical 2, high 4, medium 2, low 2; 2 without a fix.
func TestSecurityGateReports(t *testing.T) {
	f := securityFixture(t)
	ev := f.evaluate("checkout-security", Request{Change: Change{Kind: policy.ChangeFeature, Version: "2.1.0"}, Reports: []Report{grypeReport(t)}})
	mustState(t, ev, StatePass)
	sec := ev.Security
	want := map[string]int{"critical": 2, "high": 4, "medium": 2, "low": 2, "unknown": 0}
	if !maps.Equal(sec.Counts, want) || sec.Total != 10 || sec.Ignored != 0 || sec.Unfixable != 0 {
		t.Fatalf("counts %v total %d ignored %d unfixable %d, want %v total 10", sec.Counts, sec.Total, sec.Ignored, sec.Unfixable, want)
	}
	if len(sec.Reports) != 2 || sec.Reports[0] != (ReportSummary{"grype.json", "grype", 5}) || sec.Reports[1] != (ReportSummary{"reports/trivy.json", "trivy", 7}) {
		t.Errorf("reports %+v", sec.Reports)
	}
	bySev := map[string]Finding{}
	for _, fd := range sec.Findings {
		bySev[fd.ID] = fd
		if fd.AgeDays != 0 || !fd.FirstSeen.Equal(testNow) {
			t.Errorf("%s: first seen %s age %v on first sight", fd.ID, fd.FirstSeen, fd.AgeDays)
		}
	}
	for id, w := range map[string]struct{ sev, src string }{
		"CVE-2024-2511":  {"high", "vendor:nvd"},
		"CVE-2024-4741":  {"critical", "vendor:redhat"},
		"CVE-2024-28182": {"high", "related:nvd"},
		"CVE-2023-45288": {"high", "severity"},
		"CVE-2024-0567":  {"low", "severity"},
		"CVE-2016-2781":  {"low", "severity"},
	} {
		if got := bySev[id]; got.Severity != w.sev || got.SeveritySource != w.src {
			t.Errorf("%s: severity %s from %s, want %s from %s", id, got.Severity, got.SeveritySource, w.sev, w.src)
		}
	}
	if got := bySev["CVE-2023-45288"].Aliases; len(got) != 1 || got[0] != "GHSA-4v7x-pqxf-cx7m" {
		t.Errorf("CVE-2023-45288 aliases %v", got)
	}
	if sec.Findings[0].Severity != "critical" || sec.Findings[len(sec.Findings)-1].Severity != "low" {
		t.Errorf("findings not most severe first: %+v", sec.Findings)
	}
	if !hasReason(ev, LevelWarn, "2 findings have no fix yet", "CVE-2023-42363 (busybox)", "CVE-2016-2781 (coreutils)") {
		t.Errorf("no warning about findings without a fix:%s", reasonsText(ev))
	}
	if !hasReason(ev, LevelInfo, "10 findings counted: critical 2 (at most 2), high 4 (at most 4), medium 2, low 2") {
		t.Errorf("no count reason:%s", reasonsText(ev))
	}

	// 31 days later the same findings are older than the gate's 30 days:
	// their age counts from when QSP first saw them, not from the
	// reports. The six critical and high ones deny.
	f.clock.add(31 * 24 * time.Hour)
	ev = f.evaluate("checkout-security", Request{Reports: []Report{grypeReport(t)}})
	mustState(t, ev, StateFail)
	if ev.Security.OverAge != 6 {
		t.Errorf("over age %d, want 6", ev.Security.OverAge)
	}
	if !hasReason(ev, LevelDeny, "6 findings of severity high or worse open for more than 30 days", "CVE-2024-24790 (stdlib, 31 days)") {
		t.Errorf("no age denial:%s", reasonsText(ev))
	}
	// The same findings are new to another service.
	ev = f.evaluate("search-security", Request{Reports: []Report{grypeReport(t)}})
	mustState(t, ev, StatePass)
	for _, fd := range ev.Security.Findings {
		if fd.AgeDays != 0 {
			t.Errorf("search: %s is %v days old on first sight", fd.ID, fd.AgeDays)
		}
	}
}

// TestSecurityGateThresholds: counts above maxFindings deny, after the
// ignore list and onlyFixable.
func TestSecurityGateThresholds(t *testing.T) {
	f := securityFixture(t)
	reports := []Report{{Name: "trivy.json", Content: testdata(t, "trivy-checkout.json")}, grypeReport(t)}
	for _, tc := range []struct {
		gate             string
		want             State
		counts           map[string]int
		ignored, unfixed int
		denies           [][]string
	}{
		{"strict", StateFail, map[string]int{"critical": 2, "high": 4, "medium": 2, "low": 2, "unknown": 0}, 0, 0,
			[][]string{{"2 critical findings, at most 0 allowed", "CVE-2024-24790 (stdlib)", "CVE-2024-4741 (libssl3)"}}},
		// onlyFixable drops busybox and coreutils; the ignore list names
		// the GHSA alias of CVE-2023-45288.
		{"fixable-only", StateFail, map[string]int{"critical": 2, "high": 3, "medium": 1, "low": 1, "unknown": 0}, 1, 2,
			[][]string{{"3 high findings, at most 2 allowed"}, {"1 low finding, at most 0 allowed", "CVE-2024-0567 (gnutls)"}}},
	} {
		t.Run(tc.gate, func(t *testing.T) {
			ev := f.evaluate(tc.gate, Request{Reports: reports})
			mustState(t, ev, tc.want)
			if !maps.Equal(ev.Security.Counts, tc.counts) || ev.Security.Ignored != tc.ignored || ev.Security.Unfixable != tc.unfixed {
				t.Errorf("counts %v ignored %d unfixable %d, want %v %d %d", ev.Security.Counts, ev.Security.Ignored, ev.Security.Unfixable, tc.counts, tc.ignored, tc.unfixed)
			}
			for _, parts := range tc.denies {
				if !hasReason(ev, LevelDeny, parts...) {
					t.Errorf("no deny with %q:%s", parts, reasonsText(ev))
				}
			}
		})
	}
}

// TestSecurityGateBadReports: a report that cannot be read as Trivy or
// Grype JSON is an error naming the file (exit 2), never a pass with
// fewer findings; and no decision is taken on partial facts.
func TestSecurityGateBadReports(t *testing.T) {
	f := securityFixture(t)
	trivy := testdata(t, "trivy-checkout.json")
	for _, tc := range []struct {
		name    string
		gate    string
		reports []Report
		files   map[string][]byte
		parts   []string
	}{
		{"truncated", "strict", []Report{{Name: "cut.json", Content: trivy[:len(trivy)/2]}}, nil,
			[]string{"report cut.json", "malformed vulnerability report", "unexpected end of JSON"}},
		{"syntax error", "strict", []Report{{Name: "bad.json", Content: []byte("{\n  \"matches\": [\n    {\"vulnerability\": }\n  ]\n}")}}, nil,
			[]string{"report bad.json", "line 3"}},
		{"unknown format", "strict", []Report{{Name: "sbom.json", Content: []byte(`{"bomFormat": "CycloneDX", "specVersion": "1.5", "components": []}`)}}, nil,
			[]string{"report sbom.json", "neither Trivy JSON", "nor Grype JSON", "bomFormat"}},
		{"empty", "strict", []Report{{Name: "empty.json", Content: nil}}, nil, []string{"report empty.json", "empty file"}},
		{"not JSON", "strict", []Report{{Name: "table.txt", Content: []byte("Total: 3 (HIGH: 2, CRITICAL: 1)")}}, nil,
			[]string{"report table.txt", "not a JSON object or array"}},
		{"one bad among good", "strict", []Report{grypeReport(t), {Name: "bad.json", Content: []byte(`{"SchemaVersion": 2, "Results": [{"Vulnerabilities": []}]}`)}}, nil,
			[]string{"report bad.json", "no Target"}},
		{"spec report missing", "checkout-security", nil, map[string][]byte{}, []string{"report reports/trivy.json (spec.security.reports)", "file does not exist"}},
		{"no reports", "strict", nil, nil, []string{"no vulnerability reports"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.files != nil {
				old := f.files
				f.files = tc.files
				t.Cleanup(func() { f.files = old })
			}
			ev := f.evaluate(tc.gate, Request{Reports: tc.reports})
			mustState(t, ev, StateError)
			if !hasReason(ev, LevelError, tc.parts...) {
				t.Errorf("no error reason with %q:%s", tc.parts, reasonsText(ev))
			}
			if ev.Decision != nil {
				t.Errorf("a decision was taken on partial facts: %+v", ev.Decision)
			}
			if ev.State.ExitCode() != 2 {
				t.Errorf("exit code %d", ev.State.ExitCode())
			}
		})
	}
	// The parser's own error is what the evaluation reports.
	_, err := vuln.Parse("x.json", []byte("[1]"))
	if !errors.Is(err, vuln.ErrFormat) {
		t.Errorf("vuln.Parse: %v", err)
	}
}

// TestSecurityGateWithBudget: the policy sees both checks; the budget's
// freeze denies although the findings are within limits.
func TestSecurityGateWithBudget(t *testing.T) {
	f := newFixture(t, fixtureOptions{specs: baseSpecs + securityGates, now: testNow, series: budgetSeries()})
	ev := f.evaluate("checkout-budget-and-security", Request{Reports: []Report{grypeReport(t)}})
	mustState(t, ev, StateFail)
	if !hasReason(ev, LevelDeny, "may not deploy", "SLO checkout-availability") || !hasReason(ev, LevelInfo, "5 findings counted: critical 1 (at most 5)") ||
		hasReason(ev, LevelDeny, "finding") {
		t.Errorf("reasons:%s", reasonsText(ev))
	}
	if ev.Budget == nil || ev.Security == nil {
		t.Errorf("budget %v security %v", ev.Budget, ev.Security)
	}
}

// TestRequestValidation: requests that cannot be evaluated are refused
// before anything runs.
func TestRequestValidation(t *testing.T) {
	f := newFixture(t, fixtureOptions{specs: baseSpecs + securityGates + budgetGates, now: testNow})
	for _, tc := range []struct {
		name string
		gate string
		req  Request
		want error
		msg  string
	}{
		{"unknown gate", "nope", Request{}, ErrUnknownGate, `gate "nope"`},
		{"unknown kind", "strict", Request{Change: Change{Kind: "hotfix"}}, ErrInvalidRequest, `change kind "hotfix"`},
		{"mitigation without category", "strict", Request{Change: Change{Kind: "mitigation"}}, ErrInvalidRequest, "needs the category"},
		{"bad category", "strict", Request{Change: Change{Kind: "fix", Category: "speed"}}, ErrInvalidRequest, `category "speed"`},
		{"reports without security", "search-budget", Request{Reports: []Report{grypeReport(t)}}, ErrInvalidRequest, "no security check"},
		{"samples without canary", "strict", Request{Samples: []byte(`{"metrics":{}}`)}, ErrInvalidRequest, "no canary check"},
		{"runs without canary", "strict", Request{Runs: 2}, ErrInvalidRequest, "no canary check"},
		{"negative runs", "strict", Request{Runs: -1}, ErrInvalidRequest, "must not be negative"},
		{"unnamed report", "strict", Request{Reports: []Report{{Content: []byte("{}")}}}, ErrInvalidRequest, "reports[0]: no name"},
		{"duplicate report", "strict", Request{Reports: []Report{grypeReport(t), grypeReport(t)}}, ErrInvalidRequest, "uploaded twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, start := range []bool{false, true} {
				var err error
				if start {
					_, err = f.runner.Start(context.Background(), tc.gate, tc.req)
				} else {
					_, err = f.runner.Evaluate(context.Background(), tc.gate, tc.req)
				}
				if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
					t.Errorf("start %v: got %v, want %v with %q", start, err, tc.want, tc.msg)
				}
			}
		})
	}
}

// TestDeployOnlyWhenTold and rollbacks without reports (issue 22): a gate
// run records a deploy marker only when its change says it is deployed,
// and a rollback is not blocked for lack of a vulnerability report.
func TestDeployOnlyWhenTold(t *testing.T) {
	f := securityFixture(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		req     Request
		want    State
		deploys int
	}{
		{"dry run is no deploy", Request{Change: Change{Kind: policy.ChangeFeature, Version: "9.9.1"}, Reports: []Report{grypeReport(t)}}, StateFail, 0},
		{"deploy is recorded", Request{Change: Change{Kind: policy.ChangeFeature, Version: "9.9.2", Deploy: true}, Reports: []Report{grypeReport(t)}}, StateFail, 1},
		{"feature without report errors", Request{Change: Change{Kind: policy.ChangeFeature, Version: "9.9.3"}}, StateError, 0},
		{"rollback without report passes", Request{Change: Change{Kind: policy.ChangeRollback, Version: "9.9.4", Deploy: true}}, StatePass, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := f.evaluate("strict", tc.req)
			mustState(t, ev, tc.want)
			ds, _, err := f.store.Deploys(ctx, store.DeployFilter{Service: ev.Service})
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, d := range ds {
				if d.EvaluationID == ev.ID {
					n++
				}
			}
			if n != tc.deploys {
				t.Errorf("got %d deploy markers, want %d", n, tc.deploys)
			}
		})
	}
}
