// Command spanmetricsref runs the OpenTelemetry Collector's spanmetrics
// connector on an OTLP traces request and writes what it emits, so QSP's
// tests and benchmarks can compare QSP's span metrics with the reference.
//
// It is its own module because the connector (through the collector's
// confmap) needs github.com/gobwas/glob v0.2.3, while OPA, in QSP's module,
// needs v1.1.0, whose API differs: both cannot be built into one binary.
//
//	spanmetricsref -dims http.route=none,http.response.status_code -unit ms < traces.pb > metrics.pb
//	spanmetricsref -bench 2s -dims ... < traces.pb   # prints spans/s and bytes per series
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/open-telemetry/opentelemetry-collector-contrib/connector/spanmetricsconnector"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/connector"
	"go.opentelemetry.io/collector/connector/connectortest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
)

func main() {
	if err := run(os.Stdin, os.Stdout, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "spanmetricsref:", err)
		os.Exit(2)
	}
}

const flushInterval = time.Minute

func run(stdin io.Reader, stdout io.Writer, args []string) error {
	fs := flag.NewFlagSet("spanmetricsref", flag.ContinueOnError)
	dims := fs.String("dims", "", "dimensions, comma-separated name or name=default")
	unit := fs.String("unit", "ms", "histogram unit: ms or s")
	bench := fs.Duration("bench", 0, "consume the spans repeatedly for this long and print the throughput")
	if err := fs.Parse(args); err != nil {
		return err
	}
	body, err := io.ReadAll(stdin)
	if err != nil {
		return fmt.Errorf("read stdin: %w", err)
	}
	req := ptraceotlp.NewExportRequest()
	if err := req.UnmarshalProto(body); err != nil {
		return fmt.Errorf("decode traces: %w", err)
	}
	td := req.Traces()

	f := spanmetricsconnector.NewFactory()
	cfg := f.CreateDefaultConfig().(*spanmetricsconnector.Config)
	for d := range strings.SplitSeq(*dims, ",") {
		if d == "" {
			continue
		}
		name, def, ok := strings.Cut(d, "=")
		dim := spanmetricsconnector.Dimension{Name: name}
		if ok {
			dim.Default = &def
		}
		cfg.Dimensions = append(cfg.Dimensions, dim)
	}
	// A collector adds its instance ID; QSP has none to add.
	cfg.ExcludeDimensions = []string{"collector.instance.id"}
	cfg.MetricsFlushInterval = flushInterval
	switch *unit {
	case "ms":
	case "s":
		cfg.Histogram.Unit = 1 // metrics.Seconds
	default:
		return fmt.Errorf("unit %q: want ms or s", *unit)
	}
	// Started two intervals ago, so the second flush is stamped now.
	clock := clockwork.NewFakeClockAt(time.Now().Add(-2 * flushInterval))
	ctx := clockwork.AddToContext(context.Background(), clock)
	sink := &consumertest.MetricsSink{}
	conn, err := f.CreateTracesToMetrics(ctx, connectortest.NewNopSettings(component.MustNewType("spanmetrics")), cfg, sink)
	if err != nil {
		return fmt.Errorf("create connector: %w", err)
	}
	if err := conn.Start(ctx, componenttest.NewNopHost()); err != nil {
		return fmt.Errorf("start connector: %w", err)
	}
	defer conn.Shutdown(ctx)

	if *bench > 0 {
		return runBench(ctx, stdout, conn, td, *bench)
	}
	if err := conn.ConsumeTraces(ctx, td); err != nil {
		return fmt.Errorf("consume: %w", err)
	}
	// The first flush writes a new cumulative sum as 0 (so that rate()
	// sees its first increase); the second has the counts.
	if _, err := flush(clock, sink); err != nil {
		return err
	}
	md, err := flush(clock, sink)
	if err != nil {
		return err
	}
	out, err := pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()
	if err != nil {
		return fmt.Errorf("encode metrics: %w", err)
	}
	_, err = stdout.Write(out)
	return err
}

// flush advances the fake clock past the flush interval and waits for the
// connector's export.
func flush(clock *clockwork.FakeClock, sink *consumertest.MetricsSink) (pmetric.Metrics, error) {
	before := len(sink.AllMetrics())
	if err := clock.BlockUntilContext(context.Background(), 1); err != nil {
		return pmetric.Metrics{}, err
	}
	clock.Advance(flushInterval)
	for i := 0; len(sink.AllMetrics()) == before; i++ {
		if i > 1000 {
			return pmetric.Metrics{}, errors.New("connector did not flush within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	all := sink.AllMetrics()
	return all[len(all)-1], nil
}

// runBench consumes td repeatedly for d and prints spans per second, and
// the heap per series once all series exist.
func runBench(ctx context.Context, stdout io.Writer, conn connector.Traces, td ptrace.Traces, d time.Duration) error {
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	if err := conn.ConsumeTraces(ctx, td); err != nil {
		return err
	}
	runtime.GC()
	runtime.ReadMemStats(&m1)
	n := 0
	start := time.Now()
	for time.Since(start) < d {
		if err := conn.ConsumeTraces(ctx, td); err != nil {
			return err
		}
		n++
	}
	el := time.Since(start)
	spans := n * td.SpanCount()
	fmt.Fprintf(stdout, "spans_per_sec %.0f\nns_per_span %.1f\nheap_bytes_after_first_batch %d\n",
		float64(spans)/el.Seconds(), float64(el.Nanoseconds())/float64(spans), int64(m1.HeapAlloc)-int64(m0.HeapAlloc))
	return nil
}
