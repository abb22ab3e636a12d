package demo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
)

// pastIncident is a fault in the simulated history, so that budgets are
// not all at 100% when the demo starts. Ago is measured back from the end
// of the history. A fault that paged (SLO set) also has the records QSP
// would have kept of it (history_records.go): the incident, detected
// Detect after it began, the deploy that came Deploy before it (if
// Version is set), the gate evaluation of that deploy and the playbook
// run that answered it.
type pastIncident struct {
	what   string
	ago    time.Duration
	length time.Duration
	apply  func(e *Effects)

	service, slo string
	detect       time.Duration
	version      string
	deploy       time.Duration
	playbook     string
}

// pastIncidents are the faults of the last 30 days.
var pastIncidents = []pastIncident{
	{what: "checkout: payment provider outage, 12% errors", ago: 19*day + 3*time.Hour, length: 45 * time.Minute,
		apply:   func(e *Effects) { e.CheckoutErrors = 0.12 },
		service: "checkout", slo: "checkout-availability", detect: 4 * time.Minute, version: "v2.12.0", deploy: 25 * time.Minute},
	{what: "search: slow index shard, 30% of queries at 0.5s", ago: 4*day + 6*time.Hour, length: 3 * time.Hour,
		apply:   func(e *Effects) { e.SearchSlow = 0.3 },
		service: "search", slo: "search-latency", detect: 9 * time.Minute, version: "v7.3.1", deploy: 40 * time.Minute, playbook: "search-scale-up"},
	{what: "auth: retry storm, 3% throttled", ago: 2*day + 5*time.Hour, length: 30 * time.Minute,
		apply:   func(e *Effects) { e.AuthThrottled = 0.03 },
		service: "auth", slo: "auth-availability", detect: 6 * time.Minute},
	{what: "auth: worker memory leak", ago: 3*day + 9*time.Hour, length: 50 * time.Minute,
		apply:   func(e *Effects) { e.Leak = 20 << 20 },
		service: "auth", slo: "auth-worker-memory", detect: 14 * time.Minute, version: "v5.8.0", deploy: 10 * time.Minute, playbook: "auth-restart-workers"},
	{what: "search: stale cache entries", ago: 6*day + 2*time.Hour, length: time.Hour, apply: func(e *Effects) { e.Stale = 0.01 }},
}

// HistoryStep is the resolution of the written history.
const HistoryStep = time.Minute

// HistoryProgress reports the history being written.
type HistoryProgress struct {
	// Done and Total are simulated time written and to write.
	Done, Total time.Duration
	Samples     int64
	Elapsed     time.Duration
	Finished    bool
}

// WriteHistory simulates [from, to) at HistoryStep and writes it into the
// TSDB directory dir as blocks of blockSize aligned like Prometheus' own,
// before the TSDB is opened: 30 days through remote_write would take
// minutes, and the head would refuse samples older than its newest. The
// past incidents that fall in the range are replayed. It returns the
// number of samples written.
func WriteHistory(ctx context.Context, sim *Simulator, dir string, from, to time.Time, blockSize time.Duration, progress func(HistoryProgress)) (int64, error) {
	if !from.Before(to) {
		return 0, nil
	}
	if blockSize < time.Hour {
		return 0, fmt.Errorf("write history: block size %s is shorter than an hour", blockSize)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return 0, fmt.Errorf("write history: %w", err)
	}
	if progress == nil {
		progress = func(HistoryProgress) {}
	}
	began := time.Now()
	from = from.Truncate(HistoryStep)
	total := to.Sub(from)
	var samples int64
	var lastReport time.Time
	bs := blockSize.Milliseconds()
	for start := from; start.Before(to); {
		// Blocks end on multiples of the block size, as Prometheus aligns
		// them, so that compaction leaves them alone.
		end := time.UnixMilli((start.UnixMilli()/bs + 1) * bs)
		if end.After(to) {
			end = to
		}
		n, err := writeBlock(ctx, sim, dir, start, end, bs, to)
		samples += n
		if err != nil {
			return samples, err
		}
		start = end
		if time.Since(lastReport) > 500*time.Millisecond {
			lastReport = time.Now()
			progress(HistoryProgress{Done: start.Sub(from), Total: total, Samples: samples, Elapsed: time.Since(began)})
		}
	}
	sim.Update(func(e *Effects) { *e = Effects{} })
	progress(HistoryProgress{Done: total, Total: total, Samples: samples, Elapsed: time.Since(began), Finished: true})
	return samples, nil
}

// writeBlock writes the samples of [start, end) as one block.
func writeBlock(ctx context.Context, sim *Simulator, dir string, start, end time.Time, blockSize int64, historyEnd time.Time) (int64, error) {
	w, err := tsdb.NewBlockWriter(slog.New(slog.DiscardHandler), dir, blockSize)
	if err != nil {
		return 0, fmt.Errorf("write history: %w", err)
	}
	defer w.Close()
	app := w.Appender(ctx)
	var n int64
	var appendErr error
	var refs []storage.SeriesRef // by simulator series id, valid in this block
	steps := 0
	for t := start; t.Before(end); t = t.Add(HistoryStep) {
		if err := ctx.Err(); err != nil {
			_ = app.Rollback()
			return n, err
		}
		sim.Update(func(e *Effects) { *e = historyEffects(t, historyEnd) })
		ms := t.UnixMilli()
		sim.Step(t, HistoryStep, func(id int, ls labels.Labels, v float64) {
			if appendErr != nil {
				return
			}
			for id >= len(refs) {
				refs = append(refs, 0)
			}
			ref, err := app.Append(refs[id], ls, ms, v)
			if err != nil {
				appendErr = fmt.Errorf("write history: append %s: %w", ls, err)
				return
			}
			refs[id] = ref
			n++
		})
		if appendErr != nil {
			_ = app.Rollback()
			return n, appendErr
		}
		// Commit every hour of samples: one huge transaction spends its
		// time growing slices.
		if steps++; steps%60 == 0 {
			if err := app.Commit(); err != nil {
				return n, fmt.Errorf("write history: commit: %w", err)
			}
			app = w.Appender(ctx)
		}
	}
	if err := app.Commit(); err != nil {
		return n, fmt.Errorf("write history: commit: %w", err)
	}
	if _, err := w.Flush(ctx); err != nil && !errors.Is(err, tsdb.ErrNoSeriesAppended) {
		return n, fmt.Errorf("write history: flush block: %w", err)
	}
	return n, nil
}

// historyEffects are the faults of the past incidents in force at t.
func historyEffects(t, end time.Time) Effects {
	var e Effects
	for _, p := range pastIncidents {
		s := end.Add(-p.ago)
		if !t.Before(s) && t.Before(s.Add(p.length)) {
			p.apply(&e)
		}
	}
	return e
}

// BlockSize returns the largest of Prometheus' block ranges (2h, 6h, 18h,
// 54h, ...) not above maxBlock: blocks of that size are never compacted
// again.
func BlockSize(maxBlock time.Duration) time.Duration {
	size := 2 * time.Hour
	for size*3 <= maxBlock {
		size *= 3
	}
	return size
}
