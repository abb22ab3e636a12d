package ui_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/qsp-dev/qsp/internal/api"
	"github.com/qsp-dev/qsp/internal/ui/uitest"
)

// TestDeployImpactServed checks the app wires deploy impact end to end: a
// deploy followed by an outage shows in the deploys API as budget spent
// after it, more than before, and in qsp_deploy_budget_consumed.
func TestDeployImpactServed(t *testing.T) {
	env := uitest.Start(t, uitest.Options{Tokens: true})
	env.Deploy(t, "checkout", "v3.0.0")
	for range 5 {
		env.Advance(t, uitest.Outage)
	}
	resp := env.Do(t, http.MethodGet, "/api/v1/deploys?service=checkout", api.RoleViewer, "", nil)
	var page struct {
		Items []struct {
			Version string `json:"version"`
			Impact  []struct {
				SLO    string                   `json:"slo"`
				Before struct{ Budget float64 } `json:"before"`
				After  struct {
					Bad    float64
					Budget float64
				} `json:"after"`
				Complete bool `json:"complete"`
			} `json:"impact"`
		} `json:"items"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil || resp.StatusCode != 200 {
		t.Fatalf("deploys: %s %v", resp.Status, err)
	}
	resp.Body.Close()
	if len(page.Items) == 0 || page.Items[0].Version != "v3.0.0" {
		t.Fatalf("deploys: %+v", page.Items)
	}
	found := false
	for _, imp := range page.Items[0].Impact {
		if imp.SLO == "checkout-availability" {
			found = true
			if imp.After.Bad <= 0 || imp.After.Budget <= imp.Before.Budget || imp.Complete {
				t.Errorf("checkout-availability after an outage: %+v, want more budget spent after, span running", imp)
			}
		}
	}
	if !found {
		t.Fatalf("no impact on checkout-availability: %+v", page.Items[0].Impact)
	}
	// The incident the outage opened names the deploy before it and what
	// each SLO of checkout spent after it against before.
	id := env.OpenIncident(t)
	resp = env.Do(t, http.MethodGet, fmt.Sprintf("/incidents/%d", id), api.RoleViewer, "", nil)
	page2 := string(uitest.ReadBody(t, resp))
	for _, want := range []string{"The deploy before the incident", "v3.0.0", "<td>checkout-availability</td>", "of the budget in"} {
		if !strings.Contains(page2, want) {
			t.Errorf("incident %d page lacks %q", id, want)
		}
	}
	resp = env.Do(t, http.MethodGet, "/metrics", api.RoleAdmin, "", nil)
	body := string(uitest.ReadBody(t, resp))
	if !strings.Contains(body, `qsp_deploy_budget_consumed{service="checkout",slo="checkout-availability",span="after",version="v3.0.0"}`) {
		t.Errorf("/metrics lacks qsp_deploy_budget_consumed for the deploy:\n%s", grepLines(body, "qsp_deploy"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestEvaluationShowsLastDeploy checks a gate evaluation's page shows the
// service's last deploy and the budget each SLO spent after it.
func TestEvaluationShowsLastDeploy(t *testing.T) {
	env := uitest.Start(t, uitest.Options{Tokens: true})
	env.Deploy(t, "auth", "v2.0.0")
	for range 3 {
		env.Advance(t, uitest.Healthy)
	}
	body := []byte(`{"change": {"kind": "feature", "version": "2.1.0"}, "reports": [{"name": "grype.json", "content": {"matches": [], "source": {"type": "image", "target": {"userInput": "auth:2"}}, "descriptor": {"name": "grype", "version": "0.77.0"}}}]}`)
	resp := env.Do(t, http.MethodPost, "/api/v1/gates/auth-deploy/evaluations", api.RoleOperator, "application/json", body)
	raw := uitest.ReadBody(t, resp)
	var ev struct {
		ID string `json:"id"`
	}
	if resp.StatusCode/100 != 2 || json.Unmarshal(raw, &ev) != nil || ev.ID == "" {
		t.Fatalf("gate evaluation: %s %s", resp.Status, raw)
	}
	resp = env.Do(t, http.MethodGet, "/gates/evaluations/"+ev.ID, api.RoleViewer, "", nil)
	page := string(uitest.ReadBody(t, resp))
	for _, want := range []string{"id=\"last-deploy\"", "v2.0.0", "of the budget in"} {
		if !strings.Contains(page, want) {
			t.Errorf("evaluation %s page lacks %q", ev.ID, want)
		}
	}
}
