// Package telemetry is where samples enter QSP and where the engine reads
// them back: the embedded Prometheus TSDB with its receivers (remote_write,
// OTLP/HTTP, events) and the client for a remote Prometheus-compatible API.
// Both sides of the package meet in the Source interface, so the engine never
// knows which one it talks to.
package telemetry

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
)

// Source answers PromQL and metadata look-ups over stored telemetry.
//
// Implementations are safe for concurrent use by many goroutines. Every
// method honours ctx cancellation and deadlines. Errors that mean the
// backend could not be reached or timed out wrap ErrUnavailable, so callers
// can tell "the source is down" (no_data for every SLO, one alert) from "this
// query is wrong" (an error on one SLO).
type Source interface {
	// Instant evaluates query at ts. Scalar results are returned as a
	// one-element vector without labels.
	Instant(ctx context.Context, query string, ts time.Time) (promql.Vector, error)
	// Range evaluates query at every step in [start, end].
	Range(ctx context.Context, query string, start, end time.Time, step time.Duration) (promql.Matrix, error)
	// Samples returns the raw float samples of every series that matches
	// all matchers, with timestamps in (start, end]. Series are sorted by
	// labels and samples by time; series without samples in the range are
	// left out. Staleness markers and native histogram samples are not
	// returned. This is what exact per-minute counter increases are
	// computed from, in both embedded and remote mode.
	Samples(ctx context.Context, matchers []*labels.Matcher, start, end time.Time) (promql.Matrix, error)
	// Series returns the label sets of series matching any of the selectors
	// in [start, end].
	Series(ctx context.Context, selectors []string, start, end time.Time) ([]labels.Labels, error)
	// LabelNames returns the label names in use in [start, end].
	LabelNames(ctx context.Context, start, end time.Time) ([]string, error)
	// LabelValues returns the values of label name in [start, end].
	LabelValues(ctx context.Context, name string, start, end time.Time) ([]string, error)
}

// ErrUnavailable marks errors that mean the source itself is unreachable,
// overloaded or timed out, as opposed to a bad query.
var ErrUnavailable = errors.New("telemetry source unavailable")
