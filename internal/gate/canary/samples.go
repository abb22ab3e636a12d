package canary

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"

	"github.com/qsp-dev/qsp/internal/jsonpos"
)

// MaxSamplesBytes caps the size of a JSON samples document.
const MaxSamplesBytes = 64 << 20

// DecodeSamples reads canary data in QSP's JSON samples format:
//
//	{"metrics": {
//	  "latency": {"baseline": [0.21, 0.19, null], "canary": [0.22, 0.25]},
//	  "errors":  {"baseline": {"errors": 3, "total": 1000},
//	              "canary":   {"errors": 9, "total": 1000}}}}
//
// A side is either an array of samples (null for a missing sample, which
// the NaN policy handles) or an object of counts. Both sides of a metric
// have the same form. Counts may be fractional (PromQL increase()); they
// are rounded when judged. Unknown fields, trailing data, negative counts
// and errors above total are errors naming the metric and field; syntax
// errors name the line and column.
func DecodeSamples(r io.Reader) (Input, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxSamplesBytes+1))
	if err != nil {
		return Input{}, fmt.Errorf("read samples: %w", err)
	}
	if len(data) > MaxSamplesBytes {
		return Input{}, fmt.Errorf("samples document larger than %d bytes", MaxSamplesBytes)
	}
	var doc struct {
		Metrics map[string]json.RawMessage `json:"metrics"`
	}
	if err := strictUnmarshal(data, &doc); err != nil {
		return Input{}, fmt.Errorf("samples: %w", describeJSONError(data, err))
	}
	if doc.Metrics == nil {
		return Input{}, errors.New(`samples: no "metrics" object`)
	}
	in := Input{Metrics: make(map[string]MetricInput, len(doc.Metrics))}
	names := make([]string, 0, len(doc.Metrics))
	for name := range doc.Metrics {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if name == "" {
			return Input{}, errors.New("samples: a metric has an empty name")
		}
		mi, err := decodeMetric(doc.Metrics[name])
		if err != nil {
			return Input{}, fmt.Errorf("samples: metric %q: %w", name, err)
		}
		in.Metrics[name] = mi
	}
	return in, nil
}

func decodeMetric(raw json.RawMessage) (MetricInput, error) {
	var sides struct {
		Baseline json.RawMessage `json:"baseline"`
		Canary   json.RawMessage `json:"canary"`
	}
	if err := strictUnmarshal(raw, &sides); err != nil {
		return MetricInput{}, err
	}
	var mi MetricInput
	var kinds [2]byte
	for i, side := range []struct {
		name string
		raw  json.RawMessage
	}{{"baseline", sides.Baseline}, {"canary", sides.Canary}} {
		trimmed := bytes.TrimSpace(side.raw)
		if len(trimmed) == 0 || string(trimmed) == "null" {
			return MetricInput{}, fmt.Errorf("%s: missing", side.name)
		}
		kinds[i] = trimmed[0]
		switch trimmed[0] {
		case '[':
			var vals []*float64
			if err := strictUnmarshal(trimmed, &vals); err != nil {
				return MetricInput{}, fmt.Errorf("%s: %w", side.name, err)
			}
			out := make([]float64, len(vals))
			for j, v := range vals {
				if v == nil {
					out[j] = math.NaN()
				} else {
					out[j] = *v
				}
			}
			if i == 0 {
				mi.Baseline = out
			} else {
				mi.Canary = out
			}
		case '{':
			var c struct {
				Errors *float64 `json:"errors"`
				Total  *float64 `json:"total"`
			}
			if err := strictUnmarshal(trimmed, &c); err != nil {
				return MetricInput{}, fmt.Errorf("%s: %w", side.name, err)
			}
			if c.Errors == nil || c.Total == nil {
				return MetricInput{}, fmt.Errorf("%s: counts need both \"errors\" and \"total\"", side.name)
			}
			counts := Counts{Errors: *c.Errors, Total: *c.Total}
			if err := counts.validate(); err != nil {
				return MetricInput{}, fmt.Errorf("%s: %w", side.name, err)
			}
			if i == 0 {
				mi.BaselineCounts = &counts
			} else {
				mi.CanaryCounts = &counts
			}
		default:
			return MetricInput{}, fmt.Errorf("%s: expected an array of samples or an object of counts", side.name)
		}
	}
	if kinds[0] != kinds[1] {
		return MetricInput{}, errors.New("baseline and canary must both be sample arrays or both be counts")
	}
	return mi, nil
}

// strictUnmarshal decodes exactly one JSON value, rejecting unknown
// fields and trailing data.
func strictUnmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("unexpected data after the JSON value")
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("unexpected data after the JSON value")
	}
	return nil
}

// describeJSONError adds the line and column to syntax and type errors.
func describeJSONError(data []byte, err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	var off int64
	switch {
	case errors.As(err, &se):
		off = se.Offset - 1 // the offending byte is the last one read
	case errors.As(err, &te):
		off = te.Offset
	default:
		return err
	}
	return fmt.Errorf("%s: %w", jsonpos.At(data, off), err)
}
