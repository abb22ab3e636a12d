package telemetry

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/otlptranslator"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/timestamp"
	"github.com/prometheus/prometheus/storage"
	prw "github.com/prometheus/prometheus/storage/remote/otlptranslator/prometheusremotewrite"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
)

// OTLPTranslation configures how OTLP metrics become Prometheus series. The
// zero value is Prometheus' default otlp: configuration, so the same
// metrics get the same names and labels as in a Prometheus that receives
// them: suffixes (_total, _seconds, _bucket…), underscore escaping, job and
// instance from service.namespace/service.name/service.instance.id, and the
// other resource attributes in target_info.
type OTLPTranslation struct {
	// TranslationStrategy is one of Prometheus' otlp.translation_strategy
	// values (default UnderscoreEscapingWithSuffixes).
	TranslationStrategy string
	// PromoteResourceAttributes are copied to a label on every series.
	PromoteResourceAttributes []string
	// PromoteAllResourceAttributes promotes all but IgnoreResourceAttributes.
	PromoteAllResourceAttributes bool
	IgnoreResourceAttributes     []string
	// KeepIdentifyingResourceAttributes keeps service.name and friends in
	// target_info as well as in job/instance.
	KeepIdentifyingResourceAttributes bool
	// PromoteScopeMetadata adds otel_scope_* labels.
	PromoteScopeMetadata bool
	// MaxAge rejects data points older than this (default 1h; negative
	// disables). The TSDB refuses samples more than an hour behind its
	// newest anyway, unless an out-of-order window is configured, and the
	// translator writes a target_info sample every 2.5 minutes between a
	// resource's oldest and newest points: without a bound, one point dated
	// 1970 would make a request write millions of samples.
	MaxAge time.Duration
}

// Defaults and bounds of OTLP translation.
const (
	DefaultOTLPMaxAge = time.Hour
	// maxBucketsPerPoint bounds the buckets (or quantiles) of one
	// histogram (or summary) point: each becomes a series.
	maxBucketsPerPoint = 512
)

func (t OTLPTranslation) settings() (prw.Settings, error) {
	strategy := otlptranslator.TranslationStrategyOption(t.TranslationStrategy)
	switch strategy {
	case "":
		strategy = otlptranslator.UnderscoreEscapingWithSuffixes
	case otlptranslator.UnderscoreEscapingWithSuffixes, otlptranslator.UnderscoreEscapingWithoutSuffixes,
		otlptranslator.NoUTF8EscapingWithSuffixes, otlptranslator.NoTranslation:
	default:
		return prw.Settings{}, fmt.Errorf("otlp: unknown translation strategy %q", t.TranslationStrategy)
	}
	if t.PromoteAllResourceAttributes && len(t.PromoteResourceAttributes) > 0 {
		return prw.Settings{}, errors.New("otlp: PromoteAllResourceAttributes and PromoteResourceAttributes are exclusive")
	}
	cfg := config.DefaultOTLPConfig
	cfg.TranslationStrategy = strategy
	cfg.PromoteResourceAttributes = t.PromoteResourceAttributes
	cfg.PromoteAllResourceAttributes = t.PromoteAllResourceAttributes
	cfg.IgnoreResourceAttributes = t.IgnoreResourceAttributes
	cfg.KeepIdentifyingResourceAttributes = t.KeepIdentifyingResourceAttributes
	cfg.PromoteScopeMetadata = t.PromoteScopeMetadata
	return prw.Settings{
		AddMetricSuffixes:                    strategy.ShouldAddSuffixes(),
		AllowUTF8:                            !strategy.ShouldEscape(),
		PromoteResourceAttributes:            prw.NewPromoteResourceAttributes(cfg),
		KeepIdentifyingResourceAttributes:    cfg.KeepIdentifyingResourceAttributes,
		PromoteScopeMetadata:                 cfg.PromoteScopeMetadata,
		LookbackDelta:                        DefaultLookbackDelta,
		LabelNameUnderscoreSanitization:      cfg.LabelNameUnderscoreSanitization,
		LabelNamePreserveMultipleUnderscores: cfg.LabelNamePreserveMultipleUnderscores,
	}, nil
}

// OTLPHandler receives OTLP/HTTP metrics (ExportMetricsServiceRequest as
// protobuf or JSON, optionally gzip-compressed) and stores them through
// Prometheus' own OTLP translator.
//
// Delta sums and delta explicit-bucket histograms are turned into
// cumulative series by an in-memory accumulator, one running total per
// series identity, so PromQL's rate and increase work on them. Totals
// restart at zero when QSP restarts, which PromQL reads as a counter reset:
// increase() over the restart stays exact.
//
// Responses follow OTLP/HTTP: 200 with an ExportMetricsServiceResponse in
// the request's encoding, whose partial_success counts the data points
// that were not stored and says why; 400 for malformed payloads; 413 and
// 415 for oversize bodies and unsupported encodings; 503 for storage faults
// (retryable). Error bodies are JSON {"error": "..."}.
type OTLPHandler struct {
	opts       ReceiverOptions
	settings   prw.Settings
	maxAge     time.Duration
	log        *slog.Logger
	converters sync.Pool
	deltas     *deltaAccumulator
	metrics    otlpMetrics
}

type otlpMetrics struct {
	requests *prometheus.CounterVec
	points   prometheus.Counter
	rejected prometheus.Counter
}

// NewOTLPHandler returns the OTLP/HTTP metrics receiver.
func NewOTLPHandler(opts ReceiverOptions) (*OTLPHandler, error) {
	opts, err := opts.withDefaults("otlp")
	if err != nil {
		return nil, err
	}
	settings, err := opts.OTLP.settings()
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
	h := &OTLPHandler{
		opts:     opts,
		settings: settings,
		maxAge:   maxAge,
		log:      opts.Logger,
		deltas:   newDeltaAccumulator(opts.Now),
	}
	h.converters.New = func() any { return prw.NewPrometheusConverter(nil) }
	h.metrics = otlpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "qsp_otlp_requests_total",
			Help: "OTLP/HTTP metrics requests received, by HTTP status code.",
		}, []string{"code"}),
		points: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "qsp_otlp_data_points_received_total",
			Help: "OTLP data points received.",
		}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "qsp_otlp_data_points_rejected_total",
			Help: "OTLP data points not stored (reported as partial success).",
		}),
	}
	for _, c := range []prometheus.Collector{h.metrics.requests, h.metrics.points, h.metrics.rejected} {
		if err := opts.Registerer.Register(c); err != nil {
			return nil, fmt.Errorf("otlp: register metrics: %w", err)
		}
	}
	return h, nil
}

const (
	contentTypeProtobuf = "application/x-protobuf"
	contentTypeJSON     = "application/json"
)

// ServeHTTP implements http.Handler.
func (h *OTLPHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ct, _ := mediaType(r.Header.Get("Content-Type"))
	res, err := h.serve(r, ct)
	if err != nil {
		status := writeError(w, err)
		h.metrics.requests.WithLabelValues(statusLabel(status)).Inc()
		level := slog.LevelWarn
		if status >= 500 {
			level = slog.LevelError
		}
		h.log.Log(r.Context(), level, "otlp request rejected", "status", status, "remote", r.RemoteAddr, "err", err)
		return
	}
	h.metrics.points.Add(float64(res.points))
	h.metrics.rejected.Add(float64(res.rejected))
	resp := pmetricotlp.NewExportResponse()
	if len(res.first) > 0 {
		resp.PartialSuccess().SetRejectedDataPoints(int64(res.rejected))
		resp.PartialSuccess().SetErrorMessage(res.message())
		h.log.Warn("otlp data points rejected", "remote", r.RemoteAddr, "points", res.points, "rejected", res.rejected, "first", res.first)
	}
	if err := writeOTLPResponse(w, ct, resp); err != nil {
		writeError(w, err)
		return
	}
	h.metrics.requests.WithLabelValues("200").Inc()
}

func (h *OTLPHandler) serve(r *http.Request, ct string) (*otlpResult, error) {
	enc, err := checkOTLPRequest(r, ct)
	if err != nil {
		return nil, err
	}
	// Everything this request holds (body, decompressed body, decoded
	// request) is taken from the shared budget before it is allocated
	// and given back when the request is answered.
	res := h.opts.Budget.Reserve("otlp")
	defer res.Release()
	lim := h.opts.Limits
	body, err := readOTLPBody(r, enc, lim, &res)
	if err != nil {
		return nil, err
	}
	md, points, err := decodeOTLP(body, ct, lim, &res)
	if err != nil {
		return nil, err
	}
	if points > lim.MaxSeriesPerRequest {
		return nil, errorf(http.StatusRequestEntityTooLarge, "request has %d data points, over the limit of %d; send smaller batches", points, lim.MaxSeriesPerRequest)
	}
	return h.store(r.Context(), md, points)
}

// decodeOTLP decodes an ExportMetricsServiceRequest after a pre-scan that
// refuses requests over the limits and takes what pdata will allocate from
// res. It returns the request's data points.
func decodeOTLP(body []byte, ct string, lim Limits, res *Reservation) (pmetric.Metrics, int, error) {
	var (
		scan otlpScan
		err  error
	)
	if ct == contentTypeJSON {
		if scan, err = scanOTLPJSON(body); err != nil {
			return pmetric.Metrics{}, 0, errorf(http.StatusBadRequest, "malformed OTLP JSON: %v", err)
		}
	} else if scan, err = scanOTLPProto(body, lim); err != nil {
		var le *limitError
		if errors.As(err, &le) {
			return pmetric.Metrics{}, 0, errorf(http.StatusRequestEntityTooLarge, "%v; send smaller batches", err)
		}
		return pmetric.Metrics{}, 0, errorf(http.StatusBadRequest, "malformed OTLP protobuf: %v", err)
	}
	if err := res.Take(scan.cost); err != nil {
		return pmetric.Metrics{}, 0, err
	}
	req := pmetricotlp.NewExportRequest()
	if ct == contentTypeJSON {
		if err := req.UnmarshalJSON(body); err != nil {
			return pmetric.Metrics{}, 0, errorf(http.StatusBadRequest, "malformed OTLP JSON: %v", err)
		}
	} else if err := req.UnmarshalProto(body); err != nil {
		return pmetric.Metrics{}, 0, errorf(http.StatusBadRequest, "malformed OTLP protobuf: %v", err)
	}
	md := req.Metrics()
	if ct == contentTypeJSON {
		// The JSON scan does not count points.
		return md, md.DataPointCount(), nil
	}
	return md, scan.points, nil
}

// gunzip decompresses body through a reader bounded by limit, taking each
// growth of the output from res before allocating it (gzip expands up to
// 1032:1, and its size trailer is not to be trusted).
func gunzip(body []byte, limit int64, res *Reservation) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "malformed gzip body: %v", err)
	}
	// The trailer's size (mod 2^32) sizes the output for an honest
	// single-member body in one allocation; a lie only costs doubling.
	var out []byte
	if n := len(body); n >= 18 {
		if size := int64(binary.LittleEndian.Uint32(body[n-4:])); size < limit {
			if err := res.Take(size + 1); err != nil {
				return nil, err
			}
			out = make([]byte, 0, size+1)
		}
	}
	out, err = readLimited(zr, out, limit, res)
	var he *httpError
	switch {
	case errors.Is(err, errOverLimit):
		return nil, errorf(http.StatusRequestEntityTooLarge, "decompressed body exceeds the limit of %d bytes", limit)
	case errors.As(err, &he):
		return nil, err
	case err != nil:
		return nil, errorf(http.StatusBadRequest, "malformed gzip body: %v", err)
	}
	return out, nil
}

// otlpResult counts the data points of one request and keeps the first few
// reasons for rejecting some.
type otlpResult struct {
	points, rejected int
	first            []string
}

// reject counts n rejected points; msg is called only while fewer than
// maxRejectMessages reasons are kept, so a request of thousands of bad
// points does not format thousands of messages.
func (r *otlpResult) reject(n int, msg func() string) {
	r.rejected += n
	if len(r.first) < maxRejectMessages {
		r.first = append(r.first, msg())
	}
}

func (r *otlpResult) message() string {
	return fmt.Sprintf("%d of %d data points rejected: %s", r.rejected, r.points, strings.Join(r.first, "; "))
}

// store validates md, turns deltas into cumulative values and appends the
// result in one transaction.
func (h *OTLPHandler) store(ctx context.Context, md pmetric.Metrics, points int) (*otlpResult, error) {
	res := &otlpResult{points: points}
	now := h.opts.Now()
	maxT := pcommon.NewTimestampFromTime(now.Add(maxAheadTime))
	minT := pcommon.Timestamp(0)
	if h.maxAge < time.Duration(now.UnixNano()) {
		minT = pcommon.NewTimestampFromTime(now.Add(-h.maxAge))
	}
	// Never older than the retention, even with MaxAge disabled.
	if m := h.opts.minTimestamp(now); m > 0 {
		minT = max(minT, pcommon.Timestamp(m)*pcommon.Timestamp(time.Millisecond))
	}

	var txn *deltaTxn
	if hasDelta(md) {
		// Requests with deltas are serialized, so running totals are
		// appended in the order they were computed.
		txn = h.deltas.begin(now)
		defer txn.end()
	}
	h.filter(md, minT, maxT, txn, res)

	app := &otlpAppender{
		AppenderV2: h.opts.Storage.AppenderV2(ctx),
		limits:     h.opts.Limits,
		acceptNaN:  h.opts.AcceptNonFiniteValues,
		maxT:       timestamp.FromTime(now.Add(maxAheadTime)),
		res:        res,
	}
	conv := h.converters.Get().(*prw.PrometheusConverter)
	conv.Reset(app)
	annots, err := conv.FromMetrics(ctx, md, h.settings)
	conv.Reset(nil)
	h.converters.Put(conv)
	if app.fault != nil {
		_ = app.Rollback()
		return nil, fmt.Errorf("%w: append: %w", ErrUnavailable, app.fault)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		_ = app.Rollback()
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if err != nil {
		// filter removed every metric the translator is known to refuse;
		// anything else it refuses is reported, without a count we do not
		// know, as OTLP allows.
		res.reject(0, func() string { return "translate: " + err.Error() })
	}
	if err := app.Commit(); err != nil {
		return nil, fmt.Errorf("%w: commit: %w", ErrUnavailable, err)
	}
	if txn != nil {
		txn.commit()
	}
	if ws, _ := annots.AsStrings("", 0, 0); len(ws) > 0 {
		h.log.Debug("otlp translation warnings", "warnings", ws)
	}
	return res, nil
}

// otlpTime prints an OTLP timestamp (nanoseconds since the epoch, as
// uint64) as RFC 3339 when it is a date before the year 2262 that
// time.Time holds, else as the raw number: a value past int64 must not
// print as an overflowed date in the 1600s.
func otlpTime(ts pcommon.Timestamp) string {
	if ts > math.MaxInt64 {
		return strconv.FormatUint(uint64(ts), 10) + "ns since the epoch"
	}
	return ts.AsTime().UTC().Format(time.RFC3339Nano)
}

// hasDelta reports whether md has any delta sum or histogram.
func hasDelta(md pmetric.Metrics) bool {
	rms := md.ResourceMetrics()
	for i := range rms.Len() {
		sms := rms.At(i).ScopeMetrics()
		for j := range sms.Len() {
			ms := sms.At(j).Metrics()
			for k := range ms.Len() {
				m := ms.At(k)
				switch m.Type() {
				case pmetric.MetricTypeSum:
					if m.Sum().AggregationTemporality() == pmetric.AggregationTemporalityDelta {
						return true
					}
				case pmetric.MetricTypeHistogram:
					if m.Histogram().AggregationTemporality() == pmetric.AggregationTemporalityDelta {
						return true
					}
				case pmetric.MetricTypeExponentialHistogram:
					if m.ExponentialHistogram().AggregationTemporality() == pmetric.AggregationTemporalityDelta {
						return true
					}
				}
			}
		}
	}
	return false
}

// filter removes from md the data points that must not be stored, counting
// them in res, and rewrites delta metrics as cumulative ones through txn.
func (h *OTLPHandler) filter(md pmetric.Metrics, minT, maxT pcommon.Timestamp, txn *deltaTxn, res *otlpResult) {
	finite := func(v float64) bool {
		return h.opts.AcceptNonFiniteValues || !(math.IsNaN(v) || math.IsInf(v, 0))
	}
	rms := md.ResourceMetrics()
	for i := range rms.Len() {
		rm := rms.At(i)
		var resKey string
		sms := rm.ScopeMetrics()
		for j := range sms.Len() {
			sm := sms.At(j)
			var scopeKey string
			ms := sm.Metrics()
			ms.RemoveIf(func(m pmetric.Metric) bool {
				if reason := unusableMetric(m); reason != "" {
					if n := dataPointCount(m); n > 0 {
						res.reject(n, func() string { return fmt.Sprintf("metric %s: %s", quoteTrunc(m.Name()), reason) })
					}
					return true
				}
				return false
			})
			for k := range ms.Len() {
				m := ms.At(k)
				name := m.Name()
				where := func(ts pcommon.Timestamp) string {
					return fmt.Sprintf("metric %s point @%s", quoteTrunc(name), otlpTime(ts))
				}
				// outside rejects points too far in the future or past.
				outside := func(ts pcommon.Timestamp) bool {
					switch {
					case ts > maxT:
						res.reject(1, func() string {
							return where(ts) + ": timestamp is more than " + maxAheadTime.String() + " in the future"
						})
						return true
					case ts < minT:
						res.reject(1, func() string { return where(ts) + ": timestamp is more than " + h.maxAge.String() + " in the past" })
						return true
					}
					return false
				}
				tooManyBuckets := func(ts pcommon.Timestamp, n int) bool {
					if n > maxBucketsPerPoint {
						res.reject(1, func() string {
							return fmt.Sprintf("%s: %d buckets exceed the limit of %d", where(ts), n, maxBucketsPerPoint)
						})
						return true
					}
					return false
				}
				seriesKey := func(attrs pcommon.Map) string {
					if resKey == "" {
						resKey = attrsKey(rm.Resource().Attributes())
					}
					if scopeKey == "" {
						scopeKey = sm.Scope().Name() + "\x00" + sm.Scope().Version() + "\x00" + attrsKey(sm.Scope().Attributes())
					}
					return resKey + "\x01" + scopeKey + "\x01" + name + "\x00" + m.Unit() + "\x00" + m.Type().String() + "\x01" + attrsKey(attrs)
				}
				switch m.Type() {
				case pmetric.MetricTypeGauge:
					m.Gauge().DataPoints().RemoveIf(func(p pmetric.NumberDataPoint) bool {
						if outside(p.Timestamp()) {
							return true
						}
						if !p.Flags().NoRecordedValue() && p.ValueType() == pmetric.NumberDataPointValueTypeDouble && !finite(p.DoubleValue()) {
							res.reject(1, func() string { return fmt.Sprintf("%s: value %v is not finite", where(p.Timestamp()), p.DoubleValue()) })
							return true
						}
						return false
					})
				case pmetric.MetricTypeSum:
					s := m.Sum()
					delta := s.AggregationTemporality() == pmetric.AggregationTemporalityDelta
					s.DataPoints().RemoveIf(func(p pmetric.NumberDataPoint) bool {
						if outside(p.Timestamp()) {
							return true
						}
						if !p.Flags().NoRecordedValue() && p.ValueType() == pmetric.NumberDataPointValueTypeDouble && !finite(p.DoubleValue()) {
							res.reject(1, func() string { return fmt.Sprintf("%s: value %v is not finite", where(p.Timestamp()), p.DoubleValue()) })
							return true
						}
						if delta {
							if err := txn.addSum(seriesKey(p.Attributes()), p); err != nil {
								res.reject(1, func() string { return fmt.Sprintf("%s: %v", where(p.Timestamp()), err) })
								return true
							}
						}
						return false
					})
					if delta {
						s.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
					}
				case pmetric.MetricTypeHistogram:
					hist := m.Histogram()
					delta := hist.AggregationTemporality() == pmetric.AggregationTemporalityDelta
					hist.DataPoints().RemoveIf(func(p pmetric.HistogramDataPoint) bool {
						if outside(p.Timestamp()) {
							return true
						}
						if tooManyBuckets(p.Timestamp(), p.ExplicitBounds().Len()) {
							return true
						}
						if n, b := p.BucketCounts().Len(), p.ExplicitBounds().Len(); n != 0 && n != b+1 {
							res.reject(1, func() string {
								return fmt.Sprintf("%s: %d bucket counts for %d explicit bounds, want %d", where(p.Timestamp()), n, b, b+1)
							})
							return true
						}
						if p.HasSum() && !p.Flags().NoRecordedValue() && !finite(p.Sum()) {
							res.reject(1, func() string { return fmt.Sprintf("%s: sum %v is not finite", where(p.Timestamp()), p.Sum()) })
							return true
						}
						if delta {
							if err := txn.addHistogram(seriesKey(p.Attributes()), p); err != nil {
								res.reject(1, func() string { return fmt.Sprintf("%s: %v", where(p.Timestamp()), err) })
								return true
							}
						}
						return false
					})
					if delta {
						hist.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
					}
				case pmetric.MetricTypeExponentialHistogram:
					eh := m.ExponentialHistogram()
					if eh.AggregationTemporality() == pmetric.AggregationTemporalityDelta {
						if n := eh.DataPoints().Len(); n > 0 {
							res.reject(n, func() string {
								return fmt.Sprintf("metric %s: delta exponential histograms are not supported, send cumulative ones", quoteTrunc(name))
							})
						}
						eh.DataPoints().RemoveIf(func(pmetric.ExponentialHistogramDataPoint) bool { return true })
						continue
					}
					eh.DataPoints().RemoveIf(func(p pmetric.ExponentialHistogramDataPoint) bool {
						return outside(p.Timestamp()) ||
							tooManyBuckets(p.Timestamp(), p.Positive().BucketCounts().Len()+p.Negative().BucketCounts().Len())
					})
				case pmetric.MetricTypeSummary:
					m.Summary().DataPoints().RemoveIf(func(p pmetric.SummaryDataPoint) bool {
						return outside(p.Timestamp()) || tooManyBuckets(p.Timestamp(), p.QuantileValues().Len())
					})
				}
			}
		}
	}
}

// unusableMetric says why the translator would drop m as a whole, or "".
func unusableMetric(m pmetric.Metric) string {
	if m.Name() == "" {
		return "metric name is empty"
	}
	var t pmetric.AggregationTemporality
	switch m.Type() {
	case pmetric.MetricTypeGauge, pmetric.MetricTypeSummary:
		return ""
	case pmetric.MetricTypeSum:
		t = m.Sum().AggregationTemporality()
	case pmetric.MetricTypeHistogram:
		t = m.Histogram().AggregationTemporality()
	case pmetric.MetricTypeExponentialHistogram:
		t = m.ExponentialHistogram().AggregationTemporality()
	default:
		return "metric has no data"
	}
	if t != pmetric.AggregationTemporalityCumulative && t != pmetric.AggregationTemporalityDelta {
		return fmt.Sprintf("aggregation temporality %s is invalid, want Cumulative or Delta", t)
	}
	return ""
}

func dataPointCount(m pmetric.Metric) int {
	switch m.Type() {
	case pmetric.MetricTypeGauge:
		return m.Gauge().DataPoints().Len()
	case pmetric.MetricTypeSum:
		return m.Sum().DataPoints().Len()
	case pmetric.MetricTypeHistogram:
		return m.Histogram().DataPoints().Len()
	case pmetric.MetricTypeExponentialHistogram:
		return m.ExponentialHistogram().DataPoints().Len()
	case pmetric.MetricTypeSummary:
		return m.Summary().DataPoints().Len()
	}
	return 0
}

// otlpAppender sits between Prometheus' OTLP translator and the TSDB: it
// applies the receiver's limits to every translated series, and turns
// per-sample rejections into partial-success counts instead of errors, so
// one bad point does not drop the rest of its metric. A storage fault is
// kept in fault and fails the whole request.
type otlpAppender struct {
	storage.AppenderV2
	limits    Limits
	acceptNaN bool
	maxT      int64
	res       *otlpResult
	fault     error
	// lastReject identifies the data point of the last rejected sample: a
	// histogram point becomes several samples, but counts as one point.
	lastReject rejectedPoint
}

type rejectedPoint struct {
	family string
	t      int64
	hash   uint64
}

func (a *otlpAppender) Append(ref storage.SeriesRef, ls labels.Labels, st, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, opts storage.AOptions) (storage.SeriesRef, error) {
	if a.fault != nil {
		return 0, nil
	}
	if err := checkLabels(ls, a.limits); err != nil {
		a.rejectSample(ls, t, opts.MetricFamilyName, err.Error())
		return 0, nil
	}
	if t > a.maxT {
		a.rejectSample(ls, t, opts.MetricFamilyName, "timestamp is more than "+maxAheadTime.String()+" in the future")
		return 0, nil
	}
	// Exemplars (trace and span IDs) ride along with the sample; the
	// TSDB keeps them when exemplar storage is on.
	ref, err := a.AppenderV2.Append(ref, ls, st, t, v, h, fh, opts)
	if err != nil {
		var perr *storage.AppendPartialError
		if errors.As(err, &perr) {
			// The sample is stored; some exemplars were not. Out-of-order
			// and duplicate ones are dropped silently, as Prometheus does.
			for _, ee := range perr.ExemplarErrors {
				if errors.Is(ee.Err, storage.ErrOutOfOrderExemplar) || errors.Is(ee.Err, storage.ErrDuplicateExemplar) || ee.Index >= len(opts.Exemplars) {
					continue
				}
				ex := opts.Exemplars[ee.Index]
				a.res.reject(0, func() string {
					return fmt.Sprintf("series %s exemplar %s @%d: %v (the data point was stored)", ls.String(), ex.Labels.String(), ex.Ts, ee.Err)
				})
			}
			return ref, nil
		}
		if reason := appendReason(err); reason != reasonNone {
			a.rejectSample(ls, t, opts.MetricFamilyName, err.Error())
			return 0, nil
		}
		a.fault = err
		return 0, nil
	}
	return ref, nil
}

// rejectSample counts a rejected sample as a rejected data point unless
// it belongs to the same point as the previous rejection. target_info is
// synthesized by the translator, not a data point, and is not counted.
func (a *otlpAppender) rejectSample(ls labels.Labels, t int64, family, msg string) {
	if ls.Get(model.MetricNameLabel) == "target_info" {
		return
	}
	hash, _ := ls.HashWithoutLabels(nil, model.MetricNameLabel, labels.BucketLabel, "quantile")
	p := rejectedPoint{family: family, t: t, hash: hash}
	if p == a.lastReject {
		return
	}
	a.lastReject = p
	a.res.reject(1, func() string { return sampleMsg(ls, t, msg) })
}

// checkLabels applies the receiver's limits and Prometheus' validity rules
// to translated labels.
func checkLabels(ls labels.Labels, lim Limits) error {
	if n := ls.Len(); n > lim.MaxLabelsPerSeries {
		return fmt.Errorf("%d labels exceed the limit of %d", n, lim.MaxLabelsPerSeries)
	}
	var err error
	ls.Range(func(l labels.Label) {
		if err == nil {
			err = validateLabel(unsafeBytes(l.Name), unsafeBytes(l.Value), lim)
		}
	})
	return err
}

// unsafeBytes views s as bytes without copying; the result is read-only.
func unsafeBytes(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}

// checkOTLPRequest checks what OTLP/HTTP accepts of a request (POST, a
// protobuf or JSON body, gzip or no encoding) and returns its encoding.
func checkOTLPRequest(r *http.Request, ct string) (string, error) {
	if r.Method != http.MethodPost {
		return "", errorf(http.StatusMethodNotAllowed, "method %s not allowed, use POST", r.Method)
	}
	if ct != contentTypeProtobuf && ct != contentTypeJSON {
		return "", errorf(http.StatusUnsupportedMediaType, "Content-Type %q not supported, want application/x-protobuf or application/json", r.Header.Get("Content-Type"))
	}
	enc := strings.ToLower(r.Header.Get("Content-Encoding"))
	switch enc {
	case "", "identity", "gzip":
		return enc, nil
	default:
		return "", errorf(http.StatusUnsupportedMediaType, "Content-Encoding %q not supported, want gzip or none", enc)
	}
}

// readOTLPBody reads an OTLP request's body within the limits, taking
// its bytes (and those of its decompressed form) from res.
func readOTLPBody(r *http.Request, enc string, lim Limits, res *Reservation) ([]byte, error) {
	body, err := readBody(r, nil, lim.MaxBodyBytes, res)
	if err != nil || enc != "gzip" {
		return body, err
	}
	return gunzip(body, lim.MaxDecompressedBytes, res)
}

// otlpResponse is an OTLP export response (metrics or traces).
type otlpResponse interface {
	MarshalJSON() ([]byte, error)
	MarshalProto() ([]byte, error)
}

// writeOTLPResponse answers 200 with resp in the request's encoding.
func writeOTLPResponse(w http.ResponseWriter, ct string, resp otlpResponse) error {
	marshal := resp.MarshalProto
	if ct == contentTypeJSON {
		marshal = resp.MarshalJSON
	}
	body, err := marshal()
	if err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
	return nil
}
