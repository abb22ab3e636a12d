package alert

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// Notifier delivers notifications to one receiver.
//
// A Notifier is used by one goroutine at a time (its target's worker) and
// needs no locking of its own. Notify must honour ctx: the dispatcher sets
// the per-attempt deadline there.
type Notifier interface {
	// Name identifies the receiver in the outbox and in metrics. It must
	// be stable across restarts: pending rows are found by it.
	Name() string
	// Notify sends the messages in order and returns how many of them,
	// from the first, the receiver accepted (2xx). err explains why the
	// rest were not; Retryable(err) tells whether trying again may help.
	Notify(ctx context.Context, ms []*Message) (int, error)
}

// Resender is a Notifier that wants every firing alert again each resend
// interval, with a fresh end time, as Alertmanager expects from
// Prometheus: an alert not refreshed before its endsAt resolves itself,
// and a restarted Alertmanager forgets alerts until they are re-sent.
type Resender interface {
	Resend(ctx context.Context, alerts []Alert) error
}

// HTTPError is a receiver's non-2xx answer.
type HTTPError struct {
	Target     string
	StatusCode int
	Body       string // the start of the response body
}

func (e *HTTPError) Error() string {
	msg := fmt.Sprintf("%s answered %d %s", e.Target, e.StatusCode, http.StatusText(e.StatusCode))
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// permanentError marks an error that retrying cannot fix (a bad URL, an
// unreadable secret).
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Retryable reports whether a delivery error may go away by itself:
// network errors, timeouts, 408, 429 and 5xx answers are retried; other
// 4xx answers and configuration errors are not. This is the one place
// that decides it.
func Retryable(err error) bool {
	if err == nil {
		return false
	}
	var pe permanentError
	if errors.As(err, &pe) {
		return false
	}
	var he *HTTPError
	if errors.As(err, &he) {
		return he.StatusCode >= 500 || he.StatusCode == http.StatusTooManyRequests || he.StatusCode == http.StatusRequestTimeout
	}
	return true
}

// Backoff is exponential backoff with jitter: attempt n (from 1) waits
// Initial·Multiplier^(n-1), at most Max, then shortened by a random share
// of up to Jitter, so receivers coming back are not hit by every sender
// at once.
type Backoff struct {
	Initial    time.Duration // default 1s
	Max        time.Duration // default 1m
	Multiplier float64       // default 2
	Jitter     float64       // in [0, 1], default 0.5
}

func (b Backoff) withDefaults() Backoff {
	if b.Initial <= 0 {
		b.Initial = time.Second
	}
	if b.Max <= 0 {
		b.Max = time.Minute
	}
	if b.Max < b.Initial {
		b.Max = b.Initial
	}
	if b.Multiplier < 1 {
		b.Multiplier = 2
	}
	if b.Jitter < 0 || b.Jitter > 1 {
		b.Jitter = 0.5
	}
	return b
}

// Delay returns the wait before retry number attempt (1 for the first
// retry). u is a uniform random number in [0, 1).
func (b Backoff) Delay(attempt int, u float64) time.Duration {
	b = b.withDefaults()
	if attempt < 1 {
		attempt = 1
	}
	d := float64(b.Initial) * math.Pow(b.Multiplier, float64(attempt-1))
	if d > float64(b.Max) || math.IsInf(d, 0) || math.IsNaN(d) {
		d = float64(b.Max)
	}
	return time.Duration(d * (1 - b.Jitter*u))
}

// jitterRand is the random source of backoff delays.
func jitterRand() float64 { return rand.Float64() }

// TLSOptions configure a TLS client.
type TLSOptions struct {
	CAFile, CertFile, KeyFile string
	ServerName                string
	InsecureSkipVerify        bool
}

func (o TLSOptions) config() (*tls.Config, error) {
	if o == (TLSOptions{}) {
		return nil, nil
	}
	c := &tls.Config{ServerName: o.ServerName, InsecureSkipVerify: o.InsecureSkipVerify, MinVersion: tls.VersionTLS12} //nolint:gosec // the user's choice
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", o.CAFile)
		}
		c.RootCAs = pool
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		return nil, errors.New("set both certFile and keyFile, or neither")
	}
	if o.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("load client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

func newHTTPClient(t TLSOptions) (*http.Client, error) {
	tc, err := t.config()
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	tr.MaxIdleConnsPerHost = 4
	// The per-attempt deadline comes from the context; redirects are not
	// followed, since a receiver that moved should be reconfigured.
	return &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}, nil
}

// post sends body and turns any non-2xx answer into an *HTTPError.
func post(ctx context.Context, c *http.Client, target, rawURL string, body []byte, header http.Header) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rawURL, bytes.NewReader(body))
	if err != nil {
		return permanentError{fmt.Errorf("%s: %w", target, err)}
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "qsp")
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", target, redactURLError(err))
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // let the connection be reused
	if resp.StatusCode/100 != 2 {
		return &HTTPError{Target: target, StatusCode: resp.StatusCode, Body: strings.TrimSpace(string(snippet))}
	}
	return nil
}

// redactURLError drops the URL from a client error: webhook URLs often
// carry a token in their path or query, and errors end up in logs and in
// the API.
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", strings.ToLower(ue.Op), ue.Err)
	}
	return err
}

// redactURL returns u without user information, for names and logs.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "invalid URL"
	}
	u.User = nil
	return u.String()
}
