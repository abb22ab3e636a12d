package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/qsp-dev/qsp/internal/externaltest"
	"github.com/qsp-dev/qsp/internal/telemetry"
)

// writeOutage writes two hours of one SLO's traffic ending now, the last
// ten minutes failing: the page fires at the first evaluation.
func writeOutage(t *testing.T, dataDir string) {
	t.Helper()
	db, err := telemetry.OpenEmbedded(telemetry.EmbeddedOptions{Dir: filepath.Join(dataDir, "tsdb")})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	end := time.Now()
	app := db.DB().Appender(context.Background())
	var ok, bad float64
	okL := labels.FromStrings("__name__", "req_total", "slo", "0", "code", "200")
	badL := labels.FromStrings("__name__", "req_total", "slo", "0", "code", "500")
	for ts := end.Add(-2 * time.Hour); ts.Before(end); ts = ts.Add(15 * time.Second) {
		if end.Sub(ts) < 10*time.Minute {
			bad += 100
		} else {
			ok += 100
		}
		app.Append(0, okL, ts.UnixMilli(), ok)
		app.Append(0, badL, ts.UnixMilli(), bad)
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
}

// TestSIGKILLDuringDelivery kills qsp serve while a webhook is receiving
// a page: after the restart the notification is delivered again (at
// least once, with the same event ID, so the receiver can drop the
// duplicate), and nothing is lost.
func TestSIGKILLDuringDelivery(t *testing.T) {
	dir := t.TempDir()
	var mu sync.Mutex
	got := map[string]int{}
	arrived := make(chan string, 10)
	slow := true
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m struct{ ID, Status string }
		json.NewDecoder(r.Body).Decode(&m)
		mu.Lock()
		got[m.ID]++
		s := slow
		mu.Unlock()
		arrived <- m.ID
		if s {
			time.Sleep(5 * time.Second) // the kill lands here
		}
	}))
	defer hook.Close()
	specs := filepath.Join(dir, "specs")
	os.MkdirAll(specs, 0o755)
	os.WriteFile(filepath.Join(specs, "slos.yaml"), []byte(killSpecs+killSLO(0)), 0o644)
	writeOutage(t, filepath.Join(dir, "data"))
	cfg := filepath.Join(dir, "qsp.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("alerting: {webhooks: [{name: pager, url: %q, timeout: 10s}]}\n", hook.URL)), 0o644)
	start := func() (*externaltest.Process, string) {
		addr := externaltest.FreeAddr(t)
		p := qsp(t, append(serveArgs(dir, addr), "--config", cfg)...)
		return p, "http://" + addr
	}
	p, _ := start()
	var interrupted string
	select {
	case interrupted = <-arrived:
	case <-time.After(60 * time.Second):
		t.Fatal("the page never reached the webhook")
	}
	p.Kill() // mid-delivery: the receiver has not answered
	mu.Lock()
	slow = false
	mu.Unlock()
	p, url := start()
	externaltest.WaitHTTP(t, p, url+"/readyz", 60*time.Second)
	externaltest.Eventually(t, 30*time.Second, 100*time.Millisecond, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return got[interrupted] >= 2
	}, "the notification interrupted by SIGKILL (%s) was not delivered again: %v", interrupted, got)
	// And the outbox agrees: nothing left pending.
	externaltest.Eventually(t, 30*time.Second, 200*time.Millisecond, func() bool {
		resp, err := http.Get(url + "/api/v1/alerts")
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return strings.Contains(string(b), `"delivered"`) && !strings.Contains(string(b), `"pending"`)
	}, "the outbox still holds undelivered notifications")
	t.Logf("deliveries by event: %v", got)
}

// TestSecretsStayOutOfLogsAndAPI runs qsp serve with secrets in every place
// the configuration takes them (webhook HMAC key, playbook secrets, API
// token) and makes it use them, then reads every log line and the API's
// answers: no secret appears.
func TestSecretsStayOutOfLogsAndAPI(t *testing.T) {
	dir := t.TempDir()
	const hmacKey, rollout, token = "hmac-s3cr3t-key-5d8f", "rollout-s3cr3t-9c1e", "api-s3cr3t-token-7a2b"
	os.WriteFile(filepath.Join(dir, "hmac"), []byte(hmacKey), 0o600)
	secrets := filepath.Join(dir, "secrets")
	os.MkdirAll(secrets, 0o700)
	os.WriteFile(filepath.Join(secrets, "ROLLOUTS_TOKEN"), []byte(rollout), 0o600)
	var mu sync.Mutex
	var seen []string
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.URL.Path+" "+r.Header.Get("Authorization"))
		mu.Unlock()
		// Echo the credential back, as a careless API might.
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprintf(w, `{"error": "denied for %s"}`, r.Header.Get("Authorization"))
	}))
	defer recv.Close()
	specs := filepath.Join(dir, "specs")
	os.MkdirAll(specs, 0o755)
	pb := fmt.Sprintf(`---
apiVersion: qsp/v1
kind: Playbook
metadata: {name: rollback}
spec:
  service: shop
  trigger: {slo: slo-0, on: [firing], severity: page}
  actions:
    - name: rollback
      webhook:
        url: %s/rollback
        headers: {Authorization: 'Bearer {{ secret "ROLLOUTS_TOKEN" }}'}
      retries: 1
  guards: {kind: rollback, cooldown: 1h}
`, recv.URL)
	os.WriteFile(filepath.Join(specs, "slos.yaml"), []byte(killSpecs+killSLO(0)+pb), 0o644)
	writeOutage(t, filepath.Join(dir, "data"))
	sum := sha256Hex(token)
	cfg := fmt.Sprintf(`alerting: {webhooks: [{name: pager, url: %q, secretFile: %q}]}
playbooks: {allowlist: [%q], secretsDir: %q}
auth: {tokens: [{name: ops, role: admin, sha256: %s}]}
`, recv.URL+"/alerts", filepath.Join(dir, "hmac"), recv.URL+"/", secrets, sum)
	os.WriteFile(filepath.Join(dir, "qsp.yaml"), []byte(cfg), 0o644)
	addr := externaltest.FreeAddr(t)
	p := qsp(t, append(serveArgs(dir, addr), "--config", filepath.Join(dir, "qsp.yaml"), "--log-level", "debug")...)
	url := "http://" + addr
	externaltest.WaitHTTP(t, p, url+"/healthz", 60*time.Second)
	// The playbook calls the rollback API with the secret, which fails
	// and echoes it; the webhook signs with the HMAC key.
	externaltest.Eventually(t, 60*time.Second, 200*time.Millisecond, func() bool {
		mu.Lock()
		defer mu.Unlock()
		calls := strings.Join(seen, "\n")
		return strings.Contains(calls, "/rollback Bearer "+rollout) && strings.Contains(calls, "/alerts")
	}, "the secrets were never used: %v", seen)
	time.Sleep(2 * time.Second) // the failures are logged and recorded
	var bodies []string
	for _, path := range []string{"/api/v1/playbooks/runs", "/api/v1/playbooks", "/api/v1/alerts", "/api/v1/incidents", "/api/v1/decisions", "/api/v1/slos"} {
		req, _ := http.NewRequest(http.MethodGet, url+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %s", path, resp.Status)
		}
		bodies = append(bodies, path+": "+string(b))
	}
	p.Kill()
	logs, err := os.ReadFile(p.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{hmacKey, rollout, token} {
		if strings.Contains(string(logs), secret) {
			t.Errorf("a secret is in the logs: %q", secret)
		}
		for _, b := range bodies {
			if strings.Contains(b, secret) {
				t.Errorf("a secret is in the API answer %s", b[:min(len(b), 200)])
			}
		}
	}
	if !strings.Contains(strings.Join(bodies, "\n"), "rollback") {
		t.Error("the playbook run is not in the API: the check would prove nothing")
	}
}
