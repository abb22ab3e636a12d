package telemetry

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/timestamp"
	"github.com/prometheus/prometheus/promql"
)

// RemoteOptions configures a Remote. Only URL is required.
type RemoteOptions struct {
	// URL is the base of the Prometheus HTTP API, without /api/v1: e.g.
	// http://prometheus:9090, https://mimir.example/prometheus,
	// http://thanos-query:10902, http://victoriametrics:8428.
	URL string
	// Timeout bounds each attempt (default 30s). The caller's context
	// bounds the whole call, retries included.
	Timeout time.Duration
	// MaxRetries is the number of retries after the first attempt (default
	// 3; negative disables retries). Only network errors, timeouts, 429
	// and 5xx are retried.
	MaxRetries int
	// MinBackoff and MaxBackoff bound the exponential backoff between
	// attempts (defaults 250ms and 5s); each wait is jittered.
	MinBackoff, MaxBackoff time.Duration
	// BearerToken is sent as "Authorization: Bearer <token>".
	BearerToken string
	// BearerTokenFile is read for the token, and read again whenever it
	// changes, so rotated tokens are picked up. Exclusive with BearerToken.
	BearerTokenFile string
	// BasicAuth, if set, is sent instead of a bearer token.
	BasicAuth *BasicAuth
	// TLS configures HTTPS.
	TLS TLSOptions
	// TenantID, if set, is sent in TenantHeader (Mimir, Cortex, Thanos
	// receive multi-tenancy).
	TenantID string
	// TenantHeader is the header name for TenantID (default X-Scope-OrgID).
	TenantHeader string
	// Headers are added to every request.
	Headers map[string]string
	// SamplesChunk is the longest range one raw-samples query asks for;
	// longer ranges are split, so no single response gets huge (default 2h).
	SamplesChunk time.Duration
	// Transport overrides the HTTP transport (default: one built from TLS).
	Transport http.RoundTripper
	// Logger receives one warning per retried attempt (default: discarded).
	// Tokens and passwords are never logged.
	Logger *slog.Logger
	// Registerer receives request metrics (default: a private registry).
	Registerer prometheus.Registerer
}

// BasicAuth holds HTTP basic credentials. The password is read from
// PasswordFile, if set, whenever that file changes.
type BasicAuth struct {
	Username     string
	Password     string
	PasswordFile string
}

// TLSOptions configures the TLS client.
type TLSOptions struct {
	// CAFile holds the PEM CA certificates that verify the server
	// (default: the system pool).
	CAFile string
	// CertFile and KeyFile are a PEM client certificate and key, read
	// again on each new connection so rotation works.
	CertFile, KeyFile string
	// ServerName overrides the name verified in the server certificate.
	ServerName string
	// InsecureSkipVerify disables server certificate verification.
	InsecureSkipVerify bool
}

// Remote is a Source over the Prometheus HTTP API of Prometheus, Thanos,
// Mimir, Cortex or VictoriaMetrics. It is safe for concurrent use.
type Remote struct {
	opts    RemoteOptions
	base    *url.URL
	client  *http.Client
	log     *slog.Logger
	token   *fileSecret
	passwd  *fileSecret
	metrics remoteMetrics
}

var _ Source = (*Remote)(nil)

type remoteMetrics struct {
	requests *prometheus.CounterVec
	retries  prometheus.Counter
	duration *prometheus.HistogramVec
}

// RemoteAPIError is an error answered by the remote API: a bad query (400
// bad_data), an evaluation error (422 execution), or a fault.
type RemoteAPIError struct {
	StatusCode int
	ErrorType  string
	Message    string
}

func (e *RemoteAPIError) Error() string {
	if e.ErrorType != "" {
		return fmt.Sprintf("%s (HTTP %d): %s", e.ErrorType, e.StatusCode, e.Message)
	}
	return fmt.Sprintf("HTTP %d: %s", e.StatusCode, e.Message)
}

// NewRemote returns a Source for the API at opts.URL. It does not contact
// the server.
func NewRemote(opts RemoteOptions) (*Remote, error) {
	if opts.URL == "" {
		return nil, errors.New("remote source: URL is required")
	}
	base, err := url.Parse(opts.URL)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("remote source: URL %q: want http(s)://host[:port][/path]", redactURL(opts.URL))
	}
	if base.User != nil {
		return nil, errors.New("remote source: put credentials in BasicAuth, not in the URL")
	}
	base.Path = strings.TrimSuffix(base.Path, "/")
	if opts.BearerToken != "" && opts.BearerTokenFile != "" {
		return nil, errors.New("remote source: BearerToken and BearerTokenFile are exclusive")
	}
	if opts.BasicAuth != nil && (opts.BearerToken != "" || opts.BearerTokenFile != "") {
		return nil, errors.New("remote source: BasicAuth and a bearer token are exclusive")
	}
	if opts.Timeout < 0 || opts.MinBackoff < 0 || opts.MaxBackoff < 0 || opts.SamplesChunk < 0 {
		return nil, errors.New("remote source: durations must not be negative")
	}
	if opts.Timeout == 0 {
		opts.Timeout = 30 * time.Second
	}
	switch {
	case opts.MaxRetries == 0:
		opts.MaxRetries = 3
	case opts.MaxRetries < 0:
		opts.MaxRetries = 0
	}
	if opts.MinBackoff == 0 {
		opts.MinBackoff = 250 * time.Millisecond
	}
	if opts.MaxBackoff == 0 {
		opts.MaxBackoff = 5 * time.Second
	}
	opts.MaxBackoff = max(opts.MaxBackoff, opts.MinBackoff)
	if opts.TenantHeader == "" {
		opts.TenantHeader = "X-Scope-OrgID"
	}
	if opts.SamplesChunk == 0 {
		opts.SamplesChunk = 2 * time.Hour
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	r := &Remote{opts: opts, base: base, log: opts.Logger.With("component", "telemetry.remote", "url", base.Redacted())}
	if opts.BearerTokenFile != "" {
		r.token = &fileSecret{path: opts.BearerTokenFile}
		if _, err := r.token.get(); err != nil {
			return nil, fmt.Errorf("remote source: %w", err)
		}
	}
	if opts.BasicAuth != nil && opts.BasicAuth.PasswordFile != "" {
		r.passwd = &fileSecret{path: opts.BasicAuth.PasswordFile}
		if _, err := r.passwd.get(); err != nil {
			return nil, fmt.Errorf("remote source: %w", err)
		}
	}
	rt := opts.Transport
	if rt == nil {
		tlsCfg, err := opts.TLS.config()
		if err != nil {
			return nil, fmt.Errorf("remote source: %w", err)
		}
		rt = &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSClientConfig:     tlsCfg,
			TLSHandshakeTimeout: 10 * time.Second,
			MaxIdleConnsPerHost: 16,
			IdleConnTimeout:     90 * time.Second,
			ForceAttemptHTTP2:   true,
		}
	}
	r.client = &http.Client{Transport: rt}
	r.metrics = remoteMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "qsp_remote_source_requests_total",
			Help: "Attempts to call the remote Prometheus API, by endpoint and outcome (HTTP code, or error).",
		}, []string{"endpoint", "code"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "qsp_remote_source_retries_total",
			Help: "Attempts to call the remote Prometheus API that were retries.",
		}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "qsp_remote_source_request_duration_seconds",
			Help:    "Duration of attempts to call the remote Prometheus API.",
			Buckets: prometheus.ExponentialBuckets(0.005, 4, 8),
		}, []string{"endpoint"}),
	}
	for _, c := range []prometheus.Collector{r.metrics.requests, r.metrics.retries, r.metrics.duration} {
		if err := opts.Registerer.Register(c); err != nil {
			return nil, fmt.Errorf("remote source: register metrics: %w", err)
		}
	}
	return r, nil
}

// Close releases idle connections.
func (r *Remote) Close() error {
	r.client.CloseIdleConnections()
	return nil
}

func (t TLSOptions) config() (*tls.Config, error) {
	cfg := &tls.Config{ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s: no PEM certificates", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return nil, errors.New("TLS CertFile and KeyFile must be set together")
	}
	if t.CertFile != "" {
		if _, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile); err != nil {
			return nil, fmt.Errorf("load client certificate: %w", err)
		}
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			c, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("load client certificate: %w", err)
			}
			return &c, nil
		}
	}
	return cfg, nil
}

// fileSecret is a secret kept in a file, read again when the file's size
// or modification time changes.
type fileSecret struct {
	path  string
	mu    sync.Mutex
	mod   time.Time
	size  int64
	value string
}

func (f *fileSecret) get() (string, error) {
	st, err := os.Stat(f.path)
	if err != nil {
		return "", fmt.Errorf("read secret file: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if st.ModTime().Equal(f.mod) && st.Size() == f.size && f.value != "" {
		return f.value, nil
	}
	b, err := os.ReadFile(f.path)
	if err != nil {
		return "", fmt.Errorf("read secret file: %w", err)
	}
	f.value, f.mod, f.size = strings.TrimSpace(string(b)), st.ModTime(), st.Size()
	return f.value, nil
}

func redactURL(s string) string {
	if u, err := url.Parse(s); err == nil {
		return u.Redacted()
	}
	return "<unparsable URL>"
}

// apiResponse is Prometheus' response envelope.
type apiResponse struct {
	Status    string          `json:"status"`
	Data      json.RawMessage `json:"data"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Warnings  []string        `json:"warnings"`
}

// call performs one API call with retries and returns the data field of a
// successful response.
func (r *Remote) call(ctx context.Context, method, endpoint string, params url.Values) (json.RawMessage, error) {
	var last error
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			r.metrics.retries.Inc()
			wait := r.backoff(attempt, last)
			r.log.Warn("remote source request failed, retrying", "endpoint", endpoint, "attempt", attempt, "wait", wait, "err", last)
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("%w: %s: %w (last attempt: %w)", ErrUnavailable, endpoint, ctx.Err(), last)
			case <-time.After(wait):
			}
		}
		data, retry, err := r.attempt(ctx, method, endpoint, params)
		if err == nil {
			return data, nil
		}
		if !retry {
			return nil, fmt.Errorf("%s: %w", endpoint, err)
		}
		last = err
		if ctx.Err() != nil || attempt >= r.opts.MaxRetries {
			return nil, fmt.Errorf("%w: %s: %w", ErrUnavailable, endpoint, err)
		}
	}
}

// retryAfter carries a server's Retry-After hint.
type retryAfter struct {
	err  error
	wait time.Duration
}

func (e *retryAfter) Error() string { return e.err.Error() }
func (e *retryAfter) Unwrap() error { return e.err }

// backoff is exponential with jitter: a random wait in [d/2, d] where d
// doubles from MinBackoff up to MaxBackoff; a Retry-After hint is honoured
// up to MaxBackoff.
func (r *Remote) backoff(attempt int, last error) time.Duration {
	d := r.opts.MinBackoff << min(attempt-1, 30)
	if d <= 0 || d > r.opts.MaxBackoff {
		d = r.opts.MaxBackoff
	}
	d = d/2 + rand.N(d/2+1)
	var ra *retryAfter
	if errors.As(last, &ra) && ra.wait > d {
		d = min(ra.wait, r.opts.MaxBackoff)
	}
	return d
}

// attempt performs one HTTP request. retry reports whether err is worth
// another attempt.
func (r *Remote) attempt(ctx context.Context, method, endpoint string, params url.Values) (_ json.RawMessage, retry bool, _ error) {
	ctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	u := *r.base
	u.Path += "/api/v1/" + endpoint
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader(params.Encode())
	} else {
		u.RawQuery = params.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, false, err
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "qsp")
	for k, v := range r.opts.Headers {
		req.Header.Set(k, v)
	}
	if r.opts.TenantID != "" {
		req.Header.Set(r.opts.TenantHeader, r.opts.TenantID)
	}
	if err := r.authorize(req); err != nil {
		return nil, false, err
	}
	metricEndpoint := endpoint
	if strings.HasPrefix(endpoint, "label/") {
		metricEndpoint = "label_values"
	}
	start := time.Now()
	resp, err := r.client.Do(req)
	r.metrics.duration.WithLabelValues(metricEndpoint).Observe(time.Since(start).Seconds())
	if err != nil {
		r.metrics.requests.WithLabelValues(metricEndpoint, "error").Inc()
		// Network errors and timeouts of this attempt are retryable;
		// url.Error's message does not include credentials (they are in
		// headers).
		return nil, true, err
	}
	defer resp.Body.Close()
	r.metrics.requests.WithLabelValues(metricEndpoint, strconv.Itoa(resp.StatusCode)).Inc()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<30))
	if err != nil {
		return nil, true, fmt.Errorf("read response: %w", err)
	}
	var ar apiResponse
	jsonErr := json.Unmarshal(b, &ar)
	code := resp.StatusCode
	if code/100 == 2 {
		if jsonErr != nil {
			return nil, false, fmt.Errorf("%w: malformed response (HTTP %d): %v", ErrUnavailable, code, jsonErr)
		}
		if ar.Status != "success" {
			return nil, false, &RemoteAPIError{StatusCode: code, ErrorType: r.scrub(ar.ErrorType), Message: r.scrub(ar.Error)}
		}
		return ar.Data, false, nil
	}
	msg := ar.Error
	if jsonErr != nil || ar.Error == "" {
		msg = string(b[:min(len(b), 4*maxRemoteMessage)])
	}
	apiErr := &RemoteAPIError{StatusCode: code, ErrorType: r.scrub(ar.ErrorType), Message: r.scrub(msg)}
	if code == http.StatusTooManyRequests || code/100 == 5 {
		var err error = apiErr
		if s := resp.Header.Get("Retry-After"); s != "" {
			if secs, perr := strconv.Atoi(s); perr == nil && secs >= 0 {
				err = &retryAfter{err: apiErr, wait: time.Duration(secs) * time.Second}
			}
		}
		return nil, true, err
	}
	// Other 4xx: the query or the request is wrong; retrying cannot help.
	return nil, false, apiErr
}

// maxRemoteMessage bounds, in bytes, the upstream text a RemoteAPIError
// keeps: it ends up in SLO status reasons that every viewer reads.
const maxRemoteMessage = 512

// Credentials as servers echo them: an Authorization header with its
// value (as text, JSON or a Go map), and a bearer token anywhere.
var (
	authHeaderText = regexp.MustCompile(`(?i)\b((?:proxy-)?authorization)(["']?\s*[:=]\s*["']?)[^\r\n"',;}\]]*`)
	bearerText     = regexp.MustCompile(`(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+`)
)

// scrub makes upstream text fit to show: the configured credentials (the
// bearer token, the basic-auth password and its encoded header, values
// of configured headers) and anything that reads as an Authorization
// header or a bearer token are replaced by <redacted>, control
// characters by spaces, and the result is cut to maxRemoteMessage bytes.
// A backend that echoes request headers in its errors (some proxies do)
// must not hand the token to whoever reads an SLO's status.
func (r *Remote) scrub(s string) string {
	if s == "" {
		return ""
	}
	secrets := []string{r.opts.BearerToken}
	if r.token != nil {
		if tok, err := r.token.get(); err == nil {
			secrets = append(secrets, tok)
		}
	}
	if ba := r.opts.BasicAuth; ba != nil {
		pw := ba.Password
		if r.passwd != nil {
			if p, err := r.passwd.get(); err == nil {
				pw = p
			}
		}
		secrets = append(secrets, pw, base64.StdEncoding.EncodeToString([]byte(ba.Username+":"+pw)))
	}
	for _, v := range r.opts.Headers {
		// Short values (a tenant, "1") would only mangle the text.
		if len(v) >= 6 {
			secrets = append(secrets, v)
		}
	}
	// Longest first, so a secret containing another goes whole.
	slices.SortFunc(secrets, func(a, b string) int { return len(b) - len(a) })
	for _, sec := range secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, "<redacted>")
		}
	}
	s = authHeaderText.ReplaceAllString(s, "${1}${2}<redacted>")
	s = bearerText.ReplaceAllString(s, "${1} <redacted>")
	s = strings.Map(func(c rune) rune {
		if unicode.IsControl(c) {
			return ' '
		}
		return c
	}, strings.TrimSpace(s))
	if len(s) > maxRemoteMessage {
		s = strings.ToValidUTF8(s[:maxRemoteMessage], "") + "…"
	}
	return s
}

func (r *Remote) authorize(req *http.Request) error {
	switch {
	case r.opts.BasicAuth != nil:
		pw := r.opts.BasicAuth.Password
		if r.passwd != nil {
			var err error
			if pw, err = r.passwd.get(); err != nil {
				return err
			}
		}
		req.SetBasicAuth(r.opts.BasicAuth.Username, pw)
	case r.token != nil:
		tok, err := r.token.get()
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	case r.opts.BearerToken != "":
		req.Header.Set("Authorization", "Bearer "+r.opts.BearerToken)
	}
	return nil
}

func formatTime(t time.Time) string {
	return formatMillis(timestamp.FromTime(t))
}

func formatMillis(ms int64) string {
	return strconv.FormatFloat(float64(ms)/1000, 'f', 3, 64)
}

// queryData is the data of a query response.
type queryData struct {
	ResultType model.ValueType `json:"resultType"`
	Result     json.RawMessage `json:"result"`
}

func (r *Remote) query(ctx context.Context, endpoint string, params url.Values) (*queryData, error) {
	raw, err := r.call(ctx, http.MethodPost, endpoint, params)
	if err != nil {
		return nil, err
	}
	var qd queryData
	if err := json.Unmarshal(raw, &qd); err != nil {
		return nil, fmt.Errorf("%w: %s: malformed result: %v", ErrUnavailable, endpoint, err)
	}
	return &qd, nil
}

var errRemoteHistograms = errors.New("native histogram results are not supported from a remote source; use histogram_quantile or classic histograms")

// Instant implements Source.
func (r *Remote) Instant(ctx context.Context, query string, ts time.Time) (promql.Vector, error) {
	qd, err := r.query(ctx, "query", url.Values{"query": {query}, "time": {formatTime(ts)}})
	if err != nil {
		return nil, fmt.Errorf("instant query %q: %w", query, err)
	}
	switch qd.ResultType {
	case model.ValVector:
		var v model.Vector
		if err := json.Unmarshal(qd.Result, &v); err != nil {
			return nil, fmt.Errorf("%w: instant query %q: malformed vector: %v", ErrUnavailable, query, err)
		}
		out := make(promql.Vector, 0, len(v))
		for _, s := range v {
			if s.Histogram != nil {
				return nil, fmt.Errorf("instant query %q: %w", query, errRemoteHistograms)
			}
			out = append(out, promql.Sample{Metric: metricLabels(s.Metric), T: int64(s.Timestamp), F: float64(s.Value)})
		}
		return out, nil
	case model.ValScalar:
		var s model.Scalar
		if err := json.Unmarshal(qd.Result, &s); err != nil {
			return nil, fmt.Errorf("%w: instant query %q: malformed scalar: %v", ErrUnavailable, query, err)
		}
		return promql.Vector{{Metric: labels.EmptyLabels(), T: int64(s.Timestamp), F: float64(s.Value)}}, nil
	default:
		return nil, fmt.Errorf("instant query %q: result is a %s, want a vector or scalar", query, qd.ResultType)
	}
}

// Range implements Source.
func (r *Remote) Range(ctx context.Context, query string, start, end time.Time, step time.Duration) (promql.Matrix, error) {
	if step <= 0 {
		return nil, fmt.Errorf("range query %q: step %s must be positive", query, step)
	}
	if end.Before(start) {
		return nil, fmt.Errorf("range query %q: end %s is before start %s", query, end, start)
	}
	qd, err := r.query(ctx, "query_range", url.Values{
		"query": {query},
		"start": {formatTime(start)},
		"end":   {formatTime(end)},
		"step":  {strconv.FormatFloat(step.Seconds(), 'f', -1, 64)},
	})
	if err != nil {
		return nil, fmt.Errorf("range query %q: %w", query, err)
	}
	if qd.ResultType != model.ValMatrix {
		return nil, fmt.Errorf("range query %q: result is a %s, want a matrix", query, qd.ResultType)
	}
	m, err := decodeMatrix(qd.Result, false)
	if err != nil {
		return nil, fmt.Errorf("range query %q: %w", query, err)
	}
	return m, nil
}

func decodeMatrix(raw json.RawMessage, skipHistograms bool) (promql.Matrix, error) {
	var m model.Matrix
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("%w: malformed matrix: %v", ErrUnavailable, err)
	}
	out := make(promql.Matrix, 0, len(m))
	for _, ss := range m {
		if len(ss.Histograms) > 0 && !skipHistograms {
			return nil, errRemoteHistograms
		}
		pts := make([]promql.FPoint, len(ss.Values))
		for i, p := range ss.Values {
			pts[i] = promql.FPoint{T: int64(p.Timestamp), F: float64(p.Value)}
		}
		out = append(out, promql.Series{Metric: metricLabels(ss.Metric), Floats: pts})
	}
	slices.SortFunc(out, func(a, b promql.Series) int { return labels.Compare(a.Metric, b.Metric) })
	return out, nil
}

func metricLabels(m model.Metric) labels.Labels {
	b := labels.NewScratchBuilder(len(m))
	for k, v := range m {
		b.Add(string(k), string(v))
	}
	b.Sort()
	return b.Labels()
}

// Samples implements Source with range-vector instant queries
// ({matchers}[range] evaluated at the end of each chunk), which return raw
// samples from any Prometheus-compatible backend. Prometheus 2 includes a
// sample exactly at the range start and Prometheus 3 does not; samples at
// or before start are dropped, so both give (start, end].
func (r *Remote) Samples(ctx context.Context, matchers []*labels.Matcher, start, end time.Time) (promql.Matrix, error) {
	if len(matchers) == 0 {
		return nil, errors.New("samples: at least one matcher is required")
	}
	sel := selectorString(matchers)
	mint, maxt := timestamp.FromTime(start), timestamp.FromTime(end)
	chunk := r.opts.SamplesChunk.Milliseconds()
	series := map[string]*promql.Series{}
	for lo := mint; lo < maxt; lo += chunk {
		hi := min(lo+chunk, maxt)
		q := fmt.Sprintf("%s[%dms]", sel, hi-lo)
		qd, err := r.query(ctx, "query", url.Values{"query": {q}, "time": {formatMillis(hi)}})
		if err != nil {
			return nil, fmt.Errorf("samples %s: %w", sel, err)
		}
		if qd.ResultType != model.ValMatrix {
			return nil, fmt.Errorf("samples %s: result is a %s, want a matrix", sel, qd.ResultType)
		}
		m, err := decodeMatrix(qd.Result, true)
		if err != nil {
			return nil, fmt.Errorf("samples %s: %w", sel, err)
		}
		for _, s := range m {
			key := s.Metric.String()
			acc, ok := series[key]
			if !ok {
				acc = &promql.Series{Metric: s.Metric}
				series[key] = acc
			}
			for _, p := range s.Floats {
				// Chunks are (lo, hi]; drop the Prometheus 2 sample at lo
				// and anything a backend returns outside.
				if p.T <= lo || p.T > hi {
					continue
				}
				acc.Floats = append(acc.Floats, p)
			}
		}
	}
	out := make(promql.Matrix, 0, len(series))
	for _, s := range series {
		if len(s.Floats) > 0 {
			out = append(out, *s)
		}
	}
	slices.SortFunc(out, func(a, b promql.Series) int { return labels.Compare(a.Metric, b.Metric) })
	return out, nil
}

// selectorString renders matchers as a PromQL selector: {a="b",c=~"d"}.
func selectorString(ms []*labels.Matcher) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, m := range ms {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(m.String())
	}
	b.WriteByte('}')
	return b.String()
}

// Series implements Source.
func (r *Remote) Series(ctx context.Context, selectors []string, start, end time.Time) ([]labels.Labels, error) {
	if len(selectors) == 0 {
		return nil, errors.New("series: at least one selector is required")
	}
	raw, err := r.call(ctx, http.MethodPost, "series", url.Values{
		"match[]": selectors, "start": {formatTime(start)}, "end": {formatTime(end)},
	})
	if err != nil {
		return nil, fmt.Errorf("series: %w", err)
	}
	var ms []model.Metric
	if err := json.Unmarshal(raw, &ms); err != nil {
		return nil, fmt.Errorf("%w: series: malformed result: %v", ErrUnavailable, err)
	}
	out := make([]labels.Labels, 0, len(ms))
	for _, m := range ms {
		out = append(out, metricLabels(m))
	}
	slices.SortFunc(out, labels.Compare)
	return out, nil
}

// LabelNames implements Source.
func (r *Remote) LabelNames(ctx context.Context, start, end time.Time) ([]string, error) {
	out, err := r.strings(ctx, "labels", start, end)
	if err != nil {
		return nil, fmt.Errorf("label names: %w", err)
	}
	return out, nil
}

// LabelValues implements Source.
func (r *Remote) LabelValues(ctx context.Context, name string, start, end time.Time) ([]string, error) {
	if name == "" {
		return nil, errors.New("label values: name is required")
	}
	out, err := r.strings(ctx, "label/"+url.PathEscape(name)+"/values", start, end)
	if err != nil {
		return nil, fmt.Errorf("label values %q: %w", name, err)
	}
	return out, nil
}

func (r *Remote) strings(ctx context.Context, endpoint string, start, end time.Time) ([]string, error) {
	raw, err := r.call(ctx, http.MethodGet, endpoint, url.Values{"start": {formatTime(start)}, "end": {formatTime(end)}})
	if err != nil {
		return nil, err
	}
	var out []string
	if err := json.Unmarshal(bytes.TrimSpace(raw), &out); err != nil {
		return nil, fmt.Errorf("%w: malformed result: %v", ErrUnavailable, err)
	}
	if out == nil {
		out = []string{}
	}
	slices.Sort(out)
	return out, nil
}
