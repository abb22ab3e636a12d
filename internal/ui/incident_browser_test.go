package ui_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/qsp-dev/qsp/internal/api"
	"github.com/qsp-dev/qsp/internal/ui/uitest"
)

// overlapJS returns the pairs of visible text labels of the charts under
// sel whose boxes, as the browser laid them out, overlap by more than a
// pixel each way: the labels that would print over each other.
const overlapJS = `(() => {
  const out = [];
  for (const svg of document.querySelectorAll(%q)) {
    const boxes = [...svg.querySelectorAll('text')].map(t => [t.textContent, t.getBoundingClientRect()]).filter(([s, r]) => s.trim() && r.width > 0);
    for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
      const [a, ra] = boxes[i], [b, rb] = boxes[j];
      const w = Math.min(ra.right, rb.right) - Math.max(ra.left, rb.left), h = Math.min(ra.bottom, rb.bottom) - Math.max(ra.top, rb.top);
      if (w > 1 && h > 1) out.push(a + ' / ' + b);
    }
  }
  return out;
})()`

// eNotation matches a number in e-notation in rendered text.
var eNotation = regexp.MustCompile(`\d(\.\d+)?e[-+]\d`)

// TestBrowserIncidentPages drives the outage scenario of the example
// services (a deploy of checkout, its gate, then half of its requests
// failing) on the app's own clock and asserts, in Chromium, what the SLO
// and incident pages show (issue 22): the incident on the short-range
// error-rate chart, the deploy and the gate on the incident's timeline,
// one incident titled in words, no overlapping labels, no e-notation and
// no fractional counts.
func TestBrowserIncidentPages(t *testing.T) {
	env := uitest.Start(t, uitest.Options{})
	env.Advance(t, uitest.Healthy)
	env.Deploy(t, "checkout", "v2.14.0")
	gate := []byte(`{"change": {"kind": "feature", "version": "v2.14.0", "deploy": true}, "reports": [{"name": "grype.json", "content": {"matches": [], "source": {"type": "image", "target": {"userInput": "checkout:2"}}, "descriptor": {"name": "grype", "version": "0.77.0"}}}]}`)
	if resp := env.Do(t, http.MethodPost, "/api/v1/gates/checkout-deploy/evaluations", api.RoleOperator, "application/json", gate); resp.StatusCode/100 != 2 {
		t.Fatalf("gate evaluation: %s %s", resp.Status, uitest.ReadBody(t, resp))
	}
	id := env.OpenIncident(t)
	// A few more minutes of the same trouble must not open another.
	for range 3 {
		env.Advance(t, uitest.Outage)
	}
	var page struct {
		Items []struct {
			ID     int64  `json:"id"`
			Title  string `json:"title"`
			Alerts []struct {
				SLO string `json:"slo"`
			} `json:"alerts"`
		} `json:"items"`
	}
	if err := json.Unmarshal(uitest.ReadBody(t, env.Do(t, http.MethodGet, "/api/v1/incidents?service=checkout", api.RoleViewer, "", nil)), &page); err != nil {
		t.Fatal(err)
	}
	if len(page.Items) != 1 {
		t.Fatalf("got %d checkout incidents, want 1 for one trouble: %+v", len(page.Items), page.Items)
	}
	title := page.Items[0].Title
	if len(page.Items[0].Alerts) == 0 || page.Items[0].Alerts[0].SLO == "" {
		t.Fatalf("incident without an SLO alert: %+v", page.Items[0])
	}
	sloName := page.Items[0].Alerts[0].SLO
	if !strings.HasPrefix(title, "Checkout ") || !strings.Contains(title, " since ") || !strings.Contains(title, "after deploy v2.14.0") {
		t.Errorf("incident title %q: want it in words, with the deploy before the trouble", title)
	}

	b := newBrowser(t, env.URL)
	// The SLO page over the last hour: the error rate with the incident.
	b.open("/slos/" + sloName + "?range=1h")
	b.waitText("main", "Error rate over the last 1h", "Burn rate per window", "v2.14.0")
	marks, err := chromedp.Run(b.ctx, chromedp.Evaluate[int](`(() => {
	  const svg = document.querySelector('svg.chart[aria-labelledby^="errors-"]');
	  if (!svg) return -1;
	  const plot = svg.querySelector('rect.plot').getBoundingClientRect();
	  return [...svg.querySelectorAll('rect.span, rect.firing')].filter(r => { const b = r.getBoundingClientRect(); return b.width > 0 && b.left >= plot.left - 1 && b.right <= plot.right + 1; }).length;
	})()`))
	if err != nil || marks < 1 {
		t.Errorf("the 1h error-rate chart shows %d incident or firing marks inside its plot, want at least 1: %v", marks, err)
	}
	flags, err := chromedp.Run(b.ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('svg.chart[aria-labelledby^="errors-"] g.marker text')].map(t => t.textContent)`))
	if err != nil || !contains(flags, "D v2.14.0") {
		t.Errorf("deploy flags on the error chart: %q, want D v2.14.0: %v", flags, err)
	}
	// Whole event counts in the window table (Good and Total columns).
	cells, err := chromedp.Run(b.ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('section[aria-labelledby="burn"] > table tbody tr')].flatMap(r => [r.cells[3].textContent, r.cells[4].textContent])`))
	if err != nil || len(cells) == 0 {
		t.Fatalf("window table: %q %v", cells, err)
	}
	whole := regexp.MustCompile(`^[0-9][0-9,]*$`)
	for _, c := range cells {
		if !whole.MatchString(strings.TrimSpace(c)) {
			t.Errorf("window table count %q is not a whole number", c)
		}
	}
	checkPageText(t, b, "the SLO page", false)
	b.shot("slo-during-outage")
	// The time picker works without scripts: a plain link zooms out.
	b.do(chromedp.Click(chromedp.CSS(`nav.timepicker a[href*="range=3h"]`)))
	b.waitText("main", "Error rate over the last 3h")
	checkPageText(t, b, "the SLO page zoomed out", false)

	// The incident page: its title and one timeline with the deploy and
	// the gate.
	b.open(fmt.Sprintf("/incidents/%d", id))
	b.waitText("h1", title)
	b.waitText("main", "deploy v2.14.0", "gate checkout-deploy")
	kinds, err := chromedp.Run(b.ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('svg.timeline g.tl')].map(g => g.getAttribute('class'))`))
	if err != nil || !contains(kinds, "tl tl-deploy") || !contains(kinds, "tl tl-gate") || !contains(kinds, "tl tl-alert") {
		t.Errorf("incident timeline marks %q, want alert, deploy and gate: %v", kinds, err)
	}
	checkPageText(t, b, "the incident page", false)
	b.shot("incident-during-outage")
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
