package canary

import (
	"encoding/json"
	"math"
	"strconv"
)

// Verdict is the outcome of an analysis or of several runs.
type Verdict string

// Verdicts.
const (
	VerdictPass         Verdict = "pass"
	VerdictMarginal     Verdict = "marginal"
	VerdictFail         Verdict = "fail"
	VerdictInconclusive Verdict = "inconclusive"
)

// Status is the outcome for one metric.
type Status string

// Metric statuses. NoData and Inconclusive metrics are left out of the
// score and count towards Config.MaxInconclusive.
const (
	StatusPass         Status = "pass"
	StatusFail         Status = "fail"
	StatusNoData       Status = "nodata"
	StatusInconclusive Status = "inconclusive"
)

// Float is a float64 that survives JSON: NaN is written as null and the
// infinities as the strings "+Inf" and "-Inf" (one-sided intervals,
// relative changes from zero).
type Float float64

// MarshalJSON implements json.Marshaler.
func (f Float) MarshalJSON() ([]byte, error) {
	v := float64(f)
	switch {
	case math.IsNaN(v):
		return []byte("null"), nil
	case math.IsInf(v, 1):
		return []byte(`"+Inf"`), nil
	case math.IsInf(v, -1):
		return []byte(`"-Inf"`), nil
	}
	return strconv.AppendFloat(nil, v, 'g', -1, 64), nil
}

// UnmarshalJSON implements json.Unmarshaler.
func (f *Float) UnmarshalJSON(b []byte) error {
	switch string(b) {
	case "null":
		*f = Float(math.NaN())
		return nil
	case `"+Inf"`:
		*f = Float(math.Inf(1))
		return nil
	case `"-Inf"`:
		*f = Float(math.Inf(-1))
		return nil
	}
	var v float64
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*f = Float(v)
	return nil
}

// Result is the outcome of one analysis (one run), with every number
// behind it.
type Result struct {
	Verdict Verdict `json:"verdict"`
	// Score is 0-100: per group the share of judged metrics that pass,
	// weighted over groups; NaN (null) when nothing could be judged.
	Score    Float `json:"score"`
	Pass     Float `json:"pass"`
	Marginal Float `json:"marginal"`
	// Alpha is the analysis-wide false-fail rate, MetricAlpha the share
	// of it each metric's checks get.
	Alpha       Float `json:"alpha"`
	MetricAlpha Float `json:"metricAlpha"`
	// TailAlpha is the level of each tail-share check, outside the
	// metrics' shares (Config.TailAlphaShare); zero without any.
	TailAlpha Float `json:"tailAlpha"`
	// InconclusiveShare is the share of score weight without a verdict.
	InconclusiveShare Float          `json:"inconclusiveShare"`
	MaxInconclusive   Float          `json:"maxInconclusive"`
	Kayenta           bool           `json:"kayenta,omitempty"`
	Groups            []GroupResult  `json:"groups"`
	Metrics           []MetricResult `json:"metrics"`
	// Notes are remarks that did not change the verdict, e.g. input
	// metrics no configured metric asked for.
	Notes []string `json:"notes,omitempty"`
	// Explanation is one sentence with the verdict and why.
	Explanation string `json:"explanation"`
}

// GroupResult is one metric group in the score.
type GroupResult struct {
	Name    string `json:"name"`
	Weight  Float  `json:"weight"`
	Judged  int    `json:"judged"`
	Passed  int    `json:"passed"`
	Metrics int    `json:"metrics"`
	// Score is 0-100, NaN (null) when no metric of the group was judged.
	Score Float `json:"score"`
}

// MetricResult is the judgment of one metric.
type MetricResult struct {
	Name      string    `json:"name"`
	Group     string    `json:"group"`
	Kind      string    `json:"kind"` // "samples" or "counts"
	Direction Direction `json:"direction"`
	Critical  bool      `json:"critical,omitempty"`
	Status    Status    `json:"status"`
	// Weight is the metric's share of the score weight.
	Weight   Float `json:"weight"`
	Baseline Side  `json:"baseline"`
	Canary   Side  `json:"canary"`
	// Checks are the tests run, in order; Failed names those that failed.
	Checks []Check  `json:"checks,omitempty"`
	Failed []string `json:"failed,omitempty"`
	Reason string   `json:"reason,omitempty"`
	// NeedSamples is the largest 80%-power size of the metric's checks
	// (samples, for counts requests, per side); NeedCheck names that
	// check. A critical metric with fewer samples than that on a side is
	// inconclusive rather than passing.
	NeedSamples int       `json:"needSamples,omitempty"`
	NeedCheck   string    `json:"needCheck,omitempty"`
	Shift       *ShiftOut `json:"shift,omitempty"`
	// Explanation is a human-readable sentence with the numbers.
	Explanation string `json:"explanation"`
}

// Side summarises one side's data.
type Side struct {
	// N is the number of samples judged (after NaN and outlier handling
	// for the shift check); Invalid counts NaN or infinite samples,
	// Outliers the samples removed as outliers.
	N        int   `json:"n,omitempty"`
	Invalid  int   `json:"invalid,omitempty"`
	Outliers int   `json:"outliers,omitempty"`
	Median   Float `json:"median,omitempty"`
	Mean     Float `json:"mean,omitempty"`
	// Tail is the value at the configured tail percentile.
	Tail Float `json:"tail,omitempty"`
	// Errors, Total and Rate describe a count metric's side.
	Errors Float `json:"errors,omitempty"`
	Total  Float `json:"total,omitempty"`
	Rate   Float `json:"rate,omitempty"`
}

// ShiftOut is the Hodges-Lehmann shift of the canary against the
// baseline, absolute and relative to the baseline median.
type ShiftOut struct {
	Estimate      Float  `json:"estimate"`
	Lower         Float  `json:"lower"`
	Upper         Float  `json:"upper"`
	ConfLevel     Float  `json:"confLevel"`
	Relative      Float  `json:"relative"`
	RelativeLower Float  `json:"relativeLower"`
	RelativeUpper Float  `json:"relativeUpper"`
	Method        string `json:"method"`
}

// Check is one test of a metric.
type Check struct {
	// Name is shift, spread, tail, tail-low, far-tail, far-tail-low,
	// tail-share, tail-share-low or counts.
	Name string `json:"name"`
	// Test names the statistical test.
	Test        string `json:"test"`
	Alternative string `json:"alternative"`
	Statistic   Float  `json:"statistic"`
	PValue      Float  `json:"pValue"`
	// Alpha is the level this p-value was held to after the Holm
	// correction; Significant is PValue <= Alpha.
	Alpha       Float `json:"alpha"`
	Significant bool  `json:"significant"`
	// Effect is the relative change the check measures (e.g. +0.12 for
	// 12% more), Allowed the tolerance it is compared with; Exceeded
	// says the effect is beyond it in the harmful direction.
	Effect   Float `json:"effect"`
	Allowed  Float `json:"allowed"`
	Exceeded bool  `json:"exceeded"`
	// Failed is Significant and Exceeded.
	Failed bool   `json:"failed"`
	Detail string `json:"detail"`
	// Power is the sample-size advice for this check, where there is
	// one (not in Kayenta mode, not for lower tails).
	Power *Power `json:"power,omitempty"`
}
