package cli

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qsp-dev/qsp/internal/api"
	"github.com/qsp-dev/qsp/internal/externaltest"
	"github.com/qsp-dev/qsp/internal/ui/uitest"
)

// TestReportAndIncidentExport runs qsp report and qsp incident export
// against the real app, as a viewer: Markdown, JSON and a PDF printed
// here by Chromium, and the usage errors.
func TestReportAndIncidentExport(t *testing.T) {
	env := uitest.Start(t, uitest.Options{Tokens: true})
	env.Deploy(t, "checkout", "v4.0.0")
	id := env.OpenIncident(t)
	month := env.Clock.Now().UTC().Format("2006-01")
	server := []string{"--url", env.URL, "--token", env.Tokens[api.RoleViewer]}

	code, out, errs := run(append([]string{"report", "--period", month, "--service", "checkout"}, server...)...)
	if code != 0 || !strings.Contains(out, "# SLO report "+month+" — checkout") || !strings.Contains(out, "| checkout-availability | checkout | 99.9 % |") {
		t.Errorf("report md: exit %d, stderr %s, stdout:\n%.1500s", code, errs, out)
	}
	code, out, errs = run(append([]string{"report", "--period", month, "--format", "json"}, server...)...)
	if code != 0 || !strings.Contains(out, `"period":"`+month+`"`) {
		t.Errorf("report json: exit %d %s %.300s", code, errs, out)
	}
	code, out, errs = run(append([]string{"incident", "export", fmt.Sprint(id)}, server...)...)
	if code != 0 || !strings.Contains(out, fmt.Sprintf("# Postmortem draft: incident %d", id)) || !strings.Contains(out, "## Open questions") {
		t.Errorf("incident export: exit %d, stderr %s, stdout:\n%.1500s", code, errs, out)
	}

	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"report"}, `required flag(s) "period" not set`},
		{[]string{"report", "--period", "2026-13"}, "--period: period \"2026-13\": bad period"},
		{[]string{"report", "--period", month, "--format", "docx"}, `--format "docx": want md, html, json or pdf`},
		{append([]string{"report", "--period", month, "--service", "nope"}, server...), "404 Not Found"},
		{[]string{"incident", "export", "x"}, `incident id "x": want a positive integer`},
		{append([]string{"incident", "export", "99999"}, server...), "incident 99999"},
		{[]string{"report", "--period", month, "--url", env.URL}, "401"},
	} {
		code, _, errs := run(c.args...)
		if code != 2 || !strings.Contains(errs, c.msg) {
			t.Errorf("%v: exit %d, stderr %q, want 2 with %q", c.args, code, errs, c.msg)
		}
	}

	pdftotext := externaltest.LookPath(t, "pdftotext")
	externaltest.LookPath(t, "chromium", "chromium-browser", "google-chrome")
	pdf := filepath.Join(t.TempDir(), "report.pdf")
	if code, _, errs := run(append([]string{"report", "--period", month, "--format", "pdf", "-o", pdf}, server...)...); code != 0 {
		t.Fatalf("report pdf: exit %d %s", code, errs)
	}
	text, err := exec.Command(pdftotext, pdf, "-").Output()
	if err != nil {
		t.Fatal(err)
	}
	if s := string(text); !strings.Contains(s, "SLO report") || !strings.Contains(s, "checkout-") {
		t.Errorf("the PDF's text: %.1000s", s)
	}
	t.Setenv("PATH", t.TempDir())
	if code, _, errs := run(append([]string{"report", "--period", month, "--format", "pdf"}, server...)...); code != 2 || !strings.Contains(errs, "needs Chromium on PATH") {
		t.Errorf("pdf without Chromium: exit %d %q", code, errs)
	}
}
