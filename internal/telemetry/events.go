package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/timestamp"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// Deploy is a deploy marker received by the events API.
type Deploy struct {
	Service     string
	Version     string
	Time        time.Time
	Description string
	Labels      map[string]string
}

// DeploySink receives deploy markers. It is called once per marker, in
// request order, and may be called again with the same marker when a
// client retries after a failure, so it should be idempotent. An error
// fails the request with 503 before any count of it is stored.
type DeploySink func(ctx context.Context, d Deploy) error

// EventsMetric is the counter the events API writes counts to, with labels
// service, sli, outcome ("good" or "bad") and the event's own labels.
const EventsMetric = "qsp_events_total"

// EventsHandler serves POST /api/v1/events: services that do not expose
// Prometheus metrics send good/bad counts (stored as the cumulative
// counters EventsMetric, so SLIs query them like any counter) and deploy
// markers (handed to the DeploySink).
//
// A request is all or nothing: every event is validated first, and one
// invalid event rejects the request with 400 and a message per problem,
// such as `events[3].good: must not be negative`.
//
// Running totals continue from the last stored value of each series, read
// back from the TSDB the first time a series is seen, so a restart does
// not reset them. A new series starts with a 0 sample 1ms before its first
// count, so increase() and rate() count that first event.
type EventsHandler struct {
	opts    ReceiverOptions
	log     *slog.Logger
	mu      sync.Mutex // serializes requests, so totals stay in order
	totals  map[string]*eventTotal
	metrics eventsMetrics
}

type eventTotal struct {
	value float64
	last  int64 // timestamp of the last stored sample, ms
}

type eventsMetrics struct {
	requests *prometheus.CounterVec
	events   *prometheus.CounterVec
}

// NewEventsHandler returns the events API handler.
func NewEventsHandler(opts ReceiverOptions) (*EventsHandler, error) {
	opts, err := opts.withDefaults("events")
	if err != nil {
		return nil, err
	}
	h := &EventsHandler{opts: opts, log: opts.Logger, totals: map[string]*eventTotal{}}
	h.metrics = eventsMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "qsp_events_requests_total",
			Help: "Events API requests received, by HTTP status code.",
		}, []string{"code"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "qsp_events_received_total",
			Help: "Events stored or delivered, by type.",
		}, []string{"type"}),
	}
	for _, c := range []prometheus.Collector{h.metrics.requests, h.metrics.events} {
		if err := opts.Registerer.Register(c); err != nil {
			return nil, fmt.Errorf("events: register metrics: %w", err)
		}
	}
	return h, nil
}

// eventsRequest is the body of the events API; each event is decoded
// on its own so that a bad one is reported by its index.
type eventsRequest struct {
	Events []json.RawMessage `json:"events"`
}

// Event is one event of the events API: type "counts" (good and bad
// events of an SLI) or "deploy" (a deploy marker). The API's OpenAPI
// document is generated from it.
type Event struct {
	Type        string            `json:"type"`
	Service     string            `json:"service"`
	SLI         string            `json:"sli,omitempty"`
	Good        *float64          `json:"good,omitempty"`
	Bad         *float64          `json:"bad,omitempty"`
	Version     string            `json:"version,omitempty"`
	Description string            `json:"description,omitempty"`
	Time        string            `json:"time,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
}

// EventsResponse is the body of a 200 answer of the events API.
type EventsResponse struct {
	Accepted int `json:"accepted"`
	Counts   int `json:"counts"`
	Deploys  int `json:"deploys"`
}

// Limits of the events API beyond Limits.
const (
	maxEventsPerRequest  = 10_000
	maxEventErrors       = 10
	maxDescriptionLength = 4096
	// eventsMaxBehind is how far an event may be older than the newest
	// count of its series; within it, a late event is counted at the
	// newest timestamp + 1ms (so nothing is lost), beyond it rejected.
	eventsMaxBehind = 5 * time.Minute
)

// ServeHTTP implements http.Handler.
func (h *EventsHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	resp, err := h.serve(r)
	if err != nil {
		status := writeError(w, err)
		h.metrics.requests.WithLabelValues(statusLabel(status)).Inc()
		h.log.Warn("events request rejected", "status", status, "remote", r.RemoteAddr, "err", err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
	h.metrics.requests.WithLabelValues("200").Inc()
}

// countEvent and deployEvent are validated events.
type countEvent struct {
	index     int
	good, bad labels.Labels
	goodN     float64
	badN      float64
	t         int64
}

func (h *EventsHandler) serve(r *http.Request) (*EventsResponse, error) {
	if r.Method != http.MethodPost {
		return nil, errorf(http.StatusMethodNotAllowed, "method %s not allowed, use POST", r.Method)
	}
	if ct, _ := mediaType(r.Header.Get("Content-Type")); ct != contentTypeJSON {
		return nil, errorf(http.StatusUnsupportedMediaType, "Content-Type %q not supported, want application/json", r.Header.Get("Content-Type"))
	}
	// The body and what decoding it allocates (the raw events, then each
	// event: about twice the body) come from the shared ingest budget.
	res := h.opts.Budget.Reserve("events")
	defer res.Release()
	body, err := readBody(r, nil, h.opts.Limits.MaxBodyBytes, &res)
	if err != nil {
		return nil, err
	}
	if err := res.Take(2 * int64(len(body))); err != nil {
		return nil, err
	}
	now := h.opts.Now()
	counts, deploys, err := parseEvents(body, now, h.opts.minTimestamp(now), h.opts.Limits)
	if err != nil {
		return nil, err
	}
	if len(deploys) > 0 && h.opts.DeploySink == nil {
		return nil, errorf(http.StatusUnprocessableEntity, "deploy events are not accepted: no deploy sink is configured")
	}
	ctx := r.Context()
	// Deploy markers first: if one cannot be delivered the request fails
	// before any count is stored, so the client's retry counts nothing
	// twice.
	for i, d := range deploys {
		if err := h.opts.DeploySink(ctx, d); err != nil {
			return nil, fmt.Errorf("%w: deliver deploy event %d: %w", ErrUnavailable, i, err)
		}
	}
	if len(counts) > 0 {
		if err := h.storeCounts(ctx, counts); err != nil {
			return nil, err
		}
	}
	h.metrics.events.WithLabelValues("counts").Add(float64(len(counts)))
	h.metrics.events.WithLabelValues("deploy").Add(float64(len(deploys)))
	return &EventsResponse{Accepted: len(counts) + len(deploys), Counts: len(counts), Deploys: len(deploys)}, nil
}

// parseEvents decodes and validates a request body, collecting every
// problem with its place.
func parseEvents(body []byte, now time.Time, minT int64, lim Limits) ([]countEvent, []Deploy, error) {
	var req eventsRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return nil, nil, errorf(http.StatusBadRequest, "malformed JSON: %s", jsonErr(err))
	}
	if dec.More() {
		return nil, nil, errorf(http.StatusBadRequest, "malformed JSON: unexpected data after the top-level object")
	}
	if req.Events == nil {
		return nil, nil, errorf(http.StatusBadRequest, `events: required (a body like {"events": [...]})`)
	}
	if len(req.Events) > maxEventsPerRequest {
		return nil, nil, errorf(http.StatusRequestEntityTooLarge, "events: %d events exceed the limit of %d per request", len(req.Events), maxEventsPerRequest)
	}
	var (
		problems []string
		counts   []countEvent
		deploys  []Deploy
	)
	add := func(format string, args ...any) {
		problems = append(problems, fmt.Sprintf(format, args...))
	}
	for i, raw := range req.Events {
		if len(problems) >= maxEventErrors {
			break
		}
		var ev Event
		d := json.NewDecoder(bytes.NewReader(raw))
		d.DisallowUnknownFields()
		if err := d.Decode(&ev); err != nil {
			var typ *json.UnmarshalTypeError
			if errors.As(err, &typ) && typ.Field != "" {
				add("events[%d].%s: must be %s, not %s", i, typ.Field, jsonTypeName(typ.Type.Kind()), article(typ.Value))
			} else {
				add("events[%d]: %s", i, jsonErr(err))
			}
			continue
		}
		before := len(problems)
		at := func(field string) string { return fmt.Sprintf("events[%d].%s", i, field) }
		t := now
		if ev.Time != "" {
			var err error
			if t, err = time.Parse(time.RFC3339Nano, ev.Time); err != nil {
				add("%s: %s is not an RFC 3339 time", at("time"), quoteTrunc(ev.Time))
			} else if t.After(now.Add(maxAheadTime)) {
				add("%s: %s is more than %s in the future", at("time"), ev.Time, maxAheadTime)
			} else if timestamp.FromTime(t) < minT {
				add("%s: %s is older than the retention (%s)", at("time"), ev.Time, sampleTime(minT))
			}
		}
		requireName := func(field, v string) {
			switch {
			case v == "":
				add("%s: required", at(field))
			case len(v) > lim.MaxLabelValueLength:
				add("%s: %d bytes long, over the limit of %d", at(field), len(v), lim.MaxLabelValueLength)
			}
		}
		checkLabels := func(reserved ...string) {
			if len(ev.Labels)+len(reserved) > lim.MaxLabelsPerSeries {
				add("%s: %d labels exceed the limit of %d", at("labels"), len(ev.Labels), lim.MaxLabelsPerSeries-len(reserved))
			}
			for _, name := range slices.Sorted(maps.Keys(ev.Labels)) {
				if strings.HasPrefix(name, "__") || slices.Contains(reserved, name) {
					add("%s: label name %s is reserved", at("labels"), quoteTrunc(name))
					continue
				}
				if err := validateLabel([]byte(name), []byte(ev.Labels[name]), lim); err != nil {
					add("%s: %v", at("labels"), err)
				}
			}
		}
		switch ev.Type {
		case "counts":
			requireName("service", ev.Service)
			requireName("sli", ev.SLI)
			if ev.Version != "" || ev.Description != "" {
				add("%s: version and description belong to deploy events", at("type"))
			}
			if ev.Good == nil && ev.Bad == nil {
				add("%s: a counts event needs good, bad or both", at("good"))
			}
			for _, f := range []struct {
				name string
				v    *float64
			}{{"good", ev.Good}, {"bad", ev.Bad}} {
				switch {
				case f.v == nil:
				case math.IsNaN(*f.v) || math.IsInf(*f.v, 0):
					add("%s: must be a finite number", at(f.name))
				case *f.v < 0:
					add("%s: must not be negative", at(f.name))
				}
			}
			checkLabels("service", "sli", "outcome")
			if len(problems) > before {
				continue
			}
			ce := countEvent{index: i, t: timestamp.FromTime(t)}
			if ev.Good != nil {
				ce.goodN = *ev.Good
			}
			if ev.Bad != nil {
				ce.badN = *ev.Bad
			}
			ce.good = eventLabels(ev, "good")
			ce.bad = eventLabels(ev, "bad")
			counts = append(counts, ce)
		case "deploy":
			requireName("service", ev.Service)
			requireName("version", ev.Version)
			if ev.SLI != "" || ev.Good != nil || ev.Bad != nil {
				add("%s: sli, good and bad belong to counts events", at("type"))
			}
			if len(ev.Description) > maxDescriptionLength {
				add("%s: %d bytes long, over the limit of %d", at("description"), len(ev.Description), maxDescriptionLength)
			}
			checkLabels("service", "version")
			if len(problems) > before {
				continue
			}
			deploys = append(deploys, Deploy{Service: ev.Service, Version: ev.Version, Time: t.UTC(), Description: ev.Description, Labels: ev.Labels})
		case "":
			add("%s: required (counts or deploy)", at("type"))
		default:
			add("%s: %s is not an event type, want counts or deploy", at("type"), quoteTrunc(ev.Type))
		}
	}
	if len(problems) > 0 {
		return nil, nil, errorf(http.StatusBadRequest, "%s", strings.Join(problems, "; "))
	}
	return counts, deploys, nil
}

func eventLabels(ev Event, outcome string) labels.Labels {
	b := labels.NewBuilder(labels.FromMap(ev.Labels))
	b.Set(model.MetricNameLabel, EventsMetric)
	b.Set("service", ev.Service)
	b.Set("sli", ev.SLI)
	b.Set("outcome", outcome)
	return b.Labels()
}

// jsonErr makes encoding/json errors say where, in the words of the API.
func jsonErr(err error) string {
	var (
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("%v at byte %d", syn, syn.Offset)
	case errors.As(err, &typ):
		if typ.Field != "" {
			return fmt.Sprintf("%s: must be %s, not %s", typ.Field, jsonTypeName(typ.Type.Kind()), article(typ.Value))
		}
		return fmt.Sprintf("must be %s, not %s", jsonTypeName(typ.Type.Kind()), article(typ.Value))
	case errors.Is(err, io.EOF):
		return "empty body"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "unexpected end of input"
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

// jsonTypeName names a Go kind the way the API documentation does.
func jsonTypeName(k reflect.Kind) string {
	switch k {
	case reflect.Float64, reflect.Float32, reflect.Int, reflect.Int64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Bool:
		return "a boolean"
	}
	return "a " + k.String()
}

func article(jsonType string) string {
	switch jsonType {
	case "object", "array":
		return "an " + jsonType
	}
	return "a " + jsonType
}

// storeCounts adds the counts to their running totals and appends the new
// totals in one transaction. Totals change in memory only after the commit.
func (h *EventsHandler) storeCounts(ctx context.Context, counts []countEvent) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	pending := map[string]*eventTotal{}
	total := func(ls labels.Labels) (*eventTotal, bool, error) {
		key := ls.String()
		if t, ok := pending[key]; ok {
			return t, true, nil
		}
		if t, ok := h.totals[key]; ok {
			c := *t
			pending[key] = &c
			return &c, true, nil
		}
		t, found, err := h.restore(ctx, ls)
		if err != nil {
			return nil, false, err
		}
		pending[key] = t
		return t, found, nil
	}
	app := h.opts.Storage.AppenderV2(ctx)
	for _, c := range counts {
		for _, s := range []struct {
			ls labels.Labels
			n  float64
		}{{c.good, c.goodN}, {c.bad, c.badN}} {
			tot, found, err := total(s.ls)
			if err != nil {
				_ = app.Rollback()
				return fmt.Errorf("%w: read running total of %s: %w", ErrUnavailable, s.ls, err)
			}
			t := c.t
			if found && t <= tot.last {
				if tot.last-t > eventsMaxBehind.Milliseconds() {
					_ = app.Rollback()
					return errorf(http.StatusBadRequest, "events[%d].time: %s is more than %s older than the last count of %s; send events in time order",
						c.index, timestamp.Time(t).UTC().Format(time.RFC3339Nano), eventsMaxBehind, s.ls)
				}
				t = tot.last + 1
			}
			if !found {
				// The zero a counter starts from, so its first increase
				// counts.
				if _, err := app.Append(0, s.ls, 0, t-1, 0, nil, nil, storage.AOptions{}); err != nil {
					_ = app.Rollback()
					return appendFault(c.index, s.ls, err)
				}
			}
			if next := tot.value + s.n; math.IsInf(next, 0) || math.IsNaN(next) {
				// A total at ±Inf stays there (every later increase reads as NaN).
				_ = app.Rollback()
				return errorf(http.StatusUnprocessableEntity, "events[%d]: the running total of %s would reach %v (now %v, adding %v); counts must stay finite",
					c.index, s.ls, next, tot.value, s.n)
			}
			tot.value += s.n
			tot.last = t
			if _, err := app.Append(0, s.ls, 0, t, tot.value, nil, nil, storage.AOptions{}); err != nil {
				_ = app.Rollback()
				return appendFault(c.index, s.ls, err)
			}
		}
	}
	if err := app.Commit(); err != nil {
		return fmt.Errorf("%w: commit: %w", ErrUnavailable, err)
	}
	for k, t := range pending {
		h.totals[k] = t
	}
	return nil
}

func appendFault(i int, ls labels.Labels, err error) error {
	if appendReason(err) != reasonNone {
		return errorf(http.StatusBadRequest, "events[%d]: %s: %v", i, ls, err)
	}
	return fmt.Errorf("%w: append %s: %w", ErrUnavailable, ls, err)
}

// restore reads the last stored value of the series ls, if any.
func (h *EventsHandler) restore(ctx context.Context, ls labels.Labels) (*eventTotal, bool, error) {
	q, err := h.opts.Storage.Querier(math.MinInt64, math.MaxInt64)
	if err != nil {
		return nil, false, err
	}
	defer q.Close()
	ms := make([]*labels.Matcher, 0, ls.Len())
	ls.Range(func(l labels.Label) {
		ms = append(ms, labels.MustNewMatcher(labels.MatchEqual, l.Name, l.Value))
	})
	set := q.Select(ctx, false, nil, ms...)
	t := &eventTotal{last: math.MinInt64}
	found := false
	var it chunkenc.Iterator
	for set.Next() {
		s := set.At()
		if labels.Compare(s.Labels(), ls) != 0 {
			continue // a series with more labels
		}
		it = s.Iterator(it)
		for typ := it.Next(); typ != chunkenc.ValNone; typ = it.Next() {
			if typ != chunkenc.ValFloat {
				continue
			}
			ts, v := it.At()
			if value.IsStaleNaN(v) || ts < t.last {
				continue
			}
			t.value, t.last, found = v, ts, true
		}
		if err := it.Err(); err != nil {
			return nil, false, err
		}
	}
	if err := set.Err(); err != nil {
		return nil, false, err
	}
	return t, found, nil
}
