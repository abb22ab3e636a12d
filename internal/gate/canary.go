package gate

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/prometheus/promql/parser"

	"github.com/qsp-dev/qsp/internal/gate/canary"
	"github.com/qsp-dev/qsp/internal/policy"
	"github.com/qsp-dev/qsp/internal/spec"
	"github.com/qsp-dev/qsp/internal/tracelink"
)

// Defaults of spec.CanaryCheck the spec leaves to the gate.
const (
	DefaultLookback = 10 * time.Minute
	DefaultStep     = 15 * time.Second
)

// maxStepsPerQuery bounds the samples one range query may return per
// series, as Prometheus does (11,000 points).
const maxStepsPerQuery = 11000

// ErrNoSource: a canary metric needs telemetry and there is no source.
var ErrNoSource = errors.New("no telemetry source to query the canary metrics: run against a server or pass --source-url, or upload JSON samples")

// canaryStage judges the canary against its baseline: once on JSON
// samples, or run by run on PromQL over the Source.
type canaryStage struct{}

func (canaryStage) name() string { return stageCanary }

func (canaryStage) exec(ctx context.Context, x *run) error {
	c := x.gate.Spec.Canary
	cfg := canaryConfig(c)
	if x.req.Samples != nil {
		in, err := canary.DecodeSamples(bytes.NewReader(x.req.Samples))
		if err != nil {
			return fmt.Errorf("canary %w", err)
		}
		res, err := canary.Analyze(cfg, in)
		if err != nil {
			return err
		}
		runs := canary.NewRuns(1, true)
		runs.Add(res)
		x.ev.Canary = &CanaryResult{Source: "samples", RunsResult: runs.Result()}
		x.ev.Progress.CanaryRuns, x.ev.Progress.CanaryDone = 1, 1
		x.judgeCanary()
		return nil
	}
	q := x.r.opts.Source
	if q == nil {
		return ErrNoSource
	}
	windows := x.canaryWindows()
	x.ev.Progress.CanaryRuns = len(windows)
	if c.Interval > 0 {
		// A frozen budget or a denied report should not wait for the
		// canary's intervals.
		stop, err := x.precheck(ctx)
		if err != nil || stop {
			return err
		}
	}
	runs := canary.NewRuns(len(windows), failFast(c))
	// The result is published with the first run: until then there is
	// no verdict to show, only progress.
	result := &CanaryResult{Source: "promql"}
	for _, w := range windows {
		if wait := w.End.Sub(x.r.now()); wait > 0 {
			x.ev.Progress.NextRunAt = w.End
			x.publish(ctx)
			if err := x.r.opts.Sleep(ctx, wait); err != nil {
				return fmt.Errorf("waiting for the canary interval ending %s: %w", w.End.Format(time.RFC3339), err)
			}
		}
		in, err := x.r.fetchCanary(ctx, c, w)
		if err != nil {
			return err
		}
		res, err := canary.Analyze(cfg, in)
		if err != nil {
			return err
		}
		result.Windows = append(result.Windows, w)
		x.ev.Canary = result
		stop := runs.Add(res)
		result.RunsResult = runs.Result()
		x.ev.Progress.CanaryDone = len(result.Windows)
		x.ev.Progress.NextRunAt = time.Time{}
		if stop {
			break
		}
	}
	result.RunsResult = runs.Result()
	x.judgeCanary()
	x.canaryTraces(ctx, c, result)
	return nil
}

// canaryTraces lists, for every failed metric of the decisive run,
// example traces from the canary side's exemplars over the analysed
// windows, so the verdict points at failing requests. A failed look-up
// leaves them out: the verdict stands without.
func (x *run) canaryTraces(ctx context.Context, c *spec.CanaryCheck, result *CanaryResult) {
	decisive := result.decisive()
	if x.r.opts.Traces == nil || decisive == nil || len(result.Windows) == 0 {
		return
	}
	start, end := result.Windows[0].Start, result.Windows[len(result.Windows)-1].End
	sel := matchers(c.Canary)
	for _, mr := range decisive.Metrics {
		if mr.Status != canary.StatusFail {
			continue
		}
		i := slices.IndexFunc(c.Metrics, func(m spec.CanaryMetric) bool { return m.Name == mr.Name })
		if i < 0 {
			continue
		}
		q := cmp.Or(c.Metrics[i].Errors, c.Metrics[i].Query)
		exs, err := x.r.opts.Traces.ForQuery(ctx, substitute(q, sel), "", nil, start, end)
		if err != nil {
			x.r.logger.Warn("example traces of a failed canary metric", "gate", x.gate.Name(), "metric", mr.Name, "err", err)
			continue
		}
		if len(exs) > 0 {
			if result.ExampleTraces == nil {
				result.ExampleTraces = map[string][]tracelink.Example{}
			}
			result.ExampleTraces[mr.Name] = exs
		}
	}
}

// plannedRuns is how many canary runs the evaluation plans.
func (x *run) plannedRuns() int {
	c := x.gate.Spec.Canary
	if c.Interval == 0 {
		return 1
	}
	return max(cmp.Or(x.req.Runs, c.Runs), 1)
}

// canaryWindows are the windows of the runs: one lookback before the
// request (one-shot), or consecutive intervals after it.
func (x *run) canaryWindows() []Window {
	c := x.gate.Spec.Canary
	start := x.ev.CreatedAt
	if c.Interval == 0 {
		return []Window{{Start: start.Add(-cmp.Or(c.Lookback.D(), DefaultLookback)), End: start}}
	}
	n := x.plannedRuns()
	out := make([]Window, n)
	for i := range n {
		out[i] = Window{Start: start.Add(time.Duration(i) * c.Interval.D()), End: start.Add(time.Duration(i+1) * c.Interval.D())}
	}
	return out
}

func failFast(c *spec.CanaryCheck) bool { return c.FailFast == nil || *c.FailFast }

// judgeCanary turns the canary's result into reasons and the policy's
// canary facts.
func (x *run) judgeCanary() {
	res := x.ev.Canary
	decisive := res.decisive()
	facts := &policy.CanaryCheck{Verdict: string(res.Verdict), FailedMetrics: []string{}}
	if decisive != nil {
		facts.Score = finite(float64(decisive.Score))
		for _, m := range decisive.Metrics {
			level := LevelInfo
			switch m.Status {
			case canary.StatusFail:
				level = LevelFail
				facts.FailedMetrics = append(facts.FailedMetrics, m.Name)
			case canary.StatusNoData, canary.StatusInconclusive:
				level = LevelWarn
			}
			// The explanation starts with the metric's name, which the
			// reason carries as its source.
			x.addReason(CheckCanary, level, m.Name, strings.TrimPrefix(m.Explanation, m.Name+": "))
		}
	}
	x.checks.Canary = facts
	level := LevelInfo
	msg := res.Explanation
	switch res.Verdict {
	case canary.VerdictFail:
		level = LevelFail
	case canary.VerdictInconclusive:
		level = LevelInconclusive
	case canary.VerdictMarginal:
		level = LevelInconclusive
		msg = fmt.Sprintf("marginal canary, not a pass: %s", msg)
	}
	x.addReason(CheckCanary, level, "", msg)
}

// decisive returns the run the verdict rests on: the first failed run,
// else the last; nil when none ran.
func (c *CanaryResult) decisive() *canary.Result {
	for i := range c.Runs {
		if c.Runs[i].Verdict == canary.VerdictFail {
			return &c.Runs[i]
		}
	}
	if len(c.Runs) == 0 {
		return nil
	}
	return &c.Runs[len(c.Runs)-1]
}

// canaryConfig maps the gate's canary check onto the canary package's
// configuration. Zero values keep the package's defaults.
func canaryConfig(c *spec.CanaryCheck) canary.Config {
	cfg := canary.Config{Alpha: c.Alpha, Pass: c.Pass, Marginal: c.Marginal, Groups: maps.Clone(c.Groups)}
	for _, m := range c.Metrics {
		cfg.Metrics = append(cfg.Metrics, canary.MetricConfig{
			Name:            m.Name,
			Group:           m.Group,
			Counts:          m.Query == "",
			Direction:       canary.Direction(m.Direction),
			AllowedIncrease: m.AllowedIncrease.Ratio(),
			AllowedDecrease: m.AllowedDecrease.Ratio(),
			Critical:        m.Critical,
			NaN:             canary.NaNPolicy(m.NaN),
			Outliers:        canary.OutlierPolicy(m.Outliers),
			Tail:            m.Tail,
			MinSamples:      m.MinSamples,
		})
		if d := m.Detect; d != nil {
			mc := &cfg.Metrics[len(cfg.Metrics)-1]
			mc.DetectShift, mc.DetectSpread, mc.DetectTail, mc.DetectRate = d.Shift.Ratio(), d.Spread, d.Tail.Ratio(), d.Rate.Ratio()
		}
	}
	return cfg
}

// fetchCanary queries every metric of the canary check for both sides
// over window w.
func (r *Runner) fetchCanary(ctx context.Context, c *spec.CanaryCheck, w Window) (canary.Input, error) {
	step := cmp.Or(c.Step.D(), DefaultStep)
	if steps := w.End.Sub(w.Start) / step; steps > maxStepsPerQuery {
		return canary.Input{}, fmt.Errorf("canary window %s at step %s is %d steps, more than %d: raise spec.canary.step",
			w.End.Sub(w.Start), step, steps, maxStepsPerQuery)
	}
	in := canary.Input{Metrics: map[string]canary.MetricInput{}}
	sides := []map[string]string{c.Baseline, c.Canary}
	for _, m := range c.Metrics {
		var mi canary.MetricInput
		for i, side := range sides {
			sel := matchers(side)
			if m.Query != "" {
				vals, err := r.samples(ctx, m.Name, substitute(m.Query, sel), w, step)
				if err != nil {
					return canary.Input{}, err
				}
				if i == 0 {
					mi.Baseline = vals
				} else {
					mi.Canary = vals
				}
				continue
			}
			counts, err := r.counts(ctx, m, sel, w)
			if err != nil {
				return canary.Input{}, err
			}
			if i == 0 {
				mi.BaselineCounts = counts
			} else {
				mi.CanaryCounts = counts
			}
		}
		in.Metrics[m.Name] = mi
	}
	return in, nil
}

// samples evaluates query over w at step: every value of every series is
// one sample.
func (r *Runner) samples(ctx context.Context, metric, query string, w Window, step time.Duration) ([]float64, error) {
	qctx, cancel := context.WithTimeout(ctx, r.opts.QueryTimeout)
	defer cancel()
	m, err := r.opts.Source.Range(qctx, query, w.Start, w.End, step)
	if err != nil {
		return nil, fmt.Errorf("canary metric %s: query %s: %w", metric, query, err)
	}
	var out []float64
	for _, s := range m {
		for _, p := range s.Floats {
			out = append(out, p.F)
		}
	}
	return out, nil
}

// counts evaluates a count metric's errors and total over w: the range
// selectors become the window's length and the queries are evaluated at
// its end, each side's counts summed over the returned series.
func (r *Runner) counts(ctx context.Context, m spec.CanaryMetric, sel string, w Window) (*canary.Counts, error) {
	var vals [2]float64
	for i, q := range []struct{ field, query string }{{"errors", m.Errors}, {"total", m.Total}} {
		query, err := windowQuery(substitute(q.query, sel), w.End.Sub(w.Start))
		if err != nil {
			return nil, fmt.Errorf("canary metric %s: %s query: %w", m.Name, q.field, err)
		}
		qctx, cancel := context.WithTimeout(ctx, r.opts.QueryTimeout)
		vec, err := r.opts.Source.Instant(qctx, query, w.End)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("canary metric %s: %s query %s: %w", m.Name, q.field, query, err)
		}
		for _, s := range vec {
			vals[i] += s.F
		}
	}
	return &canary.Counts{Errors: vals[0], Total: vals[1]}, nil
}

// matchers renders label matchers for {{.selector}}: track="canary",
// sorted by name so that queries are stable.
func matchers(m map[string]string) string {
	names := slices.Sorted(maps.Keys(m))
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = n + "=" + strconv.Quote(m[n])
	}
	return strings.Join(parts, ",")
}

func substitute(query, sel string) string {
	return strings.ReplaceAll(query, spec.SelectorPlaceholder, sel)
}

var promqlParser = parser.NewParser(parser.Options{})

// windowQuery sets every range selector of query to d, so that
// increase() counts the events of the whole window. rate() and irate()
// are refused: they give per-second rates, not counts.
func windowQuery(query string, d time.Duration) (string, error) {
	expr, err := promqlParser.ParseExpr(query)
	if err != nil {
		return "", err
	}
	var bad error
	parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
		switch n := node.(type) {
		case *parser.Call:
			if n.Func != nil && (n.Func.Name == "rate" || n.Func.Name == "irate") {
				bad = fmt.Errorf("%s() gives per-second rates, not counts: count errors and total with increase()", n.Func.Name)
			}
		case *parser.MatrixSelector:
			n.Range = d
			n.RangeExpr = nil
		}
		return nil
	})
	if bad != nil {
		return "", bad
	}
	return expr.String(), nil
}
