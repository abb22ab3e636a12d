package telemetry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"
)

// RemoteWriter is a write-only Storage that sends what is appended to a
// Prometheus-compatible remote_write 1.0 endpoint (Prometheus with
// --web.enable-remote-write-receiver, Mimir, Thanos Receive,
// VictoriaMetrics), one request per Commit. In remote mode it is where the
// traces receiver puts the span metrics, so they live in the user's
// backend next to the SLIs that read them. Commit returns only once the
// backend answered 2xx, so a sender is acknowledged only for metrics the
// backend has; a failed Commit is ErrUnavailable (retryable).
//
// It is safe for concurrent use; each appender belongs to one goroutine.
type RemoteWriter struct {
	r   *Remote
	url string
}

var _ Storage = (*RemoteWriter)(nil)

// Writer returns a RemoteWriter to writeURL with r's client, credentials,
// tenant and headers; "" is r's URL with /api/v1/write, Prometheus' path.
func (r *Remote) Writer(writeURL string) (*RemoteWriter, error) {
	if writeURL == "" {
		writeURL = r.base.String() + "/api/v1/write"
	}
	u, err := url.Parse(writeURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return nil, fmt.Errorf("remote write: URL %q: want http(s)://host[:port]/path without credentials", redactURL(writeURL))
	}
	return &RemoteWriter{r: r, url: u.String()}, nil
}

// Querier implements storage.Queryable: a RemoteWriter cannot be read.
func (w *RemoteWriter) Querier(int64, int64) (storage.Querier, error) {
	return nil, errors.New("remote write: write-only storage")
}

// AppenderV2 implements storage.AppendableV2.
func (w *RemoteWriter) AppenderV2(ctx context.Context) storage.AppenderV2 {
	return &remoteAppender{w: w, ctx: ctx, index: map[uint64]int{}}
}

type remoteAppender struct {
	w      *RemoteWriter
	ctx    context.Context
	series []prompb.TimeSeries
	index  map[uint64]int
}

// Append buffers one float sample (with its exemplars) until Commit. The
// returned ref is always 0: series references mean nothing remotely.
func (a *remoteAppender) Append(_ storage.SeriesRef, ls labels.Labels, _, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, opts storage.AOptions) (storage.SeriesRef, error) {
	if h != nil || fh != nil {
		return 0, errors.New("remote write: native histograms are not sent")
	}
	hash := ls.Hash()
	i, ok := a.index[hash]
	if !ok {
		ts := prompb.TimeSeries{Labels: make([]prompb.Label, 0, ls.Len())}
		ls.Range(func(l labels.Label) { ts.Labels = append(ts.Labels, prompb.Label{Name: l.Name, Value: l.Value}) })
		i = len(a.series)
		a.series = append(a.series, ts)
		a.index[hash] = i
	}
	ts := &a.series[i]
	ts.Samples = append(ts.Samples, prompb.Sample{Timestamp: t, Value: v})
	for _, e := range opts.Exemplars {
		pe := prompb.Exemplar{Value: e.Value, Timestamp: e.Ts}
		e.Labels.Range(func(l labels.Label) { pe.Labels = append(pe.Labels, prompb.Label{Name: l.Name, Value: l.Value}) })
		ts.Exemplars = append(ts.Exemplars, pe)
	}
	return 0, nil
}

// Commit sends the buffered samples in one remote_write request.
func (a *remoteAppender) Commit() error {
	if len(a.series) == 0 {
		return nil
	}
	defer func() { a.series, a.index = nil, nil }()
	b, err := (&prompb.WriteRequest{Timeseries: a.series}).Marshal()
	if err != nil {
		return fmt.Errorf("remote write: encode: %w", err)
	}
	r := a.w.r
	ctx, cancel := context.WithTimeout(a.ctx, r.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.w.url, bytes.NewReader(snappy.Encode(nil, b)))
	if err != nil {
		return fmt.Errorf("remote write: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	req.Header.Set("User-Agent", "qsp")
	for k, v := range r.opts.Headers {
		req.Header.Set(k, v)
	}
	if r.opts.TenantID != "" {
		req.Header.Set(r.opts.TenantHeader, r.opts.TenantID)
	}
	if err := r.authorize(req); err != nil {
		return fmt.Errorf("remote write: %w", err)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return fmt.Errorf("%w: remote write: %s", ErrUnavailable, r.scrub(err.Error()))
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%w: remote write: HTTP %d: %s", ErrUnavailable, resp.StatusCode, r.scrub(strings.TrimSpace(string(msg))))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	return nil
}

// Rollback drops the buffered samples.
func (a *remoteAppender) Rollback() error {
	a.series, a.index = nil, nil
	return nil
}
