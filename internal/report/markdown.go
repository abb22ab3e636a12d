package report

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Percent writes a ratio as a percentage for people: enough digits to
// tell 99.95 % from 99.9 %, never 99.979452 % (two decimals, trailing
// zeros dropped), and never 100 % for a ratio below 1.
func Percent(f float64) string {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return "–"
	}
	p := math.Round(f*10000) / 100
	if p >= 100 && f < 1 {
		p = 99.99
	}
	return strconv.FormatFloat(p, 'f', -1, 64) + " %"
}

// OptPercent is Percent of a ratio that may be missing.
func OptPercent(f *float64) string {
	if f == nil {
		return "no events"
	}
	return Percent(*f)
}

// Count writes an event count rounded for people: 1234 → "1,234",
// 1.5e6 → "1.5M".
func Count(f float64) string {
	switch a := math.Abs(f); {
	case a >= 1e9:
		return trimFloat(f/1e9, 1) + "G"
	case a >= 1e6:
		return trimFloat(f/1e6, 1) + "M"
	case a >= 1e4:
		return trimFloat(f/1e3, 1) + "k"
	}
	n := int64(math.Round(f))
	s := strconv.FormatInt(n, 10)
	if len(s) > 4 || (len(s) == 4 && n > 0) {
		s = s[:len(s)-3] + "," + s[len(s)-3:]
	}
	return s
}

func trimFloat(f float64, digits int) string {
	return strconv.FormatFloat(math.Round(f*math.Pow10(digits))/math.Pow10(digits), 'f', -1, 64)
}

// Seconds writes a duration in seconds as "45s", "4m30s", "2h5m" (to
// the minute from an hour on), "3d4h" (to the hour from a day on).
func Seconds(s float64) string {
	n := int64(math.Round(s))
	if n < 0 {
		return "-" + Seconds(-s)
	}
	d, h, m, sec := n/86400, n%86400/3600, n%3600/60, n%60
	var b strings.Builder
	switch {
	case d > 0:
		fmt.Fprintf(&b, "%dd", d)
		if h > 0 {
			fmt.Fprintf(&b, "%dh", h)
		}
	case h > 0:
		fmt.Fprintf(&b, "%dh", h)
		if m > 0 {
			fmt.Fprintf(&b, "%dm", m)
		}
	case m > 0:
		fmt.Fprintf(&b, "%dm", m)
		if sec > 0 {
			fmt.Fprintf(&b, "%ds", sec)
		}
	default:
		fmt.Fprintf(&b, "%ds", sec)
	}
	return b.String()
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "–"
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

// mdCell escapes a table cell.
func mdCell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r", " "), "\n", " ")
}

// Markdown writes the report as Markdown.
func (r *Report) Markdown(w io.Writer) error {
	var b strings.Builder
	title := "SLO report " + r.Period
	if r.Service != "" {
		title += " — " + r.Service
	}
	fmt.Fprintf(&b, "# %s\n\n", title)
	fmt.Fprintf(&b, "Period %s to %s", stamp(r.From), stamp(r.To))
	if r.Partial {
		b.WriteString(" (the period is still running)")
	}
	fmt.Fprintf(&b, ". Generated %s.\n\n", stamp(r.GeneratedAt))
	fmt.Fprintf(&b, "**%d of %d SLOs met their objective.**\n\n", r.Met, r.Met+r.Missed)

	b.WriteString("## Attainment\n\n| SLO | Service | Objective | Attainment | Met | Budget spent | Bad events | Allowed | Coverage |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, s := range r.SLOs {
		met := "yes"
		if s.Attainment == nil {
			met = "–"
		} else if !s.Met {
			met = "**no**"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", mdCell(s.Key), mdCell(s.Service), Percent(s.Objective),
			OptPercent(s.Attainment), met, Percent(s.BudgetSpentRatio), Count(s.BudgetSpent), Count(s.BudgetAllowed), Percent(s.Coverage))
	}
	b.WriteString("\n## Budget spent by incidents and deploys\n\n")
	listed := false
	for _, s := range r.SLOs {
		if len(s.ByIncident)+len(s.ByDeploy) == 0 {
			continue
		}
		listed = true
		fmt.Fprintf(&b, "### %s\n\n| Cause | From | To | Bad events | Share of budget |\n|---|---|---|---|---|\n", mdCell(s.Key))
		for _, sp := range append(append([]Spend{}, s.ByIncident...), s.ByDeploy...) {
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", mdCell(sp.Ref), stamp(sp.From), stamp(sp.To), Count(sp.Bad), Percent(sp.Share))
		}
		b.WriteString("\n")
	}
	if !listed {
		b.WriteString("No incident or deploy in the period.\n\n")
	}
	fmt.Fprintf(&b, "## Incidents\n\n%d incidents. Time to detect: mean %s, median %s, max %s. Time to repair: mean %s, median %s, max %s.\n\n",
		len(r.Incidents), Seconds(r.TimeToDetect.Mean), Seconds(r.TimeToDetect.Median), Seconds(r.TimeToDetect.Max),
		Seconds(r.TimeToRepair.Mean), Seconds(r.TimeToRepair.Median), Seconds(r.TimeToRepair.Max))
	if len(r.Incidents) > 0 {
		b.WriteString("| # | Service | Title | First bad | Detected | Resolved | TTD | TTR |\n|---|---|---|---|---|---|---|---|\n")
		for _, i := range r.Incidents {
			ttr := "open"
			if i.TimeToRepair != nil {
				ttr = Seconds(*i.TimeToRepair)
			}
			fmt.Fprintf(&b, "| %d | %s | %s | %s | %s | %s | %s | %s |\n", i.ID, mdCell(i.Service), mdCell(i.Title), stamp(i.FirstBadAt),
				stamp(i.DetectedAt), stamp(i.ResolvedAt), Seconds(i.TimeToDetect), ttr)
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "## Deploys\n\n%d deploys.\n\n", len(r.Deploys))
	if len(r.Deploys) > 0 {
		b.WriteString("| Time | Service | Version | Verdict |\n|---|---|---|---|\n")
		for _, d := range r.Deploys {
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", stamp(d.At), mdCell(d.Service), mdCell(d.Version), mdCell(d.Verdict))
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "## Gate verdicts\n\n%d evaluations%s.\n\n", len(r.Gates.Evaluations), byState(r.Gates.ByState))
	for _, g := range r.Gates.Evaluations {
		fmt.Fprintf(&b, "- %s %s %s %s: %s\n", stamp(g.At), mdCell(g.Gate), mdCell(g.Service), mdCell(g.Version), g.State)
	}
	fmt.Fprintf(&b, "\n## Playbook runs\n\n%d runs%s.\n\n", len(r.Playbooks.Runs), byState(r.Playbooks.ByState))
	for _, p := range r.Playbooks.Runs {
		fmt.Fprintf(&b, "- %s %s (%s): %s\n", stamp(p.At), mdCell(p.Playbook), mdCell(p.Service), p.State)
	}
	b.WriteString("\n## At risk next period\n\n")
	if len(r.AtRisk) == 0 {
		b.WriteString("No SLO is at risk: every budget is above a quarter, burns no faster than it is granted and is not projected to run out.\n")
	}
	for _, k := range r.AtRisk {
		fmt.Fprintf(&b, "- **%s** (%s): %s\n", mdCell(k.Key), mdCell(k.Service), k.Reason)
	}
	if len(r.Notes) > 0 {
		b.WriteString("\n## Notes\n\n")
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// byState writes ": 3 passed, 1 failed" in a stable order.
func byState(m map[string]int) string {
	if len(m) == 0 {
		return ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%d %s", m[k], k)
	}
	return ": " + strings.Join(parts, ", ")
}
