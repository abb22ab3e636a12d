package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/qsp-dev/qsp/internal/slo"
)

// PeriodCounts are an SLO group's good and total events over a span, as
// far as its rollup reaches: a rollup keeps the SLO window (and hourly
// boundaries beyond the recent days), so a span older than that is
// covered only in part, and From says where the counts really start.
type PeriodCounts struct {
	Counts slo.Counts `json:"counts"`
	// From and To are the span the counts cover: From is the first stored
	// boundary at or after the start asked (up to 59 minutes later in the
	// hourly tier), To the end asked or the newest folded minute.
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// DataMinutes are the minutes of [From, To) that had telemetry.
	DataMinutes int64 `json:"dataMinutes"`
}

// Counts returns an SLO group's event counts over [from, to), from its
// rollup, for reports. Like History it reads the persisted rollup of a
// group another replica evaluates, and returns an error wrapping
// ErrUnknownSLO for an unknown key or a composite SLO.
func (e *Engine) Counts(ctx context.Context, key string, from, to time.Time) (PeriodCounts, error) {
	if to.Before(from) {
		return PeriodCounts{}, fmt.Errorf("counts: to %s is before from %s", to, from)
	}
	var out PeriodCounts
	err := e.readRollup(ctx, key, "counts", func(_ *plan, roll *rollup) { out = periodCounts(roll, from, to) })
	return out, err
}

func periodCounts(roll *rollup, from, to time.Time) PeriodCounts {
	f, t := slo.CeilMinute(from), min(slo.MinuteOf(to), roll.next)
	if f < roll.start {
		f = roll.start
	}
	if t < f {
		return PeriodCounts{From: f.Time(), To: f.Time()}
	}
	w := roll.window(f, t)
	return PeriodCounts{Counts: w.counts, From: w.from.Time(), To: w.to.Time(), DataMinutes: int64(w.data)}
}
