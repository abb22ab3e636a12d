package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/qsp-dev/qsp/internal/api"
	"github.com/qsp-dev/qsp/internal/telemetry"
	"github.com/qsp-dev/qsp/internal/ui"
)

// router is the server's handler: every route of every component behind
// api.Auth with the role api's route table gives it, security headers on
// every answer, CORS on the API when configured.
type router struct {
	handler http.Handler
	routes  []api.Route
	// extra holds routes components mounted without a rule (App.mounts);
	// they are served to admins only.
	extra     *http.ServeMux
	extraAuth http.Handler
}

// ServeHTTP implements http.Handler.
func (rt *router) ServeHTTP(w http.ResponseWriter, r *http.Request) { rt.handler.ServeHTTP(w, r) }

// Routes returns every route the server serves and the role each needs,
// sorted by pattern: the authorization matrix test walks them.
func (rt *router) Routes() []api.Route { return rt.routes }

// newAuth builds the access control from the configuration. Without
// tokens anonymous requests are read-only viewers, unless
// auth.insecureAnonymousAdmin makes them admins (the demo); beyond
// loopback that needs the setting, or an explicit auth.anonymous, to
// start at all. The session key and the revoked sessions live in the
// store, so UI sessions survive a restart and are valid, and end, on
// every replica sharing the database.
func (a *App) newAuth(ctx context.Context) (*api.Auth, error) {
	ac := a.cfg.Auth
	var tokens []api.Token
	for _, t := range ac.Tokens {
		tokens = append(tokens, api.Token{Name: t.Name, Role: api.Role(t.Role), SHA256: t.SHA256})
	}
	if len(tokens) == 0 && ac.Anonymous == "" && !ac.InsecureAnonymousAdmin && !loopback(a.cfg.Listen) {
		return nil, fmt.Errorf("config: listen %s is beyond loopback and auth.tokens is empty: add tokens (qsp token new), "+
			"set auth.anonymous: viewer for a read-only dashboard, or set auth.insecureAnonymousAdmin: true to let anyone who reaches it administer", a.cfg.Listen)
	}
	key, err := a.store.Secret(ctx, "ui-session-key", 32)
	if err != nil {
		return nil, err
	}
	auth, err := api.NewAuth(api.AuthOptions{
		Tokens: tokens, Anonymous: api.Role(ac.Anonymous), AnonymousSet: ac.Anonymous != "", SessionKey: key,
		InsecureAnonymousAdmin: ac.InsecureAnonymousAdmin, Sessions: a.store,
		RateLimit:       api.Limit{PerSecond: ac.RateLimit.PerSecond, Burst: ac.RateLimit.Burst},
		IngestRateLimit: api.Limit{PerSecond: ac.IngestRateLimit.PerSecond, Burst: ac.IngestRateLimit.Burst},
		QueryRateLimit:  api.Limit{PerSecond: ac.QueryRateLimit.PerSecond, Burst: ac.QueryRateLimit.Burst},
		LoginLimit:      api.Limit{PerSecond: ac.LoginRateLimit.PerSecond, Burst: ac.LoginRateLimit.Burst},
		BodyTimeout:     ac.BodyTimeout.D(), IngestBodyTimeout: ac.IngestBodyTimeout.D(),
		SecureCookies: ac.TLS.CertFile != "", Logger: a.logger, Now: a.now,
	})
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	switch {
	case auth.Open() && loopback(a.cfg.Listen):
		a.logger.Warn("auth.insecureAnonymousAdmin: every local request is allowed; add auth.tokens (qsp token new) before sharing this server", "listen", a.cfg.Listen)
	case auth.Open():
		a.logger.Warn("auth.insecureAnonymousAdmin beyond loopback: anyone who reaches this address may reload specs, acknowledge incidents and push telemetry; add auth.tokens (qsp token new)", "listen", a.cfg.Listen)
	case len(tokens) == 0 && ac.Anonymous == "":
		a.logger.Info("no auth tokens configured: anonymous requests are read-only viewers", "listen", a.cfg.Listen)
	case auth.Anonymous() != api.RoleNone:
		a.logger.Warn("anonymous requests are allowed", "role", auth.Anonymous())
	}
	return auth, nil
}

// guardOptions are the names and origins the server answers to: the
// listen host (and this machine's name when it listens on every
// address), externalURL's host and origin, and auth.allowedHosts; IP
// literals and localhost always pass (api.Guard).
func (a *App) guardOptions() api.GuardOptions {
	opts := api.GuardOptions{CORSOrigins: a.cfg.Auth.CORSOrigins, Exempt: []string{"/healthz", "/readyz"}}
	opts.Hosts = append(opts.Hosts, a.cfg.Auth.AllowedHosts...)
	if host, _, err := net.SplitHostPort(a.cfg.Listen); err == nil {
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			if name, err := os.Hostname(); err == nil {
				short, _, _ := strings.Cut(name, ".")
				opts.Hosts = append(opts.Hosts, name, short)
			}
		} else {
			opts.Hosts = append(opts.Hosts, host)
		}
	}
	if u, err := url.Parse(a.cfg.ExternalURL); err == nil && u.Host != "" {
		opts.Hosts = append(opts.Hosts, u.Hostname())
		opts.Origins = append(opts.Origins, u.Scheme+"://"+u.Host)
	}
	return opts
}

// limitListener bounds the connections each client address holds
// (auth.maxConnsPerClient), so one client cannot take every file
// descriptor with slow requests.
func (a *App) limitListener(l net.Listener) net.Listener {
	refused := promauto.With(a.registry).NewCounter(prometheus.CounterOpts{
		Name: "qsp_http_connections_refused_total",
		Help: "Connections closed at accept because their client address held auth.maxConnsPerClient already.",
	})
	return api.LimitConnsPerClient(l, a.cfg.Auth.MaxConnsPerClient, func(addr string) {
		refused.Inc()
		a.logger.Debug("connection refused: too many from one client", "client", addr)
	})
}

// loopback reports whether a listen address only accepts local
// connections.
func loopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// routes builds the HTTP handler of every component.
func (a *App) routes(ctx context.Context) (*router, error) {
	auth, _ := a.apiExtra["auth"].(*api.Auth)
	if auth == nil {
		var err error
		if auth, err = a.newAuth(ctx); err != nil {
			return nil, err
		}
	}
	mux := api.NewMux(auth, api.DenyJSON)
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.registry, promhttp.HandlerOpts{Registry: a.registry}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !a.engine.Ready() {
			http.Error(w, "backfilling", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("POST /-/reload", func(w http.ResponseWriter, r *http.Request) {
		if err := a.Reload(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusUnprocessableEntity)
			return
		}
		w.Write([]byte("reloaded\n"))
	})
	rt := &router{}
	apiHandler, err := api.New(api.Options{Engine: a.snapshots, History: a.engine, Specs: a.Specs, Store: a.store, Auth: auth,
		Logger: a.logger, Extra: a.apiExtra, Now: a.now, ServerRoutes: rt.Routes})
	if err != nil {
		return nil, err
	}
	// The API and the UI check the rule of each of their routes
	// themselves; the subtrees only hand requests over.
	mux.ServeMux.Handle("/api/v1/", apiHandler)
	routes := slices.Concat(mux.Routes(), apiHandler.Routes())
	if u, _ := a.apiExtra["ui"].(*ui.UI); u != nil {
		mux.ServeMux.Handle("/", u)
		routes = append(routes, u.Routes()...)
	}
	if a.embedded != nil {
		rc := a.cfg.Receivers
		// One budget for every receiver, so their bodies and decoded
		// requests together stay bounded.
		budget, err := telemetry.NewBudget(rc.BudgetBytes, a.registry)
		if err != nil {
			return nil, err
		}
		ropts := telemetry.ReceiverOptions{
			Storage: a.embedded,
			Limits: telemetry.Limits{
				MaxBodyBytes:         rc.MaxBodyBytes,
				MaxDecompressedBytes: rc.MaxDecompressedBytes,
				MaxSeriesPerRequest:  rc.MaxSeriesPerRequest,
				MaxLabelsPerSeries:   rc.MaxLabelsPerSeries,
				MaxLabelValueLength:  rc.MaxLabelValueLength,
				MaxSamplesPerRequest: rc.MaxSamplesPerRequest,
				MaxBucketsPerRequest: rc.MaxBucketsPerRequest,
			},
			Budget:                budget,
			AcceptNonFiniteValues: a.cfg.Receivers.AcceptNonFiniteValues,
			DeploySink:            a.deploySink,
			Logger:                a.logger,
			Registerer:            a.registry,
			Now:                   a.now,
			SpanMetrics:           rc.Traces.spanMetrics(),
		}
		write, err := telemetry.NewWriteHandler(ropts)
		if err != nil {
			return nil, err
		}
		otlp, err := telemetry.NewOTLPHandler(withRegistry(ropts, prometheus.WrapRegistererWith(prometheus.Labels{"receiver": "otlp"}, a.registry)))
		if err != nil {
			return nil, err
		}
		traces, err := telemetry.NewTracesHandler(withRegistry(ropts, prometheus.WrapRegistererWith(prometheus.Labels{"receiver": "traces"}, a.registry)))
		if err != nil {
			return nil, err
		}
		events, err := telemetry.NewEventsHandler(withRegistry(ropts, prometheus.WrapRegistererWith(prometheus.Labels{"receiver": "events"}, a.registry)))
		if err != nil {
			return nil, err
		}
		query, err := telemetry.NewQueryAPI(telemetry.QueryAPIOptions{Embedded: a.embedded, Logger: a.logger, Now: a.now, Limits: a.cfg.Query.limits()})
		if err != nil {
			return nil, err
		}
		before := len(mux.Routes())
		mux.Handle("POST /api/v1/write", write)
		mux.Handle("POST /v1/metrics", otlp)
		mux.Handle("POST /v1/traces", traces)
		mux.Handle("POST /api/v1/events", events)
		mux.Handle("/prometheus/api/v1/", query)
		// The data source's root: Grafana users paste this URL and open
		// it to check it, so it answers instead of 404.
		promRoot := func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Write([]byte("QSP's Prometheus-compatible query API over the embedded TSDB.\n" +
				"Use this URL as the server URL of a Grafana Prometheus data source (with an Authorization: Bearer token header when auth.tokens is set);\n" +
				"the endpoints are under /prometheus/api/v1/ (query, query_range, series, labels, label/NAME/values, status/buildinfo).\n"))
		}
		mux.HandleFunc("GET /prometheus", promRoot)
		mux.HandleFunc("GET /prometheus/{$}", promRoot)
		routes = append(routes, mux.Routes()[before:]...)
	}
	if r, ok := a.source.(*telemetry.Remote); ok && a.embedded == nil {
		// Remote mode: spans still arrive here; their metrics are
		// remote-written to the backend the SLIs read.
		h, err := a.remoteTraces(r)
		if err != nil {
			return nil, err
		}
		before := len(mux.Routes())
		mux.Handle("POST /v1/traces", h)
		routes = append(routes, mux.Routes()[before:]...)
	}
	slices.SortFunc(routes, func(x, y api.Route) int { return strings.Compare(x.Pattern, y.Pattern) })
	rt.routes = routes
	var h http.Handler = mux
	if len(a.mounts) > 0 {
		// Routes mounted by components without a rule in the role table:
		// admins only, until the table has them.
		rt.extra = http.NewServeMux()
		for _, m := range a.mounts {
			m(rt.extra)
		}
		rt.extraAuth = auth.RequireRule(api.Rule{Role: api.RoleAdmin}, api.DenyJSON, rt.extra)
		a.logger.Warn("components mounted routes outside the role table: admins only")
		main := h
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, pattern := rt.extra.Handler(r); pattern != "" {
				rt.extraAuth.ServeHTTP(w, r)
				return
			}
			main.ServeHTTP(w, r)
		})
	}
	rt.handler = api.SecurityHeaders(api.Guard(a.guardOptions(), api.CORS(a.cfg.Auth.CORSOrigins, h)), a.cfg.Auth.TLS.CertFile != "")
	return rt, nil
}

// remoteTraces is the traces receiver of remote mode, writing to the
// remote backend's remote_write endpoint.
func (a *App) remoteTraces(r *telemetry.Remote) (*telemetry.TracesHandler, error) {
	w, err := r.Writer(a.cfg.Source.Remote.WriteURL)
	if err != nil {
		return nil, fmt.Errorf("config: source.remote.writeURL: %w", err)
	}
	rc := a.cfg.Receivers
	budget, err := telemetry.NewBudget(rc.BudgetBytes, a.registry)
	if err != nil {
		return nil, err
	}
	return telemetry.NewTracesHandler(telemetry.ReceiverOptions{
		Storage: w,
		Limits: telemetry.Limits{
			MaxBodyBytes:         rc.MaxBodyBytes,
			MaxDecompressedBytes: rc.MaxDecompressedBytes,
			MaxSeriesPerRequest:  rc.MaxSeriesPerRequest,
			MaxLabelsPerSeries:   rc.MaxLabelsPerSeries,
			MaxLabelValueLength:  rc.MaxLabelValueLength,
		},
		Budget:      budget,
		SpanMetrics: rc.Traces.spanMetrics(),
		Logger:      a.logger,
		Registerer:  prometheus.WrapRegistererWith(prometheus.Labels{"receiver": "traces"}, a.registry),
		Now:         a.now,
	})
}

func withRegistry(o telemetry.ReceiverOptions, r prometheus.Registerer) telemetry.ReceiverOptions {
	o.Registerer = r
	return o
}

// tlsListener wraps l in TLS when auth.tls names a certificate and key;
// otherwise it returns l. The certificate is read once, at start.
func (a *App) tlsListener(l net.Listener) (net.Listener, error) {
	t := a.cfg.Auth.TLS
	switch {
	case t.CertFile == "" && t.KeyFile == "":
		return l, nil
	case t.CertFile == "" || t.KeyFile == "":
		return nil, errors.New("config: auth.tls needs both certFile and keyFile")
	}
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("config: auth.tls: %w", err)
	}
	return tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}), nil
}

// Routes returns every route the server serves and the role each needs.
func (a *App) Routes() []api.Route {
	if rt, ok := a.server.Handler.(*router); ok {
		return rt.Routes()
	}
	return nil
}
