// Package api is QSP's JSON API under /api/v1: services and SLO status,
// budgets, burn rates and history, and the records of alerts, incidents,
// decisions, gates and playbook runs. It is the last stage of the data
// flow, next to the UI: it reads the engine's snapshots and the store and
// changes nothing but through the components' own methods (acknowledge,
// approve, evaluate a gate).
//
// It also holds the server's access control (auth*.go): bearer tokens
// stored as SHA-256 hashes, UI sessions, roles (viewer < operator <
// admin, and ingest apart), the one table of the role every route needs,
// rate and body limits, security headers and CORS.
//
// Handlers return (data, error); one wrapper writes the JSON and maps
// errors to status codes. Every route is documented in the OpenAPI
// document served at /api/v1/openapi.json (openapi.go).
package api

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/spec"
	"github.com/qsp-dev/qsp/internal/store"
)

// Snapshotter returns the engine's latest statuses. Safe for concurrent
// use; the snapshot is immutable.
type Snapshotter interface {
	Snapshot() *engine.Snapshot
}

// HistoryReader answers an SLO group's past from the engine's rollups;
// *engine.Engine implements it. Safe for concurrent use. It returns an
// error wrapping engine.ErrUnknownSLO for an unknown key.
type HistoryReader interface {
	History(ctx context.Context, key string, from, to time.Time, step time.Duration) ([]engine.HistoryPoint, error)
}

// Options configure the API.
type Options struct {
	Engine Snapshotter
	// History serves /api/v1/slos/{name}/history; the route is off
	// without it. Default: Engine, if it is a HistoryReader.
	History HistoryReader
	// Specs returns the current spec set (services, journeys); default:
	// Engine's Specs method, if it has one.
	Specs func() *spec.Set
	// Store serves the records (incidents, alerts, decisions, gates,
	// playbook runs); routes that need it are off without one.
	Store *store.Store
	// Auth guards every route with its rule (auth_routes.go); nil serves
	// every route to everyone (tests, in-process use).
	Auth   *Auth
	Logger *slog.Logger
	// Extra holds the dependencies of route sets added by other files
	// (see routeSets), keyed by name.
	Extra map[string]any
	// Now is the clock for default time ranges; default time.Now.
	Now func() time.Time
	// ServerRoutes returns every route of the server, for the OpenAPI
	// document of those under /api/v1/ that others serve (the
	// receivers); default the API's own.
	ServerRoutes func() []Route
}

// routeSets add routes to the API; each file of the package that serves
// one concern appends its function here from an init func.
var routeSets []func(a *API)

// API serves /api/v1.
type API struct {
	opts Options
	log  *slog.Logger
	mux  *Mux
	enc  *listCache
	doc  openAPIDoc
}

// New builds the API handler.
func New(opts Options) (*API, error) {
	if opts.Engine == nil {
		return nil, errors.New("api: no engine")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.History == nil {
		opts.History, _ = opts.Engine.(HistoryReader)
	}
	if opts.Specs == nil {
		if s, ok := opts.Engine.(interface{ Specs() *spec.Set }); ok {
			opts.Specs = s.Specs
		} else {
			opts.Specs = func() *spec.Set { return &spec.Set{} }
		}
	}
	a := &API{opts: opts, log: opts.Logger.With("component", "api"), mux: NewMux(opts.Auth, DenyJSON), enc: &listCache{}}
	a.handle("GET /api/v1/openapi.json", a.openAPI)
	a.handle("GET /api/v1/whoami", whoami)
	a.handle("GET /api/v1/services", a.listServices)
	a.handle("GET /api/v1/services/{name}", a.getService)
	a.mux.HandleFunc("GET /api/v1/slos", a.listSLOs)
	a.handle("GET /api/v1/slos/{name}", a.getSLO)
	if opts.History != nil {
		a.handle("GET /api/v1/slos/{name}/history", a.sloHistory)
	}
	for _, add := range routeSets {
		add(a)
	}
	// Anything else under /api/v1 is a JSON 404, not the UI's page.
	a.mux.ServeMux.HandleFunc("/api/v1/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("no route %s %s", r.Method, r.URL.Path)})
	})
	return a, nil
}

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// Routes returns the API's routes and the role each needs.
func (a *API) Routes() []Route { return a.mux.Routes() }

// Errors handlers return; writeError maps them to status codes.
var (
	errNotFound   = errors.New("not found")
	errBadRequest = errors.New("bad request")
)

// statusError carries an HTTP status with a message.
type statusError struct {
	status int
	msg    string
}

func (e *statusError) Error() string { return e.msg }

func badRequest(msg string) error { return &statusError{http.StatusBadRequest, msg} }
func notFound(msg string) error   { return &statusError{http.StatusNotFound, msg} }

type handlerFunc func(r *http.Request) (any, error)

func (a *API) handle(pattern string, h handlerFunc) {
	a.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		data, err := h(r)
		if err != nil {
			a.writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, data)
	})
}

func (a *API) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusInternalServerError
	var se *statusError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &se):
		status = se.status
	case errors.As(err, &mbe):
		status = http.StatusRequestEntityTooLarge
	case errors.Is(err, errNotFound), errors.Is(err, engine.ErrUnknownSLO), errors.Is(err, store.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, errBadRequest):
		status = http.StatusBadRequest
	}
	msg := err.Error()
	if status >= 500 {
		a.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		if se == nil {
			// Unclassified errors can name files, queries, hosts and
			// connection strings: the log has them, the client is told
			// where to look.
			msg = "internal error: see the server log"
		}
	}
	writeJSON(w, status, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}

// page is a paginated list.
type page[T any] struct {
	Items      []T `json:"items"`
	Total      int `json:"total"`
	Offset     int `json:"offset"`
	Limit      int `json:"limit"`
	NextOffset int `json:"nextOffset,omitempty"`
}

// MaxPageLimit is the largest page a list returns.
const MaxPageLimit = 10000

func pageParams(r *http.Request) (limit, offset int, err error) {
	limit = 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxPageLimit {
			return 0, 0, badRequest("limit: want an integer from 1 to 10000")
		}
		limit = n
	}
	if v := r.URL.Query().Get("offset"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return 0, 0, badRequest("offset: want a non-negative integer")
		}
		offset = n
	}
	return limit, offset, nil
}

// readBody reads a request body of at most limit bytes; a longer one is
// 413.
func readBody(r *http.Request, limit int) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, int64(limit)+1))
	if err != nil {
		return nil, badRequest("read body: " + err.Error())
	}
	if len(b) > limit {
		return nil, &statusError{http.StatusRequestEntityTooLarge, fmt.Sprintf("body: larger than %d bytes", limit)}
	}
	return b, nil
}

// listQuery are the paging and time-range parameters of a list the
// store filters and paginates.
type listQuery struct {
	Limit, Offset int
	From, To      time.Time
}

// listParams reads limit, offset, from and to.
func listParams(r *http.Request) (lp listQuery, err error) {
	if lp.Limit, lp.Offset, err = pageParams(r); err != nil {
		return lp, err
	}
	lp.From, lp.To, err = rangeParams(r)
	return lp, err
}

// storePage is the page of a list the store already paginated.
func storePage[T any](items []T, total int, lp listQuery) page[T] {
	p := page[T]{Items: emptyIfNil(items), Total: total, Offset: lp.Offset, Limit: lp.Limit}
	if end := lp.Offset + len(items); end < total {
		p.NextOffset = end
	}
	return p
}

// rangeParams reads from and to as RFC 3339 times or Unix seconds.
func rangeParams(r *http.Request) (from, to time.Time, err error) {
	parse := func(name string) (time.Time, error) {
		v := r.URL.Query().Get(name)
		if v == "" {
			return time.Time{}, nil
		}
		if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
			return t, nil
		}
		if f, err := strconv.ParseFloat(v, 64); err == nil && f >= 0 && f < 1e11 {
			return time.UnixMilli(int64(f * 1000)).UTC(), nil
		}
		return time.Time{}, badRequest(fmt.Sprintf("%s: %q is neither an RFC 3339 time nor Unix seconds", name, v))
	}
	if from, err = parse("from"); err != nil {
		return
	}
	if to, err = parse("to"); err != nil {
		return
	}
	if !from.IsZero() && !to.IsZero() && !to.After(from) {
		err = badRequest("to must be after from")
	}
	return
}

func paginate[T any](items []T, r *http.Request) (page[T], error) {
	limit, offset, err := pageParams(r)
	if err != nil {
		return page[T]{}, err
	}
	p := page[T]{Total: len(items), Offset: offset, Limit: limit, Items: []T{}}
	if offset < len(items) {
		end := min(offset+limit, len(items))
		p.Items = items[offset:end]
		if end < len(items) {
			p.NextOffset = end
		}
	}
	return p, nil
}

func whoami(r *http.Request) (any, error) {
	p, ok := PrincipalFrom(r.Context())
	if !ok {
		p = Principal{Name: "anonymous", Role: RoleAdmin, Via: ViaAnonymous}
	}
	if p.Role == RoleNone {
		p.Role = "none"
	}
	return p, nil
}

// states lists the SLO states a filter may name.
var states = []engine.State{engine.StateOK, engine.StatePending, engine.StateFiring, engine.StateNoData, engine.StateLowTraffic, engine.StateUnknown}

// sloFilter reads the service, category and state filters.
func sloFilter(r *http.Request) (service string, category spec.Category, state engine.State, err error) {
	q := r.URL.Query()
	service, category, state = q.Get("service"), spec.Category(q.Get("category")), engine.State(q.Get("state"))
	if category != "" && !slices.Contains(spec.Categories, category) {
		return "", "", "", badRequest(fmt.Sprintf("category %q: want quality, security or performance", category))
	}
	if state != "" && !slices.Contains(states, state) {
		return "", "", "", badRequest(fmt.Sprintf("state %q: want one of ok, pending, firing, no_data, low_traffic, unknown", state))
	}
	return service, category, state, nil
}

// listSLOs serves every SLO group's status, filtered by service,
// category and state. It writes each status from the snapshot's cache of
// encoded statuses: 10,000 SLOs must list within tens of milliseconds.
func (a *API) listSLOs(w http.ResponseWriter, r *http.Request) {
	service, category, state, err := sloFilter(r)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	limit, offset, err := pageParams(r)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	enc := a.enc.get(a.opts.Engine.Snapshot())
	snap := enc.snap
	var sel []int
	if service == "" && category == "" && state == "" {
		sel = enc.all
	} else {
		sel = make([]int, 0, 64)
		for i, st := range snap.Statuses {
			if (service != "" && st.Service != service) || (category != "" && st.Category != category) || (state != "" && st.State != state) {
				continue
			}
			sel = append(sel, i)
		}
	}
	p := page[int]{Total: len(sel), Offset: offset, Limit: limit}
	if offset < len(sel) {
		end := min(offset+limit, len(sel))
		p.Items = sel[offset:end]
		if end < len(sel) {
			p.NextOffset = end
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	enc.writePage(w, p)
}

func (a *API) getSLO(r *http.Request) (any, error) {
	name := r.PathValue("name")
	sts := a.opts.Engine.Snapshot().SLO(name)
	if len(sts) == 0 {
		return nil, notFound("SLO " + strconv.Quote(name) + " not found")
	}
	return map[string]any{"slo": name, "groups": sts}, nil
}

// historyView is an SLO group's history.
type historyView struct {
	SLO    string                `json:"slo"`
	Key    string                `json:"key"`
	From   time.Time             `json:"from"`
	To     time.Time             `json:"to"`
	Step   string                `json:"step"`
	Points []engine.HistoryPoint `json:"points"`
}

// MaxHistoryPoints bounds one history answer.
const MaxHistoryPoints = 11000

// sloHistory serves an SLO group's SLI, remaining budget and error ratio
// over [from, to] (default: the SLO window up to the last cycle) every
// step (default: about 300 points). A grouped SLO needs ?group=<key>.
func (a *API) sloHistory(r *http.Request) (any, error) {
	name := r.PathValue("name")
	snap := a.opts.Engine.Snapshot()
	sts := snap.SLO(name)
	if len(sts) == 0 {
		return nil, notFound("SLO " + strconv.Quote(name) + " not found")
	}
	key := r.URL.Query().Get("group")
	var st *engine.Status
	switch {
	case key != "":
		for _, s := range sts {
			if s.Key == key {
				st = s
			}
		}
		if st == nil {
			return nil, notFound(fmt.Sprintf("SLO %q has no group %q", name, key))
		}
	case len(sts) == 1:
		st = sts[0]
	default:
		return nil, badRequest(fmt.Sprintf("SLO %q has %d groups: name one with ?group= (a key such as %q)", name, len(sts), sts[0].Key))
	}
	from, to, err := rangeParams(r)
	if err != nil {
		return nil, err
	}
	if to.IsZero() {
		to = cmp.Or(snap.At, a.opts.Now())
	}
	if from.IsZero() {
		from = to.Add(-sloWindow(a.opts.Specs(), name))
	}
	if !to.After(from) {
		return nil, badRequest("to must be after from")
	}
	step := (to.Sub(from) / 300).Truncate(time.Minute)
	if v := r.URL.Query().Get("step"); v != "" {
		var d spec.Duration
		if err := d.UnmarshalText([]byte(v)); err != nil || d.D() < time.Minute || d.D()%time.Minute != 0 {
			return nil, badRequest(fmt.Sprintf("step %q: want whole minutes such as 5m", v))
		}
		step = d.D()
	}
	step = max(step, time.Minute)
	if n := to.Sub(from) / step; n > MaxHistoryPoints {
		return nil, badRequest(fmt.Sprintf("%d points: use a larger step or a shorter range (at most %d points)", n, MaxHistoryPoints))
	}
	pts, err := a.opts.History.History(r.Context(), st.Key, from, to, step)
	if err != nil {
		return nil, err
	}
	return historyView{SLO: name, Key: st.Key, From: from, To: to, Step: spec.Duration(step).String(), Points: emptyIfNil(pts)}, nil
}

// sloWindow is an SLO's window length (a calendar month counts 31 days);
// 30 days for an SLO the specs no longer have.
func sloWindow(set *spec.Set, name string) time.Duration {
	if s := set.SLO(name); s != nil {
		if d := s.Spec.Window.Length(); d > 0 {
			return d
		}
	}
	return 30 * 24 * time.Hour
}
