package telemetry

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/value"
)

func TestOpenEmbeddedOptions(t *testing.T) {
	for _, o := range []EmbeddedOptions{
		{},
		{Dir: t.TempDir(), WALCompression: "lz4"},
		{Dir: t.TempDir(), Retention: -time.Hour},
	} {
		if e, err := OpenEmbedded(o); err == nil {
			e.Close()
			t.Errorf("OpenEmbedded(%+v) accepted", o)
		}
	}
	// The directory is locked while open.
	dir := t.TempDir()
	e, err := OpenEmbedded(EmbeddedOptions{Dir: dir, WALCompression: "zstd", Retention: 24 * time.Hour, OutOfOrderTimeWindow: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if e2, err := OpenEmbedded(EmbeddedOptions{Dir: dir}); err == nil {
		e2.Close()
		t.Error("a second OpenEmbedded on an open directory succeeded")
	}
	// With an out-of-order window, late samples are accepted.
	at := time.Now().UnixMilli()
	appendSamples(t, e, mustLabels("__name__", "ooo"), [2]float64{float64(at), 2}, [2]float64{float64(at - 60_000), 1})
	if got := rawSamples(t, e, "ooo", ms(at-120_000), ms(at)); len(got) != 1 || len(got[0].Floats) != 2 {
		t.Errorf("out-of-order window: %s", got)
	}
}

func TestEmbeddedSource(t *testing.T) {
	e := openTestDB(t)
	ctx := context.Background()
	const t0 = 1_700_000_000_000
	appendSamples(t, e, mustLabels("__name__", "c", "job", "a"), [2]float64{t0, 1}, [2]float64{t0 + 60_000, 5}, [2]float64{t0 + 120_000, math.Float64frombits(value.StaleNaN)})
	appendSamples(t, e, mustLabels("__name__", "c", "job", "b"), [2]float64{t0, 7})

	v, err := e.Instant(ctx, `sum(c)`, ms(t0+60_000))
	if err != nil || len(v) != 1 || v[0].F != 12 {
		t.Errorf("instant sum = %v, %v; want 12", v, err)
	}
	v, err = e.Instant(ctx, `scalar(sum(c))`, ms(t0))
	if err != nil || len(v) != 1 || v[0].F != 8 || !v[0].Metric.IsEmpty() {
		t.Errorf("instant scalar = %v, %v; want one unlabelled 8", v, err)
	}
	if _, err := e.Instant(ctx, `c[5m]`, ms(t0)); err == nil || !strings.Contains(err.Error(), "want a vector or scalar") {
		t.Errorf("range vector as instant: %v", err)
	}
	// A wrong query is the query's fault, not the store's.
	if _, err := e.Instant(ctx, `sum(`, ms(t0)); err == nil || errors.Is(err, ErrUnavailable) {
		t.Errorf("bad query: %v", err)
	}
	// A cancelled context is the store not answering.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := e.Range(cctx, `c`, ms(t0), ms(t0+60_000), time.Second); !errors.Is(err, ErrUnavailable) {
		t.Errorf("cancelled range: %v, want ErrUnavailable", err)
	}

	m1, err := e.Range(ctx, `c{job="a"}`, ms(t0), ms(t0+60_000), 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	want := "{__name__=\"c\", job=\"a\"} =>\n1 @[1700000000000]\n1 @[1700000030000]\n5 @[1700000060000]"
	// Results must not share memory the engine recycles: run more queries
	// and check m1 again.
	for range 3 {
		if _, err := e.Range(ctx, `c{job="b"}`, ms(t0), ms(t0+60_000), 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if m1.String() != want {
		t.Errorf("range:\n%s\nwant:\n%s", m1, want)
	}
	if _, err := e.Range(ctx, `c`, ms(t0), ms(t0), 0); err == nil {
		t.Error("zero step accepted")
	}

	// Samples skips the staleness marker.
	got := rawSamples(t, e, `{__name__="c"}`, ms(t0-1), ms(t0+120_000))
	if got.String() != "{__name__=\"c\", job=\"a\"} =>\n1 @[1700000000000]\n5 @[1700000060000]\n{__name__=\"c\", job=\"b\"} =>\n7 @[1700000000000]" {
		t.Errorf("samples:\n%s", got)
	}
	if _, err := e.Samples(ctx, nil, ms(t0), ms(t0)); err == nil {
		t.Error("Samples without matchers accepted")
	}

	ls, err := e.Series(ctx, []string{`c{job="b"}`, `c{job="a"}`}, ms(t0), ms(t0+60_000))
	if err != nil || len(ls) != 2 || ls[0].Get("job") != "a" {
		t.Errorf("series = %v, %v", ls, err)
	}
	if _, err := e.Series(ctx, []string{`{job=~".*"}`}, ms(t0), ms(t0)); err == nil {
		t.Error("match-everything selector accepted")
	}
	names, err := e.LabelNames(ctx, ms(t0), ms(t0+60_000))
	if err != nil || strings.Join(names, ",") != "__name__,job" {
		t.Errorf("label names = %v, %v", names, err)
	}
	values, err := e.LabelValues(ctx, "job", ms(t0), ms(t0+60_000))
	if err != nil || strings.Join(values, ",") != "a,b" {
		t.Errorf("label values = %v, %v", values, err)
	}
	if values, err := e.LabelValues(ctx, "nope", ms(t0), ms(t0)); err != nil || values == nil || len(values) != 0 {
		t.Errorf("unknown label: %v, %v; want an empty list", values, err)
	}
}
