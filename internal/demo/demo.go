// Package demo is qsp demo: the whole product on embedded defaults, fed by
// a traffic simulator instead of real services. It writes 30 days of
// simulated history for three services (checkout, search, auth) straight
// into the embedded TSDB, starts the app (internal/app) on the example
// specs, streams live samples through the app's real remote_write
// receiver over loopback, and replays a schedule of incidents that real
// services have (scenarios.go). Each scenario states what QSP should do
// about it (alert, incident, gate verdict, playbook run, no_data); the
// demo watches the app's store and engine for it and summarizes time to
// detect and actions at the end. Remediation is real too: the playbooks
// call a fake platform API the demo serves on loopback, and those calls
// end the simulated faults.
//
// Time is simulated (Clock): the app and the simulator share a clock that
// runs Speed times faster than the wall clock.
package demo

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/qsp-dev/qsp/examples"
	"github.com/qsp-dev/qsp/internal/api"
	"github.com/qsp-dev/qsp/internal/app"
	"github.com/qsp-dev/qsp/internal/progress"
	"github.com/qsp-dev/qsp/internal/spec"
	"github.com/qsp-dev/qsp/internal/telemetry"
)

// Options configure a demo run. DataDir is required.
// DefaultTraceURL links the demo's trace IDs to Jaeger's default UI.
const DefaultTraceURL = "http://127.0.0.1:16686/trace/{{.TraceID}}"

type Options struct {
	// DataDir holds the TSDB, the database and the specs. History is
	// written only into a data directory without a TSDB.
	DataDir string
	// Listen is the dashboard and API address. Default 127.0.0.1:8080.
	Listen string
	// Listener, if set, is served instead of Listen (tests).
	Listener net.Listener
	// PlatformListener serves the fake platform API the playbooks call.
	// Default 127.0.0.1:9099 (the examples' URLs), or a free port when
	// that is taken (the specs are rewritten to match).
	PlatformListener net.Listener
	// Speed is simulated seconds per wall-clock second. Default 1.
	Speed float64
	// Scenarios names the scenarios to run, in order; default all.
	Scenarios []string
	// Once runs the scenarios once and returns; otherwise they repeat
	// until ctx ends or Duration passes.
	Once bool
	// Duration bounds the live part in wall-clock time; 0 is no bound.
	Duration time.Duration
	// History is how much simulated history to write. Default 30 days.
	History time.Duration
	// Warmup is the quiet simulated time before the first scenario, and
	// Quiet the time after each fault ends before the next scenario.
	// Default no warmup, so that the first scenario (the payment
	// outage) pages within 90 seconds of the dashboard being ready at
	// the default speed, and 20m of quiet.
	Warmup, Quiet time.Duration
	// Webhooks are alerting webhooks the app notifies (tests, or a
	// visitor's own receiver).
	Webhooks []string
	// TraceURL is the template of the link of a trace ID the incidents,
	// alerts and verdicts show (traces.urlTemplate). Default
	// DefaultTraceURL; "-" shows trace IDs without links.
	TraceURL string
	// Start is the simulated time the live part starts at. Default now.
	Start time.Time
	// Seed seeds the simulator. Default 1.
	Seed uint64
	// Out receives progress and the scenarios' course (default
	// discarded); Logger the app's logs.
	Out    io.Writer
	Logger *slog.Logger
	// OnReady is called with the dashboard URL once it serves data.
	OnReady func(url string)
	// During, if set, is called once per scenario in the middle of it:
	// after the expected alert fired and an open incident holds it (or
	// two simulated minutes after the alert, for a trouble that opened
	// none), while the fault still lasts. The simulated clock stands
	// still during the call, so that what the call looks at (the pages,
	// the API) is the scenario at one moment however long it takes; the
	// scenario goes on afterwards. It is for tests of what the pages show
	// during an incident.
	During func(ctx context.Context, m Moment)
}

// Moment is a scenario in progress, as Options.During sees it. Times
// are simulated.
type Moment struct {
	URL      string
	Scenario Scenario
	// Started is when the fault began, DetectedAt when the expected
	// alert fired and At the clock's time, standing still for the call.
	Started, DetectedAt, At time.Time
	// Service is the expected SLO's service; Incidents the open
	// incidents that hold the expected alert.
	Service   string
	Incidents []int64
}

// Summary is what a demo run did: its setup figures and the result of
// every scenario run.
type Summary struct {
	URL   string  `json:"url"`
	Speed float64 `json:"speed"`
	// HistorySamples were written in HistoryWrite (wall time); Ready is
	// the wall time from the start until the dashboard served data.
	HistorySamples int64         `json:"historySamples"`
	HistoryWrite   time.Duration `json:"historyWrite"`
	// PastIncidents are the incidents of the history recorded in the
	// store.
	PastIncidents int           `json:"pastIncidents"`
	Backfill      time.Duration `json:"backfill"`
	Ready         time.Duration `json:"ready"`
	// Start and End are the simulated times of the live part.
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// SamplesSent reached QSP; SamplesLost did not (collector down).
	SamplesSent int64     `json:"samplesSent"`
	SamplesLost int64     `json:"samplesLost"`
	Results     []*Result `json:"results"`
}

// Run runs the demo until ctx ends, Duration passes, or (Once) every
// scenario ran, and returns what happened. The app is stopped before Run
// returns; DataDir is left in place.
func Run(ctx context.Context, opts Options) (*Summary, error) {
	began := time.Now()
	if opts.DataDir == "" {
		return nil, errors.New("demo: no data directory")
	}
	if opts.Speed < 0 || opts.Duration < 0 || opts.History < 0 || opts.Warmup < 0 || opts.Quiet < 0 {
		return nil, errors.New("demo: speed, duration, history, warmup and quiet must not be negative")
	}
	opts.Speed = cmp.Or(opts.Speed, 1)
	opts.Listen = cmp.Or(opts.Listen, app.DefaultListen)
	opts.History = cmp.Or(opts.History, 30*day)
	opts.Quiet = cmp.Or(opts.Quiet, 20*time.Minute)
	opts.Seed = cmp.Or(opts.Seed, 1)
	if opts.Start.IsZero() {
		opts.Start = time.Now()
	}
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	scenarios, err := selectScenarios(opts.Scenarios)
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	out := &syncWriter{w: opts.Out}
	tsdbDir := filepath.Join(opts.DataDir, "tsdb")
	_, statErr := os.Stat(tsdbDir)
	reuse := statErr == nil
	if reuse {
		// A kept data directory (--data-dir, --keep) may hold samples up
		// to a simulated future (an earlier run at high speed): continue
		// after them, or the TSDB would refuse every live sample.
		newest, err := newestSample(tsdbDir)
		if err != nil {
			return nil, fmt.Errorf("demo: %w", err)
		}
		// Start is truncated to 5 minutes below: 6 leave a minute.
		if next := newest.Add(6 * time.Minute); next.After(opts.Start) {
			opts.Start = next
		}
	}
	// History ends on a 5-minute boundary and the clock stands a settle
	// period and a bit past it during the backfill, so that the engine's
	// last backfill chunk ends on whole 5-minute slices: a time-slice SLO
	// holds a partial tail slice (and with it the whole chunk) until it
	// completes. The live stream starts where history ends.
	start := opts.Start.Truncate(5 * time.Minute)
	eval := evaluationConfig(opts.Speed)
	clock := NewClock(start.Add(eval.Settle.D()+30*time.Second), opts.Speed, nil)
	sim := NewSimulator(opts.Seed)
	sum := &Summary{Speed: opts.Speed, Start: start}

	// The platform API first: the specs name its address.
	pl := opts.PlatformListener
	if pl == nil {
		if pl, err = net.Listen("tcp", DefaultPlatformAddr); err != nil {
			if pl, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
				return nil, fmt.Errorf("demo: platform api: %w", err)
			}
		}
	}
	token, err := randomToken()
	if err != nil {
		pl.Close()
		return nil, err
	}
	platform := newPlatform(sim, clock, pl, token, opts.Logger)
	specsDir, secretsDir, err := writeSpecs(opts.DataDir, platform.URL(), token)
	if err != nil {
		pl.Close()
		return nil, err
	}

	if !reuse {
		fmt.Fprintf(out, "writing %s of simulated history for checkout, search and auth ...\n", formatDays(opts.History))
		n, err := WriteHistory(ctx, sim, tsdbDir, start.Add(-opts.History), start, BlockSize(min(app.DefaultRetention/10, 31*day)), historyPrinter(out))
		if err != nil {
			pl.Close()
			return nil, fmt.Errorf("demo: %w", err)
		}
		sum.HistorySamples, sum.HistoryWrite = n, time.Since(began)
	} else {
		fmt.Fprintf(out, "%s already has a TSDB: keeping its history\n", opts.DataDir)
	}

	cfg := &app.Config{
		Listen: opts.Listen, DataDir: opts.DataDir, Specs: []string{specsDir},
		// The demo runs on a laptop for one person: the UI approves
		// playbook runs and acknowledges incidents without a token.
		Auth:       app.AuthConfig{InsecureAnonymousAdmin: true},
		Evaluation: eval,
		Playbooks:  app.PlaybookConfig{Allowlist: []string{platform.URL() + "/api/v1/"}, SecretsDir: secretsDir},
	}
	// The demo's bad events carry trace IDs: link them to a local Jaeger's
	// UI, where a visitor running one finds them.
	switch opts.TraceURL {
	case "":
		cfg.Traces.URLTemplate = DefaultTraceURL
	case "-":
	default:
		cfg.Traces.URLTemplate = opts.TraceURL
	}
	for i, u := range opts.Webhooks {
		cfg.Alerting.Webhooks = append(cfg.Alerting.Webhooks, app.WebhookConfig{Name: fmt.Sprintf("demo-%d", i), URL: u})
	}
	backfillStart := time.Now()
	a, err := app.New(ctx, app.Options{Config: cfg, Logger: opts.Logger, Progress: progress.Backfill(out), Now: clock.Now, Listener: opts.Listener})
	if err != nil {
		pl.Close()
		return nil, fmt.Errorf("demo: %w", err)
	}
	url := "http://" + a.Addr()
	sum.URL = url
	if !reuse {
		// The records of the past incidents go in before the dashboard
		// serves: its incidents, report and postmortem pages have
		// content from the first second.
		if sum.PastIncidents, err = seedHistory(ctx, a.Store(), a.Specs(), start, opts.History); err != nil {
			pl.Close()
			return nil, fmt.Errorf("demo: %w", err)
		}
	}
	appCtx, stopApp := context.WithCancel(context.Background())
	defer stopApp()
	appDone := make(chan error, 1)
	go func() { appDone <- a.Run(appCtx) }()
	stop := func() error {
		stopApp()
		return <-appDone
	}

	// Serve traffic only once the backfill is done: the clock stands
	// still until then, so the live part starts where history ends.
	for !a.Engine().Ready() {
		select {
		case <-ctx.Done():
			pl.Close()
			return sum, stop()
		case err := <-appDone:
			pl.Close()
			return sum, fmt.Errorf("demo: app: %w", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	sum.Backfill = time.Since(backfillStart)
	if opts.Warmup == 0 && len(scenarios) > 0 {
		// Without warmup the first fault is in force from the first live
		// sample on (the runner starts it again, which changes nothing),
		// not from whenever the runner gets to it after the streamer's
		// first batch: the first live minute is bad in full, and pages
		// as soon as it is folded.
		scenarios[0].Start(sim)
	}
	clock.Start()
	liveCtx, stopLive := context.WithCancel(ctx)
	defer stopLive()
	if opts.Duration > 0 {
		liveCtx, stopLive = context.WithTimeout(liveCtx, opts.Duration)
		defer stopLive()
	}
	st := newStreamer(sim, clock, url, start, opts.Logger)
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Add(2)
	go func() { defer wg.Done(); errs <- st.run(liveCtx) }()
	go func() { defer wg.Done(); errs <- platform.run(liveCtx) }()
	sum.Ready = time.Since(began)
	fmt.Fprintf(out, "dashboard: %s (ready %.1fs after start; %gx speed)\n", url, sum.Ready.Seconds(), opts.Speed)
	if opts.OnReady != nil {
		opts.OnReady(url)
	}

	client := &api.Client{Base: url, HTTP: &http.Client{Timeout: 2 * time.Minute}}
	runner := &scenarioRunner{
		sim: sim, clock: clock, store: a.Store(), engine: a.Engine(), specs: a.Specs, api: client, platform: platform,
		logger: opts.Logger.With("component", "demo.scenarios"), out: out, quiet: opts.Quiet, url: url, during: opts.During,
		playbooks: hasRoute(liveCtx, client, "/api/v1/playbooks"),
	}
	runner.approve = approver(client)
	if clock.SleepUntil(liveCtx, clock.Now().Add(opts.Warmup)) == nil {
	loop:
		for {
			for _, sc := range scenarios {
				res := runner.run(liveCtx, sc)
				sum.Results = append(sum.Results, res)
				if liveCtx.Err() != nil {
					break loop
				}
			}
			if opts.Once {
				break
			}
		}
	}
	stopLive()
	wg.Wait()
	close(errs)
	sum.End = clock.Now()
	sum.SamplesSent, sum.SamplesLost = st.sent.Load(), st.dropped.Load()
	var errList []error
	for err := range errs {
		if err != nil {
			errList = append(errList, err)
		}
	}
	if err := stop(); err != nil {
		errList = append(errList, fmt.Errorf("app: %w", err))
	}
	if err := errors.Join(errList...); err != nil {
		return sum, fmt.Errorf("demo: %w", err)
	}
	return sum, nil
}

// newestSample returns the time of the newest sample in a TSDB directory.
func newestSample(dir string) (time.Time, error) {
	db, err := telemetry.OpenEmbedded(telemetry.EmbeddedOptions{Dir: dir, Retention: app.DefaultRetention})
	if err != nil {
		return time.Time{}, err
	}
	defer db.Close()
	maxT := db.DB().Head().MaxTime()
	for _, b := range db.DB().Blocks() {
		maxT = max(maxT, b.Meta().MaxTime-1)
	}
	if maxT <= 0 || maxT == math.MinInt64 {
		return time.Time{}, nil
	}
	return time.UnixMilli(maxT).UTC(), nil
}

// evaluationConfig shrinks the engine's interval with the speed, so that
// a cycle still covers about 15 simulated seconds (at least 100ms of wall
// time), and stretches settle and persistence so that they keep their
// wall-clock meaning: batches in flight arrive before a minute is folded,
// and rollups are not written many times a second.
func evaluationConfig(speed float64) app.EvaluationConfig {
	interval := min(max(time.Duration(float64(15*time.Second)/speed), 100*time.Millisecond), 15*time.Second)
	// A batch covers batchEvery of simulated time, or 20ms of wall time.
	batch := max(batchEvery, time.Duration(float64(20*time.Millisecond)*speed))
	return app.EvaluationConfig{
		Interval:        spec.Duration(interval),
		Settle:          spec.Duration(max(30*time.Second, LiveStep+3*batch)),
		PersistInterval: spec.Duration(max(5*time.Minute, time.Duration(float64(5*time.Second)*speed))),
	}
}

// writeSpecs writes the embedded examples into dir/specs, pointing the
// playbooks at the platform API, and the secret they use into
// dir/secrets.
func writeSpecs(dir, platformURL, token string) (specsDir, secretsDir string, err error) {
	specsDir, secretsDir = filepath.Join(dir, "specs"), filepath.Join(dir, "secrets")
	err = fs.WalkDir(examples.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		target := filepath.Join(specsDir, filepath.FromSlash(path))
		if d.IsDir() {
			return os.MkdirAll(target, 0o750)
		}
		data, err := examples.FS.ReadFile(path)
		if err != nil {
			return err
		}
		data = []byte(strings.ReplaceAll(string(data), "http://"+DefaultPlatformAddr, platformURL))
		return os.WriteFile(target, data, 0o640)
	})
	if err != nil {
		return "", "", fmt.Errorf("demo: write specs: %w", err)
	}
	if err := os.MkdirAll(secretsDir, 0o700); err != nil {
		return "", "", fmt.Errorf("demo: secrets: %w", err)
	}
	if err := os.WriteFile(filepath.Join(secretsDir, "ROLLOUTS_TOKEN"), []byte(token), 0o600); err != nil {
		return "", "", fmt.Errorf("demo: secrets: %w", err)
	}
	return specsDir, secretsDir, nil
}

func randomToken() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("demo: token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// hasRoute reports whether the app serves GET path.
func hasRoute(ctx context.Context, c *api.Client, path string) bool {
	return c.Do(ctx, http.MethodGet, path, nil, nil) == nil
}

// approver approves playbook runs waiting for approval through the API,
// as the on-call would.
func approver(c *api.Client) func(ctx context.Context, run PlaybookResult) error {
	return func(ctx context.Context, run PlaybookResult) error {
		body := map[string]any{"by": "demo on-call", "note": "approved by the demo"}
		return c.Do(ctx, http.MethodPost, "/api/v1/playbooks/runs/"+run.ID+"/approve", body, nil)
	}
}

// historyPrinter prints history progress, at most once a second.
func historyPrinter(w io.Writer) func(HistoryProgress) {
	p := progress.New(w)
	return func(h HistoryProgress) {
		state := "history"
		if h.Finished {
			state = "history written"
		}
		p.Line(state, int64(h.Done), int64(h.Total), progress.Count(h.Samples)+" samples", h.Finished)
	}
}

func formatDays(d time.Duration) string {
	if d%day == 0 {
		return fmt.Sprintf("%d days", d/day)
	}
	return formatDuration(d)
}

// syncWriter serializes writes from the demo's goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
