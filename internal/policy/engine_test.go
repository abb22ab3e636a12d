package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	opametrics "github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/qsp-dev/qsp/internal/spec"
)

// userPolicy builds a Policy as the spec loader would: Source holds the
// module text.
func userPolicy(name, source string, mods ...func(*spec.Policy)) *spec.Policy {
	p := &spec.Policy{Spec: spec.PolicySpec{Rego: source, Source: source}}
	p.APIVersion, p.Kind, p.Metadata.Name = spec.APIVersion, spec.KindPolicy, name
	for _, m := range mods {
		m(p)
	}
	return p
}

func appliesTo(points ...string) func(*spec.Policy) {
	return func(p *spec.Policy) { p.Spec.AppliesTo = points }
}

func withData(d map[string]any) func(*spec.Policy) {
	return func(p *spec.Policy) { p.Spec.Data = d }
}

// fromFile makes the policy a path policy declared in specFile at line.
func fromFile(specFile, path string, line int) func(*spec.Policy) {
	return func(p *spec.Policy) {
		p.Spec.Rego, p.Spec.Path = "", path
		o := p.Where()
		o.File, o.Line, o.Column = specFile, line, 1
	}
}

// inlineAt makes the policy an inline policy declared in specFile at line.
func inlineAt(specFile string, line int) func(*spec.Policy) {
	return func(p *spec.Policy) {
		o := p.Where()
		o.File, o.Line, o.Column = specFile, line, 1
	}
}

// fridayFeatures is the example of the README.
const fridayFeatures = `package team.release

deny contains msg if {
  input.change.kind == "feature"
  day := time.weekday(time.now_ns())
  day in data.qsp.params.days
  msg := sprintf("no features on %s: %s waits until Monday", [day, input.change.version])
}
`

func TestUserPolicies(t *testing.T) {
	cases := []struct {
		name   string
		policy *spec.Policy
		in     Input
		result Result
		want   []Reason
	}{
		{
			name:   "README example denies on the configured day",
			policy: userPolicy("no-friday-features", fridayFeatures, withData(map[string]any{"days": []any{"Friday"}})),
			in:     gateInput(),
			result: Deny,
			want:   []Reason{deny("no-friday-features", "no features on Friday: 1.4.2 waits until Monday")},
		},
		{
			name:   "README example passes on other days",
			policy: userPolicy("no-friday-features", fridayFeatures, withData(map[string]any{"days": []any{"Saturday"}})),
			in:     gateInput(),
			result: Allow,
			want:   []Reason{info("no-friday-features", "passed: no deny or warn")},
		},
		{
			name: "warn objects with msg",
			policy: userPolicy("tier0-care", `package team.care
warn contains {"msg": sprintf("tier %d service %s: page the owner before deploying", [input.service.tier, input.service.name]), "code": 7} if {
	input.service.tier <= 1
}`),
			in:     gateInput(),
			result: Warn,
			want:   []Reason{warn("tier0-care", "tier 1 service checkout: page the owner before deploying")},
		},
		{
			name: "deny, warn and info together, each sorted",
			policy: userPolicy("all-levels", `package team.levels
deny contains "b denied"
deny contains "a denied"
warn contains "w"
info contains "i"`),
			in:     gateInput(),
			result: Deny,
			want: []Reason{deny("all-levels", "a denied"), deny("all-levels", "b denied"),
				warn("all-levels", "w"), info("all-levels", "i")},
		},
		{
			name:   "a boolean deny is not a silent pass",
			policy: userPolicy("bool", "package team.b\ndeny if input.change.kind == \"feature\""),
			in:     gateInput(),
			result: Deny,
			want:   []Reason{deny("bool", "deny is true")},
		},
		{
			name:   "a false boolean deny passes",
			policy: userPolicy("bool", "package team.b\ndefault deny := false\ndeny if input.change.kind == \"fix\""),
			in:     gateInput(),
			result: Allow,
			want:   []Reason{info("bool", "passed: no deny or warn")},
		},
		{
			name: "params are the policy's own data",
			policy: userPolicy("max-tier", `package team.tier
deny contains sprintf("tier %d is below %d", [input.service.tier, data.qsp.params.min_tier]) if input.service.tier < data.qsp.params.min_tier`,
				withData(map[string]any{"min_tier": 2})),
			in:     gateInput(),
			result: Deny,
			want:   []Reason{deny("max-tier", "tier 1 is below 2")},
		},
		{
			name: "built-ins can be imported",
			policy: userPolicy("strict-freeze", `package team.strict
import data.qsp.builtin.error_budget
deny contains concat("", ["even fixes wait: ", why]) if {
	input.change.kind == "fix"
	some why in error_budget.blockers
}`),
			in:     gateInput(kind(ChangeFix, "1.4.3"), setSLO("checkout-waf", both(spent(-0.5), step(1, spec.ActionFreeze, "")))),
			result: Deny,
			want: []Reason{deny("strict-freeze", "even fixes wait: SLO checkout-waf has consumed 150.0% of its error budget "+
				"(budget policy: freeze at 100.0%)")},
		},
		{
			name: "time.now_ns and input.now are the engine's clock",
			policy: userPolicy("clock", `package team.clock
info contains sprintf("%d", [time.now_ns()])
info contains input.now`),
			in:     gateInput(),
			result: Allow,
			want: []Reason{
				info("clock", fmt.Sprint(testNow.UnixNano())),
				info("clock", testNow.Format(time.RFC3339Nano)),
			},
		},
		{
			name: "playbook input",
			policy: userPolicy("no-dry-run-scale", `package team.pb
deny contains sprintf("%s: %s from %s may not scale", [input.playbook, input.action.name, input.trigger.slo]) if {
	input.point == "playbook"
	input.action.kind == "scale"
	not input.action.dry_run
}`),
			in: playbookInput(func(in *Input) {
				in.Action = &Action{Name: "scale-out", Kind: "scale"}
				in.Trigger.Category = spec.Performance
			}),
			result: Deny,
			want:   []Reason{deny("no-dry-run-scale", "shed-bot-traffic: scale-out from checkout-waf may not scale")},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEngine(t, Options{Policies: []*spec.Policy{tc.policy}})
			d, err := e.Evaluate(context.Background(), tc.in)
			if err != nil {
				t.Fatalf("Evaluate: %v", err)
			}
			var got []Reason
			for _, r := range d.Reasons {
				if r.Policy == tc.policy.Name() {
					got = append(got, r)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("reasons:\ngot  %s\nwant %s", reasonLines(got), reasonLines(tc.want))
			}
			if d.Result != tc.result {
				t.Errorf("result: got %s, want %s (reasons: %s)", d.Result, tc.result, reasonLines(d.Reasons))
			}
			if last := d.Policies[len(d.Policies)-1]; last != tc.policy.Name() {
				t.Errorf("policies consulted: got %v, want %s last", d.Policies, tc.policy.Name())
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	cases := []struct {
		name     string
		policies []*spec.Policy
		opts     Options
		// want is a regexp every error string must match, one per
		// expected problem.
		want []string
		// module, when set, is the first *ModuleError's expected fields.
		module *ModuleError
	}{
		{
			name: "parse error in a .rego file",
			policies: []*spec.Policy{userPolicy("bad", "package team.bad\n\ndeny[msg] {\n  msg := 1\n}\n",
				fromFile("specs/policies.yaml", "policies/bad.rego", 4))},
			want:   []string{`^policy "bad": specs/policies/bad\.rego:3:1: rego_parse_error: `},
			module: &ModuleError{Policy: "bad", File: "specs/policies/bad.rego", Line: 3, Column: 1, Code: "rego_parse_error"},
		},
		{
			name: "parse error in inline rego",
			policies: []*spec.Policy{userPolicy("inline", "package team.inline\n\ndeny contains msg if {\n  msg := \n}\n",
				inlineAt("specs/policies.yaml", 10))},
			want:   []string{`^policy "inline": specs/policies\.yaml:1[45] \(rego line [45], column \d+\): rego_parse_error: `},
			module: nil,
		},
		{
			name:     "parse error without a file",
			policies: []*spec.Policy{userPolicy("nofile", "package team.x\ndeny contains if")},
			want:     []string{`^policy "nofile": rego line 2, column \d+: rego_parse_error: `},
		},
		{
			name:     "http.send is refused at compile time",
			policies: []*spec.Policy{userPolicy("exfil", "package team.exfil\n\ndeny contains r.body if {\n  r := http.send({\"method\": \"get\", \"url\": \"http://127.0.0.1:1/\"})\n}\n", fromFile("", "exfil.rego", 0))},
			want:     []string{`^policy "exfil": exfil\.rego:4:\d+: rego_type_error: undefined function http\.send$`},
			module:   &ModuleError{Policy: "exfil", File: "exfil.rego", Line: 4, Code: "rego_type_error", Message: "undefined function http.send"},
		},
		{
			name:     "opa.runtime is refused (environment variables)",
			policies: []*spec.Policy{userPolicy("env", "package team.env\n\ninfo contains opa.runtime().env.HOME\n")},
			want:     []string{`^policy "env": rego line 3, column \d+: rego_type_error: undefined function opa\.runtime$`},
		},
		{
			name:     "net.* is refused",
			policies: []*spec.Policy{userPolicy("dns", "package team.dns\n\ninfo contains sprintf(\"%v\", [net.lookup_ip_addr(\"example.com\")])\n")},
			want:     []string{`rego_type_error: undefined function net\.lookup_ip_addr$`},
		},
		{
			name:     "a typo in an input field is a type error, not a silent pass",
			policies: []*spec.Policy{userPolicy("typo", "package team.typo\n\ndeny contains \"no\" if {\n  input.chnage.kind == \"feature\"\n}\n")},
			want:     []string{`^policy "typo": rego line 4, column 3: rego_type_error: undefined ref: input\.chnage\.kind$`},
		},
		{
			name:     "a typo in a nested field",
			policies: []*spec.Policy{userPolicy("typo", "package team.typo\n\ndeny contains s.name if {\n  some s in input.slos\n  s.budget_remaning < 0\n}\n")},
			want:     []string{`^policy "typo": rego line 5, column 3: rego_type_error: undefined ref: s\.budget_remaning$`},
		},
		{
			name:     "reserved package",
			policies: []*spec.Policy{userPolicy("sneaky", "package qsp.builtin.error_budget\n\ndeny := set()\n")},
			want:     []string{`^policy "sneaky": rego line 1, column 1: package qsp\.builtin\.error_budget is reserved for QSP; use a package outside data\.qsp$`},
		},
		{
			name: "two policies in one package",
			policies: []*spec.Policy{
				userPolicy("first", "package team.same\nwarn contains \"a\""),
				userPolicy("second", "package team.same\nwarn contains \"b\""),
			},
			want: []string{`^policy "second": rego line 1, column 1: package team\.same is also the package of policy "first"; each policy needs its own package$`},
		},
		{
			name:     "built-in name",
			policies: []*spec.Policy{userPolicy(BuiltinErrorBudget, "package team.eb\n")},
			want:     []string{`^policy "error-budget": the name is taken by a built-in policy$`},
		},
		{
			name:     "duplicate name",
			policies: []*spec.Policy{userPolicy("twice", "package team.a\n"), userPolicy("twice", "package team.b\n")},
			want:     []string{`^policy "twice": declared twice$`},
		},
		{
			name:     "no source",
			policies: []*spec.Policy{userPolicy("empty", "  \n")},
			want:     []string{`^policy "empty": rego: no Rego source \(spec\.rego or spec\.path\)$`},
		},
		{
			name:     "comments only",
			policies: []*spec.Policy{userPolicy("comments", "# nothing here\n")},
			want:     []string{`^policy "comments": rego: rego_parse_error: empty module$`},
		},
		{
			name:     "bad appliesTo",
			policies: []*spec.Policy{userPolicy("where", "package team.w\n", appliesTo("deploy"))},
			want:     []string{`^policy "where": appliesTo "deploy" is not gate or playbook$`},
		},
		{
			name:     "data that JSON cannot hold",
			policies: []*spec.Policy{userPolicy("data", "package team.d\n", withData(map[string]any{"m": map[any]any{1: "x"}}))},
			want:     []string{`^policy "data": data: json: unsupported type`},
		},
		{
			name:     "recursion is a compile error",
			policies: []*spec.Policy{userPolicy("loop", "package team.loop\n\ndeny contains x if {\n  some x in deny\n}\n")},
			want:     []string{`^policy "loop": rego line 3, column 1: rego_recursion_error: rule data\.team\.loop\.deny is recursive`},
		},
		{
			name: "bad priorities",
			opts: Options{Priorities: []spec.Category{spec.Security, spec.Security, spec.Quality}},
			want: []string{`^new policy engine: priorities \[security security quality\]: want each of \[quality security performance\] exactly once$`},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := tc.opts
			opts.Policies = tc.policies
			e, err := New(opts)
			if err == nil {
				t.Fatalf("New succeeded with %d policies, want an error", len(e.Policies()))
			}
			t.Logf("%v", err)
			lines := strings.Split(err.Error(), "\n")
			for i, w := range tc.want {
				if i >= len(lines) || !regexp.MustCompile(w).MatchString(lines[i]) {
					t.Errorf("error:\ngot  %s\nwant line %d matching %s", err, i+1, w)
				}
			}
			if tc.module != nil {
				var me *ModuleError
				if !errors.As(err, &me) {
					t.Fatalf("error %v is not a *ModuleError", err)
				}
				got := *me
				got.Message = me.Message
				want := *tc.module
				if want.Message == "" {
					got.Message = ""
				}
				if want.Column == 0 {
					got.Column = 0
				}
				if got != want {
					t.Errorf("ModuleError:\ngot  %+v\nwant %+v", got, want)
				}
			}
		})
	}
}

func TestCompileErrorsAllReported(t *testing.T) {
	_, err := New(Options{Policies: []*spec.Policy{
		userPolicy("one", "package team.one\ndeny contains"),
		userPolicy("two", "package team.two\nx := http.send({})"),
		userPolicy("three", "package team.three\nwarn contains \"fine\""),
	}})
	if err == nil {
		t.Fatal("New succeeded, want errors")
	}
	// Parse errors stop before compilation, so the second module's type
	// error shows once the first parses.
	if !strings.Contains(err.Error(), `policy "one"`) {
		t.Errorf("error %q does not name policy one", err)
	}
	_, err = New(Options{Policies: []*spec.Policy{
		userPolicy("two", "package team.two\nx := http.send({})"),
		userPolicy("four", "package team.four\ny := opa.runtime()"),
	}})
	if err == nil || !strings.Contains(err.Error(), `policy "two"`) || !strings.Contains(err.Error(), `policy "four"`) {
		t.Errorf("error %v: want both policies named", err)
	}
}

func TestEvaluationErrors(t *testing.T) {
	cases := []struct {
		name   string
		source string
		is     error
		module *ModuleError
	}{
		{
			name:   "conflicting values",
			source: "package team.c\n\ndeny := \"a\" if input.change.kind == \"feature\"\n\ndeny := \"b\" if input.service.tier == 1\n",
			module: &ModuleError{Policy: "c", RegoLine: 5, RegoColumn: 1, Code: "eval_conflict_error"},
		},
		{
			name:   "built-in error is an error, not undefined",
			source: "package team.c\n\ndeny contains msg if {\n  n := to_number(input.change.version)\n  msg := sprintf(\"%v\", [n])\n}\n",
			module: &ModuleError{Policy: "c", RegoLine: 4, RegoColumn: 8, Code: "eval_builtin_error"},
		},
		{
			name:   "a number is not a set of messages",
			source: "package team.c\n\ndeny := 3\n",
			is:     ErrResultType,
		},
		{
			name:   "an object needs msg",
			source: "package team.c\n\nwarn contains {\"message\": \"typo\"}\n",
			is:     ErrResultType,
		},
		{
			name:   "elements must be strings or objects",
			source: "package team.c\n\ndeny contains 42\n",
			is:     ErrResultType,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &memRecorder{}
			e := newTestEngine(t, Options{Policies: []*spec.Policy{userPolicy("c", tc.source)}, Recorder: rec})
			d, err := e.Evaluate(context.Background(), gateInput())
			if err == nil {
				t.Fatalf("Evaluate: got %s with reasons %s, want an error", d.Result, reasonLines(d.Reasons))
			}
			if d != nil {
				t.Errorf("Evaluate returned a decision with its error: %+v", d)
			}
			if n := len(rec.all()); n != 0 {
				t.Errorf("recorder got %d decisions, want none", n)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v: want errors.Is %v", err, tc.is)
			}
			if tc.module != nil {
				var me *ModuleError
				if !errors.As(err, &me) {
					t.Fatalf("error %v is not a *ModuleError", err)
				}
				got := *me
				got.Message = ""
				if got != *tc.module {
					t.Errorf("ModuleError:\ngot  %+v\nwant %+v\n(%v)", got, *tc.module, err)
				}
			}
			if !strings.Contains(err.Error(), `policy "c"`) {
				t.Errorf("error %q does not name the policy", err)
			}
		})
	}
}

func TestTimeout(t *testing.T) {
	// A billion iterations: the timeout, not the loop, must end it.
	slow := `package team.slow
deny contains "never" if {
	some i in numbers.range(1, 1000)
	some j in numbers.range(1, 1000)
	some k in numbers.range(1, 1000)
	i + j + k < 0
}`
	e := newTestEngine(t, Options{Policies: []*spec.Policy{userPolicy("slow", slow)}, Timeout: 50 * time.Millisecond})
	start := time.Now()
	d, err := e.Evaluate(context.Background(), gateInput())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Evaluate: got %v, %v; want context.DeadlineExceeded", d, err)
	}
	if !strings.Contains(err.Error(), `policy "slow": evaluation stopped after 50ms`) {
		t.Errorf("error %q does not say which policy ran out of time", err)
	}
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Errorf("Evaluate took %s with a 50ms timeout", elapsed)
	}

	// A caller's cancellation stops evaluation too.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.Evaluate(ctx, gateInput()); !errors.Is(err, context.Canceled) {
		t.Errorf("Evaluate with a cancelled context: got %v, want context.Canceled", err)
	}
}

func TestSelection(t *testing.T) {
	e := newTestEngine(t, Options{Policies: []*spec.Policy{
		userPolicy("everywhere", "package team.a\nwarn contains \"a\""),
		userPolicy("gates-only", "package team.b\nwarn contains \"b\"", appliesTo(PointGate)),
		userPolicy("playbooks-only", "package team.c\nwarn contains \"c\"", appliesTo(PointPlaybook)),
	}})
	cases := []struct {
		name string
		in   Input
		want []string
	}{
		{"gate", gateInput(), []string{BuiltinErrorBudget, BuiltinTradeOff, BuiltinVulnerabilities, "everywhere", "gates-only"}},
		{"playbook", playbookInput(), []string{BuiltinTradeOff, "everywhere", "playbooks-only"}},
		{"gate naming a playbook policy", gateInput(func(in *Input) { in.Policies = []string{"playbooks-only"} }),
			[]string{BuiltinErrorBudget, BuiltinTradeOff, BuiltinVulnerabilities, "everywhere", "gates-only", "playbooks-only"}},
		{"playbook naming a built-in", playbookInput(func(in *Input) { in.Policies = []string{BuiltinErrorBudget} }),
			[]string{BuiltinErrorBudget, BuiltinTradeOff, "everywhere", "playbooks-only"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, err := e.Evaluate(context.Background(), tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(d.Policies, tc.want) {
				t.Errorf("policies: got %v, want %v", d.Policies, tc.want)
			}
			var consulted []string
			for _, r := range d.Reasons {
				if len(consulted) == 0 || consulted[len(consulted)-1] != r.Policy {
					consulted = append(consulted, r.Policy)
				}
			}
			if !slices.Equal(consulted, tc.want) {
				t.Errorf("reasons come from %v, want %v", consulted, tc.want)
			}
		})
	}

	_, err := e.Evaluate(context.Background(), gateInput(func(in *Input) { in.Policies = []string{"missing"} }))
	if !errors.Is(err, ErrUnknownPolicy) || !strings.Contains(err.Error(), `"missing" named by gate "checkout-deploy"`) {
		t.Errorf("unknown named policy: got %v, want ErrUnknownPolicy naming it and the gate", err)
	}

	infos := e.Policies()
	if len(infos) != 6 || !infos[0].Builtin || infos[0].Package != "qsp.builtin.error_budget" ||
		infos[4].Name != "gates-only" || infos[4].Builtin || !slices.Equal(infos[4].AppliesTo, []string{PointGate}) {
		t.Errorf("Policies() = %+v", infos)
	}
}

// memRecorder is a Recorder keeping decisions in memory.
type memRecorder struct {
	mu  sync.Mutex
	ds  []*Decision
	err error
}

func (r *memRecorder) RecordDecision(_ context.Context, d *Decision) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ds = append(r.ds, d)
	return r.err
}

func (r *memRecorder) all() []*Decision {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.ds)
}

func TestRecorder(t *testing.T) {
	rec := &memRecorder{}
	// The policy echoes what it saw, to compare with the recorded input.
	echo := userPolicy("echo", "package team.echo\ninfo contains json.marshal(input)")
	e := newTestEngine(t, Options{Policies: []*spec.Policy{echo}, Recorder: rec})
	in := gateInput(setSLO("checkout-availability", both(spent(-0.043), step(1, spec.ActionFreeze, ""))))
	d, err := e.Evaluate(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	got := rec.all()
	if len(got) != 1 || got[0] != d {
		t.Fatalf("recorder got %d decisions, want the one returned", len(got))
	}
	if d.Result != Deny || d.Point != PointGate || d.Subject != "checkout-deploy" || d.Service != "checkout" || !d.Time.Equal(testNow) {
		t.Errorf("decision header: %+v", d)
	}
	if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(d.ID) {
		t.Errorf("ID %q is not a UUIDv7", d.ID)
	}
	if ms := fmt.Sprintf("%012x", testNow.UnixMilli()); strings.ReplaceAll(d.ID, "-", "")[:12] != ms {
		t.Errorf("ID %q does not start with the decision time %s", d.ID, ms)
	}

	// The stored input is what the policies saw, and decodes back into
	// the request (with the clock's time filled in).
	var seen string
	for _, r := range d.Reasons {
		if r.Policy == "echo" {
			seen = r.Message
		}
	}
	if !jsonEqual(t, []byte(seen), d.Input) {
		t.Errorf("recorded input differs from what the policy saw:\nrecorded %s\nseen     %s", d.Input, seen)
	}
	var back Input
	if err := json.Unmarshal(d.Input, &back); err != nil {
		t.Fatal(err)
	}
	if back.Gate != in.Gate || back.Change.Version != "1.4.2" || len(back.SLOs) != 3 ||
		back.SLOs[0].PolicyStep.Action != spec.ActionFreeze || !back.Now.Equal(testNow) {
		t.Errorf("decoded input: %+v", back)
	}

	// A recorder error is returned with the decision.
	rec.err = errors.New("disk full")
	d, err = e.Evaluate(context.Background(), in)
	if d == nil || d.Result != Deny || !errors.Is(err, rec.err) || !strings.Contains(err.Error(), "record decision "+d.ID) {
		t.Errorf("recorder error: got %v, %v; want the decision and the error", d, err)
	}
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("decode %s: %v", a, err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

// TestPreparedOnce checks with OPA's own instrumentation that a decision
// parses and compiles nothing: the query-eval timer runs, the parse and
// compile timers do not. The same instrumentation on an unprepared query
// shows them, so the check can fail.
func TestPreparedOnce(t *testing.T) {
	e := newTestEngine(t, Options{Policies: []*spec.Policy{userPolicy("no-friday-features", fridayFeatures)}})
	prepareTimers := []string{
		"timer_" + opametrics.RegoModuleParse + "_ns",
		"timer_" + opametrics.RegoModuleCompile + "_ns",
		"timer_" + opametrics.RegoQueryParse + "_ns",
		"timer_" + opametrics.RegoQueryCompile + "_ns",
	}
	for i := range 3 {
		m := opametrics.New()
		if _, err := e.evaluate(context.Background(), gateInput(), rego.EvalMetrics(m)); err != nil {
			t.Fatal(err)
		}
		all := m.All()
		if _, ok := all["timer_"+opametrics.RegoQueryEval+"_ns"]; !ok {
			t.Fatalf("evaluation %d: no query-eval timer in %v; instrumentation not wired", i, all)
		}
		for _, k := range prepareTimers {
			if _, ok := all[k]; ok {
				t.Errorf("evaluation %d recorded %s: a decision parsed or compiled", i, k)
			}
		}
	}

	m := opametrics.New()
	_, err := rego.New(rego.Query("x := data.team.release.deny"), rego.Module("r.rego", fridayFeatures),
		rego.Input(map[string]any{}), rego.Metrics(m)).Eval(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range prepareTimers {
		if _, ok := m.All()[k]; !ok {
			t.Errorf("unprepared reference did not record %s; the check above proves nothing", k)
		}
	}
}

func TestInvalidInput(t *testing.T) {
	e := newTestEngine(t, Options{})
	cases := []struct {
		name string
		in   Input
		want string
	}{
		{"no point", gateInput(func(in *Input) { in.Point = "" }), `point "" is not gate or playbook`},
		{"no service", gateInput(func(in *Input) { in.Service.Name = "" }), "service.name is empty"},
		{"no gate name", gateInput(func(in *Input) { in.Gate = "" }), "gate is empty"},
		{"no change", gateInput(func(in *Input) { in.Change = nil }), "change is missing at a gate"},
		{"bad change kind", gateInput(kind("hotfix", "1")), `change.kind "hotfix" is not one of`},
		{"mitigation without category", gateInput(kind(ChangeMitigation, "1")), "change.category is required for a mitigation"},
		{"bad category", gateInput(func(in *Input) { in.Change.Category = "cost" }), `change.category "cost" is not one of`},
		{"bad SLO state", gateInput(setSLO("checkout-waf", func(s *SLO) { s.State = "burning" })), `slos[1] (checkout-waf): state "burning"`},
		{"bad step action", gateInput(setSLO("checkout-waf", step(1, "halt", ""))), `policy_step.action "halt"`},
		{"bad finding severity", gateInput(func(in *Input) {
			in.Checks = &Checks{Security: &SecurityCheck{Findings: []Finding{{ID: "X-1", Severity: "CRITICAL"}}}}
		}), `findings[0] (X-1): severity "CRITICAL"`},
		{"bad max_findings severity", gateInput(func(in *Input) {
			in.Checks = &Checks{Security: &SecurityCheck{MaxFindings: map[string]int{"severe": 0}}}
		}), `max_findings severity "severe"`},
		{"NaN burn rate", gateInput(setSLO("checkout-waf", func(s *SLO) { s.BurnRates["5m"] = math.NaN() })),
			`input.slos[1].burn_rates["5m"] is not a finite number`},
		{"infinite latency", gateInput(func(in *Input) { in.Change.ExpectedImpact = &Impact{Latency: math.Inf(1)} }),
			`input.change.expected_impact.latency is not a finite number`},
		{"no playbook name", playbookInput(func(in *Input) { in.Playbook = "" }), "playbook is empty"},
		{"no action", playbookInput(func(in *Input) { in.Action = nil }), "action.name is missing"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, err := e.Evaluate(context.Background(), tc.in)
			if !errors.Is(err, ErrInvalidInput) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, %v; want ErrInvalidInput containing %q", d, err, tc.want)
			}
		})
	}
}

func TestConcurrentEvaluate(t *testing.T) {
	rec := &memRecorder{}
	e := newTestEngine(t, Options{Recorder: rec, Policies: []*spec.Policy{userPolicy("no-friday-features", fridayFeatures,
		withData(map[string]any{"days": []any{"Friday"}}))}})
	inputs := []Input{
		gateInput(),
		gateInput(kind(ChangeFix, "1.4.3")),
		playbookInput(),
	}
	want := []Result{Deny, Allow, Warn}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 8 {
		wg.Go(func() {
			for i := range 10 {
				k := (g + i) % len(inputs)
				d, err := e.Evaluate(context.Background(), inputs[k])
				if err != nil {
					errs <- err
					return
				}
				if d.Result != want[k] {
					errs <- fmt.Errorf("input %d: got %s, want %s", k, d.Result, want[k])
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	ids := map[string]bool{}
	for _, d := range rec.all() {
		ids[d.ID] = true
	}
	if len(ids) != 80 {
		t.Errorf("%d distinct decision IDs, want 80", len(ids))
	}
}

func TestMetricsSurviveReload(t *testing.T) {
	reg := prometheus.NewRegistry()
	e1 := newTestEngine(t, Options{Registerer: reg})
	if _, err := e1.Evaluate(context.Background(), gateInput()); err != nil {
		t.Fatal(err)
	}
	// A reload builds a second engine on the same registry.
	e2 := newTestEngine(t, Options{Registerer: reg})
	if _, err := e2.Evaluate(context.Background(), playbookInput()); err != nil {
		t.Fatal(err)
	}
	if _, err := e2.Evaluate(context.Background(), gateInput()); err != nil {
		t.Fatal(err)
	}
	if _, err := e2.Evaluate(context.Background(), gateInput(kind("bogus", ""))); err == nil {
		t.Fatal("want an error for a bogus change kind")
	}
	if got := testutil.ToFloat64(e2.metrics.decisions.WithLabelValues(PointGate, string(Allow))); got != 2 {
		t.Errorf("gate allow decisions: got %v, want 2", got)
	}
	if got := testutil.ToFloat64(e2.metrics.decisions.WithLabelValues(PointPlaybook, string(Warn))); got != 1 {
		t.Errorf("playbook warn decisions: got %v, want 1", got)
	}
	if got := testutil.ToFloat64(e2.metrics.errors.WithLabelValues(PointGate)); got != 1 {
		t.Errorf("gate errors: got %v, want 1", got)
	}
	if n, err := testutil.GatherAndCount(reg, "qsp_policy_evaluation_duration_seconds"); err != nil || n != 2 {
		t.Errorf("duration series: got %d, %v; want 2 (gate, playbook)", n, err)
	}
}

func TestPrintGoesToDebugLog(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e := newTestEngine(t, Options{Logger: logger, Policies: []*spec.Policy{
		userPolicy("chatty", "package team.chatty\n\nwarn contains \"w\" if {\n  print(\"change is\", input.change.kind)\n}\n"),
	}})
	if _, err := e.Evaluate(context.Background(), gateInput()); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{`msg="rego print"`, "component=policy", "policy=chatty", `msg="change is feature"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
}

// TestSchemaAdmitsValidModules checks that the input schema does not
// reject what the input really has: maps, nullable objects, every field.
func TestSchemaAdmitsValidModules(t *testing.T) {
	src := `package team.fields
info contains sprintf("%v", [[
	input.service.labels.team,
	input.change.expected_impact.disables_security_controls[0],
	input.change.labels.anything,
	input.checks.security.counts.critical,
	input.checks.security.findings[0].fixed_version,
	input.checks.canary.failed_metrics[0],
	input.checks.budget.max_burn_rate,
	input.slos[0].burn_rates["1h"],
	input.slos[0].policy_step.message,
	input.action.expected_impact.latency,
	input.trigger.burn_rate,
	input.alerts[0].severity,
	input.policies[0],
	input.now,
]]) if false
warn contains "step reached" if {
	some s in input.slos
	s.policy_step != null
	s.policy_step.action == "warn"
}`
	e := newTestEngine(t, Options{Policies: []*spec.Policy{userPolicy("fields", src)}})
	d, err := e.Evaluate(context.Background(), gateInput(setSLO("checkout-waf", step(0.5, spec.ActionWarn, ""))))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(d.Reasons, warn("fields", "step reached")) {
		t.Errorf("reasons: %s", reasonLines(d.Reasons))
	}

	// Every key of a fully populated input is in the schema.
	in := realisticGate()
	in.Policies = []string{"x"}
	in.Service.Labels = map[string]string{"team": "payments"}
	in.Change.ExpectedImpact.DisablesSecurityControls = []string{"waf"}
	full, err := normalize(in, testNow)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := normalize(playbookInput(func(in *Input) {
		in.Action.ExpectedImpact = &Impact{Latency: 1, ErrorRate: 1}
		in.Trigger.BurnRate = 14.4
	}), testNow)
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range []Input{full, pb} {
		raw, _ := json.Marshal(doc)
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			t.Fatal(err)
		}
		checkAgainstSchema(t, "input", v, inputSchema())
	}
}

// checkAgainstSchema reports keys of v that schema s does not declare.
func checkAgainstSchema(t *testing.T, path string, v any, s map[string]any) {
	t.Helper()
	if alts, ok := s["anyOf"].([]any); ok {
		if v == nil {
			return
		}
		s = alts[0].(map[string]any)
	}
	switch v := v.(type) {
	case map[string]any:
		if s["type"] != "object" {
			t.Errorf("%s: object where the schema says %v", path, s["type"])
			return
		}
		props, _ := s["properties"].(map[string]any)
		for k, x := range v {
			if ps, ok := props[k].(map[string]any); ok {
				checkAgainstSchema(t, path+"."+k, x, ps)
			} else if ap, ok := s["additionalProperties"].(map[string]any); ok {
				checkAgainstSchema(t, path+"."+k, x, ap)
			} else {
				t.Errorf("%s.%s: not in the schema", path, k)
			}
		}
	case []any:
		if s["type"] != "array" {
			t.Errorf("%s: array where the schema says %v", path, s["type"])
			return
		}
		for i, x := range v {
			checkAgainstSchema(t, fmt.Sprintf("%s[%d]", path, i), x, s["items"].(map[string]any))
		}
	case string:
		if s["type"] != "string" {
			t.Errorf("%s: string where the schema says %v", path, s["type"])
		}
	case float64:
		if s["type"] != "number" {
			t.Errorf("%s: number where the schema says %v", path, s["type"])
		}
	case bool:
		if s["type"] != "boolean" {
			t.Errorf("%s: boolean where the schema says %v", path, s["type"])
		}
	}
}

func TestInputSchemaDocument(t *testing.T) {
	var doc map[string]any
	if err := json.Unmarshal(InputSchema(), &doc); err != nil {
		t.Fatal(err)
	}
	props, _ := doc["properties"].(map[string]any)
	if doc["$schema"] == nil || doc["additionalProperties"] != false || props["slos"] == nil || props["change"] == nil {
		t.Errorf("InputSchema: %s", InputSchema())
	}
	if _, ok := inputSchema()["$schema"]; ok {
		t.Error("InputSchema modified the schema the compiler uses")
	}
}
