package telemetry

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/timestamp"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
)

// WriteHandler receives Prometheus remote_write 1.0 requests (a snappy
// block-compressed prometheus.WriteRequest) and appends them to Storage.
//
// Status codes follow the remote_write specification, so a sender retries
// exactly what it should: 204 when everything was stored; 400 for malformed
// payloads and for requests with rejected samples (the valid ones are
// stored, and a 400 is never retried, so nothing valid is lost); 413 and 415
// for oversize bodies and wrong content types; 500 for storage faults, after
// rolling the whole request back so a retry does not duplicate anything.
type WriteHandler struct {
	opts    ReceiverOptions
	log     *slog.Logger
	pool    sync.Pool // of *writeBuffers
	cache   *seriesCache
	metrics writeMetrics
}

type writeMetrics struct {
	requests *prometheus.CounterVec
	samples  prometheus.Counter
	rejected *prometheus.CounterVec
	// exemplars counts exemplars by outcome: stored or rejected.
	exemplars *prometheus.CounterVec
}

// writeBuffers is the per-request scratch space, pooled so the hot path
// does not allocate.
type writeBuffers struct {
	body      []byte
	decoded   []byte
	req       writeRequest
	sb        labels.ScratchBuilder
	key       []byte
	hits      []cacheHit
	misses    []cacheEntry
	exemplars []exemplar.Exemplar
}

// Buffers larger than this are dropped instead of pooled, so one huge
// request does not pin its memory forever.
const maxPooledBuffer = 8 << 20

// NewWriteHandler returns the remote_write 1.0 receiver.
func NewWriteHandler(opts ReceiverOptions) (*WriteHandler, error) {
	opts, err := opts.withDefaults("remote_write")
	if err != nil {
		return nil, err
	}
	h := &WriteHandler{opts: opts, log: opts.Logger, cache: newSeriesCache(opts.Now)}
	h.pool.New = func() any {
		b := &writeBuffers{sb: labels.NewScratchBuilder(16)}
		b.sb.SetUnsafeAdd(true)
		return b
	}
	h.metrics = writeMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "qsp_remote_write_requests_total",
			Help: "Remote write requests received, by HTTP status code.",
		}, []string{"code"}),
		samples: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "qsp_remote_write_samples_stored_total",
			Help: "Samples and histogram samples stored from remote write requests.",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "qsp_remote_write_samples_rejected_total",
			Help: "Samples rejected from remote write requests, by reason.",
		}, []string{"reason"}),
		exemplars: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "qsp_remote_write_exemplars_total",
			Help: "Exemplars received on remote write, by outcome (stored, rejected).",
		}, []string{"outcome"}),
	}
	for _, c := range []prometheus.Collector{h.metrics.requests, h.metrics.samples, h.metrics.rejected, h.metrics.exemplars} {
		if err := opts.Registerer.Register(c); err != nil {
			return nil, fmt.Errorf("remote_write: register metrics: %w", err)
		}
	}
	return h, nil
}

// ServeHTTP implements http.Handler.
func (h *WriteHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	buf := h.pool.Get().(*writeBuffers)
	res := h.opts.Budget.Reserve("remote_write")
	stats, err := h.serve(r, buf, &res)
	res.Release()
	// Only buffers of ordinary requests go back to the pool, so one huge
	// request does not pin its memory.
	buf.req.reset()
	if buf.size() <= maxPooledBuffer {
		h.pool.Put(buf)
	}
	h.metrics.samples.Add(float64(stats.stored))
	if stats.exTotal > 0 {
		h.metrics.exemplars.WithLabelValues("stored").Add(float64(stats.exStored))
		h.metrics.exemplars.WithLabelValues("rejected").Add(float64(stats.exRejected))
	}
	if err == nil {
		w.WriteHeader(http.StatusNoContent)
		h.metrics.requests.WithLabelValues("204").Inc()
		return
	}
	status := writeError(w, err)
	h.metrics.requests.WithLabelValues(statusLabel(status)).Inc()
	for reason, n := range stats.byReason {
		if n > 0 {
			h.metrics.rejected.WithLabelValues(rejectReason(reason).String()).Add(float64(n))
		}
	}
	level := slog.LevelWarn
	if status >= 500 {
		level = slog.LevelError
	}
	h.log.Log(r.Context(), level, "remote write request rejected",
		"status", status, "remote", r.RemoteAddr, "stored", stats.stored, "rejected", stats.rejected, "err", err)
}

// size is the memory b holds, in bytes.
func (b *writeBuffers) size() int64 {
	return int64(cap(b.body)) + int64(cap(b.decoded)) + b.req.size() +
		int64(cap(b.hits))*int64(unsafe.Sizeof(cacheHit{})) + int64(cap(b.misses))*int64(unsafe.Sizeof(cacheEntry{}))
}

// maxSnappyRatio bounds how much a snappy block can expand: its densest
// element, a 3-byte copy, yields 64 bytes (21.3×).
const maxSnappyRatio = 22

// statusLabel is the code label of the request counters.
func statusLabel(code int) string { return strconv.Itoa(code) }

func (h *WriteHandler) serve(r *http.Request, buf *writeBuffers, res *Reservation) (writeStats, error) {
	var stats writeStats
	if r.Method != http.MethodPost {
		return stats, errorf(http.StatusMethodNotAllowed, "method %s not allowed, use POST", r.Method)
	}
	ct, proto := mediaType(r.Header.Get("Content-Type"))
	if ct != "application/x-protobuf" {
		return stats, errorf(http.StatusUnsupportedMediaType, "Content-Type %q not supported, want application/x-protobuf (remote_write 1.0)", r.Header.Get("Content-Type"))
	}
	if proto != "" && proto != "prometheus.WriteRequest" {
		return stats, errorf(http.StatusUnsupportedMediaType, "protobuf message %q not supported, want prometheus.WriteRequest (remote_write 1.0)", proto)
	}
	// Senders of the 1.0 protocol must set snappy; a missing header is
	// tolerated as Prometheus' own receiver does.
	if enc := r.Header.Get("Content-Encoding"); enc != "" && !strings.EqualFold(enc, "snappy") {
		return stats, errorf(http.StatusUnsupportedMediaType, "Content-Encoding %q not supported, want snappy", enc)
	}
	// The pooled buffers this request uses count against the budget as
	// much as new ones.
	if err := res.Take(buf.size()); err != nil {
		return stats, err
	}
	lim := h.opts.Limits
	var err error
	buf.body, err = readBody(r, buf.body, lim.MaxBodyBytes, res)
	if err != nil {
		return stats, err
	}
	// The decoded length is the block's header: check it against the
	// limit and against what a block of this size can hold before
	// allocating it (a 7-byte body may claim 64 MiB).
	n, err := snappy.DecodedLen(buf.body)
	if err != nil {
		return stats, errorf(http.StatusBadRequest, "malformed snappy block: %v", err)
	}
	if int64(n) > lim.MaxDecompressedBytes {
		return stats, errorf(http.StatusRequestEntityTooLarge, "decompressed body of %d bytes exceeds the limit of %d bytes", n, lim.MaxDecompressedBytes)
	}
	if int64(n) > maxSnappyRatio*int64(len(buf.body)) {
		return stats, errorf(http.StatusBadRequest, "malformed snappy block: header claims %d decoded bytes, more than a %d-byte block can hold", n, len(buf.body))
	}
	if cap(buf.decoded) < n {
		if err := res.Take(int64(n)); err != nil {
			return stats, err
		}
		buf.decoded = make([]byte, n)
	}
	decoded, err := snappy.Decode(buf.decoded[:cap(buf.decoded)], buf.body)
	if err != nil {
		return stats, errorf(http.StatusBadRequest, "malformed snappy block: %v", err)
	}
	dl := decodeLimits{series: lim.MaxSeriesPerRequest, labelsPerSeries: lim.MaxLabelsPerSeries, samples: lim.MaxSamplesPerRequest, buckets: lim.MaxBucketsPerRequest}
	if err := buf.req.decode(decoded, dl, res); err != nil {
		var le *limitError
		var he *httpError
		switch {
		case errors.As(err, &le):
			return stats, errorf(http.StatusRequestEntityTooLarge, "%v; send smaller batches (max_samples_per_send)", err)
		case errors.As(err, &he):
			return stats, err
		}
		return stats, errorf(http.StatusBadRequest, "malformed protobuf: %v", err)
	}
	return h.append(r, buf)
}

// append stores one decoded request in one transaction.
func (h *WriteHandler) append(r *http.Request, buf *writeBuffers) (writeStats, error) {
	var stats writeStats
	req := &buf.req
	now := h.opts.Now()
	maxT := timestamp.FromTime(now.Add(maxAheadTime))
	minT := h.opts.minTimestamp(now)
	// Look every series up in the cache with one lock, before appending.
	buf.hits = h.cache.lookup(req, buf.hits[:0], &buf.key)
	buf.misses = buf.misses[:0]

	app := h.opts.Storage.AppenderV2(r.Context())
	for i := range req.series {
		s := &req.series[i]
		nSamples := s.samples.end - s.samples.start + s.histograms.end - s.histograms.start
		stats.total += nSamples
		hit := &buf.hits[i]
		ls, ref := hit.entry.labels, hit.entry.ref
		if !hit.found {
			var err error
			ls, err = buildLabels(req, s, &buf.sb, h.opts.Limits)
			if err != nil {
				stats.reject(reasonInvalidLabels, nSamples, func() string {
					return fmt.Sprintf("series %s: %v", formatWireLabels(req, s), err)
				})
				continue
			}
		}
		ref0 := ref
		for _, smp := range req.samples[s.samples.start:s.samples.end] {
			if reason, msg := h.checkSample(smp.Timestamp, smp.Value, minT, maxT); reason != reasonNone {
				stats.reject(reason, 1, func() string { return sampleMsg(ls, smp.Timestamp, msg) })
				continue
			}
			nref, err := app.Append(ref, ls, 0, smp.Timestamp, smp.Value, nil, nil, storage.AOptions{})
			if err != nil {
				if reason := appendReason(err); reason != reasonNone {
					stats.reject(reason, 1, func() string { return sampleMsg(ls, smp.Timestamp, err.Error()) })
					continue
				}
				_ = app.Rollback()
				return writeStats{}, fmt.Errorf("append %s: %w", ls, err)
			}
			ref = nref
			stats.stored++
		}
		for j := s.histograms.start; j < s.histograms.end; j++ {
			hp := &req.histograms[j]
			var (
				ih *histogram.Histogram
				fh *histogram.FloatHistogram
				v  float64
			)
			if hp.IsFloatHistogram() {
				fh = hp.ToFloatHistogram()
				v = fh.Sum
			} else {
				ih = hp.ToIntHistogram()
				v = ih.Sum
			}
			if reason, msg := h.checkSample(hp.Timestamp, v, minT, maxT); reason == reasonFuture || reason == reasonTooOld {
				stats.reject(reason, 1, func() string { return sampleMsg(ls, hp.Timestamp, msg) })
				continue
			}
			nref, err := app.Append(ref, ls, 0, hp.Timestamp, 0, ih, fh, storage.AOptions{})
			if err != nil {
				if reason := appendReason(err); reason != reasonNone {
					stats.reject(reason, 1, func() string { return sampleMsg(ls, hp.Timestamp, err.Error()) })
					continue
				}
				_ = app.Rollback()
				return writeStats{}, fmt.Errorf("append %s: %w", ls, err)
			}
			ref = nref
			stats.stored++
		}
		if s.exemplars.end > s.exemplars.start {
			if err := h.appendExemplars(app, ref, ls, req, s, buf, maxT, &stats); err != nil {
				_ = app.Rollback()
				return writeStats{}, err
			}
		}
		if ref != 0 && (!hit.found || hit.stale || ref != ref0) {
			buf.misses = append(buf.misses, cacheEntry{ref: ref, labels: ls, key: hit.key})
		}
	}
	if err := app.Commit(); err != nil {
		return writeStats{}, fmt.Errorf("commit: %w", err)
	}
	// Only series the TSDB accepted are cached, after the commit made
	// their refs real.
	h.cache.add(buf.misses)
	if stats.rejected > 0 || stats.exRejected > 0 {
		return stats, errorf(http.StatusBadRequest, "%s", stats.message())
	}
	return stats, nil
}

// appendExemplars attaches the exemplars of series s (stored as ref) to
// it. Invalid exemplars (labels, length over 128 runes, future
// timestamps) are rejected with a reason like samples; out-of-order and
// duplicate ones are dropped silently, as Prometheus does, since senders
// resend the newest exemplar with every batch. A storage fault is
// returned.
func (h *WriteHandler) appendExemplars(app storage.AppenderV2, ref storage.SeriesRef, ls labels.Labels, req *writeRequest, s *wireSeries, buf *writeBuffers, maxT int64, stats *writeStats) error {
	wexs := req.exemplars[s.exemplars.start:s.exemplars.end]
	stats.exTotal += len(wexs)
	if ref == 0 {
		stats.rejectExemplar(len(wexs), func() string {
			return fmt.Sprintf("series %s: %d exemplars: the series has no stored sample to attach them to", ls.String(), len(wexs))
		})
		return nil
	}
	ea, ok := app.(storage.ExemplarAppenderV2)
	if !ok {
		return fmt.Errorf("append exemplars: appender %T does not take exemplars", app)
	}
	exs := buf.exemplars[:0]
	for _, we := range wexs {
		ex, err := buildExemplar(req, we, &buf.sb, h.opts.Limits)
		if err == nil && ex.Ts > maxT {
			err = fmt.Errorf("timestamp %s is more than %s in the future", sampleTime(ex.Ts), maxAheadTime)
		}
		if err != nil {
			stats.rejectExemplar(1, func() string { return fmt.Sprintf("series %s exemplar @%d: %v", ls.String(), we.ts, err) })
			continue
		}
		exs = append(exs, ex)
	}
	buf.exemplars = exs[:0]
	if len(exs) == 0 {
		return nil
	}
	// The TSDB requires exemplars sorted by time.
	slices.SortFunc(exs, exemplar.Compare)
	_, err := ea.AppendExemplars(ref, ls, exs)
	var perr *storage.AppendPartialError
	stored := len(exs)
	switch {
	case err == nil:
	case errors.As(err, &perr):
		stored -= len(perr.ExemplarErrors)
		for _, ee := range perr.ExemplarErrors {
			if errors.Is(ee.Err, storage.ErrOutOfOrderExemplar) || errors.Is(ee.Err, storage.ErrDuplicateExemplar) {
				continue
			}
			ex := exs[ee.Index]
			stats.rejectExemplar(1, func() string {
				return fmt.Sprintf("series %s exemplar %s @%d: %v", ls.String(), ex.Labels.String(), ex.Ts, ee.Err)
			})
		}
	case errors.Is(err, storage.ErrExemplarsDisabled):
		stored = 0
	case errors.Is(err, storage.ErrNotFound):
		// A cached series the head has since dropped, and none of this
		// request's samples recreated it.
		stored = 0
		stats.rejectExemplar(len(exs), func() string {
			return fmt.Sprintf("series %s: %d exemplars: the series has no stored sample to attach them to", ls.String(), len(exs))
		})
	default:
		return fmt.Errorf("append exemplars %s: %w", ls, err)
	}
	stats.exStored += max(stored, 0)
	return nil
}

// buildExemplar validates and copies the labels of one wire exemplar.
// The TSDB checks the 128-rune length of the whole set and duplicates.
func buildExemplar(req *writeRequest, we wireExemplar, sb *labels.ScratchBuilder, lim Limits) (exemplar.Exemplar, error) {
	wls := req.exLabels[we.labels.start:we.labels.end]
	if n := len(wls) + we.extraLabels; n > lim.MaxLabelsPerSeries {
		return exemplar.Exemplar{}, fmt.Errorf("%d labels exceed the limit of %d", n, lim.MaxLabelsPerSeries)
	}
	sb.Reset()
	for _, l := range wls {
		if err := validateLabel(l.name, l.value, lim); err != nil {
			return exemplar.Exemplar{}, err
		}
		if utf8.RuneCount(l.name)+utf8.RuneCount(l.value) > exemplar.ExemplarMaxLabelSetLength {
			return exemplar.Exemplar{}, storage.ErrExemplarLabelLength
		}
		sb.Add(unsafeString(l.name), unsafeString(l.value))
	}
	sb.Sort()
	return exemplar.Exemplar{Labels: sb.Labels(), Value: we.value, Ts: we.ts, HasTs: we.ts != 0}, nil
}

// checkSample applies the receiver's own rules (the TSDB applies the rest).
func (h *WriteHandler) checkSample(t int64, v float64, minT, maxT int64) (rejectReason, string) {
	if t > maxT {
		return reasonFuture, fmt.Sprintf("timestamp %s is more than %s in the future", sampleTime(t), maxAheadTime)
	}
	if t < minT {
		return reasonTooOld, fmt.Sprintf("timestamp %s is older than the retention of %s", sampleTime(t), model.Duration(h.opts.MaxSampleAge))
	}
	if !h.opts.AcceptNonFiniteValues && (math.IsNaN(v) || math.IsInf(v, 0)) && !value.IsStaleNaN(v) {
		return reasonNonFinite, fmt.Sprintf("value %v is not finite (only staleness markers may be NaN)", v)
	}
	return reasonNone, ""
}

// sampleTime prints a millisecond timestamp as RFC 3339 when it is a
// sane date (years 0–9999), else as the raw number, so an overflowed value
// never prints as a wrapped-around date.
func sampleTime(t int64) string {
	const minMs, maxMs = -62167219200000, 253402300799999 // 0000-01-01, 9999-12-31
	if t < minMs || t > maxMs {
		return strconv.FormatInt(t, 10) + "ms since the epoch"
	}
	return timestamp.Time(t).UTC().Format(time.RFC3339Nano)
}

func sampleMsg(ls labels.Labels, t int64, msg string) string {
	return fmt.Sprintf("series %s sample @%d: %s", ls.String(), t, msg)
}

// appendReason classifies a TSDB append error as a rejection of that one
// sample (a reason) or a storage fault (reasonNone).
func appendReason(err error) rejectReason {
	var herr histogram.Error
	switch {
	case errors.Is(err, storage.ErrOutOfOrderSample):
		return reasonOutOfOrder
	case errors.Is(err, storage.ErrTooOldSample), errors.Is(err, storage.ErrOutOfBounds):
		return reasonTooOld
	case errors.Is(err, storage.ErrDuplicateSampleForTimestamp):
		return reasonDuplicate
	case errors.Is(err, tsdb.ErrInvalidSample), errors.As(err, &herr):
		return reasonInvalidSample
	}
	return reasonNone
}

// buildLabels validates the wire labels of s and returns them as sorted
// Labels, copied out of the request buffer. Labels with empty values are
// dropped: in Prometheus an empty value means the label is absent.
func buildLabels(req *writeRequest, s *wireSeries, sb *labels.ScratchBuilder, lim Limits) (labels.Labels, error) {
	wls := req.labels[s.labels.start:s.labels.end]
	if n := len(wls) + s.extraLabels; n > lim.MaxLabelsPerSeries {
		return labels.EmptyLabels(), fmt.Errorf("%d labels exceed the limit of %d", n, lim.MaxLabelsPerSeries)
	}
	sb.Reset()
	hasName := false
	for _, l := range wls {
		if err := validateLabel(l.name, l.value, lim); err != nil {
			return labels.EmptyLabels(), err
		}
		if len(l.value) == 0 {
			continue
		}
		name := unsafeString(l.name)
		if name == model.MetricNameLabel {
			hasName = true
		}
		sb.Add(name, unsafeString(l.value))
	}
	if !hasName {
		return labels.EmptyLabels(), errors.New("metric name (label __name__) is missing")
	}
	sb.Sort()
	ls := sb.Labels()
	if dup, ok := ls.HasDuplicateLabelNames(); ok {
		return labels.EmptyLabels(), fmt.Errorf("label name %s appears more than once", quoteTrunc(dup))
	}
	return ls, nil
}

// validateLabel applies Prometheus 3's rules (any UTF-8 name but the empty
// one) and the length limits.
func validateLabel(name, value []byte, lim Limits) error {
	switch {
	case len(name) == 0:
		return errors.New("label name is empty")
	case !utf8.Valid(name):
		return fmt.Errorf("label name %s is not valid UTF-8", quoteTrunc(string(name)))
	case len(name) > lim.MaxLabelNameLength:
		return fmt.Errorf("label name %s is %d bytes long, over the limit of %d", quoteTrunc(string(name)), len(name), lim.MaxLabelNameLength)
	case !utf8.Valid(value):
		return fmt.Errorf("value of label %s is not valid UTF-8", quoteTrunc(string(name)))
	case len(value) > lim.MaxLabelValueLength:
		return fmt.Errorf("value of label %s is %d bytes long, over the limit of %d", quoteTrunc(string(name)), len(value), lim.MaxLabelValueLength)
	}
	return nil
}

// formatWireLabels renders the labels of a rejected series for an error
// message, escaping whatever made them invalid.
func formatWireLabels(req *writeRequest, s *wireSeries) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, l := range req.labels[s.labels.start:s.labels.end] {
		if i > 0 {
			b.WriteString(", ")
		}
		if i == 8 {
			b.WriteString("…")
			break
		}
		name := string(l.name)
		if name == "" || !utf8.ValidString(name) || len(name) > 64 {
			name = quoteTrunc(name)
		}
		b.WriteString(name)
		b.WriteByte('=')
		b.WriteString(quoteTrunc(string(l.value)))
	}
	b.WriteByte('}')
	return b.String()
}

// unsafeString views b as a string without copying. The result must not
// outlive b: the ScratchBuilder copies it (SetUnsafeAdd(true)).
func unsafeString(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// rejectReason says why a sample was not stored; it is a metric label and
// part of the 400 message.
type rejectReason int

const (
	reasonNone rejectReason = iota
	reasonInvalidLabels
	reasonNonFinite
	reasonFuture
	reasonOutOfOrder
	reasonTooOld
	reasonDuplicate
	reasonInvalidSample
	numReasons
)

func (r rejectReason) String() string {
	return [...]string{"none", "invalid_labels", "non_finite_value", "too_far_in_future", "out_of_order", "too_old", "duplicate_timestamp", "invalid_sample"}[r]
}

// writeStats counts the outcome of one request and keeps the first few
// rejection messages, built lazily so accepted data costs nothing.
type writeStats struct {
	total, stored, rejected int
	// exTotal, exStored and exRejected count exemplars apart: a request
	// whose samples were all stored may still have bad exemplars.
	exTotal, exStored, exRejected int
	byReason                      [numReasons]int
	first                         []string
}

const maxRejectMessages = 5

func (s *writeStats) reject(reason rejectReason, n int, msg func() string) {
	s.rejected += n
	s.byReason[reason] += n
	if len(s.first) < maxRejectMessages {
		s.first = append(s.first, msg())
	}
}

func (s *writeStats) rejectExemplar(n int, msg func() string) {
	s.exRejected += n
	if len(s.first) < maxRejectMessages {
		s.first = append(s.first, msg())
	}
}

func (s *writeStats) message() string {
	var b strings.Builder
	if s.rejected == 0 {
		fmt.Fprintf(&b, "%d of %d exemplars rejected, the samples and the other exemplars were stored: ", s.exRejected, s.exTotal)
		b.WriteString(strings.Join(s.first, "; "))
		return b.String()
	}
	if s.rejected == s.total {
		fmt.Fprintf(&b, "all %d samples rejected (", s.total)
	} else {
		fmt.Fprintf(&b, "%d of %d samples rejected (", s.rejected, s.total)
	}
	sep := ""
	for r, n := range s.byReason {
		if n > 0 {
			fmt.Fprintf(&b, "%s%s: %d", sep, rejectReason(r), n)
			sep = ", "
		}
	}
	if s.rejected == s.total {
		b.WriteString("): ")
	} else {
		b.WriteString("), the others were stored: ")
	}
	if s.exRejected > 0 {
		fmt.Fprintf(&b, "(and %d of %d exemplars) ", s.exRejected, s.exTotal)
	}
	b.WriteString(strings.Join(s.first, "; "))
	return b.String()
}
