package telemetry

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
)

// scriptedAPI is a fake Prometheus API that answers from a script of
// responses and records what it was sent.
type scriptedAPI struct {
	mu       sync.Mutex
	script   []func(w http.ResponseWriter, r *http.Request)
	requests []*http.Request
	forms    []string
}

func (s *scriptedAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	s.mu.Lock()
	s.requests = append(s.requests, r)
	s.forms = append(s.forms, r.URL.Path+"?"+r.Form.Encode())
	var f func(http.ResponseWriter, *http.Request)
	if len(s.script) > 0 {
		f, s.script = s.script[0], s.script[1:]
	}
	s.mu.Unlock()
	if f == nil {
		http.Error(w, "script exhausted", http.StatusTeapot)
		return
	}
	f(w, r)
}

func reply(status int, body string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprint(w, body)
	}
}

const vectorOK = `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"a"},"value":[1700000000.123,"1"]}]}}`

func newTestRemote(t *testing.T, url string, opts RemoteOptions) *Remote {
	t.Helper()
	opts.URL = url
	if opts.MinBackoff == 0 {
		opts.MinBackoff = time.Millisecond
	}
	if opts.MaxBackoff == 0 {
		opts.MaxBackoff = 5 * time.Millisecond
	}
	r, err := NewRemote(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func TestRemoteRetriesAndHeaders(t *testing.T) {
	api := &scriptedAPI{script: []func(http.ResponseWriter, *http.Request){
		reply(503, `{"status":"error","errorType":"unavailable","error":"overloaded"}`),
		func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Retry-After", "0")
			reply(429, `too many requests`)(w, nil)
		},
		reply(200, vectorOK),
	}}
	srv := httptest.NewServer(api)
	defer srv.Close()
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("secret-token-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	r := newTestRemote(t, srv.URL+"/prefix/", RemoteOptions{
		BearerTokenFile: tokenFile,
		TenantID:        "team-a",
		Headers:         map[string]string{"X-Extra": "1"},
		Logger:          slog.New(slog.NewTextHandler(&logs, nil)),
	})
	v, err := r.Instant(context.Background(), "up", time.UnixMilli(1_700_000_000_123))
	if err != nil {
		t.Fatal(err)
	}
	if len(v) != 1 || v[0].T != 1_700_000_000_123 || v[0].F != 1 || v[0].Metric.String() != `{__name__="up", job="a"}` {
		t.Errorf("result %v", v)
	}
	if len(api.requests) != 3 {
		t.Fatalf("%d attempts, want 3 (503, 429, 200)", len(api.requests))
	}
	for _, req := range api.requests {
		if req.URL.Path != "/prefix/api/v1/query" || req.Method != http.MethodPost {
			t.Errorf("request %s %s", req.Method, req.URL.Path)
		}
		if got := req.Header.Get("Authorization"); got != "Bearer secret-token-1" {
			t.Errorf("Authorization %q", got)
		}
		if req.Header.Get("X-Scope-OrgID") != "team-a" || req.Header.Get("X-Extra") != "1" {
			t.Errorf("headers %v", req.Header)
		}
	}
	if api.forms[0] != "/prefix/api/v1/query?query=up&time=1700000000.123" {
		t.Errorf("form %s", api.forms[0])
	}
	// The token file is read again after it changes.
	if err := os.WriteFile(tokenFile, []byte("secret-token-2-longer"), 0o600); err != nil {
		t.Fatal(err)
	}
	api.script = append(api.script, reply(200, vectorOK))
	if _, err := r.Instant(context.Background(), "up", time.Now()); err != nil {
		t.Fatal(err)
	}
	if got := api.requests[3].Header.Get("Authorization"); got != "Bearer secret-token-2-longer" {
		t.Errorf("after rotation: Authorization %q", got)
	}
	if strings.Contains(logs.String(), "secret-token") {
		t.Errorf("a token was logged: %s", logs.String())
	}
	if !strings.Contains(logs.String(), "retrying") {
		t.Errorf("retries were not logged: %s", logs.String())
	}
}

func TestRemoteErrorClassification(t *testing.T) {
	cases := []struct {
		name        string
		replies     []func(http.ResponseWriter, *http.Request)
		attempts    int
		unavailable bool
		want        string
	}{
		{"bad query is not retried", []func(http.ResponseWriter, *http.Request){
			reply(400, `{"status":"error","errorType":"bad_data","error":"1:5: parse error: unclosed left parenthesis"}`)},
			1, false, "bad_data (HTTP 400): 1:5: parse error"},
		{"execution error is not retried", []func(http.ResponseWriter, *http.Request){
			reply(422, `{"status":"error","errorType":"execution","error":"many-to-many matching not allowed"}`)},
			1, false, "execution (HTTP 422)"},
		{"auth failure is not retried", []func(http.ResponseWriter, *http.Request){reply(401, `unauthorized`)},
			1, false, "HTTP 401: unauthorized"},
		{"5xx until retries run out", []func(http.ResponseWriter, *http.Request){
			reply(502, `bad gateway`), reply(502, `bad gateway`), reply(502, `bad gateway`)},
			3, true, "HTTP 502: bad gateway"},
		{"malformed success body", []func(http.ResponseWriter, *http.Request){reply(200, `<html>`)},
			1, true, "malformed response"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			api := &scriptedAPI{script: c.replies}
			srv := httptest.NewServer(api)
			defer srv.Close()
			r := newTestRemote(t, srv.URL, RemoteOptions{MaxRetries: 2})
			_, err := r.Instant(context.Background(), "sum(", time.Now())
			if err == nil {
				t.Fatal("no error")
			}
			if len(api.requests) != c.attempts {
				t.Errorf("%d attempts, want %d", len(api.requests), c.attempts)
			}
			if errors.Is(err, ErrUnavailable) != c.unavailable {
				t.Errorf("errors.Is(%v, ErrUnavailable) = %v, want %v", err, !c.unavailable, c.unavailable)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q lacks %q", err, c.want)
			}
		})
	}
}

// TestRemoteTimeout points a Remote at a server that never answers: each
// attempt times out, the call fails with ErrUnavailable in bounded time,
// and no goroutine is left behind (TestMain checks with goleak).
func TestRemoteTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	r := newTestRemote(t, srv.URL, RemoteOptions{Timeout: 50 * time.Millisecond, MaxRetries: 2})
	start := time.Now()
	_, err := r.LabelNames(context.Background(), time.Now().Add(-time.Hour), time.Now())
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s", d)
	}
	// The caller's deadline bounds the whole call, retries included.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	r2 := newTestRemote(t, srv.URL, RemoteOptions{Timeout: time.Hour, MaxRetries: 5})
	if _, err := r2.Series(ctx, []string{"up"}, time.Now().Add(-time.Hour), time.Now()); !errors.Is(err, ErrUnavailable) {
		t.Errorf("caller deadline: err %v, want ErrUnavailable", err)
	}
}

func TestRemoteBasicAuthAndTLS(t *testing.T) {
	api := &scriptedAPI{}
	srv := httptest.NewTLSServer(api)
	defer srv.Close()
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte("hunter2"), 0o600); err != nil {
		t.Fatal(err)
	}
	api.script = append(api.script, reply(200, `{"status":"success","data":["b","a"]}`))
	r := newTestRemote(t, srv.URL, RemoteOptions{
		BasicAuth: &BasicAuth{Username: "qsp", PasswordFile: pwFile},
		TLS:       TLSOptions{CAFile: caFile, ServerName: "example.com"},
	})
	got, err := r.LabelValues(context.Background(), "job", time.UnixMilli(1000), time.UnixMilli(2000))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != "a,b" {
		t.Errorf("values %v, want sorted a,b", got)
	}
	user, pw, ok := api.requests[0].BasicAuth()
	if !ok || user != "qsp" || pw != "hunter2" {
		t.Errorf("basic auth %q %q %v", user, pw, ok)
	}
	if api.forms[0] != "/api/v1/label/job/values?end=2.000&start=1.000" {
		t.Errorf("request %s", api.forms[0])
	}
	// Without the CA the server is not trusted: a connection failure.
	r2 := newTestRemote(t, srv.URL, RemoteOptions{MaxRetries: -1})
	if _, err := r2.LabelNames(context.Background(), time.Now(), time.Now()); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("untrusted server: %v", err)
	}
}

func TestRemoteSamplesChunks(t *testing.T) {
	// Two chunks of 1h over (0h, 2h]; each answer includes a sample at the
	// chunk's start, as Prometheus 2's closed range selector does, which
	// must be dropped.
	api := &scriptedAPI{script: []func(http.ResponseWriter, *http.Request){
		reply(200, `{"status":"success","data":{"resultType":"matrix","result":[
			{"metric":{"__name__":"m","job":"b"},"values":[[0,"9"],[1800,"1"]]},
			{"metric":{"__name__":"m","job":"a"},"values":[[0,"5"],[3600,"6"]]}]}}`),
		reply(200, `{"status":"success","data":{"resultType":"matrix","result":[
			{"metric":{"__name__":"m","job":"a"},"values":[[3600,"6"],[5400,"7"],[7200,"8"]]}]}}`),
	}}
	srv := httptest.NewServer(api)
	defer srv.Close()
	r := newTestRemote(t, srv.URL, RemoteOptions{SamplesChunk: time.Hour})
	m, err := r.Samples(context.Background(), []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "__name__", "m")},
		time.Unix(0, 0), time.Unix(7200, 0))
	if err != nil {
		t.Fatal(err)
	}
	want := "{__name__=\"m\", job=\"a\"} =>\n6 @[3600000]\n7 @[5400000]\n8 @[7200000]\n{__name__=\"m\", job=\"b\"} =>\n1 @[1800000]"
	if m.String() != want {
		t.Errorf("samples:\n%s\nwant:\n%s", m, want)
	}
	wantForms := []string{
		`/api/v1/query?query=%7B__name__%3D%22m%22%7D%5B3600000ms%5D&time=3600.000`,
		`/api/v1/query?query=%7B__name__%3D%22m%22%7D%5B3600000ms%5D&time=7200.000`,
	}
	if strings.Join(api.forms, "\n") != strings.Join(wantForms, "\n") {
		t.Errorf("queries:\n%s\nwant:\n%s", strings.Join(api.forms, "\n"), strings.Join(wantForms, "\n"))
	}
}

func TestRemoteOptionsValidation(t *testing.T) {
	for _, o := range []RemoteOptions{
		{},
		{URL: "ftp://x"},
		{URL: "http://user:pw@x"},
		{URL: "http://x", BearerToken: "a", BearerTokenFile: "b"},
		{URL: "http://x", BearerTokenFile: "/nonexistent/token"},
		{URL: "http://x", TLS: TLSOptions{CertFile: "c"}},
		{URL: "http://x", Timeout: -1},
	} {
		if _, err := NewRemote(o); err == nil {
			t.Errorf("NewRemote(%+v) accepted", o)
		} else if strings.Contains(err.Error(), "pw@") {
			t.Errorf("error leaks credentials: %v", err)
		}
	}
}

// TestRemoteErrorsScrubCredentials runs a backend that echoes the request
// headers in its errors, as some proxies do: what QSP keeps of the error
// (and shows in SLO status reasons) carries no credential and is short.
func TestRemoteErrorsScrubCredentials(t *testing.T) {
	const token, password, apiKey = "s3cr3t-t0ken-value", "hunter2-pw", "key-0123456789"
	var mode atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dump := new(strings.Builder)
		if err := r.Header.Write(dump); err != nil {
			t.Error(err)
		}
		switch mode.Load() {
		case 0: // a plain-text fault with the raw headers
			http.Error(w, "upstream refused the request:\n"+dump.String(), http.StatusBadGateway)
		case 1: // Prometheus' envelope, headers as a Go map
			w.WriteHeader(http.StatusBadRequest)
			msg, _ := json.Marshal(fmt.Sprintf("bad request %v", r.Header))
			fmt.Fprintf(w, `{"status":"error","errorType":"bad_data","error":%s}`, msg)
		case 2: // 200 with an error, headers as JSON, and very long
			hb, _ := json.Marshal(r.Header)
			msg, _ := json.Marshal(string(hb) + strings.Repeat(" padding", 5000))
			fmt.Fprintf(w, `{"status":"error","errorType":"execution","error":%s}`, msg)
		}
	}))
	defer srv.Close()
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	remotes := map[string]*Remote{
		"bearer": newTestRemote(t, srv.URL, RemoteOptions{MaxRetries: -1, BearerToken: token, Headers: map[string]string{"X-Api-Key": apiKey}}),
		"basic":  newTestRemote(t, srv.URL, RemoteOptions{MaxRetries: -1, BasicAuth: &BasicAuth{Username: "qsp", PasswordFile: pwFile}}),
	}
	secrets := []string{token, password, apiKey, base64.StdEncoding.EncodeToString([]byte("qsp:" + password))}
	for name, r := range remotes {
		for m := range int32(3) {
			mode.Store(m)
			_, err := r.Instant(context.Background(), "up", time.UnixMilli(1000))
			var apiErr *RemoteAPIError
			if !errors.As(err, &apiErr) {
				t.Fatalf("%s mode %d: got %v, want a RemoteAPIError", name, m, err)
			}
			msg := err.Error()
			for _, s := range secrets {
				if strings.Contains(msg, s) {
					t.Errorf("%s mode %d: the error shows %q: %s", name, m, s, msg)
				}
			}
			if !strings.Contains(msg, "<redacted>") || strings.ContainsAny(apiErr.Message, "\r\n") {
				t.Errorf("%s mode %d: got %q, want credentials redacted on one line", name, m, msg)
			}
			if len(apiErr.Message) > maxRemoteMessage+len("…") {
				t.Errorf("%s mode %d: message of %d bytes, more than %d", name, m, len(apiErr.Message), maxRemoteMessage)
			}
		}
	}
}

// TestRemoteScrubText covers credentials QSP did not configure (a proxy's
// own, say), which only the patterns catch.
func TestRemoteScrubText(t *testing.T) {
	r := newTestRemote(t, "http://127.0.0.1:1", RemoteOptions{})
	cases := []struct{ in, want string }{
		{"Authorization: Basic cXNwOnB3\nX: y", "Authorization: <redacted> X: y"},
		{`{"authorization":"Bearer abc.def"}`, `{"authorization":"<redacted>"}`},
		{"map[Authorization:[Bearer abc] Accept:[*/*]]", "map[Authorization:<redacted>] Accept:[*/*]]"},
		{"proxy-authorization=xyz; next", "proxy-authorization=<redacted>; next"},
		{"token was bearer eyJhbGciOi.x-y_z", "token was bearer <redacted>"},
		{"no credentials: parse error at 1:5", "no credentials: parse error at 1:5"},
		{strings.Repeat("é", 400), strings.Repeat("é", 256) + "…"},
	}
	for _, c := range cases {
		if got := r.scrub(c.in); got != c.want {
			t.Errorf("scrub(%.40q): got %q, want %q", c.in, got, c.want)
		}
	}
}
