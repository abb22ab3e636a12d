package app

import (
	"strings"
	"testing"
)

// TestTracesConfig: a trace URL template that does not parse, or names a
// field that does not exist, is refused when the configuration loads.
func TestTracesConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		tc   TracesConfig
		err  string
	}{
		{"jaeger", TracesConfig{URLTemplate: "http://jaeger:16686/trace/{{.TraceID}}"}, ""},
		{"empty", TracesConfig{}, ""},
		{"unclosed", TracesConfig{URLTemplate: "http://x/{{.TraceID"}, "config: traces.urlTemplate"},
		{"unknown field", TracesConfig{URLTemplate: "http://x/{{.Trace}}"}, "can't evaluate field Trace"},
		{"too many", TracesConfig{MaxExamples: 51}, "traces.maxExamples: 51"},
		{"negative", TracesConfig{MaxExamples: -1}, "traces.maxExamples: -1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{Traces: tc.tc}
			err := c.Normalize()
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("got %v, want %q", err, tc.err)
			}
		})
	}
}
