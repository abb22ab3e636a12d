package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/qsp-dev/qsp/internal/alert"
	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/jsonpos"
	"github.com/qsp-dev/qsp/internal/slo"
	"github.com/qsp-dev/qsp/internal/spec"
	"github.com/qsp-dev/qsp/internal/tracelink"
)

func init() { routeSets = append(routeSets, incidentRoutes) }

// IncidentKeeper is what the incident routes need (Options.Extra
// ["incidents"]); *alert.Incidents implements it. Methods are safe for
// concurrent use.
type IncidentKeeper interface {
	List(ctx context.Context, f alert.IncidentFilter) ([]alert.Incident, error)
	Count(ctx context.Context, f alert.IncidentFilter) (int, error)
	Get(ctx context.Context, id int64) (alert.Incident, error)
	// Ack is idempotent; it returns alert.ErrClosed for a closed incident
	// and alert.ErrNotFound for an unknown one.
	Ack(ctx context.Context, id int64, by, note string) (alert.Incident, error)
	Stats(ctx context.Context, from, to time.Time) ([]alert.ServiceStats, error)
}

// NotificationLog says what receivers were told about each alert
// (Options.Extra["alerts"]); *alert.Dispatcher implements it.
type NotificationLog interface {
	// Notified is keyed by "key|severity".
	Notified(ctx context.Context) (map[string]*alert.Notified, error)
}

// Limits of the acknowledgement body.
const (
	maxAckBodyBytes = 64 << 10
	maxAckByRunes   = 200
	maxAckNoteRunes = 4000
)

// incidentRoutes serves current alerts with their delivery state, and
// incidents with their timelines, acknowledgement and SLIs.
func incidentRoutes(a *API) {
	log, _ := a.opts.Extra["alerts"].(NotificationLog)
	a.handle("GET /api/v1/alerts", func(r *http.Request) (any, error) { return a.listAlerts(r, log) })
	keeper, _ := a.opts.Extra["incidents"].(IncidentKeeper)
	if keeper == nil {
		return
	}
	a.handle("GET /api/v1/incidents", func(r *http.Request) (any, error) { return listIncidents(keeper, r) })
	a.handle("GET /api/v1/incidents/stats", func(r *http.Request) (any, error) { return a.incidentStats(keeper, r) })
	a.handle("GET /api/v1/incidents/{id}", func(r *http.Request) (any, error) {
		id, err := incidentID(r)
		if err != nil {
			return nil, err
		}
		inc, err := keeper.Get(r.Context(), id)
		if err != nil {
			return nil, incidentError(err)
		}
		finder, _ := a.opts.Extra["traces"].(TraceFinder)
		exs := IncidentTraces(r.Context(), finder, inc, a.opts.Now())
		if exs == nil {
			exs = []tracelink.Example{}
		}
		return incidentWithTraces{Incident: inc, ExampleTraces: exs}, nil
	})
	a.handle("POST /api/v1/incidents/{id}/ack", func(r *http.Request) (any, error) {
		id, err := incidentID(r)
		if err != nil {
			return nil, err
		}
		body, err := readBody(r, maxAckBodyBytes)
		if err != nil {
			return nil, err
		}
		by, note, err := parseAckBody(body, r.Header.Get("Content-Type"))
		if err != nil {
			return nil, err
		}
		if by = actingAs(r, by); by == "" {
			return nil, badRequest(`by: required: who acknowledges the incident`)
		}
		inc, err := keeper.Ack(r.Context(), id, by, note)
		return inc, incidentError(err)
	})
}

// incidentError maps the incident keeper's errors to status codes.
func incidentError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, alert.ErrNotFound):
		return notFound(err.Error())
	case errors.Is(err, alert.ErrClosed):
		return &statusError{http.StatusConflict, err.Error() + ": it cannot be acknowledged"}
	}
	return err
}

func incidentID(r *http.Request) (int64, error) {
	v := r.PathValue("id")
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil || id < 1 {
		return 0, badRequest(fmt.Sprintf("incident id %q: want a positive integer", v))
	}
	return id, nil
}

// parseAckBody reads {"by": "name", "note": "..."}: by is required (who
// acknowledges: a person or a bot, at most 200 characters, no control
// characters), note optional (at most 4000 characters). Unknown fields
// and trailing data are refused, so a misspelt field is not silently
// dropped.
func parseAckBody(body []byte, contentType string) (by, note string, err error) {
	if contentType != "" {
		mt, _, perr := mime.ParseMediaType(contentType)
		if perr != nil || mt != "application/json" {
			return "", "", &statusError{http.StatusUnsupportedMediaType, fmt.Sprintf("content type %q: want application/json", contentType)}
		}
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return "", "", badRequest(`body: want {"by": "who acknowledges", "note": "..."}`)
	}
	var req struct {
		By   *string `json:"by"`
		Note *string `json:"note"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return "", "", badRequest("body: " + jsonProblem(body, err))
	}
	if dec.More() {
		return "", "", badRequest("body: unexpected data after the JSON object")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return "", "", badRequest("body: unexpected data after the JSON object")
	}
	if req.By != nil {
		by = strings.TrimSpace(*req.By)
	}
	switch {
	case !utf8.ValidString(by):
		return "", "", badRequest("by: not valid UTF-8")
	case utf8.RuneCountInString(by) > maxAckByRunes:
		return "", "", badRequest(fmt.Sprintf("by: longer than %d characters", maxAckByRunes))
	case strings.IndexFunc(by, unicode.IsControl) >= 0:
		return "", "", badRequest("by: control characters are not allowed")
	}
	if req.Note != nil {
		note = *req.Note
		if !utf8.ValidString(note) {
			return "", "", badRequest("note: not valid UTF-8")
		}
		if utf8.RuneCountInString(note) > maxAckNoteRunes {
			return "", "", badRequest(fmt.Sprintf("note: longer than %d characters", maxAckNoteRunes))
		}
	}
	return by, note, nil
}

// jsonProblem describes a JSON decoding error of a request body with its
// line and column.
func jsonProblem(body []byte, err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("invalid JSON at %s: %v", jsonpos.At(body, se.Offset), se)
	case errors.As(err, &te):
		return fmt.Sprintf("%s: field %s: want a %s, got a JSON %s", jsonpos.At(body, te.Offset), te.Field, te.Type, te.Value)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "truncated JSON"
	}
	return err.Error()
}

func listIncidents(k IncidentKeeper, r *http.Request) (any, error) {
	q := r.URL.Query()
	f := alert.IncidentFilter{State: q.Get("state")}
	if svc, ok := q["service"]; ok {
		f.Service, f.HasService = svc[0], true
	}
	switch f.State {
	case "", "open", "closed":
	default:
		return nil, badRequest(fmt.Sprintf("state %q: want open or closed", f.State))
	}
	limit, offset, err := pageParams(r)
	if err != nil {
		return nil, err
	}
	f.Limit, f.Offset = limit, offset
	incs, err := k.List(r.Context(), f)
	if err != nil {
		return nil, err
	}
	total, err := k.Count(r.Context(), f)
	if err != nil {
		return nil, err
	}
	return storePage(incs, total, listQuery{Limit: limit, Offset: offset}), nil
}

// incidentStats serves the incident SLIs per service: time to detect and
// to repair over ?window= (default 30d) ending at the engine's last cycle.
func (a *API) incidentStats(k IncidentKeeper, r *http.Request) (any, error) {
	window := 30 * 24 * time.Hour
	if v := r.URL.Query().Get("window"); v != "" {
		var d spec.Duration
		if err := d.UnmarshalText([]byte(v)); err != nil || d.D() <= 0 {
			return nil, badRequest(fmt.Sprintf("window %q: want a duration such as 7d", v))
		}
		window = d.D()
	}
	to := a.opts.Engine.Snapshot().At
	if to.IsZero() {
		to = a.opts.Now()
	}
	from := to.Add(-window)
	stats, err := k.Stats(r.Context(), from, to.Add(time.Millisecond))
	if err != nil {
		return nil, err
	}
	return map[string]any{"from": from, "to": to, "services": stats}, nil
}

// alertView is an alert as GET /api/v1/alerts shows it: its state from the
// engine and what receivers were told.
type alertView struct {
	Key         string            `json:"key"`
	SLO         string            `json:"slo,omitempty"`
	Service     string            `json:"service,omitempty"`
	Severity    string            `json:"severity"`
	Alert       string            `json:"alert"`
	State       slo.AlertState    `json:"state"`
	Since       time.Time         `json:"since,omitzero"`
	FiredAt     time.Time         `json:"firedAt,omitzero"`
	ResolvedAt  time.Time         `json:"resolvedAt,omitzero"`
	Condition   string            `json:"condition,omitempty"`
	Fingerprint string            `json:"fingerprint,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	// Notified is what receivers were last told: firing or resolved.
	Notified   string           `json:"notified,omitempty"`
	Deliveries []alert.Delivery `json:"deliveries"`
}

// listAlerts serves the alerts that are not inactive, filtered by
// service, slo, severity and state.
func (a *API) listAlerts(r *http.Request, log NotificationLog) (any, error) {
	q := r.URL.Query()
	service, sloName, severity, state := q.Get("service"), q.Get("slo"), q.Get("severity"), q.Get("state")
	switch state {
	case "", string(slo.Pending), string(slo.Firing), string(slo.Resolved):
	default:
		return nil, badRequest(fmt.Sprintf("state %q: want pending, firing or resolved", state))
	}
	var notified map[string]*alert.Notified
	if log != nil {
		var err error
		if notified, err = log.Notified(r.Context()); err != nil {
			return nil, err
		}
	}
	snap := a.opts.Engine.Snapshot()
	out := []alertView{}
	add := func(st *engine.Status, as engine.AlertStatus) {
		if as.State == "" || as.State == slo.Inactive {
			return
		}
		v := alertView{Severity: as.Severity, Alert: as.Name, State: as.State, Since: as.Since, FiredAt: as.FiredAt, ResolvedAt: as.ResolvedAt,
			Condition: as.Condition, Deliveries: []alert.Delivery{}}
		if st != nil {
			v.Key, v.SLO, v.Service = st.Key, st.SLO, st.Service
		}
		if (service != "" && v.Service != service) || (sloName != "" && v.SLO != sloName) || (severity != "" && v.Severity != severity) || (state != "" && string(v.State) != state) {
			return
		}
		if n := notified[v.Key+"|"+v.Severity]; n != nil {
			v.Fingerprint, v.Labels, v.Annotations, v.Notified, v.Deliveries = n.Fingerprint, n.Labels, n.Annotations, n.State, n.Deliveries
		}
		out = append(out, v)
	}
	if snap.SourceDown != nil {
		add(nil, *snap.SourceDown)
	}
	for _, st := range snap.Statuses {
		for _, as := range st.Alerts {
			add(st, as)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if alertRank(out[i].State) != alertRank(out[j].State) {
			return alertRank(out[i].State) < alertRank(out[j].State)
		}
		return out[i].Key < out[j].Key
	})
	return paginate(out, r)
}

// alertRank orders firing alerts first, then pending, then resolved.
func alertRank(s slo.AlertState) int {
	switch s {
	case slo.Firing:
		return 0
	case slo.Pending:
		return 1
	}
	return 2
}
