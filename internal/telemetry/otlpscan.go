package telemetry

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// The OTLP decoder bound. pdata decodes a whole ExportMetricsServiceRequest
// at once, and an empty data point is 2 bytes on the wire but a hundred or
// more in memory: 8 MiB of them took 1.5 GB. So before handing a body to
// pdata, the receiver walks its wire format (or, for JSON, counts its
// objects), counting data points, buckets and the memory pdata will
// allocate, refuses what is over the limits, and takes the estimate from
// the ingest budget. The walk allocates nothing.

// otlpScan is what a pre-scan found.
type otlpScan struct {
	points, buckets int
	// cost estimates the bytes pdata allocates to decode the request.
	cost int64
}

// pbNode is the part of the OTLP metrics schema the scan needs: which
// fields are messages (with what they cost once decoded) and which are
// packed numbers.
type pbNode struct {
	cost   int64 // bytes of one decoded occurrence, slice slot included
	point  bool  // a data point
	bucket bool  // counts as one bucket (a summary quantile)
	fields map[protowire.Number]*pbNode
	// numbers are repeated numeric fields: true for fixed64, false for
	// varint.
	numbers map[protowire.Number]bool
}

// Per-occurrence costs, from the pdata structs (internal/generated_proto_*.go
// in go.opentelemetry.io/collector/pdata v1.71) rounded up to their
// allocation size classes, plus the slot in the parent slice counted twice
// for append's doubling. TestOTLPScanCostCoversPdata checks that they
// cover what pdata really allocates.
var otlpMetricsRequest = func() *pbNode {
	anyValue := &pbNode{cost: 96}
	keyValue := &pbNode{cost: 160, fields: map[protowire.Number]*pbNode{2: anyValue}}
	anyValue.fields = map[protowire.Number]*pbNode{
		5: {cost: 64, fields: map[protowire.Number]*pbNode{1: anyValue}}, // array_value
		6: {cost: 64, fields: map[protowire.Number]*pbNode{1: keyValue}}, // kvlist_value
	}
	exemplar := &pbNode{cost: 448, fields: map[protowire.Number]*pbNode{7: keyValue}}
	number := &pbNode{cost: 160, point: true, fields: map[protowire.Number]*pbNode{7: keyValue, 5: exemplar}}
	hist := &pbNode{cost: 256, point: true,
		fields:  map[protowire.Number]*pbNode{9: keyValue, 8: exemplar},
		numbers: map[protowire.Number]bool{6: true, 7: true}}
	expBuckets := &pbNode{numbers: map[protowire.Number]bool{2: false}}
	expHist := &pbNode{cost: 288, point: true,
		fields: map[protowire.Number]*pbNode{1: keyValue, 8: expBuckets, 9: expBuckets, 11: exemplar}}
	summary := &pbNode{cost: 160, point: true,
		fields: map[protowire.Number]*pbNode{7: keyValue, 6: {cost: 64, bucket: true}}}
	points := func(p *pbNode) *pbNode { return &pbNode{cost: 64, fields: map[protowire.Number]*pbNode{1: p}} }
	metric := &pbNode{cost: 192, fields: map[protowire.Number]*pbNode{
		5: points(number), 7: points(number), 9: points(hist), 10: points(expHist), 11: points(summary), 12: keyValue}}
	scope := &pbNode{cost: 128, fields: map[protowire.Number]*pbNode{3: keyValue}}
	scopeMetrics := &pbNode{cost: 160, fields: map[protowire.Number]*pbNode{1: scope, 2: metric}}
	resource := &pbNode{fields: map[protowire.Number]*pbNode{1: keyValue}}
	resourceMetrics := &pbNode{cost: 192, fields: map[protowire.Number]*pbNode{1: resource, 2: scopeMetrics, 1000: scopeMetrics}}
	return &pbNode{fields: map[protowire.Number]*pbNode{1: resourceMetrics}}
}()

// maxOTLPDepth bounds the nesting of attribute values (arrays and maps
// in arrays and maps), the only recursion in the schema.
const maxOTLPDepth = 64

var errOTLPTooDeep = fmt.Errorf("attribute values nested deeper than %d levels", maxOTLPDepth)

// scanOTLPProto pre-scans a serialized ExportMetricsServiceRequest. It
// stops with a *limitError as soon as the points or buckets exceed lim, and
// with a parse error on malformed input.
func scanOTLPProto(b []byte, lim Limits) (otlpScan, error) {
	s := otlpScan{cost: int64(len(b))} // strings and bytes are copied
	err := s.walk(b, otlpMetricsRequest, 0, lim)
	return s, err
}

func (s *otlpScan) walk(b []byte, node *pbNode, depth int, lim Limits) error {
	if depth > maxOTLPDepth {
		return errOTLPTooDeep
	}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if child := node.fields[num]; child != nil && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			b = b[n:]
			s.cost += child.cost
			if child.point {
				s.points++
				if s.points > lim.MaxSeriesPerRequest {
					return &limitError{what: "data points", limit: lim.MaxSeriesPerRequest}
				}
			}
			if child.bucket {
				s.buckets++
			}
			if child.fields != nil || child.numbers != nil {
				if err := s.walk(v, child, depth+1, lim); err != nil {
					return err
				}
			}
		} else if fixed, ok := node.numbers[num]; ok {
			m := protowire.ConsumeFieldValue(num, typ, b)
			if m < 0 {
				return protowire.ParseError(m)
			}
			v := b[:m]
			b = b[m:]
			k := 1
			if typ == protowire.BytesType {
				p, _ := protowire.ConsumeBytes(v)
				if fixed {
					k = len(p) / 8
				} else {
					k = 0
					for _, c := range p {
						if c < 0x80 {
							k++
						}
					}
				}
				s.cost += 8 * int64(k)
			} else {
				s.cost += 16 // appended one by one
			}
			s.buckets += k
		} else {
			m := protowire.ConsumeFieldValue(num, typ, b)
			if m < 0 {
				return protowire.ParseError(m)
			}
			b = b[m:]
		}
		if s.buckets > lim.MaxBucketsPerRequest {
			return &limitError{what: "histogram buckets, bounds and quantiles", limit: lim.MaxBucketsPerRequest}
		}
	}
	return nil
}

// jsonObjectCost is what one JSON object may cost pdata once decoded: the
// largest of the per-message costs above. A JSON number or string in an
// array (2 bytes, `1,`) may become 8 bytes, hence 4 bytes per input byte.
const (
	jsonObjectCost  = 448
	jsonBytesFactor = 4
)

// scanOTLPJSON estimates what pdata allocates to decode a JSON
// ExportMetricsServiceRequest by counting its objects (braces outside
// strings). Data points are counted after decoding; the estimate bounds
// the memory until then.
func scanOTLPJSON(b []byte) (otlpScan, error) {
	objects := int64(0)
	inString, escaped := false, false
	for _, c := range b {
		switch {
		case escaped:
			escaped = false
		case inString:
			switch c {
			case '\\':
				escaped = true
			case '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{':
			objects++
		}
	}
	if inString {
		return otlpScan{}, errors.New("unterminated string")
	}
	return otlpScan{cost: jsonBytesFactor*int64(len(b)) + objects*jsonObjectCost}, nil
}
