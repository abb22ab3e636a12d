package engine

import (
	"cmp"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/promql"

	"github.com/qsp-dev/qsp/internal/slo"
)

// staleMinutes is how long after its last sample a series still counts as
// present, as in Prometheus (5m).
const staleMinutes = 5

// counter computes exact per-minute increases of a counter query from raw
// samples: for each series, the difference between consecutive samples
// (after a reset, the new value), attributed to the minute that ends at or
// after the later sample, with no extrapolation. Minute m covers the
// milliseconds (m, m+1], so a window of whole minutes holds the increases
// of the samples in (start, end], as Prometheus' range selectors do.
//
// The first sample QSP sees of a series only starts it: it has no known
// predecessor, so its value is never an increase, however warm the
// counter. A series created mid-window with a large value (a new pod's
// counter restored from a snapshot, a relabelled series) adds nothing;
// only its later increases count. A genuinely new counter that starts at
// a small value loses that first increment, as Prometheus' increase()
// loses it: guessing which first values are "from zero" is what made a
// new series starting at 1e6 count a million events.
//
// The counter remembers each series' samples of the last horizon minutes,
// so a late sample (one that arrives after its minute was folded) inside
// that horizon is merged into the series and its minutes revised: the
// returned groups carry the corrections. Samples older than the horizon
// are counted in late and never folded into a newer minute.
type counter struct {
	matchers []*labels.Matcher
	groupBy  []string
	series   map[uint64]*seriesState
	warm     bool
	// horizon is how many minutes before a call's from late samples still
	// revise their minutes.
	horizon slo.Minute
	// maxSeries bounds memory; series beyond it are ignored and counted.
	maxSeries int
	dropped   int
	// late counts samples that arrived too late to be counted, and
	// lateNow those of the current call by series, so a feeder whose
	// counters select the same series counts each sample once.
	late    int64
	lateNow map[uint64]int64
	// oldest is at most the last sample time (ms) of every series, so
	// expire knows when it has nothing to do without looking.
	oldest int64
	// groups is what increases returns, kept for the next call: a cycle
	// would otherwise allocate a map and its groups for every counter.
	groups map[string]*counterGroup
}

// point is one sample of a series.
type point struct {
	t int64
	v float64
}

type seriesState struct {
	t     int64 // ms of the newest sample folded
	v     float64
	group string
	// hist are the series' samples after floor, oldest first, up to t:
	// what a late sample is merged into. base is the newest sample at or
	// before floor, when hasBase. A late sample at or before floor cannot
	// be placed and is counted as late.
	hist    []point
	base    point
	hasBase bool
	floor   int64
	// seen counts the samples of each recent minute the counter has
	// seen (folded, revised or dropped): a read back that finds more in
	// a minute beyond revision found late ones, each counted once, and a
	// sample read again is not counted again.
	seen minuteTally
}

// tallyMinutes is how many minutes a minuteTally covers: the revision
// horizon and the drop span behind it (see dropSpan), with room.
const tallyMinutes = 96

// minuteTally counts samples per minute for the last tallyMinutes
// minutes up to newest, saturating at 255 (a 1s scrape has 60). Minutes
// before from were never seen by this process.
type minuteTally struct {
	n      [tallyMinutes]uint8
	newest slo.Minute
	from   slo.Minute
	used   bool
}

// add counts k samples in minute m.
func (mt *minuteTally) add(m slo.Minute, k int) {
	if !mt.used {
		mt.used, mt.newest, mt.from = true, m, m
	}
	if m > mt.newest {
		for x := mt.newest + 1; x <= m && x <= mt.newest+tallyMinutes; x++ {
			mt.n[x%tallyMinutes] = 0
		}
		mt.newest = m
	}
	if m <= mt.newest-tallyMinutes {
		return
	}
	i := m % tallyMinutes
	mt.n[i] = uint8(min(int(mt.n[i])+k, math.MaxUint8))
}

// get returns the samples counted in minute m, and whether the tally
// covers m.
func (mt *minuteTally) get(m slo.Minute) (int, bool) {
	if !mt.used || m > mt.newest || m <= mt.newest-tallyMinutes || m < mt.from {
		return 0, false
	}
	return int(mt.n[m%tallyMinutes]), true
}

// maxHist bounds the samples kept per series for revisions: 10 minutes of
// 1 s scrapes. A series scraped faster keeps a shorter horizon.
const maxHist = 600

func newCounter(ms []*labels.Matcher, groupBy []string) *counter {
	return &counter{matchers: ms, groupBy: groupBy, series: map[uint64]*seriesState{}, maxSeries: 200_000, groups: map[string]*counterGroup{}, horizon: defaultHorizon}
}

// counterGroup are the per-minute increases of one group over [from, to),
// and corrections to minutes [from-horizon, from) already folded.
type counterGroup struct {
	labels labels.Labels
	inc    []float64
	// sampled marks minutes with at least one sample.
	sampled []bool
	used    bool // in the result of the current call
	// heads[i][k-1] is the part of inc[i] from samples in the first
	// k steps of the minute (k < subSteps): what a window starting inside
	// the minute leaves out (see subSteps).
	heads [][subSteps - 1]float64
	// rev and revSampled are over [from-horizon, from), valid when
	// revised: what late samples add to those minutes, and revHeads to
	// their heads.
	rev        []float64
	revHeads   [][subSteps - 1]float64
	revSampled []bool
	revised    bool
}

// subSteps divides a minute for windows that end inside one: windows end
// on a half minute (30s), so a window (end-d, end] starting in a folded
// minute leaves out the samples of the minute's steps before its start,
// which the rollup keeps as the minute's heads. Halves, not quarters:
// each step costs every SLO 4 bytes per minute of its minute tier, and
// halves keep a 30d SLO within 50 KiB while a full outage still pages
// within two minutes (TestDetectionLatency).
const subSteps = 2

// subMs is the length of one step of a minute in ms.
const subMs = 60_000 / subSteps

// subOf is the step (0..subSteps-1) of its minute that a sample at t
// (ms) falls in: minute m's step q holds (m+q*subMs, m+(q+1)*subMs].
func subOf(t int64) int {
	return int((t - 1 - minuteMs(sampleMinute(t))) / subMs)
}

// addHeads adds inc, from a sample in step q, to the heads of the steps
// after it.
func addHeads(h *[subSteps - 1]float64, q int, inc float64) {
	for k := q; k < subSteps-1; k++ {
		h[k] += inc
	}
}

// reset makes g n minutes long, all zero.
func (g *counterGroup) reset(n int) {
	g.inc, g.sampled, g.heads = resize(g.inc, n), resize(g.sampled, n), resize(g.heads, n)
	g.used = true
	g.revised = false
}

// revise adds inc, from a sample in step q, to folded minute i of the
// revision range (of length n).
func (g *counterGroup) revise(n, i, q int, inc float64, sampled bool) {
	if !g.revised {
		g.rev, g.revSampled, g.revHeads = resize(g.rev, n), resize(g.revSampled, n), resize(g.revHeads, n)
		g.revised = true
	}
	g.rev[i] += inc
	addHeads(&g.revHeads[i], q, inc)
	g.revSampled[i] = g.revSampled[i] || sampled
}

// resize returns s with length n, zeroed, reusing its array when it is
// big enough and not much bigger: a backfill chunk of 6h must not stay
// allocated for every group of every SLO once cycles fold one minute.
func resize[T any](s []T, n int) []T {
	if cap(s) < n || cap(s) > 4*n+8 {
		return make([]T, n)
	}
	s = s[:n]
	clear(s)
	return s
}

// groupKey returns the key and label set of a series' group.
func groupKey(ls labels.Labels, by []string) (string, labels.Labels) {
	if len(by) == 0 {
		return "", labels.EmptyLabels()
	}
	b := labels.NewScratchBuilder(len(by))
	var key strings.Builder
	for i, name := range by {
		v := ls.Get(name)
		if i > 0 {
			key.WriteByte(0xff)
		}
		key.WriteString(v)
		b.Add(name, v)
	}
	b.Sort()
	return key.String(), b.Labels()
}

// sampleMinute is the minute a sample at t (ms) belongs to: the one that
// ends at or after it, so minute m holds (m, m+1].
func sampleMinute(t int64) slo.Minute { return slo.MinuteOf(msTime(t - 1)) }

// minuteMs is the end of minute boundary m in ms.
func minuteMs(m slo.Minute) int64 { return m.Time().UnixMilli() }

// increase is what sample v adds after prev: a reset restarts from zero.
func increase(prev, v float64) float64 {
	if v >= prev {
		return v - prev
	}
	return v
}

// increases folds the samples of m, read over (readStart, to], into
// per-group increases over minutes [from, to) and returns the groups.
// Samples up to from (readStart < from when the engine reads back for
// late samples, or looks back for predecessors) revise folded minutes
// when the counter folded them itself (it is warm), and only serve as
// predecessors otherwise. Samples after to are left for the next call.
// admit decides whether a new group may be created (the cardinality
// limit). The groups returned are reused by the next call.
func (c *counter) increases(m promql.Matrix, readStart int64, from, to slo.Minute, admit func(string) bool) map[string]*counterGroup {
	fromMs, toMs := minuteMs(from), minuteMs(to)
	n := int(to - from)
	revFrom := from - c.horizon
	nRev := int(c.horizon)
	floor := minuteMs(revFrom)
	// The oldest sample the next call (from = to) can revise.
	keep := minuteMs(to - c.horizon)
	out := c.groups
	for _, g := range out {
		g.used = false
	}
	clear(c.lateNow)
	for _, s := range m {
		h := s.Metric.Hash()
		st := c.series[h]
		if st == nil {
			key, _ := groupKey(s.Metric, c.groupBy)
			if len(c.series) >= c.maxSeries {
				c.dropped++
				continue
			}
			st = &seriesState{t: math.MinInt64, group: key, floor: math.MinInt64}
			if !c.warm {
				// What came before the read is not known, and was counted
				// (or not) by whoever folded it.
				st.floor = readStart
			}
			c.series[h] = st
			c.oldest = math.MinInt64
		}
		g := out[st.group]
		if g == nil || !g.used {
			// New in this call: admit asks again for a group kept from
			// an earlier call, as it did when groups were not kept.
			if !admit(st.group) {
				continue
			}
			if g == nil {
				_, ls := groupKey(s.Metric, c.groupBy)
				g = &counterGroup{labels: ls}
				out[st.group] = g
			}
			g.reset(n)
		}
		if c.warm {
			st.trim(floor)
		}
		pts := s.Floats
		// Samples at or before the newest one folded: already known, or
		// late and out of order. Those too late to revise are counted
		// once, by minute, against what the series' tally saw.
		var inserted []point
		k := 0
		tallyM, tallyN, tooLate := slo.Minute(math.MinInt64), 0, false
		flush := func() {
			if tooLate {
				if seen, ok := st.seen.get(tallyM); ok && tallyN > seen {
					c.dropLate(h, int64(tallyN-seen))
					st.seen.add(tallyM, tallyN-seen)
				}
			}
			tallyN, tooLate = 0, false
		}
		for ; k < len(pts) && pts[k].T <= st.t; k++ {
			p := pts[k]
			if p.T <= readStart || value.IsStaleNaN(p.F) || math.IsNaN(p.F) {
				continue
			}
			if m := sampleMinute(p.T); m != tallyM {
				flush()
				tallyM = m
			}
			tallyN++
			if st.has(p.T) {
				continue
			}
			if !c.warm || p.T <= floor || p.T <= st.floor {
				tooLate = tooLate || c.warm
				continue
			}
			inserted = append(inserted, point{p.T, p.F})
			st.seen.add(sampleMinute(p.T), 1)
		}
		flush()
		if len(inserted) > 0 {
			c.merge(st, inserted, g, revFrom, nRev)
		}
		for _, p := range pts[k:] {
			if p.T > toMs || value.IsStaleNaN(p.F) || math.IsNaN(p.F) {
				continue
			}
			known := st.t != math.MinInt64
			inc := 0.0
			if known {
				inc = increase(st.v, p.F)
			} else if !c.warm {
				// Whoever folded the minutes before this sample may have
				// known its predecessor: nothing before it is merged.
				st.floor = max(st.floor, p.T)
			}
			st.t, st.v = p.T, p.F
			st.push(point{p.T, p.F}, keep)
			st.seen.add(sampleMinute(p.T), 1)
			switch {
			case p.T > fromMs:
				i := int(sampleMinute(p.T) - from)
				g.inc[i] += inc
				addHeads(&g.heads[i], subOf(p.T), inc)
				g.sampled[i] = true
			case !c.warm:
				// A predecessor: before the range, already counted.
			case p.T > floor:
				// Late but in order: its minute was folded without it.
				g.revise(nRev, int(sampleMinute(p.T)-revFrom), subOf(p.T), inc, true)
			default:
				// Too late to revise: the increase is lost, visibly,
				// rather than counted in a later minute.
				c.dropLate(h, 1)
			}
		}
	}
	for key, g := range out {
		if !g.used {
			delete(out, key)
		}
	}
	// Every series that could have been seen has been by now.
	c.warm = true
	return out
}

// dropLate counts n samples of series h that came too late.
func (c *counter) dropLate(h uint64, n int64) {
	c.late += n
	if c.lateNow == nil {
		c.lateNow = map[uint64]int64{}
	}
	c.lateNow[h] += n
}

// has reports whether the series holds a sample at t.
func (st *seriesState) has(t int64) bool {
	_, ok := slices.BinarySearchFunc(st.hist, t, func(p point, t int64) int { return cmp.Compare(p.t, t) })
	return ok || (st.hasBase && st.base.t == t)
}

// push appends p, the series' newest sample, to its history. Samples at
// or before keep (the oldest minute a later call can revise) only become
// the base: a backfill chunk of hours keeps minutes, not hours.
func (st *seriesState) push(p point, keep int64) {
	if p.t <= keep {
		st.base, st.hasBase = p, true
		st.floor = max(st.floor, p.t)
		st.hist = st.hist[:0]
		return
	}
	if len(st.hist) >= 2*maxHist {
		st.trim(st.hist[len(st.hist)-maxHist-1].t)
	}
	st.hist = append(st.hist, p)
}

// trim forgets the samples at or before floor, keeping the newest of
// them as the base.
func (st *seriesState) trim(floor int64) {
	k := 0
	for k < len(st.hist) && st.hist[k].t <= floor {
		k++
	}
	if k == 0 {
		return
	}
	st.base, st.hasBase = st.hist[k-1], true
	st.floor = max(st.floor, st.base.t)
	st.hist = append(st.hist[:0], st.hist[k:]...)
}

// merge inserts late samples into a series' history and revises the
// minutes whose increases they change: the history's increases are taken
// out, the merged history's put in.
func (c *counter) merge(st *seriesState, ins []point, g *counterGroup, revFrom slo.Minute, nRev int) {
	merged := make([]point, 0, len(st.hist)+len(ins))
	i, j := 0, 0
	for i < len(st.hist) || j < len(ins) {
		if j == len(ins) || i < len(st.hist) && st.hist[i].t < ins[j].t {
			merged = append(merged, st.hist[i])
			i++
		} else {
			merged = append(merged, ins[j])
			j++
		}
	}
	chain := func(pts []point, sign float64) {
		prev, ok := st.base, st.hasBase
		for _, p := range pts {
			if ok {
				if k := int(sampleMinute(p.t) - revFrom); k >= 0 && k < nRev {
					g.revise(nRev, k, subOf(p.t), sign*increase(prev.v, p.v), false)
				}
			}
			prev, ok = p, true
		}
	}
	chain(st.hist, -1)
	chain(merged, 1)
	for _, p := range ins {
		if k := int(sampleMinute(p.t) - revFrom); k >= 0 && k < nRev {
			g.revise(nRev, k, 0, 0, true)
		}
	}
	st.hist = merged
	if len(st.hist) > 2*maxHist {
		st.trim(st.hist[len(st.hist)-maxHist-1].t)
	}
}

// expire forgets series without samples since before cutoff (ms).
func (c *counter) expire(cutoff int64) {
	if cutoff <= c.oldest {
		return // no series is that old
	}
	oldest := int64(math.MaxInt64)
	for h, st := range c.series {
		if st.t < cutoff {
			delete(c.series, h)
		} else {
			oldest = min(oldest, st.t)
		}
	}
	c.oldest = oldest
}

func msTime(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

// peekSums are a group's increases in the newest, partial minute.
type peekSums struct {
	num, total float64
	// hasTotal says the total counter had an increase (maybe zero);
	// sampled that it had a sample.
	hasTotal, sampled bool
}

// peek adds, per group, the increases of the samples in (fromMs, untilMs]
// to acc, without remembering them: the newest, partial minute, counted
// again when it is folded. Only groups in known are counted. total says
// whether c is the total counter (else the numerator).
func (c *counter) peek(m promql.Matrix, fromMs, untilMs int64, known func(string) bool, acc map[string]peekSums, total bool) {
	for _, s := range m {
		st := c.series[s.Metric.Hash()]
		var key string
		if st != nil {
			key = st.group
		} else {
			key, _ = groupKey(s.Metric, c.groupBy)
		}
		if !known(key) {
			continue
		}
		t, v, ok := int64(math.MinInt64), 0.0, false
		if st != nil && st.t != math.MinInt64 {
			t, v, ok = st.t, st.v, true
		}
		// The group's sums are added to in sample order, series after
		// series, as one running sum: the float result must not depend
		// on how the work is split.
		ps, changed := acc[key], false
		for _, p := range s.Floats {
			if p.T <= t || p.T > untilMs || value.IsStaleNaN(p.F) || math.IsNaN(p.F) {
				continue
			}
			if p.T <= fromMs {
				t, v, ok = p.T, p.F, true
				continue
			}
			// A series' first sample is a baseline here too.
			var inc float64
			counted := ok
			if ok {
				inc = increase(v, p.F)
			}
			if counted {
				if total {
					ps.total += inc
					ps.hasTotal = true
				} else {
					ps.num += inc
				}
			}
			if total {
				ps.sampled = true
			}
			changed = true
			t, v, ok = p.T, p.F, true
		}
		if changed {
			acc[key] = ps
		}
	}
}
