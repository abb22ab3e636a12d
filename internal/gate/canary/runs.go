package canary

import "fmt"

// Runs accumulates the results of several analysis intervals of one
// canary: the runner analyses one interval at a time, adds its result and
// stops when told. It is not safe for concurrent use.
type Runs struct {
	planned  int
	failFast bool
	results  []Result
}

// NewRuns expects planned intervals (at least 1). With failFast a failed
// interval stops the analysis at once.
func NewRuns(planned int, failFast bool) *Runs {
	return &Runs{planned: max(planned, 1), failFast: failFast}
}

// Add records the result of the next interval and reports whether to
// stop: all planned intervals are done, or one failed under fail-fast.
func (r *Runs) Add(res Result) (stop bool) {
	r.results = append(r.results, res)
	if len(r.results) >= r.planned {
		return true
	}
	return r.failFast && res.Verdict == VerdictFail
}

// RunsResult is the overall outcome of several intervals.
type RunsResult struct {
	Verdict Verdict `json:"verdict"`
	Planned int     `json:"planned"`
	Done    int     `json:"done"`
	// Stopped is set when fail-fast ended the analysis early.
	Stopped     bool     `json:"stopped,omitempty"`
	Runs        []Result `json:"runs"`
	Explanation string   `json:"explanation"`
}

// Result returns the overall verdict: fail when any interval failed,
// inconclusive when none ran or the last was inconclusive, otherwise the
// verdict of the last interval, which judged the canary on the most
// recent data.
func (r *Runs) Result() RunsResult {
	out := RunsResult{Planned: r.planned, Done: len(r.results), Runs: r.results}
	out.Stopped = out.Done < out.Planned
	if len(r.results) == 0 {
		out.Verdict = VerdictInconclusive
		out.Explanation = "INCONCLUSIVE: no interval was analysed"
		return out
	}
	for i, res := range r.results {
		if res.Verdict == VerdictFail {
			out.Verdict = VerdictFail
			out.Explanation = fmt.Sprintf("FAIL: interval %d of %d failed: %s", i+1, r.planned, res.Explanation)
			if out.Stopped {
				out.Explanation += fmt.Sprintf(" (stopped after %d of %d intervals)", out.Done, out.Planned)
			}
			return out
		}
	}
	last := r.results[len(r.results)-1]
	out.Verdict = last.Verdict
	out.Explanation = fmt.Sprintf("%s after %d of %d intervals; last interval: %s",
		upper(last.Verdict), out.Done, out.Planned, last.Explanation)
	if out.Stopped && last.Verdict != VerdictInconclusive {
		// Fewer intervals than planned and none failed: the runner
		// stopped early for its own reasons; do not claim a pass.
		out.Verdict = VerdictInconclusive
		out.Explanation = fmt.Sprintf("INCONCLUSIVE: only %d of %d intervals analysed; last interval: %s", out.Done, out.Planned, last.Explanation)
	}
	return out
}

func upper(v Verdict) string {
	b := []byte(v)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}
