// Package tracelink leads from a burn to the requests that burned it: it
// looks up the exemplars (trace IDs attached to samples) of an SLO's bad
// events over a window, in the embedded TSDB or a remote Prometheus'
// query_exemplars, picks a few spread over the window, newest first, and
// links each to a trace UI (Jaeger, Tempo / Grafana Explore) through a
// configurable URL template. The SLO page, the incident page and API, the
// alert annotations and the canary gate's verdict all show what it finds.
package tracelink

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"text/template"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/qsp-dev/qsp/internal/spec"
)

// Source answers exemplar queries as Prometheus' query_exemplars does;
// telemetry.Embedded and telemetry.Remote implement it. It must be safe
// for concurrent use.
type Source interface {
	Exemplars(ctx context.Context, query string, start, end time.Time) ([]exemplar.QueryResult, error)
}

// Example is one example trace of a bad event.
type Example struct {
	TraceID string    `json:"traceID"`
	SpanID  string    `json:"spanID,omitempty"`
	Time    time.Time `json:"time"`
	// Value is the exemplar's value: 1 for a counted request, the
	// duration in seconds for a latency histogram.
	Value float64 `json:"value"`
	// Series is the series the exemplar was attached to, in PromQL
	// notation.
	Series string `json:"series"`
	// URL opens the trace in the configured trace UI; empty without a
	// URL template.
	URL string `json:"url,omitempty"`
}

// Options configures a Finder.
type Options struct {
	// Source is where exemplars are looked up. Required.
	Source Source
	// URLTemplate is a Go text/template for a trace's link, with
	// .TraceID, .SpanID, .Time (time.Time), .StartMillis and .EndMillis
	// (the trace's minute around its time, for Grafana Explore ranges),
	// e.g. "http://jaeger:16686/trace/{{.TraceID}}". Empty: no links.
	URLTemplate string
	// Max is how many examples one look-up returns (default 5, at most
	// 50).
	Max int
	// Specs returns the current specs, to find an SLO's indicator by
	// name. Required for ForSLO.
	Specs func() *spec.Set
	// Timeout bounds one look-up (default 5s), so a slow backend delays
	// a page or an alert by at most that much.
	Timeout time.Duration
	// Logger receives look-up failures (default: discarded).
	Logger *slog.Logger
}

// Finder looks up example traces. It is safe for concurrent use.
type Finder struct {
	opts Options
	tmpl *template.Template
	log  *slog.Logger
}

// Defaults and bounds of Options.
const (
	DefaultMax     = 5
	MaxMax         = 50
	DefaultTimeout = 5 * time.Second
)

// New returns a Finder, or an error naming what is wrong with opts.
func New(opts Options) (*Finder, error) {
	if opts.Source == nil {
		return nil, errors.New("tracelink: Source is required")
	}
	if opts.Max < 0 || opts.Max > MaxMax {
		return nil, fmt.Errorf("tracelink: max %d: want 0 (default %d) to %d", opts.Max, DefaultMax, MaxMax)
	}
	opts.Max = cmp.Or(opts.Max, DefaultMax)
	opts.Timeout = cmp.Or(opts.Timeout, DefaultTimeout)
	if opts.Specs == nil {
		opts.Specs = func() *spec.Set { return &spec.Set{} }
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	f := &Finder{opts: opts, log: opts.Logger.With("component", "tracelink")}
	if opts.URLTemplate != "" {
		t, err := ParseTemplate(opts.URLTemplate)
		if err != nil {
			return nil, err
		}
		f.tmpl = t
	}
	return f, nil
}

// ParseTemplate parses and tries a trace URL template, so a typo is
// reported when the configuration is loaded, not when a page renders.
func ParseTemplate(s string) (*template.Template, error) {
	t, err := template.New("traces.urlTemplate").Option("missingkey=error").Parse(s)
	if err != nil {
		return nil, fmt.Errorf("traces.urlTemplate: %w", err)
	}
	if err := t.Execute(&bytes.Buffer{}, linkData{TraceID: "0af7651916cd43dd8448eb211c80319c", SpanID: "b7ad6b7169203331", Time: time.Unix(0, 0)}); err != nil {
		return nil, fmt.Errorf("traces.urlTemplate: %w (fields: .TraceID, .SpanID, .Time, .StartMillis, .EndMillis)", err)
	}
	return t, nil
}

type linkData struct {
	TraceID, SpanID        string
	Time                   time.Time
	StartMillis, EndMillis int64
}

// Link returns the trace UI link of ex, or "" without a template.
func (f *Finder) Link(ex Example) string {
	if f == nil || f.tmpl == nil {
		return ""
	}
	var b strings.Builder
	d := linkData{TraceID: ex.TraceID, SpanID: ex.SpanID, Time: ex.Time,
		StartMillis: ex.Time.Add(-30 * time.Second).UnixMilli(), EndMillis: ex.Time.Add(30 * time.Second).UnixMilli()}
	if err := f.tmpl.Execute(&b, d); err != nil {
		return ""
	}
	return b.String()
}

// BadEvents returns the query whose selectors pick an indicator's bad
// events, and a filter on their exemplars' values, or ok false when the
// indicator has no event series with exemplars (thresholds, composites).
//
// A ratio's bad events are its bad query, or the total's series that the
// good query does not select (exclude); an error ratio's are its
// numerator; a latency SLO's are the histogram's buckets, and exemplars
// slower than the threshold.
func BadEvents(ind spec.Indicator) (query string, exclude string, keep func(float64) bool, ok bool) {
	all := func(float64) bool { return true }
	switch {
	case ind.Ratio != nil:
		r := ind.Ratio
		switch {
		case r.Bad != "":
			return spec.ExpandWindow(r.Bad, time.Minute), "", all, true
		case r.Good != "" && r.Total != "":
			return spec.ExpandWindow(r.Total, time.Minute), spec.ExpandWindow(r.Good, time.Minute), all, true
		case r.ErrorRatio != "":
			q := spec.ExpandWindow(r.ErrorRatio, time.Minute)
			if expr, err := parser.NewParser(parser.Options{}).ParseExpr(q); err == nil {
				if b, isBin := unparen(expr).(*parser.BinaryExpr); isBin && b.Op == parser.DIV {
					return b.LHS.String(), "", all, true
				}
			}
			return q, "", all, true
		}
	case ind.Latency != nil:
		ms, err := spec.ParseSelector(ind.Latency.Histogram)
		if err != nil {
			return "", "", nil, false
		}
		var name string
		rest := make([]*labels.Matcher, 0, len(ms))
		for _, m := range ms {
			if m.Name == model.MetricNameLabel {
				name = m.Value
				continue
			}
			rest = append(rest, m)
		}
		if name == "" {
			return "", "", nil, false
		}
		sel := &parser.VectorSelector{Name: name + "_bucket", LabelMatchers: append([]*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, model.MetricNameLabel, name+"_bucket")}, rest...)}
		threshold := ind.Latency.Threshold.D().Seconds()
		return sel.String(), "", func(v float64) bool { return v > threshold }, true
	}
	return "", "", nil, false
}

func unparen(e parser.Expr) parser.Expr {
	for {
		p, ok := e.(*parser.ParenExpr)
		if !ok {
			return e
		}
		e = p.Expr
	}
}

// ForSLO returns up to Max example traces of the named SLO's bad events
// in [start, end], spread over the window, newest first. An SLO without
// event series, or unknown, has none.
func (f *Finder) ForSLO(ctx context.Context, slo string, start, end time.Time) ([]Example, error) {
	s := f.opts.Specs().SLO(slo)
	if s == nil {
		return nil, nil
	}
	q, exclude, keep, ok := BadEvents(s.Spec.Indicator)
	if !ok {
		return nil, nil
	}
	return f.ForQuery(ctx, q, exclude, keep, start, end)
}

// ForQuery returns up to Max example traces among the exemplars of the
// series query selects in [start, end], leaving out the series exclude
// selects and exemplars whose value keep refuses (nil keeps all), spread
// over the window, newest first.
func (f *Finder) ForQuery(ctx context.Context, query, exclude string, keep func(float64) bool, start, end time.Time) ([]Example, error) {
	if !end.After(start) {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, f.opts.Timeout)
	defer cancel()
	res, err := f.opts.Source.Exemplars(ctx, query, start, end)
	if err != nil {
		return nil, fmt.Errorf("example traces of %s: %w", query, err)
	}
	skip := map[string]bool{}
	if exclude != "" {
		good, err := f.opts.Source.Exemplars(ctx, exclude, start, end)
		if err != nil {
			return nil, fmt.Errorf("example traces of %s: %w", exclude, err)
		}
		for _, r := range good {
			skip[r.SeriesLabels.String()] = true
		}
	}
	var all []Example
	for _, r := range res {
		series := r.SeriesLabels.String()
		if skip[series] {
			continue
		}
		for _, ex := range r.Exemplars {
			tid := traceID(ex.Labels)
			if tid == "" || (keep != nil && !keep(ex.Value)) {
				continue
			}
			all = append(all, Example{TraceID: tid, SpanID: spanID(ex.Labels), Time: time.UnixMilli(ex.Ts).UTC(), Value: ex.Value, Series: series})
		}
	}
	out := Spread(all, start, end, f.opts.Max)
	for i := range out {
		out[i].URL = f.Link(out[i])
	}
	return out, nil
}

// Spread picks up to n examples of all spread over [start, end]: the
// window is cut into n equal slices and the newest example of each is
// taken, newest slice first; slices without examples leave room for the
// next newest of the others. Each trace appears once. The result is
// newest first.
func Spread(all []Example, start, end time.Time, n int) []Example {
	if n <= 0 || len(all) == 0 {
		return nil
	}
	slices.SortStableFunc(all, func(a, b Example) int { return b.Time.Compare(a.Time) })
	seen := map[string]bool{}
	uniq := all[:0:0]
	for _, ex := range all {
		if !seen[ex.TraceID] {
			seen[ex.TraceID] = true
			uniq = append(uniq, ex)
		}
	}
	if len(uniq) <= n {
		return uniq
	}
	width := end.Sub(start) / time.Duration(n)
	slice := func(t time.Time) int {
		if width <= 0 {
			return 0
		}
		return min(max(int(t.Sub(start)/width), 0), n-1)
	}
	picked := make([]bool, len(uniq))
	taken := map[int]bool{}
	count := 0
	for i, ex := range uniq { // newest first: the first of a slice is its newest
		if s := slice(ex.Time); !taken[s] {
			taken[s], picked[i] = true, true
			count++
		}
	}
	for i := range uniq {
		if count >= n {
			break
		}
		if !picked[i] {
			picked[i] = true
			count++
		}
	}
	out := make([]Example, 0, n)
	for i, ex := range uniq {
		if picked[i] && len(out) < n {
			out = append(out, ex)
		}
	}
	return out
}

// traceID is the trace ID of an exemplar: trace_id as Prometheus' OTLP
// translator and OpenMetrics instrumentations write it, or the common
// alternatives.
func traceID(ls labels.Labels) string {
	for _, name := range []string{"trace_id", "traceID", "traceId", "TraceID"} {
		if v := ls.Get(name); v != "" {
			return v
		}
	}
	return ""
}

func spanID(ls labels.Labels) string {
	for _, name := range []string{"span_id", "spanID", "spanId", "SpanID"} {
		if v := ls.Get(name); v != "" {
			return v
		}
	}
	return ""
}

// ForSLOs is ForSLO over several SLOs (the alerts of one incident): their
// examples merged, spread over the window, newest first, at most Max.
func (f *Finder) ForSLOs(ctx context.Context, slos []string, start, end time.Time) ([]Example, error) {
	var all []Example
	seen := map[string]bool{}
	var errs []error
	for _, name := range slos {
		if seen[name] {
			continue
		}
		seen[name] = true
		exs, err := f.ForSLO(ctx, name, start, end)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		all = append(all, exs...)
	}
	out := Spread(all, start, end, f.opts.Max)
	if len(out) == 0 && len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}
