package gate

import (
	"cmp"
	"encoding/xml"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/qsp-dev/qsp/internal/gate/canary"
	"github.com/qsp-dev/qsp/internal/policy"
	"github.com/qsp-dev/qsp/internal/spec"
)

// JUnit XML, the report format CI systems (GitLab, Jenkins, GitHub
// actions) render: the schema Jenkins and Ant use, with testsuites at the
// root.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Time       string          `xml:"time,attr"`
	Timestamp  string          `xml:"timestamp,attr"`
	Properties []junitProperty `xml:"properties>property"`
	Cases      []junitCase     `xml:"testcase"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	ClassName string        `xml:"classname,attr"`
	Name      string        `xml:"name,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitProblem `xml:"failure,omitempty"`
	Error     *junitProblem `xml:"error,omitempty"`
	Skipped   *junitProblem `xml:"skipped,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr,omitempty"`
	Text    string `xml:",chardata"`
}

// WriteJUnit writes evaluations as JUnit XML: one testsuite per
// evaluation (gate), one testcase per check — budget per SLO, security
// per severity (and age), canary per metric (and verdict), policy per
// policy consulted — with failures carrying the reasons, and an error
// testcase for every check that could not run.
func WriteJUnit(w io.Writer, evs ...*Evaluation) error {
	root := junitSuites{Name: "qsp gate"}
	var total time.Duration
	for _, ev := range evs {
		s := junitSuiteOf(ev)
		root.Tests += s.Tests
		root.Failures += s.Failures
		root.Errors += s.Errors
		root.Skipped += s.Skipped
		total += ev.duration()
		root.Suites = append(root.Suites, s)
	}
	root.Time = seconds(total)
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(root); err != nil {
		return fmt.Errorf("write junit: %w", err)
	}
	_, err := io.WriteString(w, "\n")
	return err
}

func (e *Evaluation) duration() time.Duration {
	if e.FinishedAt.IsZero() {
		return e.UpdatedAt.Sub(e.CreatedAt)
	}
	return e.FinishedAt.Sub(e.CreatedAt)
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()) }

func junitSuiteOf(ev *Evaluation) junitSuite {
	s := junitSuite{
		Name: "gate/" + ev.Gate, Time: seconds(ev.duration()), Timestamp: ev.CreatedAt.UTC().Format("2006-01-02T15:04:05"),
		Properties: []junitProperty{
			{"evaluation", ev.ID}, {"service", ev.Service}, {"state", string(ev.State)},
			{"change.kind", ev.Change.Kind}, {"change.version", ev.Change.Version}, {"summary", ev.Summary},
		},
	}
	if ev.Decision != nil {
		s.Properties = append(s.Properties, junitProperty{"decision", ev.Decision.ID})
	}
	class := func(check string) string { return ev.Gate + "." + check }
	add := func(c junitCase) {
		c.Time = "0"
		s.Cases = append(s.Cases, c)
	}
	reasons := ev.Reasons
	policyReasons := func(pol, level string, match func(string) bool) []string {
		var out []string
		for _, r := range reasons {
			if r.Check == CheckPolicy && r.Source == pol && r.Level == level && match(r.Message) {
				out = append(out, r.Message)
			}
		}
		return out
	}

	if b := ev.Budget; b != nil {
		for _, slo := range b.SLOs {
			c := junitCase{ClassName: class(CheckBudget), Name: slo.Name, SystemOut: budgetFact(slo)}
			mentions := func(m string) bool { return strings.Contains(m, "SLO "+slo.Name+" ") }
			if denies := policyReasons("error-budget", policy.LevelDeny, mentions); len(denies) > 0 {
				c.Failure = &junitProblem{Message: denies[0], Type: policy.LevelDeny, Text: strings.Join(denies, "\n")}
			} else if slo.Missing {
				c.Skipped = &junitProblem{Message: "not evaluated yet"}
			}
			if warns := policyReasons("error-budget", policy.LevelWarn, mentions); len(warns) > 0 {
				c.SystemOut += "\n" + strings.Join(warns, "\n")
			}
			add(c)
		}
	}
	if sec := ev.Security; sec != nil {
		for _, sev := range spec.Severities {
			n := sec.Counts[sev]
			c := junitCase{ClassName: class(CheckSecurity), Name: sev, SystemOut: fmt.Sprintf("%d %s findings", n, sev)}
			if most, ok := sec.MaxFindings[sev]; ok {
				c.SystemOut += fmt.Sprintf(", at most %d allowed", most)
				if n > most {
					msg := fmt.Sprintf("%d %s findings, at most %d allowed", n, sev, most)
					text := policyReasons("vulnerabilities", policy.LevelDeny, func(m string) bool { return strings.Contains(m, " "+sev+" finding") })
					c.Failure = &junitProblem{Message: msg, Type: policy.LevelDeny, Text: strings.Join(text, "\n")}
				}
			}
			add(c)
		}
		if sec.MaxAgeDays > 0 {
			c := junitCase{ClassName: class(CheckSecurity), Name: "age", SystemOut: fmt.Sprintf("%d findings older than %g days", sec.OverAge, sec.MaxAgeDays)}
			if sec.OverAge > 0 {
				text := policyReasons("vulnerabilities", policy.LevelDeny, func(m string) bool { return strings.Contains(m, "open for more than") })
				c.Failure = &junitProblem{Message: c.SystemOut, Type: policy.LevelDeny, Text: strings.Join(text, "\n")}
			}
			add(c)
		}
	}
	if k := ev.Canary; k != nil && k.Verdict != "" {
		if decisive := k.decisive(); decisive != nil {
			for _, m := range decisive.Metrics {
				c := junitCase{ClassName: class(CheckCanary), Name: m.Name, SystemOut: m.Explanation}
				switch m.Status {
				case canary.StatusFail:
					c.Failure = &junitProblem{Message: m.Explanation, Type: string(m.Status), Text: strings.Join(m.Failed, ", ")}
				case canary.StatusNoData, canary.StatusInconclusive:
					c.Skipped = &junitProblem{Message: cmp.Or(m.Reason, m.Explanation)}
				}
				add(c)
			}
		}
		c := junitCase{ClassName: class(CheckCanary), Name: "verdict", SystemOut: k.Explanation}
		switch k.Verdict {
		case canary.VerdictFail:
			c.Failure = &junitProblem{Message: k.Explanation, Type: string(k.Verdict)}
		case canary.VerdictMarginal, canary.VerdictInconclusive:
			c.Error = &junitProblem{Message: k.Explanation, Type: string(k.Verdict)}
		}
		add(c)
	}
	if d := ev.Decision; d != nil {
		for _, pol := range d.Policies {
			c := junitCase{ClassName: class(CheckPolicy), Name: pol}
			var denies, others []string
			for _, r := range d.Reasons {
				if r.Policy != pol {
					continue
				}
				if r.Level == policy.LevelDeny {
					denies = append(denies, r.Message)
				}
				others = append(others, r.String())
			}
			c.SystemOut = strings.Join(others, "\n")
			if len(denies) > 0 {
				c.Failure = &junitProblem{Message: denies[0], Type: policy.LevelDeny, Text: strings.Join(denies, "\n")}
			}
			add(c)
		}
	}
	for _, r := range reasons {
		if r.Level == LevelError {
			add(junitCase{ClassName: class(r.Check), Name: "error", Error: &junitProblem{Message: r.Message, Type: LevelError}})
		}
	}
	for _, c := range s.Cases {
		s.Tests++
		switch {
		case c.Failure != nil:
			s.Failures++
		case c.Error != nil:
			s.Errors++
		case c.Skipped != nil:
			s.Skipped++
		}
	}
	return s
}
