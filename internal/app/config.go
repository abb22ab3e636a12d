package app

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/qsp-dev/qsp/internal/spec"
	"github.com/qsp-dev/qsp/internal/telemetry"
	"github.com/qsp-dev/qsp/internal/tracelink"
)

// Config is the server configuration (qsp.yaml): where QSP listens, keeps
// its data, reads telemetry and specs, and whom it notifies. Specs (the
// qsp/v1 objects) live elsewhere, in Git.
type Config struct {
	// Listen is the HTTP address. Default 127.0.0.1:8080.
	Listen string `yaml:"listen"`
	// ExternalURL is how users reach QSP, for links in alerts. Default
	// http://<listen>.
	ExternalURL string `yaml:"externalURL"`
	// DataDir holds the embedded TSDB (tsdb/) and the SQLite database
	// (qsp.db). Default ./data.
	DataDir string `yaml:"dataDir"`
	// Specs are spec files or folders, relative to this file.
	Specs      []string         `yaml:"specs"`
	Source     SourceConfig     `yaml:"source"`
	Evaluation EvaluationConfig `yaml:"evaluation"`
	Store      StoreConfig      `yaml:"store"`
	Receivers  ReceiverConfig   `yaml:"receivers"`
	Alerting   AlertingConfig   `yaml:"alerting"`
	Auth       AuthConfig       `yaml:"auth"`
	Playbooks  PlaybookConfig   `yaml:"playbooks"`
	Cluster    ClusterConfig    `yaml:"cluster"`
	Query      QueryConfig      `yaml:"query"`
	Kubernetes KubernetesConfig `yaml:"kubernetes"`
	Traces     TracesConfig     `yaml:"traces"`
	LogLevel   string           `yaml:"logLevel"`
	LogFormat  string           `yaml:"logFormat"`
	// Reports configures the scheduled delivery of SLO reports.
	Reports ReportsConfig `yaml:"reports"`

	file string // where the config was read from
}

// SourceConfig says where telemetry comes from.
type SourceConfig struct {
	// Mode is embedded (default: the built-in TSDB with receivers) or
	// remote (a Prometheus-compatible API).
	Mode     string         `yaml:"mode"`
	Embedded EmbeddedConfig `yaml:"embedded"`
	Remote   RemoteConfig   `yaml:"remote"`
}

// Source modes.
const (
	ModeEmbedded = "embedded"
	ModeRemote   = "remote"
)

// TracesConfig links burns to traces: example traces of bad events come
// from exemplars (embedded exemplar storage, or the remote backend's
// query_exemplars) and link to a trace UI.
type TracesConfig struct {
	// URLTemplate is a Go template of a trace's link with .TraceID,
	// .SpanID, .Time, .StartMillis and .EndMillis, e.g.
	// "http://jaeger:16686/trace/{{.TraceID}}". Empty: trace IDs without
	// links.
	URLTemplate string `yaml:"urlTemplate"`
	// MaxExamples is how many example traces a page, API answer, alert
	// or verdict lists. Default 5, at most 50.
	MaxExamples int `yaml:"maxExamples"`
}

// EmbeddedConfig tunes the embedded TSDB.
type EmbeddedConfig struct {
	Retention        spec.Duration `yaml:"retention"`      // default 35d: the longest SLO window and then some
	RetentionBytes   int64         `yaml:"retentionBytes"` // 0: no cap
	WALCompression   string        `yaml:"walCompression"` // snappy (default), zstd, none
	MinBlockDuration spec.Duration `yaml:"minBlockDuration"`
	MaxBlockDuration spec.Duration `yaml:"maxBlockDuration"`
	// OutOfOrderWindow accepts samples this far behind their series'
	// newest; default 10m, so a remote_write backlog after a partition is
	// stored.
	OutOfOrderWindow spec.Duration `yaml:"outOfOrderWindow"`
	// MaxExemplars sizes the in-memory ring of exemplars (trace IDs on
	// samples) from remote_write and OTLP. Default 100000; negative
	// turns exemplar storage off.
	MaxExemplars int64 `yaml:"maxExemplars"`
}

// RemoteConfig is a Prometheus-compatible query API.
type RemoteConfig struct {
	URL             string            `yaml:"url"`
	Timeout         spec.Duration     `yaml:"timeout"`
	MaxRetries      int               `yaml:"maxRetries"`
	BearerTokenFile string            `yaml:"bearerTokenFile"`
	BasicAuth       *BasicAuthConfig  `yaml:"basicAuth"`
	TLS             TLSConfig         `yaml:"tls"`
	TenantID        string            `yaml:"tenantID"`
	TenantHeader    string            `yaml:"tenantHeader"`
	Headers         map[string]string `yaml:"headers"`
	// WriteURL is the remote_write endpoint that the span metrics of
	// /v1/traces go to in remote mode (default URL + /api/v1/write, as
	// Prometheus with --web.enable-remote-write-receiver serves it).
	WriteURL string `yaml:"writeURL"`

	// OutOfOrderWindow, when set, is how far behind the folded minutes
	// the backend may still take samples (its out-of-order window, or
	// the remote_write lag of its writers): every cycle reads that span
	// again, so late samples revise their minutes. 0 (default): no read
	// back, late samples of a remote backend are not seen.
	OutOfOrderWindow spec.Duration `yaml:"outOfOrderWindow"`
}

// BasicAuthConfig holds basic credentials; the password is read from a file.
type BasicAuthConfig struct {
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"passwordFile"`
}

// TLSConfig configures a TLS client.
type TLSConfig struct {
	CAFile             string `yaml:"caFile"`
	CertFile           string `yaml:"certFile"`
	KeyFile            string `yaml:"keyFile"`
	ServerName         string `yaml:"serverName"`
	InsecureSkipVerify bool   `yaml:"insecureSkipVerify"`
}

// EvaluationConfig tunes the engine.
type EvaluationConfig struct {
	Interval        spec.Duration `yaml:"interval"`        // default 15s
	Settle          spec.Duration `yaml:"settle"`          // default 30s
	LateData        spec.Duration `yaml:"lateData"`        // default 10m
	PersistInterval spec.Duration `yaml:"persistInterval"` // default 5m
}

// StoreConfig chooses the database.
type StoreConfig struct {
	// Driver is sqlite (default, in the data dir) or postgres.
	Driver string `yaml:"driver"`
	// DSNFile holds the PostgreSQL connection string (it has a password).
	DSNFile string `yaml:"dsnFile"`
}

// ClusterConfig tunes replicas sharing a PostgreSQL store. Several
// replicas run whenever the store is PostgreSQL: each evaluates its share
// of the SLOs and serves all of them.
type ClusterConfig struct {
	// ReplicaID names this replica; default the host name and a random
	// suffix.
	ReplicaID string `yaml:"replicaID"`
	// LeaseTTL is how long a silent replica keeps its SLOs. Default 10s.
	LeaseTTL spec.Duration `yaml:"leaseTTL"`
}

// QueryConfig bounds the PromQL a caller sends to the Prometheus-compatible
// query API (/prometheus/api/v1), so that a viewer cannot exhaust the
// server. Zero means the default. MaxSamples and Timeout bound every
// evaluation of the embedded engine, the SLO engine's included.
type QueryConfig struct {
	// MaxLength is the longest query, in bytes. Default 65536.
	MaxLength int `yaml:"maxLength"`
	// MaxDepth bounds nesting: each open bracket, and each operator
	// within one pair of brackets, is a level. Default 128.
	MaxDepth int `yaml:"maxDepth"`
	// MaxPoints bounds the points per series of query_range and of every
	// subquery's evaluation grid. Default 11000, as Prometheus.
	MaxPoints int `yaml:"maxPoints"`
	// MaxSamples bounds the samples one evaluation holds in memory.
	// Default 50000000, as Prometheus' --query.max-samples.
	MaxSamples int `yaml:"maxSamples"`
	// Timeout bounds a query from parse to result; a request's timeout
	// parameter may only shorten it. Default 2m.
	Timeout spec.Duration `yaml:"timeout"`
	// MaxConcurrent bounds the API's queries evaluated at once; others
	// wait within their timeout. Default 20.
	MaxConcurrent int `yaml:"maxConcurrent"`
	// MaxExemplars bounds the exemplars of one query_exemplars answer;
	// the newest are kept. Default 10000.
	MaxExemplars int `yaml:"maxExemplars"`
}

func (q QueryConfig) check() error {
	if q.MaxLength < 0 || q.MaxDepth < 0 || q.MaxPoints < 0 || q.MaxSamples < 0 || q.Timeout < 0 || q.MaxConcurrent < 0 || q.MaxExemplars < 0 {
		return errors.New("config: query: maxLength, maxDepth, maxPoints, maxSamples, timeout, maxConcurrent and maxExemplars must not be negative")
	}
	return nil
}

// limits are the query API's bounds; zero fields stay zero and take the
// telemetry defaults.
func (q QueryConfig) limits() telemetry.QueryLimits {
	return telemetry.QueryLimits{MaxLength: q.MaxLength, MaxDepth: q.MaxDepth, MaxPoints: q.MaxPoints, Timeout: q.Timeout.D(), MaxConcurrent: q.MaxConcurrent, MaxExemplars: q.MaxExemplars}
}

// ReceiverConfig bounds ingestion. Zero means the default of
// telemetry.Limits (and telemetry.DefaultBudgetBytes); negative disables a
// bound.
type ReceiverConfig struct {
	MaxBodyBytes          int64 `yaml:"maxBodyBytes"`
	MaxSeriesPerRequest   int   `yaml:"maxSeriesPerRequest"`
	MaxLabelValueLength   int   `yaml:"maxLabelValueLength"`
	AcceptNonFiniteValues bool  `yaml:"acceptNonFiniteValues"`
	// MaxDecompressedBytes caps a body after snappy or gzip (64 MiB).
	MaxDecompressedBytes int64 `yaml:"maxDecompressedBytes"`
	// MaxLabelsPerSeries caps the labels of one series (64).
	MaxLabelsPerSeries int `yaml:"maxLabelsPerSeries"`
	// MaxSamplesPerRequest caps samples + histograms + exemplars of one
	// remote_write request (100,000).
	MaxSamplesPerRequest int `yaml:"maxSamplesPerRequest"`
	// MaxBucketsPerRequest caps native histogram spans and buckets of one
	// remote_write request, histogram buckets and quantiles of one OTLP
	// request (1,000,000).
	MaxBucketsPerRequest int `yaml:"maxBucketsPerRequest"`
	// BudgetBytes is the memory all ingestion requests may hold at once,
	// shared by remote_write, OTLP and the events API (256 MiB); beyond
	// it they get 429 with Retry-After.
	BudgetBytes int64 `yaml:"budgetBytes"`
	// Traces configures the OTLP traces receiver (/v1/traces) and the
	// span metrics it derives.
	Traces SpanMetricsConfig `yaml:"traces"`
}

// SpanMetricsConfig configures the span metrics derived from OTLP spans; the
// defaults are the OpenTelemetry Collector spanmetrics connector's.
type SpanMetricsConfig struct {
	// Dimensions are span (else resource) attributes added as labels.
	Dimensions []SpanDimensionConfig `yaml:"dimensions"`
	// Unit of the duration histogram: ms (default) or s.
	Unit string `yaml:"unit"`
	// Buckets of the duration histogram (default the connector's, 2ms…15s).
	Buckets []spec.Duration `yaml:"buckets"`
	// Namespace of the metric names (default traces.span.metrics).
	Namespace string `yaml:"namespace"`
	// MaxSeriesPerService bounds the label sets of one service (1,000).
	MaxSeriesPerService int `yaml:"maxSeriesPerService"`
	// MaxSeries bounds the label sets of all services (100,000).
	MaxSeries int `yaml:"maxSeries"`
	// SlowSpan: spans at least this long get exemplars (1s).
	SlowSpan spec.Duration `yaml:"slowSpan"`
}

// SpanDimensionConfig is one extra span-metric label.
type SpanDimensionConfig struct {
	Name    string  `yaml:"name"`
	Default *string `yaml:"default"`
}

// spanMetrics converts the config to the receiver's options.
func (t SpanMetricsConfig) spanMetrics() telemetry.SpanMetricsOptions {
	o := telemetry.SpanMetricsOptions{Unit: t.Unit, Namespace: t.Namespace, MaxSeriesPerService: t.MaxSeriesPerService, MaxSeries: t.MaxSeries, SlowSpan: t.SlowSpan.D()}
	for _, d := range t.Dimensions {
		o.Dimensions = append(o.Dimensions, telemetry.SpanDimension{Name: d.Name, Default: d.Default})
	}
	for _, b := range t.Buckets {
		o.Buckets = append(o.Buckets, b.D())
	}
	return o
}

// AlertingConfig lists where alerts go.
type AlertingConfig struct {
	Alertmanagers []AlertmanagerConfig `yaml:"alertmanagers"`
	Webhooks      []WebhookConfig      `yaml:"webhooks"`
	// ResendInterval is how often firing alerts are re-sent to
	// Alertmanager. Default 1m.
	ResendInterval spec.Duration `yaml:"resendInterval"`
	// ResolveHold is how long every SLO of an open incident must stay
	// back within objective on its short windows before the incident
	// resolves, though long-window alerts still fire. Default 10m.
	ResolveHold spec.Duration `yaml:"resolveHold"`
	// ReopenWithin is how soon after an incident resolved a page of one
	// of its SLOs reopens it instead of opening a new one. Default 1h.
	ReopenWithin spec.Duration `yaml:"reopenWithin"`
}

// AlertmanagerConfig is one Alertmanager of an HA cluster.
type AlertmanagerConfig struct {
	URL             string        `yaml:"url"`
	Timeout         spec.Duration `yaml:"timeout"`
	BearerTokenFile string        `yaml:"bearerTokenFile"`
	TLS             TLSConfig     `yaml:"tls"`
}

// WebhookConfig is a generic JSON webhook receiver.
type WebhookConfig struct {
	Name string `yaml:"name"`
	URL  string `yaml:"url"`
	// SecretFile holds the HMAC-SHA256 key for the signature header.
	SecretFile string        `yaml:"secretFile"`
	Timeout    spec.Duration `yaml:"timeout"`
}

// AuthConfig guards the API and UI.
type AuthConfig struct {
	// Tokens are API tokens by role; only their SHA-256 is stored here.
	Tokens []TokenConfig `yaml:"tokens"`
	// Anonymous is the role of requests without a token: none (default
	// when tokens are set), or viewer.
	Anonymous string    `yaml:"anonymous"`
	TLS       ServerTLS `yaml:"tls"`
	// CORSOrigins allows these origins; none by default.
	CORSOrigins []string `yaml:"corsOrigins"`
	// RateLimit bounds each token's requests to the API and UI (default
	// 50/s, burst 200); IngestRateLimit its requests to the receivers
	// (default 1000/s, burst 2000: Prometheus sends in parallel shards).
	RateLimit       RateLimitConfig `yaml:"rateLimit"`
	IngestRateLimit RateLimitConfig `yaml:"ingestRateLimit"`
	// QueryRateLimit bounds each token's requests to the
	// Prometheus-compatible query API under /prometheus (default 1000/s,
	// burst 2000: Grafana and remote clients query in bursts); requests
	// without a token there keep rateLimit.
	QueryRateLimit RateLimitConfig `yaml:"queryRateLimit"`
	// InsecureAnonymousAdmin lets every request without a token act as
	// admin when no tokens are configured (the demo; a laptop). Without
	// it anonymous requests are read-only viewers, and a listen address
	// beyond loopback without tokens refuses to start.
	InsecureAnonymousAdmin bool `yaml:"insecureAnonymousAdmin"`
	// AllowedHosts are the names clients use in the Host header besides
	// the listen host, externalURL's host, localhost and IP literals
	// (DNS rebinding guard): "qsp.monitoring.svc", ".example.com" for
	// every name under it, "*" for any.
	AllowedHosts []string `yaml:"allowedHosts"`
	// LoginRateLimit bounds failed UI sign-ins per client address
	// (default 10, then one per 6s).
	LoginRateLimit RateLimitConfig `yaml:"loginRateLimit"`
	// BodyTimeout is how long a client may take to send a request body
	// (default 30s); IngestBodyTimeout the same on the receivers (2m).
	BodyTimeout       spec.Duration `yaml:"bodyTimeout"`
	IngestBodyTimeout spec.Duration `yaml:"ingestBodyTimeout"`
	// MaxConnsPerClient bounds the connections one client address holds
	// at once (default 128; -1 for no bound).
	MaxConnsPerClient int `yaml:"maxConnsPerClient"`
}

// DefaultMaxConnsPerClient bounds each client address's connections.
const DefaultMaxConnsPerClient = 128

// RateLimitConfig is a token bucket; zero fields take the default.
type RateLimitConfig struct {
	PerSecond float64 `yaml:"perSecond"`
	Burst     int     `yaml:"burst"`
}

// TokenConfig is one API token.
type TokenConfig struct {
	Name string `yaml:"name"`
	// Role is viewer, operator, admin or ingest.
	Role string `yaml:"role"`
	// SHA256 is the hex SHA-256 of the token (qsp token hash prints it).
	SHA256 string `yaml:"sha256"`
}

// ServerTLS serves HTTPS.
type ServerTLS struct {
	CertFile string `yaml:"certFile"`
	KeyFile  string `yaml:"keyFile"`
}

// PlaybookConfig bounds what playbooks may do.
type PlaybookConfig struct {
	// Allowlist holds URL prefixes (scheme://host[:port][/path]) webhook
	// actions may call; anything else is refused (SSRF guard).
	Allowlist []string `yaml:"allowlist"`
	// Exec enables exec actions. Off by default.
	Exec bool `yaml:"exec"`
	// KillSwitch stops every playbook action.
	KillSwitch bool `yaml:"killSwitch"`
	// SecretsDir holds secret files named after the secret
	// ({{ secret "NAME" }} reads SecretsDir/NAME), besides QSP_SECRET_NAME.
	SecretsDir string `yaml:"secretsDir"`
}

// Defaults of the configuration.
const (
	DefaultListen    = "127.0.0.1:8080"
	DefaultDataDir   = "data"
	DefaultRetention = 35 * 24 * time.Hour
)

// LoadConfig reads a configuration file strictly; errors carry
// file:line:col.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	var c Config
	if diags := spec.Decode(path, data, &c); diags.HasErrors() {
		return nil, diags
	}
	c.file = path
	// Relative paths are relative to the config file.
	base := filepath.Dir(path)
	for i, s := range c.Specs {
		c.Specs[i] = resolve(base, s)
	}
	if c.DataDir != "" {
		c.DataDir = resolve(base, c.DataDir)
	}
	return &c, nil
}

func resolve(base, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(base, p)
}

// Normalize applies defaults and checks the configuration.
func (c *Config) Normalize() error {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("config: listen: %q is not host:port", c.Listen)
	}
	if c.ExternalURL == "" {
		c.ExternalURL = "http://" + c.Listen
	} else if u, err := url.Parse(c.ExternalURL); err != nil || u.Host == "" {
		return fmt.Errorf("config: externalURL: %q is not an absolute URL", c.ExternalURL)
	}
	c.ExternalURL = strings.TrimSuffix(c.ExternalURL, "/")
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	switch c.Source.Mode {
	case "":
		c.Source.Mode = ModeEmbedded
	case ModeEmbedded:
	case ModeRemote:
		if c.Source.Remote.URL == "" {
			return errors.New("config: source.remote.url is required in remote mode")
		}
	default:
		return fmt.Errorf("config: source.mode: want embedded or remote, got %q", c.Source.Mode)
	}
	if c.Source.Embedded.Retention == 0 {
		c.Source.Embedded.Retention = spec.Duration(DefaultRetention)
	}
	if c.Source.Embedded.OutOfOrderWindow == 0 {
		c.Source.Embedded.OutOfOrderWindow = spec.Duration(10 * time.Minute)
	}
	if err := c.Query.check(); err != nil {
		return err
	}
	if c.Traces.MaxExamples < 0 || c.Traces.MaxExamples > tracelink.MaxMax {
		return fmt.Errorf("config: traces.maxExamples: %d: want 0 (default %d) to %d", c.Traces.MaxExamples, tracelink.DefaultMax, tracelink.MaxMax)
	}
	if c.Traces.URLTemplate != "" {
		if _, err := tracelink.ParseTemplate(c.Traces.URLTemplate); err != nil {
			return fmt.Errorf("config: %w", err)
		}
	}
	switch c.Store.Driver {
	case "", "sqlite":
		c.Store.Driver = "sqlite"
	case "postgres":
		if c.Store.DSNFile == "" && os.Getenv("QSP_POSTGRES_DSN") == "" {
			return errors.New("config: store.dsnFile (or QSP_POSTGRES_DSN) is required for postgres")
		}
	default:
		return fmt.Errorf("config: store.driver: want sqlite or postgres, got %q", c.Store.Driver)
	}
	for i, t := range c.Auth.Tokens {
		switch t.Role {
		case "viewer", "operator", "admin", "ingest":
		default:
			return fmt.Errorf("config: auth.tokens[%d] (%s): role must be viewer, operator, admin or ingest, got %q", i, t.Name, t.Role)
		}
		if len(t.SHA256) != 64 {
			return fmt.Errorf("config: auth.tokens[%d] (%s): sha256 must be 64 hex digits (qsp token hash prints it)", i, t.Name)
		}
	}
	if c.Auth.MaxConnsPerClient == 0 {
		c.Auth.MaxConnsPerClient = DefaultMaxConnsPerClient
	}
	if c.Auth.BodyTimeout < 0 || c.Auth.IngestBodyTimeout < 0 {
		return errors.New("config: auth.bodyTimeout and auth.ingestBodyTimeout must not be negative")
	}
	for name, l := range map[string]RateLimitConfig{"auth.rateLimit": c.Auth.RateLimit, "auth.ingestRateLimit": c.Auth.IngestRateLimit, "auth.loginRateLimit": c.Auth.LoginRateLimit, "auth.queryRateLimit": c.Auth.QueryRateLimit} {
		if l.PerSecond < 0 || l.Burst < 0 {
			return fmt.Errorf("config: %s: perSecond and burst must not be negative", name)
		}
	}
	for i, a := range c.Alerting.Alertmanagers {
		if u, err := url.Parse(a.URL); err != nil || u.Host == "" {
			return fmt.Errorf("config: alerting.alertmanagers[%d].url: %q is not an absolute URL", i, a.URL)
		}
	}
	for i, w := range c.Alerting.Webhooks {
		if u, err := url.Parse(w.URL); err != nil || u.Host == "" {
			return fmt.Errorf("config: alerting.webhooks[%d].url: %q is not an absolute URL", i, w.URL)
		}
	}
	return c.Reports.check(c.Alerting)
}
