// Package uitest starts the whole QSP app in-process over the example
// specs (examples/) with live telemetry, for the tests of what users look
// at: the UI's browser tests, the authorization matrix, the API's OpenAPI
// checks. Telemetry for every example SLO is written into the embedded
// TSDB before the start (hours of history) and then pushed minute by
// minute through the real remote_write receiver on a fake clock, healthy
// or with an outage that fires alerts, opens incidents and triggers
// playbooks.
package uitest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/gogo/protobuf/proto"
	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"

	"github.com/qsp-dev/qsp/internal/api"
	"github.com/qsp-dev/qsp/internal/app"
	"github.com/qsp-dev/qsp/internal/telemetry"
)

// Clock is a settable clock shared by a test and the app.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

// Set moves the clock.
func (c *Clock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// T0 is when the live part of every Env starts; history precedes it.
var T0 = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

// History is how much telemetry precedes T0.
const History = 3 * time.Hour

// Options configure Start.
type Options struct {
	// Tokens configures one token per role (viewer, operator, admin,
	// ingest); without, the server runs in open mode
	// (auth.insecureAnonymousAdmin; Config may turn it off).
	Tokens bool
	// Config changes the configuration before the start.
	Config func(c *app.Config)
}

// Env is a running app.
type Env struct {
	App   *app.App
	URL   string
	Clock *Clock
	// Tokens are the raw tokens by role (Options.Tokens).
	Tokens map[api.Role]string
	// Minute is the start of the next live minute Advance writes.
	Minute time.Time

	gen  *generator
	stop func()
}

// Root returns the repository's root directory.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

// Start runs the app on a loopback port over examples/, with History of
// healthy telemetry before T0, and waits until it is ready. The app stops
// when the test ends.
func Start(t testing.TB, o Options) *Env {
	t.Helper()
	dir := t.TempDir()
	clk := &Clock{t: T0.Add(30 * time.Second)}
	e := &Env{Clock: clk, Tokens: map[api.Role]string{}, Minute: T0, gen: newGenerator()}

	db, err := telemetry.OpenEmbedded(telemetry.EmbeddedOptions{Dir: filepath.Join(dir, "data", "tsdb")})
	if err != nil {
		t.Fatal(err)
	}
	ap := db.DB().Appender(context.Background())
	for m := T0.Add(-History); m.Before(T0); m = m.Add(time.Minute) {
		for _, s := range e.gen.minute(m, Healthy) {
			ls := labels.New(protoLabels(s.Labels)...)
			for _, p := range s.Samples {
				if _, err := ap.Append(0, ls, p.Timestamp, p.Value); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if err := ap.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := &app.Config{DataDir: filepath.Join(dir, "data"), Specs: []string{filepath.Join(Root(), "examples")}, Listen: l.Addr().String()}
	cfg.Evaluation.Interval = 100 * 1e6
	// The examples' webhooks point at 127.0.0.1:9099: allowed, so runs
	// reach their approval and their actions, which then fail to connect.
	cfg.Playbooks.Allowlist = []string{"http://127.0.0.1:9099/"}
	cfg.Auth.InsecureAnonymousAdmin = !o.Tokens
	if o.Tokens {
		for _, r := range api.Roles {
			tok, hash, err := api.NewToken()
			if err != nil {
				t.Fatal(err)
			}
			e.Tokens[r] = tok
			cfg.Auth.Tokens = append(cfg.Auth.Tokens, app.TokenConfig{Name: "the-" + string(r), Role: string(r), SHA256: hash})
		}
	}
	if o.Config != nil {
		o.Config(cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, app.Options{Config: cfg, Listener: l, Now: clk.Now})
	if err != nil {
		cancel()
		l.Close()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	e.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("app run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Error("app did not stop within 30s")
			}
		})
	}
	t.Cleanup(e.stop)
	e.App, e.URL = a, "http://"+l.Addr().String()
	deadline := time.Now().Add(60 * time.Second)
	for !a.Engine().Ready() || a.Engine().Snapshot().At.IsZero() {
		if time.Now().After(deadline) {
			t.Fatal("the app was not ready within 60s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return e
}

// Stop stops the app now rather than at the end of the test.
func (e *Env) Stop() { e.stop() }

// Mode is the state of the example services during a live minute.
type Mode int

// Modes.
const (
	// Healthy: a few errors, fast responses.
	Healthy Mode = iota
	// Outage: half of checkout's and a third of search's requests fail.
	Outage
)

// Advance pushes the next live minute of telemetry through remote_write
// (with the ingest token when there are tokens), moves the clock past
// its end and the engine's settle time, and waits until the engine has
// evaluated at the new time.
func (e *Env) Advance(t testing.TB, mode Mode) {
	t.Helper()
	ts := e.gen.minute(e.Minute, mode)
	b, err := proto.Marshal(&prompb.WriteRequest{Timeseries: ts})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, e.URL+"/api/v1/write", bytes.NewReader(snappy.Encode(nil, b)))
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	if tok := e.Tokens[api.RoleIngest]; tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("remote_write: %s: %s", resp.Status, body)
	}
	e.Minute = e.Minute.Add(time.Minute)
	now := e.Minute.Add(31 * time.Second)
	e.Clock.Set(now)
	deadline := time.Now().Add(30 * time.Second)
	for e.App.Engine().Snapshot().At.Before(now) {
		if time.Now().After(deadline) {
			t.Fatalf("the engine did not evaluate at %s within 30s", now)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Deploy posts a deploy marker through the events API at the clock's
// time.
func (e *Env) Deploy(t testing.TB, service, version string) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"events": []map[string]any{{
		"type": "deploy", "service": service, "version": version, "description": "rollout of " + version,
		"time": e.Clock.Now().Add(-20 * time.Second).Format(time.RFC3339),
	}}})
	resp := e.Do(t, http.MethodPost, "/api/v1/events", api.RoleIngest, "application/json", body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("deploy event: %s: %s", resp.Status, ReadBody(t, resp))
	}
	resp.Body.Close()
}

// Do sends a request with the token of role (none for RoleNone).
func (e *Env) Do(t testing.TB, method, path string, role api.Role, contentType string, body []byte) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, e.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if tok := e.Tokens[role]; tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// ReadBody reads and closes a response body.
func ReadBody(t testing.TB, resp *http.Response) []byte {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Eventually polls cond every 20ms until it holds or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf(format, args...)
		}
	}
}

// generator writes the example services' telemetry: counters that grow
// by a rate each 15s sample, and gauges.
type generator struct {
	counters map[string]float64
}

func newGenerator() *generator { return &generator{counters: map[string]float64{}} }

// series of one minute: four samples at 0, 15, 30, 45s.
func (g *generator) minute(m time.Time, mode Mode) []prompb.TimeSeries {
	var out []prompb.TimeSeries
	counter := func(perMinute float64, kv ...string) {
		key := fmt.Sprint(kv)
		ts := prompb.TimeSeries{Labels: pl(kv...)}
		for i := range 4 {
			g.counters[key] += perMinute / 4
			ts.Samples = append(ts.Samples, prompb.Sample{Timestamp: m.Add(time.Duration(i) * 15 * time.Second).UnixMilli(), Value: math.Round(g.counters[key]*1000) / 1000})
		}
		out = append(out, ts)
	}
	gauge := func(v float64, kv ...string) {
		ts := prompb.TimeSeries{Labels: pl(kv...)}
		for i := range 4 {
			ts.Samples = append(ts.Samples, prompb.Sample{Timestamp: m.Add(time.Duration(i) * 15 * time.Second).UnixMilli(), Value: v})
		}
		out = append(out, ts)
	}
	outage := mode == Outage
	// Requests: checkout per handler, search per tenant, auth.
	errShare := map[string]float64{"checkout": 0.0005, "search": 0.001, "auth": 0.0002}
	if outage {
		errShare["checkout"], errShare["search"] = 0.5, 0.3
	}
	for _, h := range []string{"place-order", "cart"} {
		total := 600.0
		counter(total*(1-errShare["checkout"]), "__name__", "http_requests_total", "service", "checkout", "handler", h, "code", "200")
		counter(total*errShare["checkout"], "__name__", "http_requests_total", "service", "checkout", "handler", h, "code", "500")
	}
	for _, tn := range []string{"acme", "globex"} {
		total := 900.0
		counter(total*(1-errShare["search"]), "__name__", "http_requests_total", "service", "search", "tenant", tn, "code", "200")
		counter(total*errShare["search"], "__name__", "http_requests_total", "service", "search", "tenant", tn, "code", "503")
	}
	counter(1200*(1-errShare["auth"]), "__name__", "http_requests_total", "service", "auth", "code", "200")
	counter(1200*errShare["auth"], "__name__", "http_requests_total", "service", "auth", "code", "500")
	// Latency histograms: cumulative buckets, _count.
	les := []string{"0.1", "0.2", "0.3", "0.5", "0.8", "1", "+Inf"}
	for _, svc := range []string{"checkout", "search", "auth"} {
		shares := []float64{0.7, 0.98, 0.995, 0.999, 1, 1, 1}
		if outage && svc == "checkout" {
			shares = []float64{0.2, 0.5, 0.7, 0.9, 0.97, 0.99, 1}
		}
		const n = 1200.0
		for i, le := range les {
			counter(n*shares[i], "__name__", "http_request_duration_seconds_bucket", "service", svc, "le", le)
		}
		counter(n, "__name__", "http_request_duration_seconds_count", "service", svc)
	}
	counter(300, "__name__", "auth_login_attempts_total", "service", "auth", "result", "success")
	counter(3, "__name__", "auth_login_attempts_total", "service", "auth", "result", "failure")
	counter(2000, "__name__", "waf_requests_total", "service", "auth", "action", "allow")
	counter(1, "__name__", "waf_requests_total", "service", "auth", "action", "block")
	counter(1800, "__name__", "search_cache_responses_total", "service", "search", "freshness", "fresh")
	counter(0.5, "__name__", "search_cache_responses_total", "service", "search", "freshness", "stale")
	probe := 1.0
	if outage {
		probe = 0
	}
	gauge(probe, "__name__", "probe_success", "service", "checkout")
	gauge(120, "__name__", "queue_depth", "service", "checkout", "queue", "orders")
	for _, svc := range []string{"checkout", "auth"} {
		gauge(5*86400, "__name__", "vulnerability_oldest_age_seconds", "service", svc, "severity", "high")
	}
	gauge(0.5e9, "__name__", "container_memory_working_set_bytes", "service", "auth", "container", "worker")
	gauge(1e9, "__name__", "container_spec_memory_limit_bytes", "service", "auth", "container", "worker")
	gauge(0.4, "__name__", "container_cpu_utilization_ratio", "service", "search")
	gauge(0.06, "__name__", "service_cost_dollars_per_second", "service", "checkout")
	gauge(0.03, "__name__", "service_cost_dollars_per_second", "service", "search")
	return out
}

func pl(kv ...string) []prompb.Label {
	out := make([]prompb.Label, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, prompb.Label{Name: kv[i], Value: kv[i+1]})
	}
	return out
}

func protoLabels(ls []prompb.Label) []labels.Label {
	out := make([]labels.Label, len(ls))
	for i, l := range ls {
		out[i] = labels.Label{Name: l.Name, Value: l.Value}
	}
	return out
}

// Write writes data to path, making its directory.
func Write(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// OpenIncident drives an outage, minute by minute (at most 20), until
// the app has opened an incident for checkout, and returns its number.
func (e *Env) OpenIncident(t testing.TB) int64 {
	t.Helper()
	for range 20 {
		e.Advance(t, Outage)
		var id int64
		resp := e.Do(t, http.MethodGet, "/api/v1/incidents?state=open&service=checkout", api.RoleViewer, "", nil)
		var page struct {
			Items []struct {
				ID int64 `json:"id"`
			} `json:"items"`
		}
		if err := json.Unmarshal(ReadBody(t, resp), &page); err == nil && len(page.Items) > 0 {
			id = page.Items[0].ID
		}
		if id > 0 {
			return id
		}
	}
	t.Fatal("no incident opened within 20 minutes of outage")
	return 0
}

// PendingRun drives the outage on, minute by minute, until the playbook
// has a run waiting for an approval, and returns its ID. The playbook
// runner cycles on its own wall-clock ticker, so each minute leaves it a
// moment to look.
func (e *Env) PendingRun(t testing.TB, playbook string) string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp := e.Do(t, http.MethodGet, "/api/v1/playbooks/runs?state=pending&playbook="+playbook, api.RoleViewer, "", nil)
		var page struct {
			Items []struct {
				ID string `json:"id"`
			} `json:"items"`
		}
		if err := json.Unmarshal(ReadBody(t, resp), &page); err == nil && len(page.Items) > 0 {
			return page.Items[0].ID
		}
		e.Advance(t, Outage)
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("playbook %s had no pending run within 60s of outage", playbook)
	return ""
}
