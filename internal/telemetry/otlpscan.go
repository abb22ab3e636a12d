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
// packed numbers. Fields are indexed by number in arrays, not maps: the
// scan runs on every request and must cost a fraction of the decode.
type pbNode struct {
	cost   int64 // bytes of one decoded occurrence, slice slot included
	point  bool  // a data point
	bucket bool  // counts as one bucket (a summary quantile)
	leaf   bool  // no message or number fields: not walked
	fields [maxPBField + 1]*pbNode
	// numbers are repeated numeric fields: numFixed64 or numVarint.
	numbers [maxPBField + 1]uint8
	// deprecated is field 1000 of ResourceMetrics (deprecated
	// scope metrics), the one field number past maxPBField.
	deprecated *pbNode
}

const (
	maxPBField = 16 // Span (traces) has fields up to 16
	numFixed64 = 1
	numVarint  = 2
)

func (n *pbNode) child(num protowire.Number) *pbNode {
	if num >= 0 && num <= maxPBField {
		return n.fields[num]
	}
	if num == 1000 {
		return n.deprecated
	}
	return nil
}

func (n *pbNode) number(num protowire.Number) uint8 {
	if num >= 0 && num <= maxPBField {
		return n.numbers[num]
	}
	return 0
}

type pbFields map[protowire.Number]*pbNode

// node builds a pbNode; children may be filled in later (the schema is
// recursive through attribute values).
func node(cost int64, fields pbFields) *pbNode {
	n := &pbNode{cost: cost}
	n.set(fields)
	return n
}

func (n *pbNode) set(fields pbFields) {
	for num, c := range fields {
		if num == 1000 {
			n.deprecated = c
		} else {
			n.fields[num] = c
		}
	}
	n.leaf = len(fields) == 0 && n.numbers == [maxPBField + 1]uint8{}
}

// Per-occurrence costs, from the pdata structs (internal/generated_proto_*.go
// in go.opentelemetry.io/collector/pdata v1.71) rounded up to their
// allocation size classes, plus the slot in the parent slice counted twice
// for append's doubling. TestOTLPScanCostCoversPdata checks that they
// cover what pdata really allocates.
var otlpMetricsRequest = func() *pbNode {
	anyValue := node(96, nil)
	keyValue := node(160, pbFields{2: anyValue})
	anyValue.set(pbFields{
		5: node(64, pbFields{1: anyValue}), // array_value
		6: node(64, pbFields{1: keyValue}), // kvlist_value
	})
	exemplar := node(448, pbFields{7: keyValue})
	number := node(160, pbFields{7: keyValue, 5: exemplar})
	number.point = true
	hist := &pbNode{cost: 256, point: true}
	hist.numbers[6], hist.numbers[7] = numFixed64, numFixed64
	hist.set(pbFields{9: keyValue, 8: exemplar})
	expBuckets := &pbNode{}
	expBuckets.numbers[2] = numVarint
	expBuckets.set(nil)
	expHist := node(288, pbFields{1: keyValue, 8: expBuckets, 9: expBuckets, 11: exemplar})
	expHist.point = true
	quantile := node(64, nil)
	quantile.bucket = true
	summary := node(160, pbFields{7: keyValue, 6: quantile})
	summary.point = true
	points := func(p *pbNode) *pbNode { return node(64, pbFields{1: p}) }
	metric := node(192, pbFields{5: points(number), 7: points(number), 9: points(hist), 10: points(expHist), 11: points(summary), 12: keyValue})
	scope := node(128, pbFields{3: keyValue})
	scopeMetrics := node(160, pbFields{1: scope, 2: metric})
	resource := node(0, pbFields{1: keyValue})
	resourceMetrics := node(192, pbFields{1: resource, 2: scopeMetrics, 1000: scopeMetrics})
	return node(0, pbFields{1: resourceMetrics})
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
		if typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			b = b[n:]
			if child := node.child(num); child != nil {
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
				if !child.leaf {
					if err := s.walk(v, child, depth+1, lim); err != nil {
						return err
					}
				}
			} else if kind := node.number(num); kind != 0 {
				// Packed numbers.
				k := 0
				if kind == numFixed64 {
					k = len(v) / 8
				} else {
					for _, c := range v {
						if c < 0x80 {
							k++
						}
					}
				}
				s.cost += 8 * int64(k)
				s.buckets += k
			}
		} else {
			m := protowire.ConsumeFieldValue(num, typ, b)
			if m < 0 {
				return protowire.ParseError(m)
			}
			b = b[m:]
			if node.number(num) != 0 {
				// An unpacked number, appended one by one.
				s.cost += 16
				s.buckets++
			}
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
