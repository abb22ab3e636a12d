package telemetry

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"

	"github.com/qsp-dev/qsp/internal/externaltest"
)

// TestSIGKILLDurability kills a receiver with SIGKILL in the middle of
// sustained remote_write ingestion from several clients, restarts it on the
// same directory, and checks that every sample of every request that got a
// 2xx is there: the receiver commits to the TSDB WAL before answering.
func TestSIGKILLDurability(t *testing.T) {
	const (
		writers          = 4
		seriesPerWriter  = 50
		minAckedRequests = 200
	)
	dir := t.TempDir()
	start := func() (*externaltest.Process, string) {
		addr := externaltest.FreeAddr(t)
		p := externaltest.StartEnv(t, []string{childDirEnv + "=" + dir, childAddrEnv + "=" + addr}, os.Args[0], "-test.run=^$")
		externaltest.WaitHTTP(t, p, "http://"+addr+"/ready", 30*time.Second)
		return p, "http://" + addr
	}
	p, url := start()

	// Each writer owns its series and sends request k with one sample per
	// series at base+k*100ms, value k, until the receiver dies.
	base := time.Now().Add(-5 * time.Minute).UnixMilli()
	acked := make([][]int, writers)
	var (
		wg       sync.WaitGroup
		total    atomic.Int64
		inFlight atomic.Int64 // requests without an answer when the receiver died
	)
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	for w := range writers {
		wg.Go(func() {
			for k := 0; ; k++ {
				ts := make([]prompb.TimeSeries, seriesPerWriter)
				for s := range ts {
					ts[s] = series([]prompb.Sample{{Value: float64(k), Timestamp: base + int64(k)*100}},
						"__name__", "durability_test", "writer", fmt.Sprint(w), "series", fmt.Sprint(s))
				}
				req, _ := http.NewRequest(http.MethodPost, url+"/api/v1/write", bytes.NewReader(encodeWrite(t, ts...)))
				req.Header.Set("Content-Type", "application/x-protobuf")
				req.Header.Set("Content-Encoding", "snappy")
				resp, err := client.Do(req)
				if err != nil {
					inFlight.Add(1)
					return // the receiver is gone
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusNoContent {
					t.Errorf("writer %d request %d: status %d", w, k, resp.StatusCode)
					return
				}
				acked[w] = append(acked[w], k)
				total.Add(1)
			}
		})
	}
	externaltest.Eventually(t, 30*time.Second, 10*time.Millisecond, func() bool { return total.Load() >= minAckedRequests },
		"receiver acknowledged fewer than %d requests", minAckedRequests)
	p.Signal(syscall.SIGKILL)
	if !p.Wait(10 * time.Second) {
		t.Fatal("receiver did not die")
	}
	wg.Wait()

	// Restart on the same directory and read everything back.
	p2, url2 := start()
	defer p2.Kill()
	remote, err := NewRemote(RemoteOptions{URL: url2 + "/prometheus"})
	if err != nil {
		t.Fatal(err)
	}
	defer remote.Close()
	got, err := remote.Samples(context.Background(),
		[]*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, model.MetricNameLabel, "durability_test")},
		time.UnixMilli(base-1), time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]map[int64]float64{}
	for _, s := range got {
		m := map[int64]float64{}
		for _, p := range s.Floats {
			m[p.T] = p.F
		}
		stored[s.Metric.Get("writer")+"/"+s.Metric.Get("series")] = m
	}
	var ackedSamples, lost int
	for w, ks := range acked {
		for _, k := range ks {
			for s := range seriesPerWriter {
				ackedSamples++
				v, ok := stored[fmt.Sprintf("%d/%d", w, s)][base+int64(k)*100]
				if !ok || v != float64(k) {
					lost++
					if lost <= 5 {
						t.Errorf("lost: writer %d series %d request %d (found %v, %v)", w, s, k, v, ok)
					}
				}
			}
		}
	}
	storedSamples := 0
	for _, m := range stored {
		storedSamples += len(m)
	}
	t.Logf("acknowledged %d requests = %d samples; %d requests unanswered at SIGKILL; %d samples after restart; lost %d",
		total.Load(), ackedSamples, inFlight.Load(), storedSamples, lost)
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged samples lost", lost, ackedSamples)
	}
	if ackedSamples < minAckedRequests*seriesPerWriter {
		t.Fatalf("only %d acknowledged samples checked", ackedSamples)
	}
}
