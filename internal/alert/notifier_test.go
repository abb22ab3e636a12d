package alert

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	b := Backoff{Initial: 100 * time.Millisecond, Max: 2 * time.Second, Multiplier: 2, Jitter: 0.5}
	for _, c := range []struct {
		attempt  int
		u        float64
		min, max time.Duration
	}{
		{1, 0, 100 * time.Millisecond, 100 * time.Millisecond},
		{2, 0, 200 * time.Millisecond, 200 * time.Millisecond},
		{3, 0, 400 * time.Millisecond, 400 * time.Millisecond},
		{5, 0, 1600 * time.Millisecond, 1600 * time.Millisecond},
		{6, 0, 2 * time.Second, 2 * time.Second},                   // capped
		{1000, 0, 2 * time.Second, 2 * time.Second},                // no overflow
		{3, 0.999, 200 * time.Millisecond, 201 * time.Millisecond}, // jitter takes up to half
		{0, 0, 100 * time.Millisecond, 100 * time.Millisecond},     // treated as the first
	} {
		got := b.Delay(c.attempt, c.u)
		if got < c.min || got > c.max {
			t.Errorf("Delay(%d, %v): got %s, want between %s and %s", c.attempt, c.u, got, c.min, c.max)
		}
	}
	// With real random numbers every delay stays within [(1-J)d, d].
	for attempt := 1; attempt < 10; attempt++ {
		top := b.Delay(attempt, 0)
		for range 100 {
			got := b.Delay(attempt, jitterRand())
			if got > top || got < top/2 {
				t.Fatalf("attempt %d: %s outside [%s, %s]", attempt, got, top/2, top)
			}
		}
	}
	if d := (Backoff{}).Delay(1, 0); d != time.Second {
		t.Errorf("default initial delay: got %s, want 1s", d)
	}
	if d := (Backoff{}).Delay(100, 0); d != time.Minute {
		t.Errorf("default cap: got %s, want 1m", d)
	}
}

func TestRetryable(t *testing.T) {
	var netErr net.Error = &net.OpError{Op: "dial", Err: errors.New("connection refused")}
	for _, c := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{&HTTPError{StatusCode: 500}, true},
		{&HTTPError{StatusCode: 503}, true},
		{&HTTPError{StatusCode: 429}, true},
		{&HTTPError{StatusCode: 408}, true},
		{&HTTPError{StatusCode: 400}, false},
		{&HTTPError{StatusCode: 401}, false},
		{&HTTPError{StatusCode: 404}, false},
		{fmt.Errorf("post: %w", &HTTPError{StatusCode: 422}), false},
		{netErr, true},
		{context.DeadlineExceeded, true},
		{permanentError{errors.New("bad URL")}, false},
	} {
		if got := Retryable(c.err); got != c.want {
			t.Errorf("Retryable(%v): got %v, want %v", c.err, got, c.want)
		}
	}
}

// TestSign checks the HMAC-SHA256 signature against the test vectors of
// RFC 4231 (section 4), an independent reference.
func TestSign(t *testing.T) {
	for _, c := range []struct {
		key, data []byte
		want      string
	}{
		{[]byte(strings.Repeat("\x0b", 20)), []byte("Hi There"), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
		{[]byte("Jefe"), []byte("what do ya want for nothing?"), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
		{[]byte(strings.Repeat("\xaa", 131)), []byte("Test Using Larger Than Block-Size Key - Hash Key First"), "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
	} {
		got := Sign(c.key, c.data)
		if got != "sha256="+c.want {
			t.Errorf("Sign(%q): got %s, want sha256=%s", c.data, got, c.want)
		}
		if !Verify(c.key, c.data, got) {
			t.Errorf("Verify refuses its own signature of %q", c.data)
		}
		if Verify(c.key, append([]byte("x"), c.data...), got) || Verify([]byte("other"), c.data, got) {
			t.Errorf("Verify accepts a signature of other data or under another key")
		}
	}
	for _, h := range []string{"", "sha256=", "sha1=abcd", "sha256=zz", "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"} {
		if Verify([]byte("k"), []byte("d"), h) {
			t.Errorf("Verify accepts malformed header %q", h)
		}
	}
}

type recorded struct {
	path   string
	header http.Header
	body   []byte
}

// recorder is a receiver that records requests and answers with status.
type recorder struct {
	mu     sync.Mutex
	reqs   []recorded
	status int
	delay  time.Duration
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	b, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	status, delay := r.status, r.delay
	r.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-req.Context().Done():
			return
		}
	}
	if status == 0 {
		status = http.StatusOK
	}
	r.mu.Lock()
	if status/100 == 2 {
		r.reqs = append(r.reqs, recorded{req.URL.Path, req.Header.Clone(), b})
	}
	r.mu.Unlock()
	w.WriteHeader(status)
	fmt.Fprintln(w, http.StatusText(status))
}

func (r *recorder) set(status int, delay time.Duration) {
	r.mu.Lock()
	r.status, r.delay = status, delay
	r.mu.Unlock()
}

func (r *recorder) got() []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]recorded(nil), r.reqs...)
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func testMessage(status string) *Message {
	a := Alert{Labels: map[string]string{"alertname": "SLOErrorBudgetBurn", "slo": "shop-availability", "severity": "page"},
		Annotations: map[string]string{"summary": "burning"}, StartsAt: time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC), GeneratorURL: "http://qsp/slos/shop-availability"}
	fp := Fingerprint(a.Labels)
	return &Message{Version: MessageVersion, ID: eventID(fp, status, a.StartsAt), Status: status, Fingerprint: fp, Alert: a,
		Transition: TransitionInfo{Key: "shop-availability", Severity: "page", Alert: "SLOErrorBudgetBurn", From: "pending", To: status, At: a.StartsAt}}
}

func TestWebhook(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	secret := "s3cr3t-key"
	w, err := NewWebhook(WebhookOptions{Name: "ops", URL: srv.URL + "/hook?token=abc", SecretFile: writeFile(t, secret+"\n"), Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	msgs := []*Message{testMessage(StatusFiring), testMessage(StatusResolved)}
	if n, err := w.Notify(ctx, msgs); n != 2 || err != nil {
		t.Fatalf("notify: got %d, %v; want 2, nil", n, err)
	}
	got := rec.got()
	if len(got) != 2 {
		t.Fatalf("receiver got %d requests, want 2", len(got))
	}
	for i, r := range got {
		// The signature is checked the way a receiver would, with the key
		// as written in the file minus the newline.
		if !Verify([]byte(secret), r.body, r.header.Get(SignatureHeader)) {
			t.Errorf("request %d: signature %q does not verify", i, r.header.Get(SignatureHeader))
		}
		sig, _ := strings.CutPrefix(r.header.Get(SignatureHeader), "sha256=")
		if _, err := hex.DecodeString(sig); err != nil || len(sig) != 64 {
			t.Errorf("request %d: signature %q is not 64 hex digits", i, sig)
		}
		if ct := r.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("content type %q", ct)
		}
		var m Message
		if err := json.Unmarshal(r.body, &m); err != nil {
			t.Fatalf("body is not a Message: %v", err)
		}
		if m.ID != msgs[i].ID || r.header.Get(DeliveryHeader) != m.ID || r.header.Get(EventHeader) != msgs[i].Status {
			t.Errorf("request %d: id %q, headers %q %q; want %q %q", i, m.ID, r.header.Get(DeliveryHeader), r.header.Get(EventHeader), msgs[i].ID, msgs[i].Status)
		}
		if m.Labels["slo"] != "shop-availability" || m.Transition.Key != "shop-availability" || m.Fingerprint != msgs[i].Fingerprint {
			t.Errorf("request %d: body lacks labels or transition: %s", i, r.body)
		}
		if strings.Contains(string(r.body), secret) {
			t.Error("the secret leaked into the body")
		}
	}

	t.Run("stored bytes", func(t *testing.T) {
		// A message read back from the outbox is sent as stored, even a
		// field this version does not know, and signed over those bytes.
		stored := []byte(`{"version":"1","id":"ev-1","status":"firing","fingerprint":"f","labels":{},"transition":{"key":"k"},"fromNewerVersion":true}`)
		var m Message
		if err := json.Unmarshal(stored, &m); err != nil {
			t.Fatal(err)
		}
		m.raw = stored
		n := len(rec.got())
		if _, err := w.Notify(ctx, []*Message{&m}); err != nil {
			t.Fatal(err)
		}
		r := rec.got()[n]
		if !bytes.Equal(r.body, stored) || !Verify([]byte(secret), r.body, r.header.Get(SignatureHeader)) {
			t.Errorf("sent %s (signature %s), want the stored bytes %s", r.body, r.header.Get(SignatureHeader), stored)
		}
	})

	t.Run("receiver errors", func(t *testing.T) {
		for _, c := range []struct {
			status    int
			delay     time.Duration
			retryable bool
		}{
			{http.StatusServiceUnavailable, 0, true},
			{http.StatusTooManyRequests, 0, true},
			{http.StatusBadRequest, 0, false},
			{http.StatusOK, time.Second, true}, // slower than the 200ms timeout
		} {
			rec.set(c.status, c.delay)
			actx, cancel := context.WithTimeout(ctx, w.Timeout())
			start := time.Now()
			n, err := w.Notify(actx, msgs)
			cancel()
			if n != 0 || err == nil {
				t.Errorf("status %d delay %s: got %d, %v; want 0 and an error", c.status, c.delay, n, err)
				continue
			}
			if Retryable(err) != c.retryable {
				t.Errorf("status %d delay %s: retryable %v, want %v (%v)", c.status, c.delay, Retryable(err), c.retryable, err)
			}
			if time.Since(start) > 900*time.Millisecond {
				t.Errorf("status %d delay %s: the per-target timeout was not honoured (%s)", c.status, c.delay, time.Since(start))
			}
			if strings.Contains(err.Error(), "token=abc") {
				t.Errorf("the error names the webhook URL with its token: %v", err)
			}
		}
		rec.set(0, 0)
	})

	t.Run("bad options", func(t *testing.T) {
		for _, o := range []WebhookOptions{
			{URL: srv.URL},
			{Name: "x", URL: "ftp://host/x"},
			{Name: "x", URL: "not a url"},
			{Name: "x", URL: srv.URL, SecretFile: filepath.Join(t.TempDir(), "missing")},
			{Name: "x", URL: srv.URL, SecretFile: writeFile(t, "  \n")},
		} {
			if _, err := NewWebhook(o); err == nil {
				t.Errorf("NewWebhook(%+v): no error", o)
			}
		}
	})

	t.Run("unsigned without a secret", func(t *testing.T) {
		rec2 := &recorder{}
		srv2 := httptest.NewServer(rec2)
		defer srv2.Close()
		w2, err := NewWebhook(WebhookOptions{Name: "plain", URL: srv2.URL})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w2.Notify(ctx, msgs[:1]); err != nil {
			t.Fatal(err)
		}
		if h := rec2.got()[0].header.Get(SignatureHeader); h != "" {
			t.Errorf("unsigned webhook sent signature %q", h)
		}
	})
}

func TestAlertmanagerPayload(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	now := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	tok := writeFile(t, "am-token\n")
	am, err := NewAlertmanager(AlertmanagerOptions{URL: srv.URL + "/prefix/", BearerTokenFile: tok, ResendInterval: time.Minute, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	firing, resolved := testMessage(StatusFiring), testMessage(StatusResolved)
	resolved.EndsAt = now.Add(-time.Minute)
	if n, err := am.Notify(context.Background(), []*Message{firing, resolved}); n != 2 || err != nil {
		t.Fatalf("notify: %d, %v", n, err)
	}
	if err := am.Resend(context.Background(), []Alert{firing.Alert}); err != nil {
		t.Fatal(err)
	}
	got := rec.got()
	if len(got) != 2 {
		t.Fatalf("got %d posts, want 2", len(got))
	}
	var posted []postableAlert
	if err := json.Unmarshal(got[0].body, &posted); err != nil {
		t.Fatalf("body: %v: %s", err, got[0].body)
	}
	if len(posted) != 2 {
		t.Fatalf("got %d alerts in one post, want 2", len(posted))
	}
	if want := now.Add(4 * time.Minute); !posted[0].EndsAt.Equal(want) {
		t.Errorf("firing endsAt: got %s, want now + 4 resend intervals = %s", posted[0].EndsAt, want)
	}
	if want := now.Add(-time.Minute); !posted[1].EndsAt.Equal(want) {
		t.Errorf("resolved endsAt: got %s, want the resolution time %s", posted[1].EndsAt, want)
	}
	if posted[0].GeneratorURL != firing.GeneratorURL || posted[0].Labels["slo"] != "shop-availability" || !posted[0].StartsAt.Equal(firing.StartsAt) {
		t.Errorf("alert: got %+v", posted[0])
	}
	if got[0].path != "/prefix/api/v2/alerts" {
		t.Errorf("path: got %q, want /prefix/api/v2/alerts", got[0].path)
	}
	if h := got[0].header.Get("Authorization"); h != "Bearer am-token" {
		t.Errorf("authorization: got %q", h)
	}
	if !strings.Contains(string(got[1].body), `"endsAt":"2026-11-25T09:04:00Z"`) {
		t.Errorf("resend does not refresh endsAt: %s", got[1].body)
	}
	if _, err := NewAlertmanager(AlertmanagerOptions{URL: "am:9093"}); err == nil {
		t.Error("a URL without scheme is accepted")
	}
}
