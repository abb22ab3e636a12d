package telemetry

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/prometheus/prometheus/prompb"
	"google.golang.org/protobuf/encoding/protowire"
)

// writeRequest is a decoded remote_write 1.0 prometheus.WriteRequest. Label
// names and values point into the decompressed body, so a writeRequest is
// valid only as long as that buffer is; nothing from it may be retained
// without copying. It is reused across requests (see writeBuffers) so the
// hot path decodes without allocating.
//
// Decoding by hand instead of with the generated gogo code avoids two string
// allocations per label and one slice per series; the wire format is the one
// in prompb/remote.proto and prompb/types.proto.
type writeRequest struct {
	series     []wireSeries
	labels     []wireLabel
	samples    []prompb.Sample
	histograms []prompb.Histogram
	exemplars  []wireExemplar
	// exLabels are the exemplars' labels, apart from the series' so each
	// series' labels stay one contiguous span whatever the field order.
	exLabels []wireLabel
	buckets  int // native histogram spans and buckets
}

// wireExemplar is one prompb.Exemplar: its labels are a span of exLabels.
type wireExemplar struct {
	labels      span
	extraLabels int // labels beyond the per-series limit, not stored
	value       float64
	ts          int64
}

// wireSeries is one TimeSeries: index ranges into the request's slices.
type wireSeries struct {
	labels, samples, histograms, exemplars span
	// extraLabels counts the labels beyond the per-series limit, which
	// decode does not store.
	extraLabels int
}

type span struct{ start, end int }

type wireLabel struct{ name, value []byte }

// Field numbers of prompb/remote.proto and prompb/types.proto.
const (
	fieldWriteRequestTimeseries = 1
	fieldTimeSeriesLabels       = 1
	fieldTimeSeriesSamples      = 2
	fieldTimeSeriesExemplars    = 3
	fieldTimeSeriesHistograms   = 4
	fieldLabelName              = 1
	fieldLabelValue             = 2
	fieldSampleValue            = 1
	fieldSampleTimestamp        = 2
	fieldExemplarLabels         = 1
	fieldExemplarValue          = 2
	fieldExemplarTimestamp      = 3
)

func (r *writeRequest) reset() {
	r.series = r.series[:0]
	r.labels = r.labels[:0]
	r.samples = r.samples[:0]
	clear(r.histograms)
	r.histograms = r.histograms[:0]
	r.exemplars = r.exemplars[:0]
	r.exLabels = r.exLabels[:0]
	r.buckets = 0
}

// size is the memory r's slices hold, in bytes (histogram contents are
// not pooled and not counted here).
func (r *writeRequest) size() int64 {
	return int64(cap(r.series))*int64(unsafe.Sizeof(wireSeries{})) +
		int64(cap(r.labels))*int64(unsafe.Sizeof(wireLabel{})) +
		int64(cap(r.samples))*int64(unsafe.Sizeof(prompb.Sample{})) +
		int64(cap(r.histograms))*int64(unsafe.Sizeof(prompb.Histogram{})) +
		int64(cap(r.exemplars))*int64(unsafe.Sizeof(wireExemplar{})) +
		int64(cap(r.exLabels))*int64(unsafe.Sizeof(wireLabel{}))
}

// decodeLimits bound what decode allocates; zero fields are no bound.
type decodeLimits struct {
	series, labelsPerSeries, samples, buckets int
}

// limitError is a request over one of decodeLimits: the handler answers
// it with 413.
type limitError struct {
	what  string
	limit int
}

func (e *limitError) Error() string {
	return fmt.Sprintf("request has more than %d %s", e.limit, e.what)
}

// decode parses b, a serialized WriteRequest. Unknown fields (metadata,
// fields of later protocol versions) are skipped, as protobuf requires.
//
// It is bounded as it reads: series, labels per series, samples +
// histograms + exemplars and histogram buckets are counted before they are
// stored, and every growth of r's slices, and every histogram's contents,
// are taken from res before they are allocated. (A series of empty
// histogram fields costs 2 bytes on the wire and 272 in memory: without
// this, 8 MiB of them took 1 GiB.) On error r holds an unspecified prefix
// of the request and must be reset.
func (r *writeRequest) decode(b []byte, lim decodeLimits, res *Reservation) error {
	r.reset()
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("write request: %w", protowire.ParseError(n))
		}
		b = b[n:]
		if num == fieldWriteRequestTimeseries {
			if typ != protowire.BytesType {
				return fmt.Errorf("write request: timeseries[%d]: wire type %d, want bytes", len(r.series), typ)
			}
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return fmt.Errorf("write request: timeseries[%d]: %w", len(r.series), protowire.ParseError(n))
			}
			b = b[n:]
			if lim.series > 0 && len(r.series) >= lim.series {
				return &limitError{what: "series", limit: lim.series}
			}
			if err := r.decodeSeries(v, lim, res); err != nil {
				return fmt.Errorf("write request: timeseries[%d]: %w", len(r.series), err)
			}
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return fmt.Errorf("write request: field %d: %w", num, protowire.ParseError(n))
		}
		b = b[n:]
	}
	return nil
}

// grow returns s with room for one more element, taking a doubled
// capacity from res first. Reused (pooled) capacity costs nothing.
func grow[T any](s []T, res *Reservation) ([]T, error) {
	if len(s) < cap(s) {
		return s, nil
	}
	var zero T
	n := max(2*cap(s), 64)
	if err := res.Take(int64(n) * int64(unsafe.Sizeof(zero))); err != nil {
		return s, err
	}
	ns := make([]T, len(s), n)
	copy(ns, s)
	return ns, nil
}

func (r *writeRequest) decodeSeries(b []byte, lim decodeLimits, res *Reservation) error {
	s := wireSeries{
		labels:     span{len(r.labels), len(r.labels)},
		samples:    span{len(r.samples), len(r.samples)},
		histograms: span{len(r.histograms), len(r.histograms)},
		exemplars:  span{len(r.exemplars), len(r.exemplars)},
	}
	var err error
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var msg []byte
		switch num {
		case fieldTimeSeriesLabels, fieldTimeSeriesSamples, fieldTimeSeriesExemplars, fieldTimeSeriesHistograms:
			if typ != protowire.BytesType {
				return fmt.Errorf("field %d: wire type %d, want bytes", num, typ)
			}
			msg, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return fmt.Errorf("field %d: %w", num, protowire.ParseError(n))
		}
		b = b[n:]
		if num == fieldTimeSeriesSamples || num == fieldTimeSeriesExemplars || num == fieldTimeSeriesHistograms {
			if lim.samples > 0 && len(r.samples)+len(r.histograms)+len(r.exemplars) >= lim.samples {
				return &limitError{what: "samples, histogram samples and exemplars", limit: lim.samples}
			}
		}
		switch num {
		case fieldTimeSeriesLabels:
			if lim.labelsPerSeries > 0 && len(r.labels)-s.labels.start >= lim.labelsPerSeries {
				// Counted, not stored: the series is rejected with its
				// count, the request's other series are not.
				s.extraLabels++
				continue
			}
			l, err := decodeLabel(msg)
			if err != nil {
				return fmt.Errorf("labels[%d]: %w", len(r.labels)-s.labels.start, err)
			}
			if r.labels, err = grow(r.labels, res); err != nil {
				return err
			}
			r.labels = append(r.labels, l)
		case fieldTimeSeriesSamples:
			smp, err := decodeSample(msg)
			if err != nil {
				return fmt.Errorf("samples[%d]: %w", len(r.samples)-s.samples.start, err)
			}
			if r.samples, err = grow(r.samples, res); err != nil {
				return err
			}
			r.samples = append(r.samples, smp)
		case fieldTimeSeriesExemplars:
			ex, err := r.decodeExemplar(msg, lim, res)
			if err != nil {
				return fmt.Errorf("exemplars[%d]: %w", len(r.exemplars)-s.exemplars.start, err)
			}
			if r.exemplars, err = grow(r.exemplars, res); err != nil {
				return err
			}
			r.exemplars = append(r.exemplars, ex)
		case fieldTimeSeriesHistograms:
			i := len(r.histograms) - s.histograms.start
			buckets, cost, err := scanHistogram(msg)
			if err != nil {
				return fmt.Errorf("histograms[%d]: %w", i, err)
			}
			r.buckets += buckets
			if lim.buckets > 0 && r.buckets > lim.buckets {
				return &limitError{what: "native histogram spans and buckets", limit: lim.buckets}
			}
			if err := res.Take(cost); err != nil {
				return err
			}
			if r.histograms, err = grow(r.histograms, res); err != nil {
				return err
			}
			r.histograms = append(r.histograms, prompb.Histogram{})
			h := &r.histograms[len(r.histograms)-1]
			if err := h.Unmarshal(msg); err != nil {
				return fmt.Errorf("histograms[%d]: %w", i, err)
			}
		}
	}
	s.labels.end, s.samples.end, s.histograms.end, s.exemplars.end = len(r.labels), len(r.samples), len(r.histograms), len(r.exemplars)
	if r.series, err = grow(r.series, res); err != nil {
		return err
	}
	r.series = append(r.series, s)
	return nil
}

// Field numbers of the repeated fields of prompb.Histogram.
const (
	fieldHistogramNegativeSpans  = 8
	fieldHistogramNegativeDeltas = 9
	fieldHistogramNegativeCounts = 10
	fieldHistogramPositiveSpans  = 11
	fieldHistogramPositiveDeltas = 12
	fieldHistogramPositiveCounts = 13
	fieldHistogramCustomValues   = 16
)

// scanHistogram counts the spans and buckets of a serialized Histogram
// without decoding it, and returns them with the bytes Unmarshal will
// allocate for them: a 40-byte BucketSpan per span, 8 bytes per number
// (twice that for unpacked numbers, which Unmarshal appends one by one).
func scanHistogram(b []byte) (buckets int, cost int64, err error) {
	const spanSize = int64(unsafe.Sizeof(prompb.BucketSpan{}))
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, 0, protowire.ParseError(n)
		}
		b = b[n:]
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return 0, 0, fmt.Errorf("field %d: %w", num, protowire.ParseError(m))
		}
		v := b[:m]
		b = b[m:]
		switch num {
		case fieldHistogramNegativeSpans, fieldHistogramPositiveSpans:
			buckets++
			cost += 2 * spanSize
		case fieldHistogramNegativeDeltas, fieldHistogramPositiveDeltas:
			if typ == protowire.BytesType {
				// Packed varints: one number per byte without the
				// continuation bit.
				p, _ := protowire.ConsumeBytes(v)
				k := 0
				for _, c := range p {
					if c < 0x80 {
						k++
					}
				}
				buckets += k
				cost += 8 * int64(k)
			} else {
				buckets++
				cost += 16
			}
		case fieldHistogramNegativeCounts, fieldHistogramPositiveCounts, fieldHistogramCustomValues:
			if typ == protowire.BytesType {
				p, _ := protowire.ConsumeBytes(v)
				buckets += len(p) / 8
				cost += int64(len(p))
			} else {
				buckets++
				cost += 16
			}
		}
	}
	return buckets, cost, nil
}

func decodeLabel(b []byte) (wireLabel, error) {
	var l wireLabel
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return l, protowire.ParseError(n)
		}
		b = b[n:]
		if (num == fieldLabelName || num == fieldLabelValue) && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return l, protowire.ParseError(n)
			}
			b = b[n:]
			if num == fieldLabelName {
				l.name = v
			} else {
				l.value = v
			}
			continue
		}
		if num == fieldLabelName || num == fieldLabelValue {
			return l, fmt.Errorf("field %d: wire type %d, want bytes", num, typ)
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return l, protowire.ParseError(n)
		}
		b = b[n:]
	}
	return l, nil
}

// decodeExemplar parses one prompb.Exemplar, its labels into r.exLabels
// (at most lim.labelsPerSeries of them; the rest are counted).
func (r *writeRequest) decodeExemplar(b []byte, lim decodeLimits, res *Reservation) (wireExemplar, error) {
	ex := wireExemplar{labels: span{len(r.exLabels), len(r.exLabels)}}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return ex, protowire.ParseError(n)
		}
		b = b[n:]
		switch {
		case num == fieldExemplarLabels && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return ex, protowire.ParseError(n)
			}
			b = b[n:]
			if lim.labelsPerSeries > 0 && len(r.exLabels)-ex.labels.start >= lim.labelsPerSeries {
				ex.extraLabels++
				continue
			}
			l, err := decodeLabel(v)
			if err != nil {
				return ex, fmt.Errorf("labels[%d]: %w", len(r.exLabels)-ex.labels.start, err)
			}
			if r.exLabels, err = grow(r.exLabels, res); err != nil {
				return ex, err
			}
			r.exLabels = append(r.exLabels, l)
		case num == fieldExemplarValue && typ == protowire.Fixed64Type:
			v, n := protowire.ConsumeFixed64(b)
			if n < 0 {
				return ex, protowire.ParseError(n)
			}
			b = b[n:]
			ex.value = math.Float64frombits(v)
		case num == fieldExemplarTimestamp && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return ex, protowire.ParseError(n)
			}
			b = b[n:]
			ex.ts = int64(v)
		case num == fieldExemplarLabels || num == fieldExemplarValue || num == fieldExemplarTimestamp:
			return ex, fmt.Errorf("field %d: unexpected wire type %d", num, typ)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return ex, protowire.ParseError(n)
			}
			b = b[n:]
		}
	}
	ex.labels.end = len(r.exLabels)
	return ex, nil
}

func decodeSample(b []byte) (prompb.Sample, error) {
	var s prompb.Sample
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return s, protowire.ParseError(n)
		}
		b = b[n:]
		switch {
		case num == fieldSampleValue && typ == protowire.Fixed64Type:
			v, n := protowire.ConsumeFixed64(b)
			if n < 0 {
				return s, protowire.ParseError(n)
			}
			b = b[n:]
			s.Value = math.Float64frombits(v)
		case num == fieldSampleTimestamp && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return s, protowire.ParseError(n)
			}
			b = b[n:]
			s.Timestamp = int64(v)
		case num == fieldSampleValue || num == fieldSampleTimestamp:
			return s, fmt.Errorf("field %d: unexpected wire type %d", num, typ)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return s, protowire.ParseError(n)
			}
			b = b[n:]
		}
	}
	return s, nil
}
