package demo

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qsp-dev/qsp/internal/spec"
	"github.com/qsp-dev/qsp/internal/store"
)

func newTestPlatform(t testing.TB) (*platform, *Simulator) {
	t.Helper()
	sim := NewSimulator(1)
	clock := NewClock(time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC), 1, nil)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return newPlatform(sim, clock, l, "tok", slog.New(slog.DiscardHandler)), sim
}

func call(p *platform, method, path, auth, body string) int {
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	if auth != "" {
		r.Header.Set("Authorization", auth)
	}
	w := httptest.NewRecorder()
	p.server.Handler.ServeHTTP(w, r)
	return w.Code
}

func TestPlatformRemedies(t *testing.T) {
	cases := []struct {
		name           string
		before         Effects
		method, path   string
		auth, body     string
		wantStatus     int
		want           func(e Effects) bool
		wantRestartInc bool
	}{
		{"rollback needs the token", Effects{Canary: &Canary{Weight: 0.5}}, "POST", PathRollback, "Bearer nope", "{}", 401,
			func(e Effects) bool { return e.Canary != nil }, false},
		{"rollback ends the canary", Effects{Canary: &Canary{Weight: 0.5}}, "POST", PathRollback, "Bearer tok", "{}", 200,
			func(e Effects) bool { return e.Canary == nil }, false},
		{"rate limit throttles bots", Effects{Bots: 12}, "PUT", PathRateLimit, "", `{"perClientPerMinute": 10}`, 200,
			func(e Effects) bool { return e.BotsThrottled && e.Bots == 12 }, false},
		{"autoscaler ceiling raised", Effects{SearchSurge: 3, SearchCap: 10}, "PUT", PathAutoscaler, "", `{"maxReplicas": 60}`, 200,
			func(e Effects) bool { return e.SearchCap == 0 }, false},
		{"autoscaler ceiling raised a little", Effects{SearchSurge: 3, SearchCap: 10}, "PUT", PathAutoscaler, "", `{"maxReplicas": 20}`, 200,
			func(e Effects) bool { return e.SearchCap == 20 }, false},
		{"autoscaler needs a ceiling", Effects{SearchCap: 10}, "PUT", PathAutoscaler, "", `{"delta": 2}`, 400,
			func(e Effects) bool { return e.SearchCap == 10 }, false},
		{"workers restarted", Effects{Leak: 1 << 20}, "POST", PathRestart, "", "", 200,
			func(e Effects) bool { return e.Leak == 1<<20 }, true},
		{"wrong method", Effects{Bots: 12}, "GET", PathRateLimit, "", "", 405,
			func(e Effects) bool { return !e.BotsThrottled }, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, sim := newTestPlatform(t)
			sim.Update(func(e *Effects) { *e = c.before })
			restarts := sim.Restarts()
			if got := call(p, c.method, c.path, c.auth, c.body); got != c.wantStatus {
				t.Errorf("status %d, want %d", got, c.wantStatus)
			}
			if e := sim.Effects(); !c.want(e) {
				t.Errorf("effects after the call: %+v", e)
			}
			if got := sim.Restarts() > restarts; got != c.wantRestartInc {
				t.Errorf("restarted: %v", got)
			}
			calls := p.Calls(time.Time{})
			if c.wantStatus == 405 {
				if len(calls) != 0 {
					t.Errorf("calls recorded for a refused method: %+v", calls)
				}
				return
			}
			if len(calls) != 1 || calls[0].Path != c.path || calls[0].Status != c.wantStatus || calls[0].Body != c.body {
				t.Errorf("calls %+v", calls)
			}
		})
	}
}

// TestPlatformServesThePlaybooks checks that every webhook of the example
// playbooks names a path and method the platform serves: otherwise the
// demo's remediation would silently fail with 404 or 405.
func TestPlatformServesThePlaybooks(t *testing.T) {
	set := loadExamples(t)
	p, _ := newTestPlatform(t)
	n := 0
	for _, pb := range set.Playbooks {
		for _, a := range pb.Spec.Actions {
			if a.Webhook == nil {
				continue
			}
			path := strings.TrimPrefix(a.Webhook.URL, "http://"+DefaultPlatformAddr)
			method := a.Webhook.Method
			if method == "" {
				method = http.MethodPost
			}
			auth := ""
			if strings.Contains(a.Webhook.Headers["Authorization"], "secret") {
				auth = "Bearer tok"
			}
			body := a.Webhook.Body
			if strings.Contains(body, "{{") {
				body = "{}"
			}
			if got := call(p, method, path, auth, body); got != http.StatusOK {
				t.Errorf("playbook %s: %s %s answered %d", pb.Name(), method, path, got)
			}
			n++
		}
	}
	if n < 4 {
		t.Errorf("only %d webhooks in the example playbooks", n)
	}
}

func TestPlatformRunsOnLoopback(t *testing.T) {
	p, sim := newTestPlatform(t)
	sim.Update(func(e *Effects) { e.Bots = 3 })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.run(ctx) }()
	req, _ := http.NewRequest(http.MethodPut, p.URL()+PathRateLimit, strings.NewReader("{}"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "OK") {
		t.Errorf("%s: %s", resp.Status, body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the platform API did not stop")
	}
}

// FuzzPlatformAutoscaler feeds the one handler that parses its body:
// any body is answered 200 or 400 and never panics; only a positive
// ceiling changes the simulation.
func FuzzPlatformAutoscaler(f *testing.F) {
	for _, s := range []string{`{"maxReplicas": 60}`, `{"maxReplicas": -1}`, `{"maxReplicas": 1e400}`, `{"delta": 2}`, `[]`, `{"maxReplicas": "60"}`, "", "\x00"} {
		f.Add(s)
	}
	p, sim := newTestPlatform(f)
	f.Fuzz(func(t *testing.T, body string) {
		if len(body) > 1<<16 {
			return
		}
		sim.Update(func(e *Effects) { e.SearchCap = 7 })
		code := call(p, http.MethodPut, PathAutoscaler, "", body)
		e := sim.Effects()
		switch code {
		case http.StatusOK:
			if e.SearchCap != 0 && e.SearchCap < 7 {
				t.Errorf("body %q lowered the ceiling to %d", body, e.SearchCap)
			}
		case http.StatusBadRequest:
			if e.SearchCap != 7 {
				t.Errorf("rejected body %q changed the ceiling to %d", body, e.SearchCap)
			}
		default:
			t.Errorf("body %q: status %d", body, code)
		}
	})
}

// TestRunBadOptions checks that Run refuses what it cannot run, with a
// message that says what.
func TestRunBadOptions(t *testing.T) {
	cases := []struct {
		name string
		opts Options
		want string
	}{
		{"no data dir", Options{}, "no data directory"},
		{"negative speed", Options{DataDir: "x", Speed: -1}, "must not be negative"},
		{"unknown scenario", Options{DataDir: "x", Scenarios: []string{"meteor"}}, `unknown scenario "meteor": want one of payment-outage, deploy-latency,`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Run(context.Background(), c.opts)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want %q", err, c.want)
			}
		})
	}
	// A data directory that cannot be written is an error, not a hang.
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	l, pl := listen(t), listen(t)
	defer l.Close()
	if _, err := Run(context.Background(), Options{DataDir: file, Listener: l, PlatformListener: pl}); err == nil {
		t.Error("a file as data directory was accepted")
	}
}

// TestInterruptedScenarioIsNotJudged: a scenario the demo stops in the
// middle takes its fault back and is reported as interrupted, not as
// expectations QSP failed.
func TestInterruptedScenarioIsNotJudged(t *testing.T) {
	st, err := store.Open(context.Background(), store.Options{Path: filepath.Join(t.TempDir(), "qsp.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	set := loadExamples(t)
	p, sim := newTestPlatform(t)
	sc, err := selectScenarios([]string{"bot-attack"})
	if err != nil {
		t.Fatal(err)
	}
	r := &scenarioRunner{sim: sim, clock: p.clock, store: st, specs: func() *spec.Set { return set }, platform: p,
		logger: slog.New(slog.DiscardHandler), out: io.Discard, quiet: time.Minute, playbooks: true}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res := r.run(ctx, sc[0])
	if !res.Interrupted || res.EndedBy != "the demo stopping" {
		t.Errorf("interrupted %v, ended by %q", res.Interrupted, res.EndedBy)
	}
	if len(res.Problems) != 0 || len(res.Missing) != 1 || !strings.Contains(res.Missing[0], "interrupted") {
		t.Errorf("problems %v, missing %v", res.Problems, res.Missing)
	}
	if e := sim.Effects(); e != (Effects{}) {
		t.Errorf("the fault is still in force: %+v", e)
	}
}
