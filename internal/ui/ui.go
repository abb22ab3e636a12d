// Package ui is QSP's web dashboard: server-rendered pages (html/template,
// embedded with go:embed, no JavaScript at all) over the engine's
// snapshots and the store's records, with SVG charts drawn in Go. It sits
// at the end of the data flow next to the JSON API and reads what the
// other components produce; its only writes are an operator's
// acknowledgement of an incident and approval or rejection of a playbook
// run, each through the owning component.
//
// Pages: the executive view (/), the on-call view (/oncall), SLOs (/slos,
// /slos/{name}), services (/services/{name}), incidents (/incidents,
// /incidents/{id}), gates (/gates, /gates/evaluations/{id}), decisions
// (/decisions) and playbooks (/playbooks, /playbooks/runs/{id}). Access is
// checked by api.Auth with the roles of api's route table; people sign in
// with a token through a form (/login) that opens a signed session
// cookie, and every form carries a CSRF token.
package ui

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/prometheus/promql"

	"github.com/qsp-dev/qsp/internal/alert"
	"github.com/qsp-dev/qsp/internal/api"
	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/gate"
	"github.com/qsp-dev/qsp/internal/playbook"
	"github.com/qsp-dev/qsp/internal/policy"
	"github.com/qsp-dev/qsp/internal/spec"
	"github.com/qsp-dev/qsp/internal/store"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Snapshotter returns the engine's latest statuses; safe for concurrent
// use, the snapshot is immutable.
type Snapshotter interface {
	Snapshot() *engine.Snapshot
}

// Incidents lists, shows and acknowledges incidents; *alert.Incidents
// implements it. Safe for concurrent use.
type Incidents interface {
	List(ctx context.Context, f alert.IncidentFilter) ([]alert.Incident, error)
	Get(ctx context.Context, id int64) (alert.Incident, error)
	// Ack returns alert.ErrNotFound or alert.ErrClosed.
	Ack(ctx context.Context, id int64, by, note string) (alert.Incident, error)
}

// Gates lists gates and their evaluations; *gate.Runner implements it.
// Safe for concurrent use.
type Gates interface {
	Gates() []*spec.Gate
	Evaluations(ctx context.Context, f gate.Filter) ([]*gate.Evaluation, int, error)
	Evaluation(ctx context.Context, id string) (*gate.Evaluation, error)
}

// Records are the store's logs the pages show; *store.Store implements
// it. Safe for concurrent use.
type Records interface {
	Deploys(ctx context.Context, f store.DeployFilter) ([]store.Deploy, int, error)
	Decisions(ctx context.Context, f store.DecisionFilter) ([]*policy.Decision, int, error)
}

// Playbooks lists playbooks and their runs (the audit log) and decides
// pending runs; *playbook.Runner implements it. Safe for concurrent use.
// Approve and Reject return playbook.ErrNotFound or
// playbook.ErrNotPending (the run is no longer waiting).
type Playbooks interface {
	Playbooks(ctx context.Context) ([]playbook.Info, error)
	Runs(ctx context.Context, f playbook.RunFilter) ([]*playbook.Run, int, error)
	RunByID(ctx context.Context, id string) (*playbook.Run, error)
	Approve(ctx context.Context, id, by, note string) (*playbook.Run, error)
	Reject(ctx context.Context, id, by, note string) (*playbook.Run, error)
	KillSwitch(ctx context.Context) (playbook.KillSwitch, error)
}

// Querier answers instant PromQL queries (the services' cost queries);
// both telemetry sources implement it. Safe for concurrent use.
type Querier interface {
	Instant(ctx context.Context, query string, ts time.Time) (promql.Vector, error)
}

// Options configure the UI. Engine and Specs are required; without the
// others their pages say what is not configured.
type Options struct {
	Engine Snapshotter
	// DeployImpact measures the budget each deploy consumed (the SLO
	// page lists it); optional.
	DeployImpact DeployImpacts
	// History draws the SLO charts; without it they are left out.
	History api.HistoryReader
	Specs   func() *spec.Set
	// Auth checks every page's role (api's route table), signs sessions
	// and CSRF tokens; nil serves every page to everyone, without forms
	// protection (tests only).
	Auth      *api.Auth
	Incidents Incidents
	// Traces finds example traces of bad events for the SLO and
	// incident pages; nil leaves them out.
	Traces    api.TraceFinder
	Gates     Gates
	Records   Records
	Playbooks Playbooks
	// Reports builds the /reports page and postmortem drafts.
	Reports api.Reporter
	// Cost evaluates the services' cost-per-request queries.
	Cost Querier
	// CostInterval is how often costs are queried; default 1m.
	CostInterval time.Duration
	// Refresh reloads pages without forms this often
	// (<meta http-equiv="refresh">); default 30s, negative for never.
	Refresh time.Duration
	Logger  *slog.Logger
	Now     func() time.Time
}

// UI serves the dashboard.
type UI struct {
	opts  Options
	log   *slog.Logger
	mux   *api.Mux
	pages map[string]*template.Template
	costs atomic.Pointer[map[string]cost]
	// buffers for rendering: a page is rendered in full before it is
	// written, so that an error becomes an error page, not half a page.
	bufs sync.Pool
}

// cost is a service's cost per request at a time.
type cost struct {
	Value    float64
	Currency string
	At       time.Time
	Err      string
}

// New parses the templates and builds the UI.
func New(opts Options) (*UI, error) {
	if opts.Engine == nil {
		return nil, errors.New("ui: no engine")
	}
	if opts.Specs == nil {
		return nil, errors.New("ui: no specs")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Refresh == 0 {
		opts.Refresh = 30 * time.Second
	}
	if opts.CostInterval <= 0 {
		opts.CostInterval = time.Minute
	}
	u := &UI{opts: opts, log: opts.Logger.With("component", "ui"), pages: map[string]*template.Template{}}
	u.bufs.New = func() any { return new(bytes.Buffer) }
	empty := map[string]cost{}
	u.costs.Store(&empty)
	if err := u.parse(); err != nil {
		return nil, err
	}
	u.mux = api.NewMux(opts.Auth, u.deny)
	u.routes()
	return u, nil
}

func (u *UI) parse() error {
	base, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/parts.html", "templates/traces.html")
	if err != nil {
		return fmt.Errorf("ui: templates: %w", err)
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return fmt.Errorf("ui: templates: %w", err)
	}
	for _, n := range names {
		name := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if name == "layout" || name == "parts" || name == "traces" {
			continue
		}
		t, err := base.Clone()
		if err == nil {
			t, err = t.ParseFS(templateFS, n)
		}
		if err != nil {
			return fmt.Errorf("ui: template %s: %w", n, err)
		}
		u.pages[name] = t
	}
	return u.parseReport()
}

func (u *UI) routes() {
	static, _ := fs.Sub(staticFS, "static")
	files := http.FileServerFS(static)
	u.mux.Handle("GET /static/{file}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		http.StripPrefix("/static/", files).ServeHTTP(w, r)
	}))
	u.mux.Handle("GET /login", u.page(u.loginPage))
	u.mux.HandleFunc("POST /login", u.login)
	u.mux.HandleFunc("POST /logout", u.logout)
	u.mux.Handle("GET /{$}", u.page(u.executive))
	u.mux.Handle("GET /oncall", u.page(u.oncall))
	u.mux.Handle("GET /slos", u.page(u.sloList))
	u.mux.Handle("GET /slos/{name}", u.page(u.sloDetail))
	u.mux.Handle("GET /services/{name}", u.page(u.service))
	u.mux.Handle("GET /incidents", u.page(u.incidents))
	u.mux.Handle("GET /incidents/{id}", u.page(u.incident))
	u.mux.HandleFunc("POST /incidents/{id}/ack", u.ack)
	u.mux.HandleFunc("GET /incidents/{id}/postmortem", u.postmortem)
	u.mux.Handle("GET /reports", u.page(u.reportPage))
	u.mux.Handle("GET /gates", u.page(u.gates))
	u.mux.Handle("GET /gates/evaluations/{id}", u.page(u.evaluation))
	u.mux.Handle("GET /decisions", u.page(u.decisions))
	u.mux.Handle("GET /playbooks", u.page(u.playbooks))
	u.mux.Handle("GET /playbooks/runs/{id}", u.page(u.run))
	u.mux.HandleFunc("POST /playbooks/runs/{id}/approve", func(w http.ResponseWriter, r *http.Request) { u.decide(w, r, true) })
	u.mux.HandleFunc("POST /playbooks/runs/{id}/reject", func(w http.ResponseWriter, r *http.Request) { u.decide(w, r, false) })
	// Anything else: the not-found page, for everyone.
	u.mux.ServeMux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		u.errorPage(w, r, http.StatusNotFound, "There is no page at "+r.URL.Path+".")
	})
}

// ServeHTTP implements http.Handler.
func (u *UI) ServeHTTP(w http.ResponseWriter, r *http.Request) { u.mux.ServeHTTP(w, r) }

// Routes returns the UI's routes and the role each needs.
func (u *UI) Routes() []api.Route { return u.mux.Routes() }

// Run queries the services' costs every CostInterval until ctx ends.
func (u *UI) Run(ctx context.Context) error {
	if u.opts.Cost == nil {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(u.opts.CostInterval)
	defer t.Stop()
	for {
		u.RefreshCosts(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// RefreshCosts queries every service's cost per request once.
func (u *UI) RefreshCosts(ctx context.Context) {
	if u.opts.Cost == nil {
		return
	}
	now := u.opts.Now()
	out := map[string]cost{}
	for _, s := range u.opts.Specs().Services {
		if s.Spec.Cost == nil {
			continue
		}
		c := cost{Currency: s.Spec.Cost.Currency, At: now}
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		v, err := u.opts.Cost.Instant(qctx, s.Spec.Cost.Query, now)
		cancel()
		switch {
		case err != nil:
			c.Err = "query failed"
			u.log.Warn("cost query failed", "service", s.Name(), "err", err)
		case len(v) == 0:
			c.Err = "no data"
		default:
			c.Value = v[0].F
		}
		out[s.Name()] = c
	}
	u.costs.Store(&out)
}

// view is what a page handler returns: the template and its data.
type view struct {
	Template string
	Title    string
	// Nav is the navigation entry to highlight.
	Nav  string
	Data any
	// Form says the page has forms: it is not auto-refreshed.
	Form bool
}

// layout is the data of every page.
type layout struct {
	Title   string
	Nav     string
	Refresh int
	User    api.Principal
	Signed  bool
	Open    bool
	CSRF    string
	Path    string
	Now     time.Time
	Data    any
	Status  int
	Message string
}

// Errors page handlers return; renderError maps them to status codes.
var (
	errNotFound   = errors.New("not found")
	errBadRequest = errors.New("bad request")
)

func notFoundf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errNotFound}, args...)...)
}

func badRequestf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errBadRequest}, args...)...)
}

// page wraps a page handler: the view is rendered in the layout, errors
// as error pages.
func (u *UI) page(h func(r *http.Request) (*view, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, err := h(r)
		if err != nil {
			u.renderError(w, r, err)
			return
		}
		u.render(w, r, http.StatusOK, v)
	})
}

func (u *UI) renderError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, errNotFound), errors.Is(err, store.ErrNotFound), errors.Is(err, alert.ErrNotFound), errors.Is(err, playbook.ErrNotFound),
		errors.Is(err, gate.ErrNotFound), errors.Is(err, engine.ErrUnknownSLO):
		u.errorPage(w, r, http.StatusNotFound, userMessage(err))
	case errors.Is(err, errBadRequest):
		u.errorPage(w, r, http.StatusBadRequest, userMessage(err))
	default:
		u.log.Error("page failed", "path", r.URL.Path, "err", err)
		u.errorPage(w, r, http.StatusInternalServerError, "Something went wrong on the server; the log has the details.")
	}
}

// userMessage drops the sentinel's prefix.
func userMessage(err error) string {
	s := err.Error()
	for _, p := range []string{errNotFound.Error() + ": ", errBadRequest.Error() + ": "} {
		s = strings.TrimPrefix(s, p)
	}
	return s
}

func (u *UI) layoutOf(w http.ResponseWriter, r *http.Request, title, nav string) layout {
	p, ok := api.PrincipalFrom(r.Context())
	switch {
	case !ok && u.opts.Auth != nil:
		// A refusal by Auth happens before the principal is in the
		// context: the page still says who is signed in.
		var err error
		if p, err = u.opts.Auth.Authenticate(r); err != nil {
			p = api.Principal{Name: "anonymous", Via: api.ViaAnonymous}
		}
	case !ok:
		p = api.Principal{Name: "anonymous", Role: api.RoleAdmin, Via: api.ViaAnonymous}
	}
	l := layout{Title: title, Nav: nav, User: p, Signed: p.Via == api.ViaSession, Path: r.URL.RequestURI(), Now: u.opts.Now()}
	if u.opts.Auth != nil {
		l.Open = u.opts.Auth.Open()
		l.CSRF = u.opts.Auth.CSRFToken(w, r)
	}
	return l
}

func (u *UI) render(w http.ResponseWriter, r *http.Request, status int, v *view) {
	l := u.layoutOf(w, r, v.Title, v.Nav)
	l.Data, l.Status = v.Data, status
	if !v.Form && u.opts.Refresh > 0 && status == http.StatusOK {
		l.Refresh = int(u.opts.Refresh / time.Second)
	}
	u.execute(w, r, status, v.Template, l)
}

func (u *UI) execute(w http.ResponseWriter, r *http.Request, status int, name string, l layout) {
	t := u.pages[name]
	buf := u.bufs.Get().(*bytes.Buffer)
	buf.Reset()
	defer u.bufs.Put(buf)
	if t == nil {
		u.log.Error("no such template", "template", name)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	if err := t.ExecuteTemplate(buf, "layout.html", l); err != nil {
		u.log.Error("render failed", "template", name, "path", r.URL.Path, "err", err)
		if name != "error" {
			u.errorPage(w, r, http.StatusInternalServerError, "The page could not be rendered; the log has the details.")
		} else {
			http.Error(w, "internal error", http.StatusInternalServerError)
		}
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// errorData is the data of the error page.
type errorData struct {
	Heading string
	Message string
	// Login shows the sign-in form (401).
	Login bool
	Next  string
}

func (u *UI) errorPage(w http.ResponseWriter, r *http.Request, status int, msg string) {
	heading := http.StatusText(status)
	switch status {
	case http.StatusUnauthorized:
		heading = "Sign in required"
	case http.StatusForbidden:
		heading = "Forbidden (403)"
	case http.StatusNotFound:
		heading = "Not found (404)"
	case http.StatusTooManyRequests:
		heading = "Too many requests (429)"
	}
	next := r.URL.RequestURI()
	if r.Method != http.MethodGet {
		next = refererPath(r)
	}
	l := u.layoutOf(w, r, heading, "")
	l.Data, l.Status = errorData{Heading: heading, Message: msg, Login: status == http.StatusUnauthorized, Next: next}, status
	u.execute(w, r, status, "error", l)
}

// deny renders api.Auth's refusals as pages: 401 offers the sign-in
// form, 403 says who the user is and what the action needs.
func (u *UI) deny(w http.ResponseWriter, r *http.Request, status int, msg string) {
	switch status {
	case http.StatusUnauthorized:
		msg = "This page needs a token. Sign in with one (qsp token new creates tokens; the server's configuration lists their hashes)."
	case http.StatusForbidden:
		p, err := u.opts.Auth.Authenticate(r)
		if err != nil {
			p = api.Principal{Name: "anonymous"}
		}
		rule, _ := api.RuleOf(r.Method + " " + routePattern(r))
		msg = fmt.Sprintf("You are signed in as %s with the role %s; %s needs the role %s or higher.", p.Name, roleLabel(p.Role), actionName(r), rule.Role)
	}
	u.errorPage(w, r, status, msg)
}

// routePattern is the pattern the UI's mux matched, without its method.
func routePattern(r *http.Request) string {
	_, p, ok := strings.Cut(r.Pattern, " ")
	if !ok {
		return r.Pattern
	}
	return p
}

func roleLabel(r api.Role) string {
	if r == api.RoleNone {
		return "none"
	}
	return string(r)
}

// actionName says in words what a refused request was about to do.
func actionName(r *http.Request) string {
	p := r.URL.Path
	switch {
	case strings.HasSuffix(p, "/ack"):
		return "acknowledging an incident"
	case strings.HasSuffix(p, "/approve"):
		return "approving a playbook run"
	case strings.HasSuffix(p, "/reject"):
		return "rejecting a playbook run"
	}
	return "this page"
}

// refererPath is the local path of the Referer, to return to after a
// refused post; "/" when there is none.
func refererPath(r *http.Request) string {
	ref, err := url.Parse(r.Header.Get("Referer"))
	if err != nil || ref.Path == "" || (ref.Host != "" && ref.Host != r.Host) {
		return "/"
	}
	return safeNext(ref.RequestURI())
}

// safeNext keeps redirects on this site: a local absolute path, not
// "//host" or "/\host".
func safeNext(next string) string {
	if next == "" || next[0] != '/' || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") || strings.ContainsAny(next, "\r\n") {
		return "/"
	}
	return next
}

// loginData is the data of the sign-in page.
type loginData struct {
	Next  string
	Error string
	Open  bool
}

func (u *UI) loginPage(r *http.Request) (*view, error) {
	open := u.opts.Auth == nil || u.opts.Auth.Open()
	return &view{Template: "login", Title: "Sign in", Form: true, Data: loginData{Next: safeNext(r.URL.Query().Get("next")), Open: open}}, nil
}

// maxFormBytes bounds the forms of the UI.
const maxFormBytes = 64 << 10

func parseForm(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	return r.ParseForm()
}

func (u *UI) formError(w http.ResponseWriter, r *http.Request, err error) {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		u.errorPage(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("The form is larger than %d bytes.", mbe.Limit))
		return
	}
	u.errorPage(w, r, http.StatusBadRequest, "The form could not be read: "+err.Error())
}

func (u *UI) checkCSRF(w http.ResponseWriter, r *http.Request) bool {
	if u.opts.Auth == nil {
		return true
	}
	if err := u.opts.Auth.CheckCSRF(r); err != nil {
		u.errorPage(w, r, http.StatusForbidden, err.Error())
		return false
	}
	return true
}

func (u *UI) login(w http.ResponseWriter, r *http.Request) {
	if err := parseForm(w, r); err != nil {
		u.formError(w, r, err)
		return
	}
	if !u.checkCSRF(w, r) {
		return
	}
	next := safeNext(r.PostFormValue("next"))
	if u.opts.Auth == nil || u.opts.Auth.Open() {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	if _, err := u.opts.Auth.Login(w, r, r.PostFormValue("token")); err != nil {
		if le := (*api.LoginLimitError)(nil); errors.As(err, &le) {
			w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(le.Wait.Seconds())))))
			u.errorPage(w, r, http.StatusTooManyRequests, "Too many failed sign-ins from this address. Wait "+le.Wait.Round(time.Second).String()+" and try again.")
			return
		}
		l := u.layoutOf(w, r, "Sign in", "")
		l.Data, l.Status = loginData{Next: next, Error: "That token is not valid."}, http.StatusUnauthorized
		u.execute(w, r, http.StatusUnauthorized, "login", l)
		return
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (u *UI) logout(w http.ResponseWriter, r *http.Request) {
	if err := parseForm(w, r); err != nil {
		u.formError(w, r, err)
		return
	}
	if !u.checkCSRF(w, r) {
		return
	}
	if u.opts.Auth != nil {
		if err := u.opts.Auth.Logout(w, r); err != nil {
			// The cookie is cleared; the revocation could not be
			// stored, so a copy of the cookie would still work.
			u.errorPage(w, r, http.StatusServiceUnavailable, "Signed out in this browser, but the session could not be revoked on the server: "+err.Error())
			return
		}
	}
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// actor is who an operator action is recorded as: the token's name, or
// the name typed into the form by an anonymous user (open mode).
func actor(r *http.Request) string {
	p, ok := api.PrincipalFrom(r.Context())
	if ok && p.Via != api.ViaAnonymous {
		return p.Name
	}
	if by := strings.TrimSpace(r.PostFormValue("by")); by != "" {
		if len(by) > 200 {
			by = by[:200]
		}
		return by + " (anonymous)"
	}
	return "anonymous"
}

func (u *UI) ack(w http.ResponseWriter, r *http.Request) {
	if err := parseForm(w, r); err != nil {
		u.formError(w, r, err)
		return
	}
	if !u.checkCSRF(w, r) {
		return
	}
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		u.errorPage(w, r, http.StatusBadRequest, "The incident number must be a positive integer.")
		return
	}
	if u.opts.Incidents == nil {
		u.errorPage(w, r, http.StatusServiceUnavailable, "Incidents are not configured on this server.")
		return
	}
	note := r.PostFormValue("note")
	if len(note) > 4000 {
		u.errorPage(w, r, http.StatusBadRequest, "The note is longer than 4000 characters.")
		return
	}
	_, err = u.opts.Incidents.Ack(r.Context(), id, actor(r), note)
	switch {
	case errors.Is(err, alert.ErrNotFound):
		u.errorPage(w, r, http.StatusNotFound, fmt.Sprintf("There is no incident %d.", id))
		return
	case errors.Is(err, alert.ErrClosed):
		u.errorPage(w, r, http.StatusConflict, fmt.Sprintf("Incident %d is closed: it cannot be acknowledged.", id))
		return
	case err != nil:
		u.renderError(w, r, err)
		return
	}
	http.Redirect(w, r, fmt.Sprintf("/incidents/%d", id), http.StatusSeeOther)
}

func (u *UI) decide(w http.ResponseWriter, r *http.Request, approve bool) {
	if err := parseForm(w, r); err != nil {
		u.formError(w, r, err)
		return
	}
	if !u.checkCSRF(w, r) {
		return
	}
	id := r.PathValue("id")
	if u.opts.Playbooks == nil {
		u.errorPage(w, r, http.StatusServiceUnavailable, "Playbooks are not configured on this server.")
		return
	}
	note := r.PostFormValue("note")
	if len(note) > 4000 {
		u.errorPage(w, r, http.StatusBadRequest, "The note is longer than 4000 characters.")
		return
	}
	var err error
	if approve {
		_, err = u.opts.Playbooks.Approve(r.Context(), id, actor(r), note)
	} else {
		_, err = u.opts.Playbooks.Reject(r.Context(), id, actor(r), note)
	}
	switch {
	case errors.Is(err, playbook.ErrNotFound):
		u.errorPage(w, r, http.StatusNotFound, fmt.Sprintf("There is no playbook run %s.", id))
		return
	case errors.Is(err, playbook.ErrNotPending):
		u.errorPage(w, r, http.StatusConflict, fmt.Sprintf("Run %s is no longer waiting for an approval: %v", id, err))
		return
	case err != nil:
		u.renderError(w, r, err)
		return
	}
	http.Redirect(w, r, "/playbooks/runs/"+url.PathEscape(id), http.StatusSeeOther)
}
