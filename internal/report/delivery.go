package report

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/qsp-dev/qsp/internal/store"
)

// Outbox stores notifications for the alerting dispatcher to deliver;
// *store.Store implements it. A notification whose dedupe key is stored
// already is skipped, so enqueueing a period's report again sends
// nothing.
type Outbox interface {
	EnqueueAlerts(ctx context.Context, alerts []store.NotifiedAlert, ns []store.Notification) (int, error)
}

// DeliveryOptions configure a Delivery. Builder, Outbox and Targets are
// required.
type DeliveryOptions struct {
	Builder *Builder
	Outbox  Outbox
	// Targets are the receivers that get each period's report, by their
	// outbox name (alert.Notifier's Name: "webhook <name>"); the
	// dispatcher delivers to them with their retries and signature.
	Targets []string
	// Delay is how long after a period's end its report is sent, so that
	// its last minutes are folded; default 1h.
	Delay time.Duration
	// MaxLate is how long after the period's end a report not sent yet
	// (the server was down) is still sent; default 7 days.
	MaxLate time.Duration
	// Interval is how often Run looks; default 10m.
	Interval time.Duration
	// Expiry is how long the dispatcher retries a report; default 24h.
	Expiry time.Duration
	// Wake tells the dispatcher a notification was enqueued
	// (alert.Dispatcher's Wake); nil waits for its next look.
	Wake       func()
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Delivery sends each period's report to webhooks through the alerting
// outbox at the period's end.
type Delivery struct {
	opts DeliveryOptions
	log  *slog.Logger
	sent *prometheus.CounterVec
}

// PayloadVersion is the version of a report webhook message.
const PayloadVersion = "qsp.report/v1"

// Payload is the JSON a webhook receives for a report: the fields of an
// alert message the dispatcher reads (version, id, status "report"), the
// report, and its Markdown for chat tools.
type Payload struct {
	Version  string  `json:"version"`
	ID       string  `json:"id"`
	Status   string  `json:"status"`
	Report   *Report `json:"report"`
	Markdown string  `json:"markdown"`
}

// NewDelivery checks the options.
func NewDelivery(opts DeliveryOptions) (*Delivery, error) {
	switch {
	case opts.Builder == nil:
		return nil, errors.New("report delivery: no builder")
	case opts.Outbox == nil:
		return nil, errors.New("report delivery: no outbox")
	case len(opts.Targets) == 0:
		return nil, errors.New("report delivery: no target")
	}
	if opts.Delay <= 0 {
		opts.Delay = time.Hour
	}
	if opts.MaxLate <= 0 {
		opts.MaxLate = 7 * 24 * time.Hour
	}
	if opts.Interval <= 0 {
		opts.Interval = 10 * time.Minute
	}
	if opts.Expiry <= 0 {
		opts.Expiry = 24 * time.Hour
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	d := &Delivery{opts: opts, log: opts.Logger.With("component", "report.delivery")}
	d.sent = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "qsp_report_deliveries_total",
		Help: "Period reports handed to the outbox, by result (queued, already, error)."}, []string{"result"})
	opts.Registerer.MustRegister(d.sent)
	return d, nil
}

// Run enqueues each period's report once it is due, until ctx ends.
func (d *Delivery) Run(ctx context.Context) error {
	t := time.NewTicker(d.opts.Interval)
	defer t.Stop()
	for {
		if _, err := d.Tick(ctx); err != nil && ctx.Err() == nil {
			d.sent.WithLabelValues("error").Inc()
			d.log.Error("deliver report", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Tick enqueues the report of the last period that ended, if it is due
// (Delay after its end, at most MaxLate) and not enqueued before. It
// returns the period enqueued, or "".
func (d *Delivery) Tick(ctx context.Context) (string, error) {
	b := d.opts.Builder
	now := b.opts.Now().In(b.opts.Location)
	end := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, b.opts.Location)
	if now.Before(end.Add(d.opts.Delay)) {
		// The current month's start is the last end: wait for the delay,
		// then look back a month.
		return "", nil
	}
	if now.Sub(end) > d.opts.MaxLate {
		return "", nil
	}
	period := end.AddDate(0, -1, 0).Format("2006-01")
	r, err := b.Build(ctx, Request{Period: period})
	if err != nil {
		return "", fmt.Errorf("report %s: %w", period, err)
	}
	var md bytes.Buffer
	if err := r.Markdown(&md); err != nil {
		return "", err
	}
	id := "report|" + period
	payload, err := json.Marshal(Payload{Version: PayloadVersion, ID: id, Status: "report", Report: r, Markdown: md.String()})
	if err != nil {
		return "", fmt.Errorf("report %s: %w", period, err)
	}
	ns := make([]store.Notification, 0, len(d.opts.Targets))
	for _, tg := range d.opts.Targets {
		ns = append(ns, store.Notification{Target: tg, Key: "report:" + period, Severity: "report", Status: "report",
			DedupeKey: tg + "|" + id, Payload: payload, CreatedAt: now, NextAttemptAt: now, ExpiresAt: now.Add(d.opts.Expiry)})
	}
	n, err := d.opts.Outbox.EnqueueAlerts(ctx, nil, ns)
	if err != nil {
		return "", fmt.Errorf("report %s: %w", period, err)
	}
	if n == 0 {
		d.sent.WithLabelValues("already").Inc()
		return "", nil
	}
	if d.opts.Wake != nil {
		d.opts.Wake()
	}
	d.sent.WithLabelValues("queued").Inc()
	d.log.Info("report queued", "period", period, "targets", n)
	return period, nil
}
