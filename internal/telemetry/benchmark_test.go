package telemetry

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"

	"github.com/qsp-dev/qsp/internal/externaltest"
)

// The remote_write ingestion benchmark: 100,000 active series sent as
// Prometheus' queue manager would, pre-encoded, by benchClients concurrent
// clients over loopback HTTP, to QSP's receiver and to a real Prometheus
// (--web.enable-remote-write-receiver) receiving the same payloads. One op
// is one round: every series gets samplesPerSeries new samples, first in
// QSP, then in Prometheus, so both run under the same machine load (the
// machine is shared) and their ratio is measured, not guessed. A warm-up
// round creates the series before the timer starts, so the figures are for
// steady-state ingestion at 100k active series.
//
// Memory per active series is the growth of the live heap (after a forced
// GC) from before the store was opened to after the last round, divided by
// 100k; for Prometheus the same figure is read from its /metrics after a GC
// forced through /debug/pprof/heap?gc=1.
//
//	go test -run '^$' -bench BenchmarkRemoteWrite -benchtime 10x ./internal/telemetry
const (
	benchSeries         = 100_000
	benchSeriesPerReq   = 2_000
	benchClients        = 4
	benchScrapeInterval = 15 * time.Second
)

// benchShapes are the request shapes measured: several samples per series
// (a queue manager catching up, or a long batch deadline) and one sample
// per series (the steady state of a 15s scrape with a 5s batch deadline).
var benchShapes = []struct {
	name             string
	samplesPerSeries int
}{
	{"2000x5", 5},
	{"2000x1", 1},
}

func BenchmarkRemoteWrite(b *testing.B) {
	for _, shape := range benchShapes {
		b.Run(shape.name, func(b *testing.B) {
			benchRemoteWrite(b, shape.samplesPerSeries)
		})
	}
}

// benchTarget is one receiver under benchmark.
type benchTarget struct {
	url     string
	heap    func() float64
	series  func() float64
	elapsed time.Duration
}

func benchRemoteWrite(b *testing.B, samplesPerSeries int) {
	rounds, _ := payloads(b, samplesPerSeries, b.N)
	client := benchClient()
	defer client.CloseIdleConnections()

	qspBefore := float64(liveHeap())
	e, err := OpenEmbedded(EmbeddedOptions{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	h, err := NewWriteHandler(ReceiverOptions{Storage: e})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	targets := []*benchTarget{{
		url:    srv.URL,
		heap:   func() float64 { return float64(liveHeap()) - qspBefore },
		series: func() float64 { return float64(e.DB().Head().NumSeries()) },
	}}
	if prom := startBenchPrometheus(b, client); prom != nil {
		targets = append(targets, prom)
	}

	for _, t := range targets {
		sendRound(b, client, t.url, rounds[0])
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 1; i <= b.N; i++ {
		for _, t := range targets {
			start := time.Now()
			sendRound(b, client, t.url, rounds[i])
			t.elapsed += time.Since(start)
		}
	}
	b.StopTimer()
	samples := float64(b.N * benchSeries * samplesPerSeries)
	var rates, mems []float64
	for _, t := range targets {
		if got := t.series(); got != benchSeries {
			b.Fatalf("%s holds %v series, want %d", t.url, got, benchSeries)
		}
		rates = append(rates, samples/t.elapsed.Seconds())
		mems = append(mems, t.heap()/benchSeries)
	}
	b.ReportMetric(rates[0], "qsp-samples/s")
	b.ReportMetric(mems[0], "qsp-B/series")
	if len(targets) > 1 {
		b.ReportMetric(rates[1], "prom-samples/s")
		b.ReportMetric(mems[1], "prom-B/series")
		b.ReportMetric(rates[0]/rates[1], "throughput-ratio")
		b.ReportMetric(mems[0]/mems[1], "memory-ratio")
	}
}

// startBenchPrometheus starts a Prometheus that accepts remote_write, or
// returns nil when none is installed (a failure under CI).
func startBenchPrometheus(b *testing.B, client *http.Client) *benchTarget {
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		if externaltest.InCI() {
			externaltest.Missing(b, "prometheus not found")
		}
		b.Log("prometheus not installed: measuring QSP alone")
		return nil
	}
	dir := b.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte("global:\n  scrape_interval: 1h\nscrape_configs: []\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	addr := externaltest.FreeAddr(b)
	p := externaltest.Start(b, bin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--web.enable-remote-write-receiver", "--log.level=warn")
	base := "http://" + addr
	externaltest.WaitHTTP(b, p, base+"/-/ready", 30*time.Second)
	before := promHeap(b, client, base)
	return &benchTarget{
		url:    base + "/api/v1/write",
		heap:   func() float64 { return promHeap(b, client, base) - before },
		series: func() float64 { return promMetric(b, client, base, "prometheus_tsdb_head_series") },
	}
}

// benchPayloads holds pre-encoded rounds, shared by both receivers of a
// shape so they get the same bytes.
var benchPayloads struct {
	sync.Mutex
	key    string
	rounds [][][]byte
	base   int64
}

// payloads returns rounds+1 rounds of requests (round 0 is the warm-up)
// with timestamps ending before now.
func payloads(b *testing.B, samplesPerSeries, rounds int) ([][][]byte, int64) {
	b.Helper()
	benchPayloads.Lock()
	defer benchPayloads.Unlock()
	key := strconv.Itoa(samplesPerSeries)
	if benchPayloads.key == key && len(benchPayloads.rounds) > rounds {
		return benchPayloads.rounds[:rounds+1], benchPayloads.base
	}
	benchPayloads.rounds = nil // let the previous set be collected
	step := benchScrapeInterval.Milliseconds()
	base := time.Now().Add(-time.Minute).UnixMilli() - int64((rounds+1)*samplesPerSeries)*step
	labelSets := benchLabels()
	out := make([][][]byte, rounds+1)
	var raw []byte
	for r := range out {
		for lo := 0; lo < benchSeries; lo += benchSeriesPerReq {
			req := prompb.WriteRequest{Timeseries: make([]prompb.TimeSeries, 0, benchSeriesPerReq)}
			for i := lo; i < lo+benchSeriesPerReq; i++ {
				smp := make([]prompb.Sample, samplesPerSeries)
				for k := range smp {
					n := r*samplesPerSeries + k
					smp[k] = prompb.Sample{Timestamp: base + int64(n)*step, Value: float64(n*(i%7+1)) + float64(i%13)/4}
				}
				req.Timeseries = append(req.Timeseries, prompb.TimeSeries{Labels: labelSets[i], Samples: smp})
			}
			var err error
			if raw, err = appendMarshal(raw[:0], &req); err != nil {
				b.Fatal(err)
			}
			out[r] = append(out[r], snappy.Encode(nil, raw))
		}
	}
	benchPayloads.key, benchPayloads.rounds, benchPayloads.base = key, out, base
	return out, base
}

func appendMarshal(buf []byte, req *prompb.WriteRequest) ([]byte, error) {
	n := req.Size()
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	_, err := req.MarshalToSizedBuffer(buf)
	return buf, err
}

// benchLabels returns 100k sorted label sets shaped like Kubernetes
// service metrics: 50 metric names, 8 labels each.
func benchLabels() [][]prompb.Label {
	out := make([][]prompb.Label, benchSeries)
	methods := []string{"GET", "POST", "PUT", "DELETE"}
	codes := []string{"200", "201", "204", "400", "404", "500", "503"}
	for i := range out {
		pod := i / 50
		out[i] = []prompb.Label{
			{Name: "__name__", Value: fmt.Sprintf("app_http_requests_%02d_total", i%50)},
			{Name: "code", Value: codes[i%len(codes)]},
			{Name: "handler", Value: fmt.Sprintf("/api/v1/resource%d", (i/7)%20)},
			{Name: "instance", Value: fmt.Sprintf("10.%d.%d.%d:8080", pod/65536%256, pod/256%256, pod%256)},
			{Name: "job", Value: "checkout"},
			{Name: "method", Value: methods[i%len(methods)]},
			{Name: "namespace", Value: fmt.Sprintf("team-%d", pod%12)},
			{Name: "pod", Value: fmt.Sprintf("checkout-7d9f8c6b5-%05d", pod)},
		}
	}
	return out
}

// sendRound posts every request of a round with benchClients clients.
func sendRound(b *testing.B, client *http.Client, url string, reqs [][]byte) {
	work := make(chan []byte)
	var wg sync.WaitGroup
	errs := make(chan error, benchClients)
	for range benchClients {
		wg.Go(func() {
			for body := range work {
				req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/x-protobuf")
				req.Header.Set("Content-Encoding", "snappy")
				req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
				resp, err := client.Do(req)
				if err != nil {
					errs <- err
					continue
				}
				msg, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode/100 != 2 {
					select {
					case errs <- fmt.Errorf("status %d: %s", resp.StatusCode, msg):
					default:
					}
				}
			}
		})
	}
	for _, body := range reqs {
		work <- body
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatalf("remote write: %v", err)
	default:
	}
}

func benchClient() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: benchClients, DisableCompression: true}}
}

// liveHeap forces a GC and returns the live heap.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// promHeap forces a GC in Prometheus (the pprof heap endpoint's gc=1) and
// returns its live heap, the same measure liveHeap takes of QSP.
func promHeap(b *testing.B, client *http.Client, base string) float64 {
	resp, err := client.Get(base + "/debug/pprof/heap?gc=1")
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return promMetric(b, client, base, "go_memstats_heap_alloc_bytes")
}

func promMetric(b *testing.B, client *http.Client, base, name string) float64 {
	resp, err := client.Get(base + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				b.Fatal(err)
			}
			return v
		}
	}
	b.Fatalf("metric %s not found in Prometheus /metrics", name)
	return 0
}

// BenchmarkRemoteWriteDecode measures the WriteRequest decoder alone on one
// queue-manager-sized request (2,000 series × 1 sample); it must not
// allocate once warm.
func BenchmarkRemoteWriteDecode(b *testing.B) {
	ls := benchLabels()[:benchSeriesPerReq]
	req := prompb.WriteRequest{}
	for i := range ls {
		req.Timeseries = append(req.Timeseries, prompb.TimeSeries{Labels: ls[i], Samples: []prompb.Sample{{Value: float64(i), Timestamp: 1_700_000_000_000}}})
	}
	raw, err := req.Marshal()
	if err != nil {
		b.Fatal(err)
	}
	var wr writeRequest
	// With the default limits and a budget, as the handler decodes.
	lim := Limits{}.withDefaults()
	dl := decodeLimits{series: lim.MaxSeriesPerRequest, labelsPerSeries: lim.MaxLabelsPerSeries, samples: lim.MaxSamplesPerRequest, buckets: lim.MaxBucketsPerRequest}
	budget, _ := NewBudget(0, nil)
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		res := budget.Reserve("bench")
		if err := res.Take(wr.size()); err != nil {
			b.Fatal(err)
		}
		if err := wr.decode(raw, dl, &res); err != nil {
			b.Fatal(err)
		}
		res.Release()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchSeriesPerReq), "ns/series")
}

// BenchmarkEmbeddedSamples measures Samples, the engine's read path: one
// hour of raw samples of 1,000 series scraped every 15s, out of a day.
func BenchmarkEmbeddedSamples(b *testing.B) {
	e := openTestDB(b)
	const (
		nSeries = 1000
		step    = 15_000
		day     = 24 * 3600_000
	)
	end := time.Now().Truncate(time.Minute).UnixMilli()
	app := e.AppenderV2(b.Context())
	for t := end - day; t <= end; t += step {
		for s := range nSeries {
			ls := mustLabels("__name__", "http_requests_total", "service", "checkout", "pod", strconv.Itoa(s))
			if _, err := app.Append(0, ls, 0, t, float64(t/step+int64(s)), nil, nil, storage.AOptions{}); err != nil {
				b.Fatal(err)
			}
		}
		if (t/step)%100 == 0 {
			if err := app.Commit(); err != nil {
				b.Fatal(err)
			}
			app = e.AppenderV2(b.Context())
		}
	}
	if err := app.Commit(); err != nil {
		b.Fatal(err)
	}
	matchers := []*labels.Matcher{
		labels.MustNewMatcher(labels.MatchEqual, "__name__", "http_requests_total"),
		labels.MustNewMatcher(labels.MatchEqual, "service", "checkout"),
	}
	b.ReportAllocs()
	var n int
	for b.Loop() {
		m, err := e.Samples(b.Context(), matchers, time.UnixMilli(end-3600_000), time.UnixMilli(end))
		if err != nil {
			b.Fatal(err)
		}
		n = 0
		for _, s := range m {
			n += len(s.Floats)
		}
	}
	if n != nSeries*240 {
		b.Fatalf("read %d samples, want %d", n, nSeries*240)
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "samples/s")
}
