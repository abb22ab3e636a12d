package telemetry

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/timestamp"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
)

// ExemplarSource answers exemplar queries: the example events (usually
// with a trace ID) attached to the samples of the series a PromQL query
// selects. Both the embedded TSDB and a remote Prometheus implement it.
//
// Implementations are safe for concurrent use. Results are sorted by
// series labels, and each series' exemplars by time, as Prometheus'
// query_exemplars returns them. Errors that mean the backend could not be
// reached wrap ErrUnavailable.
type ExemplarSource interface {
	Exemplars(ctx context.Context, query string, start, end time.Time) ([]exemplar.QueryResult, error)
}

var (
	_ ExemplarSource = (*Embedded)(nil)
	_ ExemplarSource = (*Remote)(nil)
)

// ErrExemplarsDisabled is returned by Embedded.Exemplars when exemplar
// storage is off (MaxExemplars negative).
var ErrExemplarsDisabled = errors.New("exemplar storage is off (source.embedded.maxExemplars is negative)")

// ExemplarQuerier implements storage.ExemplarQueryable.
func (e *Embedded) ExemplarQuerier(ctx context.Context) (storage.ExemplarQuerier, error) {
	return e.db.ExemplarQuerier(ctx)
}

// Exemplars implements ExemplarSource: the exemplars in [start, end] of
// every series a vector selector of query selects, as Prometheus'
// query_exemplars answers. A query without selectors selects nothing.
// With exemplar storage off it returns no exemplars and no error, as
// Prometheus does.
func (e *Embedded) Exemplars(ctx context.Context, query string, start, end time.Time) ([]exemplar.QueryResult, error) {
	expr, err := e.parser.ParseExpr(query)
	if err != nil {
		return nil, fmt.Errorf("exemplars %q: %w", query, err)
	}
	return e.selectExemplars(ctx, parser.ExtractSelectors(expr), timestamp.FromTime(start), timestamp.FromTime(end))
}

func (e *Embedded) selectExemplars(ctx context.Context, sets [][]*labels.Matcher, mint, maxt int64) ([]exemplar.QueryResult, error) {
	if len(sets) == 0 {
		return []exemplar.QueryResult{}, nil
	}
	q, err := e.db.ExemplarQuerier(ctx)
	if err != nil {
		return nil, fmt.Errorf("exemplars: %w", err)
	}
	res, err := q.Select(mint, maxt, sets...)
	if err != nil {
		return nil, fmt.Errorf("exemplars: %w", err)
	}
	return res, nil
}

// Exemplars implements ExemplarSource through the backend's
// /api/v1/query_exemplars (Prometheus with --enable-feature=exemplar-storage,
// Mimir, Thanos, VictoriaMetrics...). A backend without exemplar storage
// answers with none.
func (r *Remote) Exemplars(ctx context.Context, query string, start, end time.Time) ([]exemplar.QueryResult, error) {
	raw, err := r.call(ctx, http.MethodPost, "query_exemplars", url.Values{
		"query": {query}, "start": {formatTime(start)}, "end": {formatTime(end)},
	})
	if err != nil {
		return nil, fmt.Errorf("exemplars %q: %w", query, err)
	}
	out, err := decodeExemplars(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: exemplars %q: malformed result: %v", ErrUnavailable, query, err)
	}
	return out, nil
}

// wireExemplars is query_exemplars' data as Prometheus encodes it: values
// as strings, timestamps as float seconds.
type wireExemplars []struct {
	SeriesLabels map[string]string `json:"seriesLabels"`
	Exemplars    []struct {
		Labels    map[string]string `json:"labels"`
		Value     string            `json:"value"`
		Timestamp json.Number       `json:"timestamp"`
	} `json:"exemplars"`
}

// decodeExemplars decodes query_exemplars' data. The response body is
// already bounded by the remote client.
func decodeExemplars(raw json.RawMessage) ([]exemplar.QueryResult, error) {
	out := []exemplar.QueryResult{}
	if len(raw) == 0 || string(raw) == "null" {
		return out, nil // Prometheus' answer to a query without selectors
	}
	var w wireExemplars
	if err := json.Unmarshal(raw, &w); err != nil {
		return nil, err
	}
	for i, s := range w {
		qr := exemplar.QueryResult{SeriesLabels: labels.FromMap(s.SeriesLabels), Exemplars: make([]exemplar.Exemplar, 0, len(s.Exemplars))}
		for j, ex := range s.Exemplars {
			v, err := strconv.ParseFloat(ex.Value, 64)
			if err != nil {
				return nil, fmt.Errorf("series %d exemplar %d: value %q: %w", i, j, ex.Value, err)
			}
			ts, err := ex.Timestamp.Float64()
			if err != nil || math.IsNaN(ts) || math.Abs(ts) > 9.2e15 {
				return nil, fmt.Errorf("series %d exemplar %d: timestamp %q is not a number of seconds", i, j, ex.Timestamp)
			}
			qr.Exemplars = append(qr.Exemplars, exemplar.Exemplar{Labels: labels.FromMap(ex.Labels), Value: v, Ts: int64(math.Round(ts * 1000)), HasTs: true})
		}
		out = append(out, qr)
	}
	slices.SortFunc(out, func(a, b exemplar.QueryResult) int { return labels.Compare(a.SeriesLabels, b.SeriesLabels) })
	return out, nil
}

// appendExemplars encodes query_exemplars' data the way Prometheus' codec
// does: [{"seriesLabels":{...},"exemplars":[{"labels":{...},"value":"1",
// "timestamp":1600096945.479}]}].
func appendExemplars(b []byte, res []exemplar.QueryResult) ([]byte, error) {
	b = append(b, '[')
	for i, r := range res {
		if i > 0 {
			b = append(b, ',')
		}
		sl, err := r.SeriesLabels.MarshalJSON()
		if err != nil {
			return nil, err
		}
		b = append(b, `{"seriesLabels":`...)
		b = append(b, sl...)
		b = append(b, `,"exemplars":[`...)
		for j, ex := range r.Exemplars {
			if j > 0 {
				b = append(b, ',')
			}
			el, err := ex.Labels.MarshalJSON()
			if err != nil {
				return nil, err
			}
			b = append(b, `{"labels":`...)
			b = append(b, el...)
			b = append(b, `,"value":"`...)
			b = appendFloat(b, ex.Value)
			b = append(b, `","timestamp":`...)
			b = appendTimestamp(b, ex.Ts)
			b = append(b, '}')
		}
		b = append(b, "]}"...)
	}
	return append(b, ']'), nil
}

// limitExemplars keeps at most max exemplars of res, the newest of each
// series first, and says how many it left out.
func limitExemplars(res []exemplar.QueryResult, max int) (_ []exemplar.QueryResult, dropped int) {
	total := 0
	for _, r := range res {
		total += len(r.Exemplars)
	}
	if total <= max {
		return res, 0
	}
	// Keep the newest overall: find the timestamp of the max-th newest.
	ts := make([]int64, 0, total)
	for _, r := range res {
		for _, ex := range r.Exemplars {
			ts = append(ts, ex.Ts)
		}
	}
	slices.SortFunc(ts, func(a, b int64) int { return cmp.Compare(b, a) })
	cut := ts[max-1]
	// Exemplars at exactly cut are kept while room is left, so exactly max
	// are kept.
	atCut := 0
	for _, t := range ts[:max] {
		if t == cut {
			atCut++
		}
	}
	out := make([]exemplar.QueryResult, 0, len(res))
	for _, r := range res {
		var kept []exemplar.Exemplar
		for _, ex := range r.Exemplars {
			switch {
			case ex.Ts > cut:
			case ex.Ts == cut && atCut > 0:
				atCut--
			default:
				continue
			}
			kept = append(kept, ex)
		}
		if len(kept) > 0 {
			out = append(out, exemplar.QueryResult{SeriesLabels: r.SeriesLabels, Exemplars: kept})
		}
	}
	return out, total - max
}
