package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
)

// LiveStep is the interval between two live samples of a series, as a
// Prometheus scraping every 15 seconds would send them.
const LiveStep = 15 * time.Second

// streamer sends the simulator's live samples to QSP's remote_write
// receiver over loopback, as a Prometheus would: a batch every few
// seconds of simulated time, retried on 5xx and network errors with
// backoff, dropped on 4xx (the receiver said the data is bad).
type streamer struct {
	sim    *Simulator
	clock  *Clock
	url    string // .../api/v1/write
	client *http.Client
	logger *slog.Logger
	// next is the timestamp of the next sample to simulate.
	next time.Time

	wire map[int][]prompb.Label // by simulator series id
	// last is each bad-event counter's previous value, to tell when it
	// grew (and a failed request deserves an example trace).
	last    map[int]float64
	sent    atomic.Int64 // samples accepted
	dropped atomic.Int64 // samples lost: collector down or rejected
	lastOK  atomic.Int64 // simulated unix ms of the newest accepted sample
}

func newStreamer(sim *Simulator, clock *Clock, baseURL string, start time.Time, logger *slog.Logger) *streamer {
	return &streamer{
		sim: sim, clock: clock, url: baseURL + "/api/v1/write", next: start,
		client: &http.Client{Timeout: 30 * time.Second},
		logger: logger.With("component", "demo.stream"),
		wire:   map[int][]prompb.Label{},
		last:   map[int]float64{},
	}
}

// badEventExemplar returns an exemplar with a trace ID for a sample of a
// bad-event counter (HTTP 5xx, a failed login) that grew, as an
// instrumented service attaches the trace of a failed request, so the
// demo's incidents link to example traces. The trace ID is derived from
// the series and time: the same run shows the same traces.
func (st *streamer) badEventExemplar(id int, ls labels.Labels, ms int64, v float64) (prompb.Exemplar, bool) {
	code, result := ls.Get("code"), ls.Get("result")
	if !(len(code) == 3 && code[0] == '5') && result != "failure" {
		return prompb.Exemplar{}, false
	}
	prev, seen := st.last[id]
	st.last[id] = v
	if !seen || v <= prev {
		return prompb.Exemplar{}, false
	}
	h := fnv.New64a()
	fmt.Fprintf(h, "%d/%d", id, ms)
	lo := h.Sum64()
	fmt.Fprintf(h, "span")
	span := h.Sum64()
	return prompb.Exemplar{
		Labels:    []prompb.Label{{Name: "span_id", Value: fmt.Sprintf("%016x", span)}, {Name: "trace_id", Value: fmt.Sprintf("%016x%016x", uint64(id)+1, lo)}},
		Value:     1,
		Timestamp: ms,
	}, true
}

// batchEvery is how much simulated time one remote_write request covers
// at most, and flushPeriod how often the streamer wakes in wall time.
const batchEvery = 5 * time.Second

func (st *streamer) flushPeriod() time.Duration {
	return min(max(st.clock.Real(batchEvery), 20*time.Millisecond), time.Second)
}

// run streams until ctx ends.
func (st *streamer) run(ctx context.Context) error {
	t := time.NewTicker(st.flushPeriod())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := st.flush(ctx); err != nil && ctx.Err() == nil {
			return err
		}
	}
}

// flush simulates every step up to the clock's now and sends it.
func (st *streamer) flush(ctx context.Context) error {
	now := st.clock.Now()
	if st.next.After(now) {
		return nil
	}
	return st.sendRange(ctx, st.next, now.Add(time.Nanosecond), LiveStep)
}

// sendRange simulates the steps in [from, to) and sends them in one
// request; the next step is to afterwards.
func (st *streamer) sendRange(ctx context.Context, from, to time.Time, step time.Duration) error {
	byID := map[int]*prompb.TimeSeries{}
	var order []int
	down := false
	newest := from
	for st.next = from; st.next.Before(to); st.next = st.next.Add(step) {
		ms := st.next.UnixMilli()
		newest = st.next
		st.sim.Step(st.next, step, func(id int, ls labels.Labels, v float64) {
			ts := byID[id]
			if ts == nil {
				ts = &prompb.TimeSeries{Labels: st.labels(id, ls)}
				byID[id] = ts
				order = append(order, id)
			}
			ts.Samples = append(ts.Samples, prompb.Sample{Timestamp: ms, Value: v})
			if ex, ok := st.badEventExemplar(id, ls, ms, v); ok {
				ts.Exemplars = append(ts.Exemplars, ex)
			}
		})
		down = down || st.sim.Effects().CollectorDown
	}
	req := &prompb.WriteRequest{Timeseries: make([]prompb.TimeSeries, 0, len(order))}
	n := 0
	for _, id := range order {
		req.Timeseries = append(req.Timeseries, *byID[id])
		n += len(byID[id].Samples)
	}
	if down {
		// The collector is down: what it would have sent is lost, as
		// with a real collector that stopped.
		st.dropped.Add(int64(n))
		return nil
	}
	if n == 0 {
		return nil
	}
	return st.send(ctx, req, n, newest)
}

func (st *streamer) labels(id int, ls labels.Labels) []prompb.Label {
	if w, ok := st.wire[id]; ok {
		return w
	}
	w := make([]prompb.Label, 0, ls.Len())
	ls.Range(func(l labels.Label) { w = append(w, prompb.Label{Name: l.Name, Value: l.Value}) })
	st.wire[id] = w
	return w
}

// errRejected is a request the receiver refused for good (4xx).
var errRejected = errors.New("remote write rejected")

// send posts one request, retrying recoverable failures with backoff
// until it is stored or ctx ends.
func (st *streamer) send(ctx context.Context, req *prompb.WriteRequest, n int, newest time.Time) error {
	raw, err := req.Marshal()
	if err != nil {
		return fmt.Errorf("remote write: encode: %w", err)
	}
	body := snappy.Encode(nil, raw)
	backoff := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := st.post(ctx, body)
		switch {
		case err == nil:
			st.sent.Add(int64(n))
			st.lastOK.Store(newest.UnixMilli())
			return nil
		case errors.Is(err, errRejected):
			st.dropped.Add(int64(n))
			st.logger.Warn("remote write rejected: samples dropped", "samples", n, "err", err)
			return nil
		case ctx.Err() != nil:
			return nil
		}
		if attempt == 3 {
			st.logger.Warn("remote write failing: retrying", "attempt", attempt, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

func (st *streamer) post(ctx context.Context, body []byte) error {
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, st.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	r.Header.Set("Content-Type", "application/x-protobuf")
	r.Header.Set("Content-Encoding", "snappy")
	r.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	r.Header.Set("User-Agent", "qsp-demo")
	resp, err := st.client.Do(r)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	switch {
	case resp.StatusCode/100 == 2:
		return nil
	case resp.StatusCode/100 == 4 && resp.StatusCode != http.StatusTooManyRequests:
		return fmt.Errorf("%w: %s: %s", errRejected, resp.Status, bytes.TrimSpace(msg))
	}
	return fmt.Errorf("remote write: %s: %s", resp.Status, bytes.TrimSpace(msg))
}
