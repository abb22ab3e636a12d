package ui

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/qsp-dev/qsp/internal/api"
	"github.com/qsp-dev/qsp/internal/tracelink"
)

type fakeTraces struct{ exs []tracelink.Example }

func (f fakeTraces) ForSLO(context.Context, string, time.Time, time.Time) ([]tracelink.Example, error) {
	return f.exs, nil
}

func (f fakeTraces) ForSLOs(context.Context, []string, time.Time, time.Time) ([]tracelink.Example, error) {
	return f.exs, nil
}

// TestSLOPageExampleTraces: the SLO page lists example traces with their
// links; a link that is not http(s) is neutralised, series are escaped.
func TestSLOPageExampleTraces(t *testing.T) {
	tu := newTestUI(t, 3)
	at := tu.at
	tu.ui.opts.Traces = fakeTraces{exs: []tracelink.Example{
		{TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", URL: "http://jaeger:16686/trace/4bf92f3577b34da6a3ce929d0e0e4736", Time: at.Add(-time.Minute), Value: 1, Series: `{code="500<b>"}`},
		{TraceID: "evil", URL: "javascript:alert(1)", Time: at.Add(-2 * time.Minute), Value: 1},
	}}
	_, body := tu.get(t, "/slos/svc-0002-quality", api.RoleViewer)
	for _, want := range []string{
		"Example traces of bad events",
		`<a href="http://jaeger:16686/trace/4bf92f3577b34da6a3ce929d0e0e4736"`,
		`{code=&#34;500&lt;b&gt;&#34;}`,
		`href="#ZgotmplZ"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// Without exemplars the section is left out.
	tu.ui.opts.Traces = fakeTraces{}
	if _, body := tu.get(t, "/slos/svc-0002-quality", api.RoleViewer); strings.Contains(body, "Example traces") {
		t.Error("an empty section is shown")
	}
}
