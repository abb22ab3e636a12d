package gate

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/qsp-dev/qsp/internal/gate/vuln"
	"github.com/qsp-dev/qsp/internal/policy"
	"github.com/qsp-dev/qsp/internal/spec"
)

// ErrNoReports: the gate has a security check and nothing to check.
var ErrNoReports = errors.New("no vulnerability reports: upload them (qsp gate --report FILE) or list them in spec.security.reports")

// securityStage parses the vulnerability reports, counts the findings by
// severity and ages them from when QSP first saw them. The
// vulnerabilities policy judges the counts and ages against the gate's
// thresholds.
type securityStage struct{}

func (securityStage) name() string { return stageSecurity }

func (securityStage) exec(ctx context.Context, x *run) error {
	sc := x.gate.Spec.Security
	reports, err := x.reports()
	if err != nil {
		return err
	}
	if len(reports) == 0 {
		// A rollback goes back to an image that was judged when it
		// shipped: demanding a fresh report would block the emergency
		// the rollback is for. It passes with a warning instead.
		if x.ev.Change.Kind == policy.ChangeRollback {
			x.addReason(CheckSecurity, LevelWarn, "", "no vulnerability report: a rollback is not blocked for lack of one; the image was judged when it first shipped")
			return nil
		}
		return ErrNoReports
	}
	res := &SecurityResult{
		Reports: []ReportSummary{}, MaxFindings: maps.Clone(sc.MaxFindings), AgeSeverity: sc.AgeSeverity,
		MaxAgeDays: sc.MaxAge.D().Hours() / 24, Findings: []Finding{},
	}
	if res.MaxFindings == nil {
		res.MaxFindings = map[string]int{}
	}
	var all [][]vuln.Finding
	for _, rep := range reports {
		parsed, err := vuln.Parse(rep.Name, rep.Content)
		if err != nil {
			return err // names the report and where it went wrong
		}
		res.Reports = append(res.Reports, ReportSummary{Name: rep.Name, Format: parsed.Format, Findings: len(parsed.Findings)})
		all = append(all, parsed.Findings)
	}
	sum := vuln.Count(slices.Concat(all...), vuln.Filter{OnlyFixable: sc.OnlyFixable, Ignore: sc.Ignore})
	now := x.ev.CreatedAt
	aged, err := x.r.ages(ctx, x.gate.Spec.Service, sum.Findings, now)
	if err != nil {
		return err
	}
	res.Counts, res.Total, res.Ignored, res.Unfixable = sum.BySeverity, sum.Total, sum.Ignored, sum.Unfixable
	// Most severe first, then oldest: the order the policy lists them in.
	slices.SortStableFunc(aged, func(a, b vuln.Aged) int {
		if a.Severity != b.Severity {
			return int(b.Severity) - int(a.Severity)
		}
		return int(b.Age - a.Age)
	})
	check := &policy.SecurityCheck{
		Counts: sum.BySeverity, MaxFindings: res.MaxFindings, MaxAgeDays: res.MaxAgeDays, AgeSeverity: sc.AgeSeverity,
		Findings: make([]policy.Finding, 0, len(aged)),
	}
	minAge := vuln.Unknown
	if sc.AgeSeverity != "" {
		if minAge, err = vuln.ParseSeverity(sc.AgeSeverity); err != nil {
			return fmt.Errorf("spec.security.ageSeverity: %w", err)
		}
	}
	if sc.MaxAge > 0 {
		res.OverAge = len(vuln.OlderThan(aged, minAge, sc.MaxAge.D()))
	}
	for i, a := range aged {
		days := a.Age.Hours() / 24
		check.Findings = append(check.Findings, policy.Finding{
			ID: a.CanonicalID(), Severity: a.Severity.String(), Package: a.Package, InstalledVersion: a.InstalledVersion,
			FixedVersion: a.FixedVersion, AgeDays: days,
		})
		if i >= x.r.opts.MaxListedFindings {
			res.Unlisted++
			continue
		}
		res.Findings = append(res.Findings, Finding{
			ID: a.CanonicalID(), Aliases: aliases(a.Finding), Severity: a.Severity.String(), SeveritySource: a.SeveritySource,
			Package: a.Package, InstalledVersion: a.InstalledVersion, FixedVersion: a.FixedVersion,
			Scanner: a.Scanner, Report: a.Source, FirstSeen: a.FirstSeen, AgeDays: days,
		})
	}
	x.ev.Security = res
	x.checks.Security = check
	for _, r := range res.Reports {
		x.addReason(CheckSecurity, LevelInfo, "", fmt.Sprintf("report %s (%s): %d findings", r.Name, r.Format, r.Findings))
	}
	x.addReason(CheckSecurity, LevelInfo, "", securityFact(res))
	return nil
}

// aliases lists the finding's other IDs: its own ID when the canonical ID
// is an alias (a GHSA advisory of a CVE), and its aliases but the
// canonical one.
func aliases(f vuln.Finding) []string {
	canon := f.CanonicalID()
	var out []string
	for _, a := range append([]string{f.ID}, f.Aliases...) {
		if a != canon && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// securityFact describes the counts against the thresholds.
func securityFact(res *SecurityResult) string {
	var parts []string
	for _, sev := range spec.Severities {
		n := res.Counts[sev]
		if most, ok := res.MaxFindings[sev]; ok {
			parts = append(parts, fmt.Sprintf("%s %d (at most %d)", sev, n, most))
		} else if n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", sev, n))
		}
	}
	msg := fmt.Sprintf("%d findings counted", res.Total)
	if len(parts) > 0 {
		msg += ": " + strings.Join(parts, ", ")
	}
	var dropped []string
	if res.Ignored > 0 {
		dropped = append(dropped, fmt.Sprintf("%d ignored", res.Ignored))
	}
	if res.Unfixable > 0 {
		dropped = append(dropped, fmt.Sprintf("%d without a fix left out", res.Unfixable))
	}
	if len(dropped) > 0 {
		msg += "; " + strings.Join(dropped, ", ")
	}
	if res.MaxAgeDays > 0 {
		scope := "of any severity"
		if res.AgeSeverity != "" {
			scope = "of severity " + res.AgeSeverity + " or worse"
		}
		msg += fmt.Sprintf("; %d %s open for more than %g days", res.OverAge, scope, res.MaxAgeDays)
	}
	return msg
}

// reports returns the uploaded reports followed by the gate's
// spec.security.reports that were not uploaded, read from disk. A
// missing file is an error naming it.
func (x *run) reports() ([]Report, error) {
	out := slices.Clone(x.req.Reports)
	for _, path := range x.gate.Spec.Security.Reports {
		if slices.ContainsFunc(out, func(r Report) bool { return r.Name == path }) {
			continue
		}
		data, err := x.r.opts.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("report %s (spec.security.reports): %w", path, err)
		}
		out = append(out, Report{Name: path, Content: data})
	}
	return out, nil
}

// ages looks up when each finding was first seen for service, in one
// store round trip, and returns the findings with their ages at now.
// First-seen keys are per service: a finding new to one service's image
// is new to its team, however long another service has carried it.
func (r *Runner) ages(ctx context.Context, service string, findings []vuln.Finding, now time.Time) ([]vuln.Aged, error) {
	keys := make([]string, len(findings))
	for i, f := range findings {
		keys[i] = firstSeenKey(service, f)
	}
	seen, err := r.opts.FirstSeen.FirstSeenAll(ctx, keys, now)
	if err != nil {
		return nil, err
	}
	return vuln.Ages(ctx, seenMap{service: service, seen: seen}, findings, now)
}

func firstSeenKey(service string, f vuln.Finding) string { return service + "|" + f.Key() }

// seenMap serves vuln.Ages from first-seen times fetched in advance.
type seenMap struct {
	service string
	seen    map[string]time.Time
}

func (m seenMap) FirstSeen(_ context.Context, key string, _ time.Time) (time.Time, error) {
	t, ok := m.seen[m.service+"|"+key]
	if !ok {
		return time.Time{}, fmt.Errorf("first seen %s: not fetched", key)
	}
	return t, nil
}
