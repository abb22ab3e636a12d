package telemetry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/timestamp"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/util/annotations"
)

// QueryAPIOptions configures the Prometheus-compatible query API.
type QueryAPIOptions struct {
	// Embedded is the store queried. Required.
	Embedded *Embedded
	// Prefix is the path the API is served under (default
	// "/prometheus/api/v1"), so Grafana's data source URL is the part
	// before "/api/v1".
	Prefix string
	// Limits bound every query, series and format request before and
	// while it is evaluated; zero fields take their defaults.
	Limits QueryLimits
	// Logger receives errors writing responses (default: discarded).
	Logger *slog.Logger
	// Now is the default evaluation time of instant queries (default
	// time.Now).
	Now func() time.Time
}

// QueryAPI serves the read side of Prometheus' HTTP API over the embedded
// store — query, query_range, series, labels, label/<name>/values, plus
// the metadata and buildinfo endpoints Grafana probes — with Prometheus'
// JSON shapes, parameter parsing, error types and status codes, so
// Grafana's Prometheus data source and promtool work against QSP.
type QueryAPI struct {
	opts  QueryAPIOptions
	mux   *http.ServeMux
	log   *slog.Logger
	slots chan struct{} // one per query evaluated at once
}

// NewQueryAPI returns the query API handler.
func NewQueryAPI(opts QueryAPIOptions) (*QueryAPI, error) {
	if opts.Embedded == nil {
		return nil, errors.New("query api: Embedded is required")
	}
	if opts.Prefix == "" {
		opts.Prefix = "/prometheus/api/v1"
	}
	opts.Prefix = "/" + strings.Trim(opts.Prefix, "/")
	limits, err := opts.Limits.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("query api: %w", err)
	}
	opts.Limits = limits
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	a := &QueryAPI{opts: opts, mux: http.NewServeMux(), log: opts.Logger.With("component", "telemetry.queryapi"), slots: make(chan struct{}, opts.Limits.MaxConcurrent)}
	routes := map[string]func(*http.Request) (any, annotations.Annotations, *apiError){
		"/query":                a.query,
		"/query_range":          a.queryRange,
		"/series":               a.series,
		"/labels":               a.labelNames,
		"/label/{name}/values":  a.labelValues,
		"/metadata":             a.empty(map[string]any{}),
		"/query_exemplars":      a.queryExemplars,
		"/status/buildinfo":     a.buildInfo,
		"/format_query":         a.formatQuery,
		"/status/runtimeinfo":   a.empty(map[string]any{}),
		"/status/flags":         a.empty(map[string]string{}),
		"/targets/metadata":     a.empty([]any{}),
		"/alertmanagers":        a.empty(map[string]any{"activeAlertmanagers": []any{}, "droppedAlertmanagers": []any{}}),
		"/status/tsdb/blocks":   a.empty(map[string]any{"blocks": []any{}}),
		"/status/walreplay":     a.empty(map[string]any{"min": 0, "max": 0, "current": 0}),
		"/status/config":        a.empty(map[string]string{"yaml": ""}),
		"/scrape_pools":         a.empty(map[string]any{"scrapePools": []string{}}),
		"/status/tsdb":          a.empty(map[string]any{}),
		"/rules":                a.empty(map[string]any{"groups": []any{}}),
		"/alerts":               a.empty(map[string]any{"alerts": []any{}}),
		"/notifications/active": a.empty([]any{}),
	}
	for path, fn := range routes {
		h := a.wrap(fn)
		a.mux.HandleFunc("GET "+opts.Prefix+path, h)
		a.mux.HandleFunc("POST "+opts.Prefix+path, h)
	}
	return a, nil
}

// ServeHTTP implements http.Handler.
func (a *QueryAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mux.ServeHTTP(w, r)
}

// Prometheus' error types, which clients switch on.
type errorType string

const (
	errBadData  errorType = "bad_data"
	errExec     errorType = "execution"
	errTimeout  errorType = "timeout"
	errCanceled errorType = "canceled"
	errInternal errorType = "internal"
)

type apiError struct {
	typ errorType
	err error
}

func (e *apiError) status() int {
	switch e.typ {
	case errBadData:
		return http.StatusBadRequest
	case errExec:
		return http.StatusUnprocessableEntity
	case errCanceled:
		return 499 // Prometheus' "client closed connection".
	case errTimeout:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func invalidParam(err error, param string) *apiError {
	return &apiError{errBadData, fmt.Errorf("invalid parameter %q: %w", param, err)}
}

// response is Prometheus' envelope.
type response struct {
	Status    string          `json:"status"`
	Data      any             `json:"data,omitempty"`
	ErrorType errorType       `json:"errorType,omitempty"`
	Error     string          `json:"error,omitempty"`
	Warnings  []string        `json:"warnings,omitempty"`
	Infos     []string        `json:"infos,omitempty"`
	raw       json.RawMessage // pre-encoded data, for query results
}

func (a *QueryAPI) wrap(fn func(*http.Request) (any, annotations.Annotations, *apiError)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		data, annots, aerr := fn(r)
		resp := response{Status: "success"}
		status := http.StatusOK
		if aerr != nil {
			resp = response{Status: "error", ErrorType: aerr.typ, Error: aerr.err.Error()}
			status = aerr.status()
		} else if raw, ok := data.(json.RawMessage); ok {
			resp.raw = raw
		} else {
			resp.Data = data
		}
		resp.Warnings, resp.Infos = annots.AsStrings(r.FormValue("query"), 10, 10)
		b, err := encodeResponse(resp)
		if err != nil {
			status = http.StatusInternalServerError
			b, _ = json.Marshal(response{Status: "error", ErrorType: errInternal, Error: "encode response: " + err.Error()})
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		if _, err := w.Write(b); err != nil {
			a.log.Debug("write response", "err", err)
		}
	}
}

func encodeResponse(resp response) ([]byte, error) {
	if resp.raw == nil {
		return json.Marshal(resp)
	}
	// Splice the pre-encoded data into the envelope.
	b, err := json.Marshal(resp)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(b)+len(resp.raw)+8)
	out = append(out, b[:len(b)-1]...)
	out = append(out, `,"data":`...)
	out = append(out, resp.raw...)
	return append(out, '}'), nil
}

func (a *QueryAPI) empty(v any) func(*http.Request) (any, annotations.Annotations, *apiError) {
	return func(*http.Request) (any, annotations.Annotations, *apiError) { return v, nil, nil }
}

// queryExemplars answers as Prometheus' query_exemplars does: the
// exemplars in [start, end] of the series any vector selector of query
// selects, grouped by series. The query passes the same length and depth
// limits as any other; the answer holds at most Limits.MaxExemplars.
func (a *QueryAPI) queryExemplars(r *http.Request) (any, annotations.Annotations, *apiError) {
	start, err := parseTimeParam(r, "start", minTime)
	if err != nil {
		return nil, nil, invalidParam(err, "start")
	}
	end, err := parseTimeParam(r, "end", maxTime)
	if err != nil {
		return nil, nil, invalidParam(err, "end")
	}
	if end.Before(start) {
		return nil, nil, &apiError{errBadData, errors.New("end timestamp must not be before start timestamp")}
	}
	ctx, cancel, aerr := a.timeoutCtx(r)
	if aerr != nil {
		return nil, nil, aerr
	}
	defer cancel()
	expr, aerr := a.parse(ctx, r.FormValue("query"))
	if aerr != nil {
		if aerr.typ == errBadData {
			// Prometheus words a parse error here without naming the
			// parameter.
			aerr = &apiError{errBadData, errors.Unwrap(aerr.err)}
		}
		return nil, nil, aerr
	}
	sets := parser.ExtractSelectors(expr)
	if len(sets) == 0 {
		return nil, nil, nil
	}
	res, err := a.opts.Embedded.selectExemplars(ctx, sets, timestamp.FromTime(start), timestamp.FromTime(end))
	if err != nil {
		return nil, nil, execError(err)
	}
	var annots annotations.Annotations
	res, dropped := limitExemplars(res, a.opts.Limits.MaxExemplars)
	if dropped > 0 {
		annots = annotations.New().Add(fmt.Errorf("%w: %d older exemplars left out, more than query.maxExemplars (%s); narrow the time range or the selector", ErrQueryLimit, dropped, thousands(a.opts.Limits.MaxExemplars)))
	}
	b, err := appendExemplars(make([]byte, 0, 1024), res)
	if err != nil {
		return nil, annots, &apiError{errInternal, err}
	}
	return json.RawMessage(b), annots, nil
}

func (a *QueryAPI) buildInfo(*http.Request) (any, annotations.Annotations, *apiError) {
	// The version of the Prometheus library QSP embeds: Grafana uses it to
	// decide which PromQL features to offer.
	return map[string]string{
		"version":   "3.16.0",
		"revision":  "qsp",
		"branch":    "qsp",
		"buildUser": "qsp",
		"buildDate": "",
		"goVersion": "",
	}, nil, nil
}

func (a *QueryAPI) formatQuery(r *http.Request) (any, annotations.Annotations, *apiError) {
	ctx, cancel, aerr := a.timeoutCtx(r)
	if aerr != nil {
		return nil, nil, aerr
	}
	defer cancel()
	expr, aerr := a.parse(ctx, r.FormValue("query"))
	if aerr != nil {
		return nil, nil, aerr
	}
	return expr.Pretty(0), nil, nil
}

// parse checks q against the length and depth limits, then parses it,
// within ctx's deadline: the scan is linear and makes the parse so (the
// parser itself cannot be interrupted).
func (a *QueryAPI) parse(ctx context.Context, q string) (parser.Expr, *apiError) {
	if err := scanQuery(q, a.opts.Limits.MaxLength, a.opts.Limits.MaxDepth); err != nil {
		return nil, invalidParam(err, "query")
	}
	expr, err := a.opts.Embedded.parser.ParseExpr(q)
	if err := ctx.Err(); err != nil {
		return nil, execError(fmt.Errorf("parse query: %w", err))
	}
	if err != nil {
		return nil, invalidParam(err, "query")
	}
	return expr, nil
}

// prepare parses q and checks the evaluation grids of its subqueries for
// an evaluation over span (0 for an instant query), before the engine
// sees it.
func (a *QueryAPI) prepare(ctx context.Context, q string, span time.Duration) *apiError {
	expr, aerr := a.parse(ctx, q)
	if aerr != nil {
		return aerr
	}
	if err := checkSubqueries(q, expr, span, a.opts.Limits.MaxPoints, defaultSubqueryStep); err != nil {
		return invalidParam(err, "query")
	}
	return nil
}

func (a *QueryAPI) query(r *http.Request) (any, annotations.Annotations, *apiError) {
	ts, err := parseTimeParam(r, "time", a.opts.Now())
	if err != nil {
		return nil, nil, invalidParam(err, "time")
	}
	ctx, cancel, aerr := a.timeoutCtx(r)
	if aerr != nil {
		return nil, nil, aerr
	}
	defer cancel()
	if aerr := a.prepare(ctx, r.FormValue("query"), 0); aerr != nil {
		return nil, nil, aerr
	}
	release, aerr := a.acquire(ctx)
	if aerr != nil {
		return nil, nil, aerr
	}
	defer release()
	e := a.opts.Embedded
	qry, err := e.engine.NewInstantQuery(ctx, e.db, nil, r.FormValue("query"), ts)
	if err != nil {
		return nil, nil, invalidParam(err, "query")
	}
	defer qry.Close()
	return a.exec(ctx, qry)
}

func (a *QueryAPI) queryRange(r *http.Request) (any, annotations.Annotations, *apiError) {
	start, err := parseTime(r.FormValue("start"))
	if err != nil {
		return nil, nil, invalidParam(err, "start")
	}
	end, err := parseTime(r.FormValue("end"))
	if err != nil {
		return nil, nil, invalidParam(err, "end")
	}
	if end.Before(start) {
		return nil, nil, invalidParam(errors.New("end timestamp must not be before start time"), "end")
	}
	step, err := parseDuration(r.FormValue("step"))
	if err != nil {
		return nil, nil, invalidParam(err, "step")
	}
	if step <= 0 {
		return nil, nil, invalidParam(errors.New("zero or negative query resolution step widths are not accepted. Try a positive integer"), "step")
	}
	if end.Sub(start)/step > time.Duration(a.opts.Limits.MaxPoints) {
		return nil, nil, &apiError{errBadData, fmt.Errorf("exceeded maximum resolution of %s points per timeseries. Try decreasing the query resolution (?step=XX)", thousands(a.opts.Limits.MaxPoints))}
	}
	ctx, cancel, aerr := a.timeoutCtx(r)
	if aerr != nil {
		return nil, nil, aerr
	}
	defer cancel()
	if aerr := a.prepare(ctx, r.FormValue("query"), end.Sub(start)); aerr != nil {
		return nil, nil, aerr
	}
	release, aerr := a.acquire(ctx)
	if aerr != nil {
		return nil, nil, aerr
	}
	defer release()
	e := a.opts.Embedded
	qry, err := e.engine.NewRangeQuery(ctx, e.db, nil, r.FormValue("query"), start, end, step)
	if err != nil {
		return nil, nil, invalidParam(err, "query")
	}
	defer qry.Close()
	return a.exec(ctx, qry)
}

// acquire waits for one of the MaxConcurrent evaluation slots until ctx
// ends; release gives it back.
func (a *QueryAPI) acquire(ctx context.Context) (release func(), _ *apiError) {
	select {
	case a.slots <- struct{}{}:
		return func() { <-a.slots }, nil
	case <-ctx.Done():
		return nil, execError(fmt.Errorf("wait for a query slot (query.maxConcurrent %d): %w", cap(a.slots), ctx.Err()))
	}
}

// exec runs qry and encodes its result before the query is closed (closing
// recycles the result's memory).
func (a *QueryAPI) exec(ctx context.Context, qry promql.Query) (any, annotations.Annotations, *apiError) {
	res := qry.Exec(ctx)
	if res.Err != nil {
		return nil, res.Warnings, execError(res.Err)
	}
	b, err := encodeQueryData(res.Value)
	if err != nil {
		return nil, res.Warnings, &apiError{errInternal, err}
	}
	return json.RawMessage(b), res.Warnings, nil
}

func execError(err error) *apiError {
	var (
		canceled promql.ErrQueryCanceled
		timeout  promql.ErrQueryTimeout
		storErr  promql.ErrStorage
	)
	switch {
	case errors.As(err, &canceled), errors.Is(err, context.Canceled):
		return &apiError{errCanceled, err}
	case errors.As(err, &timeout), errors.Is(err, context.DeadlineExceeded):
		return &apiError{errTimeout, err}
	case errors.As(err, &storErr):
		return &apiError{errInternal, err}
	}
	return &apiError{errExec, err}
}

// timeoutCtx is the request's context under the query timeout, which a
// timeout parameter may shorten but not extend (as Prometheus'
// --query.timeout caps it). Handlers take it before parsing, so the
// deadline covers parse and evaluation.
func (a *QueryAPI) timeoutCtx(r *http.Request) (context.Context, context.CancelFunc, *apiError) {
	d := a.opts.Limits.Timeout
	if s := r.FormValue("timeout"); s != "" {
		td, err := parseDuration(s)
		if err != nil {
			return nil, nil, invalidParam(err, "timeout")
		}
		if td > 0 {
			d = min(d, td)
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), d)
	return ctx, cancel, nil
}

func (a *QueryAPI) seriesParams(r *http.Request, requireMatch bool) (sets [][]*labels.Matcher, mint, maxt int64, limit int, aerr *apiError) {
	if err := r.ParseForm(); err != nil {
		return nil, 0, 0, 0, &apiError{errBadData, fmt.Errorf("parse form: %w", err)}
	}
	start, err := parseTimeParam(r, "start", minTime)
	if err != nil {
		return nil, 0, 0, 0, invalidParam(err, "start")
	}
	end, err := parseTimeParam(r, "end", maxTime)
	if err != nil {
		return nil, 0, 0, 0, invalidParam(err, "end")
	}
	if end.Before(start) {
		return nil, 0, 0, 0, invalidParam(errors.New("end timestamp must not be before start time"), "end")
	}
	if s := r.FormValue("limit"); s != "" {
		if limit, err = strconv.Atoi(s); err != nil || limit < 0 {
			return nil, 0, 0, 0, invalidParam(errors.New("limit must be a non-negative integer"), "limit")
		}
	}
	match := r.Form["match[]"]
	for _, m := range match {
		if err := scanQuery(m, a.opts.Limits.MaxLength, a.opts.Limits.MaxDepth); err != nil {
			return nil, 0, 0, 0, invalidParam(err, "match[]")
		}
	}
	if len(match) == 0 {
		if requireMatch {
			return nil, 0, 0, 0, &apiError{errBadData, errors.New("no match[] parameter provided")}
		}
	} else if sets, err = a.opts.Embedded.parseSelectors(match); err != nil {
		return nil, 0, 0, 0, invalidParam(err, "match[]")
	}
	return sets, timestamp.FromTime(start), timestamp.FromTime(end), limit, nil
}

func (a *QueryAPI) series(r *http.Request) (any, annotations.Annotations, *apiError) {
	sets, mint, maxt, limit, aerr := a.seriesParams(r, true)
	if aerr != nil {
		return nil, nil, aerr
	}
	ls, err := a.opts.Embedded.series(r.Context(), sets, mint, maxt, limit)
	if err != nil {
		return nil, nil, execError(err)
	}
	return ls, nil, nil
}

func (a *QueryAPI) labelNames(r *http.Request) (any, annotations.Annotations, *apiError) {
	sets, mint, maxt, limit, aerr := a.seriesParams(r, false)
	if aerr != nil {
		return nil, nil, aerr
	}
	names, err := a.opts.Embedded.labelNames(r.Context(), sets, mint, maxt, limit)
	if err != nil {
		return nil, nil, execError(err)
	}
	return names, nil, nil
}

func (a *QueryAPI) labelValues(r *http.Request) (any, annotations.Annotations, *apiError) {
	name := r.PathValue("name")
	// Prometheus 3 clients escape UTF-8 label names in the path.
	if strings.HasPrefix(name, "U__") {
		name = model.UnescapeName(name, model.ValueEncodingEscaping)
	}
	if name == "" || !model.UTF8Validation.IsValidLabelName(name) {
		return nil, nil, &apiError{errBadData, fmt.Errorf("invalid label name: %q", name)}
	}
	sets, mint, maxt, limit, aerr := a.seriesParams(r, false)
	if aerr != nil {
		return nil, nil, aerr
	}
	values, err := a.opts.Embedded.labelValues(r.Context(), name, sets, mint, maxt, limit)
	if err != nil {
		return nil, nil, execError(err)
	}
	return values, nil, nil
}

// minTime and maxTime are Prometheus' defaults for open time ranges.
var (
	minTime          = time.Unix(math.MinInt64/1000+62135596801, 0).UTC()
	maxTime          = time.Unix(math.MaxInt64/1000-62135596801, 999999999).UTC()
	minTimeFormatted = minTime.Format(time.RFC3339Nano)
	maxTimeFormatted = maxTime.Format(time.RFC3339Nano)
)

func parseTimeParam(r *http.Request, name string, def time.Time) (time.Time, error) {
	v := r.FormValue(name)
	if v == "" {
		return def, nil
	}
	t, err := parseTime(v)
	if err != nil {
		return time.Time{}, fmt.Errorf("invalid time value for '%s': %w", name, err)
	}
	return t, nil
}

// parseTime parses Unix seconds with an optional fraction (rounded to the
// millisecond) or RFC 3339, as Prometheus does.
func parseTime(s string) (time.Time, error) {
	if t, err := strconv.ParseFloat(s, 64); err == nil {
		if math.IsNaN(t) || math.IsInf(t, 0) || t > 9.2e15 || t < -9.2e15 {
			return time.Time{}, fmt.Errorf("cannot parse %q to a valid timestamp", s)
		}
		s, ns := math.Modf(t)
		ns = math.Round(ns*1000) / 1000
		return time.Unix(int64(s), int64(ns*float64(time.Second))).UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	switch s {
	case minTimeFormatted:
		return minTime, nil
	case maxTimeFormatted:
		return maxTime, nil
	}
	return time.Time{}, fmt.Errorf("cannot parse %q to a valid timestamp", s)
}

// parseDuration parses float seconds or a Prometheus duration ("1m30s").
func parseDuration(s string) (time.Duration, error) {
	if d, err := strconv.ParseFloat(s, 64); err == nil {
		ts := d * float64(time.Second)
		if math.IsNaN(ts) || ts >= float64(math.MaxInt64) || ts < float64(math.MinInt64) {
			return 0, fmt.Errorf("cannot parse %q to a valid duration. It overflows int64", s)
		}
		return time.Duration(ts), nil
	}
	if d, err := model.ParseDuration(s); err == nil {
		return time.Duration(d), nil
	}
	return 0, fmt.Errorf("cannot parse %q to a valid duration", s)
}

// encodeQueryData encodes a query result as Prometheus does:
// {"resultType": ..., "result": ...}, sample values as strings, timestamps
// as float seconds.
func encodeQueryData(v parser.Value) ([]byte, error) {
	b := make([]byte, 0, 1024)
	b = append(b, `{"resultType":"`...)
	b = append(b, v.Type()...)
	b = append(b, `","result":`...)
	var err error
	switch v := v.(type) {
	case promql.Matrix:
		b = append(b, '[')
		for i, s := range v {
			if i > 0 {
				b = append(b, ',')
			}
			if b, err = appendMetric(b, s.Metric); err != nil {
				return nil, err
			}
			if len(s.Floats) > 0 {
				b = append(b, `,"values":[`...)
				for j, p := range s.Floats {
					if j > 0 {
						b = append(b, ',')
					}
					b = appendPoint(b, p.T, p.F)
				}
				b = append(b, ']')
			}
			if len(s.Histograms) > 0 {
				hb, err := json.Marshal(s.Histograms)
				if err != nil {
					return nil, err
				}
				b = append(b, `,"histograms":`...)
				b = append(b, hb...)
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	case promql.Vector:
		b = append(b, '[')
		for i, s := range v {
			if i > 0 {
				b = append(b, ',')
			}
			if b, err = appendMetric(b, s.Metric); err != nil {
				return nil, err
			}
			if s.H != nil {
				hb, err := json.Marshal(promql.HPoint{T: s.T, H: s.H})
				if err != nil {
					return nil, err
				}
				b = append(b, `,"histogram":`...)
				b = append(b, hb...)
			} else {
				b = append(b, `,"value":`...)
				b = appendPoint(b, s.T, s.F)
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	case promql.Scalar:
		b = appendPoint(b, v.T, v.V)
	case promql.String:
		sb, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		b = append(b, sb...)
	default:
		return nil, fmt.Errorf("unexpected result type %s", v.Type())
	}
	return append(b, '}'), nil
}

func appendMetric(b []byte, ls labels.Labels) ([]byte, error) {
	mb, err := ls.MarshalJSON()
	if err != nil {
		return nil, err
	}
	b = append(b, `{"metric":`...)
	return append(b, mb...), nil
}

// appendPoint writes [<seconds>,"<value>"] the way Prometheus' jsoniter
// codec does.
func appendPoint(b []byte, t int64, v float64) []byte {
	b = append(b, '[')
	b = appendTimestamp(b, t)
	b = append(b, `,"`...)
	b = appendFloat(b, v)
	return append(b, `"]`...)
}

func appendTimestamp(b []byte, t int64) []byte {
	if t < 0 {
		b = append(b, '-')
		t = -t
	}
	b = strconv.AppendInt(b, t/1000, 10)
	if ms := t % 1000; ms != 0 {
		b = append(b, '.')
		switch {
		case ms < 10:
			b = append(b, "00"...)
		case ms < 100:
			b = append(b, '0')
		}
		b = strconv.AppendInt(b, ms, 10)
		for b[len(b)-1] == '0' {
			b = b[:len(b)-1]
		}
	}
	return b
}

func appendFloat(b []byte, v float64) []byte {
	switch {
	case math.IsNaN(v):
		return append(b, "NaN"...)
	case math.IsInf(v, 1):
		return append(b, "+Inf"...)
	case math.IsInf(v, -1):
		return append(b, "-Inf"...)
	}
	return strconv.AppendFloat(b, v, 'f', -1, 64)
}

// thousands formats n with comma separators, as Prometheus' messages do.
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
