package report

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/qsp-dev/qsp/internal/alert"
	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/store"
)

// Postmortem is the draft of an incident's postmortem: what QSP knows,
// and the questions only people can answer.
type Postmortem struct {
	Incident alert.Incident `json:"incident"`
	// SLIs are the SLOs of the incident's alerts during the incident.
	SLIs []PostmortemSLI `json:"slis"`
	// DeployBefore is the service's last deploy before the first bad
	// minute, if any.
	DeployBefore *store.Deploy `json:"deployBefore,omitempty"`
	// Actions are the playbook runs of the service during the incident.
	Actions []Action `json:"actions"`
	// Questions are the open questions of the draft.
	Questions   []string  `json:"questions"`
	GeneratedAt time.Time `json:"generatedAt"`
}

// PostmortemSLI is one SLO during an incident.
type PostmortemSLI struct {
	Key       string  `json:"key"`
	Objective float64 `json:"objective"`
	// SLI is the good ratio from the first bad minute to the resolution
	// (or now); nil without events.
	SLI   *float64 `json:"sli"`
	Good  float64  `json:"good"`
	Total float64  `json:"total"`
	Bad   float64  `json:"bad"`
	// BudgetShare is Bad as a share of the budget of the SLO's current
	// window (its allowed bad events now); 0 when unknown.
	BudgetShare float64 `json:"budgetShare"`
}

// Action is a playbook run during an incident, with its reasons.
type Action struct {
	ID       string    `json:"id"`
	Playbook string    `json:"playbook"`
	State    string    `json:"state"`
	At       time.Time `json:"at"`
	Trigger  string    `json:"trigger,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	// Decisions are the policy decisions: "allow: message".
	Decisions []string `json:"decisions,omitempty"`
}

// runData is what a postmortem reads of a stored playbook run (the
// playbook package's Run as JSON).
type runData struct {
	Reason  string `json:"reason"`
	Trigger struct {
		Reason string `json:"reason"`
	} `json:"trigger"`
	Decisions []struct {
		Action  string `json:"action"`
		Result  string `json:"result"`
		Reasons []struct {
			Policy  string `json:"policy"`
			Message string `json:"message"`
		} `json:"reasons"`
	} `json:"decisions"`
}

// Postmortem builds the draft of inc.
func (b *Builder) Postmortem(ctx context.Context, inc alert.Incident) (*Postmortem, error) {
	now := b.opts.Now()
	end := inc.ResolvedAt
	if end.IsZero() {
		end = now
	}
	pm := &Postmortem{Incident: inc, SLIs: []PostmortemSLI{}, Actions: []Action{}, GeneratedAt: now}
	snap := b.opts.Snapshots.Snapshot()
	seen := map[string]bool{}
	for _, a := range inc.Alerts {
		if a.Key == "" || seen[a.Key] {
			continue
		}
		seen[a.Key] = true
		pc, err := b.opts.Counter.Counts(ctx, a.Key, inc.FirstBadAt, end)
		if errors.Is(err, engine.ErrUnknownSLO) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("postmortem: %w", err)
		}
		s := PostmortemSLI{Key: a.Key, Good: pc.Counts.Good, Total: pc.Counts.Total, Bad: pc.Counts.Bad()}
		if r, ok := pc.Counts.Ratio(); ok {
			s.SLI = &r
		}
		if snap != nil {
			if st := snap.Status(a.Key); st != nil {
				s.Objective = st.Objective
				if st.Budget.Allowed > 0 {
					s.BudgetShare = s.Bad / st.Budget.Allowed
				}
			}
		}
		pm.SLIs = append(pm.SLIs, s)
	}
	if inc.Service != "" {
		deps, _, err := b.opts.Records.Deploys(ctx, store.DeployFilter{Service: inc.Service, To: inc.FirstBadAt.Add(time.Millisecond), Limit: 1})
		if err != nil {
			return nil, fmt.Errorf("postmortem: %w", err)
		}
		if len(deps) > 0 {
			pm.DeployBefore = &deps[0]
		}
		runs, _, err := b.opts.Records.PlaybookRuns(ctx, store.PlaybookRunFilter{Service: inc.Service, From: inc.FirstBadAt, To: end.Add(time.Minute), Limit: 100})
		if err != nil {
			return nil, fmt.Errorf("postmortem: %w", err)
		}
		for _, r := range slices.Backward(runs) {
			act := Action{ID: r.ID, Playbook: r.Playbook, State: r.State, At: r.CreatedAt}
			var d runData
			if len(r.Data) > 0 && json.Unmarshal(r.Data, &d) == nil {
				act.Trigger, act.Reason = d.Trigger.Reason, d.Reason
				for _, dec := range d.Decisions {
					var msgs []string
					for _, rs := range dec.Reasons {
						msgs = append(msgs, rs.Policy+": "+rs.Message)
					}
					act.Decisions = append(act.Decisions, strings.TrimSpace(fmt.Sprintf("%s %s %s", dec.Action, dec.Result, strings.Join(msgs, "; "))))
				}
			}
			pm.Actions = append(pm.Actions, act)
		}
	}
	pm.Questions = questions(pm)
	return pm, nil
}

// questions are what the data cannot say.
func questions(pm *Postmortem) []string {
	inc := pm.Incident
	q := []string{"What was the root cause, and why did it happen now?"}
	if pm.DeployBefore != nil {
		q = append(q, fmt.Sprintf("Did the deploy of %s %s at %s cause it? If so, why did the gate (%s) not stop it?",
			pm.DeployBefore.Service, pm.DeployBefore.Version, stamp(pm.DeployBefore.At), orNone(pm.DeployBefore.Verdict)))
	} else {
		q = append(q, "No deploy came before it: what changed (configuration, traffic, a dependency)?")
	}
	if inc.TimeToDetect > 300 {
		q = append(q, fmt.Sprintf("Detection took %s: would a faster alert window or another SLI have caught it sooner?", Seconds(inc.TimeToDetect)))
	}
	if inc.AckedAt.IsZero() {
		q = append(q, "Nobody acknowledged the page: did it reach the on-call?")
	}
	if len(pm.Actions) == 0 {
		q = append(q, "No playbook ran: could a guarded playbook have mitigated it?")
	}
	q = append(q, "What will keep it from happening again, who owns each follow-up, and by when?")
	return q
}

func orNone(s string) string {
	if s == "" {
		return "no verdict"
	}
	return s
}

// Markdown writes the draft as Markdown.
func (pm *Postmortem) Markdown(w io.Writer) error {
	inc := pm.Incident
	var b strings.Builder
	fmt.Fprintf(&b, "# Postmortem draft: incident %d — %s\n\n", inc.ID, inc.Title)
	fmt.Fprintf(&b, "*Drafted by QSP on %s from its records; edit before you share it.*\n\n", stamp(pm.GeneratedAt))
	fmt.Fprintf(&b, "- Service: %s\n- Severity: %s\n- State: %s\n", orSource(inc.Service), inc.Severity, inc.State)
	fmt.Fprintf(&b, "- First bad minute: %s\n- Detected (paged): %s\n", stamp(inc.FirstBadAt), stamp(inc.DetectedAt))
	if !inc.AckedAt.IsZero() {
		fmt.Fprintf(&b, "- Acknowledged: %s by %s\n", stamp(inc.AckedAt), inc.AckedBy)
	}
	fmt.Fprintf(&b, "- Resolved: %s\n", stamp(inc.ResolvedAt))
	ttr := "still open"
	if inc.TimeToRepair != nil {
		ttr = Seconds(*inc.TimeToRepair)
	}
	fmt.Fprintf(&b, "- Time to detect (MTTD): %s\n- Time to repair (MTTR): %s\n", Seconds(inc.TimeToDetect), ttr)
	if inc.TimeToAcknowledge != nil {
		fmt.Fprintf(&b, "- Time to acknowledge: %s\n", Seconds(*inc.TimeToAcknowledge))
	}

	b.WriteString("\n## Summary\n\n_What happened, in two sentences, for readers outside the team._\n\n")

	b.WriteString("## Deploy before it\n\n")
	if d := pm.DeployBefore; d != nil {
		fmt.Fprintf(&b, "%s %s at %s (%s before the first bad minute)", d.Service, d.Version, stamp(d.At), Seconds(inc.FirstBadAt.Sub(d.At).Seconds()))
		if d.Verdict != "" {
			fmt.Fprintf(&b, ", gate %s: %s", d.Gate, d.Verdict)
		}
		b.WriteString(".\n\n")
	} else {
		b.WriteString("No deploy of the service before the first bad minute.\n\n")
	}

	b.WriteString("## SLIs and budget impact\n\n")
	if len(pm.SLIs) == 0 {
		b.WriteString("No SLO alert in this incident.\n\n")
	} else {
		b.WriteString("| SLO | Objective | SLI during the incident | Bad events | Share of the window's budget |\n|---|---|---|---|---|\n")
		for _, s := range pm.SLIs {
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", mdCell(s.Key), Percent(s.Objective), OptPercent(s.SLI), Count(s.Bad), Percent(s.BudgetShare))
		}
		b.WriteString("\n")
	}

	b.WriteString("## Timeline (UTC)\n\n")
	for _, e := range inc.Timeline {
		line := fmt.Sprintf("- %s **%s**", e.At.UTC().Format("2006-01-02 15:04:05"), strings.ReplaceAll(e.Kind, "_", " "))
		if e.Key != "" {
			line += " " + e.Key
		}
		if e.Severity != "" {
			line += " (" + e.Severity + ")"
		}
		if e.By != "" {
			line += " by " + e.By
		}
		if e.Detail != "" {
			line += ": " + strings.ReplaceAll(e.Detail, "\n", " ")
		}
		b.WriteString(line + "\n")
	}
	b.WriteString("\n## Alerts\n\n")
	for _, a := range inc.Alerts {
		fmt.Fprintf(&b, "- %s %s (%s): fired %s, %s", a.Alert, a.Key, a.Severity, stamp(a.FiredAt), a.State)
		if !a.ResolvedAt.IsZero() {
			fmt.Fprintf(&b, " %s", stamp(a.ResolvedAt))
		}
		b.WriteString("\n")
	}
	b.WriteString("\n## Actions\n\n")
	if len(pm.Actions) == 0 {
		b.WriteString("No playbook ran during the incident.\n")
	}
	for _, a := range pm.Actions {
		fmt.Fprintf(&b, "- %s playbook **%s** (run %s): %s", stamp(a.At), a.Playbook, a.ID, a.State)
		if a.Reason != "" {
			fmt.Fprintf(&b, " — %s", a.Reason)
		}
		b.WriteString("\n")
		if a.Trigger != "" {
			fmt.Fprintf(&b, "  - trigger: %s\n", a.Trigger)
		}
		for _, d := range a.Decisions {
			fmt.Fprintf(&b, "  - policy: %s\n", d)
		}
	}
	b.WriteString("\n## Open questions\n\n")
	for _, q := range pm.Questions {
		fmt.Fprintf(&b, "- [ ] %s\n", q)
	}
	b.WriteString("\n## Follow-ups\n\n| Action | Owner | Due |\n|---|---|---|\n| | | |\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func orSource(service string) string {
	if service == "" {
		return "(the telemetry source)"
	}
	return service
}
