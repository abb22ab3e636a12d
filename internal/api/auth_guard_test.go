package api

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

var guardTestOpts = GuardOptions{Hosts: []string{"qsp.monitoring.svc", ".example.com", "qsp.corp.test"}, Origins: []string{"https://qsp.corp.test"},
	CORSOrigins: []string{"https://grafana.corp.test"}, Exempt: []string{"/healthz"}}

func TestGuard(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(204) })
	g := Guard(guardTestOpts, ok)
	for _, tc := range []struct {
		name, method, path, host string
		hdr                      map[string]string
		want                     int
	}{
		{"loopback IP", "GET", "/api/v1/slos", "127.0.0.1:8080", nil, 204},
		{"IPv6 loopback", "GET", "/api/v1/slos", "[::1]:8080", nil, 204},
		{"localhost", "GET", "/", "localhost:8080", nil, 204},
		{"pod IP", "GET", "/api/v1/slos", "10.1.2.3:8080", nil, 204},
		{"configured name", "GET", "/api/v1/slos", "qsp.monitoring.svc:8080", nil, 204},
		{"configured suffix", "GET", "/api/v1/slos", "qsp.example.com", nil, 204},
		{"suffix is not a prefix", "GET", "/api/v1/slos", "example.com.evil.test", nil, 403},
		{"rebinding read", "GET", "/api/v1/whoami", "rebind.evil.example:8080", nil, 403},
		{"rebinding UI page", "GET", "/", "rebind.evil.example", nil, 403},
		{"no Host", "GET", "/api/v1/slos", "", nil, 403},
		{"probe with a foreign Host", "GET", "/healthz", "rebind.evil.example", nil, 204},
		{"write without Origin", "POST", "/-/reload", "127.0.0.1:8080", nil, 204},
		{"write same origin", "POST", "/-/reload", "127.0.0.1:8080", map[string]string{"Origin": "http://127.0.0.1:8080"}, 204},
		{"write other port", "POST", "/-/reload", "127.0.0.1:8080", map[string]string{"Origin": "http://127.0.0.1:9090"}, 403},
		{"write other scheme", "POST", "/-/reload", "127.0.0.1:8080", map[string]string{"Origin": "https://127.0.0.1:8080"}, 403},
		{"write Origin null", "PUT", "/api/v1/playbooks/killswitch", "127.0.0.1:8080", map[string]string{"Origin": "null"}, 403},
		{"write externalURL origin", "POST", "/-/reload", "qsp.corp.test", map[string]string{"Origin": "https://qsp.corp.test"}, 204},
		{"write externalURL's host over http", "POST", "/-/reload", "qsp.corp.test", map[string]string{"Origin": "http://qsp.corp.test"}, 204},
		{"write externalURL origin to another host", "POST", "/-/reload", "127.0.0.1", map[string]string{"Origin": "https://qsp.corp.test.evil"}, 403},
		{"write cross-site fetch", "DELETE", "/api/v1/x", "127.0.0.1:8080", map[string]string{"Sec-Fetch-Site": "cross-site"}, 403},
		{"write same-site fetch", "POST", "/api/v1/x", "127.0.0.1:8080", map[string]string{"Sec-Fetch-Site": "same-site"}, 403},
		{"write typed URL", "POST", "/api/v1/x", "127.0.0.1:8080", map[string]string{"Sec-Fetch-Site": "none"}, 204},
		{"CORS origin without a token", "POST", "/api/v1/x", "127.0.0.1:8080", map[string]string{"Origin": "https://grafana.corp.test"}, 403},
		{"CORS origin with a token", "POST", "/api/v1/x", "127.0.0.1:8080", map[string]string{"Origin": "https://grafana.corp.test", "Authorization": "Bearer x"}, 204},
		{"read with a foreign Origin", "GET", "/api/v1/x", "127.0.0.1:8080", map[string]string{"Origin": "https://evil.example"}, 204},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, "http://x"+tc.path, nil)
			r.Host = tc.host
			for k, v := range tc.hdr {
				r.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			g.ServeHTTP(rec, r)
			if rec.Code != tc.want {
				t.Errorf("got %d %s, want %d", rec.Code, rec.Body, tc.want)
			}
			if rec.Code == 403 && !strings.Contains(rec.Body.String(), "guard") {
				t.Errorf("refusal without its reason: %s", rec.Body)
			}
		})
	}
}

// FuzzGuard: any Host and Origin are answered without a panic, and a
// Host naming no configured name, IP literal or localhost is refused.
func FuzzGuard(f *testing.F) {
	for _, s := range [][2]string{{"127.0.0.1:8080", "http://127.0.0.1:8080"}, {"rebind.evil.example", "null"}, {"[::1]", "http://[::1]"},
		{"qsp.example.com.", "https://qsp.example.com"}, {"%zz", "http://%zz"}, {"", ""}} {
		f.Add(s[0], s[1], true)
	}
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(204) })
	g := Guard(guardTestOpts, ok)
	f.Fuzz(func(t *testing.T, host, origin string, write bool) {
		if len(host) > 1024 || len(origin) > 1024 {
			return
		}
		r := httptest.NewRequest("GET", "http://x/api/v1/slos", nil)
		if write {
			r.Method = "POST"
		}
		r.Host = host
		r.Header.Set("Origin", origin)
		rec := httptest.NewRecorder()
		g.ServeHTTP(rec, r)
		if h := hostName(host); rec.Code == 204 && strings.Contains(h, "evil") && !strings.HasSuffix(h, ".example.com") && !strings.HasSuffix(h, ".localhost") {
			t.Errorf("Host %q passed", host)
		}
	})
}

// BenchmarkGuard is the cost the guard adds to every request, a
// remote_write POST with a bearer token (the hot path) and a UI write
// with an Origin.
func BenchmarkGuard(b *testing.B) {
	ok := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	g := Guard(guardTestOpts, ok)
	for _, bc := range []struct {
		name string
		hdr  map[string]string
	}{
		{"remote_write", map[string]string{"Authorization": "Bearer x"}},
		{"ui_form", map[string]string{"Origin": "http://qsp.monitoring.svc:8080"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := httptest.NewRequest("POST", "http://x/api/v1/write", nil)
			r.Host = "qsp.monitoring.svc:8080"
			for k, v := range bc.hdr {
				r.Header.Set(k, v)
			}
			b.ReportAllocs()
			for b.Loop() {
				g.ServeHTTP(nil, r)
			}
		})
	}
}
