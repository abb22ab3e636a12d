package canary

import (
	"errors"
	"fmt"
	"math"
	"strings"
)

// Direction is the direction in which a metric change is harmful.
type Direction string

// Directions.
const (
	Increase Direction = "increase"
	Decrease Direction = "decrease"
	Either   Direction = "either"
)

// NaNPolicy says what happens to NaN (and infinite) samples.
type NaNPolicy string

// NaN policies.
const (
	NaNRemove NaNPolicy = "remove"
	NaNZero   NaNPolicy = "zero"
)

// OutlierPolicy says what happens to outlying samples before the shift
// check.
type OutlierPolicy string

// Outlier policies.
const (
	OutliersKeep   OutlierPolicy = "keep"
	OutliersRemove OutlierPolicy = "remove"
)

// Defaults applied by Analyze to zero fields.
const (
	DefaultAlpha          = 0.05
	DefaultPass           = 95.0
	DefaultMarginal       = 75.0
	DefaultTail           = 99.0
	DefaultMinSamples     = 10
	DefaultMinEvents      = 10
	DefaultOutlierIQR     = 3.0
	DefaultSpreadIncrease = 0.25
	// DefaultTailAlphaShare is the share of Alpha the tail-share checks
	// get together; see Config.TailAlphaShare.
	DefaultTailAlphaShare = 0.65
	// DefaultDetectShift, DefaultDetectSpread and DefaultDetectRate are
	// the effects the power advice is computed for unless configured:
	// +10% median, doubled variance, +1 point error rate.
	DefaultDetectShift  = 0.10
	DefaultDetectSpread = 2.0
	DefaultDetectRate   = 0.01
	// DefaultMaxInconclusive is the largest share of the score weight that
	// may be without a verdict (no data, inconclusive) before the whole
	// analysis is inconclusive.
	DefaultMaxInconclusive = 0.25
	// TailDisabled as MetricConfig.Tail turns off the spread and tail
	// checks.
	TailDisabled = -1.0
)

// Config is one canary analysis: the metrics, how each is judged and how
// the results are scored. Zero fields take the defaults above. The gate
// runner maps the user-facing spec.CanaryCheck onto it.
type Config struct {
	// Alpha is the false-fail rate allowed for one analysis of
	// identical canary and baseline. It is divided among the metrics
	// (Bonferroni) and among the checks of each metric (Holm), so that
	// the whole analysis stays at Alpha. Default 0.05.
	Alpha float64 `json:"alpha"`
	// Pass and Marginal are score thresholds in 0-100: a score of at
	// least Pass passes, at least Marginal is marginal, below fails.
	Pass     float64 `json:"pass"`
	Marginal float64 `json:"marginal"`
	// Groups weighs metric groups in the score. Without weights every
	// group weighs the same; a group missing from a non-empty map weighs
	// the mean of the listed weights.
	Groups map[string]float64 `json:"groups,omitempty"`
	// MaxInconclusive is the largest share (0-1) of score weight without
	// a verdict before the analysis is inconclusive. Default 0.25.
	MaxInconclusive float64 `json:"maxInconclusive"`
	// Kayenta judges like Kayenta's Mann-Whitney classifier: only the
	// shift check, at Alpha for every metric, no spread, tail or count
	// tests. For comparison only.
	Kayenta bool `json:"kayenta,omitempty"`
	// TailAlphaShare is the share (0-1) of Alpha given to the tail-share
	// checks of all sample metrics together, split equally among them;
	// the other checks share the rest, Bonferroni over the metrics and
	// Holm within each. The tail-share test is the one whose power is
	// capped by its level at realistic sizes (a 1% tail is 5 samples at
	// n = 500, and "the 5 largest of 1,000 are all canary" has p = 0.031),
	// while the shift, spread and count tests gain power with the square
	// root of n and reach it with a small level. Default 0.65; with no
	// sample metric whose tail is checked the whole Alpha goes to the
	// other checks.
	TailAlphaShare float64 `json:"tailAlphaShare,omitempty"`
	// Seed seeds the random pivots of the pairwise-difference selection;
	// results do not depend on it, only the work done.
	Seed    uint64         `json:"seed,omitempty"`
	Metrics []MetricConfig `json:"metrics"`
}

// MetricConfig says how one metric is judged.
type MetricConfig struct {
	Name  string `json:"name"`
	Group string `json:"group,omitempty"`
	// Counts makes this a count metric (errors out of totals per side),
	// compared with Fisher's exact test instead of sample tests.
	Counts bool `json:"counts,omitempty"`
	// Direction is the harmful direction. Default increase.
	Direction Direction `json:"direction"`
	// AllowedIncrease and AllowedDecrease are tolerated relative changes
	// (0.1 = 10%) of the median (samples), of the tail percentile, or of
	// the error rate (counts) before a significant change fails.
	AllowedIncrease float64 `json:"allowedIncrease"`
	AllowedDecrease float64 `json:"allowedDecrease"`
	// AllowedAbsoluteIncrease is, for count metrics, a tolerated increase
	// of the rate in absolute terms (0.001 = 0.1 percentage points),
	// added to the relative one; it is what makes a zero-error baseline
	// tolerable at all.
	AllowedAbsoluteIncrease float64 `json:"allowedAbsoluteIncrease,omitempty"`
	// Critical fails the whole analysis when this metric fails and makes
	// it inconclusive when this metric has no verdict.
	Critical bool `json:"critical,omitempty"`
	// NaN says what happens to NaN and infinite samples. Default remove.
	NaN NaNPolicy `json:"nan"`
	// Outliers removes samples beyond OutlierIQR interquartile ranges
	// from the quartiles of their side before the shift check. The spread
	// and tail checks always see every sample: a new tail is what they
	// look for. Default keep.
	Outliers   OutlierPolicy `json:"outliers"`
	OutlierIQR float64       `json:"outlierIQR"`
	// Tail is the percentile (e.g. 99) whose exceedances are compared;
	// TailDisabled (-1) turns off the tail and spread checks. Default 99.
	Tail float64 `json:"tail"`
	// SpreadIncrease is the tolerated relative increase of the spread
	// (mean absolute deviation from the median). Default 0.25.
	SpreadIncrease float64 `json:"spreadIncrease"`
	// MinSamples is the fewest samples (or, for counts, requests) per side
	// for a verdict; fewer give no data. Default 10.
	MinSamples int `json:"minSamples"`
	// MinEvents is, for counts, the fewest error events on both sides
	// together for a worse-looking canary to pass as noise; fewer make it
	// inconclusive. Default 10.
	MinEvents int `json:"minEvents"`
	// DetectShift, DetectSpread, DetectTail and DetectRate are the
	// effects the power advice is computed for: the relative median
	// change (default the larger of 10% and twice the allowed change),
	// the variance ratio (default 2), the share of canary samples in a
	// new tail beyond the baseline (default 1 - Tail/100) and the
	// absolute error-rate increase (default 0.01, one point, plus the
	// tolerance).
	DetectShift  float64 `json:"detectShift,omitempty"`
	DetectSpread float64 `json:"detectSpread,omitempty"`
	DetectTail   float64 `json:"detectTail,omitempty"`
	DetectRate   float64 `json:"detectRate,omitempty"`
}

// ErrConfig wraps every configuration problem.
var ErrConfig = errors.New("invalid canary configuration")

// withDefaults validates c and fills in defaults.
func (c Config) withDefaults() (Config, error) {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if c.Alpha == 0 {
		c.Alpha = DefaultAlpha
	}
	if !(c.Alpha > 0 && c.Alpha < 1) {
		bad("alpha %v must be in (0, 1)", c.Alpha)
	}
	if c.Pass == 0 {
		c.Pass = DefaultPass
	}
	if c.Marginal == 0 {
		c.Marginal = DefaultMarginal
	}
	if c.Pass < 0 || c.Pass > 100 || c.Marginal < 0 || c.Marginal > 100 || c.Marginal > c.Pass {
		bad("thresholds pass %v and marginal %v must satisfy 0 <= marginal <= pass <= 100", c.Pass, c.Marginal)
	}
	if c.MaxInconclusive == 0 {
		c.MaxInconclusive = DefaultMaxInconclusive
	}
	if c.MaxInconclusive < 0 || c.MaxInconclusive > 1 {
		bad("maxInconclusive %v must be in [0, 1]", c.MaxInconclusive)
	}
	for g, w := range c.Groups {
		if !(w >= 0) || math.IsInf(w, 0) {
			bad("group %q weight %v must be a non-negative number", g, w)
		}
	}
	if c.TailAlphaShare == 0 {
		c.TailAlphaShare = DefaultTailAlphaShare
	}
	if !(c.TailAlphaShare > 0 && c.TailAlphaShare < 1) {
		bad("tailAlphaShare %v must be in (0, 1)", c.TailAlphaShare)
	}
	if len(c.Metrics) == 0 {
		bad("no metrics")
	}
	seen := map[string]bool{}
	ms := make([]MetricConfig, len(c.Metrics))
	for i, m := range c.Metrics {
		where := fmt.Sprintf("metric %q", m.Name)
		if m.Name == "" {
			where = fmt.Sprintf("metric %d", i)
			bad("%s: no name", where)
		} else if seen[m.Name] {
			bad("%s: defined twice", where)
		}
		seen[m.Name] = true
		if m.Direction == "" {
			m.Direction = Increase
		}
		switch m.Direction {
		case Increase, Decrease, Either:
		default:
			bad("%s: direction %q is not increase, decrease or either", where, m.Direction)
		}
		if m.NaN == "" {
			m.NaN = NaNRemove
		}
		if m.NaN != NaNRemove && m.NaN != NaNZero {
			bad("%s: nan %q is not remove or zero", where, m.NaN)
		}
		if m.Outliers == "" {
			m.Outliers = OutliersKeep
		}
		if m.Outliers != OutliersKeep && m.Outliers != OutliersRemove {
			bad("%s: outliers %q is not keep or remove", where, m.Outliers)
		}
		if m.OutlierIQR == 0 {
			m.OutlierIQR = DefaultOutlierIQR
		}
		if m.Tail == 0 {
			m.Tail = DefaultTail
		}
		if m.Tail != TailDisabled && !(m.Tail > 50 && m.Tail < 100) {
			bad("%s: tail percentile %v must be in (50, 100), or -1 to disable", where, m.Tail)
		}
		if m.SpreadIncrease == 0 {
			m.SpreadIncrease = DefaultSpreadIncrease
		}
		if m.MinSamples == 0 {
			m.MinSamples = DefaultMinSamples
		}
		if m.MinEvents == 0 {
			m.MinEvents = DefaultMinEvents
		}
		if m.DetectShift == 0 {
			m.DetectShift = math.Max(DefaultDetectShift, 2*math.Max(m.AllowedIncrease, m.AllowedDecrease))
		}
		if m.DetectSpread == 0 {
			m.DetectSpread = DefaultDetectSpread
		}
		if m.DetectTail == 0 && m.Tail != TailDisabled {
			m.DetectTail = 1 - m.Tail/100
		}
		if m.DetectRate == 0 {
			m.DetectRate = DefaultDetectRate
		}
		if !(m.DetectShift > 0 && m.DetectShift < 10) || !(m.DetectSpread > 1 && m.DetectSpread < 100) ||
			!(m.DetectTail >= 0 && m.DetectTail < 1) || !(m.DetectRate > 0 && m.DetectRate < 1) {
			bad("%s: detectShift %v must be in (0, 10), detectSpread %v in (1, 100), detectTail %v in [0, 1), detectRate %v in (0, 1)",
				where, m.DetectShift, m.DetectSpread, m.DetectTail, m.DetectRate)
		}
		if m.Direction == Decrease && m.DetectShift >= 1 {
			bad("%s: detectShift %v must be below 1 for a decrease", where, m.DetectShift)
		}
		for _, f := range []struct {
			name string
			v    float64
		}{{"allowedIncrease", m.AllowedIncrease}, {"allowedDecrease", m.AllowedDecrease},
			{"allowedAbsoluteIncrease", m.AllowedAbsoluteIncrease}, {"outlierIQR", m.OutlierIQR},
			{"spreadIncrease", m.SpreadIncrease}} {
			if !(f.v >= 0) || math.IsInf(f.v, 0) {
				bad("%s: %s %v must be a non-negative number", where, f.name, f.v)
			}
		}
		if m.AllowedDecrease > 1 {
			bad("%s: allowedDecrease %v must be at most 1 (100%%)", where, m.AllowedDecrease)
		}
		if m.MinSamples < 2 || m.MinEvents < 0 {
			bad("%s: minSamples %d must be at least 2 and minEvents %d not negative", where, m.MinSamples, m.MinEvents)
		}
		ms[i] = m
	}
	c.Metrics = ms
	if len(problems) > 0 {
		return c, fmt.Errorf("%w: %s", ErrConfig, strings.Join(problems, "; "))
	}
	return c, nil
}
