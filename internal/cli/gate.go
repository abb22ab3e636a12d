package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/qsp-dev/qsp/internal/api"
	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/gate"
	"github.com/qsp-dev/qsp/internal/policy"
	"github.com/qsp-dev/qsp/internal/spec"
	"github.com/qsp-dev/qsp/internal/store"
	"github.com/qsp-dev/qsp/internal/telemetry"
)

// gateFlags are the flags of qsp gate.
type gateFlags struct {
	url         string
	token       string
	reports     []string
	kind        string
	version     string
	description string
	deploy      bool
	category    string
	labels      []string
	samples     string
	runs        int
	jsonFile    string
	junitFile   string
	timeout     time.Duration
	poll        time.Duration
	// Plan mode (gateplan.go).
	plan plan
	// Local mode.
	specs     []string
	sourceURL string
	dataDir   string
}

func newGateCommand() *cobra.Command {
	var f gateFlags
	cmd := &cobra.Command{
		Use:   "gate NAME",
		Short: "Evaluate a deploy gate",
		Long: `Gate evaluates the Gate NAME of the spec for CI: error budgets, vulnerability
reports, canary analysis and policies. It prints the verdict with every reason
and exits 0 when the gate passes, 1 when it fails (a policy denied or the
canary failed), and 2 when the result is inconclusive or the gate could not be
evaluated (a malformed report, a failing query, an unreachable server).

By default it asks a running qsp serve (--url) and uploads the reports: those
given with --report and the gate's spec.security.reports found in the working
directory. A gate with a timed canary (spec.canary.interval) runs on the
server; qsp gate polls it and prints its progress.

With --specs and --source-url it runs in-process instead, against a remote
Prometheus: it evaluates the service's SLOs once (a backfill), then the gate.
Vulnerability first-seen times are kept in --data-dir (default: a temporary
directory, so every finding is new).

With --plan it evaluates nothing: given the traffic each side serves
(--traffic, requests per minute), it prints how long the canary analysis must
run for each configured check to reach 80% and 95% power for the effect it is
configured to catch, and whether the gate's interval is that long. It reads
the gate from --specs when given, else from the server.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runGate(cmd, args[0], &f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.url, "url", envOr(envURL, "http://127.0.0.1:8080"), "URL of the running qsp serve (default $"+envURL+" or http://127.0.0.1:8080)")
	fl.StringVar(&f.token, "token", "", "API token (default $QSP_TOKEN)")
	fl.StringArrayVar(&f.reports, "report", nil, "Trivy or Grype JSON report to judge (repeatable)")
	fl.StringVar(&f.kind, "kind", policy.ChangeFeature, "kind of change: "+strings.Join(policy.ChangeKinds, ", "))
	fl.StringVar(&f.version, "version", "", "version being deployed")
	fl.StringVar(&f.description, "description", "", "description of the change")
	fl.BoolVar(&f.deploy, "deploy", false, "the change is being deployed: record a deploy marker (without it a gate run is a check, not a deploy)")
	fl.StringVar(&f.category, "category", "", "what the change is for: quality, security or performance (required for mitigations)")
	fl.StringArrayVar(&f.labels, "label", nil, "label of the change as key=value (repeatable)")
	fl.StringVar(&f.samples, "samples", "", "canary data as JSON samples instead of querying telemetry")
	fl.IntVar(&f.runs, "runs", 0, "number of canary runs, overriding spec.canary.runs")
	fl.StringVar(&f.jsonFile, "json", "", "write the evaluation as JSON to this file")
	fl.StringVar(&f.junitFile, "junit", "", "write the evaluation as JUnit XML to this file")
	fl.DurationVar(&f.timeout, "timeout", 30*time.Minute, "give up waiting for the verdict after this long")
	fl.DurationVar(&f.poll, "poll", 2*time.Second, "how often to poll a running evaluation")
	fl.StringSliceVar(&f.specs, "specs", nil, "run in-process: spec files or folders (repeatable)")
	fl.StringVar(&f.sourceURL, "source-url", "", "run in-process: Prometheus-compatible API the SLOs and canary metrics are read from")
	fl.StringVar(&f.dataDir, "data-dir", "", "run in-process: directory for the database (default: temporary)")
	f.plan.flags(fl)
	_ = fl.MarkHidden("poll")
	return cmd
}

// gateBackend runs evaluations: a qsp server, or an in-process runner.
type gateBackend interface {
	start(ctx context.Context, name string, req gate.Request) (*gate.Evaluation, error)
	get(ctx context.Context, id string) (*gate.Evaluation, error)
	// reportPaths returns the gate's spec.security.reports.
	reportPaths(ctx context.Context, name string) ([]string, error)
	close()
}

func runGate(cmd *cobra.Command, name string, f *gateFlags) error {
	ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
	defer cancel()
	if f.plan.on {
		return runGatePlan(ctx, cmd.OutOrStdout(), name, f)
	}
	// The local engine logs from its own goroutines to the same stream
	// the command writes its progress to.
	stderr := &syncWriter{w: cmd.ErrOrStderr()}
	req, err := f.request()
	if err != nil {
		return err
	}
	var b gateBackend
	if len(f.specs) > 0 {
		b, err = newLocalGate(ctx, f, stderr)
	} else {
		if f.token == "" {
			f.token = os.Getenv("QSP_TOKEN")
		}
		b, err = newRemoteGate(f.url, f.token)
	}
	if err != nil {
		return err
	}
	defer b.close()

	// The gate's own report paths are relative to the working directory
	// of CI, where the scanners wrote them: upload those that exist.
	paths, err := b.reportPaths(ctx, name)
	if err != nil {
		return err
	}
	for _, p := range paths {
		if slices.ContainsFunc(req.Reports, func(r gate.Report) bool { return r.Name == p }) {
			continue
		}
		data, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			continue // the server may have it; if not, it says so
		}
		if err != nil {
			return fmt.Errorf("report %s: %w", p, err)
		}
		req.Reports = append(req.Reports, gate.Report{Name: p, Content: data})
	}

	ev, err := b.start(ctx, name, req)
	if err != nil {
		return err
	}
	last := ""
	for !ev.State.Done() {
		if p := progressLine(ev); p != last {
			fmt.Fprintln(stderr, p)
			last = p
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("gate %s: no verdict after %s: evaluation %s is still running (%s)", name, f.timeout, ev.ID, progressLine(ev))
		case <-time.After(f.poll):
		}
		next, err := b.get(ctx, ev.ID)
		if err != nil {
			return err
		}
		ev = next
	}
	printEvaluation(cmd.OutOrStdout(), ev)
	if err := f.writeReports(ev); err != nil {
		return err
	}
	switch ev.State {
	case gate.StatePass:
		return nil
	case gate.StateFail:
		return errCheckFailed
	}
	return fmt.Errorf("gate %s: %s (evaluation %s)", name, ev.State, ev.ID)
}

// request builds the evaluation request from the flags.
func (f *gateFlags) request() (gate.Request, error) {
	req := gate.Request{
		Change: gate.Change{Kind: f.kind, Version: f.version, Description: f.description, Category: spec.Category(f.category), Deploy: f.deploy},
		Runs:   f.runs,
	}
	if !slices.Contains(policy.ChangeKinds, f.kind) {
		return req, fmt.Errorf("--kind %q: want one of %s", f.kind, strings.Join(policy.ChangeKinds, ", "))
	}
	for _, l := range f.labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return req, fmt.Errorf("--label %q: want key=value", l)
		}
		if req.Change.Labels == nil {
			req.Change.Labels = map[string]string{}
		}
		req.Change.Labels[k] = v
	}
	for _, p := range f.reports {
		data, err := os.ReadFile(p)
		if err != nil {
			return req, fmt.Errorf("--report: %w", err)
		}
		req.Reports = append(req.Reports, gate.Report{Name: p, Content: data})
	}
	if f.samples != "" {
		data, err := os.ReadFile(f.samples)
		if err != nil {
			return req, fmt.Errorf("--samples: %w", err)
		}
		req.Samples = data
	}
	return req, nil
}

// writeReports writes the JSON and JUnit reports the flags ask for.
func (f *gateFlags) writeReports(ev *gate.Evaluation) error {
	if f.jsonFile != "" {
		data, err := json.MarshalIndent(ev, "", "  ")
		if err != nil {
			return fmt.Errorf("--json: %w", err)
		}
		if err := os.WriteFile(f.jsonFile, append(data, '\n'), 0o644); err != nil {
			return fmt.Errorf("--json: %w", err)
		}
	}
	if f.junitFile != "" {
		var buf bytes.Buffer
		if err := gate.WriteJUnit(&buf, ev); err != nil {
			return fmt.Errorf("--junit: %w", err)
		}
		if err := os.WriteFile(f.junitFile, buf.Bytes(), 0o644); err != nil {
			return fmt.Errorf("--junit: %w", err)
		}
	}
	return nil
}

func progressLine(ev *gate.Evaluation) string {
	p := ev.Progress
	s := fmt.Sprintf("evaluation %s of gate %s: %s", ev.ID, ev.Gate, p.Stage)
	if p.CanaryRuns > 0 {
		s += fmt.Sprintf(", canary run %d of %d done", p.CanaryDone, p.CanaryRuns)
	}
	if !p.NextRunAt.IsZero() {
		s += ", next run at " + p.NextRunAt.Local().Format(time.TimeOnly)
	}
	return s
}

// printEvaluation prints the verdict and every reason, most severe first.
func printEvaluation(w io.Writer, ev *gate.Evaluation) {
	fmt.Fprintf(w, "gate %s: %s\n", ev.Gate, strings.ToUpper(string(ev.State)))
	change := ev.Change.Kind
	if ev.Change.Version != "" {
		change += " " + ev.Change.Version
	}
	fmt.Fprintf(w, "  service %s, change %s, evaluation %s\n", ev.Service, change, ev.ID)
	for _, r := range ev.SortedReasons() {
		src := r.Source
		if src == "" {
			src = r.Check
		} else if r.Check == gate.CheckCanary {
			src = "canary " + src
		}
		fmt.Fprintf(w, "  %-12s %s: %s\n", r.Level, src, r.Message)
	}
	if ev.Decision != nil {
		fmt.Fprintf(w, "  policy decision %s: %s\n", ev.Decision.ID, ev.Decision.Result)
	}
}

// remoteGate is a qsp server's gate API.
type remoteGate struct {
	api.Client
}

func newRemoteGate(base, token string) (*remoteGate, error) {
	u, err := url.Parse(base)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("--url %q: want the http(s) URL of qsp serve", base)
	}
	return &remoteGate{api.Client{Base: base, Token: token, HTTP: &http.Client{Timeout: 5 * time.Minute}}}, nil
}

func (g *remoteGate) close() {}

func (g *remoteGate) reportPaths(ctx context.Context, name string) ([]string, error) {
	var v struct {
		Security *struct {
			Reports []string `json:"reports"`
		} `json:"security"`
	}
	if err := g.Do(ctx, http.MethodGet, "/api/v1/gates/"+url.PathEscape(name), nil, &v); err != nil {
		return nil, err
	}
	if v.Security == nil {
		return nil, nil
	}
	return v.Security.Reports, nil
}

func (g *remoteGate) start(ctx context.Context, name string, req gate.Request) (*gate.Evaluation, error) {
	type report struct {
		Name    string `json:"name"`
		Content string `json:"content"`
	}
	body := struct {
		Change  gate.Change `json:"change"`
		Reports []report    `json:"reports,omitempty"`
		Samples *string     `json:"samples,omitempty"`
		Runs    int         `json:"runs,omitempty"`
	}{Change: req.Change, Runs: req.Runs}
	// The API's expectedImpact uses camelCase names; the CLI sets none.
	body.Change.ExpectedImpact = nil
	for _, r := range req.Reports {
		// As strings: a malformed report then fails the evaluation naming
		// the file, rather than the whole request as malformed JSON.
		body.Reports = append(body.Reports, report{Name: r.Name, Content: string(r.Content)})
	}
	if req.Samples != nil {
		s := string(req.Samples)
		body.Samples = &s
	}
	var ev gate.Evaluation
	if err := g.Do(ctx, http.MethodPost, "/api/v1/gates/"+url.PathEscape(name)+"/evaluations", body, &ev); err != nil {
		return nil, err
	}
	return &ev, nil
}

func (g *remoteGate) get(ctx context.Context, id string) (*gate.Evaluation, error) {
	var ev gate.Evaluation
	if err := g.Do(ctx, http.MethodGet, "/api/v1/gates/evaluations/"+url.PathEscape(id), nil, &ev); err != nil {
		return nil, err
	}
	return &ev, nil
}

// localGate runs the gate in-process against a remote Prometheus: a
// one-shot engine computes the service's budgets, then a gate runner
// evaluates.
type localGate struct {
	runner  *gate.Runner
	store   *store.Store
	stop    context.CancelFunc
	engDone chan error
	tmpDir  string
}

func newLocalGate(ctx context.Context, f *gateFlags, stderr io.Writer) (_ *localGate, err error) {
	if f.sourceURL == "" {
		return nil, errors.New("--specs runs the gate in-process and needs --source-url, the Prometheus-compatible API the SLOs are evaluated from")
	}
	set, diags := spec.Load(f.specs...)
	if diags.HasErrors() {
		return nil, fmt.Errorf("specs are invalid:\n%w", diags)
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	source, err := telemetry.NewRemote(telemetry.RemoteOptions{URL: f.sourceURL, Logger: logger})
	if err != nil {
		return nil, err
	}
	l := &localGate{}
	defer func() {
		if err != nil {
			l.close()
		}
	}()
	dir := f.dataDir
	if dir == "" {
		if l.tmpDir, err = os.MkdirTemp("", "qsp-gate-*"); err != nil {
			return nil, err
		}
		dir = l.tmpDir
	} else if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("--data-dir: %w", err)
	}
	if l.store, err = store.Open(ctx, store.Options{Path: filepath.Join(dir, "qsp.db"), Logger: logger}); err != nil {
		return nil, err
	}
	// The decision log of an in-process run lives as long as its store.
	pe, err := policy.New(policy.Options{Policies: set.Policies, Recorder: l.store, Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("policies: %w", err)
	}
	eng, err := engine.New(engine.Options{Source: source, Store: l.store, Specs: engineSpecs(set), Logger: logger})
	if err != nil {
		return nil, err
	}
	// The engine's backfill is what computes budgets; Run does it and
	// then evaluates on a ticker until stopped.
	engCtx, stop := context.WithCancel(context.Background())
	l.stop = stop
	l.engDone = make(chan error, 1)
	go func() { l.engDone <- eng.Run(engCtx) }()
	fmt.Fprintf(stderr, "evaluating the SLOs from %s\n", f.sourceURL)
	for !eng.Ready() {
		select {
		case err := <-l.engDone:
			l.engDone <- err
			return nil, fmt.Errorf("evaluate SLOs: %w", err)
		case <-ctx.Done():
			return nil, fmt.Errorf("evaluate SLOs: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	l.runner, err = gate.New(gate.Options{
		Specs: set, Engine: eng, Policy: pe, Evaluations: l.store, FirstSeen: l.store, Deploys: l.store,
		Source: source, Logger: logger,
	})
	if err != nil {
		return nil, err
	}
	return l, nil
}

// engineSpecs keeps the SLOs the gates need: every SLO of a service a
// gate checks, and the SLOs composite ones among them are made of.
func engineSpecs(set *spec.Set) *spec.Set {
	out := *set
	out.SLOs = nil
	want := map[string]bool{}
	var add func(name string)
	add = func(name string) {
		s := set.SLO(name)
		if s == nil || want[name] {
			return
		}
		want[name] = true
		if c := s.Spec.Indicator.Composite; c != nil {
			for _, p := range c.Objectives {
				add(p.SLO)
			}
		}
	}
	for _, g := range set.Gates {
		for _, s := range set.SLOsOf(g.Spec.Service) {
			add(s.Name())
		}
	}
	for _, s := range set.SLOs {
		if want[s.Name()] {
			out.SLOs = append(out.SLOs, s)
		}
	}
	return &out
}

func (l *localGate) reportPaths(_ context.Context, name string) ([]string, error) {
	g := l.runner.Gate(name)
	if g == nil {
		return nil, fmt.Errorf("gate %q: %w", name, gate.ErrUnknownGate)
	}
	if g.Spec.Security == nil {
		return nil, nil
	}
	return g.Spec.Security.Reports, nil
}

func (l *localGate) start(ctx context.Context, name string, req gate.Request) (*gate.Evaluation, error) {
	return l.runner.Start(ctx, name, req)
}

func (l *localGate) get(ctx context.Context, id string) (*gate.Evaluation, error) {
	return l.runner.Evaluation(ctx, id)
}

func (l *localGate) close() {
	if l.runner != nil {
		l.runner.Close()
	}
	if l.stop != nil {
		l.stop()
		<-l.engDone
	}
	if l.store != nil {
		l.store.Close()
	}
	if l.tmpDir != "" {
		os.RemoveAll(l.tmpDir)
	}
}

// syncWriter serializes writes to w: the command and the goroutines of
// a local engine share stderr.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
