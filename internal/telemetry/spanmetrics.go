package telemetry

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/sampling"
	"github.com/prometheus/common/model"
	"github.com/prometheus/otlptranslator"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// Span-derived metrics. Spans become the two metrics of the OpenTelemetry
// Collector's spanmetrics connector, named, labelled and bucketed as a
// Prometheus that receives the connector's output over OTLP stores them:
//
//	traces_span_metrics_calls_total{job, instance, service_name, span_name, span_kind, status_code, <dimensions>}
//	traces_span_metrics_duration_milliseconds_bucket{..., le} (and _sum, _count)
//
// so an SLI written against a collector running the connector works
// unchanged against QSP, and back. Differences from the connector, on
// purpose: collector.instance.id is not a label (there is no collector);
// an adjusted count from a W3C tracestate threshold is added as the exact
// float 1/probability rather than rounded stochastically to an integer, so
// rates are exact in expectation and deterministic; a service that reaches
// its series limit has its new series refused (partial success) instead
// of folded into an otel.metric.overflow series.

// SpanDimension is one extra label of the span metrics: a span attribute,
// else a resource attribute, of that name; Default when neither has it
// (nil: the label is left out), as in the connector's dimensions.
type SpanDimension struct {
	Name    string
	Default *string
}

// SpanMetricsOptions configures the span-derived metrics. The zero value is
// the connector's default configuration.
type SpanMetricsOptions struct {
	// Dimensions are added to service.name, span.name, span.kind and
	// status.code.
	Dimensions []SpanDimension
	// Unit of the duration histogram: "ms" (default, as the connector) or
	// "s".
	Unit string
	// Buckets are the histogram's explicit bounds (default the connector's
	// 2, 4, 6, 8, 10, 50, 100, 200, 400, 800, 1000, 1400, 2000, 5000,
	// 10000, 15000 ms).
	Buckets []time.Duration
	// Namespace prefixes the metric names (default traces.span.metrics).
	Namespace string
	// MaxSeriesPerService bounds the distinct label sets of one service
	// (default 1,000); a span that would add one more is refused with a
	// reason.
	MaxSeriesPerService int
	// MaxSeries bounds the label sets of all services (default 100,000).
	MaxSeries int
	// SlowSpan is the duration from which a span's trace is attached as an
	// exemplar to its histogram bucket (default 1s; negative: only error
	// spans get exemplars).
	SlowSpan time.Duration
}

// Defaults of SpanMetricsOptions.
const (
	DefaultSpanMetricsNamespace    = "traces.span.metrics"
	DefaultMaxSpanSeriesPerService = 1000
	DefaultMaxSpanSeries           = 100_000
	DefaultSlowSpan                = time.Second
)

// DefaultSpanBuckets are the spanmetrics connector's default histogram
// bounds.
var DefaultSpanBuckets = []time.Duration{
	2 * time.Millisecond, 4 * time.Millisecond, 6 * time.Millisecond, 8 * time.Millisecond, 10 * time.Millisecond,
	50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond,
	time.Second, 1400 * time.Millisecond, 2 * time.Second, 5 * time.Second, 10 * time.Second, 15 * time.Second,
}

// Label names of the connector's fixed dimensions, before translation.
const (
	spanServiceName = "service.name"
	spanNameAttr    = "span.name"
	spanKindAttr    = "span.kind"
	spanStatusAttr  = "status.code"
)

// SampledSpansMetric counts the spans received per service and span kind,
// each as one whatever its sampling weight: sampled spans over requests is
// the trace coverage SLI.
const SampledSpansMetric = "qsp_traces_sampled_spans_total"

// spanAggregator holds the running totals of every span-metric series.
// It is not safe for concurrent use; TracesHandler serializes it.
type spanAggregator struct {
	opts        SpanMetricsOptions
	divider     float64 // span nanoseconds per histogram unit
	bounds      []float64
	callsName   string
	bucketName  string
	sumName     string
	countName   string
	dimLabels   []string // translated label names of opts.Dimensions
	labelNamer  otlptranslator.LabelNamer
	series      map[string]*spanSeries
	coverage    map[string]*counterSeries
	perService  map[string]int
	key         []byte
	weightCache weightCache
}

// counterSeries is one appended sample series with its running value.
type counterSeries struct {
	ls    labels.Labels
	ref   storage.SeriesRef
	value float64
	lastT int64
	// saved is the value before the current request, for rollback.
	saved   float64
	touched bool
}

// spanSeries is one label set of the span metrics: its calls counter and
// duration histogram.
type spanSeries struct {
	service string
	st      int64 // creation, the created timestamp of its samples (ms)
	calls   counterSeries
	// samples are the histogram's series: buckets (cumulative, the last
	// +Inf), then _sum, then _count.
	samples []counterSeries
	counts  []float64 // per bucket, not cumulative
	sum     float64
	savedC  []float64
	savedS  float64
	touched bool
	isNew   bool
	// Exemplars of this request: the calls counter's (error spans) and
	// each bucket's (error and slow spans), the newest span of each.
	callsEx  spanExemplar
	bucketEx []spanExemplar
	// lastEx are the newest exemplar timestamps of calls and each bucket:
	// the exemplar storage refuses older ones per series.
	lastEx []int64
}

type spanExemplar struct {
	trace pcommon.TraceID
	span  pcommon.SpanID
	value float64
	t     int64 // ms; 0: none
}

func newSpanAggregator(opts SpanMetricsOptions, tr OTLPTranslation) (*spanAggregator, error) {
	unit := cmpOr(opts.Unit, "ms")
	var divider float64
	switch unit {
	case "ms":
		divider = float64(time.Millisecond)
	case "s":
		divider = float64(time.Second)
	default:
		return nil, fmt.Errorf("span metrics: unit %q not supported, want ms or s", opts.Unit)
	}
	opts.Unit = unit
	if opts.Buckets == nil {
		opts.Buckets = DefaultSpanBuckets
	}
	if !slices.IsSorted(opts.Buckets) {
		return nil, errors.New("span metrics: buckets must be in increasing order")
	}
	if len(opts.Buckets) > maxBucketsPerPoint {
		return nil, fmt.Errorf("span metrics: %d buckets exceed the limit of %d", len(opts.Buckets), maxBucketsPerPoint)
	}
	opts.Namespace = cmpOr(opts.Namespace, DefaultSpanMetricsNamespace)
	opts.MaxSeriesPerService = cmpOr(opts.MaxSeriesPerService, DefaultMaxSpanSeriesPerService)
	opts.MaxSeries = cmpOr(opts.MaxSeries, DefaultMaxSpanSeries)
	if opts.SlowSpan == 0 {
		opts.SlowSpan = DefaultSlowSpan
	}
	settings, err := tr.settings()
	if err != nil {
		return nil, err
	}
	mn := otlptranslator.MetricNamer{WithMetricSuffixes: settings.AddMetricSuffixes, UTF8Allowed: settings.AllowUTF8}
	calls, err := mn.Build(otlptranslator.Metric{Name: opts.Namespace + ".calls", Type: otlptranslator.MetricTypeMonotonicCounter})
	if err != nil {
		return nil, fmt.Errorf("span metrics: calls metric name: %w", err)
	}
	hist, err := mn.Build(otlptranslator.Metric{Name: opts.Namespace + ".duration", Unit: unit, Type: otlptranslator.MetricTypeHistogram})
	if err != nil {
		return nil, fmt.Errorf("span metrics: duration metric name: %w", err)
	}
	a := &spanAggregator{
		opts:       opts,
		divider:    divider,
		callsName:  calls,
		bucketName: hist + "_bucket",
		sumName:    hist + "_sum",
		countName:  hist + "_count",
		labelNamer: otlptranslator.LabelNamer{
			UTF8Allowed: settings.AllowUTF8,
			//lint:ignore SA1019 Prometheus' translator still applies it (otlp.label_name_underscore_sanitization defaults to true): same labels need the same setting.
			UnderscoreLabelSanitization: settings.LabelNameUnderscoreSanitization,
			PreserveMultipleUnderscores: settings.LabelNamePreserveMultipleUnderscores,
		},
		series:     map[string]*spanSeries{},
		coverage:   map[string]*counterSeries{},
		perService: map[string]int{},
	}
	for _, b := range opts.Buckets {
		a.bounds = append(a.bounds, float64(b)/divider)
	}
	seen := map[string]bool{}
	for _, fixed := range []string{spanServiceName, spanNameAttr, spanKindAttr, spanStatusAttr} {
		n, _ := a.labelNamer.Build(fixed)
		seen[n] = true
	}
	for i, d := range opts.Dimensions {
		n, err := a.labelNamer.Build(d.Name)
		if err != nil || d.Name == "" {
			return nil, fmt.Errorf("span metrics: dimension %d: invalid name %q", i, d.Name)
		}
		if seen[n] || n == model.JobLabel || n == model.InstanceLabel {
			return nil, fmt.Errorf("span metrics: dimension %q: label %s is already set", d.Name, n)
		}
		seen[n] = true
		a.dimLabels = append(a.dimLabels, n)
	}
	return a, nil
}

func cmpOr[T comparable](v, d T) T {
	var zero T
	if v == zero {
		return d
	}
	return v
}

// weightCache remembers the last tracestate's weight: the spans of one
// trace, consecutive in a batch, share it.
type weightCache struct {
	state  string
	weight float64
	ok     bool
}

// adjustedCountKeys are the span attributes read, in this order, as the
// number of spans a sampled span stands for when its tracestate carries
// none: OpenTelemetry's sampling.adjusted_count, Honeycomb's SampleRate
// and the sample_rate of other SDKs. A value is an integer, a double or a
// numeric string of at least 1.
var adjustedCountKeys = []string{"sampling.adjusted_count", "SampleRate", "sample_rate"}

// spanWeight is the number of spans a sampled span stands for: from its
// W3C tracestate (see stateWeight), else from the first numeric
// adjustedCountKeys attribute, else 1.
func (c *weightCache) spanWeight(span ptrace.Span) float64 {
	if w, ok := c.stateWeight(span.TraceState().AsRaw()); ok {
		return w
	}
	attrs := span.Attributes()
	for _, k := range adjustedCountKeys {
		if v, ok := attrs.Get(k); ok {
			if w, ok := numericWeight(v); ok {
				return w
			}
		}
	}
	return 1
}

// stateWeight is the adjusted count a W3C tracestate gives: 1/p of the
// OTEP 235 threshold (ot=th:...), else 2^n of the older OTEP 168/170
// probability (ot=p:n, n from 0 to 62); ok is false when it gives none.
func (c *weightCache) stateWeight(state string) (float64, bool) {
	if state == "" || !strings.Contains(state, "ot=") {
		return 1, false
	}
	if state == c.state {
		return c.weight, c.ok
	}
	w, ok := 1.0, false
	if ts, err := sampling.NewW3CTraceState(state); err == nil {
		if th, has := ts.OTelValue().TValueThreshold(); has {
			if ac := th.AdjustedCount(); ac >= 1 && !math.IsInf(ac, 0) {
				w, ok = ac, true
			}
		} else if n, has := otelP(state); has {
			w, ok = math.Ldexp(1, n), true
		}
	}
	c.state, c.weight, c.ok = state, w, ok
	return w, ok
}

// otelP returns n of the ot=p:n member of a tracestate (OTEP 168): the
// span was sampled with probability 2^-n. 63 (probability zero) and
// anything out of range give none.
func otelP(state string) (int, bool) {
	for _, member := range strings.Split(state, ",") {
		v, found := strings.CutPrefix(strings.TrimSpace(member), "ot=")
		if !found {
			continue
		}
		for _, kv := range strings.Split(v, ";") {
			if p, found := strings.CutPrefix(kv, "p:"); found {
				n, err := strconv.Atoi(p)
				if err != nil || n < 0 || n > 62 {
					return 0, false
				}
				return n, true
			}
		}
	}
	return 0, false
}

// numericWeight reads an adjusted count attribute: finite and at least 1.
func numericWeight(v pcommon.Value) (float64, bool) {
	var f float64
	switch v.Type() {
	case pcommon.ValueTypeInt:
		f = float64(v.Int())
	case pcommon.ValueTypeDouble:
		f = v.Double()
	case pcommon.ValueTypeStr:
		x, err := strconv.ParseFloat(strings.TrimSpace(v.Str()), 64)
		if err != nil {
			return 0, false
		}
		f = x
	default:
		return 0, false
	}
	if math.IsNaN(f) || math.IsInf(f, 0) || f < 1 {
		return 0, false
	}
	return f, true
}

// spanKindStr and statusCodeStr print enums as the connector does
// (traceutil.SpanKindStr, traceutil.StatusCodeStr).
func spanKindStr(k ptrace.SpanKind) string {
	switch k {
	case ptrace.SpanKindUnspecified:
		return "SPAN_KIND_UNSPECIFIED"
	case ptrace.SpanKindInternal:
		return "SPAN_KIND_INTERNAL"
	case ptrace.SpanKindServer:
		return "SPAN_KIND_SERVER"
	case ptrace.SpanKindClient:
		return "SPAN_KIND_CLIENT"
	case ptrace.SpanKindProducer:
		return "SPAN_KIND_PRODUCER"
	case ptrace.SpanKindConsumer:
		return "SPAN_KIND_CONSUMER"
	}
	return ""
}

func statusCodeStr(c ptrace.StatusCode) string {
	switch c {
	case ptrace.StatusCodeUnset:
		return "STATUS_CODE_UNSET"
	case ptrace.StatusCodeOk:
		return "STATUS_CODE_OK"
	case ptrace.StatusCodeError:
		return "STATUS_CODE_ERROR"
	}
	return ""
}

// resourceIdentity is what the Prometheus translation takes from a
// resource for every series: job and instance.
type resourceIdentity struct {
	service, job, instance string
	attrs                  pcommon.Map
}

func newResourceIdentity(attrs pcommon.Map) (resourceIdentity, bool) {
	sn, ok := attrs.Get(spanServiceName)
	if !ok {
		return resourceIdentity{}, false
	}
	r := resourceIdentity{service: sn.AsString(), job: sn.AsString(), attrs: attrs}
	if ns, ok := attrs.Get("service.namespace"); ok {
		r.job = ns.AsString() + "/" + r.job
	}
	if id, ok := attrs.Get("service.instance.id"); ok {
		r.instance = id.AsString()
	}
	return r, true
}

// dimensionValue looks a dimension up as the connector does: span
// attributes first, then resource attributes, then the default.
func dimensionValue(d SpanDimension, span ptrace.Span, res pcommon.Map) (pcommon.Value, bool) {
	if v, ok := span.Attributes().Get(d.Name); ok {
		return v, true
	}
	if v, ok := res.Get(d.Name); ok {
		return v, true
	}
	if d.Default != nil {
		return pcommon.NewValueStr(*d.Default), true
	}
	return pcommon.Value{}, false
}

// appendValue appends v as Value.AsString prints it, without allocating
// for strings, integers and booleans.
func appendValue(b []byte, v pcommon.Value) []byte {
	switch v.Type() {
	case pcommon.ValueTypeStr:
		return append(b, v.Str()...)
	case pcommon.ValueTypeInt:
		return strconv.AppendInt(b, v.Int(), 10)
	case pcommon.ValueTypeBool:
		return strconv.AppendBool(b, v.Bool())
	}
	return append(b, v.AsString()...)
}

// errSeriesLimit refuses a span whose series would exceed a limit.
type errSeriesLimit struct{ msg string }

func (e *errSeriesLimit) Error() string { return e.msg }

// lookup returns the series of span, creating it (isNew) within the
// limits. The key is the label values in a fixed order, separated by 0
// bytes (label values cannot hold them: invalid UTF-8 is refused before).
func (a *spanAggregator) lookup(r *resourceIdentity, span ptrace.Span, lim Limits, now int64) (*spanSeries, error) {
	k := a.key[:0]
	name, kind, status := span.Name(), spanKindStr(span.Kind()), statusCodeStr(span.Status().Code())
	for _, v := range []string{r.job, r.instance, r.service, name, kind, status} {
		k = append(k, v...)
		k = append(k, 0)
	}
	type dimValue struct {
		v  pcommon.Value
		ok bool
	}
	var buf [16]dimValue
	vals := buf[:0]
	for _, d := range a.opts.Dimensions {
		v, ok := dimensionValue(d, span, r.attrs)
		if ok {
			k = append(k, 1)
			k = appendValue(k, v)
		}
		k = append(k, 0)
		vals = append(vals, dimValue{v, ok})
	}
	a.key = k
	if s, ok := a.series[string(k)]; ok {
		return s, nil
	}
	if n := a.perService[r.service]; n >= a.opts.MaxSeriesPerService {
		return nil, &errSeriesLimit{fmt.Sprintf("service %s has reached its limit of %d span-metric series (traces.spanMetrics.maxSeriesPerService)", quoteTrunc(r.service), a.opts.MaxSeriesPerService)}
	}
	if len(a.series) >= a.opts.MaxSeries {
		return nil, &errSeriesLimit{fmt.Sprintf("the limit of %d span-metric series is reached (traces.spanMetrics.maxSeries)", a.opts.MaxSeries)}
	}
	b := labels.NewScratchBuilder(8 + len(vals))
	b.Add(model.JobLabel, r.job)
	if r.instance != "" {
		b.Add(model.InstanceLabel, r.instance)
	}
	b.Add(a.label(spanServiceName), r.service)
	b.Add(a.label(spanNameAttr), name)
	b.Add(a.label(spanKindAttr), kind)
	b.Add(a.label(spanStatusAttr), status)
	for i, v := range vals {
		if v.ok {
			b.Add(a.dimLabels[i], v.v.AsString())
		}
	}
	b.Sort()
	base := b.Labels()
	if err := a.check(base, lim); err != nil {
		return nil, err
	}
	s := &spanSeries{
		service:  r.service,
		st:       now - 1, // the zero sample is at now-1 or later
		isNew:    true,
		samples:  make([]counterSeries, len(a.bounds)+3),
		counts:   make([]float64, len(a.bounds)+1),
		bucketEx: make([]spanExemplar, len(a.bounds)+1),
		lastEx:   make([]int64, len(a.bounds)+2),
	}
	lb := labels.NewBuilder(base)
	s.calls.ls = lb.Set(model.MetricNameLabel, a.callsName).Labels()
	lb.Set(model.MetricNameLabel, a.bucketName)
	for i := range len(a.bounds) + 1 {
		le := "+Inf"
		if i < len(a.bounds) {
			le = strconv.FormatFloat(a.bounds[i], 'f', -1, 64)
		}
		s.samples[i].ls = lb.Set(labels.BucketLabel, le).Labels()
	}
	lb.Del(labels.BucketLabel)
	s.samples[len(a.bounds)+1].ls = lb.Set(model.MetricNameLabel, a.sumName).Labels()
	s.samples[len(a.bounds)+2].ls = lb.Set(model.MetricNameLabel, a.countName).Labels()
	a.series[string(k)] = s
	a.perService[r.service]++
	return s, nil
}

func (a *spanAggregator) label(attr string) string {
	n, _ := a.labelNamer.Build(attr)
	return n
}

// check applies the receiver's label limits and validity rules.
func (a *spanAggregator) check(ls labels.Labels, lim Limits) error {
	if err := checkLabels(ls, lim); err != nil {
		return &errSeriesLimit{err.Error()}
	}
	var bad string
	ls.Range(func(l labels.Label) {
		if bad == "" && !utf8.ValidString(l.Value) {
			bad = l.Name
		}
	})
	if bad != "" {
		return &errSeriesLimit{"label " + bad + " is not valid UTF-8"}
	}
	return nil
}

// coverageSeries returns the sampled-spans counter of a service and kind.
func (a *spanAggregator) coverageSeries(r *resourceIdentity, kind string) *counterSeries {
	k := r.job + "\x00" + r.instance + "\x00" + r.service + "\x00" + kind
	if c, ok := a.coverage[k]; ok {
		return c
	}
	b := labels.NewScratchBuilder(5)
	b.Add(model.MetricNameLabel, SampledSpansMetric)
	b.Add(model.JobLabel, r.job)
	if r.instance != "" {
		b.Add(model.InstanceLabel, r.instance)
	}
	b.Add(a.label(spanServiceName), r.service)
	b.Add(a.label(spanKindAttr), kind)
	b.Sort()
	c := &counterSeries{ls: b.Labels()}
	a.coverage[k] = c
	return c
}

// add folds one span into s at weight w. slowOrBad says whether its
// trace becomes an exemplar.
func (a *spanAggregator) add(s *spanSeries, span ptrace.Span, w float64, endMs int64) {
	if !s.touched {
		s.touched = true
		s.calls.saved = s.calls.value
		s.savedC = append(s.savedC[:0], s.counts...)
		s.savedS = s.sum
	}
	d := 0.0
	if end, start := span.EndTimestamp(), span.StartTimestamp(); end > start {
		d = float64(end-start) / a.divider
	}
	s.calls.value += w
	// The bucket is the first bound >= d, as the connector's explicit
	// histogram (sort.SearchFloat64s).
	i, _ := slices.BinarySearch(a.bounds, d)
	s.counts[i] += w
	s.sum += d * w
	isErr := span.Status().Code() == ptrace.StatusCodeError
	slow := a.opts.SlowSpan > 0 && d*a.divider >= float64(a.opts.SlowSpan)
	if !isErr && !slow {
		return
	}
	ex := spanExemplar{trace: span.TraceID(), span: span.SpanID(), value: d, t: endMs}
	if isErr && endMs >= s.callsEx.t {
		s.callsEx = ex
	}
	if endMs >= s.bucketEx[i].t {
		s.bucketEx[i] = ex
	}
}

// appendSeries appends the running totals of s at t (ms), with this
// request's exemplars, and clears them.
func (a *spanAggregator) appendSeries(app storage.AppenderV2, s *spanSeries, t int64) error {
	t = max(t, s.calls.lastT+1)
	if s.calls.lastT == 0 {
		// A new series starts with 0 just before its first value, as the
		// connector's first export of a cumulative sum does, so that
		// increase() and rate() count the first spans too.
		if err := a.appendZeros(app, s, t-1); err != nil {
			return err
		}
	}
	var exBuf [1]exemplar.Exemplar
	ex := func(e *spanExemplar, last *int64) []exemplar.Exemplar {
		if e.t == 0 {
			return nil
		}
		ts := max(min(e.t, t), *last+1)
		*last = ts
		exBuf[0] = exemplar.Exemplar{
			Labels: labels.FromStrings("span_id", e.span.String(), "trace_id", e.trace.String()),
			Value:  e.value, Ts: ts, HasTs: true,
		}
		*e = spanExemplar{}
		return exBuf[:]
	}
	var err error
	s.calls.ref, err = appendOne(app, &s.calls, s.st, t, s.calls.value, storage.AOptions{MetricFamilyName: a.callsName, Exemplars: ex(&s.callsEx, &s.lastEx[0])})
	if err != nil {
		return err
	}
	cum := 0.0
	for i := range s.counts {
		cum += s.counts[i]
		if s.samples[i].ref, err = appendOne(app, &s.samples[i], s.st, t, cum, storage.AOptions{MetricFamilyName: a.bucketName, Exemplars: ex(&s.bucketEx[i], &s.lastEx[i+1])}); err != nil {
			return err
		}
	}
	n := len(s.counts)
	if s.samples[n].ref, err = appendOne(app, &s.samples[n], s.st, t, s.sum, storage.AOptions{MetricFamilyName: a.sumName}); err != nil {
		return err
	}
	_, err = appendOne(app, &s.samples[n+1], s.st, t, cum, storage.AOptions{MetricFamilyName: a.countName})
	return err
}

func (a *spanAggregator) appendZeros(app storage.AppenderV2, s *spanSeries, t int64) error {
	var err error
	if s.calls.ref, err = appendOne(app, &s.calls, s.st, t, 0, storage.AOptions{MetricFamilyName: a.callsName}); err != nil {
		return err
	}
	for i := range s.samples {
		family := a.bucketName
		switch i {
		case len(s.counts):
			family = a.sumName
		case len(s.counts) + 1:
			family = a.countName
		}
		if s.samples[i].ref, err = appendOne(app, &s.samples[i], s.st, t, 0, storage.AOptions{MetricFamilyName: family}); err != nil {
			return err
		}
	}
	return nil
}

// appendOne appends one sample of c. Exemplars the storage refuses
// (storage.AppendPartialError) do not fail the sample.
func appendOne(app storage.AppenderV2, c *counterSeries, st, t int64, v float64, opts storage.AOptions) (storage.SeriesRef, error) {
	c.lastT = t
	ref, err := app.Append(c.ref, c.ls, st, t, v, nil, nil, opts)
	if err != nil && errors.Is(err, (*storage.AppendPartialError)(nil)) {
		err = nil
	}
	if err != nil {
		return 0, fmt.Errorf("append %s: %w", c.ls.Get(model.MetricNameLabel), err)
	}
	return ref, nil
}

// rollback restores the series touched by a request whose commit failed,
// and forgets the ones it created.
func (a *spanAggregator) rollback(touched []*spanSeries, cov []*counterSeries) {
	for _, s := range touched {
		if s.isNew {
			for k, v := range a.series {
				if v == s {
					delete(a.series, k)
					a.perService[s.service]--
					break
				}
			}
			continue
		}
		s.calls.value = s.calls.saved
		copy(s.counts, s.savedC)
		s.sum = s.savedS
		s.callsEx = spanExemplar{}
		clear(s.bucketEx)
	}
	for _, c := range cov {
		c.value = c.saved
	}
}
