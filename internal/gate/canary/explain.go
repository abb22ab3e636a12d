package canary

import (
	"fmt"
	"math"
	"strings"
)

// pctString formats a ratio as a percentage.
func pctString(r float64) string {
	if math.IsNaN(r) {
		return "n/a"
	}
	return fmt.Sprintf("%.3g%%", 100*r)
}

// signedPct formats a relative change as a signed percentage.
func signedPct(r float64) string {
	switch {
	case math.IsNaN(r):
		return "n/a"
	case math.IsInf(r, 1):
		return "+inf%"
	case math.IsInf(r, -1):
		return "-inf%"
	}
	return fmt.Sprintf("%+.1f%%", 100*r)
}

func pString(p float64) string {
	if p >= 0.001 {
		return fmt.Sprintf("%.3f", p)
	}
	return fmt.Sprintf("%.2g", p)
}

// explainMetric writes the sentence for one metric.
func explainMetric(m MetricResult) string {
	var b strings.Builder
	b.WriteString(m.Name)
	b.WriteString(": ")
	switch {
	case m.Status == StatusNoData && m.Reason != "":
		fmt.Fprintf(&b, "%s — NODATA", m.Reason)
		return b.String()
	case m.Kind == "counts" && len(m.Checks) > 0:
		c := m.Checks[0]
		fmt.Fprintf(&b, "canary error rate %s (%g/%g) vs baseline %s (%g/%g), change %s (allowed %s); %s; Fisher exact p=%s (alpha %s)",
			pctString(float64(m.Canary.Rate)), float64(m.Canary.Errors), float64(m.Canary.Total),
			pctString(float64(m.Baseline.Rate)), float64(m.Baseline.Errors), float64(m.Baseline.Total),
			signedPct(float64(c.Effect)), signedPct(float64(c.Allowed)), c.Detail, pString(float64(c.PValue)), pString(float64(c.Alpha)))
	case m.Shift != nil:
		s := m.Shift
		shift := m.Checks[0]
		fmt.Fprintf(&b, "canary median %.4g vs baseline %.4g (n=%d/%d), shift %s (%g%% CI %s..%s), allowed %s, Mann-Whitney p=%s (alpha %s)",
			float64(m.Canary.Median), float64(m.Baseline.Median), m.Canary.N, m.Baseline.N,
			signedPct(float64(s.Relative)), 100*float64(s.ConfLevel), signedPct(float64(s.RelativeLower)), signedPct(float64(s.RelativeUpper)),
			signedPct(float64(shift.Allowed)), pString(float64(shift.PValue)), pString(float64(shift.Alpha)))
		for _, c := range m.Checks[1:] {
			if !c.Failed {
				continue
			}
			fmt.Fprintf(&b, "; %s: %s, change %s (allowed %s), p=%s (alpha %s)", c.Name, c.Detail,
				signedPct(float64(c.Effect)), signedPct(float64(c.Allowed)), pString(float64(c.PValue)), pString(float64(c.Alpha)))
		}
	default:
		b.WriteString(m.Reason)
	}
	switch m.Status {
	case StatusFail:
		fmt.Fprintf(&b, " — FAIL (%s)", strings.Join(m.Failed, ", "))
	case StatusPass:
		b.WriteString(" — PASS")
	case StatusInconclusive:
		// With checks run the case above wrote the numbers, not the
		// reason (too few events, too few samples for the power).
		if m.Reason != "" && (m.Kind == "counts" || m.Shift != nil) && len(m.Checks) > 0 {
			fmt.Fprintf(&b, "; %s", m.Reason)
		}
		b.WriteString(" — INCONCLUSIVE")
	case StatusNoData:
		b.WriteString(" — NODATA")
	}
	return b.String()
}

// explainResult writes the sentence for the analysis.
func explainResult(r Result) string {
	var failed, critical, missing []string
	for _, m := range r.Metrics {
		switch m.Status {
		case StatusFail:
			failed = append(failed, m.Name)
			if m.Critical {
				critical = append(critical, m.Name)
			}
		case StatusNoData, StatusInconclusive:
			missing = append(missing, m.Name)
		}
	}
	var b strings.Builder
	b.WriteString(strings.ToUpper(string(r.Verdict)))
	if math.IsNaN(float64(r.Score)) {
		b.WriteString(": no metric could be judged")
	} else {
		fmt.Fprintf(&b, ": score %.1f (pass >= %g, marginal >= %g)", float64(r.Score), float64(r.Pass), float64(r.Marginal))
	}
	if len(critical) > 0 {
		fmt.Fprintf(&b, "; critical metric failed: %s", strings.Join(critical, ", "))
	}
	fmt.Fprintf(&b, "; %d of %d metrics failed", len(failed), len(r.Metrics))
	if len(failed) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(failed, ", "))
	}
	if len(missing) > 0 {
		fmt.Fprintf(&b, "; no verdict for %s (%.0f%% of the weight, at most %.0f%% allowed)", strings.Join(missing, ", "),
			100*float64(r.InconclusiveShare), 100*float64(r.MaxInconclusive))
	}
	return b.String()
}
