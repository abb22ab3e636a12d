package app_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/qsp-dev/qsp/internal/api"
	"github.com/qsp-dev/qsp/internal/ui/uitest"
)

// TestPrometheusDataSource probes /prometheus the way Grafana's
// Prometheus data source does with a token (its root, buildinfo, labels,
// a query, label values), then sends a burst of queries as a dashboard
// or a backfilling client does: with a token they are answered beyond
// the API's anonymous limit; without one, the limit holds.
func TestPrometheusDataSource(t *testing.T) {
	env := uitest.Start(t, uitest.Options{Tokens: true})
	for _, tc := range []struct {
		method, path, want string
	}{
		{http.MethodGet, "/prometheus", "Grafana Prometheus data source"},
		{http.MethodGet, "/prometheus/", "/prometheus/api/v1/"},
		{http.MethodGet, "/prometheus/api/v1/status/buildinfo", `"version"`},
		{http.MethodGet, "/prometheus/api/v1/labels", `"__name__"`},
		{http.MethodGet, "/prometheus/api/v1/label/__name__/values", `"status":"success"`},
		{http.MethodPost, "/prometheus/api/v1/query?query=1%2B1", `"2"`},
		{http.MethodGet, "/prometheus/api/v1/metadata", `"status":"success"`},
	} {
		resp := env.Do(t, tc.method, tc.path, api.RoleViewer, "", nil)
		body := string(uitest.ReadBody(t, resp))
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, tc.want) {
			t.Errorf("%s %s: %d %.200s; want 200 with %s", tc.method, tc.path, resp.StatusCode, body, tc.want)
		}
	}
	// Without a token the root needs one, as the rest of the API does.
	if resp := env.Do(t, http.MethodGet, "/prometheus", api.RoleNone, "", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("anonymous /prometheus: %d, want 401", resp.StatusCode)
	}
	// The API's default limit is a burst of 200; the query API's for a
	// token 2000.
	for i := range 400 {
		resp := env.Do(t, http.MethodGet, "/prometheus/api/v1/query?query=up", api.RoleViewer, "", nil)
		uitest.ReadBody(t, resp)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("query %d of a burst with a token: %d, want 200", i, resp.StatusCode)
		}
	}
}
