package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/timestamp"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/util/compression"
)

// EmbeddedOptions configures the embedded TSDB. Only Dir is required; the
// zero value of every other field means the Prometheus default.
type EmbeddedOptions struct {
	// Dir is the data directory. It is created if missing and locked
	// while open, so two processes cannot share it.
	Dir string
	// Retention is how long samples are kept (default 15 days, as
	// Prometheus' --storage.tsdb.retention.time).
	Retention time.Duration
	// RetentionBytes caps the size of persisted blocks; 0 means no cap.
	// The WAL and the head are not counted, as in Prometheus.
	RetentionBytes int64
	// WALCompression is "snappy" (default), "zstd" or "none".
	WALCompression string
	// MinBlockDuration is the span of the head before it is compacted into
	// a block (default 2h).
	MinBlockDuration time.Duration
	// MaxBlockDuration bounds compacted blocks (default 10% of Retention,
	// at most 31 days, at least MinBlockDuration, as Prometheus does).
	MaxBlockDuration time.Duration
	// OutOfOrderTimeWindow accepts samples up to this far behind the
	// newest sample of their series (default 0: out-of-order samples are
	// rejected, as Prometheus does unless configured otherwise).
	OutOfOrderTimeWindow time.Duration
	// MaxExemplars is the size, in exemplars, of the circular buffer that
	// keeps the exemplars (trace IDs) attached to samples (default
	// 100,000, Prometheus' storage.exemplars.max_exemplars default when
	// exemplar storage is on). Negative turns exemplar storage off: the
	// receivers then drop exemplars, as Prometheus does by default. The
	// buffer is in memory and replayed from the WAL.
	MaxExemplars int64
	// LookbackDelta is the PromQL lookback for instant vectors (default 5m).
	LookbackDelta time.Duration
	// QueryTimeout bounds every PromQL evaluation (default 2m).
	QueryTimeout time.Duration
	// MaxSamples bounds the samples one query may hold in memory (default
	// 50,000,000, as Prometheus' --query.max-samples).
	MaxSamples int
	// Logger receives TSDB and PromQL engine logs (default: discarded).
	Logger *slog.Logger
	// Registerer receives the TSDB and engine metrics (default: a private
	// registry, so nothing leaks into the global one).
	Registerer prometheus.Registerer
}

// Embedded is the built-in store: a Prometheus TSDB in a local directory
// queried with the Prometheus PromQL engine. It implements Source for the
// engine, storage.AppendableV2 for the receivers, and storage.Queryable for
// the Prometheus-compatible query API.
//
// All methods are safe for concurrent use. Close must be called exactly
// once, after every appender has been committed or rolled back.
type Embedded struct {
	db            *tsdb.DB
	engine        *promql.Engine
	parser        parser.Parser
	lookbackDelta time.Duration
	log           *slog.Logger
	retention     time.Duration
	exemplars     bool // exemplar storage is on
	// appended is what OldestAppended returns next.
	appendedMu sync.Mutex
	appended   map[string]int64
}

var _ Source = (*Embedded)(nil)

// Defaults of EmbeddedOptions, named so docs and the config layer can
// refer to them.
const (
	DefaultRetention     = 15 * 24 * time.Hour
	DefaultBlockDuration = 2 * time.Hour
	DefaultLookbackDelta = 5 * time.Minute
	DefaultQueryTimeout  = 2 * time.Minute
	DefaultMaxSamples    = 50_000_000
	DefaultMaxExemplars  = 100_000
	maxMaxBlockDuration  = 31 * 24 * time.Hour
)

// OpenEmbedded opens (or creates) the TSDB in opts.Dir and replays its WAL,
// so every sample acknowledged before a crash is queryable again.
func OpenEmbedded(opts EmbeddedOptions) (*Embedded, error) {
	if opts.Dir == "" {
		return nil, errors.New("open embedded tsdb: Dir is required")
	}
	if opts.Retention < 0 || opts.RetentionBytes < 0 || opts.MinBlockDuration < 0 ||
		opts.MaxBlockDuration < 0 || opts.OutOfOrderTimeWindow < 0 || opts.LookbackDelta < 0 ||
		opts.QueryTimeout < 0 || opts.MaxSamples < 0 {
		return nil, errors.New("open embedded tsdb: durations and sizes must not be negative")
	}
	if opts.Retention == 0 {
		opts.Retention = DefaultRetention
	}
	if opts.MinBlockDuration == 0 {
		opts.MinBlockDuration = DefaultBlockDuration
	}
	if opts.MaxBlockDuration == 0 {
		// Prometheus: 10% of the retention, capped at 31 days.
		opts.MaxBlockDuration = min(opts.Retention/10, maxMaxBlockDuration)
	}
	opts.MaxBlockDuration = max(opts.MaxBlockDuration, opts.MinBlockDuration)
	if opts.LookbackDelta == 0 {
		opts.LookbackDelta = DefaultLookbackDelta
	}
	if opts.QueryTimeout == 0 {
		opts.QueryTimeout = DefaultQueryTimeout
	}
	if opts.MaxSamples == 0 {
		opts.MaxSamples = DefaultMaxSamples
	}
	if opts.MaxExemplars == 0 {
		opts.MaxExemplars = DefaultMaxExemplars
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	walCompression := compression.Snappy
	switch opts.WALCompression {
	case "", compression.Snappy:
	case compression.Zstd, compression.None:
		walCompression = opts.WALCompression
	default:
		return nil, fmt.Errorf("open embedded tsdb: WALCompression %q: want snappy, zstd or none", opts.WALCompression)
	}

	to := tsdb.DefaultOptions()
	to.RetentionDuration = opts.Retention.Milliseconds()
	to.MaxBytes = opts.RetentionBytes
	to.WALCompression = walCompression
	to.MinBlockDuration = opts.MinBlockDuration.Milliseconds()
	to.MaxBlockDuration = opts.MaxBlockDuration.Milliseconds()
	to.OutOfOrderTimeWindow = opts.OutOfOrderTimeWindow.Milliseconds()
	// Prometheus' own server defaults, which differ from the library's.
	to.EnableOverlappingCompaction = true
	to.EnableDelayedCompaction = false
	// Sharded selects let the engine read one metric's many series on
	// every core (SamplesShard).
	to.EnableSharding = true
	if opts.MaxExemplars > 0 {
		to.EnableExemplarStorage = true
		to.MaxExemplars = opts.MaxExemplars
	}

	log := opts.Logger.With("component", "telemetry.embedded")
	db, err := tsdb.Open(opts.Dir, log, opts.Registerer, to, nil)
	if err != nil {
		return nil, fmt.Errorf("open embedded tsdb %s: %w", opts.Dir, err)
	}
	p := parser.NewParser(parser.Options{})
	engine := promql.NewEngine(promql.EngineOpts{
		Logger:                   log.With("component", "telemetry.promql"),
		Reg:                      opts.Registerer,
		MaxSamples:               opts.MaxSamples,
		Timeout:                  opts.QueryTimeout,
		LookbackDelta:            opts.LookbackDelta,
		EnableAtModifier:         true,
		EnableNegativeOffset:     true,
		Parser:                   p,
		NoStepSubqueryIntervalFn: defaultSubqueryStep,
	})
	return &Embedded{db: db, engine: engine, parser: p, lookbackDelta: opts.LookbackDelta, log: log, retention: opts.Retention, exemplars: opts.MaxExemplars > 0}, nil
}

// defaultSubqueryStep is the step of a subquery written without one
// ("[30m:]"): a fixed minute, as Prometheus' global evaluation_interval
// gives when none is configured. The query limits size subquery grids
// with the same function.
func defaultSubqueryStep(int64) int64 { return time.Minute.Milliseconds() }

// Retention returns how long samples are kept. The receivers refuse
// samples older than this: the TSDB would delete them at the next
// compaction, and accepts any timestamp while its head is empty.
func (e *Embedded) Retention() time.Duration { return e.retention }

// DB returns the underlying TSDB, for callers that need what Source does
// not offer (snapshots, stats). Its lifetime is the Embedded's.
func (e *Embedded) DB() *tsdb.DB { return e.db }

// AppenderV2 returns a new appender on the TSDB. It implements
// storage.AppendableV2, which the receivers write through. Samples are
// durable (in the WAL, in the page cache) once Commit returns nil.
//
// Committed samples are noted by metric name (OldestAppended), so the
// engine knows when samples landed in minutes it has already folded.
func (e *Embedded) AppenderV2(ctx context.Context) storage.AppenderV2 {
	return &watchedAppender{AppenderV2: e.db.AppenderV2(ctx), e: e}
}

// OldestAppended returns, by metric name, the oldest timestamp (ms) of the
// samples committed through AppenderV2 since the previous call.
func (e *Embedded) OldestAppended() map[string]int64 {
	e.appendedMu.Lock()
	defer e.appendedMu.Unlock()
	out := e.appended
	e.appended = nil
	return out
}

// watchedAppender notes the oldest sample of each metric it appends and
// hands them to the Embedded when they are committed.
type watchedAppender struct {
	storage.AppenderV2
	e      *Embedded
	oldest map[string]int64
	// last caches the previous sample's series: receivers append a
	// series' samples one after another.
	lastRef  storage.SeriesRef
	lastName string
}

func (a *watchedAppender) Append(ref storage.SeriesRef, ls labels.Labels, st, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, opts storage.AOptions) (storage.SeriesRef, error) {
	ref, err := a.AppenderV2.Append(ref, ls, st, t, v, h, fh, opts)
	name := a.lastName
	if ref == 0 || ref != a.lastRef {
		name = ls.Get(model.MetricNameLabel)
		a.lastRef, a.lastName = ref, name
	}
	if a.oldest == nil {
		a.oldest = map[string]int64{}
	}
	if old, ok := a.oldest[name]; !ok || t < old {
		a.oldest[name] = t
	}
	return ref, err
}

// AppendExemplars implements storage.ExemplarAppenderV2 for receivers
// that attach exemplars apart from samples (remote_write).
func (a *watchedAppender) AppendExemplars(ref storage.SeriesRef, ls labels.Labels, exs []exemplar.Exemplar) (storage.SeriesRef, error) {
	ea, ok := a.AppenderV2.(storage.ExemplarAppenderV2)
	if !ok {
		return 0, fmt.Errorf("appender %T does not take exemplars", a.AppenderV2)
	}
	return ea.AppendExemplars(ref, ls, exs)
}

func (a *watchedAppender) Commit() error {
	if err := a.AppenderV2.Commit(); err != nil {
		return err
	}
	if len(a.oldest) == 0 {
		return nil
	}
	a.e.appendedMu.Lock()
	defer a.e.appendedMu.Unlock()
	if a.e.appended == nil {
		a.e.appended = make(map[string]int64, len(a.oldest))
	}
	for name, t := range a.oldest {
		if old, ok := a.e.appended[name]; !ok || t < old {
			a.e.appended[name] = t
		}
	}
	return nil
}

// Querier implements storage.Queryable over [mint, maxt] in milliseconds.
func (e *Embedded) Querier(mint, maxt int64) (storage.Querier, error) {
	return e.db.Querier(mint, maxt)
}

// Close flushes nothing (the WAL already holds every committed sample) and
// releases the directory lock. It must be called once.
func (e *Embedded) Close() error {
	if err := e.db.Close(); err != nil {
		return fmt.Errorf("close embedded tsdb: %w", err)
	}
	return nil
}

// Instant implements Source.
func (e *Embedded) Instant(ctx context.Context, query string, ts time.Time) (promql.Vector, error) {
	qry, err := e.engine.NewInstantQuery(ctx, e.db, nil, query, ts)
	if err != nil {
		return nil, fmt.Errorf("instant query %q: %w", query, err)
	}
	defer qry.Close()
	res := qry.Exec(ctx)
	if res.Err != nil {
		return nil, fmt.Errorf("instant query %q: %w", query, queryError(res.Err))
	}
	switch v := res.Value.(type) {
	case promql.Vector:
		return copyVector(v), nil
	case promql.Scalar:
		return promql.Vector{{T: v.T, F: v.V, Metric: labels.EmptyLabels()}}, nil
	default:
		return nil, fmt.Errorf("instant query %q: result is a %s, want a vector or scalar", query, res.Value.Type())
	}
}

// Range implements Source.
func (e *Embedded) Range(ctx context.Context, query string, start, end time.Time, step time.Duration) (promql.Matrix, error) {
	if step <= 0 {
		return nil, fmt.Errorf("range query %q: step %s must be positive", query, step)
	}
	if end.Before(start) {
		return nil, fmt.Errorf("range query %q: end %s is before start %s", query, end, start)
	}
	qry, err := e.engine.NewRangeQuery(ctx, e.db, nil, query, start, end, step)
	if err != nil {
		return nil, fmt.Errorf("range query %q: %w", query, err)
	}
	defer qry.Close()
	res := qry.Exec(ctx)
	if res.Err != nil {
		return nil, fmt.Errorf("range query %q: %w", query, queryError(res.Err))
	}
	m, ok := res.Value.(promql.Matrix)
	if !ok {
		return nil, fmt.Errorf("range query %q: result is a %s, want a matrix", query, res.Value.Type())
	}
	// The engine recycles the points of m on Close.
	return copyMatrix(m), nil
}

// Samples implements Source. It reads the TSDB directly, without PromQL:
// it is the engine's hot path and needs exact raw samples. Staleness
// markers and native histogram samples are skipped.
func (e *Embedded) Samples(ctx context.Context, matchers []*labels.Matcher, start, end time.Time) (promql.Matrix, error) {
	return e.samples(ctx, matchers, start, end, 0, 0)
}

// SamplesShard is Samples for shard index of count disjoint shards of the
// matching series (by a hash of their labels): the engine reads one
// metric's tens of thousands of series on every core at once. Series come
// in no particular order.
func (e *Embedded) SamplesShard(ctx context.Context, matchers []*labels.Matcher, start, end time.Time, index, count uint64) (promql.Matrix, error) {
	if count == 0 || index >= count {
		return nil, fmt.Errorf("samples: shard %d of %d", index, count)
	}
	return e.samples(ctx, matchers, start, end, index, count)
}

func (e *Embedded) samples(ctx context.Context, matchers []*labels.Matcher, start, end time.Time, shard, shards uint64) (promql.Matrix, error) {
	if len(matchers) == 0 {
		return nil, errors.New("samples: at least one matcher is required")
	}
	mint, maxt := timestamp.FromTime(start)+1, timestamp.FromTime(end)
	if maxt < mint {
		return promql.Matrix{}, nil
	}
	q, err := e.db.Querier(mint, maxt)
	if err != nil {
		return nil, fmt.Errorf("samples: %w", err)
	}
	defer q.Close()
	// Without trimming the TSDB hands over whole chunks instead of wrapping
	// each series in an iterator that decodes and drops the samples before
	// mint, and adds no trimming intervals per series: the loop below
	// skips what is outside [mint, maxt] itself.
	hints := &storage.SelectHints{Start: mint, End: maxt, Func: "samples", ShardIndex: shard, ShardCount: shards, DisableTrimming: true}
	set := q.Select(ctx, shards == 0, hints, matchers...)
	var (
		out promql.Matrix
		it  chunkenc.Iterator
		// Series of one selector usually have about as many samples as
		// each other: sizing each slice like the previous one makes one
		// allocation per series instead of one per doubling.
		hint int
	)
	for set.Next() {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("samples: %w", err)
		}
		s := set.At()
		it = s.Iterator(it)
		pts := make([]promql.FPoint, 0, hint)
		for typ := it.Seek(mint); typ != chunkenc.ValNone; typ = it.Next() {
			if typ != chunkenc.ValFloat {
				continue
			}
			t, v := it.At()
			if t > maxt {
				break
			}
			if t < mint || value.IsStaleNaN(v) {
				continue
			}
			pts = append(pts, promql.FPoint{T: t, F: v})
		}
		if err := it.Err(); err != nil {
			return nil, fmt.Errorf("samples: read %s: %w", s.Labels(), err)
		}
		if len(pts) > 0 {
			out = append(out, promql.Series{Metric: s.Labels(), Floats: pts})
			hint = len(pts)
		}
	}
	if err := set.Err(); err != nil {
		return nil, fmt.Errorf("samples: %w", err)
	}
	if out == nil {
		out = promql.Matrix{}
	}
	return out, nil
}

// Series implements Source.
func (e *Embedded) Series(ctx context.Context, selectors []string, start, end time.Time) ([]labels.Labels, error) {
	sets, err := e.parseSelectors(selectors)
	if err != nil {
		return nil, fmt.Errorf("series: %w", err)
	}
	return e.series(ctx, sets, timestamp.FromTime(start), timestamp.FromTime(end), 0)
}

func (e *Embedded) series(ctx context.Context, sets [][]*labels.Matcher, mint, maxt int64, limit int) ([]labels.Labels, error) {
	q, err := e.db.Querier(mint, maxt)
	if err != nil {
		return nil, err
	}
	defer q.Close()
	hints := &storage.SelectHints{Start: mint, End: maxt, Func: "series", Limit: limit}
	var set storage.SeriesSet
	if len(sets) == 1 {
		set = q.Select(ctx, true, hints, sets[0]...)
	} else {
		ss := make([]storage.SeriesSet, 0, len(sets))
		for _, m := range sets {
			ss = append(ss, q.Select(ctx, true, hints, m...))
		}
		set = storage.NewMergeSeriesSet(ss, limit, storage.ChainedSeriesMerge)
	}
	out := []labels.Labels{}
	for set.Next() {
		out = append(out, set.At().Labels())
		if limit > 0 && len(out) >= limit {
			break
		}
	}
	if err := set.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// LabelNames implements Source.
func (e *Embedded) LabelNames(ctx context.Context, start, end time.Time) ([]string, error) {
	names, err := e.labelNames(ctx, nil, timestamp.FromTime(start), timestamp.FromTime(end), 0)
	if err != nil {
		return nil, fmt.Errorf("label names: %w", err)
	}
	return names, nil
}

func (e *Embedded) labelNames(ctx context.Context, sets [][]*labels.Matcher, mint, maxt int64, limit int) ([]string, error) {
	q, err := e.db.Querier(mint, maxt)
	if err != nil {
		return nil, err
	}
	defer q.Close()
	hints := &storage.LabelHints{Limit: limit}
	if len(sets) == 0 {
		names, _, err := q.LabelNames(ctx, hints)
		return nonNil(names), err
	}
	seen := map[string]struct{}{}
	for _, m := range sets {
		names, _, err := q.LabelNames(ctx, hints, m...)
		if err != nil {
			return nil, err
		}
		for _, n := range names {
			seen[n] = struct{}{}
		}
	}
	return sortedKeys(seen, limit), nil
}

// LabelValues implements Source.
func (e *Embedded) LabelValues(ctx context.Context, name string, start, end time.Time) ([]string, error) {
	values, err := e.labelValues(ctx, name, nil, timestamp.FromTime(start), timestamp.FromTime(end), 0)
	if err != nil {
		return nil, fmt.Errorf("label values %q: %w", name, err)
	}
	return values, nil
}

func (e *Embedded) labelValues(ctx context.Context, name string, sets [][]*labels.Matcher, mint, maxt int64, limit int) ([]string, error) {
	q, err := e.db.Querier(mint, maxt)
	if err != nil {
		return nil, err
	}
	defer q.Close()
	hints := &storage.LabelHints{Limit: limit}
	if len(sets) == 0 {
		values, _, err := q.LabelValues(ctx, name, hints)
		return nonNil(values), err
	}
	seen := map[string]struct{}{}
	for _, m := range sets {
		values, _, err := q.LabelValues(ctx, name, hints, m...)
		if err != nil {
			return nil, err
		}
		for _, v := range values {
			seen[v] = struct{}{}
		}
	}
	return sortedKeys(seen, limit), nil
}

// parseSelectors parses series selectors such as `up{job="api"}`.
func (e *Embedded) parseSelectors(selectors []string) ([][]*labels.Matcher, error) {
	if len(selectors) == 0 {
		return nil, errors.New("at least one selector is required")
	}
	sets := make([][]*labels.Matcher, 0, len(selectors))
	for _, s := range selectors {
		m, err := e.parser.ParseMetricSelector(s)
		if err != nil {
			return nil, fmt.Errorf("selector %q: %w", s, err)
		}
		if matchesEverything(m) {
			return nil, fmt.Errorf("selector %q: match[] must contain at least one non-empty matcher", s)
		}
		sets = append(sets, m)
	}
	return sets, nil
}

// matchesEverything reports whether every matcher also matches the empty
// string, which would select every series: Prometheus refuses those.
func matchesEverything(ms []*labels.Matcher) bool {
	for _, m := range ms {
		if !m.Matches("") {
			return false
		}
	}
	return true
}

// queryError marks PromQL errors that mean the store could not answer
// (timeouts, cancellation, storage faults) as ErrUnavailable; everything
// else is a problem with the query.
func queryError(err error) error {
	var (
		timeout  promql.ErrQueryTimeout
		canceled promql.ErrQueryCanceled
		storErr  promql.ErrStorage
	)
	switch {
	case errors.As(err, &timeout), errors.As(err, &canceled), errors.As(err, &storErr),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

func copyVector(v promql.Vector) promql.Vector {
	out := make(promql.Vector, len(v))
	for i, s := range v {
		out[i] = s
		if s.H != nil {
			out[i].H = s.H.Copy()
		}
	}
	return out
}

func copyMatrix(m promql.Matrix) promql.Matrix {
	out := make(promql.Matrix, len(m))
	for i, s := range m {
		out[i] = promql.Series{Metric: s.Metric}
		if len(s.Floats) > 0 {
			out[i].Floats = append([]promql.FPoint(nil), s.Floats...)
		}
		if len(s.Histograms) > 0 {
			hs := make([]promql.HPoint, len(s.Histograms))
			for j, h := range s.Histograms {
				hs[j] = promql.HPoint{T: h.T, H: h.H.Copy()}
			}
			out[i].Histograms = hs
		}
	}
	return out
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// sortedKeys returns the keys of m in order, at most limit of them when
// limit is positive.
func sortedKeys(m map[string]struct{}, limit int) []string {
	out := slices.Sorted(maps.Keys(m))
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}
