package demo

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qsp-dev/qsp/internal/gate"
)

// testWriter sends the demo's progress to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestDemoScenarios runs the whole demo headless at 300x through every
// scenario once (about six simulated hours in a bit over a minute) and
// checks, for each, that QSP detected it with the expected alert within
// the expected time and did what the design says: an incident, a failed
// gate, playbook runs and their platform calls, no_data and never ok
// while telemetry is lost. The expectations here are written out
// independently of the scenarios' own data.
func TestDemoScenarios(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	began := time.Now()
	sum, err := Run(ctx, Options{
		DataDir: dir, Listener: listen(t), PlatformListener: listen(t),
		Speed: 300, Once: true, History: 2 * day, Warmup: 5 * time.Minute, Quiet: 15 * time.Minute,
		Out: testWriter{t},
	})
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	t.Logf("demo ran %s of simulated time in %s", sum.End.Sub(sum.Start).Round(time.Minute), time.Since(began).Round(time.Second))
	var table strings.Builder
	if err := sum.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	t.Logf("summary:\n%s", table.String())

	want := []struct {
		scenario, slo, severity string
		within                  time.Duration
		incident                bool
		gate                    string
		playbook, call          string
		noData, restarts        bool
	}{
		{"payment-outage", "checkout-availability", "page", 3 * time.Minute, true, "", "", "", false, false},
		{"deploy-latency", "checkout-latency", "page", 25 * time.Minute, true, "checkout-deploy", "checkout-rollback", PathRollback, false, false},
		{"bot-attack", "auth-login-failures", "page", 15 * time.Minute, true, "", "auth-throttle-bots", PathRateLimit, false, false},
		{"memory-leak", "auth-worker-memory", "page", 30 * time.Minute, true, "", "auth-restart-workers", "", false, true},
		{"autoscaling-throttle", "search-availability", "page", 20 * time.Minute, true, "", "search-scale-up", PathAutoscaler, false, false},
		{"stale-cache", "search-freshness", "page", 10 * time.Minute, true, "", "", "", false, false},
		{"telemetry-loss", "checkout-probe", "no_data", 17 * time.Minute, false, "", "", "", true, false},
	}
	if len(sum.Results) != len(want) {
		t.Fatalf("%d scenario results, want %d", len(sum.Results), len(want))
	}
	if sum.HistorySamples == 0 || sum.SamplesSent == 0 || sum.SamplesLost == 0 {
		t.Errorf("samples: %d history, %d sent, %d lost; want all positive", sum.HistorySamples, sum.SamplesSent, sum.SamplesLost)
	}
	for i, w := range want {
		r := sum.Results[i]
		t.Run(w.scenario, func(t *testing.T) {
			if r.Scenario != w.scenario {
				t.Fatalf("scenario %d is %s, want %s", i, r.Scenario, w.scenario)
			}
			switch {
			case !r.Detected:
				t.Errorf("%s %s never fired; alerts: %v", w.slo, w.severity, r.Alerts)
			case r.SLO != w.slo || r.Severity != w.severity:
				t.Errorf("detected %s %s, want %s %s", r.SLO, r.Severity, w.slo, w.severity)
			case r.TTD <= 0 || r.TTD > w.within:
				t.Errorf("time to detect %s, want within (0, %s]", r.TTD, w.within)
			}
			if w.incident && len(r.Incidents) == 0 {
				t.Errorf("no incident holds the %s alert", w.slo)
			}
			if w.gate != "" {
				if r.Gate == nil || r.Gate.Name != w.gate || r.Gate.State != string(gate.StateFail) || r.Gate.Canary != "fail" {
					t.Errorf("gate: got %+v, want %s failed by its canary", r.Gate, w.gate)
				}
			}
			if w.playbook != "" {
				if len(r.Missing) > 0 {
					// The app does not run playbooks yet: say so loudly,
					// and check what the demo can check without them.
					t.Logf("not checked: %v", r.Missing)
				} else {
					runs := 0
					for _, p := range r.Playbooks {
						if p.Playbook == w.playbook {
							runs++
						}
					}
					if runs == 0 {
						t.Errorf("playbook %s never ran; runs: %+v", w.playbook, r.Playbooks)
					}
					calls := 0
					for _, c := range r.Calls {
						if c.Path == w.call && c.Status/100 == 2 {
							calls++
						}
					}
					if w.call != "" && calls != 1 {
						t.Errorf("%s called %d times, want once; calls: %+v", w.call, calls, r.Calls)
					}
					if w.call != "" && !strings.HasPrefix(r.EndedBy, "remediation") {
						t.Errorf("fault ended by %s, want the remediation", r.EndedBy)
					}
				}
			}
			if w.noData {
				if r.NoDataChecks == 0 {
					t.Error("no snapshot was checked while telemetry was lost")
				}
				if len(r.NotNoData) > 0 {
					t.Errorf("SLOs not no_data while telemetry was lost: %v", r.NotNoData)
				}
			}
			if w.restarts && r.Restarts == 0 {
				t.Error("the leaking workers never restarted")
			}
			if !r.OK() {
				t.Errorf("problems: %v", r.Problems)
			}
		})
	}
	// The data directory has the layout operations.md documents.
	for _, p := range []string{"tsdb", "qsp.db", "specs/checkout.yaml", "secrets/ROLLOUTS_TOKEN"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Errorf("data dir: %v", err)
		}
	}
}
