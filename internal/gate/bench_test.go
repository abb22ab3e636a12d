package gate

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qsp-dev/qsp/internal/gate/vuln"
	"github.com/qsp-dev/qsp/internal/policy"
	"github.com/qsp-dev/qsp/internal/spec"
	"github.com/qsp-dev/qsp/internal/store"
)

// syntheticTrivy is a Trivy report (SchemaVersion 2) with n findings over
// n/4 packages, severities cycling, every third without a fix.
func syntheticTrivy(n int) []byte {
	sevs := []string{"CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN"}
	vulns := make([]map[string]any, n)
	for i := range n {
		v := map[string]any{
			"VulnerabilityID": fmt.Sprintf("CVE-2024-%05d", i), "PkgName": fmt.Sprintf("pkg-%d", i/4),
			"InstalledVersion": "1.0.0", "Severity": sevs[i%len(sevs)], "VendorSeverity": map[string]int{"nvd": 1 + i%4},
		}
		if i%3 != 0 {
			v["FixedVersion"] = "1.0.1"
		}
		vulns[i] = v
	}
	doc := map[string]any{"SchemaVersion": 2, "ArtifactName": "bench:1", "Results": []any{
		map[string]any{"Target": "bench:1 (debian 12)", "Class": "os-pkgs", "Type": "debian", "Vulnerabilities": vulns},
	}}
	b, _ := json.Marshal(doc)
	return b
}

// perKeyStore is the naive first-seen lookup: one store call, hence one
// transaction, per finding (the vuln.FirstSeen port used directly).
type perKeyStore struct {
	s       *store.Store
	service string
}

func (p perKeyStore) FirstSeen(ctx context.Context, key string, now time.Time) (time.Time, error) {
	return p.s.FirstSeen(ctx, p.service+"|"+key, now)
}

// benchServices numbers the services of "new" iterations across runs
// (-count), so that no finding is ever known.
var benchServices atomic.Int64

// BenchmarkSecurityCheck measures the security stage on a 2,000-finding
// Trivy report against a SQLite store: parse, count, first-seen look-ups
// and ages. "known" is the steady state of CI re-scanning the same image
// (every finding seen before); "new" sees every finding for the first
// time (a new service each iteration). The reference does the same with
// one store call, and so one transaction, per finding.
func BenchmarkSecurityCheck(b *testing.B) {
	const n = 2000
	report := syntheticTrivy(n)
	st, err := store.Open(context.Background(), store.Options{Path: filepath.Join(b.TempDir(), "qsp.db")})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	r := &Runner{opts: Options{FirstSeen: st, MaxListedFindings: 500}}
	batched := func(service string) {
		g := &spec.Gate{Spec: spec.GateSpec{Service: service, Security: &spec.SecurityCheck{
			MaxFindings: map[string]int{"critical": 10}, MaxAge: spec.Duration(30 * 24 * time.Hour), AgeSeverity: "high"}}}
		x := &run{r: r, gate: g, req: Request{Reports: []Report{{Name: "trivy.json", Content: report}}}, ev: &Evaluation{CreatedAt: testNow}}
		if err := (securityStage{}).exec(context.Background(), x); err != nil {
			b.Fatal(err)
		}
		if x.ev.Security.Total != n {
			b.Fatalf("counted %d findings, want %d", x.ev.Security.Total, n)
		}
	}
	perKey := func(service string) {
		parsed, err := vuln.Parse("trivy.json", report)
		if err != nil {
			b.Fatal(err)
		}
		sum := vuln.Count(parsed.Findings, vuln.Filter{})
		aged, err := vuln.Ages(context.Background(), perKeyStore{st, service}, sum.Findings, testNow)
		if err != nil || len(aged) != n {
			b.Fatal(err, len(aged))
		}
	}
	batched("known")
	perKey("known")
	for _, v := range []struct {
		name string
		fn   func(string)
	}{{"batched", batched}, {"per-key-reference", perKey}} {
		b.Run("known/"+v.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				v.fn("known")
			}
		})
		b.Run("new/"+v.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				v.fn(fmt.Sprintf("new-%d", benchServices.Add(1)))
			}
		})
	}
}

// BenchmarkEvaluate measures one whole one-shot evaluation of a gate with
// budget, security (the two 5- and 7-finding fixture reports) and canary
// (JSON samples) checks: engine snapshot, report parsing, first-seen
// lookups, canary analysis, the policy decision (recorded), the
// evaluation's writes and its deploy marker, on SQLite.
func BenchmarkEvaluate(b *testing.B) {
	f := benchFixture(b)
	reports := []Report{{Name: "trivy.json", Content: testdata(b, "trivy-checkout.json")}, {Name: "grype.json", Content: testdata(b, "grype-checkout.json")}}
	req := Request{Change: Change{Kind: policy.ChangeRollback, Version: "1"}, Reports: reports, Samples: samplesDoc(1)}
	b.ReportAllocs()
	for b.Loop() {
		ev, err := f.Evaluate(context.Background(), "checkout-budget-and-security-canary", req)
		// The fixtures' two critical findings fail the gate: every stage
		// runs.
		if err != nil || ev.State != StateFail {
			b.Fatalf("%v %+v", err, ev)
		}
	}
}

// benchFixture is the test fixture for a benchmark.
func benchFixture(b *testing.B) *Runner {
	f := newFixture(b, fixtureOptions{specs: baseSpecs + canaryGates, now: testNow, series: slices.Concat(budgetSeries(), canarySeries())})
	f.files["reports/trivy.json"] = testdata(b, "trivy-checkout.json")
	return f.runner
}
