package engine

import (
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/qsp-dev/qsp/internal/slo"
)

const calendarSpecs = `
apiVersion: qsp/v1
kind: Service
metadata: {name: shop}
spec: {owner: team}
---
apiVersion: qsp/v1
kind: SLO
metadata: {name: shop-monthly}
spec:
  service: shop
  category: quality
  objective: 99.9
  window: {calendar: month, timeZone: Europe/Berlin}
  indicator:
    ratio:
      good: sum(rate(req_total{code="200"}[{{.window}}]))
      total: sum(rate(req_total[{{.window}}]))
---
apiVersion: qsp/v1
kind: SLO
metadata: {name: shop-queue}
spec:
  service: shop
  category: performance
  objective: 99
  window: 7d
  budgeting: {method: timeslices, sliceLength: 5m}
  indicator:
    threshold:
      query: max(queue_depth)
      op: "<"
      value: 1000
---
apiVersion: qsp/v1
kind: SLO
metadata: {name: shop-fast}
spec:
  service: shop
  category: performance
  objective: 99
  window: 7d
  indicator:
    latency:
      histogram: latency_seconds{service="shop"}
      threshold: 300ms
`

// calendarData is 35 days of minutes before 1 November 2026 (UTC): a
// request counter, a queue gauge and a latency histogram, with known
// per-minute values.
type calendarData struct {
	start          time.Time
	good, total    map[slo.Minute]float64
	queueMax       map[slo.Minute]float64
	fast, allCount map[slo.Minute]float64
}

func writeCalendarData(t *testing.T) (*calendarData, Source) {
	db := openTSDB(t)
	end := time.Date(2026, 11, 1, 6, 0, 0, 0, time.UTC)
	d := &calendarData{start: end.Add(-35 * 24 * time.Hour), good: map[slo.Minute]float64{}, total: map[slo.Minute]float64{},
		queueMax: map[slo.Minute]float64{}, fast: map[slo.Minute]float64{}, allCount: map[slo.Minute]float64{}}
	var ok, bad, q, le, inf, cnt []sample
	var vOK, vBad, vLe, vInf float64
	i := 0
	for ts := d.start; ts.Before(end); ts = ts.Add(30 * time.Second) {
		m := slo.MinuteOf(ts)
		nOK, nBad := float64(100+i%37), float64((i/40)%3)
		if i == 0 {
			nOK, nBad = 0, 0 // counters start at zero
		}
		vOK += nOK
		vBad += nBad
		// A counter's increase belongs to the minute that ends at or
		// after its sample: (m, m+1].
		mc := slo.MinuteOf(ts.Add(-time.Millisecond))
		d.good[mc] += nOK
		d.total[mc] += nOK + nBad
		ok = append(ok, sample{ts, vOK})
		bad = append(bad, sample{ts, vBad})
		// The queue exceeds 1000 for one sample in every 97th minute.
		depth := float64(200 + i%500)
		if int64(m)%97 == 0 && ts.Second() == 30 {
			depth = 1500
		}
		q = append(q, sample{ts, depth})
		d.queueMax[m] = max(d.queueMax[m], depth)
		// Histogram: of nOK+nBad requests, all but i%5 are fast.
		n := nOK + nBad
		f := n - float64(i%5)
		if i == 0 {
			f = 0
		}
		vLe += f
		vInf += n
		d.fast[mc] += f
		d.allCount[mc] += n
		le = append(le, sample{ts, vLe})
		inf = append(inf, sample{ts, vInf})
		cnt = append(cnt, sample{ts, vInf})
		i++
	}
	appendSeries(t, db,
		series{labels.FromStrings("__name__", "req_total", "code", "200"), ok},
		series{labels.FromStrings("__name__", "req_total", "code", "500"), bad},
		series{labels.FromStrings("__name__", "queue_depth"), q},
		// Prometheus 3 writes integral boundaries as 0.3 and 1.0.
		series{labels.FromStrings("__name__", "latency_seconds_bucket", "service", "shop", "le", "0.3"), le},
		series{labels.FromStrings("__name__", "latency_seconds_bucket", "service", "shop", "le", "+Inf"), inf},
		series{labels.FromStrings("__name__", "latency_seconds_count", "service", "shop"), cnt},
	)
	return d, db
}

func sum(m map[slo.Minute]float64, from, to slo.Minute) float64 {
	s := 0.0
	for k, v := range m {
		if k >= from && k < to {
			s += v
		}
	}
	return s
}

func TestCalendarAndTimeslices(t *testing.T) {
	d, src := writeCalendarData(t)
	berlin, _ := time.LoadLocation("Europe/Berlin")
	for _, tc := range []struct {
		name        string
		target      time.Time // hour-aligned, so windows are exact
		periodStart time.Time
	}{
		// October 2026 in Berlin includes the end of summer time (25th):
		// the period began at 22:00 UTC on 30 September.
		{"october across DST", time.Date(2026, 10, 31, 12, 0, 0, 0, time.UTC), time.Date(2026, 9, 30, 22, 0, 0, 0, time.UTC)},
		// At 01:00 Berlin on 1 November the month is one hour old: it began
		// at 23:00 UTC on 31 October.
		{"november just begun", time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 10, 31, 23, 0, 0, 0, time.UTC)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := &clock{tc.target.Add(30 * time.Second)}
			e := newTestEngine(t, src, openStore(t), loadSpecs(t, calendarSpecs), clk)
			target := slo.MinuteOf(tc.target)

			st := e.Snapshot().Status("shop-monthly")
			if !st.PeriodStart.Equal(tc.periodStart) {
				t.Errorf("period start: got %s, want %s (%s)", st.PeriodStart.UTC(), tc.periodStart, tc.periodStart.In(berlin))
			}
			from := slo.MinuteOf(tc.periodStart)
			wantTotal, wantGood := sum(d.total, from, target), sum(d.good, from, target)
			if st.Budget.Total != wantTotal || st.Budget.Consumed != wantTotal-wantGood {
				t.Errorf("calendar budget: got %v events, %v bad; want %v, %v", st.Budget.Total, st.Budget.Consumed, wantTotal, wantTotal-wantGood)
			}

			// Timeslices: a 5-minute slice is good when every value in it
			// is under 1000; count them by hand.
			q := e.Snapshot().Status("shop-queue")
			for _, w := range []time.Duration{time.Hour, 6 * time.Hour, 24 * time.Hour, 72 * time.Hour} {
				wf := target - slo.Minute(w/time.Minute)
				var good, total float64
				for s := wf; s < target; s += 5 {
					total++
					ok := true
					for m := s; m < s+5; m++ {
						if d.queueMax[m] >= 1000 {
							ok = false
						}
					}
					if ok {
						good++
					}
				}
				ws := q.WindowStat(w)
				if ws.Good != good || ws.Total != total {
					t.Errorf("queue %s: got %v/%v good slices, want %v/%v", ws.Name, ws.Good, ws.Total, good, total)
				}
			}
			wf := target - 7*24*60
			if q.Budget.Total != float64(7*24*12) {
				t.Errorf("7d of 5m slices: got %v, want %d", q.Budget.Total, 7*24*12)
			}
			_ = wf

			// Latency from histogram buckets, exact.
			f := e.Snapshot().Status("shop-fast")
			w := f.WindowStat(24 * time.Hour)
			from = target - 24*60
			if wf, wa := sum(d.fast, from, target), sum(d.allCount, from, target); w.Good != wf || w.Total != wa {
				t.Errorf("latency 1d: got %v fast of %v, want %v of %v", w.Good, w.Total, wf, wa)
			}
		})
	}
}
