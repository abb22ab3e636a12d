package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/gate"
	"github.com/qsp-dev/qsp/internal/gate/canary"
	"github.com/qsp-dev/qsp/internal/policy"
	"github.com/qsp-dev/qsp/internal/spec"
	"github.com/qsp-dev/qsp/internal/store"
)

func init() { routeSets = append(routeSets, gateRoutes) }

// MaxEvaluationRequestBytes bounds the body of a gate evaluation request:
// vulnerability reports of large images run to tens of megabytes.
const MaxEvaluationRequestBytes = 128 << 20

// evaluationRequestLimit is MaxEvaluationRequestBytes, a variable so that
// tests can lower it.
var evaluationRequestLimit int64 = MaxEvaluationRequestBytes

// gateRoutes serves deploy gates (Options.Extra["gates"], a *gate.Runner),
// the policy decision log and deploy markers (Options.Store), and the
// policy input schema.
func gateRoutes(a *API) {
	a.handle("GET /api/v1/policy/schema", func(*http.Request) (any, error) { return json.RawMessage(policy.InputSchema()), nil })
	if s := a.opts.Store; s != nil {
		a.handle("GET /api/v1/decisions", func(r *http.Request) (any, error) { return listDecisions(s, r) })
		a.handle("GET /api/v1/decisions/{id}", func(r *http.Request) (any, error) { return getDecision(s, r) })
		impacts, _ := a.opts.Extra["deployImpact"].(DeployImpacts)
		a.handle("GET /api/v1/deploys", func(r *http.Request) (any, error) { return listDeploys(s, impacts, r) })
	}
	runner, _ := a.opts.Extra["gates"].(*gate.Runner)
	if runner == nil {
		return
	}
	a.handle("GET /api/v1/gates", func(r *http.Request) (any, error) {
		gs := runner.Gates()
		views := make([]gateView, len(gs))
		for i, g := range gs {
			views[i] = viewGate(g)
		}
		return paginate(views, r)
	})
	a.handle("GET /api/v1/gates/{name}", func(r *http.Request) (any, error) {
		name := r.PathValue("name")
		g := runner.Gate(name)
		if g == nil {
			return nil, notFound(fmt.Sprintf("gate %q not found", name))
		}
		return viewGate(g), nil
	})
	a.handle("GET /api/v1/gates/{name}/canary/plan", func(r *http.Request) (any, error) { return canaryPlan(runner, r) })
	a.handle("GET /api/v1/gates/evaluations", func(r *http.Request) (any, error) { return listEvaluations(runner, r) })
	a.handle("GET /api/v1/gates/evaluations/{id}", func(r *http.Request) (any, error) {
		ev, err := runner.Evaluation(r.Context(), r.PathValue("id"))
		return ev, gateError(err)
	})
	a.mux.HandleFunc("POST /api/v1/gates/{name}/evaluations", func(w http.ResponseWriter, r *http.Request) {
		status, ev, err := postEvaluation(runner, w, r)
		if err != nil {
			a.writeError(w, r, err)
			return
		}
		w.Header().Set("Location", "/api/v1/gates/evaluations/"+ev.ID)
		writeJSON(w, status, ev)
	})
}

// postEvaluation starts an evaluation. A gate that waits for canary
// intervals runs in the background: 202 with the running evaluation.
// Others are evaluated before the answer: 201 with the verdict.
func postEvaluation(runner *gate.Runner, w http.ResponseWriter, r *http.Request) (int, *gate.Evaluation, error) {
	name := r.PathValue("name")
	if runner.Gate(name) == nil {
		return 0, nil, notFound(fmt.Sprintf("gate %q not found", name))
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return 0, nil, &statusError{http.StatusUnsupportedMediaType, fmt.Sprintf("content type %q: want application/json", ct)}
	}
	req, err := decodeEvaluationRequest(http.MaxBytesReader(w, r.Body, evaluationRequestLimit))
	if err != nil {
		return 0, nil, err
	}
	background, err := runner.Background(name, req)
	if err != nil {
		return 0, nil, gateError(err)
	}
	ev, err := runner.Start(r.Context(), name, req)
	if err != nil {
		return 0, nil, gateError(err)
	}
	if background {
		return http.StatusAccepted, ev, nil
	}
	done, err := runner.Wait(r.Context(), ev.ID)
	if err != nil {
		return 0, nil, gateError(err)
	}
	if !done.State.Done() {
		return http.StatusAccepted, done, nil
	}
	return http.StatusCreated, done, nil
}

// gateError maps the gate runner's errors to status codes.
func gateError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, gate.ErrUnknownGate), errors.Is(err, gate.ErrNotFound), errors.Is(err, store.ErrNotFound):
		return &statusError{http.StatusNotFound, err.Error()}
	case errors.Is(err, gate.ErrInvalidRequest):
		return &statusError{http.StatusUnprocessableEntity, err.Error()}
	case errors.Is(err, gate.ErrBusy):
		return &statusError{http.StatusServiceUnavailable, err.Error()}
	}
	return err
}

// Wire types of POST /api/v1/gates/{name}/evaluations.
type evaluationRequest struct {
	Change  changeWire      `json:"change"`
	Reports []reportWire    `json:"reports"`
	Samples json.RawMessage `json:"samples"`
	Runs    int             `json:"runs"`
}

type changeWire struct {
	Kind           string            `json:"kind"`
	Version        string            `json:"version"`
	Description    string            `json:"description"`
	Category       string            `json:"category"`
	ExpectedImpact *impactWire       `json:"expectedImpact"`
	Labels         map[string]string `json:"labels"`
	Deploy         bool              `json:"deploy"`
}

type impactWire struct {
	Latency                  float64  `json:"latency"`
	ErrorRate                float64  `json:"errorRate"`
	DisablesSecurityControls []string `json:"disablesSecurityControls"`
}

// reportWire is one report: its name and its JSON, either embedded as is
// or as a string holding it.
type reportWire struct {
	Name    string          `json:"name"`
	Content json.RawMessage `json:"content"`
}

// decodeEvaluationRequest reads the body of an evaluation request
// strictly: one JSON object, no unknown fields. Syntax and type errors
// are 400 with the line and column, a body over the limit 413, values
// that cannot be evaluated 422.
func decodeEvaluationRequest(body io.Reader) (gate.Request, error) {
	data, err := io.ReadAll(body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return gate.Request{}, &statusError{http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", mbe.Limit)}
		}
		return gate.Request{}, badRequest("read request body: " + err.Error())
	}
	if len(bytes.TrimSpace(data)) == 0 {
		data = []byte("{}") // no body: a feature change without reports
	}
	var w evaluationRequest
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return gate.Request{}, badRequest("request body: " + jsonProblem(data, err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return gate.Request{}, badRequest("request body: data after the JSON object")
	}
	unprocessable := func(format string, args ...any) error {
		return &statusError{http.StatusUnprocessableEntity, fmt.Sprintf(format, args...)}
	}
	req := gate.Request{
		Change: gate.Change{
			Kind: w.Change.Kind, Version: w.Change.Version, Description: w.Change.Description,
			Category: spec.Category(w.Change.Category), Labels: w.Change.Labels, Deploy: w.Change.Deploy,
		},
		Runs: w.Runs,
	}
	if im := w.Change.ExpectedImpact; im != nil {
		for _, f := range []struct {
			name string
			v    float64
		}{{"latency", im.Latency}, {"errorRate", im.ErrorRate}} {
			if f.v < -1 || f.v > 1000 {
				return gate.Request{}, unprocessable("change.expectedImpact.%s: %v is not a relative change (0.2 is 20%% more)", f.name, f.v)
			}
		}
		req.Change.ExpectedImpact = &policy.Impact{Latency: im.Latency, ErrorRate: im.ErrorRate, DisablesSecurityControls: im.DisablesSecurityControls}
	}
	for k := range w.Change.Labels {
		if k == "" {
			return gate.Request{}, unprocessable("change.labels: empty label name")
		}
	}
	for i, rep := range w.Reports {
		if strings.TrimSpace(rep.Name) == "" {
			return gate.Request{}, unprocessable("reports[%d].name: required (the report's file name)", i)
		}
		content, err := embeddedJSON(rep.Content)
		if err != nil {
			return gate.Request{}, unprocessable("reports[%d] (%s).content: %v", i, rep.Name, err)
		}
		req.Reports = append(req.Reports, gate.Report{Name: rep.Name, Content: content})
	}
	if len(w.Samples) > 0 && string(bytes.TrimSpace(w.Samples)) != "null" {
		content, err := embeddedJSON(w.Samples)
		if err != nil {
			return gate.Request{}, unprocessable("samples: %v", err)
		}
		req.Samples = content
	}
	return req, nil
}

// embeddedJSON returns a document given inline (an object or array) or as
// a JSON string holding it.
func embeddedJSON(raw json.RawMessage) ([]byte, error) {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || string(t) == "null" {
		return nil, errors.New("required: the document as JSON, or a string holding it")
	}
	switch t[0] {
	case '{', '[':
		return t, nil
	case '"':
		var s string
		if err := json.Unmarshal(t, &s); err != nil {
			return nil, err
		}
		if strings.TrimSpace(s) == "" {
			return nil, errors.New("empty")
		}
		return []byte(s), nil
	}
	return nil, errors.New("want the document as JSON (an object or array), or a string holding it")
}

// gateView is a Gate of the spec as the API shows it.
type gateView struct {
	Name        string        `json:"name"`
	Service     string        `json:"service"`
	Description string        `json:"description,omitempty"`
	Checks      []string      `json:"checks"`
	Policies    []string      `json:"policies"`
	Budget      *budgetView   `json:"budget,omitempty"`
	Security    *securityView `json:"security,omitempty"`
	Canary      *canaryView   `json:"canary,omitempty"`
}

type budgetView struct {
	SLOs         []string `json:"slos"`
	MinRemaining float64  `json:"minRemaining"`
	MaxBurnRate  float64  `json:"maxBurnRate"`
}

type securityView struct {
	Reports     []string       `json:"reports"`
	MaxFindings map[string]int `json:"maxFindings"`
	MaxAge      string         `json:"maxAge,omitempty"`
	AgeSeverity string         `json:"ageSeverity,omitempty"`
	OnlyFixable bool           `json:"onlyFixable"`
	Ignore      []string       `json:"ignore"`
}

type canaryView struct {
	Baseline map[string]string `json:"baseline"`
	Canary   map[string]string `json:"canary"`
	Interval string            `json:"interval,omitempty"`
	Runs     int               `json:"runs"`
	Lookback string            `json:"lookback"`
	Step     string            `json:"step"`
	FailFast bool              `json:"failFast"`
	Pass     float64           `json:"pass"`
	Marginal float64           `json:"marginal"`
	Alpha    float64           `json:"alpha"`
	Metrics  []string          `json:"metrics"`
}

func viewGate(g *spec.Gate) gateView {
	v := gateView{Name: g.Name(), Service: g.Spec.Service, Description: g.Spec.Description, Checks: []string{}, Policies: emptyIfNil(g.Spec.Policies)}
	if b := g.Spec.Budget; b != nil {
		v.Checks = append(v.Checks, gate.CheckBudget)
		v.Budget = &budgetView{SLOs: emptyIfNil(b.SLOs), MinRemaining: b.MinRemaining.Ratio(), MaxBurnRate: b.MaxBurnRate}
	}
	if s := g.Spec.Security; s != nil {
		v.Checks = append(v.Checks, gate.CheckSecurity)
		v.Security = &securityView{Reports: emptyIfNil(s.Reports), MaxFindings: maps.Clone(s.MaxFindings), AgeSeverity: s.AgeSeverity,
			OnlyFixable: s.OnlyFixable, Ignore: emptyIfNil(s.Ignore)}
		if v.Security.MaxFindings == nil {
			v.Security.MaxFindings = map[string]int{}
		}
		if s.MaxAge > 0 {
			v.Security.MaxAge = s.MaxAge.String()
		}
	}
	if c := g.Spec.Canary; c != nil {
		v.Checks = append(v.Checks, gate.CheckCanary)
		cv := &canaryView{Baseline: c.Baseline, Canary: c.Canary, Runs: max(c.Runs, 1), Lookback: spec.Duration(gate.DefaultLookback).String(),
			Step: spec.Duration(gate.DefaultStep).String(), FailFast: c.FailFast == nil || *c.FailFast, Pass: c.Pass, Marginal: c.Marginal, Alpha: c.Alpha}
		if c.Interval > 0 {
			cv.Interval = c.Interval.String()
			cv.Lookback = ""
		} else {
			cv.Runs = 1
			if c.Lookback > 0 {
				cv.Lookback = c.Lookback.String()
			}
		}
		if c.Step > 0 {
			cv.Step = c.Step.String()
		}
		for _, m := range c.Metrics {
			cv.Metrics = append(cv.Metrics, m.Name)
		}
		v.Canary = cv
	}
	return v
}

func emptyIfNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func listEvaluations(runner *gate.Runner, r *http.Request) (any, error) {
	lp, err := listParams(r)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	state := gate.State(q.Get("verdict"))
	if s := q.Get("state"); s != "" {
		state = gate.State(s)
	}
	if state != "" && !slices.Contains(gate.States, state) {
		return nil, badRequest(fmt.Sprintf("verdict %q: want one of %v", state, gate.States))
	}
	evs, total, err := runner.Evaluations(r.Context(), gate.Filter{
		Gate: q.Get("gate"), Service: q.Get("service"), State: state, From: lp.From, To: lp.To, Limit: lp.Limit, Offset: lp.Offset,
	})
	if err != nil {
		return nil, err
	}
	return storePage(evs, total, lp), nil
}

// decisionView is a decision of the log; lists leave out the input.
type decisionView struct {
	ID       string          `json:"id"`
	Time     time.Time       `json:"time"`
	Point    string          `json:"point"`
	Subject  string          `json:"subject"`
	Service  string          `json:"service"`
	Result   policy.Result   `json:"result"`
	Reasons  []policy.Reason `json:"reasons"`
	Policies []string        `json:"policies"`
	Input    json.RawMessage `json:"input,omitempty"`
}

func viewDecision(d *policy.Decision) decisionView {
	return decisionView{ID: d.ID, Time: d.Time, Point: d.Point, Subject: d.Subject, Service: d.Service, Result: d.Result,
		Reasons: emptyIfNil(d.Reasons), Policies: emptyIfNil(d.Policies), Input: d.Input}
}

func listDecisions(s *store.Store, r *http.Request) (any, error) {
	lp, err := listParams(r)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	point, result := q.Get("point"), q.Get("result")
	if point != "" && point != policy.PointGate && point != policy.PointPlaybook {
		return nil, badRequest(fmt.Sprintf("point %q: want gate or playbook", point))
	}
	if result != "" && !slices.Contains([]policy.Result{policy.Allow, policy.Warn, policy.Deny}, policy.Result(result)) {
		return nil, badRequest(fmt.Sprintf("result %q: want allow, warn or deny", result))
	}
	ds, total, err := s.Decisions(r.Context(), store.DecisionFilter{
		Point: point, Subject: q.Get("subject"), Service: q.Get("service"), Result: result, From: lp.From, To: lp.To, Limit: lp.Limit, Offset: lp.Offset,
	})
	if err != nil {
		return nil, err
	}
	views := make([]decisionView, len(ds))
	for i, d := range ds {
		views[i] = viewDecision(d)
		views[i].Input = nil
	}
	return storePage(views, total, lp), nil
}

func getDecision(s *store.Store, r *http.Request) (any, error) {
	d, err := s.Decision(r.Context(), r.PathValue("id"))
	if err != nil {
		return nil, gateError(err)
	}
	return viewDecision(d), nil
}

// DeployImpacts measures a deploy's impact on the error budget of each SLO
// of its service; the app implements it over the store and the engine
// (Options.Extra["deployImpact"]). It is safe for concurrent use.
type DeployImpacts interface {
	Impact(d store.Deploy) []engine.DeployImpact
}

// deployView is a deploy marker with the budget each SLO of its service
// consumed in the span after it and the same span before it.
type deployView struct {
	store.Deploy
	Impact []engine.DeployImpact `json:"impact"`
}

func listDeploys(s *store.Store, impacts DeployImpacts, r *http.Request) (any, error) {
	lp, err := listParams(r)
	if err != nil {
		return nil, err
	}
	ds, total, err := s.Deploys(r.Context(), store.DeployFilter{Service: r.URL.Query().Get("service"), From: lp.From, To: lp.To, Limit: lp.Limit, Offset: lp.Offset})
	if err != nil {
		return nil, err
	}
	views := make([]deployView, len(ds))
	for i, d := range ds {
		views[i] = deployView{Deploy: d, Impact: []engine.DeployImpact{}}
		if impacts != nil {
			if imp := impacts.Impact(d); imp != nil {
				views[i].Impact = imp
			}
		}
	}
	return storePage(views, total, lp), nil
}

// canaryPlan answers how long the gate's canary analysis must run at the
// given traffic for each check to reach its power. requestsPerMinute is
// required; samplesPerMinute, baselineErrorRate and sigma are optional.
func canaryPlan(runner *gate.Runner, r *http.Request) (any, error) {
	q := r.URL.Query()
	var in canary.PlanInput
	for _, f := range []struct {
		name     string
		v        *float64
		required bool
	}{
		{"requestsPerMinute", &in.RequestsPerMinute, true},
		{"samplesPerMinute", &in.SamplesPerMinute, false},
		{"baselineErrorRate", &in.BaselineErrorRate, false},
		{"sigma", &in.Sigma, false},
	} {
		s := q.Get(f.name)
		if s == "" {
			if f.required {
				return nil, badRequest(fmt.Sprintf("query parameter %s: required (requests per minute on each side)", f.name))
			}
			continue
		}
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, badRequest(fmt.Sprintf("query parameter %s: %q is not a number", f.name, s))
		}
		*f.v = v
	}
	p, err := runner.Plan(r.PathValue("name"), in)
	return p, gateError(err)
}
