package engine

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/rules"
)

// BenchmarkVersusRules compares one QSP cycle with the way Sloth and
// Pyrra users evaluate the same SLOs: Prometheus recording rules of the
// error ratio over every window (5m to 30d) plus the multi-window alerting
// rules, run by the Prometheus rules engine over the same TSDB holding 30
// days of history. It also reports the backfill rate.
func BenchmarkVersusRules(b *testing.B) {
	const n = 100
	db := openTSDB(b)
	end := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	start := end.Add(-30*24*time.Hour - 10*time.Minute)
	w := newBenchWriter(db, n)
	// One sample a minute for 30 days: 8.6M samples for 100 SLOs.
	app := db.DB().Appender(context.Background())
	samples := 0
	for ts := start; ts.Before(end); ts = ts.Add(time.Minute) {
		for i := range w.ls {
			if i%2 == 0 {
				w.value[i] += 400
			} else {
				w.value[i] += 0.4
			}
			ref, err := app.Append(w.refs[i], w.ls[i], ts.UnixMilli(), w.value[i])
			if err != nil {
				b.Fatal(err)
			}
			w.refs[i] = ref
			samples++
		}
	}
	if err := app.Commit(); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := db.DB().Compact(ctx); err != nil {
		b.Fatal(err)
	}
	set := benchSpecs(b, n, "30d")
	clk := &clock{end.Add(30 * time.Second)}

	// QSP: backfill 30 days, then one cycle per new minute.
	e, err := New(Options{Source: db, Store: openStore(b), Specs: set, Now: clk.now, PersistInterval: 1000 * time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	if err := e.apply(ctx, set, false); err != nil {
		b.Fatal(err)
	}
	t0 := time.Now()
	if err := e.backfill(ctx); err != nil {
		b.Fatal(err)
	}
	backfill := time.Since(t0)
	minutes := float64(n) * 30 * 24 * 60

	// The Prometheus way: the same SLOs as recording and alerting rules.
	engine := promql.NewEngine(promql.EngineOpts{MaxSamples: 100_000_000, Timeout: 10 * time.Minute, LookbackDelta: 5 * time.Minute})
	var rs []rules.Rule
	p := parser.NewParser(parser.Options{})
	windows := []string{"5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d"}
	for i := range n {
		svc := fmt.Sprintf("svc-%d", i)
		for _, win := range windows {
			expr, err := p.ParseExpr(fmt.Sprintf(`sum(rate(http_requests_total{service=%q,code="500"}[%s])) / sum(rate(http_requests_total{service=%q}[%s]))`, svc, win, svc, win))
			if err != nil {
				b.Fatal(err)
			}
			rs = append(rs, rules.NewRecordingRule("slo:sli_error:ratio_rate"+win, expr, labels.FromStrings("slo", svc)))
		}
		for _, a := range []struct{ sev, expr string }{
			{"page", `(slo:sli_error:ratio_rate1h{slo="%[1]s"} > 14.4*0.001 and slo:sli_error:ratio_rate5m{slo="%[1]s"} > 14.4*0.001) or (slo:sli_error:ratio_rate6h{slo="%[1]s"} > 6*0.001 and slo:sli_error:ratio_rate30m{slo="%[1]s"} > 6*0.001)`},
			{"ticket", `(slo:sli_error:ratio_rate1d{slo="%[1]s"} > 3*0.001 and slo:sli_error:ratio_rate2h{slo="%[1]s"} > 3*0.001) or (slo:sli_error:ratio_rate3d{slo="%[1]s"} > 0.001 and slo:sli_error:ratio_rate6h{slo="%[1]s"} > 0.001)`},
		} {
			expr, err := p.ParseExpr(fmt.Sprintf(a.expr, svc))
			if err != nil {
				b.Fatal(err)
			}
			rs = append(rs, rules.NewAlertingRule("SLOErrorBudgetBurn", expr, 0, 0, labels.FromStrings("severity", a.sev), labels.EmptyLabels(), labels.EmptyLabels(), "", true, nil))
		}
	}
	group := rules.NewGroup(rules.GroupOptions{Name: "slos", Interval: 15 * time.Second, Rules: rs, Opts: &rules.ManagerOptions{
		QueryFunc: rules.EngineQueryFunc(engine, db.DB()), AppendableV2: db.DB(), Queryable: db.DB(), Context: ctx,
		NotifyFunc: func(context.Context, string, ...*rules.Alert) {},
	}})

	now := end
	step := func() {
		w.write(b, now, now.Add(time.Minute))
		now = now.Add(time.Minute)
		clk.t = now.Add(30 * time.Second)
	}
	b.Run("qsp", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			b.StopTimer()
			step()
			b.StartTimer()
			e.cycle(ctx)
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/cycle")
		b.ReportMetric(minutes/backfill.Seconds(), "backfill-SLO-minutes/s")
		b.ReportMetric(float64(samples)/backfill.Seconds(), "backfill-samples/s")
	})
	b.Run("prometheus-rules", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			b.StopTimer()
			step()
			b.StartTimer()
			group.Eval(ctx, now)
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/cycle")
	})
	if st := e.Snapshot().Status("svc-0-availability"); st == nil || st.State != StateOK || st.Budget.Total < 1e7 {
		b.Fatalf("QSP did not see the 30 days: %+v", st)
	}
}
