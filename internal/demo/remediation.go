package demo

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// Paths of the fake platform API the example playbooks call
// (examples/playbooks.yaml): Argo Rollouts-like rollbacks, a rate limiter,
// an autoscaler and worker restarts.
const (
	PathRollback   = "/api/v1/rollouts/checkout/rollback"
	PathRateLimit  = "/api/v1/ratelimits/auth-login"
	PathAutoscaler = "/api/v1/autoscalers/search"
	PathRestart    = "/api/v1/restart/auth-worker"
)

// DefaultPlatformAddr is where the example playbooks expect the platform
// API.
const DefaultPlatformAddr = "127.0.0.1:9099"

// Call is one request the platform API received from a playbook.
type Call struct {
	At     time.Time `json:"at"` // simulated time
	Method string    `json:"method"`
	Path   string    `json:"path"`
	Status int       `json:"status"`
	Body   string    `json:"body,omitempty"`
}

// platform is the fake platform API: what playbooks call to remediate.
// Each call changes the simulation the way the real system would change,
// so remediation that works ends the incident.
type platform struct {
	sim    *Simulator
	clock  *Clock
	token  string
	logger *slog.Logger
	server *http.Server
	l      net.Listener

	mu    sync.Mutex
	calls []Call
}

func newPlatform(sim *Simulator, clock *Clock, l net.Listener, token string, logger *slog.Logger) *platform {
	p := &platform{sim: sim, clock: clock, token: token, l: l, logger: logger.With("component", "demo.platform")}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+PathRollback, p.rollback)
	mux.HandleFunc("PUT "+PathRateLimit, p.rateLimit)
	mux.HandleFunc("PUT "+PathAutoscaler, p.autoscaler)
	mux.HandleFunc("POST "+PathRestart, p.restart)
	p.server = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return p
}

// URL is the platform API's base URL.
func (p *platform) URL() string { return "http://" + p.l.Addr().String() }

func (p *platform) run(ctx context.Context) error {
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = p.server.Shutdown(shut)
	}()
	if err := p.server.Serve(p.l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("platform api: %w", err)
	}
	return nil
}

// Calls returns the calls received at or after since.
func (p *platform) Calls(since time.Time) []Call {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Call
	for _, c := range p.calls {
		if !c.At.Before(since) {
			out = append(out, c)
		}
	}
	return out
}

// record reads the body, logs the call and answers status.
func (p *platform) record(w http.ResponseWriter, r *http.Request, status int) []byte {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	c := Call{At: p.clock.Now(), Method: r.Method, Path: r.URL.Path, Status: status, Body: string(body)}
	p.mu.Lock()
	p.calls = append(p.calls, c)
	p.mu.Unlock()
	p.logger.Info("platform call", "method", c.Method, "path", c.Path, "status", status)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, "{\"status\": %q}\n", http.StatusText(status))
	return body
}

// rollback aborts the checkout rollout: canary traffic goes back to the
// stable pods. It needs the rollouts token, as Argo Rollouts' API would.
func (p *platform) rollback(w http.ResponseWriter, r *http.Request) {
	want := "Bearer " + p.token
	if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte(want)) != 1 {
		p.record(w, r, http.StatusUnauthorized)
		return
	}
	p.record(w, r, http.StatusOK)
	p.sim.Update(func(e *Effects) { e.Canary = nil })
}

// rateLimit turns on the per-client sign-in limit: bots are cut to a
// trickle.
func (p *platform) rateLimit(w http.ResponseWriter, r *http.Request) {
	p.record(w, r, http.StatusOK)
	p.sim.Update(func(e *Effects) { e.BotsThrottled = true })
}

// autoscaler sets the search autoscaler's ceiling.
func (p *platform) autoscaler(w http.ResponseWriter, r *http.Request) {
	var req struct {
		MaxReplicas int `json:"maxReplicas"`
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	r.Body = io.NopCloser(bytes.NewReader(body))
	if err := json.Unmarshal(body, &req); err != nil || req.MaxReplicas <= 0 {
		p.record(w, r, http.StatusBadRequest)
		return
	}
	p.record(w, r, http.StatusOK)
	p.sim.Update(func(e *Effects) {
		if req.MaxReplicas >= searchMaxReplicas {
			e.SearchCap = 0
		} else {
			e.SearchCap = max(e.SearchCap, req.MaxReplicas)
		}
	})
}

// restart restarts the auth workers.
func (p *platform) restart(w http.ResponseWriter, r *http.Request) {
	p.record(w, r, http.StatusOK)
	p.sim.RestartWorkers()
}
