package kube

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/yaml"

	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/slo"
	"github.com/qsp-dev/qsp/internal/spec"
)

func obj(t *testing.T, doc string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := yaml.NewYAMLOrJSONDecoder(strings.NewReader(doc), 4096).Decode(&u.Object); err != nil {
		t.Fatal(err)
	}
	u.SetUID(types.UID(u.GetNamespace() + "/" + u.GetName()))
	u.SetGeneration(1)
	return u
}

func res(t *testing.T, name string) resource {
	t.Helper()
	r, err := resourceOf(name)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

const sloDoc = `apiVersion: qsp.dev/v1alpha1
kind: SLO
metadata: {name: %s, namespace: %s}
spec:
  service: %s
  category: quality
  objective: %s
  window: 30d
  indicator:
    ratio:
      bad: sum(rate(req_total{code="500"}[{{.window}}]))
      total: sum(rate(req_total[{{.window}}]))
`

func sloU(t *testing.T, name, ns, service, objective string) watched {
	return watched{res(t, spec.KindSLO), obj(t, sprintf(sloDoc, name, ns, service, objective))}
}

func svcU(t *testing.T, name, ns, owner string) watched {
	return watched{res(t, spec.KindService), obj(t, sprintf("apiVersion: qsp.dev/v1alpha1\nkind: Service\nmetadata: {name: %s, namespace: %s}\nspec: {owner: %q}\n", name, ns, owner))}
}

// TestLoadLeavesOutInvalid checks that each invalid object is left out
// with its own message, that objects depending on a left-out one follow
// it, and that the rest loads.
func TestLoadLeavesOutInvalid(t *testing.T) {
	objs := []watched{
		svcU(t, "shop", "a", "team"),
		sloU(t, "shop-ok", "a", "shop", "99"),
		sloU(t, "shop-bad", "a", "shop", "100"),
		// A Service without owner is invalid, and so the SLO naming it.
		svcU(t, "orphan", "b", ""),
		sloU(t, "orphan-slo", "b", "orphan", "99"),
		// The same name in another namespace: names are unique in QSP.
		sloU(t, "shop-ok", "c", "shop", "99"),
	}
	result, set, diags := load(nil, objs, time.Unix(0, 0))
	if result == nil || diags.HasErrors() {
		t.Fatalf("got diags %v, want a load", diags)
	}
	var names []string
	for _, s := range set.SLOs {
		names = append(names, s.Name())
	}
	if strings.Join(names, ",") != "shop-ok" || set.Service("shop") == nil || set.Service("orphan") != nil {
		t.Errorf("got SLOs %v, services %d; want shop-ok and the shop service", names, len(set.Services))
	}
	for _, c := range []struct {
		uid, want string
	}{
		{"a/shop-ok", ""},
		{"a/shop-bad", "SLO/shop-bad: spec.objective: objective 100% is out of range"},
		{"b/orphan", "Service/orphan: spec.owner: "},
		{"b/orphan-slo", "SLO/orphan-slo: spec.service: "},
		{"c/shop-ok", "SLO/shop-ok: metadata.name: duplicate name"},
	} {
		or := result.objects[types.UID(c.uid)]
		if or == nil {
			t.Fatalf("%s: no result", c.uid)
		}
		if c.want == "" {
			if !or.valid {
				t.Errorf("%s: got invalid %q, want valid", c.uid, or.message)
			}
			continue
		}
		if or.valid || !strings.HasPrefix(or.message, c.want) {
			t.Errorf("%s: got valid=%v %q, want a message starting %q", c.uid, or.valid, or.message, c.want)
		}
	}
	if or := result.bySLO["shop-ok"]; or == nil || or.uid != "a/shop-ok" {
		t.Errorf("shop-ok belongs to %v, want a/shop-ok", or)
	}
}

// TestLoadSameMessagesAsFiles: the message on the resource is the one
// spec.LoadBytes gives for the same object in a file.
func TestLoadSameMessagesAsFiles(t *testing.T) {
	w := sloU(t, "x", "a", "nowhere", "99")
	result, _, _ := load(nil, []watched{w}, time.Now())
	got := result.objects["a/x"].message
	doc, _ := w.res.document(w.u)
	_, diags := spec.LoadBytes("x.yaml", doc)
	var want []string
	for _, d := range diags.Errors() {
		want = append(want, message(d))
	}
	if got != strings.Join(want, "; ") || got == "" {
		t.Errorf("got %q, want %q", got, strings.Join(want, "; "))
	}
}

func TestLoadFileErrorsRefuse(t *testing.T) {
	result, _, diags := load([]string{"/nonexistent/specs"}, []watched{svcU(t, "shop", "a", "team")}, time.Now())
	if result != nil || !diags.HasErrors() {
		t.Fatalf("got result %v, diags %v; want the files' error", result, diags)
	}
}

func TestDocumentForeignKeepsItsFormat(t *testing.T) {
	u := obj(t, `apiVersion: sloth.slok.dev/v1
kind: PrometheusServiceLevel
metadata:
  name: catalog
  namespace: a
  annotations: {kubectl.kubernetes.io/last-applied-configuration: "{}", team: x}
spec: {service: catalog, slos: []}
`)
	b, err := res(t, KindSloth).document(u)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if !strings.Contains(s, "apiVersion: sloth.slok.dev/v1") || strings.Contains(s, "last-applied") || !strings.Contains(s, "team: x") {
		t.Errorf("got\n%s", s)
	}
	q, _ := res(t, spec.KindSLO).document(obj(t, "apiVersion: qsp.dev/v1alpha1\nkind: SLO\nmetadata: {name: x, namespace: a, labels: {app.kubernetes.io/name: y}, annotations: {qsp.dev/display-name: Checkout}}\nspec: {service: s}\n"))
	if qs := string(q); !strings.Contains(qs, "apiVersion: qsp/v1") || !strings.Contains(qs, "displayName: Checkout") || strings.Contains(qs, "app.kubernetes.io") {
		t.Errorf("got\n%s", qs)
	}
}

func TestResourceOfUnknown(t *testing.T) {
	if _, err := resourceOf("Deployment"); err == nil || !strings.Contains(err.Error(), "want one of") {
		t.Errorf("got %v", err)
	}
}

func TestSLOStatus(t *testing.T) {
	sli := 0.99
	set, diags := spec.LoadBytes("x.yaml", []byte(strings.Replace(sprintf(strings.Replace(sloDoc, "apiVersion: qsp.dev/v1alpha1", "apiVersion: qsp/v1", 1), "x", "a", "s", "98"), ", namespace: a", "", 1)+"---\napiVersion: qsp/v1\nkind: Service\nmetadata: {name: s}\nspec: {owner: t}\n"))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	now := time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC)
	st := &engine.Status{SLO: "x", State: engine.StateOK, EvaluatedAt: now, SLI: &sli,
		Budget: slo.Budget{Total: 1000, RemainingRatio: 0.5},
		Alerts: []engine.AlertStatus{{Severity: "page", State: slo.Inactive, Conditions: []slo.ConditionResult{
			{Condition: slo.BurnCondition{Long: time.Hour, Short: 5 * time.Minute, Factor: 14.4}, LongBurn: 2, ShortBurn: 0.123456},
		}}}}
	got := sloStatus([]*engine.Status{st}, set.SLO("x"))
	if got.State != "ok" || got.Budget != "50.0%" || *got.BudgetRemaining != 0.5 || *got.SLI != 0.99 || got.LastEvaluation != "2026-12-07T06:00:00Z" {
		t.Errorf("got %+v", got)
	}
	if len(got.BurnRates) != 2 || got.BurnRates[0].Window != "1h" || got.BurnRates[1].Rate != 0.12 {
		t.Errorf("burn rates: got %+v", got.BurnRates)
	}
	// Half of a 30d budget at twice the sustainable rate lasts 7.5d.
	if got.BudgetExhaustion != "7d12h" {
		t.Errorf("exhaustion: got %q, want 7d12h", got.BudgetExhaustion)
	}
	if u := sloStatus(nil, nil); u.State != "unknown" {
		t.Errorf("no status: got %+v", u)
	}
}

func TestSignificantIgnoresTimes(t *testing.T) {
	a := map[string]any{"state": "ok", "lastEvaluation": "t1", "conditions": []any{map[string]any{"type": "Valid", "status": "True", "lastTransitionTime": "t1"}}}
	b := map[string]any{"state": "ok", "lastEvaluation": "t2", "conditions": []any{map[string]any{"type": "Valid", "status": "True", "lastTransitionTime": "t2"}}}
	if significant(a) != significant(b) {
		t.Error("times made a change")
	}
	b["state"] = "firing"
	if significant(a) == significant(b) {
		t.Error("a state change was not a change")
	}
}

func TestWithNulls(t *testing.T) {
	got := withNulls(map[string]any{"sli": 0.9, "alerts": map[string]any{"page": "firing", "ticket": "inactive"}},
		map[string]any{"alerts": map[string]any{"page": "inactive"}})
	if _, ok := got["sli"]; !ok || got["sli"] != nil {
		t.Errorf("sli: got %v, want null", got)
	}
	if al := got["alerts"].(map[string]any); al["ticket"] != nil || al["page"] != "inactive" {
		t.Errorf("alerts: got %v", al)
	}
}

func TestCamelAndCoarse(t *testing.T) {
	if camel("no_data")+camel("firing") != "NoDataFiring" {
		t.Error(camel("no_data"))
	}
	for _, c := range []struct {
		d    time.Duration
		want string
	}{{50*time.Hour + 17*time.Minute, "2d2h"}, {90*time.Minute + 20*time.Second, "1h30m"}, {100 * time.Second, "1m40s"}} {
		if got := coarse(c.d).String(); got != c.want {
			t.Errorf("coarse(%s): got %s, want %s", c.d, got, c.want)
		}
	}
}

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }

// TestLoadLeavesOutUncompilablePolicy checks that a Policy resource whose
// Rego does not compile is marked invalid with OPA's message, and that the
// other resources, a valid Policy among them, still load.
func TestLoadLeavesOutUncompilablePolicy(t *testing.T) {
	pol := func(name, rego string) watched {
		return watched{res(t, spec.KindPolicy), obj(t, sprintf("apiVersion: qsp.dev/v1alpha1\nkind: Policy\nmetadata: {name: %s, namespace: a}\nspec:\n  appliesTo: [gate]\n  rego: |\n%s", name, indent(rego)))}
	}
	objs := []watched{
		svcU(t, "shop", "a", "team"),
		sloU(t, "shop-ok", "a", "shop", "99"),
		pol("good", "package team.good\n\ndeny contains msg if {\n  input.service.tier == 1\n  msg := \"no\"\n}\n"),
		pol("broken", "package team.broken\n\ndeny contains msg if {\n  msg := undefined_function(1)\n}\n"),
	}
	result, set, diags := load(nil, objs, time.Unix(0, 0))
	if result == nil || diags.HasErrors() {
		t.Fatalf("got diags %v, want a load", diags)
	}
	var pols []string
	for _, p := range set.Policies {
		pols = append(pols, p.Name())
	}
	if fmt.Sprint(pols) != "[good]" {
		t.Errorf("policies loaded: got %v, want [good]", pols)
	}
	if set.SLO("shop-ok") == nil {
		t.Errorf("the SLO shop-ok did not load beside the broken policy")
	}
	for _, or := range result.objects {
		switch or.name {
		case "broken":
			if or.valid || !strings.Contains(or.message, "Policy/broken") || !strings.Contains(or.message, "undefined_function") {
				t.Errorf("broken: got valid=%v message %q, want invalid naming the policy and OPA's error", or.valid, or.message)
			}
		default:
			if !or.valid {
				t.Errorf("%s: got invalid (%s), want valid", or.name, or.message)
			}
		}
	}
}

func indent(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString("    " + l + "\n")
	}
	return b.String()
}
