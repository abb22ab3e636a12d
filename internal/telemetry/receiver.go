package telemetry

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/timestamp"
	"github.com/prometheus/prometheus/storage"
)

// Storage is what the receivers write to and, for the events API, read
// their running totals back from. *Embedded implements it.
//
// Appenders returned by AppenderV2 are used by one goroutine, and each is
// ended by exactly one Commit or Rollback. A nil error from Commit means the
// samples are durable (they survive the process being killed); receivers
// answer 2xx only after it.
type Storage interface {
	storage.AppendableV2
	storage.Queryable
}

// Limits bound what one ingestion request may carry. Zero means the
// default; a negative value disables the limit.
type Limits struct {
	// MaxBodyBytes caps the request body as sent, compressed or not
	// (default 16 MiB). Larger bodies get 413.
	MaxBodyBytes int64
	// MaxDecompressedBytes caps the body after snappy or gzip
	// decompression (default 64 MiB). Larger bodies get 413.
	MaxDecompressedBytes int64
	// MaxSeriesPerRequest caps the series of one remote_write request or
	// the data points of one OTLP request (default 50,000). More get 413,
	// and nothing of the request is stored.
	MaxSeriesPerRequest int
	// MaxLabelsPerSeries caps the labels of one series (default 64).
	MaxLabelsPerSeries int
	// MaxLabelNameLength caps a label name in bytes (default 1,024).
	MaxLabelNameLength int
	// MaxLabelValueLength caps a label value in bytes (default 4,096).
	MaxLabelValueLength int
	// MaxSamplesPerRequest caps the samples, histogram samples and
	// exemplars of one remote_write request together (default 100,000),
	// counted while decoding, before they are allocated. More get 413.
	MaxSamplesPerRequest int
	// MaxBucketsPerRequest caps the native histogram spans and buckets of
	// one remote_write request, and the histogram buckets, bounds and
	// quantiles of one OTLP request (default 1,000,000), counted before
	// they are allocated. More get 413.
	MaxBucketsPerRequest int
}

// Default limits.
const (
	DefaultMaxBodyBytes         = 16 << 20
	DefaultMaxDecompressedBytes = 64 << 20
	DefaultMaxSeriesPerRequest  = 50_000
	DefaultMaxLabelsPerSeries   = 64
	DefaultMaxLabelNameLength   = 1024
	DefaultMaxLabelValueLength  = 4096
	DefaultMaxSamplesPerRequest = 100_000
	DefaultMaxBucketsPerRequest = 1_000_000
)

// withDefaults fills zero limits with defaults and turns negative ones
// into "unlimited" (the largest value of the type).
func (l Limits) withDefaults() Limits {
	def64 := func(v, d int64) int64 {
		switch {
		case v == 0:
			return d
		case v < 0:
			return 1<<63 - 1
		}
		return v
	}
	defInt := func(v, d int) int {
		switch {
		case v == 0:
			return d
		case v < 0:
			return int(^uint(0) >> 1)
		}
		return v
	}
	return Limits{
		MaxBodyBytes:         def64(l.MaxBodyBytes, DefaultMaxBodyBytes),
		MaxDecompressedBytes: def64(l.MaxDecompressedBytes, DefaultMaxDecompressedBytes),
		MaxSeriesPerRequest:  defInt(l.MaxSeriesPerRequest, DefaultMaxSeriesPerRequest),
		MaxLabelsPerSeries:   defInt(l.MaxLabelsPerSeries, DefaultMaxLabelsPerSeries),
		MaxLabelNameLength:   defInt(l.MaxLabelNameLength, DefaultMaxLabelNameLength),
		MaxLabelValueLength:  defInt(l.MaxLabelValueLength, DefaultMaxLabelValueLength),
		MaxSamplesPerRequest: defInt(l.MaxSamplesPerRequest, DefaultMaxSamplesPerRequest),
		MaxBucketsPerRequest: defInt(l.MaxBucketsPerRequest, DefaultMaxBucketsPerRequest),
	}
}

// ReceiverOptions configures the ingestion handlers (remote_write, OTLP,
// events). One value serves all three; each handler uses what it needs.
type ReceiverOptions struct {
	// Storage receives the samples. Required.
	Storage Storage
	// Limits bound each request; see Limits for defaults.
	Limits Limits
	// Budget bounds the memory all ingestion requests hold at once; share
	// one between the receivers (default: a private budget of
	// DefaultBudgetBytes per handler).
	Budget *Budget
	// MaxSampleAge refuses samples and events older than this, per sample
	// with a reason (default: the retention of Storage when it reports
	// one, as *Embedded does, else DefaultRetention; negative: no bound).
	// A sample older than the retention would be deleted at the next
	// compaction, and a TSDB whose head is empty accepts any timestamp.
	MaxSampleAge time.Duration
	// AcceptNonFiniteValues stores NaN and ±Inf sample values instead of
	// rejecting them. Staleness markers are always accepted, because a
	// real Prometheus sends them when a target or series disappears.
	AcceptNonFiniteValues bool
	// OTLP configures the translation of OTLP metrics.
	OTLP OTLPTranslation
	// SpanMetrics configures the metrics the traces receiver derives from
	// spans.
	SpanMetrics SpanMetricsOptions
	// DeploySink receives deploy markers from the events API. Without one,
	// deploy events are rejected with 422.
	DeploySink DeploySink
	// Logger receives one warning per rejected request (default: discarded).
	Logger *slog.Logger
	// Registerer receives the receivers' metrics (default: a private
	// registry).
	Registerer prometheus.Registerer
	// Now is the clock used to reject timestamps too far in the future and
	// to stamp events without a time (default time.Now).
	Now func() time.Time
}

func (o ReceiverOptions) withDefaults(component string) (ReceiverOptions, error) {
	if o.Storage == nil {
		return o, fmt.Errorf("%s: Storage is required", component)
	}
	o.Limits = o.Limits.withDefaults()
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	o.Logger = o.Logger.With("component", "telemetry."+component)
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Budget == nil {
		o.Budget, _ = NewBudget(0, nil)
	}
	switch {
	case o.MaxSampleAge < 0:
		o.MaxSampleAge = time.Duration(math.MaxInt64)
	case o.MaxSampleAge == 0:
		o.MaxSampleAge = DefaultRetention
		if r, ok := o.Storage.(interface{ Retention() time.Duration }); ok && r.Retention() > 0 {
			o.MaxSampleAge = r.Retention()
		}
	}
	return o, nil
}

// minTimestamp is the oldest sample timestamp (ms) the receivers accept at
// now.
func (o ReceiverOptions) minTimestamp(now time.Time) int64 {
	if o.MaxSampleAge >= time.Duration(now.UnixNano()) {
		return math.MinInt64
	}
	return timestamp.FromTime(now.Add(-o.MaxSampleAge))
}

// maxAheadTime is how far in the future a sample may be, as in Prometheus'
// remote_write and OTLP receivers: clocks drift, but a sample an hour ahead
// would block every later in-order sample of its series.
const maxAheadTime = 10 * time.Minute

// httpError is an error with the HTTP status it must be answered with.
// Handlers return it; writeError is the one place that turns errors into
// responses.
type httpError struct {
	status int
	msg    string
	// retryAfter is the Retry-After header of a 429 or 503, in seconds.
	retryAfter string
}

func (e *httpError) Error() string { return e.msg }

func errorf(status int, format string, args ...any) error {
	return &httpError{status: status, msg: fmt.Sprintf(format, args...)}
}

// statusOf maps an error to its HTTP status: an httpError carries its own,
// ErrUnavailable is 503 (retryable), anything else is a storage fault, 500
// (also retryable by remote_write clients).
func statusOf(err error) int {
	var he *httpError
	switch {
	case errors.As(err, &he):
		return he.status
	case errors.Is(err, ErrUnavailable):
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// writeError answers err as JSON {"error": "..."} with its status.
func writeError(w http.ResponseWriter, err error) int {
	status := statusOf(err)
	if he := (*httpError)(nil); errors.As(err, &he) && he.retryAfter != "" {
		w.Header().Set("Retry-After", he.retryAfter)
	}
	writeJSON(w, status, struct {
		Error string `json:"error"`
	}{err.Error()})
	return status
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// readBody reads the request body into buf (grown as needed), refusing
// bodies over limit with 413 before reading them when the length is known.
// Memory beyond buf's capacity is taken from res before it is allocated.
func readBody(r *http.Request, buf []byte, limit int64, res *Reservation) ([]byte, error) {
	if r.ContentLength > limit {
		return buf, errorf(http.StatusRequestEntityTooLarge, "body of %d bytes exceeds the limit of %d bytes", r.ContentLength, limit)
	}
	buf = buf[:0]
	if r.ContentLength > 0 {
		if int64(cap(buf)) < r.ContentLength {
			if err := res.Take(r.ContentLength); err != nil {
				return buf, err
			}
			buf = make([]byte, 0, r.ContentLength)
		}
		buf = buf[:r.ContentLength]
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			return buf[:0], errorf(http.StatusBadRequest, "read body: %v", err)
		}
		return buf, nil
	}
	out, err := readLimited(r.Body, buf, limit, res)
	if errors.Is(err, errOverLimit) {
		return out, errorf(http.StatusRequestEntityTooLarge, "body exceeds the limit of %d bytes", limit)
	}
	if err != nil {
		var he *httpError
		if errors.As(err, &he) {
			return out, err
		}
		return out, errorf(http.StatusBadRequest, "read body: %v", err)
	}
	return out, nil
}

var errOverLimit = errors.New("over the limit")

// readLimited reads rd to its end into buf, growing it by doubling and
// taking every growth from res before allocating it. More than limit bytes
// is errOverLimit. On error the returned slice is empty.
func readLimited(rd io.Reader, buf []byte, limit int64, res *Reservation) ([]byte, error) {
	lr := &io.LimitedReader{R: rd, N: limit + 1}
	buf = buf[:0]
	for {
		if len(buf) == cap(buf) {
			// Grow by doubling, but never past limit+1: a body just over
			// the limit must not cost twice the limit.
			n := min(max(2*int64(cap(buf)), 4096), limit+1)
			if err := res.Take(n); err != nil {
				return buf[:0], err
			}
			nb := make([]byte, len(buf), n)
			copy(nb, buf)
			buf = nb
		}
		n, err := lr.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > limit {
			return buf[:0], errOverLimit
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf[:0], err
		}
	}
}

// mediaType returns the media type of a Content-Type header without its
// parameters, lower-cased, and the value of its proto parameter.
func mediaType(ct string) (typ, proto string) {
	typ, params, _ := strings.Cut(ct, ";")
	for p := range strings.SplitSeq(params, ";") {
		k, v, ok := strings.Cut(p, "=")
		if ok && strings.EqualFold(strings.TrimSpace(k), "proto") {
			proto = strings.Trim(strings.TrimSpace(v), `"`)
		}
	}
	return strings.ToLower(strings.TrimSpace(typ)), proto
}

// quoteTrunc quotes s for an error message, cutting it to a readable
// length; invalid UTF-8 is escaped rather than printed.
func quoteTrunc(s string) string {
	const maxLen = 64
	if len(s) <= maxLen {
		return strconv.Quote(s)
	}
	cut := maxLen
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + "…"
}
