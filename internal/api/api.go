// Package api is QSP's JSON API under /api/v1: SLO status, budgets and
// burn rates now, and the records of alerts, incidents, decisions, gates
// and playbook runs. Handlers return (data, error); one wrapper writes the
// JSON and maps errors to status codes.
package api

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/store"
)

// Snapshotter returns the engine's latest statuses.
type Snapshotter interface {
	Snapshot() *engine.Snapshot
}

// Options configure the API.
type Options struct {
	Engine Snapshotter
	// Store serves the records (incidents, alerts, decisions, gates,
	// playbook runs); routes that need it are off without one.
	Store  *store.Store
	Logger *slog.Logger
	// Extra holds the dependencies of route sets added by other files
	// (see routeSets), keyed by name.
	Extra map[string]any
}

// routeSets add routes to the API; each file of the package that serves
// one concern appends its function here from an init func.
var routeSets []func(a *API)

// API serves /api/v1.
type API struct {
	opts Options
	log  *slog.Logger
	mux  *http.ServeMux
}

// New builds the API handler.
func New(opts Options) (*API, error) {
	if opts.Engine == nil {
		return nil, errors.New("api: no engine")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	a := &API{opts: opts, log: opts.Logger.With("component", "api"), mux: http.NewServeMux()}
	a.handle("GET /api/v1/slos", a.listSLOs)
	a.handle("GET /api/v1/slos/{name}", a.getSLO)
	for _, add := range routeSets {
		add(a)
	}
	return a, nil
}

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

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
	switch {
	case errors.As(err, &se):
		status = se.status
	case errors.Is(err, errNotFound):
		status = http.StatusNotFound
	case errors.Is(err, errBadRequest):
		status = http.StatusBadRequest
	}
	if status >= 500 {
		a.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeJSON(w, status, map[string]string{"error": err.Error()})
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

func paginate[T any](items []T, r *http.Request) (page[T], error) {
	limit, offset := 100, 0
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			return page[T]{}, badRequest("limit: want an integer from 1 to 10000")
		}
		limit = n
	}
	if v := r.URL.Query().Get("offset"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return page[T]{}, badRequest("offset: want a non-negative integer")
		}
		offset = n
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

func (a *API) listSLOs(r *http.Request) (any, error) {
	q := r.URL.Query()
	service, category, state := q.Get("service"), q.Get("category"), q.Get("state")
	snap := a.opts.Engine.Snapshot()
	out := make([]*engine.Status, 0, len(snap.Statuses))
	for _, st := range snap.Statuses {
		if (service != "" && st.Service != service) || (category != "" && string(st.Category) != category) || (state != "" && string(st.State) != state) {
			continue
		}
		out = append(out, st)
	}
	return paginate(out, r)
}

func (a *API) getSLO(r *http.Request) (any, error) {
	name := r.PathValue("name")
	sts := a.opts.Engine.Snapshot().SLO(name)
	if len(sts) == 0 {
		return nil, notFound("SLO " + strconv.Quote(name) + " not found")
	}
	return map[string]any{"slo": name, "groups": sts}, nil
}
