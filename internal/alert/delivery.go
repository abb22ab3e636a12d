package alert

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/qsp-dev/qsp/internal/store"
)

// item is one pending notification on its way through the stages.
type item struct {
	row store.Notification
	msg *Message
}

// stage is one step of delivering a receiver's pending notifications,
// oldest first. It returns the notifications left for the next stage;
// those it settled (expired, refused, delivered) are not passed on.
type stage interface {
	Exec(ctx context.Context, tg *target, b []*item) ([]*item, error)
}

// retryAfter is returned by a stage when the receiver failed and the
// batch should be tried again after d.
type retryAfter struct{ d time.Duration }

func (r retryAfter) Error() string { return fmt.Sprintf("retry after %s", r.d) }

// expireStage drops notifications past their expiry: after Expiry of
// trying, a receiver is considered gone, and the row is marked expired.
type expireStage struct{ d *Dispatcher }

func (s expireStage) Exec(ctx context.Context, _ *target, b []*item) ([]*item, error) {
	now := s.d.opts.Now()
	keep := b[:0]
	for _, it := range b {
		if it.row.ExpiresAt.After(now) {
			keep = append(keep, it)
		}
	}
	if len(keep) < len(b) {
		s.d.sweep(ctx)
	}
	return keep, nil
}

// decodeStage turns stored payloads back into messages; one that does not
// decode can never be sent and is marked failed.
type decodeStage struct{ d *Dispatcher }

func (s decodeStage) Exec(ctx context.Context, tg *target, b []*item) ([]*item, error) {
	keep := b[:0]
	for _, it := range b {
		var m Message
		if err := json.Unmarshal(it.row.Payload, &m); err != nil {
			if err := s.d.opts.Store.MarkFailed(ctx, []int64{it.row.ID}, "undecodable payload: "+err.Error()); err != nil {
				return nil, err
			}
			s.d.m.results.WithLabelValues(tg.name, "failed").Inc()
			s.d.logger.Error("notification payload does not decode", "target", tg.name, "id", it.row.ID, "err", err)
			continue
		}
		m.raw = it.row.Payload
		it.msg = &m
		keep = append(keep, it)
	}
	return keep, nil
}

// sendStage hands the batch to the notifier with the receiver's timeout
// and marks what it accepted as delivered. It returns the rest with the
// notifier's error.
type sendStage struct{ d *Dispatcher }

func (s sendStage) Exec(ctx context.Context, tg *target, b []*item) ([]*item, error) {
	ms := make([]*Message, len(b))
	for i, it := range b {
		ms[i] = it.msg
	}
	actx, cancel := context.WithTimeout(ctx, tg.timeout)
	start := time.Now()
	n, err := tg.n.Notify(actx, ms)
	cancel()
	s.d.m.attempts.WithLabelValues(tg.name).Observe(time.Since(start).Seconds())
	n = max(0, min(n, len(b)))
	if n > 0 {
		// Marked with a context of its own: the receiver has the
		// notifications, and a shutdown now must not make them look
		// undelivered (they would be sent again, which is allowed, but
		// needless).
		mctx, mcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		merr := s.d.opts.Store.MarkDelivered(mctx, ids(b[:n]), s.d.opts.Now())
		mcancel()
		if merr != nil {
			return nil, fmt.Errorf("mark delivered: %w", merr)
		}
		s.d.m.results.WithLabelValues(tg.name, "delivered").Add(float64(n))
		s.d.m.lastSuccess.WithLabelValues(tg.name).SetToCurrentTime()
	}
	if err == nil && n < len(b) {
		err = fmt.Errorf("%s accepted %d of %d notifications", tg.name, n, len(b))
	}
	return b[n:], err
}

// retryStage runs the send stage and decides what a failure means: a
// receiver that may recover is retried with backoff (the rows stay
// pending, with the attempt and the error recorded); a notification it
// refuses for good is isolated and marked failed, and the others go on.
type retryStage struct {
	d    *Dispatcher
	next stage
}

func (s retryStage) Exec(ctx context.Context, tg *target, b []*item) ([]*item, error) {
	rest, err := s.next.Exec(ctx, tg, b)
	if err == nil {
		if tg.failures > 0 {
			s.d.logger.Info("receiver is back", "target", tg.name, "failed_attempts", tg.failures)
		}
		tg.failures = 0
		return rest, nil
	}
	if ctx.Err() != nil || len(rest) == 0 {
		return nil, err
	}
	if Retryable(err) {
		delay := s.d.backoff(tg)
		if merr := s.d.opts.Store.MarkRetry(ctx, ids(rest), s.d.opts.Now().Add(delay), err.Error()); merr != nil {
			s.d.logger.Warn("record failed attempt", "target", tg.name, "err", merr)
		}
		s.d.m.results.WithLabelValues(tg.name, "retry").Add(float64(len(rest)))
		// Loud on the first failure, quiet while the receiver stays down.
		level := slog.LevelDebug
		if tg.failures == 1 {
			level = slog.LevelWarn
		}
		s.d.logger.Log(ctx, level, "receiver unavailable; retrying with backoff", "target", tg.name, "pending", len(rest), "retry_in", delay.Round(time.Millisecond), "attempt", tg.failures, "err", err)
		return nil, retryAfter{delay}
	}
	if len(rest) > 1 && tg.singleLeft == 0 {
		// Refused as a whole: find the culprit one by one.
		tg.singleLeft = len(rest)
		return nil, retryAfter{time.Millisecond}
	}
	if merr := s.d.opts.Store.MarkFailed(ctx, []int64{rest[0].row.ID}, err.Error()); merr != nil {
		return nil, merr
	}
	s.d.m.results.WithLabelValues(tg.name, "failed").Inc()
	s.d.logger.Error("receiver refused a notification; not retrying", "target", tg.name, "fingerprint", rest[0].row.Fingerprint, "status", rest[0].row.Status, "err", err)
	return nil, nil
}

func ids(b []*item) []int64 {
	out := make([]int64, len(b))
	for i, it := range b {
		out[i] = it.row.ID
	}
	return out
}
