package telemetry

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang/snappy"
	"google.golang.org/protobuf/encoding/protowire"
)

// The decoder bombs of the outside attack (issue 15), each against the
// real handler over HTTP: refused before the memory is allocated, with a
// clear message, and with the budget given back.

// emptyFieldSeries is a WriteRequest of one series made of n empty fields
// number field (2 bytes each on the wire) after a metric name.
func emptyFieldSeries(field protowire.Number, n int) []byte {
	var ts []byte
	ts = protowire.AppendTag(ts, fieldTimeSeriesLabels, protowire.BytesType)
	lbl := protowire.AppendString(protowire.AppendTag(nil, fieldLabelName, protowire.BytesType), "__name__")
	lbl = protowire.AppendString(protowire.AppendTag(lbl, fieldLabelValue, protowire.BytesType), "bomb")
	ts = protowire.AppendBytes(ts, lbl)
	for range n {
		ts = protowire.AppendTag(ts, field, protowire.BytesType)
		ts = protowire.AppendVarint(ts, 0)
	}
	return protowire.AppendBytes(protowire.AppendTag(nil, fieldWriteRequestTimeseries, protowire.BytesType), ts)
}

// histogramBomb is the finding: one series of n empty histogram fields.
func histogramBomb(n int) []byte { return emptyFieldSeries(fieldTimeSeriesHistograms, n) }

// spanBomb is one histogram of n empty positive spans.
func spanBomb(n int) []byte {
	var h []byte
	for range n {
		h = protowire.AppendTag(h, fieldHistogramPositiveSpans, protowire.BytesType)
		h = protowire.AppendVarint(h, 0)
	}
	var ts []byte
	ts = protowire.AppendTag(ts, fieldTimeSeriesHistograms, protowire.BytesType)
	ts = protowire.AppendBytes(ts, h)
	return protowire.AppendBytes(protowire.AppendTag(nil, fieldWriteRequestTimeseries, protowire.BytesType), ts)
}

// otlpPointBomb is an ExportMetricsServiceRequest of one gauge of n empty
// data points.
func otlpPointBomb(n int) []byte {
	var gauge []byte
	for range n {
		gauge = protowire.AppendTag(gauge, 1, protowire.BytesType)
		gauge = protowire.AppendVarint(gauge, 0)
	}
	metric := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "bomb")
	metric = protowire.AppendBytes(protowire.AppendTag(metric, 5, protowire.BytesType), gauge)
	scope := protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), metric)
	rm := protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), scope)
	return protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), rm)
}

func gzipBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// allocated returns the bytes the process allocated in total so far.
func allocated() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func TestDecoderBombs(t *testing.T) {
	e := openTestDB(t)
	budget, err := NewBudget(0, nil)
	if err != nil {
		t.Fatal(err)
	}
	opts := ReceiverOptions{Storage: e, Budget: budget}
	wh, err := NewWriteHandler(opts)
	if err != nil {
		t.Fatal(err)
	}
	oh, err := NewOTLPHandler(opts)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/api/v1/write", wh)
	mux.Handle("/v1/metrics", oh)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	// A snappy block whose header claims 64 MiB, in 7 bytes.
	lie := binary.AppendUvarint(nil, 64<<20)
	lie = append(lie, 0x00, 0x61, 0x00)[:7]

	const (
		rw   = "/api/v1/write"
		otlp = "/v1/metrics"
		pb   = "application/x-protobuf"
	)
	cases := []struct {
		name, path, enc string
		body            []byte
		status          int
		want            string
		// maxAlloc bounds what the request may allocate in total; before
		// the fix each took the figure in the comment.
		maxAlloc uint64
	}{
		// 8 MiB decoded, 394 KB sent: 2.08 GB allocated, then OOM.
		{"histogram field bomb", rw, "snappy", snappy.Encode(nil, histogramBomb(4<<20)), 413,
			"more than 100000 samples, histogram samples and exemplars", 128 << 20},
		// No samples, so nothing to reject: 204, but bounded.
		{"label field bomb", rw, "snappy", snappy.Encode(nil, emptyFieldSeries(fieldTimeSeriesLabels, 4<<20)), 204,
			"", 32 << 20},
		{"span bomb", rw, "snappy", snappy.Encode(nil, spanBomb(4<<20)), 413,
			"more than 1000000 native histogram spans and buckets", 32 << 20},
		// 7 bytes claiming 64 MiB: 64 MiB allocated before refusing.
		{"snappy header lie", rw, "snappy", lie, 400, "header claims 67108864 decoded bytes, more than a 7-byte block can hold", 1 << 20},
		// A 32 KB gzip of empty data points: 1.5 GB decoded before 413.
		{"otlp gzip bomb", otlp, "gzip", gzipBytes(t, otlpPointBomb(16<<20)), 413, "more than 50000 data points", 48 << 20},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := allocated()
			req, _ := http.NewRequest(http.MethodPost, srv.URL+c.path, bytes.NewReader(c.body))
			req.Header.Set("Content-Type", pb)
			req.Header.Set("Content-Encoding", c.enc)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			got := allocated() - before
			t.Logf("%d-byte body: %d %s; %.1f MiB allocated", len(c.body), resp.StatusCode, b, float64(got)/(1<<20))
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.status, b)
			}
			if c.status >= 400 {
				if msg := errorMessage(t, string(b)); !strings.Contains(msg, c.want) {
					t.Errorf("error %q does not contain %q", msg, c.want)
				}
			}
			if got > c.maxAlloc {
				t.Errorf("request allocated %d bytes, more than %d", got, c.maxAlloc)
			}
			if n := budget.InUse(); n != 0 {
				t.Errorf("budget holds %d bytes after the request", n)
			}
		})
	}
}

// TestBudgetRefusesWith429 fills the budget and checks that every receiver
// answers 429 with Retry-After, and takes requests again once it is free.
func TestBudgetRefusesWith429(t *testing.T) {
	e := openTestDB(t)
	budget, err := NewBudget(1<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	opts := ReceiverOptions{Storage: e, Budget: budget}
	wh, _ := NewWriteHandler(opts)
	oh, _ := NewOTLPHandler(opts)
	eh, _ := NewEventsHandler(opts)
	hold := budget.Reserve("test")
	if err := hold.Take(1<<20 - 100); err != nil {
		t.Fatal(err)
	}
	at := time.Now().Add(-time.Minute).UnixMilli()
	write := encodeWrite(t, series(nil, "__name__", "m"))
	_ = at
	for _, c := range []struct {
		name string
		h    http.Handler
		ct   string
		body []byte
	}{
		{"remote_write", wh, "application/x-protobuf", write},
		{"otlp", oh, "application/x-protobuf", otlpPointBomb(1)},
		{"events", eh, "application/json", []byte(`{"events": [{"type": "counts", "service": "s", "sli": "x", "good": 1}]}`)},
	} {
		t.Run(c.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(c.body))
			req.Header.Set("Content-Type", c.ct)
			rec := httptest.NewRecorder()
			c.h.ServeHTTP(rec, req)
			if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" {
				t.Fatalf("status %d, Retry-After %q: %s", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
			}
			if msg := errorMessage(t, rec.Body.String()); !strings.Contains(msg, "ingest memory budget") {
				t.Errorf("error %q does not name the budget", msg)
			}
		})
	}
	hold.Release()
	if n := budget.InUse(); n != 0 {
		t.Fatalf("budget holds %d bytes after the refusals", n)
	}
	if code, body := postWrite(t, wh, write); code != http.StatusBadRequest && code != http.StatusNoContent {
		t.Fatalf("after release: status %d: %s", code, body)
	}
}

// TestParallelBombsHeapBound sends 20 decompression bombs at once to each
// receiver and samples the heap while they run: the shared budget keeps
// the peak under a stated bound instead of 20 times one bomb. Set
// QSP_BOMB_REPORT=1 to print the figures recorded in
// docs/benchmarks/telemetry.md.
func TestParallelBombsHeapBound(t *testing.T) {
	const (
		parallel   = 20
		budgetSize = 64 << 20
	)
	e := openTestDB(t)
	budget, err := NewBudget(budgetSize, nil)
	if err != nil {
		t.Fatal(err)
	}
	opts := ReceiverOptions{Storage: e, Budget: budget}
	wh, _ := NewWriteHandler(opts)
	oh, _ := NewOTLPHandler(opts)
	mux := http.NewServeMux()
	mux.Handle("/api/v1/write", wh)
	mux.Handle("/v1/metrics", oh)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	// Each bomb alone: 64 MiB decompressed, the per-request ceiling.
	otlpBomb := gzipBytes(t, otlpPointBomb(32<<20))
	rwBomb := snappy.Encode(nil, histogramBomb(4<<20))

	runtime.GC()
	base := heapObjects()
	var (
		peak = base
		stop = make(chan struct{})
		done = make(chan struct{})
	)
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				peak = max(peak, heapObjects())
			}
		}
	}()
	codes := make(chan int, 2*parallel)
	var wg sync.WaitGroup
	for i := range 2 * parallel {
		wg.Go(func() {
			path, enc, body := "/v1/metrics", "gzip", otlpBomb
			if i%2 == 1 {
				path, enc, body = "/api/v1/write", "snappy", rwBomb
			}
			req, _ := http.NewRequest(http.MethodPost, srv.URL+path, bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/x-protobuf")
			req.Header.Set("Content-Encoding", enc)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes <- resp.StatusCode
		})
	}
	wg.Wait()
	close(stop)
	<-done
	close(codes)
	byCode := map[int]int{}
	for c := range codes {
		byCode[c]++
	}
	// The heap holds what the budget admits, the garbage of requests
	// already answered until the collector runs (GOGC=100: as much again),
	// and the bodies as sent.
	bound := uint64(2*budgetSize + 32<<20)
	growth := peak - base
	msg := fmt.Sprintf("%d parallel bombs (%d-byte gzip, %d-byte snappy), budget %d MiB: answers %v, heap peak %.0f MiB above a base of %.0f MiB (bound %d MiB)",
		2*parallel, len(otlpBomb), len(rwBomb), budgetSize>>20, byCode, float64(growth)/(1<<20), float64(base)/(1<<20), bound>>20)
	t.Log(msg)
	if os.Getenv("QSP_BOMB_REPORT") != "" {
		fmt.Println(msg)
	}
	if growth > bound {
		t.Errorf("heap grew by %d bytes, over the bound of %d", growth, bound)
	}
	for c := range byCode {
		if c != http.StatusRequestEntityTooLarge && c != http.StatusTooManyRequests {
			t.Errorf("a bomb was answered %d, want 413 or 429", c)
		}
	}
	if n := budget.InUse(); n != 0 {
		t.Errorf("budget holds %d bytes after the bombs", n)
	}
}

// heapObjects returns the bytes of heap objects, live or not yet swept.
func heapObjects() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}
