package playbook

import (
	"errors"
	"os"
	"strings"
	"testing"
	"unicode/utf8"
)

func testData() *Data {
	return &Data{
		Playbook: "checkout-rollback", Service: "checkout", SLO: "checkout-latency", Key: `checkout-latency{region="eu"}`,
		Group: map[string]string{"region": "eu", "tier": "gold"}, Category: "performance", Event: "firing", Severity: "page",
		Reason: `SLO checkout-latency: page alert "SLOErrorBudgetBurn" firing`, BurnRate: 15.234, Window: "1h", Budget: 0.42,
		Incident: 7, RunID: "0190-run", Action: "rollback", IdempotencyKey: "0190-run/rollback", At: "2026-03-06T10:00:00Z",
	}
}

func TestRender(t *testing.T) {
	env := map[string]string{"QSP_SECRET_TOKEN": "tok-123"}
	secrets := &Secrets{Getenv: func(k string) string { return env[k] }}
	cases := []struct {
		name, text string
		want       string
		redacted   string // the placeholder rendering, if it differs
		err        error
		errText    string
	}{
		{name: "plain", text: "http://x/api", want: "http://x/api"},
		{name: "fields", text: "{{ .Service }}/{{ .Incident }}/{{ .RunID }}", want: "checkout/7/0190-run"},
		{name: "json quotes", text: `{"reason": {{ json .Reason }}}`, want: `{"reason": "SLO checkout-latency: page alert \"SLOErrorBudgetBurn\" firing"}`},
		{name: "functions", text: `{{ upper .Severity }} {{ lower "EU" }} {{ printf "%.1f" .BurnRate }}`, want: "PAGE eu 15.2"},
		{name: "range over the group", text: `{{ range $k, $v := .Group }}{{ $k }}={{ $v }};{{ end }}`, want: "region=eu;tier=gold;"},
		{name: "nested range of two", text: `{{ range .Group }}{{ range .Group }}x{{ end }}{{ end }}`, err: ErrTemplate, errText: "can't evaluate field Group"},
		{name: "secret", text: `Bearer {{ secret "TOKEN" }}`, want: "Bearer tok-123", redacted: "Bearer [secret TOKEN]"},
		{name: "unknown field", text: "{{ .Nope }}", err: ErrTemplate, errText: "can't evaluate field Nope"},
		{name: "syntax", text: "{{ .Service ", err: ErrTemplate, errText: "unclosed action"},
		{name: "define", text: `{{ define "x" }}y{{ end }}`, err: ErrTemplate, errText: "define and block are not allowed"},
		{name: "template call", text: `{{ template "body" . }}`, err: ErrTemplate, errText: "is not allowed"},
		{name: "range over a number", text: `{{ range 1000000000 }}{{ end }}`, err: ErrTemplate, errText: "range may only iterate over .Group"},
		{name: "range over a variable", text: `{{ $n := 1000000000 }}{{ range $n }}{{ end }}`, err: ErrTemplate, errText: "range may only iterate over .Group"},
		{name: "range over an int field", text: `{{ range .Incident }}{{ end }}`, err: ErrTemplate, errText: "range may only iterate over .Group"},
		{name: "ranges three deep", text: `{{ range .Group }}{{ range $.Group }}{{ range $.Group }}{{ end }}{{ end }}{{ end }}`, err: ErrTemplate, errText: "nested more than 2 deep"},
		{name: "too much output", text: strings.Repeat(`{{ printf "%100000d" 1 }}`, 5), err: ErrTemplate, errText: "output too long"},
		{name: "too long a template", text: "{{ .Service }}" + strings.Repeat("x", MaxTemplateBytes), err: ErrTemplate, errText: "at most 16384"},
		{name: "secret not set", text: `{{ secret "MISSING" }}`, err: ErrSecret, errText: "secret MISSING is not set: set QSP_SECRET_MISSING"},
		{name: "secret path traversal", text: `{{ secret "../../etc/passwd" }}`, err: ErrSecret, errText: `a name is letters, digits and _`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := newRenderer(secrets).render("body", c.text, testData())
			if c.err != nil {
				if !errors.Is(err, c.err) || !strings.Contains(err.Error(), c.errText) {
					t.Fatalf("got %q, %v; want an error wrapping %v containing %q", got, err, c.err, c.errText)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("got %q, %v; want %q", got, err, c.want)
			}
			red, err := newRenderer(nil).render("body", c.text, testData())
			want := c.want
			if c.redacted != "" {
				want = c.redacted
			}
			if err != nil || red != want {
				t.Fatalf("placeholder rendering: got %q, %v; want %q", red, err, want)
			}
		})
	}
}

func TestSecretFromFileAndScrub(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir+"/DB_PASSWORD", "pa55\n")
	writeFile(t, dir+"/LONGER", "pa55word")
	r := newRenderer(&Secrets{Dir: dir, Getenv: func(string) string { return "" }})
	got, err := r.render("body", `{{ secret "DB_PASSWORD" }}:{{ secret "LONGER" }}`, testData())
	if err != nil || got != "pa55:pa55word" {
		t.Fatalf("got %q, %v", got, err)
	}
	// The longer secret is replaced whole, not as its prefix.
	if s := r.scrub("echo pa55word and pa55"); s != "echo [secret LONGER] and [secret DB_PASSWORD]" {
		t.Fatalf("scrub: got %q", s)
	}
	if _, err := r.render("body", `{{ secret "NOPE" }}`, testData()); err == nil || !strings.Contains(err.Error(), "create "+dir+"/NOPE") {
		t.Fatalf("missing file: got %v", err)
	}
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// FuzzRenderTemplate renders arbitrary template text on arbitrary data:
// it must return (output or error), never panic or hang, and never exceed
// the output limit.
func FuzzRenderTemplate(f *testing.F) {
	for _, s := range []string{
		`{"rollout": "{{ .Service }}", "reason": "{{ .Reason }}"}`,
		`Bearer {{ secret "ROLLOUTS_TOKEN" }}`,
		`http://127.0.0.1:9099/api/v1/rollouts/{{ .Service }}/rollback?incident={{ .Incident }}`,
		`Rolled back {{ .Service }}: {{ .Reason }} ({{ printf "%.1f" .BurnRate }}x over {{ .Window }})`,
		`{{ range $k, $v := .Group }}{{ $k }}={{ json $v }},{{ end }}`,
		`{{ if gt .BurnRate 10.0 }}{{ upper .Severity }}{{ else }}{{ lower .Event }}{{ end }}`,
		`{{ with .Group.region }}{{ . }}{{ end }}`,
		`{{ range 10 }}x{{ end }}`,
		`{{ define "a" }}{{ template "a" }}{{ end }}{{ template "a" }}`,
		`{{ printf "%1000000d" 1 }}`,
		`{{ index .Group "tier" }} {{ slice .Service 1 3 }} {{ len .Reason }}`,
	} {
		f.Add(s, "checkout", "burn 14.4", 14.4, "region", "eu")
	}
	f.Fuzz(func(t *testing.T, text, service, reason string, burn float64, gk, gv string) {
		if len(text) > 4096 || len(service)+len(reason)+len(gk)+len(gv) > 4096 {
			return
		}
		d := testData()
		d.Service, d.Reason, d.BurnRate = service, reason, burn
		d.Group = map[string]string{gk: gv, gv: gk}
		for _, s := range []*Secrets{nil, {Getenv: func(string) string { return "v" }}} {
			out, err := newRenderer(s).render("fuzz", text, d)
			if err == nil && len(out) > MaxRenderedBytes {
				t.Fatalf("output of %d bytes beyond the limit", len(out))
			}
			if err != nil && !utf8.ValidString(err.Error()) && utf8.ValidString(text) {
				t.Fatalf("error message is not valid UTF-8: %q", err)
			}
		}
	})
}

func TestCheckTemplates(t *testing.T) {
	set := loadSpecs(t, baseSpecs+`
---
apiVersion: qsp/v1
kind: Playbook
metadata: {name: bad}
spec:
  service: search
  trigger: {slo: search-availability, on: [firing]}
  actions:
    - name: call
      webhook:
        url: http://127.0.0.1:9/api/{{ range 5 }}x{{ end }}
        headers: {X-A: '{{ define "x" }}{{ end }}'}
    - name: tell
      notify: {message: 'fine {{ .Service }}'}
  guards: {cooldown: 1m}
`)
	err := CheckTemplates(set.Playbook("bad"))
	if err == nil || !strings.Contains(err.Error(), "spec.actions[0].webhook.url") || !strings.Contains(err.Error(), "spec.actions[0].webhook.headers.X-A") ||
		strings.Contains(err.Error(), "actions[1]") {
		t.Fatalf("got %v", err)
	}
}
