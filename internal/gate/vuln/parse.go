package vuln

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/qsp-dev/qsp/internal/jsonpos"
)

// MaxReportBytes caps the size of one report.
const MaxReportBytes = 256 << 20

// ErrFormat is wrapped by every error about a report's content.
var ErrFormat = errors.New("malformed vulnerability report")

// Report is one parsed report file.
type Report struct {
	// Format is "trivy" (SchemaVersion 2), "trivy-legacy" (the older
	// top-level array) or "grype".
	Format   string    `json:"format"`
	Source   string    `json:"source"`
	Findings []Finding `json:"findings"`
}

// Parse reads one report, detecting its format. source names the report
// (its path) in findings and errors. Anything that is not a complete
// Trivy or Grype JSON report is an error naming the file and the problem,
// never an empty report.
func Parse(source string, data []byte) (Report, error) {
	rep, err := parse(source, data)
	if err != nil {
		return Report{}, fmt.Errorf("report %s: %w", source, err)
	}
	return rep, nil
}

func parse(source string, data []byte) (Report, error) {
	if len(data) > MaxReportBytes {
		return Report{}, fmt.Errorf("%w: larger than %d bytes", ErrFormat, MaxReportBytes)
	}
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return Report{}, fmt.Errorf("%w: empty file", ErrFormat)
	}
	switch trimmed[0] {
	case '[':
		var results []trivyResult
		if err := decode(data, &results); err != nil {
			return Report{}, err
		}
		rep := Report{Format: "trivy-legacy", Source: source}
		return rep, trivyFindings(&rep, results, "")
	case '{':
	default:
		return Report{}, fmt.Errorf("%w: not a JSON object or array (Trivy or Grype JSON expected)", ErrFormat)
	}
	var top map[string]json.RawMessage
	if err := decode(data, &top); err != nil {
		return Report{}, err
	}
	switch {
	case top["SchemaVersion"] != nil:
		var doc trivyDoc
		if err := decode(data, &doc); err != nil {
			return Report{}, err
		}
		if doc.SchemaVersion != 2 {
			return Report{}, fmt.Errorf("%w: Trivy SchemaVersion %d is not supported (2 is)", ErrFormat, doc.SchemaVersion)
		}
		rep := Report{Format: "trivy", Source: source}
		return rep, trivyFindings(&rep, doc.Results, doc.ArtifactName)
	case top["matches"] != nil:
		var doc grypeDoc
		if err := decode(data, &doc); err != nil {
			return Report{}, err
		}
		if doc.Matches == nil {
			return Report{}, fmt.Errorf(`%w: Grype "matches" is null`, ErrFormat)
		}
		rep := Report{Format: "grype", Source: source}
		return rep, grypeFindings(&rep, doc)
	}
	keys := make([]string, 0, len(top))
	for k := range top {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if len(keys) > 8 {
		keys = append(keys[:8], "...")
	}
	return Report{}, fmt.Errorf(`%w: neither Trivy JSON ("SchemaVersion", "Results") nor Grype JSON ("matches"); top-level keys: %s`,
		ErrFormat, strings.Join(keys, ", "))
}

// decode unmarshals one JSON document, reporting where it went wrong.
func decode(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return fmt.Errorf("%w: %s: %v", ErrFormat, jsonpos.At(data, se.Offset-1), err)
		case errors.As(err, &te):
			return fmt.Errorf("%w: %s: field %s: expected %s, got JSON %s", ErrFormat, jsonpos.At(data, te.Offset), te.Field, te.Type, te.Value)
		case errors.Is(err, io.ErrUnexpectedEOF):
			return fmt.Errorf("%w: %s: unexpected end of JSON (truncated file?)", ErrFormat, jsonpos.At(data, int64(len(data))))
		}
		return fmt.Errorf("%w: %v", ErrFormat, err)
	}
	if _, err := dec.Token(); err == nil {
		return fmt.Errorf("%w: %s: data after the JSON document", ErrFormat, jsonpos.At(data, dec.InputOffset()))
	}
	return nil
}

// Trivy's JSON, the fields QSP reads.
type trivyDoc struct {
	SchemaVersion int           `json:"SchemaVersion"`
	ArtifactName  string        `json:"ArtifactName"`
	Results       []trivyResult `json:"Results"`
}

type trivyResult struct {
	Target          *string     `json:"Target"`
	Class           string      `json:"Class"`
	Type            string      `json:"Type"`
	Vulnerabilities []trivyVuln `json:"Vulnerabilities"`
}

type trivyVuln struct {
	VulnerabilityID  string         `json:"VulnerabilityID"`
	PkgName          string         `json:"PkgName"`
	InstalledVersion string         `json:"InstalledVersion"`
	FixedVersion     string         `json:"FixedVersion"`
	Status           string         `json:"Status"`
	Severity         string         `json:"Severity"`
	SeveritySource   string         `json:"SeveritySource"`
	VendorSeverity   map[string]int `json:"VendorSeverity"`
	PublishedDate    string         `json:"PublishedDate"`
}

func trivyFindings(rep *Report, results []trivyResult, artifact string) error {
	for i, r := range results {
		if r.Target == nil {
			return fmt.Errorf("%w: Results[%d]: no Target", ErrFormat, i)
		}
		for j, v := range r.Vulnerabilities {
			where := fmt.Sprintf("Results[%d] (%s) Vulnerabilities[%d]", i, *r.Target, j)
			if v.VulnerabilityID == "" || v.PkgName == "" {
				return fmt.Errorf("%w: %s: VulnerabilityID and PkgName are required", ErrFormat, where)
			}
			sev, src, err := trivySeverity(v)
			if err != nil {
				return fmt.Errorf("%w: %s (%s): %v", ErrFormat, where, v.VulnerabilityID, err)
			}
			pub, err := parseDate(v.PublishedDate)
			if err != nil {
				return fmt.Errorf("%w: %s (%s): PublishedDate: %v", ErrFormat, where, v.VulnerabilityID, err)
			}
			target := *r.Target
			if target == "" {
				target = artifact
			}
			rep.Findings = append(rep.Findings, Finding{
				ID: v.VulnerabilityID, Package: v.PkgName, InstalledVersion: v.InstalledVersion,
				FixedVersion: v.FixedVersion, PackageType: r.Type,
				Severity: sev, SeveritySource: src,
				// Status "fixed" without a version still means a fix
				// exists upstream.
				FixAvailable: v.FixedVersion != "" || v.Status == "fixed",
				Published:    pub, Scanner: "trivy", Source: rep.Source, Target: target,
			})
		}
	}
	return nil
}

// trivySeverity applies the package's severity rule to a Trivy
// vulnerability.
func trivySeverity(v trivyVuln) (Severity, string, error) {
	sev, err := ParseSeverity(v.Severity)
	if err != nil {
		return Unknown, "", err
	}
	if sev != Unknown {
		return sev, "severity", nil
	}
	for vendor, r := range v.VendorSeverity {
		if r < 0 || r > 4 {
			return Unknown, "", fmt.Errorf("VendorSeverity %s: rating %d is not 0-4", vendor, r)
		}
	}
	if r, ok := v.VendorSeverity[v.SeveritySource]; ok && r > 0 && v.SeveritySource != "" {
		return Severity(r), "vendor:" + v.SeveritySource, nil
	}
	if r := v.VendorSeverity["nvd"]; r > 0 {
		return Severity(r), "vendor:nvd", nil
	}
	best, bestVendor := 0, ""
	vendors := make([]string, 0, len(v.VendorSeverity))
	for vendor := range v.VendorSeverity {
		vendors = append(vendors, vendor)
	}
	sort.Strings(vendors)
	for _, vendor := range vendors {
		if r := v.VendorSeverity[vendor]; r > best {
			best, bestVendor = r, vendor
		}
	}
	if best > 0 {
		return Severity(best), "vendor-highest:" + bestVendor, nil
	}
	return Unknown, "none", nil
}

func parseDate(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time", s)
	}
	return t.UTC(), nil
}

// Grype's JSON, the fields QSP reads.
type grypeDoc struct {
	Matches []grypeMatch `json:"matches"`
	Source  *struct {
		Target json.RawMessage `json:"target"`
	} `json:"source"`
}

type grypeMatch struct {
	Vulnerability *grypeVuln  `json:"vulnerability"`
	Related       []grypeVuln `json:"relatedVulnerabilities"`
	Artifact      *struct {
		Name      string `json:"name"`
		Version   string `json:"version"`
		Type      string `json:"type"`
		Locations []struct {
			Path string `json:"path"`
		} `json:"locations"`
	} `json:"artifact"`
}

type grypeVuln struct {
	ID         string `json:"id"`
	DataSource string `json:"dataSource"`
	Namespace  string `json:"namespace"`
	Severity   string `json:"severity"`
	Fix        *struct {
		Versions []string `json:"versions"`
		State    string   `json:"state"`
	} `json:"fix"`
}

func grypeFindings(rep *Report, doc grypeDoc) error {
	for i, m := range doc.Matches {
		where := fmt.Sprintf("matches[%d]", i)
		if m.Vulnerability == nil || m.Vulnerability.ID == "" {
			return fmt.Errorf("%w: %s: no vulnerability id", ErrFormat, where)
		}
		v := m.Vulnerability
		if m.Artifact == nil || m.Artifact.Name == "" {
			return fmt.Errorf("%w: %s (%s): no artifact name", ErrFormat, where, v.ID)
		}
		sev, src, err := grypeSeverity(*v, m.Related)
		if err != nil {
			return fmt.Errorf("%w: %s (%s): %v", ErrFormat, where, v.ID, err)
		}
		var aliases []string
		for _, r := range m.Related {
			if r.ID != "" && r.ID != v.ID && !slices.Contains(aliases, r.ID) {
				aliases = append(aliases, r.ID)
			}
		}
		fixed, fixable := "", false
		if v.Fix != nil {
			switch v.Fix.State {
			case "fixed":
				fixable = true
				fixed = strings.Join(v.Fix.Versions, ", ")
			case "not-fixed", "wont-fix", "unknown", "":
			default:
				return fmt.Errorf("%w: %s (%s): unknown fix state %q", ErrFormat, where, v.ID, v.Fix.State)
			}
		}
		target := ""
		if len(m.Artifact.Locations) > 0 {
			target = m.Artifact.Locations[0].Path
		}
		rep.Findings = append(rep.Findings, Finding{
			ID: v.ID, Aliases: aliases, Package: m.Artifact.Name, InstalledVersion: m.Artifact.Version,
			FixedVersion: fixed, PackageType: m.Artifact.Type, Severity: sev, SeveritySource: src,
			FixAvailable: fixable, Scanner: "grype", Source: rep.Source, Target: target,
		})
	}
	return nil
}

// grypeSeverity applies the package's severity rule to a Grype match.
func grypeSeverity(v grypeVuln, related []grypeVuln) (Severity, string, error) {
	sev, err := ParseSeverity(v.Severity)
	if err != nil {
		return Unknown, "", err
	}
	if sev != Unknown {
		return sev, "severity", nil
	}
	best, bestSrc := Unknown, ""
	for _, r := range related {
		rs, err := ParseSeverity(r.Severity)
		if err != nil {
			return Unknown, "", fmt.Errorf("related %s: %v", r.ID, err)
		}
		if strings.HasPrefix(r.Namespace, "nvd") && rs != Unknown {
			return rs, "related:nvd", nil
		}
		if rs > best {
			best, bestSrc = rs, "related-highest:"+r.Namespace
		}
	}
	if best != Unknown {
		return best, bestSrc, nil
	}
	return Unknown, "none", nil
}
