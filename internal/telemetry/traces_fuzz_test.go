package telemetry

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
)

// FuzzTracesDecode checks the traces receiver on arbitrary bodies: it
// never panics, answers 200 or 4xx, and its pre-scan counts the spans
// pdata decodes.
func FuzzTracesDecode(f *testing.F) {
	now := time.Now()
	// A small request of each kind: the mutator works on every byte, and
	// the 480-span reference request would leave it a few executions a
	// second.
	full := referenceTraces(now)
	td := ptrace.NewTraces()
	full.ResourceSpans().At(0).CopyTo(td.ResourceSpans().AppendEmpty())
	td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().RemoveIf(func(s ptrace.Span) bool { return s.SpanID()[0] >= 6 })
	req := ptraceotlp.NewExportRequestFromTraces(td)
	pb, _ := req.MarshalProto()
	js, _ := req.MarshalJSON()
	f.Add(pb, false)
	f.Add(js, true)
	f.Add([]byte(`{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"a"}}]},"scopeSpans":[{"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"x","endTimeUnixNano":"1"}]}]}]}`), true)
	f.Add([]byte{0x0a, 0x00}, false)
	f.Add([]byte{0x0a, 0x04, 0x12, 0x02, 0x12, 0x00}, false)
	e, err := OpenEmbedded(EmbeddedOptions{Dir: f.TempDir()})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = e.Close() })
	h, err := NewTracesHandler(ReceiverOptions{Storage: e, Now: func() time.Time { return now }})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte, asJSON bool) {
		if len(body) > fuzzMaxInput {
			return
		}
		ct := "application/x-protobuf"
		if asJSON {
			ct = "application/json"
		}
		r := httptest.NewRequest(http.MethodPost, "/v1/traces", bytes.NewReader(body))
		r.Header.Set("Content-Type", ct)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code != http.StatusOK && (rec.Code < 400 || rec.Code >= 500) {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		if !asJSON {
			scan, err := scanTracesProto(body, Limits{}.withDefaults())
			req := ptraceotlp.NewExportRequest()
			if err == nil && req.UnmarshalProto(body) == nil && req.Traces().SpanCount() != scan.points {
				t.Fatalf("pre-scan counted %d spans, pdata decoded %d", scan.points, req.Traces().SpanCount())
			}
		}
	})
}

// TestTracesScanCostCoversPdata checks the pre-scan's estimate against
// what pdata really allocates for requests of many small elements.
func TestTracesScanCostCoversPdata(t *testing.T) {
	const n = 20_000
	build := map[string]func(ss ptrace.SpanSlice){
		"empty spans": func(ss ptrace.SpanSlice) {
			for range n {
				ss.AppendEmpty()
			}
		},
		"spans with ids and an attribute": func(ss ptrace.SpanSlice) {
			for i := range n {
				s := ss.AppendEmpty()
				s.SetTraceID(pcommon.TraceID{1})
				s.SetSpanID(pcommon.SpanID{1})
				s.Attributes().PutStr("k", "v")
				s.Status().SetCode(ptrace.StatusCodeError)
				s.TraceState().FromRaw("ot=th:" + strconv.Itoa(i%10))
			}
		},
		"events": func(ss ptrace.SpanSlice) {
			s := ss.AppendEmpty()
			for range n {
				s.Events().AppendEmpty()
			}
		},
		"links": func(ss ptrace.SpanSlice) {
			s := ss.AppendEmpty()
			for range n {
				s.Links().AppendEmpty()
			}
		},
		"empty attributes": func(ss ptrace.SpanSlice) {
			s := ss.AppendEmpty()
			for i := range n {
				s.Attributes().PutEmpty(strconv.Itoa(i))
			}
		},
	}
	lim := Limits{MaxSeriesPerRequest: 1 << 30, MaxBucketsPerRequest: 1 << 30}.withDefaults()
	for name, fill := range build {
		t.Run(name, func(t *testing.T) {
			td := ptrace.NewTraces()
			fill(td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans())
			body, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
			if err != nil {
				t.Fatal(err)
			}
			scan, err := scanTracesProto(body, lim)
			if err != nil {
				t.Fatal(err)
			}
			if scan.points != td.SpanCount() {
				t.Errorf("scan counted %d spans, want %d", scan.points, td.SpanCount())
			}
			var real uint64
			const runs = 3
			for range runs {
				req := ptraceotlp.NewExportRequest()
				before := allocated()
				if err := req.UnmarshalProto(body); err != nil {
					t.Fatal(err)
				}
				real += allocated() - before
			}
			real /= runs
			t.Logf("%d bytes on the wire: pdata allocated %d, estimate %d (%.2fx)", len(body), real, scan.cost, float64(scan.cost)/float64(real))
			if uint64(scan.cost) < real {
				t.Errorf("estimate %d bytes is below the %d pdata allocated", scan.cost, real)
			}
		})
	}
}
