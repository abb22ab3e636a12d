// Package gate runs deploy gates: the Gate objects of the spec that CI
// consults before promoting a change (`qsp gate NAME`, or
// POST /api/v1/gates/{name}/evaluations).
//
// It sits after the engine and before the API: an evaluation reads the
// service's error budgets from the engine's snapshot, the vulnerability
// reports CI uploads (parsed by package vuln), canary and baseline
// telemetry from the Source (judged by package canary), and hands all the
// facts to the policy engine, whose decision is the verdict. Every
// evaluation is stored with every reason and the numbers behind it, and
// records a deploy marker.
//
// # Pipeline
//
// An evaluation is a pipeline of stages, each one Exec: budget, security,
// canary, policy, record. The budget and security stages only gather
// facts (the built-in error-budget and vulnerabilities policies judge
// them, so nothing is denied twice); the canary stage judges the canary
// itself; the policy stage decides; the record stage sets the verdict and
// writes the deploy marker. A stage that fails stops the pipeline (the
// record stage still runs): its error is a reason of the evaluation and
// its verdict is error.
//
// # Verdicts
//
//	pass          exit 0  the policy allowed (or warned) and the canary passed
//	fail          exit 1  a policy denied, or the canary failed
//	inconclusive  exit 2  the canary was inconclusive or marginal
//	error         exit 2  a check could not run: a malformed report, a
//	                      query that failed, an unreachable source, a
//	                      policy that failed to load or to evaluate
//
// A marginal canary (a score between the marginal and pass thresholds) is
// inconclusive, not a pass and not a fail: the analysis saw some metrics
// degrade but not enough to reject the canary, which is a question for a
// person (or for more runs). A policy deny makes it a fail. No error is
// ever a pass.
//
// # Canary analysis
//
// With JSON samples in the request, the canary is judged once on them.
// Otherwise every metric's queries are evaluated against the Source with
// {{.selector}} replaced by the baseline's and then the canary's label
// matchers. A sampled metric's query is a range query over the run's
// window at the gate's step: every value of every returned series at
// every step is one sample of its side. A count metric's errors and total
// queries must count with increase(): their range selectors are set to
// the window's length and they are evaluated once, at the window's end,
// so each side's counts are the events of the window, summed over the
// returned series.
//
// Without spec.canary.interval the analysis is one run over the lookback
// before the request (one-shot). With an interval, run i judges the i-th
// interval after the request, and the evaluation waits for each
// interval's end: such evaluations run in the background on the server.
// Before waiting, the policies are consulted on the budget and security
// facts alone, so that a frozen budget fails the gate at once rather than
// after the canary.
//
// # Vulnerability ages
//
// A finding's age is measured from when QSP first saw it for this
// service, stored (the store's first-seen table), because published dates
// are often missing and say nothing about how long the team has known.
package gate
