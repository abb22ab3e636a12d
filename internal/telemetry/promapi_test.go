package telemetry

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
)

// appendSamples stores samples directly through the TSDB appender.
func appendSamples(t testing.TB, e *Embedded, ls labels.Labels, points ...[2]float64) {
	t.Helper()
	app := e.AppenderV2(t.Context())
	for _, p := range points {
		if _, err := app.Append(0, ls, 0, int64(p[0]), p[1], nil, nil, storage.AOptions{}); err != nil {
			t.Fatalf("append %s: %v", ls, err)
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
}

func newQueryServer(t *testing.T) (*httptest.Server, *Embedded) {
	t.Helper()
	e := openTestDB(t)
	appendSamples(t, e, mustLabels("__name__", "m", "job", "a"), [2]float64{1_700_000_000_000, 1}, [2]float64{1_700_000_015_000, 2.5}, [2]float64{1_700_000_030_000, 4})
	appendSamples(t, e, mustLabels("__name__", "m", "job", "b"), [2]float64{1_700_000_000_000, 10})
	appendSamples(t, e, mustLabels("__name__", "other", "service.name", "x"), [2]float64{1_700_000_000_000, 1})
	qa, err := NewQueryAPI(QueryAPIOptions{Embedded: e, Now: func() time.Time { return time.UnixMilli(1_700_000_030_000) }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(qa)
	t.Cleanup(srv.Close)
	return srv, e
}

func get(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type %q", u, ct)
	}
	return resp.StatusCode, string(b)
}

func TestQueryAPIShapes(t *testing.T) {
	srv, _ := newQueryServer(t)
	api := srv.URL + "/prometheus/api/v1"
	cases := []struct {
		name, path string
		want       string
	}{
		{"instant vector", "/query?query=" + url.QueryEscape(`sort(m)`) + "&time=1700000000.5",
			`{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"m","job":"a"},"value":[1700000000.5,"1"]},{"metric":{"__name__":"m","job":"b"},"value":[1700000000.5,"10"]}]}}`},
		{"instant default time is now", "/query?query=" + url.QueryEscape(`m{job="a"}`),
			`{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"m","job":"a"},"value":[1700000030,"4"]}]}}`},
		{"scalar", "/query?query=1%2B1&time=2023-11-14T22:13:20Z",
			`{"status":"success","data":{"resultType":"scalar","result":[1700000000,"2"]}}`},
		{"string", "/query?query=%22hi%22&time=1700000000",
			`{"status":"success","data":{"resultType":"string","result":[1700000000,"hi"]}}`},
		{"range vector selector", "/query?query=" + url.QueryEscape(`m{job="a"}[20s]`) + "&time=1700000030",
			`{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"m","job":"a"},"values":[[1700000015,"2.5"],[1700000030,"4"]]}]}}`},
		{"query_range", "/query_range?query=" + url.QueryEscape(`m{job="a"} * 2`) + "&start=1700000000&end=1700000030&step=15s",
			`{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"job":"a"},"values":[[1700000000,"2"],[1700000015,"5"],[1700000030,"8"]]}]}}`},
		{"query_range float step", "/query_range?query=" + url.QueryEscape(`m{job="b"}`) + "&start=1700000000&end=1700000001&step=0.5",
			`{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"m","job":"b"},"values":[[1700000000,"10"],[1700000000.5,"10"],[1700000001,"10"]]}]}}`},
		{"series", "/series?match[]=m&match[]=other",
			`{"status":"success","data":[{"__name__":"m","job":"a"},{"__name__":"m","job":"b"},{"__name__":"other","service.name":"x"}]}`},
		{"series with range", "/series?match[]=m&start=1700000020&end=1700000040",
			`{"status":"success","data":[{"__name__":"m","job":"a"}]}`},
		{"labels", "/labels", `{"status":"success","data":["__name__","job","service.name"]}`},
		{"labels with match", "/labels?match[]=m", `{"status":"success","data":["__name__","job"]}`},
		{"label values", "/label/job/values", `{"status":"success","data":["a","b"]}`},
		{"label values UTF-8 escaped", "/label/U__service_2e_name/values", `{"status":"success","data":["x"]}`},
		{"label values limit", "/label/job/values?limit=1", `{"status":"success","data":["a"]}`},
		{"metadata", "/metadata", `{"status":"success","data":{}}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, body := get(t, api+c.path)
			if code != http.StatusOK || strings.TrimSpace(body) != c.want {
				t.Errorf("status %d\n got %s\nwant %s", code, body, c.want)
			}
		})
	}
	// POST form, as Grafana sends it.
	resp, err := http.PostForm(api+"/query", url.Values{"query": {`count(m)`}, "time": {"1700000000"}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000,"2"]}]}}`; string(b) != want {
		t.Errorf("POST query: %s, want %s", b, want)
	}
	// Build info, which Grafana probes.
	if code, body := get(t, api+"/status/buildinfo"); code != 200 || !strings.Contains(body, `"version":"3.16.0"`) {
		t.Errorf("buildinfo: %d %s", code, body)
	}
}

func TestQueryAPIErrors(t *testing.T) {
	srv, _ := newQueryServer(t)
	api := srv.URL + "/prometheus/api/v1"
	cases := []struct {
		name, path string
		status     int
		errType    string
		want       string
	}{
		{"bad query", "/query?query=sum(", 400, "bad_data", `invalid parameter "query": 1:5: parse error`},
		{"bad time", "/query?query=m&time=yesterday", 400, "bad_data", `invalid parameter "time": invalid time value for 'time': cannot parse "yesterday" to a valid timestamp`},
		{"end before start", "/query_range?query=m&start=10&end=5&step=1", 400, "bad_data", "end timestamp must not be before start time"},
		{"zero step", "/query_range?query=m&start=1&end=5&step=0", 400, "bad_data", "zero or negative query resolution step widths are not accepted"},
		{"bad step", "/query_range?query=m&start=1&end=5&step=often", 400, "bad_data", `cannot parse "often" to a valid duration`},
		{"too many points", "/query_range?query=m&start=0&end=100000&step=1", 400, "bad_data", "exceeded maximum resolution of 11,000 points per timeseries"},
		{"series without match", "/series", 400, "bad_data", "no match[] parameter provided"},
		{"series matching everything", "/series?match[]=" + url.QueryEscape(`{job=~".*"}`), 400, "bad_data", "match[] must contain at least one non-empty matcher"},
		{"bad limit", "/labels?limit=-1", 400, "bad_data", "limit must be a non-negative integer"},
		{"invalid label name", "/label/%FF/values", 400, "bad_data", "invalid label name"},
		{"execution error", "/query?query=" + url.QueryEscape(`m + on() m`) + "&time=1700000000", 422, "execution", "many-to-many matching not allowed"},
		// 1ns has passed before the deadline is set, so the context is
		// done at once: a 1µs timeout raced a fast parse and evaluation.
		{"timeout", "/query_range?query=" + url.QueryEscape(`sum_over_time(m[1h])`) + "&start=1600000000&end=1700000000&step=10000&timeout=0.000000001", 503, "timeout", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, body := get(t, api+c.path)
			var r struct {
				Status, ErrorType, Error string
			}
			if err := json.Unmarshal([]byte(body), &r); err != nil {
				t.Fatalf("decode %s: %v", body, err)
			}
			if code != c.status || r.Status != "error" || r.ErrorType != c.errType || !strings.Contains(r.Error, c.want) {
				t.Errorf("got %d %s/%s %q, want %d error/%s containing %q", code, r.Status, r.ErrorType, r.Error, c.status, c.errType, c.want)
			}
		})
	}
	// Unknown endpoints get a plain 404, as from Prometheus.
	resp, err := http.Get(api + "/nonexistent")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown endpoint: %d, want 404", resp.StatusCode)
	}
}
