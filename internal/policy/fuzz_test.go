package policy

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/qsp-dev/qsp/internal/spec"
)

// maxFuzzModule caps the module text, so that the fuzzer explores syntax
// rather than size.
const maxFuzzModule = 4 << 10

// FuzzUserModule feeds arbitrary module text through the compile path,
// and through evaluation when it compiles. Neither may panic or hang;
// errors are fine, but they must name the policy, and a module that
// compiles must give a decision or an error, never neither.
func FuzzUserModule(f *testing.F) {
	seeds := []string{
		fridayFeatures,
		"package team.a\n\ndeny contains msg if {\n\tinput.change.kind == \"feature\"\n\tmsg := \"no\"\n}\n",
		"package team.b\nwarn contains {\"msg\": sprintf(\"%d\", [count(input.slos)])}",
		"package team.c\nimport data.qsp.builtin.error_budget\ndeny contains m if some m in error_budget.blockers",
		"package team.d\ndeny if input.service.tier < data.qsp.params.min",
		"package team.e\ndeny := 3",
		"package team.f\ndeny := \"a\" if true\ndeny := \"b\" if true",
		"package team.g\ndeny[msg] {\n msg := 1\n}",
		"package team.h\nx := http.send({\"url\": \"http://127.0.0.1:1\"})",
		"package qsp.params\nx := 1",
		"package team.i\ndeny contains x if { some x in deny }",
		"package team.j\nwarn contains m if {\n\tsome s in input.slos\n\ts.budget_remaining < 0.1\n\tm := sprintf(\"%s low\", [s.name])\n}",
		"package team.k\ninfo contains to_number(input.change.version)",
		"package team.l\n# only a comment",
		"",
	}
	for _, s := range seeds {
		f.Add(s)
	}
	in := gateInput(setSLO("checkout-latency", spent(0.05)))
	f.Fuzz(func(t *testing.T, src string) {
		if len(src) > maxFuzzModule {
			t.Skip("module too large")
		}
		p := userPolicy("fuzz", src, withData(map[string]any{"min": 2}))
		e, err := New(Options{Policies: []*spec.Policy{p}, Now: fixedClock, Timeout: 100 * time.Millisecond})
		if err != nil {
			if !strings.Contains(err.Error(), `policy "fuzz"`) {
				t.Fatalf("compile error does not name the policy: %v", err)
			}
			return
		}
		d, err := e.Evaluate(context.Background(), in)
		switch {
		case err != nil:
			if !strings.Contains(err.Error(), `policy "`) && !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("evaluation error does not name a policy: %v", err)
			}
		case d == nil:
			t.Fatal("no decision and no error")
		case d.Result != Allow && d.Result != Warn && d.Result != Deny:
			t.Fatalf("result %q", d.Result)
		}
	})
}
