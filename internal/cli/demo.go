package cli

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/qsp-dev/qsp/internal/demo"
	"github.com/qsp-dev/qsp/internal/spec"
)

// envDemoTraceURL defaults demo --trace-url.
const envDemoTraceURL = "QSP_DEMO_TRACE_URL"

// demoFlags are the flags of qsp demo.
type demoFlags struct {
	dataDir  string
	keep     bool
	listen   string
	open     bool
	speed    float64
	scenario string
	once     bool
	duration time.Duration
	history  string
	logLevel string
	traceURL string
}

func newDemoCommand() *cobra.Command {
	var f demoFlags
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the controller with simulated traffic and incidents",
		Long: `demo runs QSP on embedded defaults (TSDB and SQLite in a temporary data
directory) with the example specs, writes 30 days of simulated history for
three services (checkout, search, auth), streams live traffic through the
remote_write receiver and replays incidents real services have:

  ` + strings.Join(demo.ScenarioNames(), ", ") + `

Each is detected, alerted, gated or remediated by QSP; at exit (Ctrl-C,
--duration or --once) a summary lists each scenario with its time to
detect and what QSP did, and the exit status is 1 if QSP did not handle a
scenario as designed. --speed 60 makes an hour of simulated time pass in a
minute.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDemo(cmd, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.dataDir, "data-dir", "", "data directory (default a temporary directory, removed at exit unless --keep)")
	fl.BoolVar(&f.keep, "keep", false, "keep the temporary data directory at exit")
	fl.StringVar(&f.listen, "listen", envOr(envListen, "127.0.0.1:8080"), "dashboard and API address (default $"+envListen+" or 127.0.0.1:8080)")
	fl.BoolVar(&f.open, "open", false, "open the dashboard in a browser (xdg-open)")
	fl.Float64Var(&f.speed, "speed", 1, "simulated seconds per second (60: an hour a minute)")
	fl.StringVar(&f.scenario, "scenario", "", "run only this scenario: "+strings.Join(demo.ScenarioNames(), ", "))
	fl.BoolVar(&f.once, "once", false, "run the scenarios once and exit, instead of repeating them")
	fl.DurationVar(&f.duration, "duration", 0, "stop after this much wall-clock time (default: until Ctrl-C)")
	fl.StringVar(&f.history, "history", "30d", "simulated history to write before starting")
	fl.StringVar(&f.traceURL, "trace-url", envOr(envDemoTraceURL, demo.DefaultTraceURL), "template of the link of a trace ID in incidents, e.g. a Jaeger UI; - for none (default $"+envDemoTraceURL+" or Jaeger's default UI)")
	fl.StringVar(&f.logLevel, "log-level", "warn", "log level of the controller: debug, info, warn or error")
	return cmd
}

func runDemo(cmd *cobra.Command, f demoFlags) error {
	out, errOut := cmd.OutOrStdout(), cmd.ErrOrStderr()
	if f.speed <= 0 {
		return fmt.Errorf("--speed: %v must be positive", f.speed)
	}
	var history spec.Duration
	if err := history.UnmarshalText([]byte(f.history)); err != nil {
		return fmt.Errorf("--history: %w", err)
	}
	var scenarios []string
	if f.scenario != "" {
		scenarios = []string{f.scenario}
	}
	logger, err := newLogger(errOut, f.logLevel, "text")
	if err != nil {
		return err
	}
	dir := f.dataDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "qsp-demo-"); err != nil {
			return fmt.Errorf("data dir: %w", err)
		}
		if f.keep {
			fmt.Fprintf(out, "data directory: %s (kept at exit)\n", dir)
		} else {
			defer os.RemoveAll(dir)
		}
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sum, err := demo.Run(ctx, demo.Options{
		DataDir: dir, Listen: f.listen, Speed: f.speed, Scenarios: scenarios, Once: f.once,
		Duration: f.duration, History: history.D(), Out: out, Logger: logger, TraceURL: f.traceURL,
		OnReady: func(url string) {
			fmt.Fprintf(out, "open %s to see it; Ctrl-C stops the demo and prints the summary\n", url)
			if f.open {
				openBrowser(ctx, url, errOut)
			}
		},
	})
	switch {
	case sum == nil:
	case len(sum.Results) > 0:
		fmt.Fprintln(out)
		if werr := sum.WriteTable(out); werr != nil && err == nil {
			err = werr
		}
		// A scenario QSP did not handle as designed fails the command,
		// so that `qsp demo --once` works as a smoke test.
		for _, r := range sum.Results {
			if !r.OK() && err == nil {
				err = errCheckFailed
			}
		}
	case !sum.Start.IsZero() && sum.URL != "":
		fmt.Fprintln(out, "no scenario started yet: the first starts as soon as the dashboard is ready")
	}
	return err
}

// openBrowser launches the desktop's browser when xdg-open exists.
func openBrowser(ctx context.Context, url string, errOut interface{ Write([]byte) (int, error) }) {
	path, err := exec.LookPath("xdg-open")
	if err != nil {
		fmt.Fprintf(errOut, "--open: xdg-open not found; open %s yourself\n", url)
		return
	}
	c := exec.CommandContext(ctx, path, url)
	if err := c.Start(); err != nil {
		fmt.Fprintf(errOut, "--open: %v\n", err)
		return
	}
	go func() { _ = c.Wait() }()
}
