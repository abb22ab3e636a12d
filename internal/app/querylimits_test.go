package app_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/qsp-dev/qsp/internal/api"
	"github.com/qsp-dev/qsp/internal/app"
	"github.com/qsp-dev/qsp/internal/ui/uitest"
)

// queryAs posts a PromQL form to the query API as role and returns the
// status, the Prometheus error type and message (if any), and the time
// it took.
func queryAs(t *testing.T, env *uitest.Env, role api.Role, path string, form url.Values) (int, string, string, time.Duration) {
	t.Helper()
	start := time.Now()
	resp := env.Do(t, http.MethodPost, "/prometheus/api/v1/"+path, role, "application/x-www-form-urlencoded", []byte(form.Encode()))
	body := uitest.ReadBody(t, resp)
	took := time.Since(start)
	var r struct{ Status, ErrorType, Error string }
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("%s: %d %.300s: %v", path, resp.StatusCode, body, err)
	}
	return resp.StatusCode, r.ErrorType, r.Error, took
}

// TestQueryBombsAsViewer reproduces the attack on the real server: a
// viewer's subquery over 30 days at 1 ms grew the process to 24 GB until
// the kernel killed it, [1h:1ms] took 512 MB, and a query nested 80,000
// parentheses deep kept the parser busy for more than 25 s. Each is now
// refused with 400 before it costs memory or time, and normal queries,
// subqueries included, still answer.
func TestQueryBombsAsViewer(t *testing.T) {
	env := uitest.Start(t, uitest.Options{Tokens: true})
	deep := func(n int) string { return strings.Repeat("(", n) + "1" + strings.Repeat(")", n) }
	bombs := []struct {
		name, path string
		form       url.Values
		want       string
	}{
		{"subquery 30d:1ms", "query", url.Values{"query": {`sum_over_time(vector(1)[30d:1ms])`}}, "more than query.maxPoints (11,000)"},
		{"subquery 1h:1ms", "query", url.Values{"query": {`sum_over_time(vector(1)[1h:1ms])`}}, "3,600,001 points per series"},
		{"subquery in query_range", "query_range", url.Values{"query": {`sum_over_time(vector(1)[1h:1s])`}, "start": {"1700000000"}, "end": {"1700086400"}, "step": {"60"}}, "(range 1h plus 1d evaluated, step 1s) has 90,001 points"},
		{"depth 80,000", "query", url.Values{"query": {deep(80_000)}}, "more than query.maxLength (65,536)"},
		{"depth 20,000", "query", url.Values{"query": {deep(20_000)}}, "nests deeper than query.maxDepth (128"},
		{"operator chain", "query", url.Values{"query": {"1" + strings.Repeat("+1", 20_000)}}, "query.maxDepth"},
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for _, b := range bombs {
		status, typ, msg, took := queryAs(t, env, api.RoleViewer, b.path, b.form)
		if status != http.StatusBadRequest || typ != "bad_data" || !strings.Contains(msg, b.want) {
			t.Errorf("%s: got %d %s %q, want 400 bad_data with %q", b.name, status, typ, msg, b.want)
		}
		// Generous: measured well under 10 ms (docs/operations.md); a
		// second would already be a regression by orders of magnitude.
		if took > time.Second {
			t.Errorf("%s: refused after %v", b.name, took)
		}
		t.Logf("%s: refused in %v", b.name, took)
	}
	runtime.ReadMemStats(&after)
	// Everything the process allocated while refusing the bombs,
	// background work of the app included; before the fix one of them
	// alone allocated 512 MB to 20 GB.
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 128<<20 {
		t.Errorf("the process allocated %d MiB while refusing the bombs, want < 128", grew>>20)
	}
	t.Logf("allocated %d KiB while refusing; heap in use %d -> %d KiB", (after.TotalAlloc-before.TotalAlloc)>>10, before.HeapInuse>>10, after.HeapInuse>>10)
	if after.HeapInuse > before.HeapInuse+128<<20 {
		t.Errorf("heap in use grew from %d to %d MiB", before.HeapInuse>>20, after.HeapInuse>>20)
	}

	for _, q := range []struct{ path, query string }{
		{"query", `sum(rate(http_requests_total[5m])) >= 0 or vector(1)`},
		{"query", `max_over_time(vector(1)[1h:1m])`},
		{"query_range", `max_over_time(vector(1)[10m:])`},
	} {
		form := url.Values{"query": {q.query}}
		if q.path == "query_range" {
			now := env.Clock.Now().Unix()
			form.Set("start", formatUnix(now-3600))
			form.Set("end", formatUnix(now))
			form.Set("step", "60")
		}
		if status, typ, msg, _ := queryAs(t, env, api.RoleViewer, q.path, form); status != http.StatusOK {
			t.Errorf("%s %s: got %d %s %q, want 200", q.path, q.query, status, typ, msg)
		}
	}
}

// TestQueryLimitsConfigured checks that the query section of the
// configuration reaches the query API and the engine.
func TestQueryLimitsConfigured(t *testing.T) {
	env := uitest.Start(t, uitest.Options{Tokens: true, Config: func(c *app.Config) {
		c.Query = app.QueryConfig{MaxDepth: 16, MaxPoints: 100_000, MaxSamples: 1000}
	}})
	cases := []struct {
		query, typ, want string
	}{
		{strings.Repeat("(", 17) + "1" + strings.Repeat(")", 17), "bad_data", "query.maxDepth (16 levels"},
		// 86,401 points fit maxPoints but not maxSamples.
		{`sum_over_time(vector(1)[1d:1s])`, "execution", "query processing would load too many samples"},
		{`sum_over_time(vector(1)[30d:1s])`, "bad_data", "more than query.maxPoints (100,000)"},
	}
	for _, c := range cases {
		status, typ, msg, _ := queryAs(t, env, api.RoleViewer, "query", url.Values{"query": {c.query}})
		if typ != c.typ || !strings.Contains(msg, c.want) {
			t.Errorf("%.40s: got %d %s %q, want %s with %q", c.query, status, typ, msg, c.typ, c.want)
		}
	}
}

func formatUnix(s int64) string { return time.Unix(s, 0).UTC().Format(time.RFC3339) }
