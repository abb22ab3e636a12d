package ui_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/qsp-dev/qsp/internal/api"
	"github.com/qsp-dev/qsp/internal/externaltest"
	"github.com/qsp-dev/qsp/internal/ui/uitest"
)

// browser drives one headless Chromium tab.
type browser struct {
	t    *testing.T
	ctx  context.Context
	base string
	dir  string
	n    int
}

func newBrowser(t *testing.T, base string) *browser {
	t.Helper()
	path := externaltest.LookPath(t, "chromium", "chromium-browser", "google-chrome")
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.WindowSize(1366, 768))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelC(); cancelA() })
	// The first action starts the browser; it gets no timeout of its own.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	dir := t.ArtifactDir()
	t.Logf("screenshots go to %s", dir)
	return &browser{t: t, ctx: ctx, base: base, dir: dir}
}

func (b *browser) do(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("browser: %v", err)
	}
}

func (b *browser) open(path string) {
	b.t.Helper()
	b.do(chromedp.Navigate(b.base + path))
}

// waitText waits until the element sel holds every one of want: a click
// that submits a form or follows a link loads the next page meanwhile.
func (b *browser) waitText(sel string, want ...string) string {
	b.t.Helper()
	var got string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		cancel()
		if err != nil {
			continue
		}
		got = s
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(s, w)
		}
		if ok {
			return s
		}
	}
	loc, _ := chromedp.Run(b.ctx, chromedp.Location())
	b.shot("failure")
	b.t.Fatalf("%s of %s never held %q; it holds:\n%.2000s", sel, loc, want, got)
	return ""
}

// shot saves a screenshot of the whole page as a PNG.
func (b *browser) shot(name string) {
	b.t.Helper()
	b.n++
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(b.dir, fmt.Sprintf("%02d-%s.png", b.n, name))
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	if len(png) < 8 || string(png[1:4]) != "PNG" {
		b.t.Errorf("screenshot %s is not a PNG", name)
	}
	b.t.Logf("screenshot %s", path)
}

// fitsWidth checks that the page needs no horizontal scrolling at
// 1366×768.
func (b *browser) fitsWidth(page string) {
	b.t.Helper()
	w, err := chromedp.Run(b.ctx, chromedp.Evaluate[int](`document.documentElement.scrollWidth`))
	if err != nil {
		b.t.Fatal(err)
	}
	if w > 1366 {
		b.t.Errorf("%s is %dpx wide: it scrolls sideways at 1366×768", page, w)
	}
}

func (b *browser) login(token string) {
	b.t.Helper()
	b.open("/login?next=/")
	b.do(chromedp.SendKeys(chromedp.CSS("#token"), token), chromedp.Click(chromedp.CSS("form.login button")))
	b.waitText("h1", "Executive view")
}

func (b *browser) logout() {
	b.t.Helper()
	b.do(chromedp.Click(chromedp.CSS(`header form[action="/logout"] button`)))
	b.waitText("h1", "Sign in")
}

// TestBrowser drives real Chromium through the UI of the whole app over
// the example specs with live telemetry: an outage opens an incident and
// a playbook run that waits for an approval. A viewer signs in, sees every
// page, navigates between them and is refused (403, shown as such) when
// acknowledging or approving; an operator then acknowledges the incident
// and approves the run. Every view is saved as a screenshot.
func TestBrowser(t *testing.T) {
	env := uitest.Start(t, uitest.Options{Tokens: true})
	env.Deploy(t, "checkout", "v2.0.1")
	incident := env.OpenIncident(t)
	run := env.PendingRun(t, "search-scale-up")
	// The examples' webhooks point at 127.0.0.1:9099, which may be anyone's
	// port here: with the kill switch on, the approved run stops before it
	// calls anything.
	ks := []byte(`{"on": true, "note": "browser test: no webhook is called"}`)
	if resp := env.Do(t, http.MethodPut, "/api/v1/playbooks/killswitch", api.RoleAdmin, "application/json", ks); resp.StatusCode != 200 {
		t.Fatalf("kill switch: %s %s", resp.Status, uitest.ReadBody(t, resp))
	}
	gate := []byte(`{"change": {"kind": "feature", "version": "2.1.0"}, "reports": [{"name": "grype.json", "content": {"matches": [], "source": {"type": "image", "target": {"userInput": "auth:2"}}, "descriptor": {"name": "grype", "version": "0.77.0"}}}]}`)
	if resp := env.Do(t, http.MethodPost, "/api/v1/gates/auth-deploy/evaluations", api.RoleOperator, "application/json", gate); resp.StatusCode/100 != 2 {
		t.Fatalf("gate evaluation: %s %s", resp.Status, uitest.ReadBody(t, resp))
	}

	b := newBrowser(t, env.URL)

	// Without a session: the sign-in form.
	b.open("/")
	b.waitText("h1", "Sign in required")
	b.shot("sign-in-required")

	b.login(env.Tokens[api.RoleViewer])
	b.waitText("main", "Checkout", "Search", "Auth", "Quality", "Security", "Performance", "open incidents", "Cost per request")
	b.waitText("header", "Signed in as the-viewer (viewer)")
	b.fitsWidth("the executive view")
	b.shot("executive")
	checkGlance(t, b)

	// Every page through the navigation.
	for _, p := range []struct {
		href, h1 string
		want     []string
	}{
		{"/oncall", "On call", []string{"Firing (", "Close to firing", "No data (", "Open incidents (", "waiting for approval (1)", "v2.0.1"}},
		{"/slos", "SLOs", []string{"SLO groups", "checkout-availability", "search-tenant-availability"}},
		{"/incidents", "Incidents", []string{"checkout", "Open"}},
		{"/gates", "Gates", []string{"checkout-deploy", "auth-deploy", "2.1.0"}},
		{"/decisions", "Decisions", []string{"auth-deploy", "change-freeze"}},
		{"/playbooks", "Playbooks", []string{"Kill switch on", "Waiting for approval (1)", "search-scale-up", "checkout-rollback"}},
		{"/", "Executive view", []string{"Checkout"}},
	} {
		b.do(chromedp.Click(chromedp.CSS(`nav a[href="` + p.href + `"]`)))
		b.waitText("h1", p.h1)
		b.waitText("main", p.want...)
		b.waitText(`nav a[aria-current="page"]`)
		b.fitsWidth(p.href)
		b.shot(strings.Trim(strings.ReplaceAll(p.href, "/", "-"), "-") + "page")
	}

	// SLO detail from the list, then its service.
	b.open("/slos?service=checkout")
	b.do(chromedp.Click(chromedp.CSS(`a[href^="/slos/checkout-availability?"]`)))
	b.waitText("h1", "SLO checkout-availability")
	b.waitText("main", "Burn rate per window", "Error budget left", "Alerts", "Deploys in the window", "v2.0.1", "Incidents in the window")
	b.waitText("table.impact", "Error budget this SLO spent after each deploy", "v2.0.1", "of the budget in 30m")
	charts, err := chromedp.Run(b.ctx, chromedp.Evaluate[int](`document.querySelectorAll('svg.chart title').length`))
	if err != nil || charts < 3 {
		t.Errorf("SLO page has %d titled charts, want 3 (SLI, budget, burn rates): %v", charts, err)
	}
	b.fitsWidth("the SLO page")
	b.shot("slo-detail")
	b.do(chromedp.Click(chromedp.CSS(`dd a[href="/services/checkout"]`)))
	b.waitText("h1", "Checkout")
	b.waitText("main", "team-payments", "By category", "place-order")
	b.shot("service")
	// A grouped SLO lists its groups.
	b.open("/slos/search-tenant-availability")
	b.waitText("main", "Groups (2)", "tenant=\"acme\"", "tenant=\"globex\"")
	b.shot("slo-grouped")

	// The viewer may not acknowledge or approve: 403, said plainly.
	b.open(fmt.Sprintf("/incidents/%d", incident))
	b.waitText("h1", fmt.Sprintf("Incident %d", incident))
	b.shot("incident")
	b.do(chromedp.Click(chromedp.CSS("#ack-button")))
	b.waitText("h1", "Forbidden (403)")
	b.waitText("main", "You are signed in as the-viewer with the role viewer; acknowledging an incident needs the role operator")
	b.shot("viewer-ack-forbidden")
	b.open("/playbooks/runs/" + run)
	b.waitText("main", "Approve or reject", "Audit trail")
	b.do(chromedp.Click(chromedp.CSS("#approve-button")))
	b.waitText("h1", "Forbidden (403)")
	b.waitText("main", "approving a playbook run needs the role operator")
	b.shot("viewer-approve-forbidden")

	// The operator acknowledges and approves.
	b.logout()
	b.login(env.Tokens[api.RoleOperator])
	b.open(fmt.Sprintf("/incidents/%d", incident))
	b.do(chromedp.SendKeys(chromedp.CSS("#note"), "looking into the 500s"), chromedp.Click(chromedp.CSS("#ack-button")))
	b.waitText("main", "by the-operator", "looking into the 500s")
	b.shot("incident-acknowledged")
	var inc struct {
		AckedBy string `json:"acknowledgedBy"`
	}
	getJSON(t, env, fmt.Sprintf("/api/v1/incidents/%d", incident), &inc)
	if inc.AckedBy != "the-operator" {
		t.Errorf("the API says the incident was acknowledged by %q", inc.AckedBy)
	}

	b.open("/playbooks/runs/" + run)
	b.do(chromedp.Click(chromedp.CSS("#approve-button")))
	b.waitText("main", "Approved", "by the-operator", "approval", "kill switch")
	b.shot("run-approved")
	var pr struct {
		Approval struct{ Decision, By string } `json:"approval"`
	}
	getJSON(t, env, "/api/v1/playbooks/runs/"+run, &pr)
	if pr.Approval.Decision != "approved" || pr.Approval.By != "the-operator" {
		t.Errorf("the API says the run's approval is %+v", pr.Approval)
	}
	b.open("/gates")
	b.do(chromedp.Click(chromedp.CSS(`a[href^="/gates/evaluations/"]`)))
	b.waitText("h1", "Gate evaluation")
	b.waitText("main", "Reasons")
	b.shot("gate-evaluation")
}

func getJSON(t *testing.T, env *uitest.Env, path string, v any) {
	t.Helper()
	resp := env.Do(t, http.MethodGet, path, api.RoleViewer, "", nil)
	body := uitest.ReadBody(t, resp)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s %s", path, resp.Status, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatal(err)
	}
}

// checkGlance asserts what a reader of the executive and on-call views
// sees at a glance (issue 18): a sparkline per service, the budget bar,
// the forecast in words, the cost in readable units, and on call the SLO
// that burns with its forecast and the deploy before it.
func checkGlance(t *testing.T, b *browser) {
	t.Helper()
	b.waitText("main", "30-day attainment", "Budget left", "Forecast")
	sparks, err := chromedp.Run(b.ctx, chromedp.Evaluate[int](`document.querySelectorAll('table.exec svg.spark polyline').length`))
	if err != nil || sparks < 3 {
		t.Errorf("executive view: %d sparklines, want one per service with SLOs (3): %v", sparks, err)
	}
	bars, err := chromedp.Run(b.ctx, chromedp.Evaluate[int](`document.querySelectorAll('table.exec svg.bar').length`))
	if err != nil || bars < 3 {
		t.Errorf("executive view: %d budget bars, want 3: %v", bars, err)
	}
	text, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.querySelector('main').innerText`))
	if err != nil {
		t.Fatal(err)
	}
	for _, re := range []string{`\$\d+\.\d\d per (request|1k requests|1M requests)`, `runs out in \d|not projected to run out|budget spent`, `\d+(\.\d+)? % (left|overspent)`} {
		if !regexp.MustCompile(re).MatchString(text) {
			t.Errorf("executive view lacks %s:\n%s", re, text)
		}
	}
	if regexp.MustCompile(`\de-\d`).MatchString(text) || regexp.MustCompile(`\d\.\d{4,} ?%`).MatchString(text) {
		t.Errorf("executive view prints numbers for machines (1e-05, 99.9794 %%):\n%s", text)
	}
	b.open("/oncall")
	b.waitText("main", "Burning now, soonest exhaustion first", "checkout-availability", "v2.0.1")
	burning, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.querySelector('section[aria-labelledby="burning"]').innerText`))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`runs out in \d|budget spent`).MatchString(burning) || !strings.Contains(burning, "× over 1h") {
		t.Errorf("on-call view: the burning SLO lacks its forecast or burn:\n%s", burning)
	}
	b.shot("oncall-burning")
	// checkout-latency burns its budget but has some left: its budget
	// chart projects the exhaustion (a spent budget has nothing to project).
	b.open("/slos/checkout-latency")
	b.waitText("h1", "SLO checkout-latency")
	proj, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`Array.from(document.querySelectorAll("svg.chart path.projection title")).map(e => e.textContent).join("|")`))
	if err != nil || !strings.HasPrefix(proj, "projected: runs out in ") {
		t.Errorf("SLO page: budget projection %q, want one that runs out: %v", proj, err)
	}
	b.shot("slo-projection")
	b.open("/")
	b.waitText("h1", "Executive view")
}
