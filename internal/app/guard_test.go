package app_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/qsp-dev/qsp/internal/api"
	"github.com/qsp-dev/qsp/internal/app"
	"github.com/qsp-dev/qsp/internal/spec"
	"github.com/qsp-dev/qsp/internal/ui/uitest"
)

// authModes are the ways the server is run: with tokens, without tokens
// (read-only anonymous viewer, the default) and without tokens in the
// insecure anonymous admin mode of the demo.
var authModes = []struct {
	name   string
	tokens bool
	admin  bool
}{
	{"tokens", true, false},
	{"no tokens: read-only", false, false},
	{"no tokens: insecure anonymous admin", false, true},
}

func startMode(t *testing.T, tokens, admin bool, more func(c *app.Config)) *uitest.Env {
	return uitest.Start(t, uitest.Options{Tokens: tokens, Config: func(c *app.Config) {
		c.Auth.InsecureAnonymousAdmin = admin
		if more != nil {
			more(c)
		}
	}})
}

// send makes a request as the strongest principal of the mode (the admin
// token, or none), with extra headers; Host is the Host header.
func send(t *testing.T, env *uitest.Env, method, path string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, env.URL+path, strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if tok := env.Tokens[api.RoleAdmin]; tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for k, v := range hdr {
		switch {
		case k == "Host":
			req.Host = v
		case v == "":
			req.Header.Del(k)
		default:
			req.Header.Set(k, v)
		}
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp, uitest.ReadBody(t, resp)
}

var noRedirect = &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// TestRebindingAndCrossSiteWrites walks every route the server registers
// in every auth mode: a foreign Host is refused on every route, reads
// included (a rebound page could read the API), and a cross-site Origin
// or Sec-Fetch-Site on every state-changing one (the finding: PUT
// killswitch with Host rebind.evil.example answered 200), each with a
// 403 that says why. The same requests with the server's own Host and
// Origin are not refused by the guard.
func TestRebindingAndCrossSiteWrites(t *testing.T) {
	for _, mode := range authModes {
		t.Run(mode.name, func(t *testing.T) {
			env := startMode(t, mode.tokens, mode.admin, nil)
			_, port, _ := net.SplitHostPort(strings.TrimPrefix(env.URL, "http://"))
			n := 0
			for _, rt := range env.App.Routes() {
				methods, path := concrete(rt)
				for _, m := range methods {
					if rt.Path() == "/healthz" || rt.Path() == "/readyz" {
						// Exempt from the Host check: kubelet probes
						// send the pod IP, load balancers their own name.
						resp, _ := send(t, env, m, path, map[string]string{"Host": "rebind.evil.example:" + port})
						if resp.StatusCode == http.StatusForbidden {
							t.Errorf("%s %s: probe refused for its Host", m, path)
						}
						continue
					}
					checkGuard(t, env, m, path, map[string]string{"Host": "rebind.evil.example:" + port, "Origin": "http://rebind.evil.example:" + port}, "DNS rebinding")
					n++
					if m == http.MethodGet {
						continue
					}
					checkGuard(t, env, m, path, map[string]string{"Origin": "http://evil.example"}, "cross-site")
					checkGuard(t, env, m, path, map[string]string{"Origin": "http://127.0.0.1:1"}, "cross-site")
					checkGuard(t, env, m, path, map[string]string{"Origin": "null"}, "cross-site")
					checkGuard(t, env, m, path, map[string]string{"Sec-Fetch-Site": "cross-site"}, "cross-site")
					checkGuard(t, env, m, path, map[string]string{"Sec-Fetch-Site": "same-site"}, "cross-site")
					// The server's own origin passes the guard (the
					// handler may still refuse for its own reasons).
					resp, body := send(t, env, m, path, map[string]string{"Origin": env.URL, "Sec-Fetch-Site": "same-origin"})
					if strings.Contains(string(body), "cross-site request guard") || strings.Contains(string(body), "DNS rebinding") {
						t.Errorf("%s %s from its own origin: %d %s", m, path, resp.StatusCode, body)
					}
				}
			}
			if n < 40 {
				t.Errorf("only %d requests checked", n)
			}
			// Names the server answers to pass: localhost and IP literals.
			for _, host := range []string{"localhost:" + port, "127.0.0.1:" + port, "[::1]:" + port} {
				if resp, body := send(t, env, http.MethodGet, "/api/v1/whoami", map[string]string{"Host": host}); resp.StatusCode != http.StatusOK {
					t.Errorf("whoami with Host %s: %d %s", host, resp.StatusCode, body)
				}
			}
		})
	}
}

func checkGuard(t *testing.T, env *uitest.Env, method, path string, hdr map[string]string, reason string) {
	t.Helper()
	resp, body := send(t, env, method, path, hdr)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), reason) {
		t.Errorf("%s %s with %v: %d %.200s, want 403 naming %q", method, path, hdr, resp.StatusCode, body, reason)
	}
}

// TestAllowedHosts: a name configured in auth.allowedHosts passes, and
// externalURL's host too.
func TestAllowedHosts(t *testing.T) {
	env := startMode(t, true, false, func(c *app.Config) {
		c.Auth.AllowedHosts = []string{"qsp.monitoring.svc", ".example.com"}
		c.ExternalURL = "https://qsp.corp.test"
	})
	for host, want := range map[string]int{
		"qsp.monitoring.svc:8080": 200, "grafana.example.com": 200, "qsp.corp.test": 200,
		"example.com.evil.test": 403, "qsp.monitoring.svc.evil.test": 403,
	} {
		if resp, body := send(t, env, http.MethodGet, "/api/v1/whoami", map[string]string{"Host": host}); resp.StatusCode != want {
			t.Errorf("Host %s: %d %s, want %d", host, resp.StatusCode, body, want)
		}
	}
	// externalURL's origin is the server's own, behind a TLS proxy.
	if resp, body := send(t, env, http.MethodPost, "/-/reload", map[string]string{"Host": "qsp.corp.test", "Origin": "https://qsp.corp.test"}); resp.StatusCode != http.StatusOK {
		t.Errorf("reload from externalURL's origin: %d %s", resp.StatusCode, body)
	}
}

// TestCrossSiteReload is the finding: a plain HTML form posting to
// /-/reload from another site (no Content-Type, foreign Origin) answered
// 200 in the default mode.
func TestCrossSiteReload(t *testing.T) {
	env := startMode(t, false, true, nil)
	for _, hdr := range []map[string]string{
		{"Origin": "https://evil.example", "Content-Type": ""},
		{"Sec-Fetch-Site": "cross-site", "Content-Type": ""},
	} {
		checkGuard(t, env, http.MethodPost, "/-/reload", hdr, "cross-site")
	}
	// curl, CI and config-reloaders send neither header: they pass.
	resp, err := http.Post(env.URL+"/-/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if body := uitest.ReadBody(t, resp); resp.StatusCode != http.StatusOK {
		t.Errorf("reload without Origin: %d %s", resp.StatusCode, body)
	}
}

// TestReadOnlyDefault: without tokens and without
// auth.insecureAnonymousAdmin anonymous requests read but cannot act.
func TestReadOnlyDefault(t *testing.T) {
	env := startMode(t, false, false, nil)
	resp, body := send(t, env, http.MethodGet, "/api/v1/whoami", nil)
	var who api.Principal
	if err := json.Unmarshal(body, &who); err != nil || who.Role != api.RoleViewer {
		t.Errorf("whoami: %d %s, want a viewer", resp.StatusCode, body)
	}
	for _, w := range []struct{ method, path string }{
		{http.MethodPut, "/api/v1/playbooks/killswitch"}, {http.MethodPost, "/-/reload"}, {http.MethodPost, "/api/v1/incidents/1/ack"},
	} {
		resp, body := send(t, env, w.method, w.path, nil)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "insecureAnonymousAdmin") {
			t.Errorf("%s %s: %d %s, want 403 naming auth.insecureAnonymousAdmin", w.method, w.path, resp.StatusCode, body)
		}
	}
}

// TestNoTokensBeyondLoopbackRefused: a listen address beyond loopback
// without tokens does not start unless the setting says so.
func TestNoTokensBeyondLoopbackRefused(t *testing.T) {
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cfg := &app.Config{DataDir: filepath.Join(dir, "data"), Specs: []string{filepath.Join(uitest.Root(), "examples")}, Listen: "0.0.0.0:8080"}
	_, err = app.New(context.Background(), app.Options{Config: cfg, Listener: l})
	if err == nil || !strings.Contains(err.Error(), "auth.insecureAnonymousAdmin") || !strings.Contains(err.Error(), "auth.tokens") {
		t.Fatalf("got %v, want a refusal naming auth.tokens and auth.insecureAnonymousAdmin", err)
	}
}

var csrfMeta = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// browser is a cookie jar that signs in through the UI's form.
type browser struct {
	env     *uitest.Env
	cookies map[string]*http.Cookie
}

func (b *browser) do(t *testing.T, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	for _, c := range b.cookies {
		req.AddCookie(c)
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range resp.Cookies() {
		b.cookies[c.Name] = c
	}
	return resp, uitest.ReadBody(t, resp)
}

// form loads page and returns its CSRF token.
func (b *browser) form(t *testing.T, page string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, b.env.URL+page, nil)
	_, body := b.do(t, req)
	m := csrfMeta.FindSubmatch(body)
	if m == nil {
		t.Fatalf("%s has no CSRF token", page)
	}
	return strings.ReplaceAll(string(m[1]), "&#43;", "+")
}

func (b *browser) post(t *testing.T, path string, form url.Values) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, b.env.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", b.env.URL)
	return b.do(t, req)
}

func (b *browser) login(t *testing.T, tok string) *http.Response {
	t.Helper()
	csrf := b.form(t, "/login")
	resp, _ := b.post(t, "/login", url.Values{"csrf": {csrf}, "token": {tok}, "next": {"/"}})
	return resp
}

// TestSessionCookieAPIWrites is the finding: an API write authenticated
// by the session cookie alone, with an empty Content-Type and the Origin
// of another port on the same host, approved a playbook run. Now it
// needs the session's CSRF token in X-CSRF-Token and a JSON body, and
// the same-site Origin is refused before that.
func TestSessionCookieAPIWrites(t *testing.T) {
	env := startMode(t, true, false, nil)
	b := &browser{env: env, cookies: map[string]*http.Cookie{}}
	if resp := b.login(t, env.Tokens[api.RoleOperator]); resp.StatusCode != http.StatusSeeOther || b.cookies[api.SessionCookie] == nil {
		t.Fatalf("login: %d", resp.StatusCode)
	}
	run := env.PendingRun(t, "search-scale-up")
	approve := func(hdr map[string]string) (*http.Response, []byte) {
		req, _ := http.NewRequest(http.MethodPost, env.URL+"/api/v1/playbooks/runs/"+run+"/approve", strings.NewReader(`{"note":"x"}`))
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		return b.do(t, req)
	}
	token := b.form(t, "/playbooks")
	for _, tc := range []struct {
		name   string
		hdr    map[string]string
		status int
		reason string
	}{
		{"the finding: same-site other port, no Content-Type", map[string]string{"Origin": "http://127.0.0.1:1"}, 403, "cross-site"},
		{"same origin without the CSRF header", map[string]string{"Origin": env.URL, "Content-Type": "application/json"}, 403, api.CSRFHeader},
		{"no Origin without the CSRF header", map[string]string{"Content-Type": "application/json"}, 403, api.CSRFHeader},
		{"a forged CSRF header", map[string]string{"Content-Type": "application/json", api.CSRFHeader: "Zm9yZ2Vk"}, 403, api.CSRFHeader},
		{"the CSRF header without a JSON Content-Type", map[string]string{api.CSRFHeader: token}, 415, "Content-Type"},
		{"the CSRF header with a form Content-Type", map[string]string{api.CSRFHeader: token, "Content-Type": "text/plain"}, 415, "Content-Type"},
	} {
		if resp, body := approve(tc.hdr); resp.StatusCode != tc.status || !strings.Contains(string(body), tc.reason) {
			t.Errorf("%s: %d %s, want %d naming %q", tc.name, resp.StatusCode, body, tc.status, tc.reason)
		}
	}
	resp, body := env.Do(t, http.MethodGet, "/api/v1/playbooks/runs/"+run, api.RoleViewer, "", nil), []byte(nil)
	body = uitest.ReadBody(t, resp)
	if !strings.Contains(string(body), `"pending"`) {
		t.Fatalf("the run is no longer pending after refused approvals: %s", body)
	}
	// With the session's token and JSON, the cookie is enough.
	if resp, body := approve(map[string]string{"Origin": env.URL, "Content-Type": "application/json", api.CSRFHeader: token}); resp.StatusCode != http.StatusOK {
		t.Errorf("approve with the CSRF header: %d %s", resp.StatusCode, body)
	}
}

// TestLogoutRevokes: after sign-out a copy of the old session cookie no
// longer authenticates (it did for 12 h).
func TestLogoutRevokes(t *testing.T) {
	env := startMode(t, true, false, nil)
	b := &browser{env: env, cookies: map[string]*http.Cookie{}}
	b.login(t, env.Tokens[api.RoleAdmin])
	old := *b.cookies[api.SessionCookie]
	whoami := func() api.Principal {
		req, _ := http.NewRequest(http.MethodGet, env.URL+"/api/v1/whoami", nil)
		req.AddCookie(&old)
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var p api.Principal
		_ = json.Unmarshal(uitest.ReadBody(t, resp), &p)
		return p
	}
	if p := whoami(); p.Via != api.ViaSession || p.Role != api.RoleAdmin {
		t.Fatalf("before logout: %+v", p)
	}
	csrf := b.form(t, "/")
	if resp, body := b.post(t, "/logout", url.Values{"csrf": {csrf}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %d %s", resp.StatusCode, body)
	}
	if p := whoami(); p.Via != api.ViaAnonymous {
		t.Errorf("the old cookie after logout: %+v, want anonymous", p)
	}
}

// TestHealthOutsideRateLimits is the finding: after ~260 wrong-token
// guesses the anonymous bucket made /healthz and /readyz answer 429.
func TestHealthOutsideRateLimits(t *testing.T) {
	env := startMode(t, true, false, nil)
	limited := 0
	for range 300 {
		req, _ := http.NewRequest(http.MethodGet, env.URL+"/api/v1/slos", nil)
		req.Header.Set("Authorization", "Bearer wrong")
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		uitest.ReadBody(t, resp)
		if resp.StatusCode == http.StatusTooManyRequests {
			limited++
		}
	}
	if limited == 0 {
		t.Fatal("300 wrong guesses were never rate limited: the test proves nothing")
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		for _, auth := range []string{"", "Bearer wrong"} {
			resp, body := send(t, env, http.MethodGet, p, map[string]string{"Authorization": auth})
			if resp.StatusCode != http.StatusOK {
				t.Errorf("%s (Authorization %q) after the guesses: %d %s", p, auth, resp.StatusCode, body)
			}
		}
	}
}

// TestLoginLimited: failed sign-ins are limited per client address with
// a 429 and Retry-After; beyond the limit even the right token waits.
func TestLoginLimited(t *testing.T) {
	env := startMode(t, true, false, func(c *app.Config) { c.Auth.LoginRateLimit = app.RateLimitConfig{PerSecond: 0.01, Burst: 3} })
	b := &browser{env: env, cookies: map[string]*http.Cookie{}}
	for i := range 3 {
		if resp := b.login(t, "wrong"); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("wrong sign-in %d: %d, want 401", i, resp.StatusCode)
		}
	}
	for _, tok := range []string{"wrong", env.Tokens[api.RoleViewer]} {
		resp := b.login(t, tok)
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
			t.Errorf("sign-in beyond the limit: %d, Retry-After %q, want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
		}
	}
}

// TestSlowBodiesCut: clients dribbling a body one byte at a time are cut
// at the body deadline (1s here; the API default is 30s), on the API and
// on a receiver (its own, longer deadline: 2s here).
func TestSlowBodiesCut(t *testing.T) {
	env := startMode(t, false, true, func(c *app.Config) {
		c.Auth.BodyTimeout = spec.Duration(time.Second)
		c.Auth.IngestBodyTimeout = spec.Duration(2 * time.Second)
	})
	addr := strings.TrimPrefix(env.URL, "http://")
	type result struct {
		path string
		took time.Duration
		err  error
	}
	paths := []struct {
		path     string
		deadline time.Duration
	}{{"/api/v1/incidents/1/ack", time.Second}, {"/api/v1/incidents/1/ack", time.Second}, {"/api/v1/events", 2 * time.Second}, {"/api/v1/write", 2 * time.Second}}
	done := make(chan result, len(paths))
	for _, p := range paths {
		go func() {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				done <- result{p.path, 0, err}
				return
			}
			defer c.Close()
			start := time.Now()
			fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n", p.path, addr)
			// Dribble a byte every 100ms for at most 10s; the server must
			// close (or answer and close) long before.
			go func() {
				for range 100 {
					if _, err := c.Write([]byte(" ")); err != nil {
						return
					}
					time.Sleep(100 * time.Millisecond)
				}
			}()
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err = io.Copy(io.Discard, bufio.NewReader(c))
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				done <- result{p.path, time.Since(start), fmt.Errorf("still open after 10s")}
				return
			}
			done <- result{p.path, time.Since(start), nil}
		}()
	}
	for range paths {
		r := <-done
		if r.err != nil {
			t.Errorf("%s: %v", r.path, r.err)
			continue
		}
		var want time.Duration
		for _, p := range paths {
			if p.path == r.path {
				want = p.deadline
			}
		}
		// Generous margin: the bound is the deadline, not a timing.
		if r.took < want-200*time.Millisecond || r.took > want+4*time.Second {
			t.Errorf("%s: cut after %s, want about %s", r.path, r.took, want)
		}
	}
}

// TestConnsPerClient: beyond auth.maxConnsPerClient a client's new
// connections are closed at once; a closed one frees its place.
func TestConnsPerClient(t *testing.T) {
	env := startMode(t, false, true, func(c *app.Config) { c.Auth.MaxConnsPerClient = 4 })
	addr := strings.TrimPrefix(env.URL, "http://")
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	alive := func(c net.Conn) bool {
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		return err == nil && strings.Contains(line, "200")
	}
	for i := range 6 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		if got, want := alive(c), i < 4; got != want {
			t.Errorf("connection %d: served %v, want %v", i+1, got, want)
		}
	}
	held[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		if alive(c) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a closed connection never freed its place")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
