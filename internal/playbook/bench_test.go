package playbook

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/policy"
	"github.com/qsp-dev/qsp/internal/store"
)

const benchBody = `{"rollout": "{{ .Service }}", "reason": {{ json .Reason }}, "burn": {{ printf "%.1f" .BurnRate }},
 "labels": { {{ range $k, $v := .Group }}"{{ $k }}": {{ json $v }}, {{ end }}"run": "{{ .RunID }}" }}`

// BenchmarkRender renders a realistic webhook body with the playbook
// renderer (parse, bounds checks, output limit, secrets) against plain
// text/template parse and execute of the same text.
func BenchmarkRender(b *testing.B) {
	d := testData()
	b.Run("playbook", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := newRenderer(nil).render("body", benchBody, d); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("reference=text/template", func(b *testing.B) {
		b.ReportAllocs()
		funcs := newRenderer(nil).funcs()
		for b.Loop() {
			t, err := template.New("body").Funcs(funcs).Option("missingkey=error").Parse(benchBody)
			if err != nil {
				b.Fatal(err)
			}
			var buf bytes.Buffer
			if err := t.Execute(&buf, d); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkAllowlist checks a webhook URL against a 20-entry allowlist,
// against url.Parse of the same URL alone.
func BenchmarkAllowlist(b *testing.B) {
	var prefixes []string
	for i := range 20 {
		prefixes = append(prefixes, fmt.Sprintf("https://svc%d.example.com:8443/api/v%d/", i, i%3))
	}
	a, err := NewAllowlist(prefixes)
	if err != nil {
		b.Fatal(err)
	}
	const u = "https://svc19.example.com:8443/api/v1/rollouts/checkout/rollback?reason=latency"
	b.Run("check", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := a.Check(u); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("reference=url.Parse", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := url.Parse(u); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// benchSpecs declares n services, each with an SLO, a state-triggered
// playbook and a burn-rate playbook.
func benchSpecs(n int) string {
	var sb strings.Builder
	for i := range n {
		fmt.Fprintf(&sb, `
---
apiVersion: qsp/v1
kind: Service
metadata: {name: svc%[1]d}
spec: {owner: team}
---
apiVersion: qsp/v1
kind: SLO
metadata: {name: svc%[1]d-availability}
spec:
  service: svc%[1]d
  category: quality
  objective: 99.9
  window: 30d
  indicator:
    ratio:
      bad: sum(rate(req_total{service="svc%[1]d",code="500"}[{{.window}}]))
      total: sum(rate(req_total{service="svc%[1]d"}[{{.window}}]))
---
apiVersion: qsp/v1
kind: Playbook
metadata: {name: svc%[1]d-rollback}
spec:
  service: svc%[1]d
  trigger: {slo: svc%[1]d-availability, on: [firing], severity: page}
  actions:
    - name: rollback
      webhook:
        url: 'RECEIVER/api/v1/rollouts/{{ .Service }}/rollback'
  guards: {kind: rollback, cooldown: 30m}
---
apiVersion: qsp/v1
kind: Playbook
metadata: {name: svc%[1]d-scale}
spec:
  service: svc%[1]d
  trigger:
    slo: svc%[1]d-availability
    burnRate: {window: 5m, above: 10}
  actions:
    - name: scale
      webhook:
        url: 'RECEIVER/api/v1/scale/{{ .Service }}'
  guards: {kind: scale, cooldown: 10m}
`, i)
	}
	return sb.String()
}

// BenchmarkCycle is one runner cycle over 100 services with 200
// playbooks and a snapshot where nothing triggers (the steady state,
// every 5s), against the one store query every cycle makes (due runs).
func BenchmarkCycle(b *testing.B) {
	const n = 100
	h := newBenchHarness(b, benchSpecs(n))
	var sts []*engine.Status
	for i := range n {
		sts = append(sts, status(fmt.Sprintf("svc%d-availability", i), fmt.Sprintf("svc%d", i), 1.5))
	}
	h.snap.set(snapshotAt(t0, sts...))
	ctx := context.Background()
	h.r.cycle(ctx)
	b.Run("cycle", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			h.r.cycle(ctx)
		}
	})
	b.Run("reference=due-query", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := h.st.DuePlaybookRuns(ctx, t0, 4); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkRun takes one trigger through the whole pipeline (insert,
// guards, policy decision recorded, act, webhook call to a local
// receiver, record) on SQLite, against the policy decision alone.
func BenchmarkRun(b *testing.B) {
	h := newBenchHarness(b, benchSpecs(1))
	ctx := context.Background()
	// i counts the episodes over every round of the benchmark (-count),
	// which share the store and the receiver.
	i := 0
	b.Run("run", func(b *testing.B) {
		b.ReportAllocs()
		before, first := h.recv.actions(), i
		for b.Loop() {
			// A new episode every time, an hour apart (out of the cooldown).
			at := t0.Add(time.Duration(i) * time.Hour)
			i++
			h.clk.set(at)
			st := status("svc0-availability", "svc0", 0, engine.AlertStatus{Severity: "page", Name: "SLOErrorBudgetBurn", State: "firing", FiredAt: at})
			h.snap.set(snapshotAt(at, st))
			h.r.cycle(ctx)
			h.r.wait()
		}
		b.StopTimer()
		if n := h.recv.actions() - before; n != i-first {
			b.Fatalf("receiver acted %d times for %d runs", n, i-first)
		}
	})
	b.Run("reference=policy-decision", func(b *testing.B) {
		b.ReportAllocs()
		pb := h.set.Playbook("svc0-rollback")
		run := &Run{ID: "r", Playbook: pb.Name(), Service: "svc0", Plan: planOf(pb), Trigger: Trigger{Event: EventFiring, SLO: "svc0-availability", Severity: "page"}}
		x := &runCtx{r: h.r, run: run, set: h.set}
		in := x.policyInput(h.snap.Snapshot(), run.Plan.Actions[0])
		for b.Loop() {
			if _, err := h.r.opts.Policy.Evaluate(ctx, in); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// newBenchHarness is newHarness for benchmarks: the same real store,
// policy engine and receiver, without baseSpecs.
func newBenchHarness(b *testing.B, playbooks string) *harness {
	b.Helper()
	h := &harness{clk: &testClock{t: t0}, snap: &snapshots{}, ctx: context.Background()}
	h.recv = newReceiver(b)
	h.set = loadSpecs(b, strings.ReplaceAll(playbooks, "RECEIVER", h.recv.URL()))
	st, err := store.Open(h.ctx, store.Options{Path: filepath.Join(b.TempDir(), "qsp.db"), Now: h.clk.now})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	h.st = st
	pe, err := policy.New(policy.Options{Recorder: st, Now: h.clk.now})
	if err != nil {
		b.Fatal(err)
	}
	r, err := New(Options{Specs: h.set, Engine: h.snap, Store: st, Policy: pe, Allowlist: []string{h.recv.URL() + "/api/"}, Now: h.clk.now})
	if err != nil {
		b.Fatal(err)
	}
	h.r = r
	b.Cleanup(r.Close)
	return h
}
