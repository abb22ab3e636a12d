package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/qsp-dev/qsp/internal/cli"
	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/externaltest"
	"github.com/qsp-dev/qsp/internal/telemetry"
)

// TestMain lets the tests run the real qsp command as a child process:
// the test binary re-executes itself with QSP_MAIN=1.
func TestMain(m *testing.M) {
	if os.Getenv("QSP_MAIN") == "1" {
		os.Exit(cli.Run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// qsp starts `qsp args...` as a child process.
func qsp(t *testing.T, args ...string) *externaltest.Process {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return externaltest.StartEnv(t, []string{"QSP_MAIN=1"}, self, args...)
}

const killSpecs = `
apiVersion: qsp/v1
kind: Service
metadata: {name: shop}
spec: {owner: team}
`

func killSLO(i int) string {
	return fmt.Sprintf(`---
apiVersion: qsp/v1
kind: SLO
metadata: {name: slo-%d}
spec:
  service: shop
  category: quality
  objective: 99
  window: 7d
  indicator:
    ratio:
      bad: sum(rate(req_total{slo="%d",code="500"}[{{.window}}]))
      total: sum(rate(req_total{slo="%d"}[{{.window}}]))
`, i, i, i)
}

// writeHistory writes 6 days of minutes for n SLOs into a data dir: inside
// the 7d window whenever the test runs, so numbers do not move with the
// clock between runs.
func writeHistory(t *testing.T, dataDir string, n int, end time.Time) {
	t.Helper()
	db, err := telemetry.OpenEmbedded(telemetry.EmbeddedOptions{Dir: filepath.Join(dataDir, "tsdb"), Retention: 30 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	app := db.DB().Appender(context.Background())
	for i := range n {
		var ok, bad float64
		okL := labels.FromStrings("__name__", "req_total", "slo", fmt.Sprint(i), "code", "200")
		badL := labels.FromStrings("__name__", "req_total", "slo", fmt.Sprint(i), "code", "500")
		for ts := end.Add(-6 * 24 * time.Hour); ts.Before(end); ts = ts.Add(time.Minute) {
			ok += 100
			if ts.Minute()%17 == i%17 {
				bad += float64(i % 5)
			}
			if _, err := app.Append(0, okL, ts.UnixMilli(), ok); err != nil {
				t.Fatal(err)
			}
			if _, err := app.Append(0, badL, ts.UnixMilli(), bad); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
}

func setup(t *testing.T, n int) (dir string, end time.Time) {
	dir = t.TempDir()
	var b strings.Builder
	b.WriteString(killSpecs)
	for i := range n {
		b.WriteString(killSLO(i))
	}
	if err := os.MkdirAll(filepath.Join(dir, "specs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "specs", "slos.yaml"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	end = time.Now().Truncate(time.Minute).Add(-time.Minute)
	writeHistory(t, filepath.Join(dir, "data"), n, end)
	return dir, end
}

func serveArgs(dir, addr string) []string {
	return []string{"serve", "--specs", filepath.Join(dir, "specs"), "--data-dir", filepath.Join(dir, "data"), "--listen", addr, "--log-format", "json", "--insecure-anonymous-admin"}
}

func budgets(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url + "/api/v1/slos?limit=10000")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var p struct{ Items []*engine.Status }
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	out := map[string]float64{}
	for _, st := range p.Items {
		out[st.Key] = st.Budget.Total*1e6 + st.Budget.Consumed
	}
	return out
}

// TestSIGKILLDuringEvaluation kills qsp serve while it backfills and
// while it evaluates; after each restart the store is intact and every
// SLO's numbers equal those of a run that was never killed.
func TestSIGKILLDuringEvaluation(t *testing.T) {
	const n = 40
	dir, _ := setup(t, n)
	ref := t.TempDir()
	if err := exec.Command("cp", "-a", filepath.Join(dir, "data"), filepath.Join(dir, "specs"), ref).Run(); err != nil {
		t.Fatal(err)
	}

	// The reference run.
	addr := externaltest.FreeAddr(t)
	p := qsp(t, serveArgs(ref, addr)...)
	externaltest.WaitHTTP(t, p, "http://"+addr+"/readyz", 120*time.Second)
	want := budgets(t, "http://"+addr)
	p.Signal(syscall.SIGTERM)
	if !p.Wait(30 * time.Second) {
		t.Fatal("qsp did not stop on SIGTERM")
	}
	if len(want) != n {
		t.Fatalf("reference run has %d SLOs, want %d", len(want), n)
	}

	// Killed during the backfill, then during evaluation cycles.
	for round, wait := range []time.Duration{300 * time.Millisecond, 0} {
		addr := externaltest.FreeAddr(t)
		p := qsp(t, serveArgs(dir, addr)...)
		if wait > 0 {
			time.Sleep(wait)
		} else {
			externaltest.WaitHTTP(t, p, "http://"+addr+"/readyz", 120*time.Second)
			time.Sleep(2 * time.Second) // a few cycles
		}
		p.Kill()
		if exited, err := p.Exited(); !exited || err == nil || !strings.Contains(err.Error(), "killed") {
			t.Fatalf("round %d: qsp was not killed: %v", round, err)
		}
		addr = externaltest.FreeAddr(t)
		p = qsp(t, serveArgs(dir, addr)...)
		externaltest.WaitHTTP(t, p, "http://"+addr+"/readyz", 120*time.Second)
		got := budgets(t, "http://"+addr)
		for k, w := range want {
			if got[k] != w {
				t.Errorf("round %d: %s after SIGKILL: %v, want %v", round, k, got[k], w)
			}
		}
		p.Signal(syscall.SIGTERM)
		p.Wait(30 * time.Second)
	}
}

// TestDiskFull runs qsp serve on a small tmpfs, fills it, and writes:
// remote_write answers 5xx (retryable) while the disk is full, the server
// keeps serving, and once space returns writes succeed again and every
// sample acknowledged with 2xx is there.
func TestDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		externaltest.Missing(t, "mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	mnt := filepath.Join(dir, "data")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", mnt).CombinedOutput(); err != nil {
		externaltest.Missing(t, "mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })
	specs := filepath.Join(dir, "specs")
	os.MkdirAll(specs, 0o755)
	if err := os.WriteFile(filepath.Join(specs, "slos.yaml"), []byte(killSpecs+killSLO(0)), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := externaltest.FreeAddr(t)
	url := "http://" + addr
	p := qsp(t, "serve", "--specs", specs, "--data-dir", mnt, "--listen", addr, "--insecure-anonymous-admin")
	externaltest.WaitHTTP(t, p, url+"/readyz", 60*time.Second)

	// acked records every sample value a 2xx acknowledged.
	var acked []float64
	value := 0.0
	var lastTS time.Time
	send := func() int {
		value++
		// One sample per millisecond at most: two with one timestamp
		// would be a duplicate, not a disk problem.
		now := time.Now().Truncate(time.Millisecond)
		if !now.After(lastTS) {
			now = lastTS.Add(time.Millisecond)
		}
		lastTS = now
		code := postSample(t, url, now, value)
		if code/100 == 2 {
			acked = append(acked, value)
		}
		return code
	}
	for range 20 {
		if c := send(); c/100 != 2 {
			t.Fatalf("before the disk filled: %d", c)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Fill the disk. The last megabyte that did not fit leaves a little
	// room, which the first writes below still use.
	filler := filepath.Join(mnt, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	for {
		if _, err := f.Write(chunk); err != nil {
			break
		}
	}
	f.Close()
	// Writes fail with a retryable status, never a 4xx that would make
	// Prometheus drop the data, and the server stays up.
	full := map[int]int{}
	for range 200 {
		full[send()]++
		time.Sleep(2 * time.Millisecond)
	}
	t.Logf("while full: %v", full)
	for code := range full {
		if code/100 == 4 {
			t.Errorf("disk full answered %d: a 4xx is never retried, data would be dropped", code)
		}
	}
	if full[500]+full[503]+full[507] == 0 {
		t.Errorf("no write failed while the disk was full: %v", full)
	}
	if resp, err := http.Get(url + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("server not serving while full: %v", err)
	}
	// Space returns.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	externaltest.Eventually(t, 30*time.Second, 100*time.Millisecond, func() bool { return send()/100 == 2 }, "writes did not succeed again after space returned")
	for range 20 {
		if c := send(); c/100 != 2 {
			t.Fatalf("after space returned: %d", c)
		}
	}
	// Every acknowledged sample is stored.
	stored := queryValues(t, url, lastTS.Add(time.Second))
	for _, v := range acked {
		if !stored[v] {
			t.Errorf("acknowledged sample %v lost", v)
		}
	}
	t.Logf("%d samples acknowledged, all stored", len(acked))
}

func postSample(t *testing.T, url string, ts time.Time, v float64) int {
	t.Helper()
	body := encodeWrite(ts.UnixMilli(), v)
	req, _ := http.NewRequest(http.MethodPost, url+"/api/v1/write", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Content-Encoding", "snappy")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// queryValues returns the values of the test series stored in the last hour.
func queryValues(t *testing.T, url string, at time.Time) map[float64]bool {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("%s/prometheus/api/v1/query?query=disk_probe%%5B1h%%5D&time=%.3f", url, float64(at.UnixMilli())/1000))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Data struct {
			Result []struct {
				Values [][2]any `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	out := map[float64]bool{}
	for _, s := range r.Data.Result {
		for _, v := range s.Values {
			var f float64
			fmt.Sscan(v[1].(string), &f)
			out[f] = true
		}
	}
	return out
}
