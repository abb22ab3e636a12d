package report_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qsp-dev/qsp/internal/externaltest"
	"github.com/qsp-dev/qsp/internal/report"
	"github.com/qsp-dev/qsp/internal/ui"
)

// TestPDF prints the fixture month's report with real Chromium and reads
// the figures back with pdftotext (Debian poppler-utils).
func TestPDF(t *testing.T) {
	chromium := externaltest.LookPath(t, "chromium", "chromium-browser", "google-chrome")
	pdftotext := externaltest.LookPath(t, "pdftotext")
	var f fixture
	readJSON(t, "month.json", &f)
	b, _ := builder(t, &f)
	r, err := b.Build(context.Background(), report.Request{Period: f.Period})
	if err != nil {
		t.Fatal(err)
	}
	var html bytes.Buffer
	if err := ui.RenderReport(&html, r); err != nil {
		t.Fatal(err)
	}
	pdf, err := report.PDF(context.Background(), chromium, html.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.ArtifactDir(), "report-2026-11.pdf")
	if err := os.WriteFile(path, pdf, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(pdftotext, "-layout", path, "-").Output()
	if err != nil {
		t.Fatalf("pdftotext: %v", err)
	}
	text := strings.Join(strings.Fields(string(out)), " ")
	// Table cells wrap (checkout-/availability), so each row is checked
	// from its service on: objective, attainment, met, budget spent, bad
	// events, allowed.
	for _, want := range []string{"SLO report November 2026", "2 of 3 SLOs met their objective",
		"checkout 99.9 % 99.97 % ✓ 27.78 1,200 4,320",
		"search 99 % 99.58 % ✓ 41.67 9,000 21.6k",
		"auth 99.95 % 99.86 % ✗ 277.78 600 216",
		"deploy checkout 2026-11-10 2026-11-10 800", "time to detect 6m on average", "time to repair 1h15m on average"} {
		if !strings.Contains(text, want) {
			t.Errorf("the PDF's text lacks %q:\n%s", want, text)
		}
	}
}

func TestPDFWithoutChromium(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	if _, err := report.PDF(context.Background(), "", []byte("<p>x</p>")); err != report.ErrNoChromium {
		t.Fatalf("got %v, want ErrNoChromium", err)
	}
}

// BenchmarkPDF prints the fixture month's report: starting Chromium,
// loading the document and printing it, as qsp report --format pdf does.
func BenchmarkPDF(b *testing.B) {
	chromium := externaltest.LookPath(b, "chromium", "chromium-browser", "google-chrome")
	var f fixture
	readJSON(b, "month.json", &f)
	bl, _ := builder(b, &f)
	r, err := bl.Build(context.Background(), report.Request{Period: f.Period})
	if err != nil {
		b.Fatal(err)
	}
	var html bytes.Buffer
	if err := ui.RenderReport(&html, r); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := report.PDF(context.Background(), chromium, html.Bytes()); err != nil {
			b.Fatal(err)
		}
	}
}
