package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/timestamp"
	"github.com/prometheus/prometheus/storage"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
)

// TracesHandler receives OTLP/HTTP traces (ExportTraceServiceRequest as
// protobuf or JSON, optionally gzip-compressed) and turns every span into
// the span metrics of the spanmetrics connector (spanmetrics.go), appended
// to Storage with the request: a 200 means the derived samples are
// committed. Spans themselves are not stored; the trace and span IDs of
// error and slow spans are kept as exemplars of their samples.
//
// It shares the metrics receiver's limits, budget and answers: 200 with
// an ExportTraceServiceResponse whose partial_success counts the spans not
// counted and says why (invalid IDs, timestamps too far in the future or
// the past, series limits); 400 for malformed payloads; 413 and 415 for
// oversize bodies and unsupported encodings; 503 for storage faults.
type TracesHandler struct {
	opts    ReceiverOptions
	maxAge  time.Duration
	log     *slog.Logger
	mu      sync.Mutex // serializes agg and the appends of its totals
	agg     *spanAggregator
	metrics tracesMetrics
}

type tracesMetrics struct {
	requests *prometheus.CounterVec
	spans    prometheus.Counter
	rejected *prometheus.CounterVec
	series   prometheus.GaugeFunc
}

// Reasons a span is not counted, the reason label of
// qsp_traces_spans_rejected_total.
const (
	spanRejectInvalidID   = "invalid_id"
	spanRejectTime        = "timestamp"
	spanRejectNoService   = "no_service_name"
	spanRejectSeriesLimit = "series_limit"
)

// NewTracesHandler returns the OTLP/HTTP traces receiver.
func NewTracesHandler(opts ReceiverOptions) (*TracesHandler, error) {
	opts, err := opts.withDefaults("traces")
	if err != nil {
		return nil, err
	}
	agg, err := newSpanAggregator(opts.SpanMetrics, opts.OTLP)
	if err != nil {
		return nil, err
	}
	maxAge := opts.OTLP.MaxAge
	switch {
	case maxAge == 0:
		maxAge = DefaultOTLPMaxAge
	case maxAge < 0:
		maxAge = time.Duration(math.MaxInt64)
	}
	h := &TracesHandler{opts: opts, maxAge: maxAge, log: opts.Logger, agg: agg}
	h.metrics = tracesMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "qsp_traces_requests_total",
			Help: "OTLP/HTTP traces requests received, by HTTP status code.",
		}, []string{"code"}),
		spans: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "qsp_traces_spans_received_total",
			Help: "OTLP spans received.",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "qsp_traces_spans_rejected_total",
			Help: "OTLP spans not counted in the span metrics (reported as partial success), by reason.",
		}, []string{"reason"}),
		series: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "qsp_span_metrics_series",
			Help: "Active span-metric label sets (each is a calls counter and a duration histogram).",
		}, func() float64 {
			h.mu.Lock()
			defer h.mu.Unlock()
			return float64(len(h.agg.series))
		}),
	}
	for _, r := range []string{spanRejectInvalidID, spanRejectTime, spanRejectNoService, spanRejectSeriesLimit} {
		h.metrics.rejected.WithLabelValues(r)
	}
	for _, c := range []prometheus.Collector{h.metrics.requests, h.metrics.spans, h.metrics.rejected, h.metrics.series} {
		if err := opts.Registerer.Register(c); err != nil {
			return nil, fmt.Errorf("traces: register metrics: %w", err)
		}
	}
	return h, nil
}

// ServeHTTP implements http.Handler.
func (h *TracesHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ct, _ := mediaType(r.Header.Get("Content-Type"))
	res, err := h.serve(r, ct)
	if err != nil {
		status := writeError(w, err)
		h.metrics.requests.WithLabelValues(statusLabel(status)).Inc()
		level := slog.LevelWarn
		if status >= 500 {
			level = slog.LevelError
		}
		h.log.Log(r.Context(), level, "traces request rejected", "status", status, "remote", r.RemoteAddr, "err", err)
		return
	}
	h.metrics.spans.Add(float64(res.points))
	resp := ptraceotlp.NewExportResponse()
	if len(res.first) > 0 {
		resp.PartialSuccess().SetRejectedSpans(int64(res.rejected))
		resp.PartialSuccess().SetErrorMessage(fmt.Sprintf("%d of %d spans rejected: %s", res.rejected, res.points, strings.Join(res.first, "; ")))
		h.log.Warn("spans rejected", "remote", r.RemoteAddr, "spans", res.points, "rejected", res.rejected, "first", res.first)
	}
	if err := writeOTLPResponse(w, ct, resp); err != nil {
		writeError(w, err)
		return
	}
	h.metrics.requests.WithLabelValues("200").Inc()
}

func (h *TracesHandler) serve(r *http.Request, ct string) (*otlpResult, error) {
	enc, err := checkOTLPRequest(r, ct)
	if err != nil {
		return nil, err
	}
	res := h.opts.Budget.Reserve("traces")
	defer res.Release()
	lim := h.opts.Limits
	body, err := readOTLPBody(r, enc, lim, &res)
	if err != nil {
		return nil, err
	}
	td, err := decodeTraces(body, ct, lim, &res)
	if err != nil {
		return nil, err
	}
	return h.consume(r.Context(), td)
}

// decodeTraces decodes an ExportTraceServiceRequest after a pre-scan that
// refuses requests over the limits (spans count against
// MaxSeriesPerRequest) and takes what pdata will allocate from res.
func decodeTraces(body []byte, ct string, lim Limits, res *Reservation) (ptrace.Traces, error) {
	var (
		scan otlpScan
		err  error
	)
	if ct == contentTypeJSON {
		if scan, err = scanOTLPJSON(body); err != nil {
			return ptrace.Traces{}, errorf(http.StatusBadRequest, "malformed OTLP JSON: %v", err)
		}
	} else if scan, err = scanTracesProto(body, lim); err != nil {
		var le *limitError
		if errors.As(err, &le) {
			return ptrace.Traces{}, errorf(http.StatusRequestEntityTooLarge, "request has more than %d spans; send smaller batches", lim.MaxSeriesPerRequest)
		}
		return ptrace.Traces{}, errorf(http.StatusBadRequest, "malformed OTLP protobuf: %v", err)
	}
	if err := res.Take(scan.cost); err != nil {
		return ptrace.Traces{}, err
	}
	req := ptraceotlp.NewExportRequest()
	if ct == contentTypeJSON {
		if err := req.UnmarshalJSON(body); err != nil {
			return ptrace.Traces{}, errorf(http.StatusBadRequest, "malformed OTLP JSON: %v", err)
		}
	} else if err := req.UnmarshalProto(body); err != nil {
		return ptrace.Traces{}, errorf(http.StatusBadRequest, "malformed OTLP protobuf: %v", err)
	}
	td := req.Traces()
	if n := td.SpanCount(); n > lim.MaxSeriesPerRequest {
		return ptrace.Traces{}, errorf(http.StatusRequestEntityTooLarge, "request has %d spans, over the limit of %d; send smaller batches", n, lim.MaxSeriesPerRequest)
	}
	return td, nil
}

// consume counts the spans of td into the span metrics and appends the
// new totals of every series they touched in one transaction. Spans that
// cannot be counted are reported in the result; an error means nothing of
// td was counted.
func (h *TracesHandler) consume(ctx context.Context, td ptrace.Traces) (*otlpResult, error) {
	res := &otlpResult{points: td.SpanCount()}
	now := h.opts.Now()
	nowMs := timestamp.FromTime(now)
	maxT := pcommon.NewTimestampFromTime(now.Add(maxAheadTime))
	minT := pcommon.Timestamp(0)
	if h.maxAge < time.Duration(now.UnixNano()) {
		minT = pcommon.NewTimestampFromTime(now.Add(-h.maxAge))
	}
	if m := h.opts.minTimestamp(now); m > 0 {
		minT = max(minT, pcommon.Timestamp(m)*pcommon.Timestamp(time.Millisecond))
	}
	reject := func(reason string, msg func() string) {
		h.metrics.rejected.WithLabelValues(reason).Inc()
		res.reject(1, msg)
	}

	h.mu.Lock()
	defer h.mu.Unlock()
	a := h.agg
	var touched []*spanSeries
	var cov []*counterSeries
	rss := td.ResourceSpans()
	for i := range rss.Len() {
		rs := rss.At(i)
		id, ok := newResourceIdentity(rs.Resource().Attributes())
		// Spans of one resource mostly share a kind: the coverage series
		// is looked up again only when it changes.
		var lastCov *counterSeries
		var lastKind ptrace.SpanKind
		sss := rs.ScopeSpans()
		if !ok {
			if n := sss.Len(); n > 0 {
				for j := range n {
					for range sss.At(j).Spans().Len() {
						reject(spanRejectNoService, func() string { return fmt.Sprintf("resource %d: no service.name attribute", i) })
					}
				}
			}
			continue
		}
		for j := range sss.Len() {
			spans := sss.At(j).Spans()
			for k := range spans.Len() {
				span := spans.At(k)
				if why := h.invalidSpan(span, minT, maxT); why != 0 {
					h.rejectSpan(res, why, &id, span)
					continue
				}
				s, err := a.lookup(&id, span, h.opts.Limits, nowMs)
				if err != nil {
					h.metrics.rejected.WithLabelValues(spanRejectSeriesLimit).Inc()
					res.reject(1, func() string { return spanWhere(&id, span) + ": " + err.Error() })
					continue
				}
				if !s.touched {
					touched = append(touched, s)
				}
				a.add(s, span, a.weightCache.spanWeight(span), int64(span.EndTimestamp())/int64(time.Millisecond))
				if span.Kind() != lastKind || lastCov == nil {
					lastKind, lastCov = span.Kind(), a.coverageSeries(&id, spanKindStr(span.Kind()))
				}
				c := lastCov
				if !c.touched {
					c.touched, c.saved = true, c.value
					cov = append(cov, c)
				}
				c.value++
			}
		}
	}
	if len(touched) == 0 && len(cov) == 0 {
		return res, nil
	}
	err := h.appendTouched(ctx, touched, cov, nowMs)
	for _, s := range touched {
		s.touched, s.isNew = false, false
	}
	for _, c := range cov {
		c.touched = false
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

// Why a span is not counted, from invalidSpan.
const (
	spanOK = iota
	spanNoTraceID
	spanNoSpanID
	spanFuture
	spanPast
	spanEndBeforeStart
)

// invalidSpan says why span cannot be counted, or spanOK. It formats
// nothing: it runs for every span.
func (h *TracesHandler) invalidSpan(span ptrace.Span, minT, maxT pcommon.Timestamp) int {
	switch {
	case span.TraceID().IsEmpty():
		return spanNoTraceID
	case span.SpanID().IsEmpty():
		return spanNoSpanID
	case span.EndTimestamp() > maxT:
		return spanFuture
	case span.EndTimestamp() < minT:
		return spanPast
	case span.EndTimestamp() < span.StartTimestamp():
		return spanEndBeforeStart
	}
	return spanOK
}

// rejectSpan counts a refused span and, for the first few, says why.
func (h *TracesHandler) rejectSpan(res *otlpResult, why int, id *resourceIdentity, span ptrace.Span) {
	reason := spanRejectTime
	if why == spanNoTraceID || why == spanNoSpanID {
		reason = spanRejectInvalidID
	}
	h.metrics.rejected.WithLabelValues(reason).Inc()
	res.reject(1, func() string {
		switch why {
		case spanNoTraceID:
			return fmt.Sprintf("service %s span %s: trace_id is empty or all zeros", quoteTrunc(id.service), quoteTrunc(span.Name()))
		case spanNoSpanID:
			return spanWhere(id, span) + ": span_id is empty or all zeros"
		case spanFuture:
			return spanWhere(id, span) + ": end time " + otlpTime(span.EndTimestamp()) + " is more than " + maxAheadTime.String() + " in the future"
		case spanPast:
			return spanWhere(id, span) + ": end time " + otlpTime(span.EndTimestamp()) + " is more than " + h.maxAge.String() + " in the past"
		}
		return spanWhere(id, span) + ": end time is before start time"
	})
}

func spanWhere(id *resourceIdentity, span ptrace.Span) string {
	return fmt.Sprintf("service %s span %s (trace %s)", quoteTrunc(id.service), quoteTrunc(span.Name()), span.TraceID())
}

func (h *TracesHandler) appendTouched(ctx context.Context, touched []*spanSeries, cov []*counterSeries, nowMs int64) error {
	a := h.agg
	app := h.opts.Storage.AppenderV2(ctx)
	fail := func(err error) error {
		_ = app.Rollback()
		a.rollback(touched, cov)
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	for _, s := range touched {
		if err := a.appendSeries(app, s, nowMs); err != nil {
			return fail(err)
		}
	}
	for _, c := range cov {
		t := max(nowMs, c.lastT+1)
		if c.lastT == 0 {
			// Starts at 0, as the span series do.
			ref, err := appendOne(app, c, 0, t-1, 0, storage.AOptions{MetricFamilyName: SampledSpansMetric})
			if err != nil {
				return fail(err)
			}
			c.ref = ref
		}
		ref, err := appendOne(app, c, 0, t, c.value, storage.AOptions{MetricFamilyName: SampledSpansMetric})
		if err != nil {
			return fail(err)
		}
		c.ref = ref
	}
	if err := app.Commit(); err != nil {
		a.rollback(touched, cov)
		return fmt.Errorf("%w: commit: %w", ErrUnavailable, err)
	}
	return nil
}
