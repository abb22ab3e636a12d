package playbook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/externaltest"
	"github.com/qsp-dev/qsp/internal/policy"
	"github.com/qsp-dev/qsp/internal/slo"
	"github.com/qsp-dev/qsp/internal/store"
)

// rollback is a page-triggered rollback playbook; %s are its extra guards
// and action settings.
func rollback(guards, retries string) string {
	return `
---
apiVersion: qsp/v1
kind: Playbook
metadata: {name: search-rollback}
spec:
  service: search
  trigger: {slo: search-availability, on: [firing], severity: page}
  actions:
    - name: rollback
      webhook:
        url: RECEIVER/api/v1/rollouts/{{ .Service }}/rollback
        headers:
          Authorization: 'Bearer {{ secret "ROLLOUTS_TOKEN" }}'
        body: '{"reason": {{ json .Reason }}, "incident": {{ .Incident }}, "key": "{{ .IdempotencyKey }}"}'
` + retries + `
  guards:
    kind: rollback
    cooldown: 30m
` + guards
}

const token = "s3cr3t-rollouts-token"

func withToken(o *Options) {
	o.Secrets = Secrets{Getenv: func(k string) string {
		if k == "QSP_SECRET_ROLLOUTS_TOKEN" {
			return token
		}
		return ""
	}}
}

// pageFiring is the snapshot at at of search-availability with its page
// alert firing since firedAt. The snapshot of the cycle that fired it
// (at = firedAt) is taken as the next cycle's, 15s later: the runner
// leaves a change of the snapshot's own cycle to its transition.
func pageFiring(at, firedAt time.Time) *engine.Snapshot {
	st := status("search-availability", "search", 20, engine.AlertStatus{
		Severity: "page", Name: "SLOErrorBudgetBurn", State: slo.Firing, Since: firedAt, FiredAt: firedAt, Condition: "1h/5m",
	})
	st.State = engine.StateFiring
	if !at.After(firedAt) {
		at = firedAt.Add(15 * time.Second)
	}
	return snapshotAt(at, st)
}

func onlyRun(t *testing.T, h *harness, playbook string) *Run {
	t.Helper()
	runs := h.runs(playbook)
	if len(runs) != 1 {
		t.Fatalf("runs of %s: got %d, want 1: %s", playbook, len(runs), mustJSON(t, runs))
	}
	return runs[0]
}

// TestRestartDuringPendingApproval stops QSP while a run waits for its
// approval: after the restart the run is still pending, the trigger that
// is still firing does not add a second run, the approval through the
// new runner executes it exactly once, and a second approval is refused.
func TestRestartDuringPendingApproval(t *testing.T) {
	h := newHarness(t, rollback("    approval: true\n", ""), withToken)
	h.snap.set(pageFiring(t0, t0))
	h.step()
	run := onlyRun(t, h, "search-rollback")
	if run.State != StatePending || run.Approval == nil || !run.Approval.Deadline.Equal(t0.Add(time.Hour)) {
		t.Fatalf("before the restart: got %s %+v, want pending until %s", run.State, run.Approval, t0.Add(time.Hour))
	}

	h.restart()
	h.clk.add(time.Minute)
	h.snap.set(pageFiring(h.clk.now(), t0))
	h.step()
	h.step()
	run = onlyRun(t, h, "search-rollback")
	if run.State != StatePending || len(h.recv.calls()) != 0 {
		t.Fatalf("after the restart: got %s and %d calls, want pending and none", run.State, len(h.recv.calls()))
	}

	approved, err := h.r.Approve(h.ctx, run.ID, "alice", "roll it back")
	if err != nil {
		t.Fatal(err)
	}
	if approved.State != StateQueued || approved.Approval.By != "alice" || approved.Approval.Decision != Approved {
		t.Fatalf("approve: got %s %+v", approved.State, approved.Approval)
	}
	if _, err := h.r.Approve(h.ctx, run.ID, "bob", ""); !errors.Is(err, ErrNotPending) {
		t.Fatalf("second approval: got %v, want ErrNotPending", err)
	}
	h.step()
	h.restart()
	for range 3 {
		h.clk.add(15 * time.Second)
		h.snap.set(pageFiring(h.clk.now(), t0))
		h.step()
	}
	run = onlyRun(t, h, "search-rollback")
	if run.State != StateSucceeded {
		t.Fatalf("after the approval: got %s (%s), want succeeded", run.State, run.Reason)
	}
	calls := h.recv.calls()
	if len(calls) != 1 || h.recv.actions() != 1 {
		t.Fatalf("receiver: got %d calls, %d actions; want exactly one", len(calls), h.recv.actions())
	}
	if calls[0].Key != run.ID+"/rollback" || calls[0].Auth != "Bearer "+token || calls[0].Path != "/api/v1/rollouts/search/rollback" {
		t.Fatalf("call: got %+v", calls[0])
	}
	want := []string{"trigger:info", "dedupe:pass", "kill-switch:pass", "config:pass", "in-flight:pass", "cooldown:pass",
		"run-limit:pass", "policy:pass", "approval:wait", "approval:pass", "kill-switch:pass", "config:pass", "policy:pass",
		"act:pass", "execute:pass", "record:stop"}
	if got := events(run); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("events:\ngot  %v\nwant %v", got, want)
	}
	if len(run.Decisions) != 2 || run.Decisions[0].ID == "" || run.Decisions[1].ID == "" {
		t.Fatalf("decisions: want one before and one after the approval, got %+v", run.Decisions)
	}
}

// TestRestartDuringRetry stops QSP while an action waits for its retry:
// the receiver failed first and succeeds after the restart; the new
// runner retries with the same Idempotency-Key and the receiver acts once.
func TestRestartDuringRetry(t *testing.T) {
	h := newHarness(t, rollback("", "      retries: 3"), withToken)
	h.recv.setFail(1, http.StatusServiceUnavailable)
	h.snap.set(pageFiring(t0, t0))
	h.step()
	run := onlyRun(t, h, "search-rollback")
	if run.State != StateRetrying || run.Steps[0].Attempts != 1 || !run.Steps[0].NextAttemptAt.Equal(t0.Add(10*time.Second)) {
		t.Fatalf("after the failure: got %s, attempts %d, next %s; want retrying, 1, %s", run.State, run.Steps[0].Attempts, run.Steps[0].NextAttemptAt, t0.Add(10*time.Second))
	}
	h.restart()
	h.step() // not due yet
	if n := len(h.recv.calls()); n != 1 {
		t.Fatalf("calls before the retry is due: got %d, want 1", n)
	}
	h.clk.add(10 * time.Second)
	h.step()
	h.clk.add(time.Minute)
	h.step()
	run = onlyRun(t, h, "search-rollback")
	calls := h.recv.calls()
	if run.State != StateSucceeded || run.Steps[0].Attempts != 2 || len(calls) != 2 || h.recv.actions() != 1 {
		t.Fatalf("got %s after %d attempts, %d calls, %d actions; want succeeded, 2, 2, 1", run.State, run.Steps[0].Attempts, len(calls), h.recv.actions())
	}
	if calls[0].Key != calls[1].Key || calls[0].Key == "" {
		t.Fatalf("idempotency keys: %q and %q, want the same", calls[0].Key, calls[1].Key)
	}
}

// TestRestartDuringAttempt stops QSP while the receiver is acting on a
// request: the receiver acted, the runner never saw the answer. The next
// runner's retry carries the same key, the receiver answers it from its
// record, and the action happened once.
func TestRestartDuringAttempt(t *testing.T) {
	h := newHarness(t, rollback("", "      retries: 3"), withToken)
	release := make(chan struct{})
	acting := make(chan struct{}, 1)
	h.recv.onAct = func(recorded) {
		acting <- struct{}{}
		<-release
	}
	h.snap.set(pageFiring(t0, t0))
	h.r.cycle(h.ctx) // starts the execution; does not wait for it
	select {
	case <-acting:
	case <-time.After(10 * time.Second):
		t.Fatal("the receiver got no request")
	}
	h.stop() // interrupts the attempt in flight
	close(release)
	h.recv.onAct = nil
	h.start()
	h.step()
	run := onlyRun(t, h, "search-rollback")
	calls := h.recv.calls()
	if run.State != StateSucceeded || run.Steps[0].Attempts != 2 || len(calls) != 2 || h.recv.actions() != 1 || calls[0].Key != calls[1].Key {
		t.Fatalf("got %s after %d attempts, %d calls (keys %v), %d actions; want succeeded, 2, 2 with one key, 1",
			run.State, run.Steps[0].Attempts, len(calls), []string{calls[0].Key, calls[len(calls)-1].Key}, h.recv.actions())
	}
}

// TestLeaseRecovery leaves a run claimed by a runner that died: nobody
// executes it until the lease ends, then the living runner does.
func TestLeaseRecovery(t *testing.T) {
	h := newHarness(t, rollback("    approval: true\n", ""), withToken)
	h.snap.set(pageFiring(t0, t0))
	h.step()
	run := onlyRun(t, h, "search-rollback")
	if _, err := h.r.Approve(h.ctx, run.ID, "alice", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := h.st.ClaimPlaybookRun(h.ctx, run.ID, "dead-runner", t0, t0.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	h.clk.add(time.Minute)
	h.step()
	if n := len(h.recv.calls()); n != 0 {
		t.Fatalf("calls while another runner holds the lease: got %d, want 0", n)
	}
	h.clk.add(2 * time.Minute)
	h.step()
	if run = onlyRun(t, h, "search-rollback"); run.State != StateSucceeded || h.recv.actions() != 1 {
		t.Fatalf("after the lease: got %s and %d actions, want succeeded and 1", run.State, h.recv.actions())
	}
}

func TestApprovalTimeoutAndReject(t *testing.T) {
	h := newHarness(t, rollback("    approval: true\n    approvalTimeout: 10m\n", ""), withToken)
	h.snap.set(pageFiring(t0, t0))
	h.step()
	run := onlyRun(t, h, "search-rollback")
	h.clk.add(10 * time.Minute)
	if _, err := h.r.Approve(h.ctx, run.ID, "alice", ""); !errors.Is(err, ErrNotPending) {
		t.Fatalf("approval at the deadline: got %v, want ErrNotPending", err)
	}
	h.step()
	run = onlyRun(t, h, "search-rollback")
	if run.State != StateExpired || run.Approval.Decision != Expired || !strings.Contains(run.Reason, "nobody approved it by") {
		t.Fatalf("got %s (%s), want expired", run.State, run.Reason)
	}
	if _, err := h.r.Approve(h.ctx, "no-such-run", "alice", ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("approve a missing run: got %v, want ErrNotFound", err)
	}
	if _, err := h.r.Approve(h.ctx, run.ID, " ", ""); !errors.Is(err, ErrInvalid) {
		t.Fatalf("approve without a name: got %v, want ErrInvalid", err)
	}

	// A new episode (the alert fired again), rejected.
	fired := h.clk.now()
	h.snap.set(pageFiring(fired, fired))
	h.step()
	runs := h.runs("search-rollback")
	if len(runs) != 2 || runs[1].State != StatePending {
		t.Fatalf("second episode: got %d runs, last %s", len(runs), runs[len(runs)-1].State)
	}
	rej, err := h.r.Reject(h.ctx, runs[1].ID, "bob", "not during the sale")
	if err != nil {
		t.Fatal(err)
	}
	if rej.State != StateRejected || rej.Approval.By != "bob" || rej.Reason != "rejected: rejected by bob: not during the sale" {
		t.Fatalf("reject: got %s %q %+v", rej.State, rej.Reason, rej.Approval)
	}
	h.step()
	if n := len(h.recv.calls()); n != 0 {
		t.Fatalf("calls: got %d, want 0", n)
	}
}

func TestPolicyDenyAndError(t *testing.T) {
	cases := []struct {
		name, rego, want string
	}{
		{"deny", `package team.search
deny contains msg if {
	input.action.kind == "rollback"
	msg := sprintf("no automatic %s of %s", [input.action.kind, input.service.name])
}`, "denied: rollback: deny no-auto-rollback: no automatic rollback of search"},
		{"runtime error blocks", `package team.search
deny contains msg if {
	to_number(input.service.name) > 1
	msg := "never"
}`, "denied: policy decision for action rollback failed:"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pol := `
---
apiVersion: qsp/v1
kind: Policy
metadata: {name: no-auto-rollback}
spec:
  appliesTo: [playbook]
  rego: |
` + indent(c.rego, "    ")
			h := newHarness(t, rollback("", "")+pol, withToken)
			h.snap.set(pageFiring(t0, t0))
			h.step()
			run := onlyRun(t, h, "search-rollback")
			if run.State != StateDenied || !strings.HasPrefix(run.Reason, c.want) {
				t.Fatalf("got %s %q, want denied %q", run.State, run.Reason, c.want)
			}
			if n := len(h.recv.calls()); n != 0 {
				t.Fatalf("calls: got %d, want 0", n)
			}
			if c.name == "deny" {
				d, err := h.st.Decision(h.ctx, run.Decisions[0].ID)
				if err != nil || d.Subject != "search-rollback" || d.Result != "deny" {
					t.Fatalf("decision log: got %+v, %v", d, err)
				}
			}
		})
	}
}

func indent(s, prefix string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = prefix + l
	}
	return strings.Join(lines, "\n") + "\n"
}

func TestDryRun(t *testing.T) {
	h := newHarness(t, rollback("    dryRun: true\n", ""), withToken)
	h.snap.set(pageFiring(t0, t0))
	h.step()
	run := onlyRun(t, h, "search-rollback")
	if run.State != StateDryRun || run.ActedAt.IsZero() || run.Steps[0].State != StepSkipped || run.Steps[0].Attempts != 0 {
		t.Fatalf("got %s, step %+v", run.State, run.Steps[0])
	}
	req := run.Steps[0].Request
	if req == nil || req.Headers["Authorization"] != "Bearer [secret ROLLOUTS_TOKEN]" || req.URL != h.recv.URL()+"/api/v1/rollouts/search/rollback" ||
		!strings.Contains(req.Body, `"reason": "SLO search-availability: page alert SLOErrorBudgetBurn firing since`) {
		t.Fatalf("recorded request: %+v", req)
	}
	if n := len(h.recv.calls()); n != 0 {
		t.Fatalf("calls: got %d, want 0", n)
	}
	if len(run.Decisions) != 1 || run.Decisions[0].Result != "allow" {
		t.Fatalf("a dry run is decided by the policies too: %+v", run.Decisions)
	}
}

func TestKillSwitch(t *testing.T) {
	t.Run("stops new runs", func(t *testing.T) {
		h := newHarness(t, rollback("", ""), withToken)
		if _, err := h.r.SetKillSwitch(h.ctx, true, "", ""); !errors.Is(err, ErrInvalid) {
			t.Fatalf("without a name: got %v, want ErrInvalid", err)
		}
		ks, err := h.r.SetKillSwitch(h.ctx, true, "alice", "incident 42")
		if err != nil || !ks.On || ks.By != "alice" {
			t.Fatalf("set: got %+v, %v", ks, err)
		}
		h.snap.set(pageFiring(t0, t0))
		h.step()
		run := onlyRun(t, h, "search-rollback")
		if run.State != StateSuppressed || !strings.Contains(run.Reason, "kill switch is on (set by alice at 2026-03-06 10:00:00Z: incident 42)") {
			t.Fatalf("got %s %q", run.State, run.Reason)
		}
		// A stopped run keeps its inputs too.
		if req := run.Steps[0].Request; req == nil || req.Headers["Authorization"] != "Bearer [secret ROLLOUTS_TOKEN]" {
			t.Fatalf("inputs of the stopped run: %+v", req)
		}
		// It holds across a restart (it is in the store).
		h.restart()
		if ks, _ := h.r.KillSwitch(h.ctx); !ks.On {
			t.Fatal("the kill switch did not survive the restart")
		}
		if n := len(h.recv.calls()); n != 0 {
			t.Fatalf("calls: got %d, want 0", n)
		}
	})
	t.Run("stops retries", func(t *testing.T) {
		h := newHarness(t, rollback("", "      retries: 3"), withToken)
		h.recv.setFail(1, http.StatusBadGateway)
		h.snap.set(pageFiring(t0, t0))
		h.step()
		if _, err := h.r.SetKillSwitch(h.ctx, true, "alice", ""); err != nil {
			t.Fatal(err)
		}
		h.clk.add(time.Minute)
		h.step()
		run := onlyRun(t, h, "search-rollback")
		if run.State != StateSuppressed || !strings.Contains(run.Reason, "kill switch") || len(h.recv.calls()) != 1 {
			t.Fatalf("got %s %q after %d calls, want suppressed after 1", run.State, run.Reason, len(h.recv.calls()))
		}
	})
	t.Run("forced by the config", func(t *testing.T) {
		h := newHarness(t, rollback("", ""), withToken, func(o *Options) { o.KillSwitch = true })
		if _, err := h.r.SetKillSwitch(h.ctx, false, "alice", ""); !errors.Is(err, ErrKillSwitchForced) {
			t.Fatalf("turning off a forced switch: got %v, want ErrKillSwitchForced", err)
		}
		ks, _ := h.r.KillSwitch(h.ctx)
		if !ks.On || !ks.Forced {
			t.Fatalf("got %+v", ks)
		}
	})
}

func TestRetries(t *testing.T) {
	t.Run("4xx is not retried", func(t *testing.T) {
		h := newHarness(t, rollback("", "      retries: 3"), withToken)
		h.recv.setFail(5, http.StatusUnprocessableEntity)
		h.snap.set(pageFiring(t0, t0))
		h.step()
		run := onlyRun(t, h, "search-rollback")
		if run.State != StateFailed || run.Steps[0].Attempts != 1 || run.Steps[0].Status != 422 || !strings.Contains(run.Reason, "not retried") {
			t.Fatalf("got %s %q after %d attempts", run.State, run.Reason, run.Steps[0].Attempts)
		}
	})
	t.Run("5xx is retried with backoff until the retries are spent", func(t *testing.T) {
		h := newHarness(t, rollback("", "      retries: 3"), withToken)
		h.recv.setFail(100, http.StatusServiceUnavailable)
		h.snap.set(pageFiring(t0, t0))
		var nexts []time.Duration
		for range 40 {
			h.step()
			run := onlyRun(t, h, "search-rollback")
			if run.State.Done() {
				break
			}
			if n := run.Steps[0].NextAttemptAt.Sub(h.clk.now()); len(nexts) == 0 || nexts[len(nexts)-1] != n || run.Steps[0].Attempts > len(nexts) {
				if run.Steps[0].Attempts > len(nexts) {
					nexts = append(nexts, n)
				}
			}
			h.clk.set(run.Steps[0].NextAttemptAt)
		}
		run := onlyRun(t, h, "search-rollback")
		if run.State != StateFailed || run.Steps[0].Attempts != 4 || len(h.recv.calls()) != 4 || !strings.Contains(run.Reason, "after 4 attempts") {
			t.Fatalf("got %s %q after %d attempts and %d calls", run.State, run.Reason, run.Steps[0].Attempts, len(h.recv.calls()))
		}
		if want := []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second}; fmt.Sprint(nexts) != fmt.Sprint(want) {
			t.Fatalf("backoff: got %v, want %v", nexts, want)
		}
	})
}

// TestSecretsRedaction resolves a secret from the environment and one
// from the secrets directory, and checks that neither value is stored or
// logged anywhere, although the receiver echoes one back.
func TestSecretsRedaction(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "TENANT_KEY"), []byte("file-secret-value\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	var logMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &logMu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	pb := rollback("", "") + `
---
apiVersion: qsp/v1
kind: Playbook
metadata: {name: search-flag}
spec:
  service: search
  trigger: {slo: search-availability, on: [firing], severity: page}
  actions:
    - name: flag
      webhook:
        url: RECEIVER/api/v1/flags?key={{ secret "TENANT_KEY" }}
        headers: {X-Api-Key: '{{ secret "TENANT_KEY" }}'}
  guards: {kind: feature-flag, cooldown: 1m}
`
	h := newHarness(t, pb, withToken, func(o *Options) { o.Secrets.Dir = dir; o.Logger = logger })
	h.recv.echo = true
	h.snap.set(pageFiring(t0, t0))
	h.step()
	calls := h.recv.calls()
	if len(calls) != 2 {
		t.Fatalf("calls: got %d, want 2", len(calls))
	}
	for _, c := range calls {
		switch c.Path {
		case "/api/v1/rollouts/search/rollback":
			if c.Auth != "Bearer "+token {
				t.Errorf("rollback got Authorization %q", c.Auth)
			}
		case "/api/v1/flags":
			if c.Header.Get("X-Api-Key") != "file-secret-value" {
				t.Errorf("flag got X-Api-Key %q", c.Header.Get("X-Api-Key"))
			}
		}
	}
	rows, _, err := h.st.PlaybookRuns(h.ctx, store.PlaybookRunFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var all strings.Builder
	for _, r := range rows {
		all.Write(r.Data)
	}
	logMu.Lock()
	all.Write(logs.Bytes())
	logMu.Unlock()
	for _, secret := range []string{token, "file-secret-value"} {
		if strings.Contains(all.String(), secret) {
			t.Fatalf("the secret %q is stored or logged", secret)
		}
	}
	run := onlyRun(t, h, "search-rollback")
	if run.State != StateSucceeded || !strings.Contains(run.Steps[0].Response, `"auth":"Bearer [secret ROLLOUTS_TOKEN]"`) {
		t.Fatalf("rollback: got %s, response %q (the echoed secret must be scrubbed)", run.State, run.Steps[0].Response)
	}
	flag := onlyRun(t, h, "search-flag")
	if flag.Steps[0].Request.URL != h.recv.URL()+"/api/v1/flags?key=[secret TENANT_KEY]" || flag.Steps[0].Request.Headers["X-Api-Key"] != "[secret TENANT_KEY]" {
		t.Fatalf("flag request: %+v", flag.Steps[0].Request)
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestMissingSecretFailsWithoutRetry(t *testing.T) {
	h := newHarness(t, rollback("", "      retries: 3"))
	h.snap.set(pageFiring(t0, t0))
	h.step()
	run := onlyRun(t, h, "search-rollback")
	if run.State != StateFailed || run.Steps[0].Attempts != 1 || !strings.Contains(run.Reason, "secret ROLLOUTS_TOKEN is not set: set QSP_SECRET_ROLLOUTS_TOKEN") {
		t.Fatalf("got %s %q after %d attempts", run.State, run.Reason, run.Steps[0].Attempts)
	}
	if n := len(h.recv.calls()); n != 0 {
		t.Fatalf("calls: got %d, want 0", n)
	}
}

// TestWebhookRedirects follows a redirect that stays on the allowlist and
// refuses one to another host, which never gets a request.
func TestWebhookRedirects(t *testing.T) {
	var otherHits int
	var mu sync.Mutex
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		otherHits++
		mu.Unlock()
	}))
	defer other.Close()
	cases := []struct {
		name, to string
		want     State
	}{
		{"within the allowlist", "/api/v1/landed", StateSucceeded},
		{"to another host", other.URL + "/api/v1/landed", StateRefused},
		{"out of the path prefix", "/admin", StateRefused},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pb := `
---
apiVersion: qsp/v1
kind: Playbook
metadata: {name: redirected}
spec:
  service: search
  trigger: {slo: search-availability, on: [firing]}
  actions:
    - name: call
      webhook: {url: RECEIVER/api/v1/redirect}
  guards: {cooldown: 1m}
`
			h := newHarness(t, pb)
			h.recv.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/api/v1/redirect" {
					http.Redirect(w, r, c.to, http.StatusFound)
					return
				}
				h.recv.serve(w, r)
			})
			h.snap.set(pageFiring(t0, t0))
			h.step()
			run := onlyRun(t, h, "redirected")
			if run.State != c.want {
				t.Fatalf("got %s %q, want %s", run.State, run.Reason, c.want)
			}
			if c.want == StateRefused && !strings.Contains(run.Reason, "not on the playbooks allowlist") {
				t.Fatalf("reason %q does not name the allowlist", run.Reason)
			}
		})
	}
	if otherHits != 0 {
		t.Fatalf("the other host got %d requests", otherHits)
	}
}

func TestTransitionTriggers(t *testing.T) {
	pbs := rollback("", "") + `
---
apiVersion: qsp/v1
kind: Playbook
metadata: {name: search-all-clear}
spec:
  service: search
  trigger: {slo: search-availability, on: [resolved]}
  actions:
    - name: tell
      notify: {message: '{{ .Service }} recovered: {{ .Reason }}'}
  guards: {cooldown: 1m}
---
apiVersion: qsp/v1
kind: Playbook
metadata: {name: search-no-data}
spec:
  service: search
  trigger: {slo: search-availability, on: [no_data]}
  actions:
    - name: tell
      notify: {message: 'no data for {{ .SLO }}'}
  guards: {cooldown: 1m}
`
	rec := &recordingNotifier{}
	h := newHarness(t, pbs, withToken, func(o *Options) { o.Notifier = rec })
	st := pageFiring(t0, t0).Statuses[0]
	tr := func(sev string, to slo.AlertState, at time.Time) engine.Transition {
		return engine.Transition{Key: st.Key, SLO: st.SLO, Service: st.Service, Severity: sev, Alert: "SLOErrorBudgetBurn", From: slo.Pending, To: to, At: at, Status: st}
	}
	// A page and a ticket fire; the source-down alert (no SLO) too.
	h.r.OnTransitions(h.ctx, []engine.Transition{tr("page", slo.Firing, t0), tr("ticket", slo.Firing, t0),
		{Severity: engine.SeverityNoData, Alert: engine.AlertSourceDown, To: slo.Firing, At: t0}})
	h.step()
	// Replayed, and seen in the snapshot: still one run.
	h.r.OnTransitions(h.ctx, []engine.Transition{tr("page", slo.Firing, t0)})
	h.snap.set(pageFiring(t0, t0))
	h.step()
	if runs := h.runs("search-rollback"); len(runs) != 1 || runs[0].Trigger.Severity != "page" || runs[0].Trigger.Event != EventFiring {
		t.Fatalf("rollback runs: %s", mustJSON(t, runs))
	}
	h.clk.add(time.Minute)
	h.r.OnTransitions(h.ctx, []engine.Transition{tr("page", slo.Resolved, h.clk.now()), tr(engine.SeverityNoData, slo.Firing, h.clk.now())})
	h.step()
	clear := onlyRun(t, h, "search-all-clear")
	nodata := onlyRun(t, h, "search-no-data")
	if clear.State != StateSucceeded || clear.Trigger.Event != EventResolved || nodata.State != StateSucceeded || nodata.Trigger.Event != EventNoData {
		t.Fatalf("resolved: %s %s; no data: %s %s", clear.State, clear.Trigger.Event, nodata.State, nodata.Trigger.Event)
	}
	msgs := rec.byPlaybook()
	if len(msgs) != 2 || !strings.HasPrefix(msgs["search-all-clear"].Message, "search recovered: SLO search-availability: page alert SLOErrorBudgetBurn resolved at") ||
		msgs["search-no-data"].Message != "no data for search-availability" || msgs["search-all-clear"].IdempotencyKey != clear.ID+"/tell" {
		t.Fatalf("notifications: %+v", msgs)
	}

	// The page fires again 40m later: a new episode, out of the cooldown.
	h.clk.add(40 * time.Minute)
	h.snap.set(pageFiring(h.clk.now(), h.clk.now()))
	h.step()
	if runs := h.runs("search-rollback"); len(runs) != 2 || runs[1].State != StateSucceeded {
		t.Fatalf("second episode: %s", mustJSON(t, runs))
	}
}

type recordingNotifier struct {
	mu   sync.Mutex
	sent []Notification
	fail int
}

func (n *recordingNotifier) Notify(_ context.Context, x Notification) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.fail > 0 {
		n.fail--
		return errors.New("receiver down")
	}
	n.sent = append(n.sent, x)
	return nil
}

// byPlaybook returns the last notification of each playbook: runs of
// different playbooks execute in parallel, in no set order.
func (n *recordingNotifier) byPlaybook() map[string]Notification {
	m := map[string]Notification{}
	for _, x := range n.messages() {
		m[x.Playbook] = x
	}
	return m
}

func (n *recordingNotifier) messages() []Notification {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]Notification(nil), n.sent...)
}

// TestHysteresisSurvivesRestart checks that the armed state and the time
// the burn rose are kept across restarts: no second firing while the
// burn stays high, `for` counted from before the restart.
func TestHysteresisSurvivesRestart(t *testing.T) {
	h := newHarness(t, flapPlaybook("burny", "scale", "2m", "    cooldown: 1m"))
	burn := func(at time.Time, b float64) {
		h.clk.set(at)
		h.snap.set(snapshotAt(at, status("search-availability", "search", b)))
		h.step()
	}
	burn(t0, 20)
	h.restart()
	burn(t0.Add(time.Minute), 20)
	if n := len(h.runs("burny")); n != 0 {
		t.Fatalf("runs before `for` passed: %d", n)
	}
	h.restart()
	burn(t0.Add(2*time.Minute), 20)
	run := onlyRun(t, h, "burny")
	if run.State != StateSucceeded || !run.Trigger.At.Equal(t0) {
		t.Fatalf("got %s, episode at %s; want succeeded, %s", run.State, run.Trigger.At, t0)
	}
	h.restart()
	for i := 3; i < 10; i++ {
		burn(t0.Add(time.Duration(i)*time.Minute), 20)
	}
	if n := len(h.runs("burny")); n != 1 {
		t.Fatalf("runs while the burn stays high: %d, want 1", n)
	}
	burn(t0.Add(10*time.Minute), 6) // above the clear level: still disarmed
	burn(t0.Add(11*time.Minute), 20)
	burn(t0.Add(14*time.Minute), 20)
	if n := len(h.runs("burny")); n != 1 {
		t.Fatalf("runs after a dip above the clear level: %d, want 1", n)
	}
	burn(t0.Add(15*time.Minute), 5) // re-arms
	burn(t0.Add(16*time.Minute), 20)
	burn(t0.Add(18*time.Minute), 20)
	runs := h.runs("burny")
	if len(runs) != 2 || !runs[1].Trigger.At.Equal(t0.Add(16*time.Minute)) {
		t.Fatalf("after re-arming: %d runs, last at %s", len(runs), runs[len(runs)-1].Trigger.At)
	}
	infos, err := h.r.Playbooks(h.ctx)
	if err != nil || len(infos) != 1 || len(infos[0].Arms) != 1 || infos[0].Arms[0].Armed || infos[0].LastRun == nil || infos[0].LastRun.ID != runs[1].ID {
		t.Fatalf("playbooks: %s, %v", mustJSON(t, infos), err)
	}
}

// TestHeldFiringFiresWhenTheGuardLifts keeps the burn high after a run:
// the next firing is held by the cooldown and fires once it ends.
func TestHeldFiringFiresWhenTheGuardLifts(t *testing.T) {
	h := newHarness(t, flapPlaybook("sustained", "scale", "0s", "    cooldown: 10m"))
	for i := range 60 { // 15 minutes
		at := t0.Add(time.Duration(i) * 15 * time.Second)
		b := 20.0
		if i == 1 {
			b = 0 // re-arms once, then stays high
		}
		h.clk.set(at)
		h.snap.set(snapshotAt(at, status("search-availability", "search", b)))
		h.step()
	}
	runs := h.runs("sustained")
	var got []string
	for _, r := range runs {
		got = append(got, fmt.Sprintf("%s@%s", r.State, r.CreatedAt.Sub(t0)))
	}
	want := []string{"succeeded@0s", "suppressed@30s", "succeeded@10m0s"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("runs: got %v, want %v", got, want)
	}
}

func TestExecAction(t *testing.T) {
	pb := func(cmd, timeout string) string {
		return `
---
apiVersion: qsp/v1
kind: Playbook
metadata: {name: restart}
spec:
  service: search
  trigger: {slo: search-availability, on: [firing]}
  actions:
    - name: restart
      exec: {command: ` + cmd + `, timeout: ` + timeout + `}
      retries: 0
  guards: {cooldown: 1m}
`
	}
	t.Run("refused unless enabled", func(t *testing.T) {
		h := newHarness(t, pb(`["/bin/true"]`, "5s"))
		h.snap.set(pageFiring(t0, t0))
		h.step()
		run := onlyRun(t, h, "restart")
		if run.State != StateRefused || !strings.Contains(run.Reason, "exec actions are disabled") {
			t.Fatalf("got %s %q", run.State, run.Reason)
		}
		if infos, _ := h.r.Playbooks(h.ctx); len(infos[0].Problems) == 0 {
			t.Fatal("the playbook list does not show the problem")
		}
	})
	t.Run("argv, minimal environment, output", func(t *testing.T) {
		t.Setenv("QSP_SECRET_LEAK", "must-not-leak")
		h := newHarness(t, pb(`["/bin/sh", "-c", "echo run=$QSP_RUN_ID key=$QSP_IDEMPOTENCY_KEY leak=$QSP_SECRET_LEAK; echo oops >&2"]`, "5s"), func(o *Options) { o.Exec = true })
		h.snap.set(pageFiring(t0, t0))
		h.step()
		run := onlyRun(t, h, "restart")
		out := run.Steps[0].Output
		if run.State != StateSucceeded || *run.Steps[0].ExitCode != 0 || !strings.Contains(out, "run="+run.ID+" key="+run.ID+"/restart leak=\n") || !strings.Contains(out, "oops") {
			t.Fatalf("got %s, output %q", run.State, out)
		}
	})
	t.Run("timeout kills", func(t *testing.T) {
		h := newHarness(t, pb(`["/bin/sleep", "30"]`, "300ms"), func(o *Options) { o.Exec = true })
		h.snap.set(pageFiring(t0, t0))
		start := time.Now()
		h.step()
		run := onlyRun(t, h, "restart")
		if run.State != StateFailed || !strings.Contains(run.Reason, "deadline exceeded") || time.Since(start) > 10*time.Second {
			t.Fatalf("got %s %q after %s", run.State, run.Reason, time.Since(start))
		}
	})
	t.Run("non-zero exit", func(t *testing.T) {
		h := newHarness(t, pb(`["/bin/sh", "-c", "exit 3"]`, "5s"), func(o *Options) { o.Exec = true })
		h.snap.set(pageFiring(t0, t0))
		h.step()
		run := onlyRun(t, h, "restart")
		if run.State != StateFailed || run.Steps[0].ExitCode == nil || *run.Steps[0].ExitCode != 3 {
			t.Fatalf("got %s %q", run.State, run.Reason)
		}
	})
}

func TestGateAndScheduleTriggers(t *testing.T) {
	pbs := `
---
apiVersion: qsp/v1
kind: Gate
metadata: {name: search-deploy}
spec:
  service: search
  budget: {minRemaining: 10}
---
apiVersion: qsp/v1
kind: Playbook
metadata: {name: gate-failed}
spec:
  service: search
  trigger: {gate: search-deploy}
  actions:
    - name: tell
      notify: {message: '{{ .Gate }} failed ({{ .Evaluation }}): {{ .Reason }}'}
  guards: {cooldown: 1m}
---
apiVersion: qsp/v1
kind: Playbook
metadata: {name: nightly}
spec:
  service: search
  trigger: {schedule: "@every 10m"}
  actions:
    - name: tell
      notify: {message: 'scheduled {{ .Schedule }} at {{ .At }}'}
  guards: {kind: mitigation, maxRuns: {count: 100, per: 1d}}
`
	rec := &recordingNotifier{}
	h := newHarness(t, pbs, func(o *Options) { o.Notifier = rec })
	data, _ := json.Marshal(map[string]string{"summary": "fail: budget below 10%"})
	if err := h.st.SaveGateEvaluation(h.ctx, store.GateEvaluation{ID: "ev-1", Gate: "search-deploy", Service: "search", State: "fail",
		Version: "1.2.3", CreatedAt: t0, UpdatedAt: t0, FinishedAt: t0, Data: data}); err != nil {
		t.Fatal(err)
	}
	for i := range 4 * 20 { // 20 minutes
		h.clk.set(t0.Add(time.Duration(i) * 15 * time.Second))
		h.step()
		if i == 40 {
			h.restart()
		}
	}
	g := onlyRun(t, h, "gate-failed")
	if g.State != StateSucceeded || g.Trigger.Evaluation != "ev-1" {
		t.Fatalf("gate run: %s %+v", g.State, g.Trigger)
	}
	sched := h.runs("nightly")
	var at []string
	for _, r := range sched {
		at = append(at, r.Trigger.At.Format("15:04"))
	}
	if fmt.Sprint(at) != "[10:00 10:10]" {
		t.Fatalf("scheduled runs at %v, want [10:00 10:10]", at)
	}
	if msgs := rec.messages(); len(msgs) != 3 || rec.byPlaybook()["gate-failed"].Message != "search-deploy failed (ev-1): gate search-deploy failed for search 1.2.3: fail: budget below 10%" {
		t.Fatalf("notifications: %+v", msgs)
	}
}

func TestNotifyRetries(t *testing.T) {
	pb := `
---
apiVersion: qsp/v1
kind: Playbook
metadata: {name: tell}
spec:
  service: search
  trigger: {slo: search-availability, on: [firing]}
  actions:
    - name: tell
      notify: {message: 'firing: {{ .Reason }}'}
  guards: {cooldown: 1m}
`
	rec := &recordingNotifier{fail: 1}
	h := newHarness(t, pb, func(o *Options) { o.Notifier = rec })
	h.snap.set(pageFiring(t0, t0))
	h.step()
	h.clk.add(10 * time.Second)
	h.step()
	run := onlyRun(t, h, "tell")
	msgs := rec.messages()
	if run.State != StateSucceeded || run.Steps[0].Attempts != 2 || len(msgs) != 1 || msgs[0].IdempotencyKey != run.ID+"/tell" {
		t.Fatalf("got %s after %d attempts, %d notifications", run.State, run.Steps[0].Attempts, len(msgs))
	}
}

// TestReplicasActOnce runs two runners (two replicas) on one database,
// cycling at the same moments on the same snapshot: every episode has one
// run and every action runs once, on SQLite and on PostgreSQL.
func TestReplicasActOnce(t *testing.T) {
	for _, driver := range []string{"sqlite", "postgres"} {
		t.Run(driver, func(t *testing.T) {
			var open func() *store.Store
			switch driver {
			case "sqlite":
				path := filepath.Join(t.TempDir(), "qsp.db")
				open = func() *store.Store {
					st, err := store.Open(context.Background(), store.Options{Path: path})
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { st.Close() })
					return st
				}
			case "postgres":
				dsn := externaltest.StartPostgres(t).CreateDB(t, "qsp_replicas")
				open = func() *store.Store {
					st, err := store.Open(context.Background(), store.Options{Driver: "postgres", DSN: dsn})
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { st.Close() })
					return st
				}
			}
			recv := newReceiver(t)
			set := loadSpecs(t, baseSpecs+strings.ReplaceAll(rollback("", "")+flapPlaybook("scaler", "scale", "0s", "    cooldown: 10m"), "RECEIVER", recv.URL()))
			clk := &testClock{t: t0}
			snap := &snapshots{}
			var runners []*Runner
			for i := range 2 {
				st := open()
				pe, err := policy.New(policy.Options{Recorder: st, Now: clk.now})
				if err != nil {
					t.Fatal(err)
				}
				o := Options{Specs: set, Engine: snap, Store: st, Policy: pe, Allowlist: []string{recv.URL() + "/api/"}, Now: clk.now, Owner: fmt.Sprintf("replica-%d", i)}
				withToken(&o)
				r, err := New(o)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(r.Close)
				runners = append(runners, r)
			}
			for i := range 12 {
				at := t0.Add(time.Duration(i) * 15 * time.Second)
				clk.set(at)
				s := pageFiring(at, t0)
				s.Statuses[0].Windows[0].BurnRate = ptr(20.0) // the scaler's 5m burn stays high
				snap.set(s)
				var wg sync.WaitGroup
				for _, r := range runners {
					wg.Add(1)
					go func() { defer wg.Done(); r.cycle(context.Background()); r.wait() }()
				}
				wg.Wait()
			}
			runs, total, err := runners[0].Runs(context.Background(), RunFilter{})
			if err != nil {
				t.Fatal(err)
			}
			if total != 2 || byState(runs)[StateSucceeded] != 2 {
				t.Fatalf("runs: %d, %v; want one succeeded run per playbook", total, byState(runs))
			}
			calls := recv.calls()
			if len(calls) != 2 || recv.actions() != 2 {
				t.Fatalf("receiver: %d calls, %d actions; want 2 and 2", len(calls), recv.actions())
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// TestReloadDropsStaleHysteresis reloads specs without a burn-rate
// playbook: its stored hysteresis state goes, and the playbook list
// follows the new specs.
func TestReloadDropsStaleHysteresis(t *testing.T) {
	h := newHarness(t, flapPlaybook("burny", "scale", "0s", "    cooldown: 1m"))
	h.snap.set(snapshotAt(t0, status("search-availability", "search", 20)))
	h.step()
	if arms, _ := h.st.PlaybookArms(h.ctx); len(arms) != 1 || arms[0].Armed {
		t.Fatalf("arms after firing: %+v", arms)
	}
	h.r.Reload(loadSpecs(t, baseSpecs+strings.ReplaceAll(rollback("", ""), "RECEIVER", h.recv.URL())))
	h.step()
	if arms, _ := h.st.PlaybookArms(h.ctx); len(arms) != 0 {
		t.Fatalf("arms after the reload: %+v", arms)
	}
	infos, err := h.r.Playbooks(h.ctx)
	if err != nil || len(infos) != 1 || infos[0].Name != "search-rollback" {
		t.Fatalf("playbooks after the reload: %+v, %v", infos, err)
	}
}

// TestPlaybookProblems lists what keeps playbooks from running: a burn
// window the engine does not report, a URL off the allowlist, a
// template construct playbooks may not use.
func TestPlaybookProblems(t *testing.T) {
	pbs := `
---
apiVersion: qsp/v1
kind: Playbook
metadata: {name: odd-window}
spec:
  service: search
  trigger:
    slo: search-availability
    burnRate: {window: 10m, above: 10}
  actions:
    - name: call
      webhook: {url: 'http://169.254.169.254/latest/meta-data/'}
  guards: {cooldown: 1m}
---
apiVersion: qsp/v1
kind: Playbook
metadata: {name: looping}
spec:
  service: search
  trigger: {slo: search-availability, on: [firing]}
  actions:
    - name: tell
      notify: {message: '{{ range 100000000 }}x{{ end }}'}
  guards: {cooldown: 1m}
`
	h := newHarness(t, pbs)
	h.snap.set(pageFiring(t0, t0))
	infos, err := h.r.Playbooks(h.ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, i := range infos {
		got[i.Name] = strings.Join(i.Problems, " | ")
	}
	for name, want := range map[string][]string{
		"odd-window": {"matches no allowed prefix", "the engine does not report a burn rate over 10m for SLO search-availability (it reports 5m, 1h)"},
		"looping":    {"range may only iterate over .Group"},
	} {
		for _, w := range want {
			if !strings.Contains(got[name], w) {
				t.Errorf("%s: problems %q lack %q", name, got[name], w)
			}
		}
	}
	h.step()
	run := onlyRun(t, h, "looping")
	if run.State != StateRefused || !strings.Contains(run.Reason, "range may only iterate") {
		t.Fatalf("looping: got %s %q, want refused", run.State, run.Reason)
	}
}

// TestResumeAdmission leaves a run as a runner that died right after
// recording the trigger would: new, leased by the dead runner. After the
// lease the living runner takes it through admission and executes it; the
// trigger seen again is not a second run.
func TestResumeAdmission(t *testing.T) {
	h := newHarness(t, rollback("", ""), withToken)
	snap := pageFiring(t0, t0)
	evs := snapshotEvents(h.set, snap)
	if len(evs) != 1 {
		t.Fatalf("events: %d", len(evs))
	}
	x, err := h.r.newRun(h.ctx, h.set, evs[0], t0)
	if err != nil {
		t.Fatal(err)
	}
	x.row.Owner, x.row.LeaseUntil = "dead-runner", t0.Add(time.Minute)
	if ok, err := h.st.InsertPlaybookRun(h.ctx, x.row); err != nil || !ok {
		t.Fatalf("insert: %v, %v", ok, err)
	}
	h.snap.set(snap)
	h.step()
	if run := onlyRun(t, h, "search-rollback"); run.State != StateNew || len(h.recv.calls()) != 0 {
		t.Fatalf("within the dead runner's lease: %s, %d calls", run.State, len(h.recv.calls()))
	}
	h.clk.add(2 * time.Minute)
	h.snap.set(pageFiring(h.clk.now(), t0))
	h.step() // admission
	h.step() // execution
	run := onlyRun(t, h, "search-rollback")
	if run.State != StateSucceeded || h.recv.actions() != 1 || !strings.Contains(mustJSON(t, run.Events), "admission resumed") {
		t.Fatalf("after the lease: %s, %d actions, events %v", run.State, h.recv.actions(), events(run))
	}
}
