package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/topdown/print"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/qsp-dev/qsp/internal/ids"
	"github.com/qsp-dev/qsp/internal/spec"
)

// DefaultTimeout bounds one Evaluate call, all policies together. A gate
// decision takes well under a millisecond; the bound is for runaway user
// Rego (a triple loop over a large range).
const DefaultTimeout = time.Second

// Errors of Evaluate that callers may test with errors.Is. Evaluate also
// returns *ModuleError for runtime errors in a module, and wraps
// context.DeadlineExceeded when a decision took longer than the timeout.
var (
	// ErrUnknownPolicy: the input names a policy the engine does not have.
	ErrUnknownPolicy = errors.New("unknown policy")
	// ErrResultType: a policy's deny, warn or info has a shape QSP cannot
	// read as reasons (e.g. a number).
	ErrResultType = errors.New("policy result is not a set of messages")
)

// Options configures an Engine. Everything is optional; without Policies
// only the built-in policies apply.
type Options struct {
	// Policies are the user policies, in spec order, with Source loaded.
	Policies []*spec.Policy
	// Recorder receives every decision; nil keeps no decision log.
	Recorder Recorder
	// Logger defaults to discarding. Rego print() output goes to it at
	// debug level.
	Logger *slog.Logger
	// Registerer receives the engine's metrics; default a private
	// registry. Engines built one after another (reload) may share it.
	Registerer prometheus.Registerer
	// Now is the clock of decision times and of Rego's time.now_ns;
	// default time.Now.
	Now func() time.Time
	// Timeout bounds one Evaluate call; default DefaultTimeout.
	Timeout time.Duration
	// Priorities orders the categories for the trade-off policy, most
	// important first; default DefaultPriorities.
	Priorities []spec.Category
}

// Engine decides at gates and playbooks under the built-in and user
// policies. Every module is parsed and compiled, and every policy's query
// prepared, once in New: Evaluate only evaluates.
//
// An Engine is immutable and safe for concurrent use, and holds no
// goroutines or files, so there is nothing to close. To reload policies,
// build a new Engine from the new spec (a few milliseconds) and swap it in
// with an atomic.Pointer[Engine]; keep the old one when New fails, and
// decisions in flight finish on the engine they started with.
type Engine struct {
	policies []*prepared
	byName   map[string]*prepared
	byKey    map[string]*source
	recorder Recorder
	logger   *slog.Logger
	now      func() time.Time
	timeout  time.Duration
	metrics  *metrics
}

// prepared is a policy with its prepared query.
type prepared struct {
	*source
	query rego.PreparedEvalQuery
}

// queryTemplate reads a policy's deny, warn and info. Each comprehension
// yields [] when the rule is undefined and [value] otherwise, so the query
// is always defined and a rule of a wrong type (a number, a boolean) is
// seen and reported rather than silently ignored.
const queryTemplate = "deny := [x | x := %[1]s.deny]; warn := [x | x := %[1]s.warn]; info := [x | x := %[1]s.info]"

// New compiles the built-in and user policies and prepares their queries.
// Every problem is reported, each a *ModuleError naming the policy and
// the Rego position where OPA located it; the errors are joined.
func New(opts Options) (*Engine, error) {
	e := &Engine{
		recorder: opts.Recorder,
		logger:   opts.Logger,
		now:      opts.Now,
		timeout:  opts.Timeout,
		byName:   map[string]*prepared{},
		byKey:    map[string]*source{},
	}
	if e.logger == nil {
		e.logger = slog.New(slog.DiscardHandler)
	}
	e.logger = e.logger.With("component", "policy")
	if e.now == nil {
		e.now = time.Now
	}
	if e.timeout <= 0 {
		e.timeout = DefaultTimeout
	}
	priorities := opts.Priorities
	if priorities == nil {
		priorities = DefaultPriorities
	}
	if err := checkPriorities(priorities); err != nil {
		return nil, fmt.Errorf("new policy engine: %w", err)
	}
	reg := opts.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("new policy engine: %w", err)
	}
	e.metrics = m

	sources, err := collectSources(opts.Policies)
	if err != nil {
		return nil, err
	}
	caps := capabilities()
	modules := make(map[string]*ast.Module, len(sources))
	packages := map[string]*source{}
	var errs []error
	for _, s := range sources {
		e.byKey[s.key] = s
		mod, err := s.parse(caps)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		pkg := mod.Package.Path.String()
		if other, ok := packages[pkg]; ok {
			errs = append(errs, s.moduleError("", fmt.Sprintf("package %s is also the package of policy %q; each policy needs its own package", strings.TrimPrefix(pkg, "data."), other.name), mod.Package.Location))
			continue
		}
		packages[pkg] = s
		s.pkg = pkg
		modules[s.key] = mod
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	schemas := ast.NewSchemaSet()
	schemas.Put(ast.SchemaRootRef, inputSchema())
	compiler := ast.NewCompiler().
		WithCapabilities(caps).
		WithSchemas(schemas).
		WithEnablePrintStatements(true).
		WithDefaultRegoVersion(ast.RegoV1)
	compiler.Compile(modules)
	if compiler.Failed() {
		return nil, sourcesErrors(e.byKey, nil, compiler.Errors)
	}

	config := map[string]any{"priorities": categoryStrings(priorities)}
	for _, s := range sources {
		if s.lib {
			continue // helpers only: no policy of its own
		}
		p, err := e.prepare(compiler, s, config)
		if err != nil {
			return nil, err
		}
		e.policies = append(e.policies, p)
		e.byName[s.name] = p
	}
	return e, nil
}

// collectSources returns the built-in modules followed by the user ones,
// rejecting duplicate and reserved names.
func collectSources(policies []*spec.Policy) ([]*source, error) {
	sources, err := builtinSources()
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var errs []error
	for _, p := range policies {
		if p == nil {
			continue
		}
		name := p.Name()
		switch {
		case name == "":
			errs = append(errs, errors.New("policy without metadata.name"))
			continue
		case isBuiltinName(name):
			errs = append(errs, fmt.Errorf("policy %q: the name is taken by a built-in policy", name))
			continue
		case seen[name]:
			errs = append(errs, fmt.Errorf("policy %q: declared twice", name))
			continue
		}
		seen[name] = true
		s, err := userSource(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		sources = append(sources, s)
	}
	return sources, errors.Join(errs...)
}

// prepare parses the policy's query and prepares it against the compiled
// modules and the policy's own data (params) and the shared config.
func (e *Engine) prepare(compiler *ast.Compiler, s *source, config map[string]any) (*prepared, error) {
	ref := ast.MustParseRef(s.pkg)
	body, err := ast.ParseBody(fmt.Sprintf(queryTemplate, ref.String()))
	if err != nil {
		return nil, fmt.Errorf("policy %q: build query: %w", s.name, err)
	}
	store := inmem.NewFromObject(map[string]any{
		"qsp": map[string]any{"params": s.params, "config": config},
	})
	pq, err := rego.New(
		rego.ParsedQuery(body),
		rego.Compiler(compiler),
		rego.Store(store),
		rego.StrictBuiltinErrors(true),
		rego.PrintHook(printHook{logger: e.logger, policy: s.name}),
	).PrepareForEval(context.Background())
	if err != nil {
		return nil, sourcesErrors(e.byKey, s, err)
	}
	return &prepared{source: s, query: pq}, nil
}

// Evaluate decides on in under every policy that applies to in.Point and
// every policy in.Policies names. The decision is handed to the Recorder;
// a Recorder error is returned together with the decision.
//
// An error without a decision means no decision was made: invalid input
// (ErrInvalidInput), an unknown policy (ErrUnknownPolicy), a runtime
// error in a module (*ModuleError), a result of the wrong shape
// (ErrResultType) or the timeout (context.DeadlineExceeded). It is never
// an allow: callers treat it as a failure (a gate exits 2).
func (e *Engine) Evaluate(ctx context.Context, in Input) (*Decision, error) {
	return e.evaluate(ctx, in)
}

// evaluate is Evaluate with extra OPA evaluation options, for tests that
// observe OPA's own metrics.
func (e *Engine) evaluate(ctx context.Context, in Input, extra ...rego.EvalOption) (*Decision, error) {
	start := time.Now()
	d, err := e.decide(ctx, in, extra)
	point := in.Point
	if point != PointGate && point != PointPlaybook {
		point = "invalid"
	}
	if err != nil {
		e.metrics.errors.WithLabelValues(point).Inc()
		return nil, fmt.Errorf("policy decision: %w", err)
	}
	e.metrics.duration.WithLabelValues(point).Observe(time.Since(start).Seconds())
	e.metrics.decisions.WithLabelValues(point, string(d.Result)).Inc()
	e.logger.Debug("decision", "id", d.ID, "point", d.Point, "subject", d.Subject,
		"service", d.Service, "result", d.Result, "reasons", len(d.Reasons))
	if e.recorder != nil {
		if err := e.recorder.RecordDecision(ctx, d); err != nil {
			e.metrics.recordErrors.Inc()
			return d, fmt.Errorf("record decision %s: %w", d.ID, err)
		}
	}
	return d, nil
}

func (e *Engine) decide(ctx context.Context, in Input, extra []rego.EvalOption) (*Decision, error) {
	now := e.now()
	in, err := normalize(in, now)
	if err != nil {
		return nil, err
	}
	selected, err := e.selectPolicies(in)
	if err != nil {
		return nil, err
	}
	raw, err := json.Marshal(in)
	if err != nil {
		if path := nonFinite(reflect.ValueOf(in), "input"); path != "" {
			// NaN and ±Inf have no JSON form; typically a burn rate over
			// a window without traffic (0/0) the caller did not catch.
			return nil, fmt.Errorf("%w: %s is not a finite number", ErrInvalidInput, path)
		}
		return nil, fmt.Errorf("encode input: %w", err)
	}
	value, err := ast.ValueFromReader(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("convert input: %w", err)
	}

	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	opts := append([]rego.EvalOption{rego.EvalParsedInput(value), rego.EvalTime(now)}, extra...)
	d := &Decision{
		ID:       ids.New(now),
		Time:     now,
		Point:    in.Point,
		Subject:  in.Gate,
		Service:  in.Service.Name,
		Result:   Allow,
		Reasons:  []Reason{},
		Policies: make([]string, 0, len(selected)),
		Input:    raw,
	}
	if in.Point == PointPlaybook {
		d.Subject = in.Playbook
	}
	for _, p := range selected {
		rs, err := p.query.Eval(ctx, opts...)
		if err != nil {
			if cerr := ctx.Err(); cerr != nil {
				return nil, fmt.Errorf("policy %q: evaluation stopped after %s: %w", p.name, e.timeout, cerr)
			}
			return nil, evalError(e.byKey, p.source, err)
		}
		reasons, err := p.reasons(rs)
		if err != nil {
			return nil, err
		}
		d.Policies = append(d.Policies, p.name)
		d.Reasons = append(d.Reasons, reasons...)
	}
	for _, r := range d.Reasons {
		switch {
		case r.Level == LevelDeny:
			d.Result = Deny
		case r.Level == LevelWarn && d.Result == Allow:
			d.Result = Warn
		}
	}
	return d, nil
}

// nonFinite returns the JSON path of the first NaN or infinite float in v,
// or "".
func nonFinite(v reflect.Value, path string) string {
	switch v.Kind() {
	case reflect.Float32, reflect.Float64:
		if f := v.Float(); math.IsNaN(f) || math.IsInf(f, 0) {
			return path
		}
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			return nonFinite(v.Elem(), path)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			f := v.Type().Field(i)
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" || name == "-" {
				name = f.Name
			}
			if p := nonFinite(v.Field(i), path+"."+name); p != "" {
				return p
			}
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			if p := nonFinite(v.Index(i), fmt.Sprintf("%s[%d]", path, i)); p != "" {
				return p
			}
		}
	case reflect.Map:
		iter := v.MapRange()
		for iter.Next() {
			if p := nonFinite(iter.Value(), fmt.Sprintf("%s[%q]", path, iter.Key())); p != "" {
				return p
			}
		}
	}
	return ""
}

// selectPolicies returns, in engine order, the policies that apply to the
// input's point or that the input names.
func (e *Engine) selectPolicies(in Input) ([]*prepared, error) {
	named := map[string]bool{}
	for _, n := range in.Policies {
		if _, ok := e.byName[n]; !ok {
			return nil, fmt.Errorf("%w %q named by %s %q", ErrUnknownPolicy, n, in.Point, in.Gate+in.Playbook)
		}
		named[n] = true
	}
	var out []*prepared
	for _, p := range e.policies {
		if named[p.name] || p.applies(in.Point) {
			out = append(out, p)
		}
	}
	return out, nil
}

// applies reports whether the policy applies to point by itself.
func (s *source) applies(point string) bool { return slices.Contains(s.points, point) }

// reasons reads the query's bindings as reasons: denies, warnings, infos.
// A policy that said nothing passed, and says so.
func (p *prepared) reasons(rs rego.ResultSet) ([]Reason, error) {
	if len(rs) != 1 {
		return nil, fmt.Errorf("policy %q: query returned %d results, want 1", p.name, len(rs))
	}
	var out []Reason
	for _, level := range []string{LevelDeny, LevelWarn, LevelInfo} {
		values, _ := rs[0].Bindings[level].([]any)
		for _, v := range values {
			msgs, err := messages(level, v)
			if err != nil {
				return nil, fmt.Errorf("policy %q: %w", p.name, err)
			}
			for _, m := range msgs {
				out = append(out, Reason{Policy: p.name, Level: level, Message: m})
			}
		}
	}
	if len(out) == 0 {
		out = append(out, Reason{Policy: p.name, Level: LevelInfo, Message: "passed: no deny or warn"})
	}
	return out, nil
}

// messages reads one deny/warn/info value the way conftest does: a set
// (or array) of strings or of objects with a msg field. A single string,
// an object with msg, or a boolean (`deny if ...`) are accepted too, so
// that a policy written that way never passes silently.
func messages(level string, v any) ([]string, error) {
	switch v := v.(type) {
	case bool:
		if v {
			return []string{level + " is true"}, nil
		}
		return nil, nil
	case string:
		return []string{v}, nil
	case map[string]any:
		msg, ok := v["msg"].(string)
		if !ok {
			return nil, fmt.Errorf("%w: %s is an object without a string msg", ErrResultType, level)
		}
		return []string{msg}, nil
	case []any:
		out := make([]string, 0, len(v))
		for _, x := range v {
			switch x := x.(type) {
			case string:
				out = append(out, x)
			case map[string]any:
				msg, ok := x["msg"].(string)
				if !ok {
					return nil, fmt.Errorf("%w: an element of %s is an object without a string msg", ErrResultType, level)
				}
				out = append(out, msg)
			default:
				return nil, fmt.Errorf("%w: an element of %s is %s, want a string or an object with msg", ErrResultType, level, jsonKind(x))
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: %s is %s, want a set of strings or of objects with msg", ErrResultType, level, jsonKind(v))
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case json.Number, float64, int, int64:
		return "a number"
	case []any:
		return "a collection"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// Info describes a policy of the engine, for the API and `qsp validate`.
type Info struct {
	Name    string `json:"name"`
	Builtin bool   `json:"builtin"`
	// Package is the Rego package, e.g. "qsp.builtin.error_budget".
	Package   string   `json:"package"`
	AppliesTo []string `json:"applies_to"`
	// File is the .rego or spec file of a user policy.
	File        string `json:"file,omitempty"`
	Description string `json:"description,omitempty"`
}

// Policies describes the engine's policies in evaluation order.
func (e *Engine) Policies() []Info {
	out := make([]Info, 0, len(e.policies))
	for _, p := range e.policies {
		info := Info{Name: p.name, Builtin: p.builtin, Package: strings.TrimPrefix(p.pkg, "data."),
			AppliesTo: slices.Clone(p.points), Description: p.descr}
		if !p.builtin {
			info.File = p.file
		}
		out = append(out, info)
	}
	return out
}

// printHook sends Rego print() output to the logger, for policy authors.
type printHook struct {
	logger *slog.Logger
	policy string
}

func (h printHook) Print(pctx print.Context, msg string) error {
	loc := ""
	if pctx.Location != nil {
		loc = pctx.Location.String()
	}
	h.logger.Debug("rego print", "policy", h.policy, "location", loc, "msg", msg)
	return nil
}

func categoryStrings(cs []spec.Category) []any {
	out := make([]any, len(cs))
	for i, c := range cs {
		out[i] = string(c)
	}
	return out
}

// metrics are the engine's Prometheus metrics.
type metrics struct {
	decisions    *prometheus.CounterVec
	errors       *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	recordErrors prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "qsp_policy_decisions_total",
			Help: "Policy decisions made, by decision point and result.",
		}, []string{"point", "result"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "qsp_policy_evaluation_errors_total",
			Help: "Policy evaluations that ended in an error instead of a decision.",
		}, []string{"point"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "qsp_policy_evaluation_duration_seconds",
			Help:    "Time to decide under all applicable policies.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 8), // 100µs .. 1.6s
		}, []string{"point"}),
		recordErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "qsp_policy_record_errors_total",
			Help: "Decisions the decision log failed to store.",
		}),
	}
	var err error
	if m.decisions, err = register(reg, m.decisions); err != nil {
		return nil, err
	}
	if m.errors, err = register(reg, m.errors); err != nil {
		return nil, err
	}
	if m.duration, err = register(reg, m.duration); err != nil {
		return nil, err
	}
	if m.recordErrors, err = register(reg, m.recordErrors); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c, or returns the collector already registered under
// its name, so that an engine built on reload keeps counting in the same
// series as the one it replaces.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, fmt.Errorf("register metrics: %w", err)
	}
	return c, nil
}
