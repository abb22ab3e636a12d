package vuln

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func readReport(t *testing.T, name string) Report {
	t.Helper()
	path := filepath.Join("testdata", name)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Parse(path, data)
	if err != nil {
		t.Fatalf("parse %s: %v", name, err)
	}
	return rep
}

// counts is the expected count per severity, in the order critical,
// high, medium, low, unknown.
type counts [5]int

func summaryCounts(s Summary) counts {
	var c counts
	for i, sev := range Severities {
		c[i] = s.BySeverity[sev.String()]
	}
	return c
}

// The expected counts below were worked out by hand from the fixtures
// (see the comments in each case), not produced by the code under test.
func TestCountGolden(t *testing.T) {
	tests := []struct {
		name      string
		reports   []string
		filter    Filter
		format    string
		raw       int
		want      counts
		ignored   int
		unfixable int
	}{
		{
			// 13 vulnerabilities, CVE-2023-39325 x/net v0.15.0 twice
			// (api and worker) counts once: 12. Vendor-only severities:
			// musl via SeveritySource redhat (medium, not nvd's
			// critical), zlib 99992 via nvd (critical), zlib 99993 via
			// the highest vendor amazon (high), ncurses unknown.
			name: "trivy v2", reports: []string{"trivy-v2.json"}, format: "trivy", raw: 13,
			want: counts{2, 6, 3, 0, 1},
		},
		{
			name: "trivy v2 only fixable", reports: []string{"trivy-v2.json"}, filter: Filter{OnlyFixable: true},
			format: "trivy", raw: 13, want: counts{2, 5, 1, 0, 0}, unfixable: 4,
		},
		{
			name: "trivy v2 ignoring CVE-2023-39325", reports: []string{"trivy-v2.json"},
			filter: Filter{Ignore: []string{"cve-2023-39325"}}, format: "trivy", raw: 13,
			want: counts{2, 4, 3, 0, 1}, ignored: 2,
		},
		{
			name: "trivy legacy array", reports: []string{"trivy-legacy.json"}, format: "trivy-legacy", raw: 3,
			want: counts{0, 1, 1, 1, 0},
		},
		{
			// Negligible counts as low; Unknown falls back to the nvd
			// related rating (high) or the highest related (medium).
			name: "grype", reports: []string{"grype.json"}, format: "grype", raw: 8,
			want: counts{1, 3, 2, 1, 1},
		},
		{
			name: "grype only fixable", reports: []string{"grype.json"}, filter: Filter{OnlyFixable: true},
			format: "grype", raw: 8, want: counts{0, 2, 0, 0, 0}, unfixable: 6,
		},
		{
			// libcrypto3 CVE-2023-5363 and busybox CVE-2023-42363 are in
			// both reports: 12 + 8 - 2.
			name: "trivy and grype merged", reports: []string{"trivy-v2.json", "grype.json"}, raw: 21,
			want: counts{3, 8, 4, 1, 2},
		},
		{
			// The GHSA advisory Grype relates to CVE-2023-44487 is
			// ignored through its alias.
			name: "ignore by alias", reports: []string{"grype.json"}, filter: Filter{Ignore: []string{"CVE-2023-44487"}},
			format: "grype", raw: 8, want: counts{1, 2, 2, 1, 1}, ignored: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var all []Finding
			for _, r := range tt.reports {
				rep := readReport(t, r)
				if tt.format != "" && rep.Format != tt.format {
					t.Errorf("format %q, want %q", rep.Format, tt.format)
				}
				all = append(all, rep.Findings...)
			}
			if len(all) != tt.raw {
				t.Errorf("%d raw findings, want %d", len(all), tt.raw)
			}
			s := Count(all, tt.filter)
			if got := summaryCounts(s); got != tt.want {
				t.Errorf("counts (critical, high, medium, low, unknown) = %v, want %v", got, tt.want)
			}
			total := 0
			for _, c := range tt.want {
				total += c
			}
			if s.Total != total || len(s.Findings) != total || s.Ignored != tt.ignored || s.Unfixable != tt.unfixable {
				t.Errorf("total %d (%d findings), ignored %d, unfixable %d; want %d, %d, %d",
					s.Total, len(s.Findings), s.Ignored, s.Unfixable, total, tt.ignored, tt.unfixable)
			}
			for i := 1; i < len(s.Findings); i++ {
				if s.Findings[i].Severity > s.Findings[i-1].Severity {
					t.Fatalf("findings not sorted by severity at %d", i)
				}
			}
		})
	}
}

func TestSeverityRule(t *testing.T) {
	trivy := readReport(t, "trivy-v2.json")
	grype := readReport(t, "grype.json")
	find := func(fs []Finding, id, pkg string) Finding {
		for _, f := range fs {
			if f.ID == id && f.Package == pkg {
				return f
			}
		}
		t.Fatalf("no finding %s in %s", id, pkg)
		return Finding{}
	}
	tests := []struct {
		findings []Finding
		id, pkg  string
		sev      Severity
		source   string
		fix      bool
	}{
		{trivy.Findings, "CVE-2023-5363", "libcrypto3", High, "severity", true},
		{trivy.Findings, "CVE-2023-99991", "musl", Medium, "vendor:redhat", false},
		{trivy.Findings, "CVE-2023-99992", "zlib", Critical, "vendor:nvd", true},
		{trivy.Findings, "CVE-2023-99993", "zlib", High, "vendor-highest:amazon", false},
		{trivy.Findings, "CVE-2023-99994", "ncurses-libs", Unknown, "none", false},
		{grype.Findings, "CVE-2023-99995", "ssl_client", High, "related:nvd", false},
		{grype.Findings, "CVE-2023-99996", "libexpat", Medium, "related-highest:alpine:distro:alpine:3.17", false},
		{grype.Findings, "CVE-2005-2541", "tar", Low, "severity", false},
		{grype.Findings, "CVE-2023-99997", "zlib1g", Unknown, "none", false},
		{grype.Findings, "GHSA-m425-mq94-257g", "google.golang.org/grpc", High, "severity", true},
	}
	for _, tt := range tests {
		f := find(tt.findings, tt.id, tt.pkg)
		if f.Severity != tt.sev || f.SeveritySource != tt.source || f.FixAvailable != tt.fix {
			t.Errorf("%s %s: severity %s from %q, fix %v; want %s from %q, fix %v",
				tt.id, tt.pkg, f.Severity, f.SeveritySource, f.FixAvailable, tt.sev, tt.source, tt.fix)
		}
	}
	ghsa := find(grype.Findings, "GHSA-m425-mq94-257g", "google.golang.org/grpc")
	if ghsa.CanonicalID() != "CVE-2023-44487" || ghsa.Key() != "CVE-2023-44487|google.golang.org/grpc|v1.58.2" {
		t.Errorf("canonical id %q key %q", ghsa.CanonicalID(), ghsa.Key())
	}
	pub := find(trivy.Findings, "CVE-2023-45283", "stdlib").Published
	if want := time.Date(2023, 11, 9, 17, 15, 8, 757e6, time.UTC); !pub.Equal(want) {
		t.Errorf("published %v, want %v", pub, want)
	}
	if p := find(trivy.Findings, "GHSA-m425-mq94-257g", "google.golang.org/grpc").Published; !p.IsZero() {
		t.Errorf("missing published date parsed as %v", p)
	}
}

func TestParseRejectsBadReports(t *testing.T) {
	tests := []struct {
		name, data, want string
	}{
		{"empty", "  \n", "empty file"},
		{"scalar", "42", "not a JSON object or array"},
		{"null", "null", "not a JSON object or array"},
		{"unknown object", `{"bomFormat": "CycloneDX", "specVersion": "1.5"}`, "top-level keys: bomFormat, specVersion"},
		{"old schema", `{"SchemaVersion": 1, "Results": []}`, "SchemaVersion 1 is not supported"},
		{"truncated", "{\"SchemaVersion\": 2,\n \"Results\": [{\"Target\": \"x\",", "line 2"},
		{"wrong type", `{"SchemaVersion": 2, "Results": {"Target": "x"}}`, "field Results"},
		{"no target", `{"SchemaVersion": 2, "Results": [{"Class": "os-pkgs"}]}`, "Results[0]: no Target"},
		{"no package", `{"SchemaVersion": 2, "Results": [{"Target": "img", "Vulnerabilities": [{"VulnerabilityID": "CVE-1"}]}]}`,
			"Results[0] (img) Vulnerabilities[0]: VulnerabilityID and PkgName are required"},
		{"bad severity", `{"SchemaVersion": 2, "Results": [{"Target": "img", "Vulnerabilities": [{"VulnerabilityID": "CVE-1", "PkgName": "p", "Severity": "SEVERE"}]}]}`,
			`unknown severity "SEVERE"`},
		{"bad vendor rating", `{"SchemaVersion": 2, "Results": [{"Target": "img", "Vulnerabilities": [{"VulnerabilityID": "CVE-1", "PkgName": "p", "VendorSeverity": {"nvd": 7}}]}]}`,
			"rating 7 is not 0-4"},
		{"bad date", `{"SchemaVersion": 2, "Results": [{"Target": "img", "Vulnerabilities": [{"VulnerabilityID": "CVE-1", "PkgName": "p", "Severity": "LOW", "PublishedDate": "yesterday"}]}]}`,
			"PublishedDate"},
		{"legacy without target", `[{"Vulnerabilities": []}]`, "Results[0]: no Target"},
		{"grype null matches", `{"matches": null}`, `"matches" is null`},
		{"grype no artifact", `{"matches": [{"vulnerability": {"id": "CVE-1", "severity": "High"}}]}`, "matches[0] (CVE-1): no artifact name"},
		{"grype no id", `{"matches": [{"vulnerability": {"severity": "High"}, "artifact": {"name": "a"}}]}`, "matches[0]: no vulnerability id"},
		{"grype fix state", `{"matches": [{"vulnerability": {"id": "CVE-1", "severity": "High", "fix": {"state": "maybe"}}, "artifact": {"name": "a"}}]}`,
			`unknown fix state "maybe"`},
		{"trailing data", `{"matches": []} {"matches": []}`, "data after the JSON document"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("reports/scan.json", []byte(tt.data))
			if err == nil {
				t.Fatalf("no error for %s", tt.name)
			}
			if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "reports/scan.json") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want ErrFormat naming the file and containing %q", err, tt.want)
			}
		})
	}
}

func TestParseAcceptsCleanReports(t *testing.T) {
	for _, data := range []string{
		`{"SchemaVersion": 2, "ArtifactName": "img", "Results": [{"Target": "img (alpine 3.19)", "Class": "os-pkgs", "Type": "alpine"}]}`,
		`{"SchemaVersion": 2, "ArtifactName": "img"}`,
		`{"matches": [], "source": {"type": "image"}}`,
		`[]`,
	} {
		rep, err := Parse("clean.json", []byte(data))
		if err != nil || len(rep.Findings) != 0 {
			t.Errorf("%s: %d findings, err %v", data, len(rep.Findings), err)
		}
	}
}

// memoryFirstSeen is a FirstSeen store in memory, the contract's
// reference behaviour: the first call for a key records now.
type memoryFirstSeen struct {
	mu    sync.Mutex
	seen  map[string]time.Time
	calls int
}

func (m *memoryFirstSeen) FirstSeen(_ context.Context, key string, now time.Time) (time.Time, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if t, ok := m.seen[key]; ok {
		return t, nil
	}
	m.seen[key] = now
	return now, nil
}

type failingStore struct{}

func (failingStore) FirstSeen(context.Context, string, time.Time) (time.Time, error) {
	return time.Time{}, errors.New("database is locked")
}

func TestAgesFromFirstSeen(t *testing.T) {
	store := &memoryFirstSeen{seen: map[string]time.Time{}}
	ctx := context.Background()
	day1 := time.Date(2024, 1, 10, 9, 0, 0, 0, time.UTC)
	trivy := Count(readReport(t, "trivy-v2.json").Findings, Filter{}).Findings
	aged, err := Ages(ctx, store, trivy, day1)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range aged {
		if a.Age != 0 || !a.FirstSeen.Equal(day1) {
			t.Fatalf("new finding %s aged %v", a.Key(), a.Age)
		}
	}
	// Ten days later Grype reports some of the same findings and new
	// ones: the shared ones are ten days old whatever their published
	// date, the new ones zero.
	day11 := day1.Add(10 * 24 * time.Hour)
	merged := Count(append(readReport(t, "trivy-v2.json").Findings, readReport(t, "grype.json").Findings...), Filter{}).Findings
	aged, err = Ages(ctx, store, merged, day11)
	if err != nil {
		t.Fatal(err)
	}
	old := OlderThan(aged, High, 7*24*time.Hour)
	if len(old) != 8 { // critical 2 + high 6 from the Trivy report
		t.Errorf("%d high+ findings older than 7 days, want 8", len(old))
	}
	for _, a := range old {
		if a.Age != 10*24*time.Hour || a.Scanner != "trivy" {
			t.Errorf("%s: age %v scanner %s", a.Key(), a.Age, a.Scanner)
		}
	}
	if len(OlderThan(aged, Unknown, 11*24*time.Hour)) != 0 {
		t.Error("findings older than they can be")
	}
	if aged[0].Age < aged[len(aged)-1].Age {
		t.Error("not sorted oldest first")
	}
	if _, err := Ages(ctx, failingStore{}, merged, day11); err == nil || !strings.Contains(err.Error(), "database is locked") {
		t.Errorf("store error not returned: %v", err)
	}
}

func TestParseSeverity(t *testing.T) {
	for in, want := range map[string]Severity{"CRITICAL": Critical, "High": High, "moderate": Medium, "Negligible": Low, "UNKNOWN": Unknown, "": Unknown} {
		if got, err := ParseSeverity(in); err != nil || got != want {
			t.Errorf("ParseSeverity(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseSeverity("urgent"); err == nil {
		t.Error("no error for an unknown severity")
	}
}

func FuzzParse(f *testing.F) {
	for _, name := range []string{"trivy-v2.json", "trivy-legacy.json", "grype.json"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"SchemaVersion": 2, "Results": [{"Target": "img", "Vulnerabilities": [{"VulnerabilityID": "CVE-1", "PkgName": "p", "VendorSeverity": {"nvd": 3}}]}]}`))
	f.Add([]byte(`{"matches": [{"vulnerability": {"id": "GHSA-1", "severity": "Unknown"}, "relatedVulnerabilities": [{"id": "CVE-1", "namespace": "nvd:cpe", "severity": "Low"}], "artifact": {"name": "a"}}]}`))
	f.Add([]byte(`[{"Target": "t", "Vulnerabilities": null}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<20 {
			return
		}
		rep, err := Parse("fuzz.json", data)
		if err != nil {
			if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "fuzz.json") {
				t.Fatalf("error without ErrFormat or file name: %v", err)
			}
			return
		}
		for _, fd := range rep.Findings {
			if fd.ID == "" || fd.Package == "" || fd.Severity < Unknown || fd.Severity > Critical {
				t.Fatalf("bad finding %+v", fd)
			}
		}
		s := Count(rep.Findings, Filter{OnlyFixable: true})
		sum := 0
		for _, c := range s.BySeverity {
			sum += c
		}
		if sum != s.Total || s.Total+s.Unfixable > len(rep.Findings) {
			t.Fatalf("counts do not add up: %+v of %d", s, len(rep.Findings))
		}
	})
}
