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

// selectorRequest is one raw-sample read a feeder needs. Each runtime
// keeps its requests from cycle to cycle (sloRuntime.reqs), so the engine
// can tell when a batch is made of the same requests as before.
type selectorRequest struct {
	matchers   []*labels.Matcher
	name       string // the metric name an equality matcher sets, or ""
	start, end time.Time
	result     promql.Matrix
	err        error
}

func newSelectorRequest(ms []*labels.Matcher) selectorRequest {
	return selectorRequest{matchers: ms, name: metricNameOf(ms)}
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
// 10,000. It is called from the engine's goroutine only.
func (e *Engine) fetchSamples(ctx context.Context, reqs []*selectorRequest) {
	if e.dispatchers == nil {
		e.dispatchers = map[string]*dispatcher{}
	}
	e.fetchBatched(ctx, reqs, e.dispatchers)
}

// fetchBatched is fetchSamples keeping the batches' dispatchers in
// dispatchers, or in none when it is nil (reads that are not repeated
// every cycle, such as those of window starts).
func (e *Engine) fetchBatched(ctx context.Context, reqs []*selectorRequest, dispatchers map[string]*dispatcher) {
	type key struct {
		name       string
		start, end int64
	}
	batches := map[key]*[]*selectorRequest{}
	var singles []*selectorRequest
	// Consecutive requests mostly share a batch (an SLO's selectors, SLOs
	// on one metric): the last batch is tried before the map.
	var lastKey key
	var last *[]*selectorRequest
	for _, r := range reqs {
		r.result, r.err = nil, nil
		if r.name == "" || e.opts.BatchMin < 0 {
			singles = append(singles, r)
			continue
		}
		k := key{r.name, r.start.UnixMilli(), r.end.UnixMilli()}
		if last == nil || k != lastKey {
			last = batches[k]
			if last == nil {
				last = new([]*selectorRequest)
				batches[k] = last
			}
			lastKey = k
		}
		*last = append(*last, r)
	}
	var groups [][]*selectorRequest
	for _, rs := range batches {
		if len(*rs) < e.opts.BatchMin {
			singles = append(singles, *rs...)
			continue
		}
		groups = append(groups, *rs)
	}
	// Dispatchers of metrics no longer read in a batch are dropped.
	for name := range dispatchers {
		if !slices.ContainsFunc(groups, func(rs []*selectorRequest) bool { return rs[0].name == name }) {
			delete(dispatchers, name)
		}
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
		name := []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, model.MetricNameLabel, rs[0].name)}
		d := dispatcherFor(dispatchers, rs)
		sharded, ok := e.opts.Source.(shardedSource)
		if !ok || len(rs) < shardMin {
			run(func() {
				m, err := e.opts.Source.Samples(ctx, name, rs[0].start, rs[0].end)
				if err != nil {
					setErr(rs, err)
					return
				}
				// One read gives the series in label order, and
				// handing out keeps it.
				joinMatches(rs, []shardMatches{{m, d.dispatch(m, nil)}}, false)
				e.m.batched.Add(float64(len(rs)))
			})
			continue
		}
		// A big batch is read and handed out in shards on every core; a
		// request's series may be in several shards, so each shard
		// collects its own and they are joined once all are read.
		shards := uint64(runtime.GOMAXPROCS(0))
		parts := make([]shardMatches, shards)
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
				parts[i] = shardMatches{m, d.dispatch(m, nil)}
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
			// In label order, as an unsharded read gives them: sums of
			// floats must not depend on which shard a series hashed to.
			joinMatches(rs, parts, true)
			e.m.batched.Add(float64(len(rs)))
		}()
	}
	wg.Wait()
}

// dispatcherFor returns the dispatcher of a batch, kept from the last
// cycle when the batch is made of the same requests: building one for
// 20,000 selectors costs more than using it.
func dispatcherFor(dispatchers map[string]*dispatcher, rs []*selectorRequest) *dispatcher {
	if dispatchers == nil {
		return newDispatcher(rs)
	}
	name := rs[0].name
	if d := dispatchers[name]; d != nil && slices.Equal(d.rs, rs) {
		return d
	}
	d := newDispatcher(slices.Clone(rs))
	dispatchers[name] = d
	return d
}

// shardMatches are the series of one read and the requests they go to.
type shardMatches struct {
	m       promql.Matrix
	matches []match
}

// match says that request req selects series series.
type match struct {
	req, series int32
}

// joinMatches hands each request its series, from parts in order, with
// one allocation for all requests. sorted puts each request's series in
// label order.
func joinMatches(rs []*selectorRequest, parts []shardMatches, sorted bool) {
	counts := make([]int32, len(rs)+1)
	for _, p := range parts {
		for _, mt := range p.matches {
			counts[mt.req+1]++
		}
	}
	// counts[j] becomes where request j's series start.
	for j := 1; j < len(counts); j++ {
		counts[j] += counts[j-1]
	}
	all := make([]promql.Series, counts[len(rs)])
	next := slices.Clone(counts[:len(rs)])
	for _, p := range parts {
		for _, mt := range p.matches {
			all[next[mt.req]] = p.m[mt.series]
			next[mt.req]++
		}
	}
	for j, r := range rs {
		r.result = all[counts[j]:counts[j+1]:counts[j+1]]
		if sorted && len(r.result) > 1 {
			slices.SortFunc(r.result, func(a, b promql.Series) int { return labels.Compare(a.Metric, b.Metric) })
		}
	}
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
// read-only once built: shards dispatch concurrently, and it serves every
// cycle while the batch's requests stay the same.
type dispatcher struct {
	rs []*selectorRequest
	// index finds the requests with an equality matcher by that label's
	// value; scan are the requests without one.
	index []labelIndex
	scan  []int
	// rest are the matchers of each request that the index and the
	// batch's metric name do not already guarantee.
	rest [][]*labels.Matcher
}

type labelIndex struct {
	name    string
	byValue map[string][]int32
}

func newDispatcher(rs []*selectorRequest) *dispatcher {
	d := &dispatcher{rs: rs, rest: make([][]*labels.Matcher, len(rs))}
	for i, r := range rs {
		var eq *labels.Matcher
		for _, mt := range r.matchers {
			if mt.Type == labels.MatchEqual && mt.Name != model.MetricNameLabel {
				eq = mt
				break
			}
		}
		for _, mt := range r.matchers {
			// Every series of the batch has the batch's name.
			nameMatcher := mt.Name == model.MetricNameLabel && mt.Type == labels.MatchEqual && mt.Value == r.name
			if mt != eq && !nameMatcher {
				d.rest[i] = append(d.rest[i], mt)
			}
		}
		if eq == nil {
			d.scan = append(d.scan, i)
			continue
		}
		k := slices.IndexFunc(d.index, func(x labelIndex) bool { return x.name == eq.Name })
		if k < 0 {
			d.index = append(d.index, labelIndex{name: eq.Name, byValue: map[string][]int32{}})
			k = len(d.index) - 1
		}
		d.index[k].byValue[eq.Value] = append(d.index[k].byValue[eq.Value], int32(i))
	}
	return d
}

// dispatch appends to out a match for each series of m and each request
// that selects it, in series order, and returns out.
func (d *dispatcher) dispatch(m promql.Matrix, out []match) []match {
	matches := func(i int, ls labels.Labels) bool {
		for _, mt := range d.rest[i] {
			if !mt.Matches(ls.Get(mt.Name)) {
				return false
			}
		}
		return true
	}
	if out == nil {
		out = make([]match, 0, len(m))
	}
	for si, s := range m {
		for _, ix := range d.index {
			for _, i := range ix.byValue[s.Metric.Get(ix.name)] {
				if matches(int(i), s.Metric) {
					out = append(out, match{req: i, series: int32(si)})
				}
			}
		}
		for _, i := range d.scan {
			if matches(i, s.Metric) {
				out = append(out, match{req: int32(i), series: int32(si)})
			}
		}
	}
	return out
}
