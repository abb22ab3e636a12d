package engine

import (
	"context"
	"math"
	"time"

	"github.com/qsp-dev/qsp/internal/slo"
)

// Exact long-window starts. A window longer than the minute tier (6h)
// starts inside a bucket of the 5-minute or hour tier, between two
// boundaries the rollup keeps. Keeping more boundaries costs memory every
// SLO pays all the time; instead, before an evaluation, the engine reads
// the minutes of each such bucket back from the source once, counts them
// with a fresh copy of the SLO's feeder (the code that folded them: a
// series' first sample a baseline, reset-aware increases, the same
// heads), and keeps their per-minute counts (startBucket) until the start
// moves on to the next bucket, 5 minutes or an hour later. The minutes are
// hours to days old, beyond any revision, so their samples are the ones
// that were folded; the read's sum over the bucket must equal the
// rollup's, or the read is not used (the source dropped the data, or a
// series' predecessor lies beyond the read's lookback) and the window
// starts at the bucket's end boundary as before, reported so.

// startRead is one SLO's read back of one bucket, for the groups whose
// windows start in it.
type startRead struct {
	rt     *sloRuntime
	lo, hi slo.Minute
	groups []*groupRuntime
	feeder feeder
	// from is where the feeder's minutes start: staleMinutes before lo,
	// so the minutes of the bucket know whether they had data as folding
	// judged it (a sample in the last staleMinutes).
	from      slo.Minute
	readStart time.Time
	reqs      []selectorRequest
	buckets   []*startBucket // by group, once read
	err       error
}

// bucketKey names a bucket [lo, hi).
type bucketKey struct{ lo, hi slo.Minute }

// neededStarts marks the buckets of rt's groups that this evaluation's
// windows start in, and returns those not held yet, with the groups that
// need each.
func (rt *sloRuntime) neededStarts(need map[bucketKey][]*groupRuntime) {
	for _, g := range rt.list {
		if g.roll == nil {
			continue
		}
		end := rt.windowEnd(g)
		visit := func(s slo.Minute, q int) {
			if b := g.roll.bucketAt(s); b != nil && (b.ok || b.retry == 0 || g.roll.next < b.retry) {
				b.used = true
				return
			}
			if lo, hi, ok := g.roll.needBucket(s, q); ok {
				k := bucketKey{lo, hi}
				if gs := need[k]; len(gs) == 0 || gs[len(gs)-1] != g {
					need[k] = append(gs, g)
				}
			}
		}
		for _, rw := range rt.plan.windows {
			visit(end.m-slo.Minute(rw.d/time.Minute), end.q)
		}
		visit(rt.budgetStart(g))
	}
}

// readStarts reads back the buckets the long windows of rts start in and
// their groups do not hold yet, and drops the buckets no window starts in
// any more. The reads of all SLOs are batched as a cycle's are: SLOs on
// one metric whose windows start in the same bucket share one query.
func (e *Engine) readStarts(ctx context.Context, rts []*sloRuntime) {
	var reads []*startRead
	var reqs []*selectorRequest
	need := map[bucketKey][]*groupRuntime{}
	for _, rt := range rts {
		if rt.plan.newFeeder == nil || rt.plan.composite != nil || rt.lastErr != nil {
			continue
		}
		clear(need)
		rt.neededStarts(need)
		for k, gs := range need {
			sr := newStartRead(rt, k, gs)
			for i := range sr.reqs {
				reqs = append(reqs, &sr.reqs[i])
			}
			reads = append(reads, sr)
		}
	}
	if len(reads) > 0 {
		fetchCtx, cancel := context.WithTimeout(ctx, e.fetchTimeout(false))
		e.fetchBatched(fetchCtx, reqs, nil)
		parallel(reads, e.opts.Concurrency, func(sr *startRead) { sr.count(fetchCtx, e.opts.Source) })
		cancel()
		for _, sr := range reads {
			sr.rt.mu.Lock()
			e.installStarts(sr)
			sr.rt.mu.Unlock()
		}
	}
	for _, rt := range rts {
		rt.mu.Lock()
		for _, g := range rt.list {
			if g.roll != nil && (len(g.roll.starts) > 0 || g.roll.starts != nil) {
				g.roll.keepStarts()
			}
		}
		rt.mu.Unlock()
	}
}

func newStartRead(rt *sloRuntime, k bucketKey, gs []*groupRuntime) *startRead {
	f := rt.plan.newFeeder()
	// The same revision horizon as the SLO's own counters, so the read
	// looks back as far as a backfill does.
	if cs := counterOf(rt.feeder); len(cs) > 0 {
		for _, c := range counterOf(f) {
			c.horizon = cs[0].horizon
		}
	}
	sr := &startRead{rt: rt, lo: k.lo, hi: k.hi, groups: gs, feeder: f, from: k.lo - staleMinutes}
	// Samples reads (start, end]: the minutes [from, hi) and the
	// predecessors before them.
	sr.readStart = sr.from.Time().Add(-f.lookback())
	for _, ms := range f.selectors() {
		r := newSelectorRequest(ms)
		r.start, r.end = sr.readStart, k.hi.Time()
		sr.reqs = append(sr.reqs, r)
	}
	return sr
}

// count turns what was read into each group's bucket.
func (sr *startRead) count(ctx context.Context, src Source) {
	raw := make([]promqlMatrix, len(sr.reqs))
	for i := range sr.reqs {
		raw[i] = sr.reqs[i].result
		if sr.reqs[i].err != nil {
			sr.err = sr.reqs[i].err
		}
		sr.reqs[i].result = nil
	}
	if sr.err != nil {
		return
	}
	groups, _, err := sr.feeder.feed(ctx, src, raw, sr.readStart.UnixMilli(), sr.from, sr.hi, func(string) bool { return true })
	if err != nil {
		sr.err = err
		return
	}
	p := sr.rt.plan
	n := int(sr.hi - sr.lo)
	ms := make([]bucketMinute, n)
	for _, g := range sr.groups {
		clear(ms)
		gm := groups[g.key]
		last := slo.Minute(math.MinInt64 / 2) // the last minute with a sample
		for m := sr.from; m < sr.hi; m++ {
			i := int(m - sr.from)
			if gm != nil && gm.sampled[i] {
				last = m
			}
			if m < sr.lo {
				continue
			}
			bm := &ms[m-sr.lo]
			bm.data = m-last < staleMinutes
			if gm == nil || len(p.corrections) > 0 && p.corrections.Excludes(m) {
				continue // nothing counted, as folding did
			}
			bm.counts = gm.counts[i]
			if gm.heads != nil {
				bm.heads = gm.heads[i]
			}
		}
		b := &startBucket{lo: sr.lo, hi: sr.hi, used: true}
		if agree(g.roll, sr.lo, sr.hi, ms) {
			b.ok, b.enc = true, encodeBucket(ms)
		}
		sr.buckets = append(sr.buckets, b)
	}
}

// agree reports whether the minutes read back add up to what the rollup
// holds for the bucket: events within float rounding of the sums (exact
// for integer counts), minutes with data exactly.
func agree(r *rollup, lo, hi slo.Minute, ms []bucketMinute) bool {
	want, ok := r.bucketSums(lo, hi)
	if !ok {
		return false
	}
	var got sums
	for _, m := range ms {
		got.good += m.counts.Good
		got.total += m.counts.Total
		if m.data {
			got.data++
		}
	}
	tol := 1e-9 * max(1, math.Abs(r.cum.total), math.Abs(r.cum.good))
	return got.data == want.data && math.Abs(got.good-want.good) <= tol && math.Abs(got.total-want.total) <= tol
}

// installStarts gives each group its bucket, and counts the reads.
func (e *Engine) installStarts(sr *startRead) {
	if sr.err != nil {
		// The source failed: the windows start at the boundary for now,
		// and the bucket is read again a minute later.
		for _, g := range sr.groups {
			g.roll.starts = append(g.roll.starts, &startBucket{lo: sr.lo, hi: sr.hi, retry: g.roll.next + 1, used: true})
		}
		e.m.startReads.WithLabelValues("failed").Add(float64(len(sr.groups)))
		e.logger.Debug("window start read back failed: the window starts at the bucket's end", "slo", sr.rt.plan.slo.Name(), "bucket", sr.lo.Time(), "minutes", int(sr.hi-sr.lo), "err", sr.err)
		return
	}
	disagreed := 0
	for i, g := range sr.groups {
		b := sr.buckets[i]
		g.roll.starts = append(g.roll.starts, b)
		if !b.ok {
			disagreed++
		}
	}
	e.m.startReads.WithLabelValues("exact").Add(float64(len(sr.groups) - disagreed))
	if disagreed > 0 {
		e.m.startReads.WithLabelValues("disagreed").Add(float64(disagreed))
		e.logger.Info("window start read back disagrees with the rollup: the window starts at the bucket's end", "slo", sr.rt.plan.slo.Name(),
			"bucket", sr.lo.Time(), "minutes", int(sr.hi-sr.lo), "groups", disagreed)
	}
}
