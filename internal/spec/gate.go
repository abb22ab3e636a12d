package spec

// Gate is a deploy check for CI: error budget, security findings and
// canary analysis, then policies. `qsp gate NAME` runs it.
type Gate struct {
	Header `yaml:",inline"`
	Spec   GateSpec `yaml:"spec"`
}

// GateSpec is the body of a Gate. At least one check is set.
type GateSpec struct {
	Service     string         `yaml:"service"`
	Description string         `yaml:"description,omitempty"`
	Budget      *BudgetCheck   `yaml:"budget,omitempty"`
	Security    *SecurityCheck `yaml:"security,omitempty"`
	Canary      *CanaryCheck   `yaml:"canary,omitempty"`
	// Policies names the Policy objects consulted with the checks' results;
	// the built-in policies always apply.
	Policies []string `yaml:"policies,omitempty"`
}

// BudgetCheck fails a deploy when the service's error budgets say so.
type BudgetCheck struct {
	// SLOs limits the check to these SLOs; default every SLO of the service.
	SLOs []string `yaml:"slos,omitempty"`
	// MinRemaining is the budget share that must remain. Default 0%.
	MinRemaining Percent `yaml:"minRemaining,omitempty"`
	// MaxBurnRate fails the gate while the 1h burn rate is above it.
	// Zero disables the check.
	MaxBurnRate float64 `yaml:"maxBurnRate,omitempty"`
}

// SecurityCheck judges vulnerability reports (Trivy or Grype JSON).
type SecurityCheck struct {
	// Reports are report files relative to the working directory; CI may
	// pass more with --report.
	Reports []string `yaml:"reports,omitempty"`
	// MaxFindings is the most findings allowed per severity
	// (critical, high, medium, low, unknown); absent means unlimited.
	MaxFindings map[string]int `yaml:"maxFindings,omitempty"`
	// MaxAge fails the gate when a finding of at least AgeSeverity has
	// been seen for longer than this (since QSP first saw it).
	MaxAge      Duration `yaml:"maxAge,omitempty"`
	AgeSeverity string   `yaml:"ageSeverity,omitempty"`
	// OnlyFixable ignores findings without a fixed version.
	OnlyFixable bool `yaml:"onlyFixable,omitempty"`
	// Ignore lists vulnerability IDs accepted by the team.
	Ignore []string `yaml:"ignore,omitempty"`
}

// Severities of vulnerability findings, most severe first.
var Severities = []string{"critical", "high", "medium", "low", "unknown"}

// CanaryCheck compares a canary with its baseline, metric by metric.
type CanaryCheck struct {
	// Baseline and Canary are label matchers substituted for {{.selector}}
	// in metric queries, e.g. {track: baseline}.
	Baseline map[string]string `yaml:"baseline"`
	Canary   map[string]string `yaml:"canary"`
	// Interval is the length of one analysis run; Runs how many. Default
	// one run over Lookback (one-shot).
	Interval Duration `yaml:"interval,omitempty"`
	Runs     int      `yaml:"runs,omitempty"`
	// Lookback is the data range of a one-shot analysis. Default 10m.
	Lookback Duration `yaml:"lookback,omitempty"`
	// Step is the sampling step of queries. Default 15s.
	Step Duration `yaml:"step,omitempty"`
	// FailFast stops at the first failed run. Default true.
	FailFast *bool `yaml:"failFast,omitempty"`
	// Pass and Marginal are score thresholds (0-100). Default 95 and 75.
	Pass     float64 `yaml:"pass,omitempty"`
	Marginal float64 `yaml:"marginal,omitempty"`
	// Alpha is the significance level of the tests. Default 0.05.
	Alpha float64 `yaml:"alpha,omitempty"`
	// Groups weights metric groups in the score; absent groups weigh the
	// same as each other.
	Groups  map[string]float64 `yaml:"groups,omitempty"`
	Metrics []CanaryMetric     `yaml:"metrics"`
}

// CanaryMetric is one metric compared between canary and baseline.
type CanaryMetric struct {
	Name  string `yaml:"name"`
	Group string `yaml:"group,omitempty"`
	// Query is PromQL with the {{.selector}} placeholder, evaluated for
	// both sides; each step's value is one sample.
	Query string `yaml:"query,omitempty"`
	// Errors and Total make the metric a count metric (error rates): the
	// sides are compared with a test on counts, not on samples.
	Errors string `yaml:"errors,omitempty"`
	Total  string `yaml:"total,omitempty"`
	// Direction is the bad direction: increase, decrease or either.
	// Default increase.
	Direction string `yaml:"direction,omitempty"`
	// AllowedIncrease and AllowedDecrease are the tolerated relative
	// changes of the median before the metric fails.
	AllowedIncrease Percent `yaml:"allowedIncrease,omitempty"`
	AllowedDecrease Percent `yaml:"allowedDecrease,omitempty"`
	// Critical fails the whole analysis when this metric fails.
	Critical bool `yaml:"critical,omitempty"`
	// NaN says what to do with NaN samples: remove (default) or zero.
	NaN string `yaml:"nan,omitempty"`
	// Outliers says what to do with outliers: keep (default) or remove
	// (beyond 3 interquartile ranges).
	Outliers string `yaml:"outliers,omitempty"`
	// Tail also compares this percentile (e.g. 99) and the spread of the
	// distributions. Default 99; set -1 to disable.
	Tail float64 `yaml:"tail,omitempty"`
	// MinSamples below which the metric is inconclusive. Default 10.
	MinSamples int `yaml:"minSamples,omitempty"`
	// Detect are the effects the power advice sizes each check for; a
	// critical metric with fewer samples than that is inconclusive.
	Detect *CanaryDetect `yaml:"detect,omitempty"`
}

// CanaryDetect are the regressions a canary metric's checks must be able
// to see; zero fields keep the defaults.
type CanaryDetect struct {
	// Shift is the relative median change (default the larger of 10% and
	// twice the allowed change).
	Shift Percent `yaml:"shift,omitempty"`
	// Spread is the variance ratio of log-latency (default 2).
	Spread float64 `yaml:"spread,omitempty"`
	// Tail is the share of the canary in a new slow tail beyond every
	// baseline value (default 100% - tail percentile, 1% at p99).
	Tail Percent `yaml:"tail,omitempty"`
	// Rate is the error-rate increase beyond the tolerated rate, in
	// percentage points (default 1%).
	Rate Percent `yaml:"rate,omitempty"`
}

// Canary directions.
const (
	DirectionIncrease = "increase"
	DirectionDecrease = "decrease"
	DirectionEither   = "either"
)

// SelectorPlaceholder stands for the baseline or canary label matchers in
// canary metric queries.
const SelectorPlaceholder = "{{.selector}}"
