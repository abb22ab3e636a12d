package telemetry

// The traces decoder bound, as for metrics (otlpscan.go): before pdata
// decodes an ExportTraceServiceRequest, the receiver walks its wire format,
// counting spans and the memory pdata will allocate, refuses what is over
// the limits, and takes the estimate from the ingest budget.

// Per-occurrence costs of the ptrace structs (internal/generated_proto_*.go
// in go.opentelemetry.io/collector/pdata v1.71), rounded up to their size
// classes plus the slot in the parent slice counted twice for append's
// doubling. TestTracesScanCostCoversPdata checks them.
var otlpTracesRequest = func() *pbNode {
	anyValue := node(96, nil)
	keyValue := node(160, pbFields{2: anyValue})
	anyValue.set(pbFields{
		5: node(64, pbFields{1: anyValue}), // array_value
		6: node(64, pbFields{1: keyValue}), // kvlist_value
	})
	event := node(128, pbFields{3: keyValue})
	link := node(192, pbFields{4: keyValue})
	status := node(0, nil) // embedded in Span
	span := node(352, pbFields{9: keyValue, 11: event, 13: link, 15: status})
	span.point = true
	scope := node(128, pbFields{3: keyValue})
	scopeSpans := node(160, pbFields{1: scope, 2: span})
	resource := node(0, pbFields{1: keyValue})
	resourceSpans := node(192, pbFields{1: resource, 2: scopeSpans, 1000: scopeSpans})
	return node(0, pbFields{1: resourceSpans})
}()

// scanTracesProto pre-scans a serialized ExportTraceServiceRequest: points
// counts its spans. It stops with a *limitError as soon as the spans exceed
// lim.MaxSeriesPerRequest, and with a parse error on malformed input.
func scanTracesProto(b []byte, lim Limits) (otlpScan, error) {
	s := otlpScan{cost: int64(len(b))}
	err := s.walk(b, otlpTracesRequest, 0, lim)
	return s, err
}
