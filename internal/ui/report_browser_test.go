package ui_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/qsp-dev/qsp/internal/api"
	"github.com/qsp-dev/qsp/internal/ui/uitest"
)

// TestBrowserReportAndPostmortem drives real Chromium, as a viewer,
// from an incident's page through its postmortem link to the draft, and
// through the navigation to the month's report: what a reader sees is
// asserted and saved as screenshots.
func TestBrowserReportAndPostmortem(t *testing.T) {
	env := uitest.Start(t, uitest.Options{Tokens: true})
	env.Deploy(t, "checkout", "v2.0.1")
	incident := env.OpenIncident(t)
	b := newBrowser(t, env.URL)
	b.login(env.Tokens[api.RoleViewer])

	b.open(fmt.Sprintf("/incidents/%d", incident))
	b.waitText("#postmortem-link", "Postmortem draft")
	b.shot("incident-with-postmortem-link")
	b.do(chromedp.Click(chromedp.CSS("#postmortem-link")))
	b.waitText("body", fmt.Sprintf("# Postmortem draft: incident %d", incident), "Time to detect (MTTD)", "## Timeline (UTC)",
		"## SLIs and budget impact", "| checkout-availability | 99.9 % |", "## Deploy before it", "## Alerts", "## Open questions")
	b.shot("postmortem-draft")

	b.open("/")
	b.do(chromedp.Click(chromedp.CSS(`nav a[href="/reports"]`)))
	var inc struct {
		FirstBadAt time.Time `json:"firstBadAt"`
	}
	getJSON(t, env, fmt.Sprintf("/api/v1/incidents/%d", incident), &inc)
	month := inc.FirstBadAt.UTC().Format("January 2006")
	b.waitText("h1", "SLO report "+month)
	text := b.waitText("main", "SLOs met their objective", "Attainment", "checkout-availability", "Daily attainment",
		"Budget spent by incidents and deploys", "deploy checkout v2.0.1", "At risk next period", "Markdown", "PDF")
	if strings.Contains(text, "99.9999") || strings.Contains(text, "e-0") {
		t.Errorf("the report shows unrounded numbers:\n%.3000s", text)
	}
	charts, err := chromedp.Run(b.ctx, chromedp.Evaluate[int](`document.querySelectorAll('main svg.chart').length`))
	if err != nil || charts == 0 {
		t.Errorf("the report page has %d charts: %v", charts, err)
	}
	b.fitsWidth("/reports")
	b.shot("report")
}
