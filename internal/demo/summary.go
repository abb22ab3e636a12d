package demo

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteTable prints the summary: one row per scenario run with when it
// started, when QSP detected it, the time to detect and the severity (all
// in simulated time), and what QSP did; then every expectation that was
// not met or could not be checked.
func (s *Summary) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tSTARTED\tDETECTED\tTTD\tSEVERITY\tWHAT QSP DID")
	for _, r := range s.Results {
		detected, ttd, sev := "-", "-", "-"
		if r.Detected {
			detected, ttd, sev = r.DetectedAt.Format("15:04"), formatDuration(r.TTD), r.Severity
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Scenario, r.Started.Format("Jan 2 15:04"), detected, ttd, sev, r.Did())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range s.Results {
		for _, p := range r.Problems {
			fmt.Fprintf(w, "  %s: NOT MET: %s\n", r.Scenario, p)
		}
		for _, m := range r.Missing {
			fmt.Fprintf(w, "  %s: not checked: %s\n", r.Scenario, m)
		}
	}
	_, err := fmt.Fprintf(w, "%d samples sent through remote_write, %d lost (collector down or refused); simulated %s at %gx\n",
		s.SamplesSent, s.SamplesLost, formatDuration(s.End.Sub(s.Start)), s.Speed)
	return err
}

// Did says in one line what QSP did during the scenario.
func (r *Result) Did() string {
	var parts []string
	if r.Detected {
		what := "paged"
		switch r.Severity {
		case "ticket":
			what = "opened a ticket"
		case SeverityNoData:
			what = "raised telemetry-missing"
		}
		parts = append(parts, fmt.Sprintf("%s on %s", what, r.SLO))
	} else {
		parts = append(parts, "did not detect it")
	}
	if n := len(r.Alerts) - 1; n > 0 {
		parts = append(parts, fmt.Sprintf("%d more alerts", n))
	}
	for _, id := range r.Incidents {
		parts = append(parts, fmt.Sprintf("incident #%d", id))
	}
	if g := r.Gate; g != nil {
		if g.Err != "" {
			parts = append(parts, fmt.Sprintf("gate %s: error", g.Name))
		} else {
			parts = append(parts, fmt.Sprintf("gate %s: %s (canary %s)", g.Name, g.State, g.Canary))
		}
	}
	for _, p := range r.Playbooks {
		parts = append(parts, fmt.Sprintf("playbook %s: %s", p.Playbook, p.State))
	}
	for _, c := range r.Calls {
		parts = append(parts, fmt.Sprintf("%s %s -> %d", c.Method, c.Path, c.Status))
	}
	if r.Restarts > 0 {
		parts = append(parts, fmt.Sprintf("workers restarted %dx", r.Restarts))
	}
	if r.NoDataChecks > 0 && len(r.NotNoData) == 0 {
		parts = append(parts, "every SLO no_data while telemetry was lost, never ok")
	}
	if r.EndedBy != "" && !r.FaultEnded.IsZero() {
		parts = append(parts, fmt.Sprintf("fault ended by %s after %s", r.EndedBy, formatDuration(r.FaultEnded.Sub(r.Started))))
	}
	return strings.Join(parts, "; ")
}
