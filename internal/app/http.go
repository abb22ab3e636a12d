package app

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/qsp-dev/qsp/internal/api"
	"github.com/qsp-dev/qsp/internal/telemetry"
)

// routes builds the HTTP handler of every component.
func (a *App) routes() (http.Handler, error) {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.registry, promhttp.HandlerOpts{Registry: a.registry}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !a.engine.Ready() {
			http.Error(w, "backfilling", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	api, err := api.New(api.Options{Engine: a.engine, Store: a.store, Logger: a.logger, Extra: a.apiExtra})
	if err != nil {
		return nil, err
	}
	mux.Handle("/api/v1/", api)
	mux.HandleFunc("POST /-/reload", func(w http.ResponseWriter, r *http.Request) {
		if err := a.Reload(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusUnprocessableEntity)
			return
		}
		w.Write([]byte("reloaded\n"))
	})
	for _, m := range a.mounts {
		m(mux)
	}
	if a.embedded != nil {
		ropts := telemetry.ReceiverOptions{
			Storage: a.embedded,
			Limits: telemetry.Limits{
				MaxBodyBytes:        a.cfg.Receivers.MaxBodyBytes,
				MaxSeriesPerRequest: a.cfg.Receivers.MaxSeriesPerRequest,
				MaxLabelValueLength: a.cfg.Receivers.MaxLabelValueLength,
			},
			AcceptNonFiniteValues: a.cfg.Receivers.AcceptNonFiniteValues,
			DeploySink:            a.deploySink,
			Logger:                a.logger,
			Registerer:            a.registry,
			Now:                   a.now,
		}
		write, err := telemetry.NewWriteHandler(ropts)
		if err != nil {
			return nil, err
		}
		otlp, err := telemetry.NewOTLPHandler(withRegistry(ropts, prometheus.WrapRegistererWith(prometheus.Labels{"receiver": "otlp"}, a.registry)))
		if err != nil {
			return nil, err
		}
		events, err := telemetry.NewEventsHandler(withRegistry(ropts, prometheus.WrapRegistererWith(prometheus.Labels{"receiver": "events"}, a.registry)))
		if err != nil {
			return nil, err
		}
		query, err := telemetry.NewQueryAPI(telemetry.QueryAPIOptions{Embedded: a.embedded, Logger: a.logger, Now: a.now})
		if err != nil {
			return nil, err
		}
		mux.Handle("POST /api/v1/write", write)
		mux.Handle("POST /v1/metrics", otlp)
		mux.Handle("POST /api/v1/events", events)
		mux.Handle("/prometheus/api/v1/", query)
	}
	return mux, nil
}

func withRegistry(o telemetry.ReceiverOptions, r prometheus.Registerer) telemetry.ReceiverOptions {
	o.Registerer = r
	return o
}

