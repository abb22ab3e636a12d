package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRoleAllows(t *testing.T) {
	all := []Role{RoleNone, RoleViewer, RoleOperator, RoleAdmin, RoleIngest}
	// want[need] lists the principals allowed, written out by hand.
	want := map[Role][]Role{
		RolePublic:   {RoleNone, RoleViewer, RoleOperator, RoleAdmin, RoleIngest},
		RoleViewer:   {RoleViewer, RoleOperator, RoleAdmin},
		RoleOperator: {RoleOperator, RoleAdmin},
		RoleAdmin:    {RoleAdmin},
		RoleIngest:   {RoleIngest, RoleAdmin},
	}
	for need, allowed := range want {
		for _, p := range all {
			exp := false
			for _, a := range allowed {
				exp = exp || a == p
			}
			if got := p.Allows(need); got != exp {
				t.Errorf("%q.Allows(%s) = %v, want %v", p, need, got, exp)
			}
		}
	}
}

// testTokens are one token per role and their configuration.
type testTokens struct {
	raw  map[Role]string
	conf []Token
}

func newTestTokens(t *testing.T) testTokens {
	t.Helper()
	tt := testTokens{raw: map[Role]string{}}
	for _, r := range Roles {
		tok, hash, err := NewToken()
		if err != nil {
			t.Fatal(err)
		}
		tt.raw[r] = tok
		tt.conf = append(tt.conf, Token{Name: "tok-" + string(r), Role: r, SHA256: hash})
	}
	return tt
}

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func TestHashTokenMatchesSha256sum(t *testing.T) {
	sum, err := exec.LookPath("sha256sum")
	if err != nil {
		t.Skip("sha256sum not installed")
	}
	for _, tok := range []string{"qsp_abc", "ünïcode token", strings.Repeat("x", 300)} {
		cmd := exec.Command(sum)
		cmd.Stdin = strings.NewReader(tok)
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		if want := strings.Fields(string(out))[0]; HashToken(tok) != want {
			t.Errorf("HashToken(%q) = %s, sha256sum says %s", tok, HashToken(tok), want)
		}
	}
	tok, hash, err := NewToken()
	if err != nil || !strings.HasPrefix(tok, "qsp_") || len(tok) < 40 || HashToken(tok) != hash {
		t.Errorf("NewToken: %q %q %v", tok, hash, err)
	}
}

func TestNewAuthRefusesBadConfig(t *testing.T) {
	good := HashToken("a")
	for _, tc := range []struct {
		name string
		opts AuthOptions
		want string
	}{
		{"short hash", AuthOptions{Tokens: []Token{{Name: "a", Role: RoleViewer, SHA256: "abc"}}}, "sha256: want 64 hex digits"},
		{"not hex", AuthOptions{Tokens: []Token{{Name: "a", Role: RoleViewer, SHA256: strings.Repeat("z", 64)}}}, "sha256"},
		{"no name", AuthOptions{Tokens: []Token{{Role: RoleViewer, SHA256: good}}}, "name is required"},
		{"bad role", AuthOptions{Tokens: []Token{{Name: "a", Role: "root", SHA256: good}}}, `role "root"`},
		{"twice", AuthOptions{Tokens: []Token{{Name: "a", Role: RoleViewer, SHA256: good}, {Name: "a", Role: RoleAdmin, SHA256: HashToken("b")}}}, "used twice"},
		{"same secret", AuthOptions{Tokens: []Token{{Name: "a", Role: RoleViewer, SHA256: good}, {Name: "b", Role: RoleAdmin, SHA256: good}}}, "same secret"},
		{"anonymous ingest", AuthOptions{Anonymous: RoleIngest}, "ingest cannot be anonymous"},
		{"anonymous typo", AuthOptions{Anonymous: "viewr"}, `role "viewr"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewAuth(tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestAnonymousDefaults(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts AuthOptions
		open bool
		anon Role
	}{
		{"no tokens: read-only", AuthOptions{}, false, RoleViewer},
		{"no tokens, insecure anonymous admin: open", AuthOptions{InsecureAnonymousAdmin: true}, true, RoleAdmin},
		{"tokens, insecure anonymous admin: closed", AuthOptions{Tokens: []Token{{Name: "a", Role: RoleAdmin, SHA256: HashToken("a")}}, InsecureAnonymousAdmin: true}, false, RoleNone},
		{"no tokens, anonymous none", AuthOptions{Anonymous: "none", AnonymousSet: true}, false, RoleNone},
		{"no tokens, anonymous viewer", AuthOptions{Anonymous: RoleViewer, AnonymousSet: true}, false, RoleViewer},
		{"tokens: closed", AuthOptions{Tokens: []Token{{Name: "a", Role: RoleAdmin, SHA256: HashToken("a")}}}, false, RoleNone},
		{"tokens, anonymous viewer", AuthOptions{Tokens: []Token{{Name: "a", Role: RoleAdmin, SHA256: HashToken("a")}}, Anonymous: RoleViewer, AnonymousSet: true}, false, RoleViewer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := NewAuth(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if a.Open() != tc.open || a.Anonymous() != tc.anon {
				t.Errorf("open %v anonymous %q, want %v %q", a.Open(), a.Anonymous(), tc.open, tc.anon)
			}
		})
	}
}

// echoPrincipal answers with the principal Require put in the context.
var echoPrincipal = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	p, _ := PrincipalFrom(r.Context())
	writeJSON(w, http.StatusOK, p)
})

func TestRequire(t *testing.T) {
	tt := newTestTokens(t)
	a, err := NewAuth(AuthOptions{Tokens: tt.conf, RateLimit: Limit{PerSecond: -1}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		need   Role
		header string
		status int
		as     string
	}{
		{"no token", RoleViewer, "", 401, ""},
		{"unknown token", RoleViewer, "Bearer qsp_nope", 401, ""},
		{"not bearer", RoleViewer, "Basic dXNlcjpwYXNz", 401, ""},
		{"empty bearer", RoleViewer, "Bearer ", 401, ""},
		{"viewer reads", RoleViewer, "Bearer " + tt.raw[RoleViewer], 200, "tok-viewer"},
		{"lower-case scheme", RoleViewer, "bearer " + tt.raw[RoleViewer], 200, "tok-viewer"},
		{"viewer acks", RoleOperator, "Bearer " + tt.raw[RoleViewer], 403, ""},
		{"operator acks", RoleOperator, "Bearer " + tt.raw[RoleOperator], 200, "tok-operator"},
		{"operator reloads", RoleAdmin, "Bearer " + tt.raw[RoleOperator], 403, ""},
		{"admin reloads", RoleAdmin, "Bearer " + tt.raw[RoleAdmin], 200, "tok-admin"},
		{"ingest reads", RoleViewer, "Bearer " + tt.raw[RoleIngest], 403, ""},
		{"ingest writes", RoleIngest, "Bearer " + tt.raw[RoleIngest], 200, "tok-ingest"},
		{"viewer writes", RoleIngest, "Bearer " + tt.raw[RoleViewer], 403, ""},
		{"public, no token", RolePublic, "", 200, "anonymous"},
		{"public, bad token", RolePublic, "Bearer wrong", 200, "anonymous"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(http.MethodGet, "/x", nil)
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			a.Require(tc.need, 0, nil, echoPrincipal).ServeHTTP(rec, req)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
			}
			var body map[string]string
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("body is not JSON: %s", rec.Body)
			}
			if tc.status != 200 {
				if body["error"] == "" {
					t.Errorf("refusal without an error message: %s", rec.Body)
				}
				if tc.status == 401 && rec.Header().Get("WWW-Authenticate") == "" {
					t.Error("401 without WWW-Authenticate")
				}
				// No token, not even the presented one, is ever echoed.
				for _, tok := range tt.raw {
					if strings.Contains(rec.Body.String(), tok) {
						t.Error("the refusal contains a token")
					}
				}
				return
			}
			if body["name"] != tc.as {
				t.Errorf("principal %q, want %q", body["name"], tc.as)
			}
		})
	}
}

func TestRateLimit(t *testing.T) {
	tt := newTestTokens(t)
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	a, err := NewAuth(AuthOptions{Tokens: tt.conf, Now: clk.now, RateLimit: Limit{PerSecond: 1, Burst: 3}, IngestRateLimit: Limit{PerSecond: 10, Burst: 5}})
	if err != nil {
		t.Fatal(err)
	}
	call := func(need Role, tok string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/x", nil)
		req.RemoteAddr = "192.0.2.1:1234"
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		a.Require(need, 0, nil, echoPrincipal).ServeHTTP(rec, req)
		return rec
	}
	for i := range 3 {
		if rec := call(RoleViewer, tt.raw[RoleViewer]); rec.Code != 200 {
			t.Fatalf("request %d within the burst: %d", i, rec.Code)
		}
	}
	rec := call(RoleViewer, tt.raw[RoleViewer])
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "1" {
		t.Fatalf("over the burst: %d, Retry-After %q", rec.Code, rec.Header().Get("Retry-After"))
	}
	// Another token has its own bucket; ingest has its own limit.
	if rec := call(RoleViewer, tt.raw[RoleOperator]); rec.Code != 200 {
		t.Errorf("another token: %d", rec.Code)
	}
	for i := range 5 {
		if rec := call(RoleIngest, tt.raw[RoleIngest]); rec.Code != 200 {
			t.Fatalf("ingest request %d: %d", i, rec.Code)
		}
	}
	// A second refills one request.
	clk.add(time.Second)
	if rec := call(RoleViewer, tt.raw[RoleViewer]); rec.Code != 200 {
		t.Errorf("after a second: %d", rec.Code)
	}
	if rec := call(RoleViewer, tt.raw[RoleViewer]); rec.Code != 429 {
		t.Errorf("right after: %d", rec.Code)
	}
	// Guessing tokens counts against the client's address.
	for range 3 {
		call(RoleViewer, "qsp_guess")
	}
	if rec := call(RoleViewer, "qsp_guess"); rec.Code != http.StatusTooManyRequests {
		t.Errorf("fourth wrong guess: %d, want 429", rec.Code)
	}
}

func TestBodyLimit(t *testing.T) {
	a, err := NewAuth(AuthOptions{})
	if err != nil {
		t.Fatal(err)
	}
	read := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			DenyJSON(w, r, http.StatusRequestEntityTooLarge, "too large")
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	h := a.Require(RoleViewer, 10, nil, read)
	for _, tc := range []struct {
		name   string
		body   string
		length int64
		status int
	}{
		{"within", "0123456789", 10, 204},
		{"declared over", "0123456789x", 11, 413},
		{"chunked over", "0123456789x", -1, 413},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/x", strings.NewReader(tc.body))
			req.ContentLength = tc.length
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.status {
				t.Errorf("status %d, want %d", rec.Code, tc.status)
			}
		})
	}
}

// browser is a cookie jar over a handler.
type browser struct {
	cookies map[string]*http.Cookie
}

func (b *browser) do(h http.Handler, req *http.Request) *httptest.ResponseRecorder {
	for _, c := range b.cookies {
		req.AddCookie(c)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	for _, c := range rec.Result().Cookies() {
		if c.MaxAge < 0 {
			delete(b.cookies, c.Name)
			continue
		}
		b.cookies[c.Name] = c
	}
	return rec
}

func TestSessionAndCSRF(t *testing.T) {
	tt := newTestTokens(t)
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	a, err := NewAuth(AuthOptions{Tokens: tt.conf, Now: clk.now, SessionTTL: time.Hour, RateLimit: Limit{PerSecond: -1}})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	var formToken string
	mux.Handle("POST /login", a.Require(RolePublic, 0, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := a.Login(w, r, r.PostFormValue("token")); err != nil {
			DenyJSON(w, r, 401, err.Error())
			return
		}
		w.WriteHeader(204)
	})))
	mux.Handle("GET /page", a.Require(RoleViewer, 0, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		formToken = a.CSRFToken(w, r)
		echoPrincipal(w, r)
	})))
	mux.Handle("POST /act", a.Require(RoleOperator, 0, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := a.CheckCSRF(r); err != nil {
			DenyJSON(w, r, 403, err.Error())
			return
		}
		w.WriteHeader(204)
	})))
	post := func(path string, form url.Values) *http.Request {
		req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return req
	}

	b := &browser{cookies: map[string]*http.Cookie{}}
	if rec := b.do(mux, post("/login", url.Values{"token": {"qsp_wrong"}})); rec.Code != 401 {
		t.Fatalf("login with a wrong token: %d", rec.Code)
	}
	if rec := b.do(mux, post("/login", url.Values{"token": {tt.raw[RoleOperator]}})); rec.Code != 204 {
		t.Fatalf("login: %d %s", rec.Code, rec.Body)
	}
	s := b.cookies[SessionCookie]
	if s == nil || !s.HttpOnly || s.SameSite != http.SameSiteStrictMode || s.MaxAge != 3600 {
		t.Fatalf("session cookie: %+v", s)
	}
	if strings.Contains(s.Value, tt.raw[RoleOperator]) || strings.Contains(s.Value, HashToken(tt.raw[RoleOperator])) {
		t.Fatal("the session cookie holds the token or its hash")
	}
	rec := b.do(mux, httptest.NewRequest(http.MethodGet, "/page", nil))
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"via":"session"`) || !strings.Contains(rec.Body.String(), "tok-operator") {
		t.Fatalf("page with the session: %d %s", rec.Code, rec.Body)
	}
	if c := b.cookies[CSRFCookie]; c == nil || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode {
		t.Fatalf("CSRF cookie: %+v", c)
	}

	act := func(form url.Values, origin string) int {
		req := post("/act", form)
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		return b.do(mux, req).Code
	}
	if got := act(url.Values{CSRFField: {formToken}}, ""); got != 204 {
		t.Errorf("form with its CSRF token: %d", got)
	}
	if got := act(url.Values{CSRFField: {formToken}}, "http://example.com"); got != 204 {
		t.Errorf("form from the same origin: %d", got)
	}
	if got := act(url.Values{}, ""); got != 403 {
		t.Errorf("form without a CSRF token: %d", got)
	}
	if got := act(url.Values{CSRFField: {formToken}}, "https://evil.example.net"); got != 403 {
		t.Errorf("form from another origin: %d", got)
	}
	// A bearer token needs no CSRF token: browsers never add one.
	req := post("/act", url.Values{})
	req.Header.Set("Authorization", "Bearer "+tt.raw[RoleOperator])
	if rec := httptest.NewRecorder(); true {
		mux.ServeHTTP(rec, req)
		if rec.Code != 204 {
			t.Errorf("bearer post: %d", rec.Code)
		}
	}
	// Another browser's token does not pass with this one's cookie.
	other := &browser{cookies: map[string]*http.Cookie{}}
	other.do(mux, post("/login", url.Values{"token": {tt.raw[RoleOperator]}}))
	other.do(mux, httptest.NewRequest(http.MethodGet, "/page", nil))
	otherToken := formToken
	if otherToken == "" || act(url.Values{CSRFField: {otherToken}}, "") != 403 {
		t.Error("the CSRF token of another browser passed")
	}

	// A forged cookie is anonymous: 401.
	forged := &browser{cookies: map[string]*http.Cookie{SessionCookie: {Name: SessionCookie, Value: s.Value[:len(s.Value)-2] + "xx"}}}
	if rec := forged.do(mux, httptest.NewRequest(http.MethodGet, "/page", nil)); rec.Code != 401 {
		t.Errorf("forged session: %d", rec.Code)
	}
	// The session expires.
	clk.add(time.Hour)
	if rec := b.do(mux, httptest.NewRequest(http.MethodGet, "/page", nil)); rec.Code != 401 {
		t.Errorf("expired session: %d", rec.Code)
	}
	// A session ends when its token is replaced in the configuration.
	clk.add(-30 * time.Minute)
	conf := append([]Token(nil), tt.conf...)
	for i := range conf {
		if conf[i].Name == "tok-operator" {
			conf[i].SHA256 = HashToken("rotated")
		}
	}
	rotated, _ := NewAuth(AuthOptions{Tokens: conf, Now: clk.now, SessionKey: a.key})
	req = httptest.NewRequest(http.MethodGet, "/page", nil)
	req.AddCookie(s)
	if p, _ := rotated.Authenticate(req); p.Via != ViaAnonymous {
		t.Errorf("session of a rotated token: %+v", p)
	}
	// Logout clears the cookie.
	rec = httptest.NewRecorder()
	req = httptest.NewRequest(http.MethodPost, "/logout", nil)
	req.AddCookie(s)
	if err := a.Logout(rec, req); err != nil {
		t.Fatal(err)
	}
	if c := rec.Result().Cookies(); len(c) != 1 || c[0].Name != SessionCookie || c[0].MaxAge >= 0 {
		t.Errorf("logout cookies: %+v", c)
	}
	// And revokes the session: the old cookie no longer authenticates.
	req = httptest.NewRequest(http.MethodGet, "/page", nil)
	req.AddCookie(s)
	if p, _ := a.Authenticate(req); p.Via != ViaAnonymous {
		t.Errorf("session after logout: %+v", p)
	}
}

func TestSecurityHeadersAndCORS(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) })
	rec := httptest.NewRecorder()
	SecurityHeaders(ok, true).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	h := rec.Header()
	if h.Get("Content-Security-Policy") != ContentSecurityPolicy || h.Get("X-Content-Type-Options") != "nosniff" ||
		h.Get("X-Frame-Options") != "DENY" || h.Get("Referrer-Policy") != "same-origin" || h.Get("Strict-Transport-Security") == "" {
		t.Errorf("headers: %v", h)
	}
	// CORS off: an API request from another origin gets no CORS header.
	req := httptest.NewRequest(http.MethodGet, "/api/v1/slos", nil)
	req.Header.Set("Origin", "https://x.example")
	rec = httptest.NewRecorder()
	CORS(nil, ok).ServeHTTP(rec, req)
	if rec.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Error("CORS header without configured origins")
	}
	rec = httptest.NewRecorder()
	CORS([]string{"https://x.example/"}, ok).ServeHTTP(rec, req)
	if rec.Header().Get("Access-Control-Allow-Origin") != "https://x.example" {
		t.Errorf("configured origin: %v", rec.Header())
	}
	// Not under /api/v1: never.
	req = httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set("Origin", "https://x.example")
	rec = httptest.NewRecorder()
	CORS([]string{"*"}, ok).ServeHTTP(rec, req)
	if rec.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Error("CORS on the UI")
	}
}

func TestMuxRecordsRules(t *testing.T) {
	a, _ := NewAuth(AuthOptions{Tokens: newTestTokens(t).conf})
	m := NewMux(a, nil)
	m.HandleFunc("GET /api/v1/slos", func(http.ResponseWriter, *http.Request) {})
	m.HandleFunc("GET /api/v1/unlisted", func(http.ResponseWriter, *http.Request) {})
	routes := m.Routes()
	if len(routes) != 2 || routes[0].Pattern != "GET /api/v1/slos" || !routes[0].Ruled || routes[0].Role != RoleViewer ||
		routes[1].Ruled || routes[1].Role != RoleAdmin {
		t.Errorf("routes: %+v", routes)
	}
	if routes[0].Method() != "GET" || routes[0].Path() != "/api/v1/slos" {
		t.Errorf("method %q path %q", routes[0].Method(), routes[0].Path())
	}
}

// FuzzAuthenticate: any Authorization header and session cookie either
// authenticate as a configured token (only with that token) or are
// anonymous or refused; nothing panics.
func FuzzAuthenticate(f *testing.F) {
	tok := "qsp_" + strings.Repeat("k", 43)
	a, err := NewAuth(AuthOptions{Tokens: []Token{{Name: "ci", Role: RoleOperator, SHA256: HashToken(tok)}}})
	if err != nil {
		f.Fatal(err)
	}
	rec := httptest.NewRecorder()
	if _, err := a.Login(rec, httptest.NewRequest(http.MethodPost, "/login", nil), tok); err != nil {
		f.Fatal(err)
	}
	session := rec.Result().Cookies()[0].Value
	f.Add("Bearer "+tok, "")
	f.Add("Bearer qsp_wrong", "")
	f.Add("Basic Y2k6eA==", "")
	f.Add("", session)
	f.Add("", session[:len(session)/2])
	f.Add("", "e30.AAAA")
	f.Add("bearer  "+tok+" ", "x.y.z")
	f.Fuzz(func(t *testing.T, header, cookie string) {
		if len(header)+len(cookie) > 8192 {
			return
		}
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		if header != "" {
			req.Header["Authorization"] = []string{header}
		}
		if cookie != "" {
			req.Header["Cookie"] = []string{SessionCookie + "=" + strconv.Quote(cookie)}
		}
		p, err := a.Authenticate(req)
		switch {
		case err != nil:
			if !errors.Is(err, ErrBadCredentials) || bytes.Contains([]byte(err.Error()), []byte(tok)) {
				t.Fatalf("error %v", err)
			}
		case p.Via == ViaToken:
			if !strings.Contains(header, tok) || p.Name != "ci" {
				t.Fatalf("authenticated %+v from %q", p, header)
			}
		case p.Via == ViaSession:
			if p.Name != "ci" || p.Role != RoleOperator {
				t.Fatalf("session %+v", p)
			}
		case p.Via != ViaAnonymous || p.Role != RoleNone:
			t.Fatalf("principal %+v", p)
		}
	})
}

// TestQueryRateLimit: on the query API a token has the query bucket, so
// a data source's burst (Grafana, a remote QSP backfilling) is not cut
// at the API's limit, while anonymous callers keep the API's limit.
func TestQueryRateLimit(t *testing.T) {
	tt := newTestTokens(t)
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	a, err := NewAuth(AuthOptions{Tokens: tt.conf, Anonymous: RoleViewer, AnonymousSet: true, Now: clk.now,
		RateLimit: Limit{PerSecond: 1, Burst: 3}, QueryRateLimit: Limit{PerSecond: 1, Burst: 20}})
	if err != nil {
		t.Fatal(err)
	}
	call := func(rule Rule, tok string) int {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/prometheus/api/v1/query", nil)
		req.RemoteAddr = "192.0.2.1:1234"
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		a.RequireRule(rule, nil, echoPrincipal).ServeHTTP(rec, req)
		return rec.Code
	}
	query := Rule{Role: RoleViewer, Query: true}
	for _, tc := range []struct {
		name  string
		rule  Rule
		tok   string
		burst int // requests answered before the first 429
	}{
		{"token on the query API", query, tt.raw[RoleViewer], 20},
		{"anonymous on the query API", query, "", 3},
		{"token elsewhere", Rule{Role: RoleViewer}, tt.raw[RoleOperator], 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := 0
			for n < 100 && call(tc.rule, tc.tok) == http.StatusOK {
				n++
			}
			if n != tc.burst {
				t.Errorf("%d requests answered before a 429, want %d", n, tc.burst)
			}
		})
	}
}
