package app_test

import (
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/qsp-dev/qsp/internal/api"
	"github.com/qsp-dev/qsp/internal/app"
	"github.com/qsp-dev/qsp/internal/ui/uitest"
)

// principals are the callers of the matrix: no token, then one token per
// role.
var principals = []api.Role{api.RoleNone, api.RoleViewer, api.RoleOperator, api.RoleAdmin, api.RoleIngest}

// allowedBy is who may call a route of each role, written out here rather
// than derived from api.Role.Allows, so that a change of the role model
// fails this test.
var allowedBy = map[api.Role][]api.Role{
	api.RolePublic:   {api.RoleNone, api.RoleViewer, api.RoleOperator, api.RoleAdmin, api.RoleIngest},
	api.RoleViewer:   {api.RoleViewer, api.RoleOperator, api.RoleAdmin},
	api.RoleOperator: {api.RoleOperator, api.RoleAdmin},
	api.RoleAdmin:    {api.RoleAdmin},
	api.RoleIngest:   {api.RoleIngest, api.RoleAdmin},
}

// critical pins the role of the routes whose role matters most, as a
// second opinion on the route table.
var critical = map[string]api.Role{
	"GET /healthz":                          api.RolePublic,
	"GET /readyz":                           api.RolePublic,
	"GET /metrics":                          api.RoleViewer,
	"POST /-/reload":                        api.RoleAdmin,
	"POST /api/v1/write":                    api.RoleIngest,
	"POST /v1/metrics":                      api.RoleIngest,
	"POST /v1/traces":                       api.RoleIngest,
	"POST /api/v1/events":                   api.RoleIngest,
	"GET /api/v1/slos":                      api.RoleViewer,
	"POST /api/v1/incidents/{id}/ack":       api.RoleOperator,
	"POST /api/v1/gates/{name}/evaluations": api.RoleOperator,
	"POST /incidents/{id}/ack":              api.RoleOperator,
	"POST /playbooks/runs/{id}/approve":     api.RoleOperator,
	"POST /playbooks/runs/{id}/reject":      api.RoleOperator,
	"GET /{$}":                              api.RoleViewer,
	"GET /login":                            api.RolePublic,
}

// concrete turns a route pattern into a request: path wildcards get
// values that exist where that is easy, subtrees a path under them.
func concrete(rt api.Route) (methods []string, path string) {
	path = rt.Path()
	r := strings.NewReplacer("{name}", "checkout-availability", "{id}", "1", "{file}", "style.css", "{$}", "")
	path = r.Replace(path)
	if strings.HasSuffix(path, "/") && path != "/" && !strings.HasSuffix(rt.Path(), "{$}") {
		path += "query?query=up"
	}
	if m := rt.Method(); m != "" {
		return []string{m}, path
	}
	return []string{http.MethodGet, http.MethodPost}, path
}

// csrf is a browser's CSRF cookie and the form token that goes with it.
type csrf struct{ cookie, token string }

var csrfInput = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// newCSRF loads the sign-in page as a browser would and keeps its CSRF
// cookie and form token.
func newCSRF(t *testing.T, env *uitest.Env, page string) csrf {
	t.Helper()
	resp := env.Do(t, http.MethodGet, page, api.RoleNone, "", nil)
	body := uitest.ReadBody(t, resp)
	var c csrf
	for _, ck := range resp.Cookies() {
		if ck.Name == api.CSRFCookie {
			c.cookie = ck.Value
		}
	}
	m := csrfInput.FindSubmatch(body)
	if c.cookie == "" || m == nil {
		t.Fatalf("the sign-in page has no CSRF cookie or token:\n%s", body)
	}
	c.token = html.UnescapeString(string(m[1]))
	return c
}

// call sends a request as role; posts to the UI are forms with the CSRF
// token, as a browser sends them.
func call(t *testing.T, env *uitest.Env, method, path string, role api.Role, c csrf) *http.Response {
	t.Helper()
	if method != http.MethodPost || strings.HasPrefix(path, "/api/") || strings.HasPrefix(path, "/v1/") || strings.HasPrefix(path, "/-/") || strings.HasPrefix(path, "/prometheus/") {
		return env.Do(t, method, path, role, "application/json", nil)
	}
	form := url.Values{"csrf": {c.token}, "token": {env.Tokens[role]}, "next": {"/"}}
	req, _ := http.NewRequest(method, env.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: api.CSRFCookie, Value: c.cookie})
	if tok := env.Tokens[role]; tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// accessRefusal reports whether a body is a refusal by access control
// (api.Auth or the CSRF check) rather than a handler's answer, such as
// the sign-in form's "That token is not valid".
func accessRefusal(body []byte) bool {
	for _, m := range []string{"authentication required", "invalid credentials", "forbidden:", "This page needs a token", "You are signed in as", "the form is stale", "rate limit"} {
		if strings.Contains(string(body), m) {
			return true
		}
	}
	return false
}

// TestAuthorizationMatrix calls every route the server registers (API,
// UI, receivers, /-/reload, /metrics) as every principal and checks the
// status class: allowed (anything but 401, 403 and 429), 401 without a
// token, 403 with a role too small. A route missing from the role table
// fails.
func TestAuthorizationMatrix(t *testing.T) {
	env := uitest.Start(t, uitest.Options{Tokens: true})
	routes := env.App.Routes()
	if len(routes) < 40 {
		t.Fatalf("only %d routes registered", len(routes))
	}
	c := newCSRF(t, env, "/login")
	seen := map[string]bool{}
	for _, rt := range routes {
		seen[rt.Pattern] = true
		if !rt.Ruled {
			t.Errorf("route %s has no rule in the role table (internal/api/auth_routes.go)", rt.Pattern)
			continue
		}
		if want, ok := critical[rt.Pattern]; ok && rt.Role != want {
			t.Errorf("route %s needs %s, want %s", rt.Pattern, rt.Role, want)
		}
		methods, path := concrete(rt)
		for _, method := range methods {
			for _, p := range principals {
				resp := call(t, env, method, path, p, c)
				body := uitest.ReadBody(t, resp)
				allowed := slices.Contains(allowedBy[rt.Role], p)
				name := string(p)
				if p == api.RoleNone {
					name = "no token"
				}
				got := resp.StatusCode
				switch {
				case rt.Role == api.RolePublic && (got == http.StatusTooManyRequests || accessRefusal(body)):
					t.Errorf("%s %s as %s: refused on a public route: %d %s", method, path, name, got, body)
				case rt.Role == api.RolePublic:
				case allowed && (got == http.StatusUnauthorized || got == http.StatusForbidden || got == http.StatusTooManyRequests):
					t.Errorf("%s %s as %s: got %d, want it allowed: %s", method, path, name, got, body)
				case !allowed && p == api.RoleNone && got != http.StatusUnauthorized:
					t.Errorf("%s %s as %s: got %d, want 401", method, path, name, got)
				case !allowed && p != api.RoleNone && got != http.StatusForbidden:
					t.Errorf("%s %s as %s: got %d, want 403", method, path, name, got)
				case !allowed:
					checkRefusal(t, rt, got, resp.Header, body)
				}
			}
		}
	}
	for pattern := range critical {
		if !seen[pattern] {
			t.Errorf("route %s is not registered", pattern)
		}
	}
}

// checkRefusal checks that a refusal says why: JSON {"error"} from the
// API and the server's endpoints, a page from the UI.
func checkRefusal(t *testing.T, rt api.Route, status int, h http.Header, body []byte) {
	t.Helper()
	if status == http.StatusUnauthorized && !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("%s: 401 without WWW-Authenticate: Bearer", rt.Pattern)
	}
	if strings.HasPrefix(h.Get("Content-Type"), "text/html") {
		want := "Forbidden (403)"
		if status == http.StatusUnauthorized {
			want = "Sign in required"
		}
		if !strings.Contains(string(body), want) {
			t.Errorf("%s: the refusal page does not say %q", rt.Pattern, want)
		}
		return
	}
	var e struct{ Error string }
	if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
		t.Errorf("%s: refusal %d is not JSON {\"error\": ...}: %s", rt.Pattern, status, body)
	}
}

// TestOpenMode: without tokens every route is open to every caller, and
// the UI says so.
func TestOpenMode(t *testing.T) {
	env := uitest.Start(t, uitest.Options{})
	id := env.OpenIncident(t)
	c := newCSRF(t, env, fmt.Sprintf("/incidents/%d", id))
	for _, rt := range env.App.Routes() {
		methods, path := concrete(rt)
		for _, m := range methods {
			resp := call(t, env, m, path, api.RoleNone, c)
			body := uitest.ReadBody(t, resp)
			if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden || accessRefusal(body) {
				t.Errorf("%s %s in open mode: %d %s", m, path, resp.StatusCode, body)
			}
		}
	}
	// Forms still need their CSRF token in open mode: any site could
	// otherwise post them through a local browser.
	resp := call(t, env, http.MethodPost, "/incidents/1/ack", api.RoleNone, csrf{cookie: c.cookie, token: "forged"})
	if body := uitest.ReadBody(t, resp); resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "the form is stale") {
		t.Errorf("a forged form in open mode: %d, want 403 with the CSRF message", resp.StatusCode)
	}
	resp = env.Do(t, http.MethodGet, "/", api.RoleNone, "", nil)
	if body := uitest.ReadBody(t, resp); !strings.Contains(string(body), "Open mode: no tokens configured") {
		t.Errorf("the executive view does not say the server is open:\n%s", body)
	}
}

// TestSecurityHeaders: every answer carries the CSP, nosniff, no framing
// and no referrer; CORS is off by default and on for configured origins.
func TestSecurityHeaders(t *testing.T) {
	env := uitest.Start(t, uitest.Options{Tokens: true, Config: func(c *app.Config) {
		c.Auth.CORSOrigins = []string{"https://grafana.example.com"}
	}})
	for _, path := range []string{"/", "/slos", "/api/v1/slos", "/login", "/healthz", "/nope"} {
		resp := env.Do(t, http.MethodGet, path, api.RoleViewer, "", nil)
		uitest.ReadBody(t, resp)
		h := resp.Header
		for k, want := range map[string]string{
			"X-Content-Type-Options": "nosniff",
			"X-Frame-Options":        "DENY",
			"Referrer-Policy":        "same-origin",
		} {
			if got := h.Get(k); got != want {
				t.Errorf("%s: %s = %q, want %q", path, k, got, want)
			}
		}
		csp := h.Get("Content-Security-Policy")
		for _, want := range []string{"frame-ancestors 'none'", "default-src 'none'", "style-src 'self'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s: CSP %q lacks %q", path, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "script-src") {
			t.Errorf("%s: CSP %q allows scripts", path, csp)
		}
	}
	// CORS: a configured origin gets a preflight and the header, another
	// origin nothing.
	for _, tc := range []struct {
		origin string
		want   string
	}{{"https://grafana.example.com", "https://grafana.example.com"}, {"https://evil.example.com", ""}} {
		req, _ := http.NewRequest(http.MethodOptions, env.URL+"/api/v1/slos", nil)
		req.Header.Set("Origin", tc.origin)
		req.Header.Set("Access-Control-Request-Method", "GET")
		req.Header.Set("Access-Control-Request-Headers", "authorization")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("Access-Control-Allow-Origin"); got != tc.want {
			t.Errorf("preflight from %s: Access-Control-Allow-Origin %q, want %q", tc.origin, got, tc.want)
		}
		if tc.want != "" && (resp.StatusCode != http.StatusNoContent || !strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Authorization")) {
			t.Errorf("preflight from %s: %s, allow headers %q", tc.origin, resp.Status, resp.Header.Get("Access-Control-Allow-Headers"))
		}
	}
}
