package api_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/qsp-dev/qsp/internal/api"
	"github.com/qsp-dev/qsp/internal/ui/uitest"
)

// TestReports reads the month's report and an incident's postmortem
// draft from the real app in each format, checks the JSON against the
// OpenAPI document, and bad parameters against their errors.
func TestReports(t *testing.T) {
	env, doc, _ := openAPIEnv(t)
	// openAPIEnv deployed checkout v1.2.3 and opened incident 1.
	const id = 1
	month := env.Clock.Now().UTC().Format("2006-01")
	op := func(pattern string) map[string]any {
		method, path, _ := strings.Cut(pattern, " ")
		return doc["paths"].(map[string]any)[path].(map[string]any)[strings.ToLower(method)].(map[string]any)
	}
	get := func(path string, role api.Role) (int, string, []byte) {
		resp := env.Do(t, http.MethodGet, path, role, "", nil)
		return resp.StatusCode, resp.Header.Get("Content-Type"), uitest.ReadBody(t, resp)
	}

	status, _, body := get("/api/v1/reports?period="+month, api.RoleViewer)
	if status != 200 {
		t.Fatalf("report: %d %s", status, body)
	}
	checkAgainst(t, doc, op("GET /api/v1/reports"), "200", body)
	if !strings.Contains(string(body), `"key":"checkout-availability"`) || !strings.Contains(string(body), `"ref":"deploy checkout v1.2.3"`) {
		t.Errorf("report lacks checkout-availability or its deploy: %.2000s", body)
	}
	status, _, body = get(fmt.Sprintf("/api/v1/incidents/%d/postmortem?format=json", id), api.RoleViewer)
	if status != 200 {
		t.Fatalf("postmortem: %d %s", status, body)
	}
	checkAgainst(t, doc, op("GET /api/v1/incidents/{id}/postmortem"), "200", body)

	for _, c := range []struct {
		path, contentType, contains string
	}{
		{"/api/v1/reports?format=md&period=" + month, "text/markdown; charset=utf-8", "## Attainment"},
		{"/api/v1/reports?format=html&service=checkout&period=" + month, "text/html; charset=utf-8", "<svg class=\"chart\""},
		{fmt.Sprintf("/api/v1/incidents/%d/postmortem", id), "text/markdown; charset=utf-8", "## Open questions"},
	} {
		status, ct, body := get(c.path, api.RoleViewer)
		if status != 200 || ct != c.contentType || !strings.Contains(string(body), c.contains) {
			t.Errorf("%s: %d %s, want 200 %s with %q: %.500s", c.path, status, ct, c.contentType, c.contains, body)
		}
	}

	for _, c := range []struct {
		path   string
		status int
		msg    string
	}{
		{"/api/v1/reports", 400, "period: required"},
		{"/api/v1/reports?period=2026-13", 400, "want a month, YYYY-MM"},
		{"/api/v1/reports?period=2999-01", 400, "it has not begun"},
		{"/api/v1/reports?period=" + month + "&format=docx", 400, `docx\": want json, md, html or pdf`},
		{"/api/v1/reports?period=" + month + "&service=nope", 404, `nope\": no such service`},
		{"/api/v1/reports?period=" + month + "&service=" + strings.Repeat("x", 300), 400, "service: longer than"},
		{"/api/v1/incidents/0/postmortem", 400, "want a positive integer"},
		{"/api/v1/incidents/99999/postmortem", 404, "incident 99999"},
		{fmt.Sprintf("/api/v1/incidents/%d/postmortem?format=pdf", id), 400, `pdf\": want md or json`},
	} {
		status, _, body := get(c.path, api.RoleViewer)
		if status != c.status || !strings.Contains(string(body), c.msg) {
			t.Errorf("%s: %d %s, want %d with %q", c.path, status, body, c.status, c.msg)
		}
	}
	// Reports are for viewers and up, never anonymous.
	if status, _, _ := get("/api/v1/reports?period="+month, api.RoleNone); status != 401 {
		t.Errorf("anonymous report: %d, want 401", status)
	}
}
