package alert

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// Webhook headers.
const (
	// SignatureHeader carries "sha256=" and the hex HMAC-SHA256 of the body
	// under the webhook's secret.
	SignatureHeader = "X-QSP-Signature"
	// DeliveryHeader carries the message ID, the same on every retry.
	DeliveryHeader = "X-QSP-Delivery"
	// EventHeader carries firing or resolved.
	EventHeader = "X-QSP-Event"
)

// WebhookOptions configure a generic JSON webhook.
type WebhookOptions struct {
	// Name identifies the webhook; it must stay the same across restarts.
	Name string
	URL  string
	// SecretFile holds the HMAC key; surrounding whitespace is trimmed.
	// Without it, messages are not signed.
	SecretFile string
	// Timeout bounds one request. Default 10s.
	Timeout time.Duration
	TLS     TLSOptions
}

// Webhook posts each message as JSON (see Message) to a URL, signed with
// HMAC-SHA256 when a secret is configured.
type Webhook struct {
	opts   WebhookOptions
	name   string
	secret []byte
	client *http.Client
}

// NewWebhook checks the options, reads the secret and builds the notifier.
func NewWebhook(opts WebhookOptions) (*Webhook, error) {
	if opts.Name == "" {
		return nil, errors.New("webhook: a name is required")
	}
	u, err := url.Parse(opts.URL)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("webhook %s: %q is not an http(s) URL", opts.Name, redactURL(opts.URL))
	}
	opts.Timeout = cmp.Or(opts.Timeout, 10*time.Second)
	w := &Webhook{opts: opts, name: "webhook " + opts.Name}
	if opts.SecretFile != "" {
		b, err := os.ReadFile(opts.SecretFile)
		if err != nil {
			// The path is named, never the content.
			return nil, fmt.Errorf("webhook %s: read secret file: %w", opts.Name, err)
		}
		w.secret = []byte(strings.TrimSpace(string(b)))
		if len(w.secret) == 0 {
			return nil, fmt.Errorf("webhook %s: secret file %s is empty", opts.Name, opts.SecretFile)
		}
	}
	if w.client, err = newHTTPClient(opts.TLS); err != nil {
		return nil, fmt.Errorf("webhook %s: %w", opts.Name, err)
	}
	return w, nil
}

// Name implements Notifier.
func (w *Webhook) Name() string { return w.name }

// Timeout returns the per-request timeout.
func (w *Webhook) Timeout() time.Duration { return w.opts.Timeout }

// Notify posts the messages one by one, in order, and stops at the first
// failure.
func (w *Webhook) Notify(ctx context.Context, ms []*Message) (int, error) {
	for i, m := range ms {
		body, err := m.body()
		if err != nil {
			return i, permanentError{fmt.Errorf("encode message %s: %w", m.ID, err)}
		}
		header := http.Header{}
		header.Set(DeliveryHeader, m.ID)
		header.Set(EventHeader, m.Status)
		if w.secret != nil {
			header.Set(SignatureHeader, Sign(w.secret, body))
		}
		if err := post(ctx, w.client, w.name, w.opts.URL, body, header); err != nil {
			return i, err
		}
	}
	return len(ms), nil
}

// Sign returns the signature header value of body under key:
// "sha256=" and the hex HMAC-SHA256.
func Sign(key, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify reports whether header is a valid signature of body under key,
// in constant time. Receivers written in Go can use it.
func Verify(key, body []byte, header string) bool {
	got, ok := strings.CutPrefix(header, "sha256=")
	if !ok {
		return false
	}
	sig, err := hex.DecodeString(got)
	if err != nil {
		return false
	}
	m := hmac.New(sha256.New, key)
	m.Write(body)
	return hmac.Equal(sig, m.Sum(nil))
}
