package engine

import (
	"context"
	"math"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"

	"github.com/qsp-dev/qsp/internal/slo"
)

// errorRatioFeeder evaluates a query that returns an error ratio (Sloth's
// sli.raw.error_ratio_query, OpenSLO's ratioMetric.raw) at minute steps.
// A ratio carries no event count, so each minute with a value is one
// event, bad in proportion to the ratio: windows average the per-minute
// ratios with every minute weighing the same, whatever its traffic. The
// counts are approximate and the SLO is marked so. Values outside [0, 1]
// are clamped; NaN (0/0, no traffic) leaves the minute without data.
type errorRatioFeeder struct {
	query   string // the window placeholder, if any, set to 1m
	groupBy []string
}

func (f *errorRatioFeeder) selectors() [][]*labels.Matcher { return nil }
func (f *errorRatioFeeder) lookback() time.Duration        { return 0 }
func (f *errorRatioFeeder) approximate() bool              { return true }

func (f *errorRatioFeeder) feed(ctx context.Context, src Source, _ []promql.Matrix, _ int64, from, to slo.Minute, admit func(string) bool) (map[string]*groupMinutes, func(), error) {
	n := int(to - from)
	out := map[string]*groupMinutes{}
	// The value at the end of minute m covers minute m.
	m, err := src.Range(ctx, f.query, (from + 1).Time(), to.Time(), time.Minute)
	if err != nil {
		return nil, nil, err
	}
	// Several series in one group are averaged: seen counts them per minute.
	seen := map[string][]float64{}
	for _, s := range m {
		key, ls := groupKey(s.Metric, f.groupBy)
		g := out[key]
		if g == nil {
			if !admit(key) {
				continue
			}
			g = newGroupMinutes(ls, n)
			out[key] = g
			seen[key] = make([]float64, n)
		}
		for _, pt := range s.Floats {
			i := int(slo.MinuteOf(msTime(pt.T))-from) - 1
			if i < 0 || i >= n || math.IsNaN(pt.F) {
				continue
			}
			r := min(max(pt.F, 0), 1)
			k := seen[key][i]
			g.counts[i] = slo.Counts{Good: (g.counts[i].Good*k + 1 - r) / (k + 1), Total: 1}
			seen[key][i] = k + 1
			g.sampled[i] = true
		}
	}
	return out, noCommit, nil
}
