package app

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/gogo/protobuf/proto"
	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"

	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/externaltest"
	"github.com/qsp-dev/qsp/internal/telemetry"
)

const appSpecs = `
apiVersion: qsp/v1
kind: Service
metadata: {name: shop}
spec: {owner: team}
---
apiVersion: qsp/v1
kind: SLO
metadata: {name: shop-availability}
spec:
  service: shop
  category: quality
  objective: 99
  window: 1d
  indicator:
    ratio:
      bad: sum(rate(req_total{code="500"}[{{.window}}]))
      total: sum(rate(req_total[{{.window}}]))
`

// startApp runs the whole app on a loopback port with a fake clock.
func startApp(t *testing.T, dir string, now func() time.Time) (*App, string, context.CancelFunc) {
	t.Helper()
	specs := filepath.Join(dir, "specs")
	if err := os.MkdirAll(specs, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(specs, "shop.yaml")); err != nil {
		if err := os.WriteFile(filepath.Join(specs, "shop.yaml"), []byte(appSpecs), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := &Config{DataDir: filepath.Join(dir, "data"), Specs: []string{specs}, Listen: l.Addr().String(),
		Auth:       AuthConfig{InsecureAnonymousAdmin: true},
		Evaluation: EvaluationConfig{Interval: 100 * 1e6}}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := New(ctx, Options{Config: cfg, Listener: l, Now: now})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	stop := func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("app did not stop within 30s")
		}
	}
	url := "http://" + l.Addr().String()
	externaltest.WaitHTTP(t, nil, url+"/readyz", 30*time.Second)
	return a, url, stop
}

func remoteWrite(t *testing.T, url string, ts []prompb.TimeSeries) {
	t.Helper()
	b, err := proto.Marshal(&prompb.WriteRequest{Timeseries: ts})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, url+"/api/v1/write", bytes.NewReader(snappy.Encode(nil, b)))
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("remote_write: %s: %s", resp.Status, body)
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s: %s", url, resp.Status, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

// fakeClock is a settable clock shared by the test and the app.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

func series(code string, from, to time.Time, perSample float64, start float64) prompb.TimeSeries {
	ts := prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: "req_total"}, {Name: "code", Value: code}}}
	v := start
	for t := from; t.Before(to); t = t.Add(15 * time.Second) {
		v += perSample
		ts.Samples = append(ts.Samples, prompb.Sample{Timestamp: t.UnixMilli(), Value: v})
	}
	return ts
}

func sloStatus(t *testing.T, url string) *engine.Status {
	t.Helper()
	var resp struct {
		Groups []*engine.Status `json:"groups"`
	}
	getJSON(t, url+"/api/v1/slos/shop-availability", &resp)
	return resp.Groups[0]
}

// TestServeEndToEnd backfills history from the data directory, ingests
// live samples through remote_write, serves the result on the API and
// /metrics, reloads specs, and restarts on the same data directory.
func TestServeEndToEnd(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	clk := &fakeClock{t: t0.Add(30 * time.Second)}

	// An hour of history, 199 good and 1 bad request per 15s, written
	// before QSP starts, as a previous run would have left it.
	db, err := telemetry.OpenEmbedded(telemetry.EmbeddedOptions{Dir: filepath.Join(dir, "data", "tsdb")})
	if err != nil {
		t.Fatal(err)
	}
	app := db.DB().Appender(context.Background())
	for _, ts := range []prompb.TimeSeries{series("200", t0.Add(-time.Hour), t0, 199, 0), series("500", t0.Add(-time.Hour), t0, 1, 0)} {
		ls := labels.FromStrings(ts.Labels[0].Name, ts.Labels[0].Value, ts.Labels[1].Name, ts.Labels[1].Value)
		for _, s := range ts.Samples {
			if _, err := app.Append(0, ls, s.Timestamp, s.Value); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	db.Close()

	a, url, stop := startApp(t, dir, clk.now)
	st := sloStatus(t, url)
	if st.State != engine.StateOK {
		t.Fatalf("after backfill: %s (%s)", st.State, st.Reason)
	}
	if w := st.WindowStat(time.Hour); w == nil || w.Total != 239*200 || w.Total-w.Good != 239 {
		// The counters' first samples (at the window's start) only start
		// them: 239 increases of 200 in (t0-1h, t0].
		t.Errorf("1h window after backfill: %+v", w)
	}

	// Five live minutes through remote_write, every request failing.
	okV, badV := 240*199.0, 240*1.0
	for m := range 5 {
		from := t0.Add(time.Duration(m) * time.Minute)
		remoteWrite(t, url, []prompb.TimeSeries{series("200", from, from.Add(time.Minute), 0, okV), series("500", from, from.Add(time.Minute), 100, badV)})
		badV += 400
		clk.set(from.Add(time.Minute + 30*time.Second))
	}
	externaltest.Eventually(t, 20*time.Second, 50*time.Millisecond, func() bool {
		w := sloStatus(t, url).WindowStat(5 * time.Minute)
		return w != nil && w.Total == 1900
	}, "the 5 live minutes never reached the 5m window")
	st = sloStatus(t, url)
	if w := st.WindowStat(5 * time.Minute); w.Good != 0 || *w.BurnRate != 100 {
		t.Errorf("5m window in the outage: %+v (burn %v)", w, *w.BurnRate)
	}
	if st.State != engine.StateFiring {
		t.Errorf("state in the outage: %s", st.State)
	}

	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`qsp_slo_objective_ratio{category="quality",group="",service="shop",slo="shop-availability"} 0.99`, "qsp_engine_cycle_duration_seconds", `qsp_slo_burn_rate{category="quality",group="",service="shop",slo="shop-availability",window="5m"} 100`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// Reload with a changed objective.
	specFile := filepath.Join(dir, "specs", "shop.yaml")
	if err := os.WriteFile(specFile, []byte(strings.Replace(appSpecs, "objective: 99", "objective: 99.5", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	rr, err := http.Post(url+"/-/reload", "", nil)
	if err != nil || rr.StatusCode != http.StatusOK {
		t.Fatalf("reload: %v %v", err, rr)
	}
	// An invalid spec is refused and the running set kept.
	if err := os.WriteFile(specFile, []byte("apiVersion: qsp/v1\nkind: SLO\nmetadata: {name: x}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rr, _ = http.Post(url+"/-/reload", "", nil)
	if rr.StatusCode != http.StatusUnprocessableEntity {
		t.Errorf("invalid reload: got %s, want 422", rr.Status)
	}
	if got := a.Engine().Snapshot().Status("shop-availability"); got == nil || got.Objective != 0.995 {
		t.Errorf("after reloads: %+v", got)
	}
	if err := os.WriteFile(specFile, []byte(appSpecs), 0o644); err != nil {
		t.Fatal(err)
	}
	stop()

	// A restart on the same data directory resumes: the outage minutes
	// are still there and the page is still firing, without re-alerting.
	_, url, stop = startApp(t, dir, clk.now)
	defer stop()
	st = sloStatus(t, url)
	if w := st.WindowStat(5 * time.Minute); w == nil || w.Total != 1900 {
		t.Errorf("after restart the 5m window is %+v", w)
	}
	if p := st.Alert("page"); p == nil || p.State != "firing" {
		t.Errorf("page after restart: %+v", p)
	}
}
