package engine

import (
	"math"
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
// (after a reset, the new value), attributed to the minute of the later
// sample, with no extrapolation. It remembers each series' last sample
// between calls, so each call only needs the new minutes.
//
// A series first seen while the counter is warm (it has been following the
// query) was created in the meantime: its first value is an increase from
// zero. Before that, a first sample has no known predecessor and only
// starts the series.
type counter struct {
	matchers []*labels.Matcher
	groupBy  []string
	series   map[uint64]*seriesState
	warm     bool
	// maxSeries bounds memory; series beyond it are ignored and counted.
	maxSeries int
	dropped   int
	// oldest is at most the last sample time (ms) of every series, so
	// expire knows when it has nothing to do without looking.
	oldest int64
	// groups is what increases returns, kept for the next call: a cycle
	// would otherwise allocate a map and its groups for every counter.
	groups map[string]*counterGroup
}

type seriesState struct {
	t     int64 // ms of the last sample folded
	v     float64
	group string
}

func newCounter(ms []*labels.Matcher, groupBy []string) *counter {
	return &counter{matchers: ms, groupBy: groupBy, series: map[uint64]*seriesState{}, maxSeries: 200_000, groups: map[string]*counterGroup{}}
}

// counterGroup are the per-minute increases of one group over [from, to).
type counterGroup struct {
	labels labels.Labels
	inc    []float64
	// sampled marks minutes with at least one sample.
	sampled []bool
	used    bool // in the result of the current call
}

// reset makes g n minutes long, all zero.
func (g *counterGroup) reset(n int) {
	g.inc, g.sampled = resize(g.inc, n), resize(g.sampled, n)
	g.used = true
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

// increases folds the samples of m into per-group increases over minutes
// [from, to) and returns the groups. Samples before from only serve as
// predecessors; samples at or after to are left for the next call. admit
// decides whether a new group may be created (the cardinality limit).
// The groups returned are reused by the next call.
func (c *counter) increases(m promql.Matrix, from, to slo.Minute, admit func(string) bool) map[string]*counterGroup {
	fromMs, toMs := from.Time().UnixMilli(), to.Time().UnixMilli()
	n := int(to - from)
	out := c.groups
	for _, g := range out {
		g.used = false
	}
	for _, s := range m {
		h := s.Metric.Hash()
		st := c.series[h]
		if st == nil {
			key, _ := groupKey(s.Metric, c.groupBy)
			if len(c.series) >= c.maxSeries {
				c.dropped++
				continue
			}
			st = &seriesState{t: math.MinInt64, group: key}
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
		known := st.t != math.MinInt64
		for _, p := range s.Floats {
			if p.T <= st.t || p.T >= toMs || value.IsStaleNaN(p.F) || math.IsNaN(p.F) {
				continue
			}
			if p.T < fromMs {
				// Before the range: a predecessor, already counted.
				st.t, st.v, known = p.T, p.F, true
				continue
			}
			var inc float64
			switch {
			case known && p.F >= st.v:
				inc = p.F - st.v
			case known:
				inc = p.F // a reset: the counter restarted from zero
			case c.warm:
				inc = p.F // a series created since the last call
			}
			i := int(slo.MinuteOf(msTime(p.T)) - from)
			g.inc[i] += inc
			g.sampled[i] = true
			st.t, st.v, known = p.T, p.F, true
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

// peek adds, per group, the increases of the samples in [fromMs, untilMs)
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
			if p.T <= t || p.T >= untilMs || value.IsStaleNaN(p.F) || math.IsNaN(p.F) {
				continue
			}
			if p.T < fromMs {
				t, v, ok = p.T, p.F, true
				continue
			}
			var inc float64
			counted := true
			switch {
			case ok && p.F >= v:
				inc = p.F - v
			case ok || c.warm:
				inc = p.F
			default:
				counted = false
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
