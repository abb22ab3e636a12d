package app

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/cookiejar"
	neturl "net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/qsp-dev/qsp/internal/api"
	"github.com/qsp-dev/qsp/internal/externaltest"
)

// selfSigned writes a certificate for 127.0.0.1 and its key.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "qsp test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestTLSListener(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &App{cfg: &Config{Auth: AuthConfig{TLS: ServerTLS{CertFile: certFile, KeyFile: keyFile}}}}
	tl, err := a.tlsListener(l)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("hello over tls")) })}
	go srv.Serve(tl)
	defer srv.Close()
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := c.Get("https://" + l.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
		t.Errorf("TLS state %+v", resp.TLS)
	}
	// Plain HTTP to a TLS listener fails.
	if resp, err := http.Get("http://" + l.Addr().String() + "/"); err == nil && resp.StatusCode == 200 {
		t.Error("plain HTTP served")
	}

	for name, tc := range map[string]ServerTLS{
		"cert only":    {CertFile: certFile},
		"missing file": {CertFile: filepath.Join(dir, "nope.pem"), KeyFile: keyFile},
		"key not cert": {CertFile: keyFile, KeyFile: keyFile},
	} {
		a := &App{cfg: &Config{Auth: AuthConfig{TLS: tc}}}
		if _, err := a.tlsListener(l); err == nil || !strings.Contains(err.Error(), "auth.tls") {
			t.Errorf("%s: %v", name, err)
		}
	}
	plain := &App{cfg: &Config{}}
	if got, err := plain.tlsListener(l); err != nil || got != l {
		t.Errorf("without TLS: %v %v", got, err)
	}
}

func TestLoopback(t *testing.T) {
	for addr, want := range map[string]bool{"127.0.0.1:8080": true, "[::1]:80": true, "localhost:1": true, "0.0.0.0:8080": false, ":8080": false, "10.0.0.1:80": false, "bad": false} {
		if got := loopback(addr); got != want {
			t.Errorf("loopback(%q) = %v", addr, got)
		}
	}
}

// TestServeTLSSessionAcrossRestart runs the whole app with auth.tls and a
// token: it serves HTTPS only, and a UI session opened before a restart is
// still valid after it, because the session key lives in the store.
func TestServeTLSSessionAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	specs := filepath.Join(dir, "specs")
	os.MkdirAll(specs, 0o755)
	os.WriteFile(filepath.Join(specs, "shop.yaml"), []byte("apiVersion: qsp/v1\nkind: Service\nmetadata: {name: shop}\nspec: {owner: team}\n"), 0o644)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}

	start := func() (string, func()) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		cfg := &Config{DataDir: filepath.Join(dir, "data"), Specs: []string{specs}, Listen: l.Addr().String(),
			Auth: AuthConfig{TLS: ServerTLS{CertFile: certFile, KeyFile: keyFile},
				Tokens: []TokenConfig{{Name: "alice", Role: "operator", SHA256: api.HashToken("secret-token")}}}}
		ctx, cancel := context.WithCancel(context.Background())
		a, err := New(ctx, Options{Config: cfg, Listener: l})
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		url := "https://" + l.Addr().String()
		externaltest.Eventually(t, 30*time.Second, 50*time.Millisecond, func() bool {
			resp, err := client.Get(url + "/healthz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		}, "HTTPS /healthz")
		return url, func() {
			cancel()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("app did not stop within 30s")
			}
		}
	}

	url, stop := start()
	if resp, err := http.Get("http://" + strings.TrimPrefix(url, "https://") + "/healthz"); err == nil && resp.StatusCode == 200 {
		t.Error("plain HTTP answered next to auth.tls")
	}
	// Sign in through the UI: the form's CSRF token, then the session cookie.
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Transport: client.Transport, Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := browser.Get(url + "/login")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`name="` + api.CSRFField + `" value="([^"]+)"`).FindSubmatch(page)
	if m == nil {
		t.Fatalf("GET /login: %s: no CSRF field in the form", resp.Status)
	}
	req, _ := http.NewRequest(http.MethodPost, url+"/login", strings.NewReader(neturl.Values{"token": {"secret-token"}, api.CSRFField: {string(m[1])}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", url)
	resp, err = browser.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var session *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == api.SessionCookie {
			session = c
		}
	}
	if session == nil {
		t.Fatalf("POST /login: %s, no %s cookie", resp.Status, api.SessionCookie)
	}
	if !session.Secure || !session.HttpOnly {
		t.Errorf("session cookie over TLS: Secure=%v HttpOnly=%v", session.Secure, session.HttpOnly)
	}
	whoami := func() string {
		req, _ := http.NewRequest(http.MethodGet, url+"/api/v1/whoami", nil)
		req.AddCookie(session)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if got := whoami(); !strings.Contains(got, "alice") {
		t.Fatalf("whoami with the session: %s", got)
	}
	stop()

	url2, stop2 := start()
	defer stop2()
	url = url2
	if got := whoami(); !strings.Contains(got, "alice") {
		t.Fatalf("after a restart the session is no longer valid: %s", got)
	}
}
