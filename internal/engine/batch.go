package engine

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
)

type (
	promqlMatrix = promql.Matrix
	labelsT      = labels.Labels
)

func emptyLabels() labels.Labels { return labels.EmptyLabels() }

// selectorRequest is one raw-sample read a feeder needs.
type selectorRequest struct {
	matchers   []*labels.Matcher
	start, end time.Time
	result     promql.Matrix
	err        error
}

func metricNameOf(ms []*labels.Matcher) string {
	for _, m := range ms {
		if m.Name == model.MetricNameLabel && m.Type == labels.MatchEqual {
			return m.Value
		}
	}
	return ""
}

// fetchSamples reads every request. Requests on the same metric name and
// range are read with one query for the name when there are at least
// BatchMin of them, and the series are handed out by matching labels in
// memory: 10,000 SLOs on http_requests_total cost one read per cycle, not
// 10,000.
func (e *Engine) fetchSamples(ctx context.Context, reqs []*selectorRequest) {
	type key struct {
		name       string
		start, end int64
	}
	batches := map[key][]*selectorRequest{}
	var singles []*selectorRequest
	for _, r := range reqs {
		name := metricNameOf(r.matchers)
		if name == "" || e.opts.BatchMin < 0 {
			singles = append(singles, r)
			continue
		}
		k := key{name, r.start.UnixMilli(), r.end.UnixMilli()}
		batches[k] = append(batches[k], r)
	}
	var groups [][]*selectorRequest
	for _, rs := range batches {
		if len(rs) < e.opts.BatchMin {
			singles = append(singles, rs...)
			continue
		}
		groups = append(groups, rs)
	}
	sem := make(chan struct{}, e.opts.Concurrency)
	var wg sync.WaitGroup
	run := func(f func()) {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			f()
		}()
	}
	for _, r := range singles {
		run(func() { r.result, r.err = e.opts.Source.Samples(ctx, r.matchers, r.start, r.end) })
	}
	for _, rs := range groups {
		run(func() {
			name := labels.MustNewMatcher(labels.MatchEqual, model.MetricNameLabel, metricNameOf(rs[0].matchers))
			m, err := e.opts.Source.Samples(ctx, []*labels.Matcher{name}, rs[0].start, rs[0].end)
			if err != nil {
				for _, r := range rs {
					r.err = err
				}
				return
			}
			dispatch(m, rs)
			e.m.batched.Add(float64(len(rs)))
		})
	}
	wg.Wait()
}

// dispatch hands each series to the requests whose matchers it satisfies,
// using an index on one equality matcher per request.
func dispatch(m promql.Matrix, rs []*selectorRequest) {
	index := map[string]map[string][]*selectorRequest{}
	var scan []*selectorRequest
	for _, r := range rs {
		r.result = promql.Matrix{}
		var eq *labels.Matcher
		for _, mt := range r.matchers {
			if mt.Type == labels.MatchEqual && mt.Name != model.MetricNameLabel {
				eq = mt
				break
			}
		}
		if eq == nil {
			scan = append(scan, r)
			continue
		}
		if index[eq.Name] == nil {
			index[eq.Name] = map[string][]*selectorRequest{}
		}
		index[eq.Name][eq.Value] = append(index[eq.Name][eq.Value], r)
	}
	matches := func(r *selectorRequest, ls labels.Labels) bool {
		for _, mt := range r.matchers {
			if !mt.Matches(ls.Get(mt.Name)) {
				return false
			}
		}
		return true
	}
	for _, s := range m {
		for name, byValue := range index {
			for _, r := range byValue[s.Metric.Get(name)] {
				if matches(r, s.Metric) {
					r.result = append(r.result, s)
				}
			}
		}
		for _, r := range scan {
			if matches(r, s.Metric) {
				r.result = append(r.result, s)
			}
		}
	}
}
