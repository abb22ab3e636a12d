package ui_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/qsp-dev/qsp/internal/alert"
	"github.com/qsp-dev/qsp/internal/demo"
	"github.com/qsp-dev/qsp/internal/store"
)

// fractionalCount matches an event count with a fraction in rendered
// text: "561927.98 of 705207.98 bad events", "Good 1944.00".
var fractionalCount = regexp.MustCompile(`\d\.\d+ (of [0-9]|bad|good|events|requests)|(Good|Total|Bad) [0-9,]+\.\d`)

// wordsTitle is an incident title in words: the service, what is wrong,
// since when, and the deploy before it if there was one.
var wordsTitle = regexp.MustCompile(`^[A-Z][A-Za-z0-9 ]* [a-z][a-z0-9 ]+ since \d\d:\d\d UTC(, after deploy \S+)?$`)

// spanJS returns, for the incident span whose title starts with %q on
// the error-rate chart, how far (in pixels) its left edge is from where
// the chart's own time axis puts the incident's first bad minute (%q),
// and its right edge from the plot's right end (an open incident runs to
// now); or null without such a span.
const spanJS = `(() => {
  const svg = document.querySelector('svg.chart[aria-labelledby^="errors-"]');
  if (!svg) return null;
  const plot = svg.querySelector('rect.plot');
  const from = Date.parse(plot.dataset.from), to = Date.parse(plot.dataset.to), pb = plot.getBoundingClientRect();
  const span = [...svg.querySelectorAll('rect.span')].find(r => r.querySelector('title').textContent.startsWith(%q));
  if (!span) return null;
  const f = Math.min(1, Math.max(0, (Date.parse(%q) - from) / (to - from)));
  const sb = span.getBoundingClientRect();
  return [Math.abs(sb.left - (pb.left + f * pb.width)), Math.abs(sb.right - pb.right)];
})()`

// TestBrowserDemoScenarios runs the demo through its seven scenarios at
// 300x, and during each (the clock standing still while its incident is
// open) checks in Chromium what the on-call sees (issue 22): one incident
// opened by the scenario, titled in words with the deploy that preceded
// it; the incident on the SLO's short-range error-rate chart where its
// first bad minute is; the deploy and the gate verdict on the incident's
// timeline for the scenario that deploys; no overlapping labels, no
// e-notation, no fractional counts, and no "OK" while telemetry is lost.
func TestBrowserDemoScenarios(t *testing.T) {
	b := newBrowser(t, "")
	listen := func() net.Listener {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	began := time.Now()
	looked := map[string]bool{}
	dir := t.TempDir()
	var course strings.Builder
	sum, err := demo.Run(ctx, demo.Options{
		DataDir: dir, Out: &course, Listener: listen(), PlatformListener: listen(),
		Speed: 300, Once: true, History: 24 * time.Hour, Warmup: 5 * time.Minute, Quiet: 15 * time.Minute,
		During: func(ctx context.Context, m demo.Moment) {
			looked[m.Scenario.Name] = true
			t.Run(m.Scenario.Name, func(t *testing.T) {
				sb := *b
				sb.t, sb.base = t, m.URL
				checkScenarioPages(t, &sb, m)
			})
		},
	})
	if err != nil {
		t.Fatalf("demo: %v", err)
	}
	t.Logf("seven scenarios with their pages checked in %s", time.Since(began).Round(time.Second))
	for _, name := range demo.ScenarioNames() {
		if !looked[name] {
			t.Errorf("scenario %s was never looked at while it lasted", name)
		}
	}
	for _, r := range sum.Results {
		if len(r.Opened) != 1 {
			t.Errorf("scenario %s opened incidents %v, want one", r.Scenario, r.Opened)
		}
	}
	if t.Failed() {
		t.Logf("the demo's course:\n%s", course.String())
		logIncidents(t, filepath.Join(dir, "qsp.db"))
	}
}

// logIncidents logs every incident of the demo's store with its alerts
// and timeline, to tell why a scenario did not open exactly one.
func logIncidents(t *testing.T, path string) {
	st, err := store.Open(context.Background(), store.Options{Path: path})
	if err != nil {
		t.Log(err)
		return
	}
	defer st.Close()
	incs, err := st.Incidents(context.Background(), store.IncidentFilter{WithAlerts: true, WithEvents: true, Limit: 100})
	if err != nil {
		t.Log(err)
		return
	}
	for i := len(incs) - 1; i >= 0; i-- {
		inc := incs[i]
		var b strings.Builder
		fmt.Fprintf(&b, "incident %d %s %q cause %q opened %s resolved %s\n", inc.ID, inc.State, inc.Title, inc.Cause,
			inc.OpenedAt.Format("15:04:05"), inc.ResolvedAt.Format("15:04:05"))
		for _, e := range inc.Events {
			fmt.Fprintf(&b, "  %s %s %s %s %s\n", e.At.Format("15:04:05"), e.Kind, e.Key, e.Severity, e.Detail)
		}
		t.Log(b.String())
	}
}

func checkScenarioPages(t *testing.T, b *browser, m demo.Moment) {
	sc := m.Scenario
	var deployed, gated string
	for _, s := range sc.Steps {
		switch s.Kind {
		case demo.StepDeploy:
			deployed = s.Version
		case demo.StepGate:
			gated = s.Gate
		}
	}

	// One incident opened since the fault began, of the scenario's
	// service and holding its SLO.
	var page struct {
		Items []alert.Incident `json:"items"`
	}
	resp, err := http.Get(m.URL + "/api/v1/incidents?limit=50")
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(resp.Body).Decode(&page)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	var opened []alert.Incident
	for _, inc := range page.Items {
		if !inc.OpenedAt.Before(m.Started) {
			opened = append(opened, inc)
		}
	}
	if len(opened) != 1 {
		t.Fatalf("%d incidents opened since the fault began at %s, want 1: %+v", len(opened), m.Started.Format("15:04:05"), opened)
	}
	inc := opened[0]
	if inc.Service != m.Service || inc.State != "open" || !hasSLO(inc, sc.Expect.SLO) {
		t.Errorf("incident %d: %s %s with alerts %+v; want an open incident of %s holding %s", inc.ID, inc.Service, inc.State, inc.Alerts, m.Service, sc.Expect.SLO)
	}
	if !wordsTitle.MatchString(inc.Title) {
		t.Errorf("incident title %q is not in words (service, what is wrong, since when)", inc.Title)
	}
	switch {
	case deployed != "" && !strings.HasSuffix(inc.Title, ", after deploy "+deployed):
		t.Errorf("incident title %q does not name the deploy %s before the trouble", inc.Title, deployed)
	case deployed == "" && strings.Contains(inc.Title, "after deploy"):
		t.Errorf("incident title %q names a deploy, but the scenario deployed nothing", inc.Title)
	}
	if sc.Expect.NoData && !strings.Contains(inc.Title, "no telemetry") {
		t.Errorf("incident title %q of a telemetry loss does not say so", inc.Title)
	}

	// The SLO page over the last hour.
	b.open("/slos/" + sc.Expect.SLO + "?range=1h")
	b.waitText("main", "Error rate over the last 1h")
	edges, err := chromedp.Run(b.ctx, chromedp.Evaluate[[]float64](fmt.Sprintf(spanJS, fmt.Sprintf("Incident %d:", inc.ID), inc.FirstBadAt.Format(time.RFC3339))))
	switch {
	case err != nil:
		t.Errorf("incident span: %v", err)
	case len(edges) != 2:
		t.Errorf("the 1h error-rate chart has no span of incident %d", inc.ID)
	case edges[0] > 3 || edges[1] > 3:
		t.Errorf("incident %d's span is %.1fpx off its first bad minute and %.1fpx off now on the 1h chart", inc.ID, edges[0], edges[1])
	}
	firing, err := chromedp.Run(b.ctx, chromedp.Evaluate[int](`document.querySelectorAll('svg.chart[aria-labelledby^="errors-"] rect.firing').length`))
	if err != nil || firing == 0 {
		t.Errorf("the 1h error-rate chart shows no firing alert: %d %v", firing, err)
	}
	if deployed != "" {
		flags, err := chromedp.Run(b.ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('svg.chart[aria-labelledby^="errors-"] g.marker text')].map(t => t.textContent)`))
		if err != nil || !contains(flags, "D "+deployed) {
			t.Errorf("deploy flags on the 1h chart: %q, want D %s: %v", flags, deployed, err)
		}
	}
	checkPageText(t, b, "the SLO page", sc.Expect.NoData)
	b.shot(sc.Name + "-slo")

	// The incident page: its title and its timeline.
	b.open(fmt.Sprintf("/incidents/%d", inc.ID))
	b.waitText("h1", inc.Title)
	kinds, err := chromedp.Run(b.ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('svg.timeline g.tl')].map(g => g.getAttribute('class'))`))
	if err != nil || !contains(kinds, "tl tl-alert") {
		t.Errorf("incident timeline marks %q, want the alert: %v", kinds, err)
	}
	if deployed != "" {
		if !contains(kinds, "tl tl-deploy") || !contains(kinds, "tl tl-gate") {
			t.Errorf("incident timeline marks %q, want the deploy and the gate", kinds)
		}
		b.waitText("ol.timeline", "deploy "+deployed, "gate "+gated+": Fail")
	}
	checkPageText(t, b, "the incident page", sc.Expect.NoData)
	b.shot(sc.Name + "-incident")
	if sc.Expect.NoData {
		// The executive page: no cell says OK while nothing is known.
		b.open("/")
		b.waitText("main", "SLOs without data")
		checkPageText(t, b, "the executive page", true)
	}
}

// checkPageText checks the rendered text of the page b shows and its
// charts' labels, for the browser tests of the incident pages.
func checkPageText(t *testing.T, b *browser, where string, noData bool) {
	t.Helper()
	text, err := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS("main")))
	if err != nil {
		t.Fatal(err)
	}
	if m := eNotation.FindString(text); m != "" {
		t.Errorf("%s shows a number in e-notation: %q", where, m)
	}
	if m := fractionalCount.FindString(text); m != "" {
		t.Errorf("%s shows a fractional count: %q", where, m)
	}
	for _, bad := range []string{"inf%", "NaN", "gate gate"} {
		if i := strings.Index(text, bad); i >= 0 {
			t.Errorf("%s shows %q: …%s…", where, bad, text[max(0, i-80):min(len(text), i+80)])
		}
	}
	if noData {
		if i := regexp.MustCompile(`\bOK\b`).FindStringIndex(text); i != nil {
			t.Errorf("%s shows OK while telemetry is lost: …%s…", where, text[max(0, i[0]-80):min(len(text), i[1]+80)])
		}
	}
	overlaps, err := chromedp.Run(b.ctx, chromedp.Evaluate[[]string](fmt.Sprintf(overlapJS, "svg.chart")))
	if err != nil {
		t.Fatal(err)
	}
	if len(overlaps) > 0 {
		t.Errorf("%s: labels overlap: %q", where, overlaps)
	}
}

func hasSLO(inc alert.Incident, slo string) bool {
	for _, a := range inc.Alerts {
		if a.SLO == slo {
			return true
		}
	}
	return false
}
