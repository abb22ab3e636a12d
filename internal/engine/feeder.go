package engine

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"

	"github.com/qsp-dev/qsp/internal/slo"
)

// Source is what the engine reads telemetry from; telemetry.Embedded and
// telemetry.Remote implement it. Implementations are safe for concurrent
// use; errors that mean the source is unreachable wrap
// telemetry.ErrUnavailable.
type Source interface {
	// Range evaluates query at every step in [start, end].
	Range(ctx context.Context, query string, start, end time.Time, step time.Duration) (promql.Matrix, error)
	// Samples returns the raw samples in (start, end] of the series that
	// match all matchers.
	Samples(ctx context.Context, matchers []*labels.Matcher, start, end time.Time) (promql.Matrix, error)
}

// defaultHorizon is how far back late samples revise folded minutes by
// default: the embedded TSDB's default out-of-order window.
const defaultHorizon = 10

// groupMinutes is what a feeder produces for one group of an SLO over
// minutes [from, to): the counts to fold (events, or slices at the minute a
// slice ends) and which minutes had telemetry.
type groupMinutes struct {
	labels  labels.Labels
	counts  []slo.Counts
	sampled []bool
	// heads, when not nil, split each minute's counts by step:
	// heads[i][k-1] are the counts of minute i's first k steps (see
	// subSteps). Feeders without them count whole minutes only.
	heads [][subSteps - 1]slo.Counts
	// rev are corrections to the folded minutes [from-len(rev), from)
	// from late samples, and revSampled the minutes they sampled; nil
	// without corrections.
	rev        []slo.Counts
	revHeads   [][subSteps - 1]slo.Counts
	revSampled []bool
}

func newGroupMinutes(ls labels.Labels, n int) *groupMinutes {
	return &groupMinutes{labels: ls, counts: make([]slo.Counts, n), sampled: make([]bool, n)}
}

// A feeder turns telemetry into per-minute counts for the groups of one
// SLO. Calls come with consecutive ranges [from, to); feeders keep state
// between them (counter predecessors, partial time slices).
type feeder interface {
	// selectors are the raw-sample selectors the feeder reads; the engine
	// fetches them (batched across SLOs) and passes the results to feed in
	// the same order.
	selectors() [][]*labels.Matcher
	// lookback is how far before from the raw samples must reach.
	lookback() time.Duration
	// feed returns the groups' minutes for [from, to), from raw samples
	// read over (readStart, to]. admit says whether
	// a new group may be created. State that depends on the range (partial
	// time slices) changes only when the engine calls commit, which it does
	// when it folds the minutes; counter state changes only with samples.
	feed(ctx context.Context, src Source, raw []promql.Matrix, readStart int64, from, to slo.Minute, admit func(string) bool) (groups map[string]*groupMinutes, commit func(), err error)
	// approximate reports whether counts come from PromQL evaluated at
	// minute steps (extrapolated) rather than from raw samples.
	approximate() bool
}

// partialCounts are a group's events in the newest, partial minute.
type partialCounts struct {
	counts  slo.Counts
	sampled bool
}

// peeker is implemented by feeders that can count the newest, partial
// minute from raw samples without changing their state, so alerts see an
// outage before its minute is complete.
type peeker interface {
	peek(raw []promql.Matrix, fromMs, untilMs int64, known func(string) bool) map[string]partialCounts
}

// counterLookback lets a cold counter find each series' predecessor.
const counterLookback = staleMinutes * time.Minute

// ratioFeeder counts good (or bad) and total events exactly from counters.
type ratioFeeder struct {
	good, bad, total *counter // good or bad is nil
	cs               []*counter
	sels             [][]*labels.Matcher
	// warm is set once every counter is.
	warm bool
	// late counts the samples dropped as too late, each once.
	late int64
	// Results kept for the next call, as counters keep theirs: the engine
	// is done with what feed and peek return before it calls again.
	groups map[string]*groupMinutes
	acc    map[string]peekSums
	peeked map[string]partialCounts
}

func newRatioFeeder(good, bad, total *counter) *ratioFeeder {
	f := &ratioFeeder{good: good, bad: bad, total: total, groups: map[string]*groupMinutes{}}
	for _, c := range []*counter{good, bad, total} {
		if c != nil {
			f.cs = append(f.cs, c)
			f.sels = append(f.sels, c.matchers)
		}
	}
	return f
}

// counters returns the numerator's counter, then the total's.
func (f *ratioFeeder) counters() []*counter { return f.cs }

func (f *ratioFeeder) selectors() [][]*labels.Matcher { return f.sels }

func (f *ratioFeeder) lookback() time.Duration {
	if f.warm {
		return 0 // counters stay warm
	}
	for _, c := range f.counters() {
		if !c.warm {
			// Back to the revision horizon too: a restarted engine's
			// counters then hold the samples of the minutes late samples
			// may still revise, as the folding engine's did.
			return max(counterLookback, time.Duration(c.horizon+2)*time.Minute)
		}
	}
	f.warm = true
	return 0
}

func (f *ratioFeeder) approximate() bool { return false }

// peek returns the partial minute's counts by group. The map is reused by
// the next call.
func (f *ratioFeeder) peek(raw []promql.Matrix, fromMs, untilMs int64, known func(string) bool) map[string]partialCounts {
	if len(raw) != len(f.cs) {
		return nil
	}
	if f.acc == nil {
		f.acc, f.peeked = map[string]peekSums{}, map[string]partialCounts{}
	}
	acc, out := f.acc, f.peeked
	clear(acc)
	clear(out)
	f.total.peek(raw[len(raw)-1], fromMs, untilMs, known, acc, true)
	f.cs[0].peek(raw[0], fromMs, untilMs, known, acc, false)
	for key, ps := range acc {
		if !ps.sampled {
			continue // only groups the total counter sampled
		}
		var c slo.Counts
		if ps.hasTotal {
			c.Total = ps.total
			if f.good != nil {
				c.Good = ps.num
			} else {
				c.Good = ps.total - ps.num
			}
		}
		out[key] = partialCounts{counts: c, sampled: true}
	}
	return out
}

// feed returns the groups' minutes. The map and its groups are reused by
// the next call.
func (f *ratioFeeder) feed(_ context.Context, _ Source, raw []promql.Matrix, readStart int64, from, to slo.Minute, admit func(string) bool) (map[string]*groupMinutes, func(), error) {
	cs := f.counters()
	if len(raw) != len(cs) {
		return nil, nil, fmt.Errorf("engine: %d sample sets for %d counters", len(raw), len(cs))
	}
	// Groups come into being through the total query; good and bad only
	// add to groups that exist.
	var results [3]map[string]*counterGroup
	n := int(to - from)
	for i, c := range cs {
		gate := admit
		if c != f.total {
			gate = func(string) bool { return true }
		}
		results[i] = c.increases(raw[i], readStart, from, to, gate)
	}
	f.countLate()
	totals := results[len(cs)-1]
	out := f.groups
	for key := range out {
		if totals[key] == nil {
			delete(out, key)
		}
	}
	for key, tg := range totals {
		g := out[key]
		if g == nil {
			g = &groupMinutes{labels: tg.labels}
			out[key] = g
		}
		g.counts, g.sampled, g.heads = resize(g.counts, n), resize(g.sampled, n), resize(g.heads, n)
		copy(g.sampled, tg.sampled)
		part := results[0][key]
		combine(g.counts, g.heads, tg.inc, tg.heads, part, f.good != nil, false)
		f.revisions(g, tg, part)
	}
	return out, noCommit, nil
}

// revisions sets g's corrections from the total's (tg) and the
// numerator's (part, maybe nil) revised minutes.
func (f *ratioFeeder) revisions(g *groupMinutes, tg, part *counterGroup) {
	g.rev, g.revSampled = g.rev[:0], g.revSampled[:0]
	if part != nil && !part.revised {
		part = nil
	}
	if !tg.revised && part == nil {
		g.rev, g.revSampled = nil, nil
		return
	}
	n := int(f.total.horizon)
	g.rev, g.revSampled, g.revHeads = resize(g.rev, n), resize(g.revSampled, n), resize(g.revHeads, n)
	var tot []float64
	var totHeads [][subSteps - 1]float64
	if tg.revised {
		copy(g.revSampled, tg.revSampled)
		tot, totHeads = tg.rev, tg.revHeads
	}
	combine(g.rev, g.revHeads, tot, totHeads, part, f.good != nil, true)
}

// combine sets counts and heads from the total's increases (tot, nil for
// none) and the numerator's (part, maybe nil): good is the numerator, or
// total minus bad. With rev, the revision ranges of the groups are read.
func combine(counts []slo.Counts, heads [][subSteps - 1]slo.Counts, tot []float64, totHeads [][subSteps - 1]float64, part *counterGroup, good, rev bool) {
	var num []float64
	var numHeads [][subSteps - 1]float64
	if part != nil {
		num, numHeads = part.inc, part.heads
		if rev {
			num, numHeads = part.rev, part.revHeads
		}
	}
	for m := range counts {
		var t, b float64
		var th, bh [subSteps - 1]float64
		if tot != nil {
			t, th = tot[m], totHeads[m]
		}
		if num != nil {
			b, bh = num[m], numHeads[m]
		}
		c := slo.Counts{Total: t, Good: b}
		if !good {
			c.Good = t - b
		}
		counts[m] = c
		for k := range th {
			h := slo.Counts{Total: th[k], Good: bh[k]}
			if !good {
				h.Good = th[k] - bh[k]
			}
			heads[m][k] = h
		}
	}
}

// lateDropped returns how many samples came too late to be counted.
func (f *ratioFeeder) lateDropped() int64 { return f.late }

// countLate adds the samples the counters dropped in this call: a series
// two counters select (a bad query's series is in the total's) is one
// series, its samples counted once.
func (f *ratioFeeder) countLate() {
	var n int64
	if len(f.cs) == 2 && len(f.cs[0].lateNow)+len(f.cs[1].lateNow) > 0 {
		a, b := f.cs[0].lateNow, f.cs[1].lateNow
		for h, x := range a {
			n += max(x, b[h])
		}
		for h, x := range b {
			if _, ok := a[h]; !ok {
				n += x
			}
		}
	} else {
		for _, c := range f.cs {
			for _, x := range c.lateNow {
				n += x
			}
		}
	}
	f.late += n
}

func noCommit() {}

// rangeRatioFeeder evaluates ratio queries that are not a plain
// sum(rate(counter)) with PromQL at minute steps: each step's value over
// the last minute is that minute's count. Prometheus extrapolates rate(),
// so the counts are approximate and the SLO is marked so.
type rangeRatioFeeder struct {
	good, bad, total string  // queries with the window set to 1m
	perSecond        [3]bool // multiply by 60: rate() gives per-second values
	groupBy          []string
}

func (f *rangeRatioFeeder) selectors() [][]*labels.Matcher { return nil }
func (f *rangeRatioFeeder) lookback() time.Duration        { return 0 }
func (f *rangeRatioFeeder) approximate() bool              { return true }

func (f *rangeRatioFeeder) feed(ctx context.Context, src Source, _ []promql.Matrix, readStart int64, from, to slo.Minute, admit func(string) bool) (map[string]*groupMinutes, func(), error) {
	n := int(to - from)
	out := map[string]*groupMinutes{}
	// The value at the end of minute m covers minute m.
	start, end := (from + 1).Time(), to.Time()
	type part struct {
		q    string
		mult float64
		set  func(c *slo.Counts, v float64)
	}
	parts := []part{{f.total, mult(f.perSecond[2]), func(c *slo.Counts, v float64) { c.Total += v }}}
	if f.good != "" {
		parts = append(parts, part{f.good, mult(f.perSecond[0]), func(c *slo.Counts, v float64) { c.Good += v }})
	} else {
		parts = append(parts, part{f.bad, mult(f.perSecond[1]), func(c *slo.Counts, v float64) { c.Good -= v }})
	}
	for pi, p := range parts {
		m, err := src.Range(ctx, p.q, start, end, time.Minute)
		if err != nil {
			return nil, nil, err
		}
		for _, s := range m {
			key, ls := groupKey(s.Metric, f.groupBy)
			g := out[key]
			if g == nil {
				if pi > 0 || !admit(key) {
					continue
				}
				g = newGroupMinutes(ls, n)
				out[key] = g
			}
			for _, pt := range s.Floats {
				i := int(slo.MinuteOf(msTime(pt.T))-from) - 1
				if i < 0 || i >= n || math.IsNaN(pt.F) || math.IsInf(pt.F, 0) {
					continue
				}
				p.set(&g.counts[i], pt.F*p.mult)
				if pi == 0 {
					g.sampled[i] = true
				}
			}
		}
	}
	if f.bad != "" {
		// Good was set to -bad; add total.
		for _, g := range out {
			for i := range g.counts {
				g.counts[i].Good += g.counts[i].Total
			}
		}
	}
	return out, noCommit, nil
}

func mult(perSecond bool) float64 {
	if perSecond {
		return 60
	}
	return 1
}

// sampleFeeder counts raw samples of a boolean probe (up, probe_success):
// each sample is an event, good when it is 1.
type sampleFeeder struct {
	matchers []*labels.Matcher
	groupBy  []string
}

func (f *sampleFeeder) selectors() [][]*labels.Matcher { return [][]*labels.Matcher{f.matchers} }
func (f *sampleFeeder) lookback() time.Duration        { return 0 }
func (f *sampleFeeder) approximate() bool              { return false }

func (f *sampleFeeder) peek(raw []promql.Matrix, fromMs, untilMs int64, known func(string) bool) map[string]partialCounts {
	out := map[string]partialCounts{}
	for _, s := range raw[0] {
		key, _ := groupKey(s.Metric, f.groupBy)
		if !known(key) {
			continue
		}
		pc := out[key]
		for _, p := range s.Floats {
			if p.T <= fromMs || p.T > untilMs || math.IsNaN(p.F) {
				continue
			}
			pc.counts.Total++
			if p.F >= 1 {
				pc.counts.Good++
			}
			pc.sampled = true
		}
		out[key] = pc
	}
	return out
}

func (f *sampleFeeder) feed(_ context.Context, _ Source, raw []promql.Matrix, readStart int64, from, to slo.Minute, admit func(string) bool) (map[string]*groupMinutes, func(), error) {
	n := int(to - from)
	out := map[string]*groupMinutes{}
	fromMs, toMs := from.Time().UnixMilli(), to.Time().UnixMilli()
	for _, s := range raw[0] {
		key, ls := groupKey(s.Metric, f.groupBy)
		g := out[key]
		if g == nil {
			if !admit(key) {
				continue
			}
			g = newGroupMinutes(ls, n)
			out[key] = g
		}
		for _, p := range s.Floats {
			if p.T <= fromMs || p.T > toMs || math.IsNaN(p.F) {
				continue
			}
			i := int(sampleMinute(p.T) - from)
			g.counts[i].Total++
			if p.F >= 1 {
				g.counts[i].Good++
			}
			g.sampled[i] = true
		}
	}
	return out, noCommit, nil
}

// valueSlices judges time slices by values observed in them: a threshold
// query or a probe evaluated every valueStep, or a percentile evaluated
// once per slice. Each group's values are kept until its slice ends.
type valueSlices struct {
	query   string
	step    time.Duration // evaluation step: valueStep, or the slice length for percentiles
	length  slo.Minute    // slice length in minutes
	cond    func(float64) bool
	groupBy []string
	partial map[string][]float64 // values of the current slice, per group
	labels  map[string]labels.Labels
}

func newValueSlices(query string, step time.Duration, length slo.Minute, cond func(float64) bool, groupBy []string) *valueSlices {
	return &valueSlices{query: query, step: step, length: length, cond: cond, groupBy: groupBy,
		partial: map[string][]float64{}, labels: map[string]labels.Labels{}}
}

// valueStep is how often threshold and probe queries are evaluated within
// a slice: Prometheus' default rule evaluation interval, so a spike that
// lasts one 15s scrape is seen.
const valueStep = 15 * time.Second

func (f *valueSlices) selectors() [][]*labels.Matcher { return nil }
func (f *valueSlices) lookback() time.Duration        { return 0 }
func (f *valueSlices) approximate() bool              { return false }

func (f *valueSlices) feed(ctx context.Context, src Source, _ []promql.Matrix, readStart int64, from, to slo.Minute, admit func(string) bool) (map[string]*groupMinutes, func(), error) {
	n := int(to - from)
	// Evaluate at every step-aligned time in (from, to]; the value at t
	// belongs to the minute that ends at or after t.
	first := from.Time().Add(time.Millisecond).Add(f.step - 1).Truncate(f.step)
	if f.step%time.Minute != 0 {
		first = from.Time().Add(f.step)
	}
	values := map[string]map[slo.Minute][]float64{}
	newLabels := map[string]labels.Labels{}
	if !first.After(to.Time()) {
		m, err := src.Range(ctx, f.query, first, to.Time(), f.step)
		if err != nil {
			return nil, nil, err
		}
		for _, s := range m {
			key, ls := groupKey(s.Metric, f.groupBy)
			if _, known := f.labels[key]; !known {
				if _, isNew := newLabels[key]; !isNew && !admit(key) {
					continue
				}
				newLabels[key] = ls
			}
			vs := values[key]
			if vs == nil {
				vs = map[slo.Minute][]float64{}
				values[key] = vs
			}
			for _, p := range s.Floats {
				mm := slo.MinuteOf(msTime(p.T - 1))
				vs[mm] = append(vs[mm], p.F)
			}
		}
	}
	all := maps.Clone(f.labels)
	maps.Copy(all, newLabels)
	out := make(map[string]*groupMinutes, len(all))
	partial := make(map[string][]float64, len(all))
	for key, ls := range all {
		g := newGroupMinutes(ls, n)
		vs := values[key]
		acc := slices.Clone(f.partial[key])
		for i := range n {
			m := from + slo.Minute(i)
			if v, ok := vs[m]; ok {
				acc = append(acc, v...)
				g.sampled[i] = len(v) > 0 && !allNaN(v)
			}
			if (m+1)%f.length == 0 {
				// The slice [m+1-length, m+1) is complete.
				g.counts[i] = slo.ValueSlice(acc, f.cond)
				acc = acc[:0]
			}
		}
		partial[key] = acc
		out[key] = g
	}
	commit := func() {
		maps.Copy(f.labels, newLabels)
		f.partial = partial
	}
	return out, commit, nil
}

func allNaN(vs []float64) bool {
	for _, v := range vs {
		if !math.IsNaN(v) {
			return false
		}
	}
	return true
}

// eventSlices turns the per-minute events of an inner feeder into time
// slices judged by their ratio (Timeslices) or counted by their ratio
// (RatioTimeslices).
type eventSlices struct {
	inner     feeder
	length    slo.Minute
	objective float64 // for Timeslices; ratio mode ignores it
	ratio     bool
	partial   map[string]slo.Counts
}

func (f *eventSlices) selectors() [][]*labels.Matcher { return f.inner.selectors() }
func (f *eventSlices) lookback() time.Duration        { return f.inner.lookback() }
func (f *eventSlices) approximate() bool              { return f.inner.approximate() }

func (f *eventSlices) feed(ctx context.Context, src Source, raw []promql.Matrix, readStart int64, from, to slo.Minute, admit func(string) bool) (map[string]*groupMinutes, func(), error) {
	groups, innerCommit, err := f.inner.feed(ctx, src, raw, readStart, from, to, admit)
	if err != nil {
		return nil, nil, err
	}
	partial := maps.Clone(f.partial)
	for key, g := range groups {
		acc := partial[key]
		for i := range g.counts {
			m := from + slo.Minute(i)
			acc = acc.Add(g.counts[i])
			g.counts[i] = slo.Counts{}
			if (m+1)%f.length == 0 {
				if f.ratio {
					g.counts[i] = slo.RatioTimeslice(acc)
				} else {
					g.counts[i] = slo.RatioSlice(acc, f.objective)
				}
				acc = slo.Counts{}
			}
		}
		partial[key] = acc
	}
	commit := func() {
		innerCommit()
		f.partial = partial
	}
	return groups, commit, nil
}
