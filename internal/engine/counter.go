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
}

type seriesState struct {
	t     int64 // ms of the last sample folded
	v     float64
	group string
}

func newCounter(ms []*labels.Matcher, groupBy []string) *counter {
	return &counter{matchers: ms, groupBy: groupBy, series: map[uint64]*seriesState{}, maxSeries: 200_000}
}

// counterGroup are the per-minute increases of one group over [from, to).
type counterGroup struct {
	labels labels.Labels
	inc    []float64
	// sampled marks minutes with at least one sample.
	sampled []bool
}

func newCounterGroup(ls labels.Labels, n int) *counterGroup {
	return &counterGroup{labels: ls, inc: make([]float64, n), sampled: make([]bool, n)}
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
// [from, to). Samples before from only serve as predecessors; samples at
// or after to are left for the next call. admit decides whether a new
// group may be created (the cardinality limit); out collects the groups.
func (c *counter) increases(m promql.Matrix, from, to slo.Minute, out map[string]*counterGroup, admit func(string) bool) {
	fromMs, toMs := from.Time().UnixMilli(), to.Time().UnixMilli()
	n := int(to - from)
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
		}
		g := out[st.group]
		if g == nil {
			if !admit(st.group) {
				continue
			}
			_, ls := groupKey(s.Metric, c.groupBy)
			g = newCounterGroup(ls, n)
			out[st.group] = g
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
	// Every series that could have been seen has been by now.
	c.warm = true
}

// expire forgets series without samples since before cutoff (ms).
func (c *counter) expire(cutoff int64) {
	for h, st := range c.series {
		if st.t < cutoff {
			delete(c.series, h)
		}
	}
}

func msTime(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

// peek returns, per group, the increases of the samples in [fromMs,
// untilMs) without remembering them: the newest, partial minute, counted
// again when it is folded. Only groups in known are counted.
func (c *counter) peek(m promql.Matrix, fromMs, untilMs int64, known func(string) bool) (inc map[string]float64, sampled map[string]bool) {
	inc, sampled = map[string]float64{}, map[string]bool{}
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
		for _, p := range s.Floats {
			if p.T <= t || p.T >= untilMs || value.IsStaleNaN(p.F) || math.IsNaN(p.F) {
				continue
			}
			if p.T < fromMs {
				t, v, ok = p.T, p.F, true
				continue
			}
			switch {
			case ok && p.F >= v:
				inc[key] += p.F - v
			case ok || c.warm:
				inc[key] += p.F
			}
			sampled[key] = true
			t, v, ok = p.T, p.F, true
		}
	}
	return inc, sampled
}
