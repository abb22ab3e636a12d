// Package canary judges a canary against its baseline: the statistics,
// the per-metric judgment, the 0-100 score and the verdict of one analysis
// interval, and the accumulation of several intervals with fail-fast.
//
// It is the pure part of the canary gate: the gate runner fetches samples
// (PromQL over the Source with the canary and baseline selectors, or the
// JSON samples format DecodeSamples reads), calls Analyze for each
// interval, feeds the results to Runs, and writes JSON and JUnit reports
// from the result structs. Nothing here does I/O or reads a clock; the
// same input gives the same result.
//
// # Checks per metric
//
// A sample metric (latency, CPU, ...) gets up to four checks:
//
//   - shift: the Mann-Whitney U test in the harmful direction, sized by
//     the Hodges-Lehmann shift and its confidence interval relative to the
//     baseline median; it fails when significant and beyond the allowed
//     increase or decrease. This is Kayenta's check.
//   - spread: the Brown-Forsythe test (Levene on medians) for a larger
//     spread, which a shift test cannot see when the median stays put.
//   - tail: the number of canary samples above the baseline's tail
//     percentile (p99 by default), exactly beta-binomial under the null
//     hypothesis because the threshold comes from the baseline.
//   - far-tail: the same above the baseline maximum, for a new tail
//     beyond anything the baseline showed (skipped when the tail
//     percentile already is the maximum).
//
// A count metric (errors out of requests) is compared with Fisher's exact
// test on the two sides' counts. A canary whose error rate is beyond the
// tolerance but not significantly so is inconclusive, not passing, when
// there are too few events to tell or the baseline has no errors at all:
// a zero-error baseline never lets canary errors pass (Kayenta's all-zero
// and NaN-ratio blind spot).
//
// # False fails
//
// Config.Alpha is the false-fail rate of one analysis of identical
// canary and baseline. Each metric gets Alpha divided by the number of
// metrics (Bonferroni), and within a metric Holm's step-down procedure
// shares that among its checks. Several intervals multiply the chances;
// runners that need a per-gate rate divide Alpha by the number of runs.
//
// # Power and sample-size advice
//
// Every check of a metric (shift, spread, tail share, counts) carries a
// Power: the smallest sample per side at which it reaches 80% and 95%
// power for the effect it is configured to catch (MetricConfig.DetectShift,
// DetectSpread, DetectTail, DetectRate), by the method Power documents:
// exact for the tail share and counts, a seeded simulation for shift and
// spread, cached per configuration. A critical metric that passes on
// fewer samples than the largest 80% size of its checks is inconclusive
// with "needs N samples per side": an analysis that could not have seen
// the regression is no pass. PlanAnalysis gives the same sizes before a
// rollout, as minutes at a given traffic.
//
// # Reference implementations
//
// MannWhitneyU, BrownForsythe, TailExceedance and FisherExact equal
// scipy 1.10 to 1e-9, and WilcoxTestR reproduces R 4.2's
// wilcox.test(conf.int=TRUE) to 1e-6, on the vectors in testdata/ that
// the scripts there generated. HodgesLehmann selects order statistics of
// the m*n pairwise differences without materialising them.
package canary
