package telemetry

import (
	"errors"
	"fmt"
	"math"

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
	exemplars  int
}

// wireSeries is one TimeSeries: index ranges into the request's slices.
type wireSeries struct {
	labels, samples, histograms span
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
)

func (r *writeRequest) reset() {
	r.series = r.series[:0]
	r.labels = r.labels[:0]
	r.samples = r.samples[:0]
	clear(r.histograms)
	r.histograms = r.histograms[:0]
	r.exemplars = 0
}

// decode parses b, a serialized WriteRequest. Unknown fields (metadata,
// fields of later protocol versions) are skipped, as protobuf requires. On
// error r holds an unspecified prefix of the request and must be reset.
func (r *writeRequest) decode(b []byte, maxSeries int) error {
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
			if maxSeries > 0 && len(r.series) >= maxSeries {
				return errTooManySeries
			}
			if err := r.decodeSeries(v); err != nil {
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

var errTooManySeries = errors.New("too many series")

func (r *writeRequest) decodeSeries(b []byte) error {
	s := wireSeries{
		labels:     span{len(r.labels), len(r.labels)},
		samples:    span{len(r.samples), len(r.samples)},
		histograms: span{len(r.histograms), len(r.histograms)},
	}
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
		switch num {
		case fieldTimeSeriesLabels:
			l, err := decodeLabel(msg)
			if err != nil {
				return fmt.Errorf("labels[%d]: %w", len(r.labels)-s.labels.start, err)
			}
			r.labels = append(r.labels, l)
		case fieldTimeSeriesSamples:
			smp, err := decodeSample(msg)
			if err != nil {
				return fmt.Errorf("samples[%d]: %w", len(r.samples)-s.samples.start, err)
			}
			r.samples = append(r.samples, smp)
		case fieldTimeSeriesExemplars:
			// Exemplar storage is off in the embedded TSDB, as it is by
			// default in Prometheus: exemplars are counted and dropped.
			r.exemplars++
		case fieldTimeSeriesHistograms:
			r.histograms = append(r.histograms, prompb.Histogram{})
			h := &r.histograms[len(r.histograms)-1]
			if err := h.Unmarshal(msg); err != nil {
				return fmt.Errorf("histograms[%d]: %w", len(r.histograms)-1-s.histograms.start, err)
			}
		}
	}
	s.labels.end, s.samples.end, s.histograms.end = len(r.labels), len(r.samples), len(r.histograms)
	r.series = append(r.series, s)
	return nil
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
