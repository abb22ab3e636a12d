// Package vuln reads vulnerability reports of Trivy and Grype (their JSON
// formats) into one list of findings, and counts and ages them for the
// security gate. It sits between the report files CI produces and the
// gate runner: the runner reads the bytes and owns the first-seen store;
// this package only parses, normalises and counts.
//
// Severity rule. Reports disagree on severities, and Trivy's top-level
// Severity was briefly declared deprecated in favour of per-vendor ratings
// (Trivy issue 630, reverted in PR 637) so some reports carry only
// VendorSeverity. A finding's severity is the report's own top-level
// severity when it is present and not UNKNOWN. Otherwise it comes from the
// vendor ratings: the vendor named by SeveritySource, then nvd, then the
// highest rating of any vendor. Grype's "Negligible" counts as low, and an
// Unknown Grype severity falls back to its related vulnerabilities the
// same way (nvd first, then the highest). Finding.SeveritySource records
// which rule decided.
//
// Age rule. Published dates are often missing and say nothing about how
// long a team has known: ages are measured from when QSP first saw a
// finding, through the FirstSeen port. Published dates are kept for
// information only.
package vuln

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Severity of a finding, ordered: a larger value is more severe.
type Severity int

// Severities.
const (
	Unknown Severity = iota
	Low
	Medium
	High
	Critical
)

// Severities lists every severity, most severe first, as the gate
// reports them.
var Severities = []Severity{Critical, High, Medium, Low, Unknown}

// String returns the lower-case name used in specs ("critical").
func (s Severity) String() string {
	switch s {
	case Low:
		return "low"
	case Medium:
		return "medium"
	case High:
		return "high"
	case Critical:
		return "critical"
	}
	return "unknown"
}

// MarshalText implements encoding.TextMarshaler.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// ParseSeverity reads a severity name in any case, as the specs, Trivy
// ("HIGH") and Grype ("High", "Negligible") write them.
func ParseSeverity(name string) (Severity, error) {
	switch strings.ToLower(strings.TrimSpace(name)) {
	case "critical":
		return Critical, nil
	case "high":
		return High, nil
	case "medium", "moderate":
		return Medium, nil
	case "low", "negligible":
		return Low, nil
	case "unknown", "":
		return Unknown, nil
	}
	return Unknown, fmt.Errorf("unknown severity %q", name)
}

// Finding is one vulnerability in one installed package.
type Finding struct {
	// ID is the vulnerability ID (CVE-..., GHSA-...); Aliases are other
	// IDs the report relates to it.
	ID      string   `json:"id"`
	Aliases []string `json:"aliases,omitempty"`
	// Package, InstalledVersion and FixedVersion describe the package;
	// PackageType is the ecosystem (apk, deb, gomod, jar, ...) when known.
	Package          string   `json:"package"`
	InstalledVersion string   `json:"installedVersion"`
	FixedVersion     string   `json:"fixedVersion,omitempty"`
	PackageType      string   `json:"packageType,omitempty"`
	Severity         Severity `json:"severity"`
	// SeveritySource says which rule set the severity, e.g. "severity",
	// "vendor:nvd", "vendor-highest:redhat", "related:nvd".
	SeveritySource string `json:"severitySource"`
	FixAvailable   bool   `json:"fixAvailable"`
	// Published is when the vulnerability was published, zero when the
	// report does not say; informational only.
	Published time.Time `json:"published,omitzero"`
	// Scanner is "trivy" or "grype"; Source the report file; Target the
	// scanned artifact or file inside it.
	Scanner string `json:"scanner"`
	Source  string `json:"source"`
	Target  string `json:"target,omitempty"`
}

// CanonicalID is the ID findings are identified by: the first CVE among
// the ID and its aliases, so that a GHSA advisory Grype reports and the
// CVE Trivy reports for the same package count once; otherwise the ID.
func (f Finding) CanonicalID() string {
	if strings.HasPrefix(f.ID, "CVE-") {
		return f.ID
	}
	for _, a := range f.Aliases {
		if strings.HasPrefix(a, "CVE-") {
			return a
		}
	}
	return f.ID
}

// Key identifies a finding across reports and runs: canonical ID,
// package and installed version. It is the key of the first-seen store.
func (f Finding) Key() string {
	return f.CanonicalID() + "|" + f.Package + "|" + f.InstalledVersion
}

// Merge deduplicates findings by Key, in the order first met. When
// reports disagree, the merged finding keeps the highest severity, a fix
// when any report knows one, the earliest published date and the union of
// aliases.
func Merge(findings ...[]Finding) []Finding {
	var out []Finding
	index := map[string]int{}
	for _, list := range findings {
		for _, f := range list {
			k := f.Key()
			i, ok := index[k]
			if !ok {
				index[k] = len(out)
				f.Aliases = slices.Clone(f.Aliases)
				out = append(out, f)
				continue
			}
			m := &out[i]
			if f.Severity > m.Severity {
				m.Severity, m.SeveritySource = f.Severity, f.SeveritySource
			}
			if !m.FixAvailable && f.FixAvailable {
				m.FixAvailable, m.FixedVersion = true, f.FixedVersion
			}
			if !f.Published.IsZero() && (m.Published.IsZero() || f.Published.Before(m.Published)) {
				m.Published = f.Published
			}
			for _, a := range append([]string{f.ID}, f.Aliases...) {
				if a != m.ID && !slices.Contains(m.Aliases, a) {
					m.Aliases = append(m.Aliases, a)
				}
			}
		}
	}
	return out
}

// Filter selects the findings the gate judges.
type Filter struct {
	// OnlyFixable drops findings without a fixed version.
	OnlyFixable bool
	// Ignore lists vulnerability IDs accepted by the team; a finding is
	// ignored when its ID or any alias is listed (case-insensitive).
	Ignore []string
}

// Summary is the count of findings by severity after filtering.
type Summary struct {
	// BySeverity has every severity name as a key, zero included.
	BySeverity map[string]int `json:"bySeverity"`
	Total      int            `json:"total"`
	// Ignored and Unfixable count findings the filter dropped.
	Ignored   int `json:"ignored"`
	Unfixable int `json:"unfixable"`
	// Findings are the findings counted, most severe first.
	Findings []Finding `json:"findings"`
}

// Count deduplicates findings, applies the filter and counts by
// severity.
func Count(findings []Finding, f Filter) Summary {
	ignore := map[string]bool{}
	for _, id := range f.Ignore {
		ignore[strings.ToUpper(strings.TrimSpace(id))] = true
	}
	s := Summary{BySeverity: map[string]int{}}
	for _, sev := range Severities {
		s.BySeverity[sev.String()] = 0
	}
	for _, fd := range Merge(findings) {
		if ignored(fd, ignore) {
			s.Ignored++
			continue
		}
		if f.OnlyFixable && !fd.FixAvailable {
			s.Unfixable++
			continue
		}
		s.BySeverity[fd.Severity.String()]++
		s.Total++
		s.Findings = append(s.Findings, fd)
	}
	slices.SortStableFunc(s.Findings, func(a, b Finding) int { return int(b.Severity) - int(a.Severity) })
	return s
}

func ignored(f Finding, ignore map[string]bool) bool {
	if ignore[strings.ToUpper(f.ID)] {
		return true
	}
	for _, a := range f.Aliases {
		if ignore[strings.ToUpper(a)] {
			return true
		}
	}
	return false
}

// FirstSeen is the store of when QSP first saw each finding. FirstSeen
// returns the recorded time for key, recording now when the key is new.
// Implementations must be safe for concurrent use and durable: an age
// that restarts with every deploy would never fail the gate.
type FirstSeen interface {
	FirstSeen(ctx context.Context, key string, now time.Time) (time.Time, error)
}

// Aged is a finding with how long QSP has known it.
type Aged struct {
	Finding
	FirstSeen time.Time     `json:"firstSeen"`
	Age       time.Duration `json:"age"`
}

// Ages looks up (and records) the first-seen time of every finding and
// returns their ages at now, oldest first. A first-seen time in the
// future (clock skew) counts as age zero.
func Ages(ctx context.Context, store FirstSeen, findings []Finding, now time.Time) ([]Aged, error) {
	out := make([]Aged, 0, len(findings))
	for _, f := range findings {
		t, err := store.FirstSeen(ctx, f.Key(), now)
		if err != nil {
			return nil, fmt.Errorf("first seen %s: %w", f.Key(), err)
		}
		age := max(now.Sub(t), 0)
		out = append(out, Aged{Finding: f, FirstSeen: t, Age: age})
	}
	slices.SortStableFunc(out, func(a, b Aged) int { return int(b.Age - a.Age) })
	return out, nil
}

// OlderThan returns the aged findings of at least minSeverity whose age
// exceeds maxAge, oldest first.
func OlderThan(aged []Aged, minSeverity Severity, maxAge time.Duration) []Aged {
	var out []Aged
	for _, a := range aged {
		if a.Severity >= minSeverity && a.Age > maxAge {
			out = append(out, a)
		}
	}
	return out
}
