package playbook

import "github.com/prometheus/client_golang/prometheus"

// metrics are the runner's Prometheus metrics.
type metrics struct {
	triggers        *prometheus.CounterVec
	deduped         prometheus.Counter
	dropped         prometheus.Counter
	runs            *prometheus.CounterVec
	stops           *prometheus.CounterVec
	attempts        *prometheus.CounterVec
	attemptDuration *prometheus.HistogramVec
	cycles          *prometheus.CounterVec
	cycleDuration   prometheus.Histogram
	lastSuccess     prometheus.Gauge
	killSwitch      prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		triggers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "qsp_playbook_triggers_total", Help: "Trigger episodes that started a playbook run, by event.",
		}, []string{"event"}),
		deduped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "qsp_playbook_triggers_deduplicated_total", Help: "Triggers of an episode that already has a run (idempotency key).",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "qsp_playbook_transitions_dropped_total", Help: "Alert transitions dropped because the queue was full (the snapshot reconciles them).",
		}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "qsp_playbook_runs_total", Help: "Playbook runs that ended, by final state.",
		}, []string{"state"}),
		stops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "qsp_playbook_stage_stops_total", Help: "Runs ended by a pipeline stage, by stage and state.",
		}, []string{"stage", "state"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "qsp_playbook_action_attempts_total", Help: "Action attempts by type and result (success, retry, failure).",
		}, []string{"type", "result"}),
		attemptDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "qsp_playbook_action_attempt_duration_seconds", Help: "Duration of action attempts.",
			Buckets: prometheus.ExponentialBuckets(0.005, 4, 8),
		}, []string{"type"}),
		cycles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "qsp_playbook_cycles_total", Help: "Runner cycles by result.",
		}, []string{"result"}),
		cycleDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "qsp_playbook_cycle_duration_seconds", Help: "Duration of runner cycles (triggers and admission).",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 8),
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "qsp_playbook_last_success_timestamp_seconds", Help: "When the last runner cycle succeeded.",
		}),
		killSwitch: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "qsp_playbook_kill_switch", Help: "1 while the playbook kill switch is on (as set on this replica).",
		}),
	}
	for _, c := range []prometheus.Collector{m.triggers, m.deduped, m.dropped, m.runs, m.stops, m.attempts, m.attemptDuration,
		m.cycles, m.cycleDuration, m.lastSuccess, m.killSwitch} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
