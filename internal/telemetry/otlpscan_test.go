package telemetry

import (
	"strconv"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
)

// TestOTLPScanCostCoversPdata checks the pre-scan's estimate against what
// pdata really allocates to decode requests made of many small elements
// of each kind (the shapes a bomb would use), and that it counts the data
// points pdata decodes.
func TestOTLPScanCostCoversPdata(t *testing.T) {
	const n = 20_000
	build := map[string]func(ms pmetric.MetricSlice){
		"empty gauge points": func(ms pmetric.MetricSlice) {
			dps := ms.AppendEmpty().SetEmptyGauge().DataPoints()
			for range n {
				dps.AppendEmpty()
			}
		},
		"sum points with an attribute": func(ms pmetric.MetricSlice) {
			dps := ms.AppendEmpty().SetEmptySum().DataPoints()
			for range n {
				p := dps.AppendEmpty()
				p.Attributes().PutStr("k", "v")
				p.SetDoubleValue(1)
			}
		},
		"histogram points with buckets": func(ms pmetric.MetricSlice) {
			dps := ms.AppendEmpty().SetEmptyHistogram().DataPoints()
			for range n {
				p := dps.AppendEmpty()
				p.BucketCounts().FromRaw([]uint64{1, 2})
				p.ExplicitBounds().FromRaw([]float64{1})
			}
		},
		"exponential histogram points": func(ms pmetric.MetricSlice) {
			dps := ms.AppendEmpty().SetEmptyExponentialHistogram().DataPoints()
			for range n {
				p := dps.AppendEmpty()
				p.Positive().BucketCounts().FromRaw([]uint64{1, 1, 1})
			}
		},
		"summary points with quantiles": func(ms pmetric.MetricSlice) {
			dps := ms.AppendEmpty().SetEmptySummary().DataPoints()
			for range n {
				p := dps.AppendEmpty()
				p.QuantileValues().AppendEmpty()
				p.QuantileValues().AppendEmpty()
			}
		},
		"exemplars": func(ms pmetric.MetricSlice) {
			dps := ms.AppendEmpty().SetEmptyGauge().DataPoints()
			p := dps.AppendEmpty()
			for range n {
				p.Exemplars().AppendEmpty().SetDoubleValue(1)
			}
		},
		"empty attributes": func(ms pmetric.MetricSlice) {
			p := ms.AppendEmpty().SetEmptyGauge().DataPoints().AppendEmpty()
			for i := range n {
				p.Attributes().PutEmpty(strconv.Itoa(i))
			}
		},
		"nested array values": func(ms pmetric.MetricSlice) {
			p := ms.AppendEmpty().SetEmptyGauge().DataPoints().AppendEmpty()
			s := p.Attributes().PutEmptySlice("a")
			for range n {
				s.AppendEmpty().SetEmptySlice()
			}
		},
		"empty metrics": func(ms pmetric.MetricSlice) {
			for range n {
				ms.AppendEmpty()
			}
		},
	}
	lim := Limits{MaxSeriesPerRequest: 1 << 30, MaxBucketsPerRequest: 1 << 30}.withDefaults()
	for name, f := range build {
		t.Run(name, func(t *testing.T) {
			md := pmetric.NewMetrics()
			f(md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics())
			body, err := pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()
			if err != nil {
				t.Fatal(err)
			}
			scan, err := scanOTLPProto(body, lim)
			if err != nil {
				t.Fatal(err)
			}
			if scan.points != md.DataPointCount() {
				t.Errorf("scan counted %d data points, want %d", scan.points, md.DataPointCount())
			}
			var real uint64
			const runs = 3
			for range runs {
				req := pmetricotlp.NewExportRequest()
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

			js, err := pmetricotlp.NewExportRequestFromMetrics(md).MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			jscan, err := scanOTLPJSON(js)
			if err != nil {
				t.Fatal(err)
			}
			req := pmetricotlp.NewExportRequest()
			before := allocated()
			if err := req.UnmarshalJSON(js); err != nil {
				t.Fatal(err)
			}
			real = allocated() - before
			t.Logf("%d bytes of JSON: pdata allocated %d, estimate %d (%.2fx)", len(js), real, jscan.cost, float64(jscan.cost)/float64(real))
			if uint64(jscan.cost) < real {
				t.Errorf("JSON estimate %d bytes is below the %d pdata allocated", jscan.cost, real)
			}
		})
	}
}

// BenchmarkOTLPScan measures the pre-scan alone on the request of
// BenchmarkOTLPHandler (1,000 gauge points), uncompressed.
func BenchmarkOTLPScan(b *testing.B) {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("service.name", "checkout")
	ms := rm.ScopeMetrics().AppendEmpty().Metrics()
	for m := range 100 {
		g := ms.AppendEmpty()
		g.SetName("app_queue_depth_" + strconv.Itoa(m))
		dps := g.SetEmptyGauge().DataPoints()
		for a := range 10 {
			p := dps.AppendEmpty()
			p.Attributes().PutStr("shard", strconv.Itoa(a))
			p.SetTimestamp(1)
			p.SetDoubleValue(float64(a))
		}
	}
	body, err := pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()
	if err != nil {
		b.Fatal(err)
	}
	lim := Limits{}.withDefaults()
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := scanOTLPProto(body, lim); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	req := pmetricotlp.NewExportRequest()
	b.ReportMetric(0, "ns/unmarshal")
	start := time.Now()
	const n = 50
	for range n {
		_ = req.UnmarshalProto(body)
	}
	b.ReportMetric(float64(time.Since(start).Nanoseconds())/n, "ns/unmarshal")
}
