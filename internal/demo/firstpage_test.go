package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qsp-dev/qsp/internal/alert"
)

// firstPageBound is the promise: at the default speed, the first
// page notification arrives within 90 seconds of the dashboard being
// ready. The test waits a little longer, then stops.
const (
	firstPageBound = 90 * time.Second
	firstPageWait  = 100 * time.Second
)

// TestDemoFirstPageAndHistory runs the demo at its default speed (1:
// real time) with a real webhook receiver, and checks that the moment
// the dashboard is ready its incidents, report and postmortem pages have
// content from the history, and that the first page notification reaches
// the webhook within 90 seconds of ready. It takes the history write and
// up to 100 seconds of wall time, mostly idle.
func TestDemoFirstPageAndHistory(t *testing.T) {
	if testing.Short() {
		t.Skip("runs in real time for up to 100 s")
	}
	type note struct {
		at  time.Time
		msg alert.Message
	}
	var mu sync.Mutex
	var pages []note
	firstPage := make(chan time.Time, 1)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		at := time.Now()
		var m alert.Message
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err := json.Unmarshal(body, &m); err != nil {
			t.Errorf("webhook: %v: %s", err, body)
		}
		mu.Lock()
		defer mu.Unlock()
		if m.Status == "firing" && m.Transition.Severity == "page" {
			pages = append(pages, note{at, m})
			select {
			case firstPage <- at:
			default:
			}
		}
	}))
	defer hook.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan string, 1)
	var readyAt time.Time
	done := make(chan error, 1)
	go func() {
		_, err := Run(ctx, Options{
			DataDir: t.TempDir(), Listener: listen(t), PlatformListener: listen(t),
			// The default speed and warmup; a week of history holds all
			// but the oldest past incident and writes in seconds.
			History: 7 * day, Webhooks: []string{hook.URL}, Out: testWriter{t},
			OnReady: func(url string) { readyAt = time.Now(); ready <- url },
		})
		done <- err
	}()
	var url string
	select {
	case url = <-ready:
	case err := <-done:
		t.Fatalf("demo ended before ready: %v", err)
	case <-time.After(5 * time.Minute):
		t.Fatal("demo not ready after 5 minutes")
	}

	// At start: the history's incidents, this month's report and a
	// postmortem draft, through the API and the UI.
	get := func(path string) string {
		t.Helper()
		resp, err := http.Get(url + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s: %s", path, resp.Status, b)
		}
		return string(b)
	}
	var incs struct {
		Items []alert.Incident `json:"items"`
	}
	if err := json.Unmarshal([]byte(get("/api/v1/incidents?state=closed")), &incs); err != nil {
		t.Fatal(err)
	}
	if len(incs.Items) < 3 {
		t.Fatalf("%d past incidents at start, want the history's (3 or more in a week)", len(incs.Items))
	}
	newest := incs.Items[0]
	month := newest.FirstBadAt.UTC().Format("2006-01")
	var rep struct {
		SLOs []struct {
			Key        string   `json:"key"`
			Attainment *float64 `json:"attainment"`
			ByIncident []struct {
				Bad float64 `json:"bad"`
			} `json:"byIncident"`
		} `json:"slos"`
		Incidents []json.RawMessage `json:"incidents"`
		Deploys   []json.RawMessage `json:"deploys"`
	}
	if err := json.Unmarshal([]byte(get("/api/v1/reports?period="+month)), &rep); err != nil {
		t.Fatal(err)
	}
	spent := 0
	for _, s := range rep.SLOs {
		for _, b := range s.ByIncident {
			if b.Bad > 0 {
				spent++
			}
		}
	}
	if len(rep.SLOs) == 0 || len(rep.Incidents) == 0 || spent == 0 {
		t.Errorf("report %s at start: %d SLOs, %d incidents, %d incident spends with bad events; want all non-zero", month, len(rep.SLOs), len(rep.Incidents), spent)
	}
	pm := get(fmt.Sprintf("/api/v1/incidents/%d/postmortem", newest.ID))
	for _, want := range []string{"# Postmortem draft: incident", "## Timeline", "## SLIs and budget impact", "## Open questions", newest.Service} {
		if !strings.Contains(pm, want) {
			t.Errorf("postmortem of incident %d lacks %q:\n%s", newest.ID, want, pm)
		}
	}
	if page := get("/reports?period=" + month); !strings.Contains(page, "SLOs met their objective") {
		t.Errorf("the report page at start lacks its summary")
	}

	select {
	case at := <-firstPage:
		d := at.Sub(readyAt)
		t.Logf("first page notification %.1fs after ready", d.Seconds())
		if d > firstPageBound {
			t.Errorf("first page notification %.1fs after ready, want within %s", d.Seconds(), firstPageBound)
		}
		mu.Lock()
		if m := pages[0].msg; m.Transition.SLO != "checkout-availability" {
			t.Errorf("first page is of %s, want checkout-availability (the payment outage)", m.Transition.SLO)
		}
		mu.Unlock()
	case <-time.After(time.Until(readyAt.Add(firstPageWait))):
		t.Errorf("no page notification within %s of ready", firstPageWait)
	case err := <-done:
		t.Fatalf("demo ended: %v", err)
	}

	// The payment outage's incident lists example traces linked to the
	// default Jaeger UI, in the API and on its page.
	var linked string
	for deadline := time.Now().Add(60 * time.Second); linked == "" && time.Now().Before(deadline); time.Sleep(time.Second) {
		var open struct {
			Items []struct {
				ID int64 `json:"id"`
			} `json:"items"`
		}
		if err := json.Unmarshal([]byte(get("/api/v1/incidents?state=open&service=checkout")), &open); err != nil || len(open.Items) == 0 {
			continue
		}
		var inc struct {
			ExampleTraces []struct {
				TraceID string `json:"traceId"`
				URL     string `json:"url"`
			} `json:"exampleTraces"`
		}
		if err := json.Unmarshal([]byte(get(fmt.Sprintf("/api/v1/incidents/%d", open.Items[0].ID))), &inc); err != nil {
			t.Fatalf("incident %d: %v", open.Items[0].ID, err)
		}
		for _, ex := range inc.ExampleTraces {
			if ex.URL != "http://127.0.0.1:16686/trace/"+ex.TraceID {
				t.Errorf("incident %d trace %s links to %q, want the default Jaeger UI", open.Items[0].ID, ex.TraceID, ex.URL)
			}
			if linked == "" && ex.URL != "" {
				linked = ex.URL
				if page := get(fmt.Sprintf("/incidents/%d", open.Items[0].ID)); !strings.Contains(page, `href="`+ex.URL+`"`) {
					t.Errorf("incident %d page lacks the trace link %s", open.Items[0].ID, ex.URL)
				}
			}
		}
	}
	if linked == "" {
		t.Errorf("no open checkout incident listed a linked example trace within 60s of the first page")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("demo: %v", err)
	}
}
