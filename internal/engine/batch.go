package engine

import (
	"context"
	"errors"
	"runtime"
	"slices"
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
		name := []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, model.MetricNameLabel, metricNameOf(rs[0].matchers))}
		sharded, ok := e.opts.Source.(shardedSource)
		if !ok || len(rs) < shardMin {
			run(func() {
				m, err := e.opts.Source.Samples(ctx, name, rs[0].start, rs[0].end)
				if err != nil {
					setErr(rs, err)
					return
				}
				newDispatcher(rs).dispatch(m, func(i int, s promql.Series) { rs[i].result = append(rs[i].result, s) })
				e.m.batched.Add(float64(len(rs)))
			})
			continue
		}
		// A big batch is read and handed out in shards on every core; a
		// request's series may be in several shards, so each shard
		// collects its own and they are joined once all are read.
		d := newDispatcher(rs)
		shards := uint64(runtime.GOMAXPROCS(0))
		parts := make([][][]promql.Series, shards)
		errs := make([]error, shards)
		var shardsDone sync.WaitGroup
		for i := range shards {
			shardsDone.Add(1)
			run(func() {
				defer shardsDone.Done()
				m, err := sharded.SamplesShard(ctx, name, rs[0].start, rs[0].end, i, shards)
				if err != nil {
					errs[i] = err
					return
				}
				part := make([][]promql.Series, len(rs))
				d.dispatch(m, func(j int, s promql.Series) { part[j] = append(part[j], s) })
				parts[i] = part
			})
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			shardsDone.Wait()
			if err := errors.Join(errs...); err != nil {
				setErr(rs, err)
				return
			}
			for j, r := range rs {
				for _, part := range parts {
					r.result = append(r.result, part[j]...)
				}
				// In label order, as an unsharded read gives them: sums
				// of floats must not depend on which shard a series hashed to.
				if len(r.result) > 1 {
					slices.SortFunc(r.result, func(a, b promql.Series) int { return labels.Compare(a.Metric, b.Metric) })
				}
			}
			e.m.batched.Add(float64(len(rs)))
		}()
	}
	wg.Wait()
}

// shardMin is the batch size from which a sharded source is read in
// shards.
const shardMin = 256

// shardedSource is a Source that can read one of several disjoint shards
// of a selector's series (the embedded TSDB).
type shardedSource interface {
	SamplesShard(ctx context.Context, matchers []*labels.Matcher, start, end time.Time, index, count uint64) (promql.Matrix, error)
}

func setErr(rs []*selectorRequest, err error) {
	for _, r := range rs {
		r.err = err
	}
}

// dispatcher hands each series to the requests whose matchers it
// satisfies, using an index on one equality matcher per request. It is
// read-only once built: shards dispatch concurrently.
type dispatcher struct {
	index map[string]map[string][]int
	scan  []int
	rs    []*selectorRequest
}

func newDispatcher(rs []*selectorRequest) *dispatcher {
	d := &dispatcher{index: map[string]map[string][]int{}, rs: rs}
	for i, r := range rs {
		r.result = promql.Matrix{}
		var eq *labels.Matcher
		for _, mt := range r.matchers {
			if mt.Type == labels.MatchEqual && mt.Name != model.MetricNameLabel {
				eq = mt
				break
			}
		}
		if eq == nil {
			d.scan = append(d.scan, i)
			continue
		}
		if d.index[eq.Name] == nil {
			d.index[eq.Name] = map[string][]int{}
		}
		d.index[eq.Name][eq.Value] = append(d.index[eq.Name][eq.Value], i)
	}
	return d
}

// dispatch calls add(i, s) for each series s of m that request i selects.
func (d *dispatcher) dispatch(m promql.Matrix, add func(i int, s promql.Series)) {
	matches := func(r *selectorRequest, ls labels.Labels) bool {
		for _, mt := range r.matchers {
			if !mt.Matches(ls.Get(mt.Name)) {
				return false
			}
		}
		return true
	}
	for _, s := range m {
		for name, byValue := range d.index {
			for _, i := range byValue[s.Metric.Get(name)] {
				if matches(d.rs[i], s.Metric) {
					add(i, s)
				}
			}
		}
		for _, i := range d.scan {
			if matches(d.rs[i], s.Metric) {
				add(i, s)
			}
		}
	}
}
