package alert

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// AlertmanagerOptions configure one Alertmanager of a cluster. Each
// Alertmanager of an HA cluster gets its own notifier and every alert, as
// Prometheus does; the cluster deduplicates notifications.
type AlertmanagerOptions struct {
	// URL is the Alertmanager's base URL (http://am:9093, with any path
	// prefix); /api/v2/alerts is appended unless present.
	URL string
	// Timeout bounds one request. Default 10s.
	Timeout time.Duration
	// BearerTokenFile is read at every request, so a rotated token is
	// picked up.
	BearerTokenFile string
	TLS             TLSOptions
	// ResendInterval is how often firing alerts are re-sent; endsAt of a
	// firing alert is now + 4 resend intervals, as Prometheus sets it.
	// Default 1m.
	ResendInterval time.Duration
	// Now is the clock of endsAt. Default time.Now.
	Now func() time.Time
}

// Alertmanager posts alerts to Alertmanager's API v2.
type Alertmanager struct {
	opts     AlertmanagerOptions
	name     string
	endpoint string
	client   *http.Client
}

// NewAlertmanager checks the options and builds the notifier.
func NewAlertmanager(opts AlertmanagerOptions) (*Alertmanager, error) {
	u, err := url.Parse(opts.URL)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("alertmanager: %q is not an http(s) URL", redactURL(opts.URL))
	}
	opts.Timeout = cmp.Or(opts.Timeout, 10*time.Second)
	opts.ResendInterval = cmp.Or(opts.ResendInterval, time.Minute)
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if !strings.HasSuffix(strings.TrimSuffix(u.Path, "/"), "/api/v2/alerts") {
		u.Path = strings.TrimSuffix(u.Path, "/") + "/api/v2/alerts"
	}
	client, err := newHTTPClient(opts.TLS)
	if err != nil {
		return nil, fmt.Errorf("alertmanager %s: %w", redactURL(opts.URL), err)
	}
	return &Alertmanager{opts: opts, name: "alertmanager " + redactURL(opts.URL), endpoint: u.String(), client: client}, nil
}

// Name implements Notifier.
func (a *Alertmanager) Name() string { return a.name }

// Timeout returns the per-request timeout.
func (a *Alertmanager) Timeout() time.Duration { return a.opts.Timeout }

// postableAlert is Alertmanager's API v2 alert.
type postableAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"startsAt,omitzero"`
	EndsAt       time.Time         `json:"endsAt,omitzero"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// Notify posts the messages as one list: Alertmanager takes all of them
// or none, in order, so a resolution after a firing in the same list wins.
func (a *Alertmanager) Notify(ctx context.Context, ms []*Message) (int, error) {
	alerts := make([]Alert, len(ms))
	for i, m := range ms {
		alerts[i] = m.Alert
		if m.Status == StatusResolved && m.EndsAt.IsZero() {
			alerts[i].EndsAt = m.Transition.At
		}
		if m.Status == StatusFiring {
			alerts[i].EndsAt = time.Time{} // set at send time
		}
	}
	if err := a.post(ctx, alerts); err != nil {
		return 0, err
	}
	return len(ms), nil
}

// Resend implements Resender.
func (a *Alertmanager) Resend(ctx context.Context, alerts []Alert) error {
	for i := range alerts {
		alerts[i].EndsAt = time.Time{}
	}
	return a.post(ctx, alerts)
}

func (a *Alertmanager) post(ctx context.Context, alerts []Alert) error {
	// A firing alert is valid for four resend intervals: long enough to
	// survive a few lost resends, short enough that an alert QSP stops
	// sending (QSP gone for good) resolves by itself.
	validUntil := a.opts.Now().Add(4 * a.opts.ResendInterval).UTC()
	body := make([]postableAlert, len(alerts))
	for i, al := range alerts {
		p := postableAlert{Labels: al.Labels, Annotations: al.Annotations, StartsAt: al.StartsAt.UTC(), EndsAt: al.EndsAt.UTC(), GeneratorURL: al.GeneratorURL}
		if al.EndsAt.IsZero() {
			p.EndsAt = validUntil
		}
		if p.StartsAt.After(p.EndsAt) {
			// A resolution with a start after its end is refused by
			// Alertmanager; clamp rather than lose it.
			p.StartsAt = p.EndsAt
		}
		body[i] = p
	}
	b, err := json.Marshal(body)
	if err != nil {
		return permanentError{fmt.Errorf("encode alerts: %w", err)}
	}
	header := http.Header{}
	if a.opts.BearerTokenFile != "" {
		tok, err := os.ReadFile(a.opts.BearerTokenFile)
		if err != nil {
			// A missing token file may be mounted later: retry.
			return fmt.Errorf("%s: read bearer token file: %w", a.name, errors.Unwrap(err))
		}
		header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	}
	return post(ctx, a.client, a.name, a.endpoint, b, header)
}
