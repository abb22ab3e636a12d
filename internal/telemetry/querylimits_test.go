package telemetry

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql/parser"
)

func TestScanQuery(t *testing.T) {
	deep := func(n int) string { return strings.Repeat("(", n) + "1" + strings.Repeat(")", n) }
	cases := []struct {
		name    string
		q       string
		depth   int
		wantErr string // "" accepts
	}{
		{"selector", `up{job="a"}`, 4, ""},
		{"rate sum", `sum by (job) (rate(http_requests_total{code=~"5.."}[5m])) / sum by (job) (rate(http_requests_total[5m]))`, 8, ""},
		{"parens at the limit", deep(8), 8, ""},
		{"parens over the limit", deep(9), 8, "nests deeper than query.maxDepth (8 levels of brackets and operators) at 1:9"},
		{"operator chain at the limit", "1" + strings.Repeat("+1", 8), 8, ""},
		{"operator chain over the limit", "1" + strings.Repeat("+1", 9), 8, "at 1:18"},
		{"keyword chain", "a" + strings.Repeat(" or a", 9), 8, "query.maxDepth"},
		{"keywords are case-insensitive", "a" + strings.Repeat(" OR a", 9), 8, "query.maxDepth"},
		{"siblings do not add up", strings.Repeat("(1+1)+", 3) + "(1+1)", 8, ""},
		{"brackets in double-quoted strings", `x{a="((((((((((\"((((("}`, 4, ""},
		{"brackets in single-quoted strings", `x{a='((((((((((\'((((('}`, 4, ""},
		{"brackets in raw strings", "x{a=`((((((((((\\`}", 4, ""},
		{"brackets in comments", "x # ((((((((((\n+ y", 4, ""},
		{"comment ends at the newline", "x # \n" + deep(5), 4, "at 2:5"},
		{"matchers are not operators", `x{a!="1",b=~"2",c!~"3",d="4",e="5",f="6"}`, 2, ""},
		{"range brackets count", `rate(x[5m])`, 2, "at 1:7"},
		{"unbalanced closers", ")))" + deep(3), 3, ""},
		{"unterminated string", `x{a="((((((`, 2, ""},
		{"length", strings.Repeat("a", 65), 100, "the query is 65 bytes long, more than query.maxLength (64)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := scanQuery(c.q, 64, c.depth)
			if c.name != "length" {
				err = scanQuery(c.q, 1<<20, c.depth)
			}
			switch {
			case c.wantErr == "" && err != nil:
				t.Fatalf("got %v, want accepted", err)
			case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
				t.Fatalf("got %v, want an error with %q", err, c.wantErr)
			case err != nil && !errors.Is(err, ErrQueryLimit):
				t.Fatalf("got %v, which does not wrap ErrQueryLimit", err)
			}
		})
	}
}

func TestCheckSubqueries(t *testing.T) {
	p := parser.NewParser(parser.Options{})
	cases := []struct {
		name    string
		q       string
		span    time.Duration
		wantErr string
	}{
		{"the 30d bomb", `sum_over_time(vector(1)[30d:1ms])`, 0, "has 2,592,000,001 points per series, more than query.maxPoints (11,000)"},
		{"the 1h bomb", `sum_over_time(vector(1)[1h:1ms])`, 0, "the subquery at 1:15 (range 1h plus 0s evaluated, step 1ms) has 3,600,001 points"},
		{"fine", `max_over_time(rate(x[5m])[1h:1m])`, 0, ""},
		{"at the limit", `max_over_time(x[10999s:1s])`, 0, ""},
		{"over the limit", `max_over_time(x[11000s:1s])`, 0, "11,001 points"},
		{"default step fits", `max_over_time(x[7d:])`, 0, ""},
		{"default step over", `max_over_time(x[30d:])`, 0, "step 1m) has 43,201 points"},
		{"range span counts", `max_over_time(x[1h:1m])`, 7 * 24 * time.Hour, ""},
		{"range span over", `max_over_time(x[1h:30s])`, 7 * 24 * time.Hour, "20,281 points"},
		{"nested fits", `max_over_time(max_over_time(x[1h:1s])[1h:1m])`, 0, ""},
		{"nested widens the inner span", `max_over_time(max_over_time(x[2h:1s])[2h:1m])`, 0, "(range 2h plus 2h evaluated, step 1s) has 14,401 points"},
		{"@ pins the window", `max_over_time(x[1h:1s] @ 1700000000)`, 30 * 24 * time.Hour, ""},
		{"@ end() pins the window", `max_over_time(x[1h:1s] @ end())`, 30 * 24 * time.Hour, ""},
		{"inside binary operators", `1 + sum(max_over_time(x[1d:1s]))`, 0, "86,401 points"},
		{"range selectors are not bounded", `sum_over_time(x[365d])`, 30 * 24 * time.Hour, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			expr, err := p.ParseExpr(c.q)
			if err != nil {
				t.Fatal(err)
			}
			err = checkSubqueries(c.q, expr, c.span, DefaultMaxPointsPerSeries, defaultSubqueryStep)
			switch {
			case c.wantErr == "" && err != nil:
				t.Fatalf("got %v, want accepted", err)
			case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
				t.Fatalf("got %v, want an error with %q", err, c.wantErr)
			case err != nil && !errors.Is(err, ErrQueryLimit):
				t.Fatalf("got %v, which does not wrap ErrQueryLimit", err)
			}
		})
	}
}

// TestQueryAPILimits sends the queries of the attack to the handler: each
// is refused with 400 bad_data naming its limit, before it costs memory.
func TestQueryAPILimits(t *testing.T) {
	srv, _ := newQueryServer(t)
	api := srv.URL + "/prometheus/api/v1"
	deep := func(n int) string { return strings.Repeat("(", n) + "1" + strings.Repeat(")", n) }
	cases := []struct {
		name, path string
		status     int
		errType    string
		want       string
	}{
		{"depth 80,000", "/query?query=" + deep(80_000), 400, "bad_data", "more than query.maxLength (65,536)"},
		{"depth 20,000", "/query?query=" + deep(20_000), 400, "bad_data", "nests deeper than query.maxDepth (128"},
		{"depth in query_range", "/query_range?start=0&end=60&step=15&query=" + deep(200), 400, "bad_data", "query.maxDepth"},
		{"depth in format_query", "/format_query?query=" + deep(200), 400, "bad_data", "query.maxDepth"},
		{"depth in series match[]", "/series?match[]=" + url.QueryEscape("up{a=\"1\"}"+strings.Repeat(" or x", 200)), 400, "bad_data", `invalid parameter \"match[]\"`},
		{"subquery 30d:1ms", "/query?query=" + url.QueryEscape(`sum_over_time(vector(1)[30d:1ms])`), 400, "bad_data", "query.maxPoints (11,000)"},
		{"subquery 1h:1ms", "/query?query=" + url.QueryEscape(`sum_over_time(vector(1)[1h:1ms])`), 400, "bad_data", "3,600,001 points"},
		{"subquery in query_range", "/query_range?start=1690000000&end=1700000000&step=1000&query=" + url.QueryEscape(`sum_over_time(vector(1)[1h:1m])`), 400, "bad_data", "query.maxPoints"},
		{"timeout covers parse", "/query?timeout=0.000000001&query=" + url.QueryEscape(`sum(m)`), 503, "timeout", "parse query: context deadline exceeded"},
		{"a normal subquery works", "/query?time=1700000040&query=" + url.QueryEscape(`max_over_time(sum(m)[1m:15s])`), 200, "", `"value":[1700000040,"14"]`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			status, body := get(t, api+c.path)
			took := time.Since(start)
			if status != c.status || !strings.Contains(body, c.want) || (c.errType != "" && !strings.Contains(body, `"errorType":"`+c.errType+`"`)) {
				t.Fatalf("got %d %.300s, want %d %s with %q", status, body, c.status, c.errType, c.want)
			}
			// Generous: the refusals take well under 10 ms.
			if c.status == 400 && took > 2*time.Second {
				t.Errorf("refused after %v", took)
			}
		})
	}
}

// TestMaxSamplesCoversSubqueries checks that what the grid check lets
// through is still bounded by MaxSamples as the subquery materializes.
func TestMaxSamplesCoversSubqueries(t *testing.T) {
	e, err := OpenEmbedded(EmbeddedOptions{Dir: t.TempDir(), MaxSamples: 1000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	qa, err := NewQueryAPI(QueryAPIOptions{Embedded: e})
	if err != nil {
		t.Fatal(err)
	}
	for q, want := range map[string]string{
		`sum_over_time(vector(1)[1h:1s])`:        "query processing would load too many samples into memory",
		`sum_over_time(vector(1)[5m:1s])`:        `"result":[{"metric":{},"value"`,
		`max_over_time(vector(time())[1h:1s])`:   "too many samples",
		`count_over_time(vector(time())[5m:1s])`: `"300"`,
	} {
		w := serve(qa, "/prometheus/api/v1/query?time=1700000000&query="+url.QueryEscape(q))
		if !strings.Contains(w, want) {
			t.Errorf("%s: got %.300s, want %q", q, w, want)
		}
	}
}

func TestQueryLimitsValidation(t *testing.T) {
	e := openTestDB(t)
	for _, l := range []QueryLimits{{MaxLength: -1}, {MaxDepth: -1}, {MaxPoints: -1}, {Timeout: -1}, {MaxConcurrent: -1}} {
		if _, err := NewQueryAPI(QueryAPIOptions{Embedded: e, Limits: l}); err == nil {
			t.Errorf("%+v: got no error", l)
		}
	}
}

// FuzzScanQuery checks that the pre-parse scan never panics, is
// monotonic in its depth limit, and that what it accepts parses into a
// tree no deeper than its bound allows (so the parser's quadratic cost
// in depth is bounded).
func FuzzScanQuery(f *testing.F) {
	for _, s := range []string{
		`up`, `sum by (job) (rate(http_requests_total{code=~"5.."}[5m]))`,
		`max_over_time(max_over_time(x[1h:1s])[1h:1m] @ end())`,
		"x # ((\n+ y", `x{a="(\"("}`, "x{a=`(`}", `1 + -2 * 3 ^ 4 % 5 == bool 6`,
		`a and b or c unless d`, `atan2(x, y)`, `((((((1))))))`, `-(-(-(1)))`,
		`label_replace(x, "a", "$1", "b", "(.*)")`, `x offset -5m`, `{"utf8.name"}`,
	} {
		f.Add(s)
	}
	p := parser.NewParser(parser.Options{})
	const maxDepth = 24
	f.Fuzz(func(t *testing.T, q string) {
		if len(q) > 4096 {
			return
		}
		err := scanQuery(q, 4096, maxDepth)
		if err != nil {
			if !errors.Is(err, ErrQueryLimit) {
				t.Fatalf("%q: %v does not wrap ErrQueryLimit", q, err)
			}
			return
		}
		if err := scanQuery(q, 4096, maxDepth+1); err != nil {
			t.Fatalf("%q: accepted at depth %d, refused at %d: %v", q, maxDepth, maxDepth+1, err)
		}
		expr, err := p.ParseExpr(q)
		if err != nil {
			return
		}
		// A Call or Aggregate adds a node for its one pair of brackets,
		// so the tree may be up to twice the scanned depth.
		if d := treeDepth(expr); d > 2*maxDepth+2 {
			t.Fatalf("%q: accepted at depth %d, parses %d deep", q, maxDepth, d)
		}
	})
}

func treeDepth(n parser.Node) int {
	d := 0
	for _, c := range parser.Children(n) {
		d = max(d, treeDepth(c))
	}
	return d + 1
}

// worstAccepted are the most expensive query shapes the default limits
// accept: maximal nesting, and deep units repeated to the maximal length
// in a balanced tree of "+" (a flat chain of them would be refused, each
// "+" being a level).
func worstAccepted() map[string]string {
	d := DefaultQueryMaxDepth
	// balanced joins units pairwise in brackets until one is left: log2
	// of the units' count in depth, twice (a bracket and an operator).
	balanced := func(unit string) string {
		n := DefaultQueryMaxLength / (len(unit) + 3)
		for n&(n-1) != 0 {
			n &= n - 1 // a power of two, so the tree is full
		}
		level := make([]string, n)
		for i := range level {
			level[i] = unit
		}
		for len(level) > 1 {
			next := make([]string, 0, len(level)/2)
			for i := 0; i < len(level); i += 2 {
				next = append(next, "("+level[i]+"+"+level[i+1]+")")
			}
			level = next
		}
		return level[0]
	}
	fill := func(unit, sep string) string {
		var b strings.Builder
		for b.Len()+len(unit)+len(sep) <= DefaultQueryMaxLength {
			if b.Len() > 0 {
				b.WriteString(sep)
			}
			b.WriteString(unit)
		}
		return b.String()
	}
	return map[string]string{
		"parens":   strings.Repeat("(", d) + "1" + strings.Repeat(")", d),
		"chain":    "1" + strings.Repeat("+1", d-1),
		"chains":   balanced("(1" + strings.Repeat("+1", d/2) + ")"),
		"calls":    balanced(strings.Repeat("abs(", d/2) + "x" + strings.Repeat(")", d/2)),
		"tree":     balanced("x"),
		"matchers": "x{" + fill(`a="b"`, ",") + "}",
	}
}

func TestWorstAcceptedQueries(t *testing.T) {
	p := parser.NewParser(parser.Options{})
	for name, q := range worstAccepted() {
		if err := scanQuery(q, DefaultQueryMaxLength, DefaultQueryMaxDepth); err != nil {
			t.Fatalf("%s (%d bytes): %v", name, len(q), err)
		}
		if _, err := p.ParseExpr(q); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
}

// BenchmarkScanQuery measures the pre-parse scan of a query at the
// default maximum length.
func BenchmarkScanQuery(b *testing.B) {
	q := worstAccepted()["chains"]
	b.ReportAllocs()
	b.SetBytes(int64(len(q)))
	for b.Loop() {
		if err := scanQuery(q, DefaultQueryMaxLength, DefaultQueryMaxDepth); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkScanRefuseDepth80k measures refusing the attack's
// depth-80,000 query by its depth alone (with the length limit lifted).
func BenchmarkScanRefuseDepth80k(b *testing.B) {
	q := strings.Repeat("(", 80_000) + "1" + strings.Repeat(")", 80_000)
	b.ReportAllocs()
	for b.Loop() {
		if err := scanQuery(q, 1<<20, DefaultQueryMaxDepth); err == nil {
			b.Fatal("accepted")
		}
	}
}

// BenchmarkParseWorstAccepted measures the parser on the most expensive
// shapes the default limits let through.
func BenchmarkParseWorstAccepted(b *testing.B) {
	p := parser.NewParser(parser.Options{})
	for name, q := range worstAccepted() {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.ParseExpr(q); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// serve answers a GET of path from h.
func serve(h http.Handler, path string) string {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
	return w.Body.String()
}

// TestQueryAPIConcurrency checks that queries beyond MaxConcurrent wait
// for a slot within their timeout, then answer 503 timeout.
func TestQueryAPIConcurrency(t *testing.T) {
	e := openTestDB(t)
	qa, err := NewQueryAPI(QueryAPIOptions{Embedded: e, Limits: QueryLimits{MaxConcurrent: 1}})
	if err != nil {
		t.Fatal(err)
	}
	release, aerr := qa.acquire(t.Context())
	if aerr != nil {
		t.Fatal(aerr.err)
	}
	path := "/prometheus/api/v1/query?time=1700000000&timeout=0.05&query=" + url.QueryEscape("vector(1)")
	if got := serve(qa, path); !strings.Contains(got, `"errorType":"timeout"`) || !strings.Contains(got, "wait for a query slot (query.maxConcurrent 1)") {
		t.Errorf("with every slot taken: got %.300s, want a timeout waiting for a slot", got)
	}
	release()
	if got := serve(qa, path); !strings.Contains(got, `"status":"success"`) {
		t.Errorf("with a free slot: got %.300s, want success", got)
	}
}
