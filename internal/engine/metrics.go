package engine

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the engine's own health metrics plus a collector that
// exports every SLO's status from the latest snapshot at scrape time, so
// a cycle never pays for metric updates.
type metrics struct {
	cycleSeconds    prometheus.Histogram
	lastCycle       prometheus.Gauge
	fetchFailures   prometheus.Counter
	transitions     *prometheus.CounterVec
	slos            prometheus.Gauge
	backfillSeconds prometheus.Gauge
	persistSeconds  prometheus.Histogram
	persistFailures prometheus.Counter
	corrupt         prometheus.Counter
	batched         prometheus.Counter
	lateDropped     *prometheus.CounterVec
	startReads      *prometheus.CounterVec
}

func newMetrics(e *Engine, reg prometheus.Registerer) *metrics {
	m := &metrics{
		cycleSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "qsp_engine_cycle_duration_seconds", Help: "Duration of one evaluation cycle.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		lastCycle:       prometheus.NewGauge(prometheus.GaugeOpts{Name: "qsp_engine_last_cycle_timestamp_seconds", Help: "When the last evaluation cycle finished."}),
		fetchFailures:   prometheus.NewCounter(prometheus.CounterOpts{Name: "qsp_engine_fetch_failures_total", Help: "SLO fetches that failed."}),
		transitions:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "qsp_engine_alert_transitions_total", Help: "Alert state transitions."}, []string{"severity", "to"}),
		slos:            prometheus.NewGauge(prometheus.GaugeOpts{Name: "qsp_engine_slos", Help: "SLOs evaluated."}),
		backfillSeconds: prometheus.NewGauge(prometheus.GaugeOpts{Name: "qsp_engine_backfill_duration_seconds", Help: "Duration of the start-up backfill."}),
		persistSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "qsp_engine_persist_duration_seconds", Help: "Duration of a rollup snapshot.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		persistFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "qsp_engine_persist_failures_total", Help: "Rollup snapshots that failed."}),
		corrupt:         prometheus.NewCounter(prometheus.CounterOpts{Name: "qsp_engine_corrupt_rollups_total", Help: "Persisted rollups found corrupt and rebuilt from telemetry."}),
		batched:         prometheus.NewCounter(prometheus.CounterOpts{Name: "qsp_engine_batched_selectors_total", Help: "Raw-sample selectors served by a batched read."}),
		lateDropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "qsp_samples_late_dropped_total",
			Help: "Samples of an SLO's counters that arrived after their minute was folded and beyond the revision horizon: counted nowhere, never in a later minute."}, []string{"slo"}),
		startReads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "qsp_engine_window_start_reads_total",
			Help: "Buckets of minutes read back so a long window starts exactly where declared, per SLO group, by result: exact, disagreed (the read did not add up to the rollup: the window starts at the bucket's end) or failed (read again a minute later)."}, []string{"result"}),
	}
	reg.MustRegister(m.cycleSeconds, m.lastCycle, m.fetchFailures, m.transitions, m.slos, m.backfillSeconds,
		m.persistSeconds, m.persistFailures, m.corrupt, m.batched, m.lateDropped, m.startReads, &statusCollector{e: e})
	return m
}

var (
	sloLabels     = []string{"slo", "service", "category", "group"}
	descObjective = prometheus.NewDesc("qsp_slo_objective_ratio", "The SLO's objective as a ratio.", sloLabels, nil)
	descSLI       = prometheus.NewDesc("qsp_slo_sli_ratio", "Good events over all events in the window.", append(sloLabels, "window"), nil)
	descBurn      = prometheus.NewDesc("qsp_slo_burn_rate", "Error ratio over the error budget in the window.", append(sloLabels, "window"), nil)
	descEvents    = prometheus.NewDesc("qsp_slo_window_events", "Events (or time slices) in the window.", append(sloLabels, "window", "kind"), nil)
	descRemaining = prometheus.NewDesc("qsp_slo_error_budget_remaining_ratio", "Share of the error budget left over the SLO window.", sloLabels, nil)
	descConsumed  = prometheus.NewDesc("qsp_slo_error_budget_consumed_ratio", "Share of the error budget spent over the SLO window.", sloLabels, nil)
	descState     = prometheus.NewDesc("qsp_slo_state", "1 for the SLO's current state.", append(sloLabels, "state"), nil)
	descAlert     = prometheus.NewDesc("qsp_slo_alert_state", "1 for each alert's current state.", append(sloLabels, "severity", "state"), nil)
	descDropped   = prometheus.NewDesc("qsp_slo_dropped_groups", "Groups refused by the SLO's cardinality limit.", []string{"slo", "service"}, nil)
)

type statusCollector struct{ e *Engine }

func (c *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descObjective, descSLI, descBurn, descEvents, descRemaining, descConsumed, descState, descAlert, descDropped} {
		ch <- d
	}
}

func (c *statusCollector) Collect(ch chan<- prometheus.Metric) {
	snap := c.e.Snapshot()
	dropped := map[string]bool{}
	for _, st := range snap.Statuses {
		group := ""
		if len(st.Group) > 0 {
			group = st.Key[len(st.SLO):]
		}
		lv := []string{st.SLO, st.Service, string(st.Category), group}
		ch <- prometheus.MustNewConstMetric(descObjective, prometheus.GaugeValue, st.Objective, lv...)
		for _, w := range st.Windows {
			wl := append(append([]string{}, lv...), w.Name)
			if w.SLI != nil {
				ch <- prometheus.MustNewConstMetric(descSLI, prometheus.GaugeValue, *w.SLI, wl...)
			}
			if w.BurnRate != nil {
				ch <- prometheus.MustNewConstMetric(descBurn, prometheus.GaugeValue, *w.BurnRate, wl...)
			}
			ch <- prometheus.MustNewConstMetric(descEvents, prometheus.GaugeValue, w.Good, append(wl, "good")...)
			ch <- prometheus.MustNewConstMetric(descEvents, prometheus.GaugeValue, w.Total, append(wl, "total")...)
		}
		ch <- prometheus.MustNewConstMetric(descRemaining, prometheus.GaugeValue, st.Budget.RemainingRatio, lv...)
		ch <- prometheus.MustNewConstMetric(descConsumed, prometheus.GaugeValue, st.Budget.ConsumedRatio, lv...)
		for _, s := range []State{StateOK, StatePending, StateFiring, StateNoData, StateLowTraffic} {
			v := 0.0
			if st.State == s {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(descState, prometheus.GaugeValue, v, append(append([]string{}, lv...), string(s))...)
		}
		for _, a := range st.Alerts {
			ch <- prometheus.MustNewConstMetric(descAlert, prometheus.GaugeValue, 1, append(append([]string{}, lv...), a.Severity, string(a.State))...)
		}
		if st.DroppedGroup > 0 && !dropped[st.SLO] {
			dropped[st.SLO] = true
			ch <- prometheus.MustNewConstMetric(descDropped, prometheus.GaugeValue, float64(st.DroppedGroup), st.SLO, st.Service)
		}
	}
}
