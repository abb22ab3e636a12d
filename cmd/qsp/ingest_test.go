package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gogo/protobuf/proto"
	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"

	"github.com/qsp-dev/qsp/internal/externaltest"
)

// TestSIGKILLDuringIngestion kills qsp serve with SIGKILL while four
// clients send remote_write as fast as it answers, restarts it on the same
// data directory, and reads every series back through the query API:
// every sample of every request answered 2xx is there (0 lost).
func TestSIGKILLDuringIngestion(t *testing.T) {
	const (
		writers   = 4
		perWriter = 50 // series
		minAcked  = 300
	)
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "specs"), 0o755)
	os.WriteFile(filepath.Join(dir, "specs", "shop.yaml"), []byte(killSpecs), 0o644)
	start := func() (*externaltest.Process, string) {
		addr := externaltest.FreeAddr(t)
		p := qsp(t, serveArgs(dir, addr)...)
		externaltest.WaitHTTP(t, p, "http://"+addr+"/readyz", 60*time.Second)
		return p, "http://" + addr
	}
	p, base := start()

	// Writer w sends request k with one sample per series at t0+k*100ms,
	// value k, until the server dies.
	t0 := time.Now().Add(-5 * time.Minute).Truncate(time.Second).UnixMilli()
	acked := make([][]int, writers)
	var total atomic.Int64
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 10 * time.Second}
	for w := range writers {
		wg.Go(func() {
			for k := 0; ; k++ {
				var wr prompb.WriteRequest
				for s := range perWriter {
					wr.Timeseries = append(wr.Timeseries, prompb.TimeSeries{
						Labels:  []prompb.Label{{Name: "__name__", Value: "ingest_kill"}, {Name: "series", Value: strconv.Itoa(s)}, {Name: "writer", Value: strconv.Itoa(w)}},
						Samples: []prompb.Sample{{Timestamp: t0 + int64(k)*100, Value: float64(k)}},
					})
				}
				b, _ := proto.Marshal(&wr)
				req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/write", bytes.NewReader(snappy.Encode(nil, b)))
				req.Header.Set("Content-Type", "application/x-protobuf")
				req.Header.Set("Content-Encoding", "snappy")
				resp, err := client.Do(req)
				if err != nil {
					return // the server is gone
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode/100 != 2 {
					t.Errorf("writer %d request %d: %s", w, k, resp.Status)
					return
				}
				acked[w] = append(acked[w], k)
				total.Add(1)
			}
		})
	}
	externaltest.Eventually(t, 60*time.Second, 10*time.Millisecond, func() bool { return total.Load() >= minAcked },
		"only %d requests acknowledged", total.Load())
	p.Kill()
	wg.Wait()
	if exited, err := p.Exited(); !exited || err == nil {
		t.Fatalf("qsp was not killed: %v", err)
	}

	_, base = start()
	end := t0 + 3600_000
	lost := 0
	for w := range writers {
		// Every sample of this writer's series, raw, through the query API.
		q := url.Values{"query": {fmt.Sprintf(`ingest_kill{writer="%d"}[2h]`, w)}, "time": {strconv.FormatFloat(float64(end)/1000, 'f', 3, 64)}}
		resp, err := http.Get(base + "/prometheus/api/v1/query?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		var r struct {
			Data struct {
				Result []struct {
					Metric map[string]string
					Values [][2]any
				}
			}
		}
		err = json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Data.Result) != perWriter {
			t.Fatalf("writer %d: %d series after the restart, want %d", w, len(r.Data.Result), perWriter)
		}
		for _, s := range r.Data.Result {
			have := map[int]bool{}
			for _, v := range s.Values {
				f, _ := strconv.ParseFloat(v[1].(string), 64)
				have[int(f)] = true
			}
			for _, k := range acked[w] {
				if !have[k] {
					lost++
				}
			}
		}
	}
	t.Logf("%d requests (%d samples) acknowledged before SIGKILL; %d lost", total.Load(), total.Load()*perWriter, lost)
	if lost > 0 {
		t.Fatalf("%d acknowledged samples lost", lost)
	}
}
