package api

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Role is what a principal may do. Viewer, operator and admin are ordered:
// each may do everything the one before may. Ingest is apart: it may only
// push telemetry to the receivers. Admin may do everything, ingest
// included.
type Role string

// Roles. RoleNone is an anonymous request's role when anonymous access is
// off; RolePublic marks routes that need no role at all.
const (
	RoleNone     Role = ""
	RolePublic   Role = "public"
	RoleViewer   Role = "viewer"
	RoleOperator Role = "operator"
	RoleAdmin    Role = "admin"
	RoleIngest   Role = "ingest"
)

// Roles lists the roles a token may have, in order.
var Roles = []Role{RoleViewer, RoleOperator, RoleAdmin, RoleIngest}

// ParseRole reads a role of the configuration; "" and "none" are
// RoleNone.
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleViewer, RoleOperator, RoleAdmin, RoleIngest:
		return r, nil
	case RoleNone, "none":
		return RoleNone, nil
	}
	return RoleNone, fmt.Errorf("role %q: want viewer, operator, admin, ingest or none", s)
}

// rank orders the human roles; ingest and none rank nowhere.
func (r Role) rank() int {
	switch r {
	case RoleViewer:
		return 1
	case RoleOperator:
		return 2
	case RoleAdmin:
		return 3
	}
	return 0
}

// Allows reports whether a principal of role r may use a route that needs
// role need.
func (r Role) Allows(need Role) bool {
	switch {
	case need == RolePublic:
		return true
	case r == RoleAdmin:
		return true
	case need == RoleIngest || r == RoleIngest:
		return r == need
	}
	return r.rank() > 0 && r.rank() >= need.rank()
}

// Principal is who makes a request: a token, a UI session opened with a
// token, or an anonymous client.
type Principal struct {
	// Name is the token's name, or "anonymous".
	Name string `json:"name"`
	Role Role   `json:"role"`
	// Via is token (Authorization header), session (UI cookie) or
	// anonymous.
	Via string `json:"via"`
	// session identifies the UI session, for CSRF tokens.
	session string
}

// Ways a principal authenticated.
const (
	ViaToken     = "token"
	ViaSession   = "session"
	ViaAnonymous = "anonymous"
)

type principalKey struct{}

// PrincipalFrom returns the principal Require put in the request's
// context.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// WithPrincipal returns ctx carrying p, for handlers called outside
// Require (tests, in-process callers).
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// Token is a configured API token: its name, role and the hex SHA-256 of
// its secret. The secret itself is never stored.
type Token struct {
	Name   string
	Role   Role
	SHA256 string
}

type token struct {
	name string
	role Role
	hash [sha256.Size]byte
}

// Limit is a token-bucket rate limit: PerSecond requests per second on
// average, bursts of Burst. A negative PerSecond disables the limit.
type Limit struct {
	PerSecond float64
	Burst     int
}

// Default limits. Receivers get more: one Prometheus sends many
// remote_write requests a second in parallel shards.
var (
	DefaultRateLimit       = Limit{PerSecond: 50, Burst: 200}
	DefaultIngestRateLimit = Limit{PerSecond: 1000, Burst: 2000}
	// DefaultQueryRateLimit bounds a token's requests to the
	// Prometheus-compatible query API: a Grafana dashboard or a remote
	// QSP backfilling sends hundreds of queries at once.
	DefaultQueryRateLimit = Limit{PerSecond: 1000, Burst: 2000}
)

// DefaultMaxBodyBytes bounds request bodies of routes without a limit of
// their own in the route table.
const DefaultMaxBodyBytes = 1 << 20

// DefaultSessionTTL is how long a UI session lasts.
const DefaultSessionTTL = 12 * time.Hour

// AuthOptions configure Auth.
type AuthOptions struct {
	Tokens []Token
	// Anonymous is the role of requests without a token. With no tokens
	// configured and Anonymous unset, everything is allowed (RoleAdmin):
	// the local default of qsp serve and the demo. With tokens, unset
	// means none: every route but the public ones needs a token.
	Anonymous Role
	// AnonymousSet says Anonymous was given explicitly ("none" included).
	AnonymousSet bool
	// InsecureAnonymousAdmin makes requests without a token admins when
	// no tokens are configured and Anonymous is unset: the demo's mode.
	// Without it such requests are viewers: read-only.
	InsecureAnonymousAdmin bool
	// Sessions records revoked UI sessions, so a cookie stops working
	// after sign-out on every replica sharing it; nil keeps revocations in
	// this process only.
	Sessions SessionStore
	// LoginLimit bounds failed sign-ins per client address; zero uses
	// DefaultLoginLimit.
	LoginLimit Limit
	// BodyTimeout is how long a request may take to send its body on the
	// API and UI (default DefaultBodyTimeout), IngestBodyTimeout on the
	// receivers (default DefaultIngestBodyTimeout).
	BodyTimeout, IngestBodyTimeout time.Duration
	// SessionKey signs UI session and CSRF cookies; default random, so
	// sessions end when the process restarts.
	SessionKey []byte
	// SessionTTL is the lifetime of a UI session; default 12h.
	SessionTTL time.Duration
	// SecureCookies adds the Secure attribute (the server speaks TLS).
	SecureCookies bool
	// RateLimit bounds each principal's requests to the API and UI,
	// IngestRateLimit to the receivers. Zero values use the defaults.
	RateLimit, IngestRateLimit Limit
	// QueryRateLimit bounds each token's requests to routes of rule
	// Query (the Prometheus-compatible query API); requests without a
	// token there keep RateLimit. Zero uses DefaultQueryRateLimit.
	QueryRateLimit Limit
	Logger         *slog.Logger
	Now            func() time.Time
}

// Auth authenticates requests (bearer tokens, UI sessions, anonymous
// access), authorizes them against the role a route needs, and bounds
// their rate and body size. It is safe for concurrent use.
type Auth struct {
	tokens      []token
	anonymous   Role
	open        bool
	sessions    SessionStore
	revoked     *revokedSessions
	login       *limiters
	bodyTimeout struct{ api, ingest time.Duration }
	key         []byte
	ttl         time.Duration
	secure      bool
	log         *slog.Logger
	now         func() time.Time
	api, ingest *limiters
	query       *limiters // tokens on Query routes
}

// NewAuth checks the tokens and builds an Auth.
func NewAuth(opts AuthOptions) (*Auth, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.SessionTTL <= 0 {
		opts.SessionTTL = DefaultSessionTTL
	}
	if len(opts.SessionKey) == 0 {
		opts.SessionKey = make([]byte, 32)
		if _, err := rand.Read(opts.SessionKey); err != nil {
			return nil, fmt.Errorf("auth: session key: %w", err)
		}
	}
	a := &Auth{key: opts.SessionKey, ttl: opts.SessionTTL, secure: opts.SecureCookies, now: opts.Now,
		log: opts.Logger.With("component", "auth")}
	names := map[string]bool{}
	hashes := map[[sha256.Size]byte]bool{}
	for i, t := range opts.Tokens {
		if t.Name == "" {
			return nil, fmt.Errorf("auth: tokens[%d]: name is required", i)
		}
		if names[t.Name] {
			return nil, fmt.Errorf("auth: tokens[%d]: name %q is used twice", i, t.Name)
		}
		names[t.Name] = true
		r, err := ParseRole(string(t.Role))
		if err != nil || r == RoleNone {
			return nil, fmt.Errorf("auth: tokens[%d] (%s): role %q: want viewer, operator, admin or ingest", i, t.Name, t.Role)
		}
		var tk token
		tk.name, tk.role = t.Name, r
		b, err := hex.DecodeString(strings.TrimSpace(t.SHA256))
		if err != nil || len(b) != sha256.Size {
			return nil, fmt.Errorf("auth: tokens[%d] (%s): sha256: want 64 hex digits (qsp token hash prints them)", i, t.Name)
		}
		copy(tk.hash[:], b)
		if hashes[tk.hash] {
			return nil, fmt.Errorf("auth: tokens[%d] (%s): the same secret as another token", i, t.Name)
		}
		hashes[tk.hash] = true
		a.tokens = append(a.tokens, tk)
	}
	anon, err := ParseRole(string(opts.Anonymous))
	if err != nil {
		return nil, fmt.Errorf("auth: anonymous: %w", err)
	}
	if anon == RoleIngest {
		return nil, errors.New("auth: anonymous: ingest cannot be anonymous; give the senders a token")
	}
	if len(a.tokens) == 0 && !opts.AnonymousSet && anon == RoleNone {
		// No tokens at all: anyone may look; only an explicit, insecure
		// setting lets anyone act (the demo, a laptop).
		anon = RoleViewer
		if opts.InsecureAnonymousAdmin {
			anon, a.open = RoleAdmin, true
		}
	}
	a.anonymous = anon
	a.sessions = opts.Sessions
	a.revoked = &revokedSessions{m: map[string]time.Time{}}
	a.login = newLimiters(opts.LoginLimit, DefaultLoginLimit)
	a.bodyTimeout.api = cmp.Or(opts.BodyTimeout, DefaultBodyTimeout)
	a.bodyTimeout.ingest = cmp.Or(opts.IngestBodyTimeout, DefaultIngestBodyTimeout)
	a.api = newLimiters(opts.RateLimit, DefaultRateLimit)
	a.ingest = newLimiters(opts.IngestRateLimit, DefaultIngestRateLimit)
	a.query = newLimiters(opts.QueryRateLimit, DefaultQueryRateLimit)
	return a, nil
}

// Open reports whether no tokens are configured and every request is
// allowed (auth.insecureAnonymousAdmin).
func (a *Auth) Open() bool { return a.open }

// Anonymous returns the role of requests without credentials.
func (a *Auth) Anonymous() Role { return a.anonymous }

// HashToken returns the hex SHA-256 of a token, as the configuration
// stores it.
func HashToken(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(h[:])
}

// NewToken returns a random token (256 bits, prefixed "qsp_") and its
// hash.
func NewToken() (tok, hash string, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("new token: %w", err)
	}
	tok = "qsp_" + base64.RawURLEncoding.EncodeToString(b)
	return tok, HashToken(tok), nil
}

// Errors of authentication.
var (
	// ErrUnauthenticated: no credentials where the route needs some.
	ErrUnauthenticated = errors.New("authentication required")
	// ErrBadCredentials: an Authorization header that is malformed or
	// names no configured token.
	ErrBadCredentials = errors.New("invalid credentials")
)

// lookup finds the token whose hash is the hash of tok. Every configured
// hash is compared, in constant time, so neither the time taken nor the
// position of a match tells anything about the secret.
func (a *Auth) lookup(tok string) (token, bool) {
	sum := sha256.Sum256([]byte(tok))
	var found token
	ok := 0
	for _, t := range a.tokens {
		eq := subtle.ConstantTimeCompare(sum[:], t.hash[:])
		if eq == 1 {
			found = t
		}
		ok |= eq
	}
	return found, ok == 1
}

// bearer returns the token of an Authorization header.
func bearer(h string) (string, error) {
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", fmt.Errorf("%w: the Authorization header must be \"Bearer <token>\"", ErrBadCredentials)
	}
	tok = strings.TrimSpace(tok)
	if tok == "" || len(tok) > 4096 {
		return "", fmt.Errorf("%w: empty or oversized bearer token", ErrBadCredentials)
	}
	return tok, nil
}

// Authenticate says who makes a request: the token of its Authorization
// header, else its UI session, else an anonymous client. A malformed or
// unknown token is ErrBadCredentials; an expired or forged session is
// ignored (the request is anonymous).
func (a *Auth) Authenticate(r *http.Request) (Principal, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		tok, err := bearer(h)
		if err != nil {
			return Principal{}, err
		}
		t, ok := a.lookup(tok)
		if !ok {
			return Principal{}, fmt.Errorf("%w: unknown token", ErrBadCredentials)
		}
		return Principal{Name: t.name, Role: t.role, Via: ViaToken}, nil
	}
	if c, err := r.Cookie(SessionCookie); err == nil {
		if p, ok := a.session(r.Context(), c.Value); ok {
			return p, nil
		}
	}
	return Principal{Name: "anonymous", Role: a.anonymous, Via: ViaAnonymous}, nil
}

// Denier writes a refusal: 401, 403, 413 or 429 with a message. The API
// answers JSON, the UI a page.
type Denier func(w http.ResponseWriter, r *http.Request, status int, msg string)

// DenyJSON writes {"error": msg}.
func DenyJSON(w http.ResponseWriter, _ *http.Request, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// Require wraps h so that only principals whose role allows need reach
// it, each within its rate limit, with bodies of at most maxBody bytes
// (0: DefaultMaxBodyBytes, negative: h bounds them itself). Refusals go
// to deny (nil: DenyJSON). The principal is in the request's context
// (PrincipalFrom).
func (a *Auth) Require(need Role, maxBody int64, deny Denier, h http.Handler) http.Handler {
	return a.RequireRule(Rule{Role: need, MaxBody: maxBody}, deny, h)
}

// RequireRule is Require with every field of a route's rule: its role,
// its body bound, and whether it stays outside the rate limits (health
// probes). Besides the role it enforces, on every request:
//   - a deadline for the body (ingest routes get a longer one), so a
//     client dribbling bytes cannot hold a connection;
//   - on state-changing JSON routes (not the UI's forms, which check
//     their own field) reached with the UI session cookie and no token,
//     the CSRF token in the X-CSRF-Token header;
//   - on state-changing JSON routes without a token, a JSON
//     Content-Type for a body: a browser cannot send one cross-origin
//     without a CORS preflight.
func (a *Auth) RequireRule(rule Rule, deny Denier, h http.Handler) http.Handler {
	need, maxBody := rule.Role, rule.MaxBody
	if deny == nil {
		deny = DenyJSON
	}
	if maxBody == 0 {
		maxBody = DefaultMaxBodyBytes
	}
	lims, bodyTimeout := a.api, a.bodyTimeout.api
	if need == RoleIngest {
		lims, bodyTimeout = a.ingest, a.bodyTimeout.ingest
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && r.Body != http.NoBody && bodyTimeout > 0 {
			// A deadline of the connection: wall-clock time, not the
			// injected clock. Not supported only on writers that are not
			// connections (tests with a recorder): nothing to cut then.
			_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(bodyTimeout))
		}
		p, err := a.Authenticate(r)
		if err != nil && need != RolePublic {
			// Wrong guesses count against the client's address, so
			// guessing is as slow as the anonymous rate limit.
			if wait, ok := a.api.allow(limitKey(Principal{Via: ViaAnonymous}, r), a.now()); !ok {
				tooMany(w, r, deny, "client", wait)
				return
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="qsp"`)
			deny(w, r, http.StatusUnauthorized, err.Error())
			return
		}
		if err != nil {
			// A public route ignores bad credentials.
			p = Principal{Name: "anonymous", Role: a.anonymous, Via: ViaAnonymous}
		}
		if !p.Role.Allows(need) {
			if p.Via == ViaAnonymous && p.Role == RoleNone {
				w.Header().Set("WWW-Authenticate", `Bearer realm="qsp"`)
				deny(w, r, http.StatusUnauthorized, ErrUnauthenticated.Error()+": send Authorization: Bearer <token>")
				return
			}
			a.log.Debug("request refused", "principal", p.Name, "role", p.Role, "need", need, "method", r.Method, "path", r.URL.Path)
			msg := fmt.Sprintf("forbidden: %s %q has role %s; this needs %s", p.Via, p.Name, roleName(p.Role), need)
			if p.Via == ViaAnonymous && len(a.tokens) == 0 {
				msg += "; without auth.tokens anonymous requests are read-only unless auth.insecureAnonymousAdmin is true"
			}
			deny(w, r, http.StatusForbidden, msg)
			return
		}
		if !rule.Unlimited {
			lims := lims
			if rule.Query && p.Via == ViaToken {
				// A machine client with a token (Grafana, a remote
				// QSP) gets the query API's own bucket; anonymous
				// callers keep the API's.
				lims = a.query
			}
			if wait, ok := lims.allow(limitKey(p, r), a.now()); !ok {
				tooMany(w, r, deny, p.Name, wait)
				return
			}
		}
		if unsafeMethod(r.Method) && jsonRoute(r.URL.Path) && need != RoleIngest && p.Via != ViaToken {
			if p.Via == ViaSession && !a.validCSRF(r, p.session, r.Header.Get(CSRFHeader)) {
				deny(w, r, http.StatusForbidden, "forbidden: a state-changing API request with the UI session cookie needs the "+CSRFHeader+" header of that session, or an Authorization header")
				return
			}
			if hasBody(r) && !jsonContentType(r.Header.Get("Content-Type")) {
				deny(w, r, http.StatusUnsupportedMediaType, "unsupported media type: send the body with Content-Type: application/json")
				return
			}
		}
		if maxBody > 0 && r.Body != nil && r.Body != http.NoBody {
			if r.ContentLength > maxBody {
				deny(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body of %d bytes is larger than %d bytes", r.ContentLength, maxBody))
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		}
		h.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
	})
}

// unsafeMethod reports whether a method changes state.
func unsafeMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return false
	}
	return true
}

// jsonRoute reports whether a path belongs to the JSON API or the
// server's own endpoints rather than to the UI, whose forms carry their
// CSRF token in a field.
func jsonRoute(path string) bool {
	// The Prometheus query API's POSTs are reads (Grafana sends them
	// form-encoded); the receivers need the ingest role, never a session.
	return (strings.HasPrefix(path, "/api/") || strings.HasPrefix(path, "/-/")) && !strings.HasPrefix(path, "/api/v1/write") && path != "/api/v1/events"
}

func hasBody(r *http.Request) bool {
	return r.ContentLength > 0 || (r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody)
}

func jsonContentType(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

func tooMany(w http.ResponseWriter, r *http.Request, deny Denier, who string, wait time.Duration) {
	secs := max(1, int(math.Ceil(wait.Seconds())))
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	deny(w, r, http.StatusTooManyRequests, fmt.Sprintf("rate limit of %s exceeded: retry in %ds", who, secs))
}

func roleName(r Role) string {
	if r == RoleNone {
		return "none"
	}
	return string(r)
}

// limitKey is whom a rate limit counts: a token (its sessions included),
// or an anonymous client by address.
func limitKey(p Principal, r *http.Request) string {
	if p.Via != ViaAnonymous {
		return "token:" + p.Name
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return "anonymous:" + host
}

// limiters are token buckets by key. Idle ones are dropped when there are
// many, so anonymous clients cannot grow the map without bound.
type limiters struct {
	limit rate.Limit
	burst int
	mu    sync.Mutex
	m     map[string]*limiterEntry
}

type limiterEntry struct {
	l    *rate.Limiter
	seen time.Time
}

const maxLimiters = 4096

func newLimiters(l, def Limit) *limiters {
	if l.PerSecond == 0 {
		l = def
	}
	if l.Burst <= 0 {
		l.Burst = max(1, int(l.PerSecond))
	}
	ls := &limiters{limit: rate.Limit(l.PerSecond), burst: l.Burst, m: map[string]*limiterEntry{}}
	if l.PerSecond < 0 {
		ls.limit = rate.Inf
	}
	return ls
}

// allow takes one request from key's bucket, or says how long to wait.
func (ls *limiters) allow(key string, now time.Time) (time.Duration, bool) {
	if ls.limit == rate.Inf {
		return 0, true
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	e := ls.m[key]
	if e == nil {
		if len(ls.m) >= maxLimiters {
			for k, v := range ls.m {
				if now.Sub(v.seen) > 10*time.Minute || v.l.TokensAt(now) >= float64(ls.burst) {
					delete(ls.m, k)
				}
			}
		}
		e = &limiterEntry{l: rate.NewLimiter(ls.limit, ls.burst)}
		ls.m[key] = e
	}
	e.seen = now
	res := e.l.ReserveN(now, 1)
	if !res.OK() {
		return time.Second, false
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return d, false
	}
	return 0, true
}

// Cookies of the UI.
const (
	SessionCookie = "qsp_session"
	CSRFCookie    = "qsp_csrf"
	// CSRFField is the form field that carries the CSRF token.
	CSRFField = "csrf"
)

// sessionData is the signed content of the session cookie: the token's
// name, never the token; the MAC also covers the token's hash, so
// replacing a token ends its sessions.
type sessionData struct {
	Name    string `json:"n"`
	Expires int64  `json:"e"`
	ID      string `json:"s"`
}

func (a *Auth) mac(parts ...string) []byte {
	m := hmac.New(sha256.New, a.key)
	for _, p := range parts {
		m.Write([]byte(p))
		m.Write([]byte{0})
	}
	return m.Sum(nil)
}

func (a *Auth) tokenByName(name string) (token, bool) {
	for _, t := range a.tokens {
		if t.name == name {
			return t, true
		}
	}
	return token{}, false
}

// session checks a session cookie's value: its signature, its expiry,
// and that it was not revoked.
func (a *Auth) session(ctx context.Context, v string) (Principal, bool) {
	if len(v) > 1024 {
		return Principal{}, false
	}
	payload, sig, ok := strings.Cut(v, ".")
	if !ok {
		return Principal{}, false
	}
	mac, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		return Principal{}, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return Principal{}, false
	}
	var d sessionData
	if err := json.Unmarshal(raw, &d); err != nil {
		return Principal{}, false
	}
	t, ok := a.tokenByName(d.Name)
	if !ok {
		return Principal{}, false
	}
	if !hmac.Equal(mac, a.mac("session", payload, hex.EncodeToString(t.hash[:]))) {
		return Principal{}, false
	}
	if !a.now().Before(time.Unix(d.Expires, 0)) {
		return Principal{}, false
	}
	if a.isRevoked(ctx, d.ID) {
		return Principal{}, false
	}
	return Principal{Name: t.name, Role: t.role, Via: ViaSession, session: d.ID}, true
}

// Login checks a token typed into the UI's login form and, if it is
// valid, sets a session cookie (HttpOnly, SameSite=Strict, signed, with
// an expiry) naming the token, not holding it. Failed attempts count
// against the client's address: beyond the login limit every attempt,
// right or wrong, is a *LoginLimitError until the bucket refills.
func (a *Auth) Login(w http.ResponseWriter, r *http.Request, tok string) (Principal, error) {
	key := limitKey(Principal{Via: ViaAnonymous}, r)
	now := a.now()
	if wait, ok := a.login.peek(key, now); !ok {
		return Principal{}, &LoginLimitError{Wait: wait}
	}
	t, err := a.checkLoginToken(tok)
	if err != nil {
		a.login.allow(key, now)
		a.log.Info("sign-in refused", "client", key)
		return Principal{}, err
	}
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return Principal{}, fmt.Errorf("login: %w", err)
	}
	exp := now.Add(a.ttl)
	d := sessionData{Name: t.name, Expires: exp.Unix(), ID: hex.EncodeToString(id)}
	raw, _ := json.Marshal(d)
	payload := base64.RawURLEncoding.EncodeToString(raw)
	sig := base64.RawURLEncoding.EncodeToString(a.mac("session", payload, hex.EncodeToString(t.hash[:])))
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: payload + "." + sig, Path: "/", Expires: exp,
		MaxAge: int(a.ttl / time.Second), HttpOnly: true, Secure: a.secure, SameSite: http.SameSiteStrictMode})
	a.log.Info("session opened", "principal", t.name, "role", t.role)
	return Principal{Name: t.name, Role: t.role, Via: ViaSession, session: d.ID}, nil
}

func (a *Auth) checkLoginToken(tok string) (token, error) {
	tok = strings.TrimSpace(tok)
	if tok == "" || len(tok) > 4096 {
		return token{}, fmt.Errorf("%w: empty or oversized token", ErrBadCredentials)
	}
	t, ok := a.lookup(tok)
	if !ok {
		return token{}, fmt.Errorf("%w: unknown token", ErrBadCredentials)
	}
	return t, nil
}

// Logout ends the UI session of the request: the cookie is cleared in
// this browser and the session revoked in the store, so a copy of the
// cookie stops working too, on every replica.
func (a *Auth) Logout(w http.ResponseWriter, r *http.Request) error {
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: a.secure, SameSite: http.SameSiteStrictMode})
	c, err := r.Cookie(SessionCookie)
	if err != nil {
		return nil
	}
	p, ok := a.session(r.Context(), c.Value)
	if !ok {
		return nil
	}
	a.log.Info("session closed", "principal", p.Name)
	return a.revoke(r.Context(), p.session, a.now().Add(a.ttl))
}

// CSRFToken returns the token the UI's forms carry in CSRFField. It is
// bound to a random cookie of this browser (set here when missing, so
// call it before writing the body) and to the principal's session.
func (a *Auth) CSRFToken(w http.ResponseWriter, r *http.Request) string {
	var seed string
	if c, err := r.Cookie(CSRFCookie); err == nil && validSeed(c.Value) {
		seed = c.Value
	} else {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		seed = hex.EncodeToString(b)
		http.SetCookie(w, &http.Cookie{Name: CSRFCookie, Value: seed, Path: "/", HttpOnly: true, Secure: a.secure, SameSite: http.SameSiteStrictMode})
		// The form rendered now must match the cookie the browser stores.
		r.AddCookie(&http.Cookie{Name: CSRFCookie, Value: seed})
	}
	p, ok := PrincipalFrom(r.Context())
	if !ok {
		// Pages that refuse a request render before Require puts the
		// principal in the context; their forms (sign out) still need
		// the session's token.
		p, _ = a.Authenticate(r)
	}
	return base64.RawURLEncoding.EncodeToString(a.mac("csrf", seed, p.session))
}

func validSeed(s string) bool {
	if len(s) != 32 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// ErrCSRF is a form post without a valid CSRF token, or from another
// origin.
var ErrCSRF = errors.New("the form is stale or came from another site: reload the page and submit it again")

// CheckCSRF checks an unsafe UI request: requests authenticated by an
// Authorization header need nothing (browsers never add it on their
// own); others must come from this origin and carry the CSRF token of
// this browser and session. Call it after the form is parsed.
func (a *Auth) CheckCSRF(r *http.Request) error {
	p, _ := PrincipalFrom(r.Context())
	if p.Via == ViaToken {
		return nil
	}
	if o := r.Header.Get("Origin"); o != "" && !sameOrigin(o, r) {
		return ErrCSRF
	}
	v := r.Header.Get(CSRFHeader)
	if v == "" {
		v = r.PostFormValue(CSRFField)
	}
	if !a.validCSRF(r, p.session, v) {
		return ErrCSRF
	}
	return nil
}

// validCSRF checks a CSRF token against this browser's cookie and the
// request's session.
func (a *Auth) validCSRF(r *http.Request, session, v string) bool {
	c, err := r.Cookie(CSRFCookie)
	if err != nil || !validSeed(c.Value) || v == "" {
		return false
	}
	got, err := base64.RawURLEncoding.DecodeString(v)
	return err == nil && hmac.Equal(got, a.mac("csrf", c.Value, session))
}

// sameOrigin compares an Origin header with the host the request was
// sent to.
func sameOrigin(origin string, r *http.Request) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	return strings.EqualFold(u.Host, r.Host)
}
