package api_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	oaspec "github.com/go-openapi/spec"
	"github.com/go-openapi/strfmt"
	"github.com/go-openapi/validate"

	"github.com/qsp-dev/qsp/internal/api"
	"github.com/qsp-dev/qsp/internal/ui/uitest"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// openAPIEnv is the whole app over the examples with an incident, a
// deploy, a gate evaluation and events, so that every list has items.
func openAPIEnv(t *testing.T) (*uitest.Env, map[string]any, []byte) {
	t.Helper()
	env := uitest.Start(t, uitest.Options{Tokens: true})
	env.Deploy(t, "checkout", "v1.2.3")
	env.OpenIncident(t)
	body := []byte(`{"change": {"kind": "fix", "version": "1.4.2"},
	  "reports": [{"name": "grype.json", "content": {"matches": [], "source": {"type": "image", "target": {"userInput": "auth:1"}}, "descriptor": {"name": "grype", "version": "0.77.0"}}}]}`)
	resp := env.Do(t, http.MethodPost, "/api/v1/gates/auth-deploy/evaluations", api.RoleOperator, "application/json", body)
	if b := uitest.ReadBody(t, resp); resp.StatusCode/100 != 2 {
		t.Fatalf("gate evaluation: %s: %s", resp.Status, b)
	}
	resp = env.Do(t, http.MethodGet, "/api/v1/openapi.json", api.RoleNone, "", nil)
	raw := uitest.ReadBody(t, resp)
	if resp.StatusCode != 200 {
		t.Fatalf("openapi.json: %s", resp.Status)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	return env, doc, raw
}

// TestOpenAPI checks the document against the server: every route under
// /api/v1/ is documented with its method, every documented operation is
// served, each names the role the route table gives it, and real answers
// of many routes validate against their schemas (go-openapi/validate, an
// independent JSON Schema validator). The document is compared with the
// golden file testdata/openapi.json (-update rewrites it).
func TestOpenAPI(t *testing.T) {
	env, doc, raw := openAPIEnv(t)
	if doc["openapi"] != "3.1.0" {
		t.Errorf("openapi %v", doc["openapi"])
	}
	paths, _ := doc["paths"].(map[string]any)
	documented := map[string]map[string]any{}
	for p, item := range paths {
		for m, op := range item.(map[string]any) {
			documented[strings.ToUpper(m)+" "+p] = op.(map[string]any)
		}
	}
	registered := map[string]api.Route{}
	for _, rt := range env.App.Routes() {
		if strings.HasPrefix(rt.Path(), "/api/v1/") {
			registered[rt.Pattern] = rt
		}
	}
	if len(registered) < 25 {
		t.Fatalf("only %d API routes registered", len(registered))
	}
	for pattern, rt := range registered {
		op, ok := documented[pattern]
		if !ok {
			t.Errorf("route %s is not in the OpenAPI document", pattern)
			continue
		}
		if op["x-qsp-role"] != string(rt.Role) {
			t.Errorf("%s: x-qsp-role %v, the route table says %s", pattern, op["x-qsp-role"], rt.Role)
		}
		if op["summary"] == "" {
			t.Errorf("%s: no summary", pattern)
		}
		// Every path parameter is declared.
		for _, seg := range strings.Split(rt.Path(), "/") {
			if strings.HasPrefix(seg, "{") {
				name := strings.Trim(seg, "{}")
				if !slices.ContainsFunc(params(op), func(p map[string]any) bool { return p["name"] == name && p["in"] == "path" }) {
					t.Errorf("%s: path parameter %s is not documented", pattern, name)
				}
			}
		}
	}
	for pattern := range documented {
		if _, ok := registered[pattern]; !ok {
			t.Errorf("the document has %s, which the server does not serve", pattern)
		}
	}

	// Answers against the schemas.
	for _, tc := range []struct{ pattern, path string }{
		{"GET /api/v1/slos", "/api/v1/slos?limit=10000"},
		{"GET /api/v1/slos/{name}", "/api/v1/slos/checkout-handler-availability"},
		{"GET /api/v1/slos/{name}/history", "/api/v1/slos/checkout-availability/history?step=10m"},
		{"GET /api/v1/services", "/api/v1/services"},
		{"GET /api/v1/services/{name}", "/api/v1/services/checkout"},
		{"GET /api/v1/whoami", "/api/v1/whoami"},
		{"GET /api/v1/alerts", "/api/v1/alerts"},
		{"GET /api/v1/incidents", "/api/v1/incidents"},
		{"GET /api/v1/incidents/{id}", "/api/v1/incidents/1"},
		{"GET /api/v1/incidents/stats", "/api/v1/incidents/stats"},
		{"GET /api/v1/decisions", "/api/v1/decisions"},
		{"GET /api/v1/deploys", "/api/v1/deploys"},
		{"GET /api/v1/gates", "/api/v1/gates"},
		{"GET /api/v1/gates/{name}", "/api/v1/gates/checkout-deploy"},
		{"GET /api/v1/gates/evaluations", "/api/v1/gates/evaluations"},
		{"GET /api/v1/playbooks", "/api/v1/playbooks"},
		{"GET /api/v1/playbooks/runs", "/api/v1/playbooks/runs"},
		{"GET /api/v1/playbooks/killswitch", "/api/v1/playbooks/killswitch"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			resp := env.Do(t, http.MethodGet, tc.path, api.RoleAdmin, "", nil)
			body := uitest.ReadBody(t, resp)
			if resp.StatusCode != 200 {
				t.Fatalf("%s: %s", resp.Status, body)
			}
			checkAgainst(t, doc, documented[tc.pattern], "200", body)
		})
	}
	// The validator does catch answers that do not fit: a state that is
	// a number, a missing required field, a time that is not a time.
	resp0 := env.Do(t, http.MethodGet, "/api/v1/slos", api.RoleViewer, "", nil)
	good := uitest.ReadBody(t, resp0)
	for name, bad := range map[string][]byte{
		"state a number":  bytes.Replace(good, []byte(`"state":"`), []byte(`"state":7,"x":"`), 1),
		"no total":        bytes.Replace(good, []byte(`"total":`), []byte(`"totl":`), 1),
		"time not a time": bytes.Replace(good, []byte(`"evaluatedAt":"`), []byte(`"evaluatedAt":"yesterday`), 1),
	} {
		if bytes.Equal(bad, good) {
			t.Fatalf("%s: the mutation did not apply", name)
		}
		if validateAnswer(doc, documented["GET /api/v1/slos"], "200", bad) == nil {
			t.Errorf("%s: the validator accepted it", name)
		}
	}
	// Errors are {"error": ...} as documented.
	for _, tc := range []struct{ pattern, path, status string }{
		{"GET /api/v1/slos/{name}", "/api/v1/slos/nope", "404"},
		{"GET /api/v1/slos", "/api/v1/slos?category=speed", "400"},
	} {
		resp := env.Do(t, http.MethodGet, tc.path, api.RoleViewer, "", nil)
		body := uitest.ReadBody(t, resp)
		if fmt.Sprint(resp.StatusCode) != tc.status {
			t.Fatalf("%s: %s", tc.path, resp.Status)
		}
		checkAgainst(t, doc, documented[tc.pattern], tc.status, body)
	}
	// The events API's answer, documented from a copy of its wire type.
	resp := env.Do(t, http.MethodPost, "/api/v1/events", api.RoleIngest, "application/json",
		[]byte(`{"events": [{"type": "counts", "service": "checkout", "sli": "orders", "good": 5, "bad": 1}]}`))
	body := uitest.ReadBody(t, resp)
	if resp.StatusCode != 200 {
		t.Fatalf("events: %s %s", resp.Status, body)
	}
	checkAgainst(t, doc, documented["POST /api/v1/events"], "200", body)

	golden := filepath.Join("testdata", "openapi.json")
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, raw, "", "  "); err != nil {
		t.Fatal(err)
	}
	pretty.WriteByte('\n')
	if *update {
		uitest.Write(t, golden, pretty.Bytes())
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to write it)", err)
	}
	if !bytes.Equal(pretty.Bytes(), want) {
		t.Errorf("the OpenAPI document differs from %s; review the change and run go test ./internal/api -run TestOpenAPI -update", golden)
	}
}

func params(op map[string]any) []map[string]any {
	var out []map[string]any
	ps, _ := op["parameters"].([]any)
	for _, p := range ps {
		out = append(out, p.(map[string]any))
	}
	return out
}

// checkAgainst validates a JSON answer against the schema the operation
// documents for status.
func checkAgainst(t *testing.T, doc, op map[string]any, status string, body []byte) {
	t.Helper()
	if err := validateAnswer(doc, op, status, body); err != nil {
		msgs := strings.Split(err.Error(), "\n")
		sort.Strings(msgs)
		t.Errorf("answer does not match the schema:\n%s\nanswer: %.600s", strings.Join(msgs[:min(len(msgs), 15)], "\n"), body)
	}
}

func validateAnswer(doc, op map[string]any, status string, body []byte) error {
	if op == nil {
		return fmt.Errorf("operation not documented")
	}
	r, _ := op["responses"].(map[string]any)[status].(map[string]any)
	if r == nil {
		return fmt.Errorf("status %s is not documented", status)
	}
	schema := r["content"].(map[string]any)["application/json"].(map[string]any)["schema"]
	sb, _ := json.Marshal(schema)
	var s oaspec.Schema
	if err := json.Unmarshal(sb, &s); err != nil {
		return err
	}
	if err := oaspec.ExpandSchema(&s, doc, nil); err != nil {
		return fmt.Errorf("expand schema: %w", err)
	}
	var data any
	if err := json.Unmarshal(body, &data); err != nil {
		return fmt.Errorf("answer is not JSON: %w", err)
	}
	return validate.AgainstSchema(&s, data, strfmt.Default)
}

// TestOpenAPIDocumentsEveryRouteOfTheTable: every API route in the role
// table has documentation, so that a route added to one table and not
// the other fails here, even when its component is off.
func TestOpenAPIDocumentsEveryRouteOfTheTable(t *testing.T) {
	var routes []api.Route
	for _, p := range api.RulePatterns() {
		routes = append(routes, api.Route{Pattern: p})
	}
	if _, err := api.Document(routes); err != nil {
		t.Error(err)
	}
}
