package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gogo/protobuf/proto"
	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"

	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/externaltest"
)

const haServices = 12

func haSpecs() string {
	var b strings.Builder
	for i := range haServices {
		fmt.Fprintf(&b, `---
apiVersion: qsp/v1
kind: Service
metadata: {name: svc-%[1]d}
spec: {owner: team}
---
apiVersion: qsp/v1
kind: SLO
metadata: {name: svc-%[1]d-availability}
spec:
  service: svc-%[1]d
  category: quality
  objective: 99
  window: 1d
  indicator:
    ratio:
      bad: sum(rate(ha_requests_total{service="svc-%[1]d",code="500"}[{{.window}}]))
      total: sum(rate(ha_requests_total{service="svc-%[1]d"}[{{.window}}]))
---
apiVersion: qsp/v1
kind: Playbook
metadata: {name: svc-%[1]d-rollback}
spec:
  service: svc-%[1]d
  trigger: {slo: svc-%[1]d-availability, on: [firing], severity: page}
  actions:
    - name: rollback
      webhook: {url: "RECEIVER/act/svc-%[1]d", body: '{"service": "{{ .Service }}"}'}
  guards: {kind: rollback, cooldown: 1h}
`, i)
	}
	return b.String()
}

// receiver stands in for Alertmanager-like webhooks and the rollback API:
// it records every notification by event ID and every action call by
// idempotency key, acting slowly so some calls are in flight at the kill.
type receiver struct {
	mu      sync.Mutex
	notes   map[string]int            // message ID -> deliveries
	actions map[string]map[string]int // service -> idempotency key -> calls
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case strings.HasPrefix(req.URL.Path, "/alerts"):
		var m struct{ ID string }
		json.Unmarshal(body, &m)
		r.notes[m.ID]++
	case strings.HasPrefix(req.URL.Path, "/act/"):
		svc := strings.TrimPrefix(req.URL.Path, "/act/")
		if r.actions[svc] == nil {
			r.actions[svc] = map[string]int{}
		}
		r.actions[svc][req.Header.Get("Idempotency-Key")]++
		r.mu.Unlock()
		time.Sleep(500 * time.Millisecond)
		r.mu.Lock()
	}
}

// TestThreeReplicasSurviveSIGKILL runs three qsp serve processes sharing
// one PostgreSQL and a real Prometheus as their telemetry source. While
// pages fire and playbooks act, one replica is killed with SIGKILL: its
// SLOs are taken over within 30 seconds, every notification the cluster
// recorded reaches the receiver, and no playbook action runs twice.
func TestThreeReplicasSurviveSIGKILL(t *testing.T) {
	promBin := externaltest.LookPath(t, "prometheus")
	pg := externaltest.StartPostgres(t)
	dsn := pg.CreateDB(t, "qsp_ha")
	dir := t.TempDir()

	promAddr := externaltest.FreeAddr(t)
	promCfg := filepath.Join(dir, "prometheus.yml")
	os.WriteFile(promCfg, []byte("global: {}\n"), 0o644)
	prom := externaltest.Start(t, promBin, "--config.file="+promCfg, "--storage.tsdb.path="+filepath.Join(dir, "prom"),
		"--web.listen-address="+promAddr, "--web.enable-remote-write-receiver")
	externaltest.WaitHTTP(t, prom, "http://"+promAddr+"/-/ready", 60*time.Second)

	rec := &receiver{notes: map[string]int{}, actions: map[string]map[string]int{}}
	recSrv := httptest.NewServer(rec)
	defer recSrv.Close()

	specs := filepath.Join(dir, "specs")
	os.MkdirAll(specs, 0o755)
	os.WriteFile(filepath.Join(specs, "ha.yaml"), []byte(strings.ReplaceAll(haSpecs(), "RECEIVER", recSrv.URL)), 0o644)
	os.WriteFile(filepath.Join(dir, "dsn"), []byte(dsn), 0o600)

	type replica struct {
		id, url string
		proc    *externaltest.Process
	}
	var replicas []*replica
	for i := 1; i <= 3; i++ {
		id := fmt.Sprintf("r%d", i)
		addr := externaltest.FreeAddr(t)
		cfg := fmt.Sprintf(`listen: %[1]s
externalURL: http://%[1]s
dataDir: %[2]s
specs: [%[3]s]
source: {mode: remote, remote: {url: "http://%[4]s", timeout: 5s}}
evaluation: {interval: 1s, settle: 5s, persistInterval: 5s}
store: {driver: postgres, dsnFile: %[5]s}
cluster: {replicaID: %[6]s, leaseTTL: 5s}
alerting: {webhooks: [{name: hook, url: "%[7]s/alerts"}]}
playbooks: {allowlist: ["%[7]s/"]}
auth: {insecureAnonymousAdmin: true}
`, addr, filepath.Join(dir, id), specs, promAddr, filepath.Join(dir, "dsn"), id, recSrv.URL)
		cfgFile := filepath.Join(dir, id+".yaml")
		os.WriteFile(cfgFile, []byte(cfg), 0o644)
		p := qsp(t, "serve", "--config", cfgFile, "--log-format", "json")
		replicas = append(replicas, &replica{id: id, url: "http://" + addr, proc: p})
	}
	for _, r := range replicas {
		externaltest.WaitHTTP(t, r.proc, r.url+"/readyz", 120*time.Second)
	}

	// Traffic into Prometheus: every second, 100 requests per service;
	// the even services start failing every request one after the other,
	// 4s apart from failAt on, so pages fire before and after the kill.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	failAt := time.Now().Add(15 * time.Second)
	var writer sync.WaitGroup
	writer.Add(1)
	go func() {
		defer writer.Done()
		vals := make([][2]float64, haServices)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-tick.C:
				var ts []prompb.TimeSeries
				for i := range haServices {
					if i%2 == 0 && now.After(failAt.Add(time.Duration(i)*2*time.Second)) {
						vals[i][1] += 100
					} else {
						vals[i][0] += 100
					}
					for c, code := range []string{"200", "500"} {
						ts = append(ts, prompb.TimeSeries{
							Labels:  []prompb.Label{{Name: "__name__", Value: "ha_requests_total"}, {Name: "code", Value: code}, {Name: "service", Value: fmt.Sprintf("svc-%d", i)}},
							Samples: []prompb.Sample{{Timestamp: now.UnixMilli(), Value: vals[i][c]}},
						})
					}
				}
				b, _ := proto.Marshal(&prompb.WriteRequest{Timeseries: ts})
				req, _ := http.NewRequest(http.MethodPost, "http://"+promAddr+"/api/v1/write", bytes.NewReader(snappy.Encode(nil, b)))
				req.Header.Set("Content-Type", "application/x-protobuf")
				req.Header.Set("Content-Encoding", "snappy")
				if resp, err := http.DefaultClient.Do(req); err == nil {
					resp.Body.Close()
				}
			}
		}
	}()
	defer writer.Wait()
	defer cancel()

	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	firing := func() int {
		var n int
		db.QueryRow(`SELECT COUNT(DISTINCT key) FROM transitions WHERE severity = 'page' AND to_state = 'firing'`).Scan(&n)
		return n
	}
	// Wait until some pages fire and playbooks act, then kill a replica
	// in the middle of it.
	externaltest.Eventually(t, 120*time.Second, 200*time.Millisecond, func() bool { return firing() >= 2 }, "no page fired")
	victim := replicas[2]
	var victimSLOs []string
	rows, err := db.Query(`SELECT key FROM slo_statuses WHERE replica = $1`, victim.id)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k string
		rows.Scan(&k)
		victimSLOs = append(victimSLOs, k)
	}
	rows.Close()
	if len(victimSLOs) == 0 {
		t.Fatalf("%s evaluates no SLO", victim.id)
	}
	killedAt := time.Now()
	victim.proc.Signal(syscall.SIGKILL)
	victim.proc.Wait(10 * time.Second)
	t.Logf("killed %s, which evaluated %d SLOs, %d pages fired so far", victim.id, len(victimSLOs), firing())

	// Its SLOs are evaluated by the others within 30 seconds.
	survivor := replicas[0]
	var took time.Duration
	externaltest.Eventually(t, 30*time.Second, 250*time.Millisecond, func() bool {
		resp, err := http.Get(survivor.url + "/api/v1/slos?limit=1000")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var p struct{ Items []*engine.Status }
		json.NewDecoder(resp.Body).Decode(&p)
		fresh := 0
		for _, st := range p.Items {
			for _, k := range victimSLOs {
				if st.Key == k && st.EvaluatedAt.After(killedAt.Add(time.Second)) {
					fresh++
				}
			}
		}
		took = time.Since(killedAt)
		return fresh == len(victimSLOs)
	}, "the killed replica's %d SLOs were not taken over within 30s", len(victimSLOs))
	t.Logf("the killed replica's SLOs were taken over %s after SIGKILL", took.Round(100*time.Millisecond))

	// Every live replica serves every SLO's history, its own SLOs' and
	// those another replica evaluates (from the rollups persisted).
	for _, r := range replicas {
		if r == victim {
			continue
		}
		for _, k := range allSLOs(t, r.url) {
			u := r.url + "/api/v1/slos/" + url.PathEscape(k.SLO) + "/history?group=" + url.QueryEscape(k.Key)
			resp, err := http.Get(u)
			if err != nil {
				t.Fatal(err)
			}
			var h struct{ Points []engine.HistoryPoint }
			err = json.NewDecoder(resp.Body).Decode(&h)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || err != nil || len(h.Points) == 0 {
				t.Errorf("%s: history of %s: status %d, %d points, %v", r.id, k.Key, resp.StatusCode, len(h.Points), err)
			}
		}
	}

	// Let every even service page and its playbook act.
	externaltest.Eventually(t, 90*time.Second, 500*time.Millisecond, func() bool { return firing() == haServices/2 }, "only %d of %d pages fired", firing(), haServices/2)
	acted := func() int {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.actions)
	}
	externaltest.Eventually(t, 60*time.Second, 500*time.Millisecond, func() bool { return acted() == haServices/2 },
		"playbooks acted for %d of %d services", acted(), haServices/2)

	// Every notification the cluster recorded reached the receiver.
	undelivered := func() string {
		rows, err := db.Query(`SELECT id, target, key, severity, status, state, attempts, last_error, claimed_by, claimed_until FROM notifications WHERE state <> 'delivered' ORDER BY id`)
		if err != nil {
			return err.Error()
		}
		defer rows.Close()
		var b strings.Builder
		for rows.Next() {
			var id, attempts, until int64
			var target, key, sev, status, state, lastErr, by string
			rows.Scan(&id, &target, &key, &sev, &status, &state, &attempts, &lastErr, &by, &until)
			fmt.Fprintf(&b, "\n  #%d %s %s/%s %s: %s after %d attempts (%q), claimed by %q until %s", id, target, key, sev, status, state, attempts, lastErr, by, time.UnixMilli(until).Format(time.RFC3339))
		}
		return b.String()
	}
	externaltest.Eventually(t, 60*time.Second, 500*time.Millisecond, func() bool {
		return undelivered() == ""
	}, "notifications still undelivered:%v", stringer(undelivered))
	var total int
	db.QueryRow(`SELECT COUNT(*) FROM notifications`).Scan(&total)
	ids, err := db.Query(`SELECT payload FROM notifications`)
	if err != nil {
		t.Fatal(err)
	}
	lost := 0
	for ids.Next() {
		var payload string
		ids.Scan(&payload)
		var m struct{ ID string }
		json.Unmarshal([]byte(payload), &m)
		rec.mu.Lock()
		if rec.notes[m.ID] == 0 {
			lost++
		}
		rec.mu.Unlock()
	}
	ids.Close()
	if lost > 0 || total == 0 {
		t.Errorf("%d of %d notifications lost", lost, total)
	}
	// No playbook action ran twice: one episode key per service, and the
	// rollback API saw each key once.
	rec.mu.Lock()
	for svc, keys := range rec.actions {
		if len(keys) != 1 {
			t.Errorf("%s: %d rollback episodes, want 1: %v", svc, len(keys), keys)
		}
		for k, n := range keys {
			if n != 1 {
				t.Errorf("%s: rollback %s called %d times", svc, k, n)
			}
		}
	}
	rec.mu.Unlock()
	t.Logf("%d notifications delivered, none lost; %d rollbacks, each once", total, haServices/2)
}

// allSLOs lists the SLO groups a replica reports.
func allSLOs(t *testing.T, base string) []*engine.Status {
	t.Helper()
	resp, err := http.Get(base + "/api/v1/slos?limit=1000")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p struct{ Items []*engine.Status }
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		t.Fatal(err)
	}
	return p.Items
}

// stringer formats as f's result when printed: a failure message shows
// the state at the time of failure.
type stringer func() string

func (f stringer) String() string { return f() }
