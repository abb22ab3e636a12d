package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/kube/crd"
	"github.com/qsp-dev/qsp/internal/slo"
	"github.com/qsp-dev/qsp/internal/spec"
)

// Status writes are bounded per object:
//
//   - only when the status differs from the object's (ignoring
//     lastEvaluation, which changes every cycle, and with numbers rounded
//     so evaluation noise is not a change);
//   - at most once per StatusInterval when only evaluation results
//     changed (SLI, budget, burn rates, state);
//   - at once when a condition's status or the observed generation
//     changes (Valid, Ready, an edit): those follow a person's kubectl
//     apply, so they are as rare as the person's writes, and the person is
//     waiting for the answer;
//   - after a failed write not before a backoff (1s doubling to 5m, or
//     the server's Retry-After on 429), so conflicts and throttling do
//     not turn into a loop.
const (
	minBackoff = time.Second
	maxBackoff = 5 * time.Minute
	// freshWait is how long the status of an edited SLO waits for the
	// first evaluation of the new generation before it is written as not
	// yet evaluated.
	freshWait = 10 * time.Second
)

// writeState is what the writer remembers about one object.
type writeState struct {
	last    time.Time
	retryAt time.Time
	backoff time.Duration
}

// writeStatuses writes the statuses that need writing, if this replica
// leads.
func (c *Controller) writeStatuses(ctx context.Context) {
	c.mu.Lock()
	leading, applied := c.leading, c.applied
	c.mu.Unlock()
	if !leading || applied == nil {
		return
	}
	snap := c.opts.Snapshot()
	now := c.now()
	for _, r := range c.resources {
		if r.foreign && !c.opts.WriteForeignStatus {
			continue
		}
		for _, inf := range c.informers[r.name] {
			for _, o := range inf.GetStore().List() {
				if ctx.Err() != nil {
					return
				}
				u, ok := o.(*unstructured.Unstructured)
				if !ok {
					continue
				}
				or := applied.objects[u.GetUID()]
				if or == nil || or.generation != u.GetGeneration() {
					continue // the reload that covers it is on its way
				}
				c.writeStatus(ctx, u, or, applied, snap, now)
			}
		}
	}
}

func (c *Controller) writeStatus(ctx context.Context, u *unstructured.Unstructured, or *objectResult, applied *loadResult, snap *engine.Snapshot, now time.Time) {
	current, _ := u.Object["status"].(map[string]any)
	desired, ok := c.desired(u, or, applied, snap, current, now)
	if !ok {
		return
	}
	c.mu.Lock()
	ws := c.writes[or.uid]
	if ws == nil {
		ws = &writeState{}
		c.writes[or.uid] = ws
	}
	c.mu.Unlock()
	if now.Before(ws.retryAt) {
		return
	}
	if significant(current) == significant(desired) {
		return
	}
	urgent := current == nil || conditionStatuses(current) != conditionStatuses(desired) ||
		fmt.Sprint(current["observedGeneration"]) != fmt.Sprint(desired["observedGeneration"])
	if !urgent && now.Sub(ws.last) < c.opts.StatusInterval {
		return
	}
	patch, err := json.Marshal(map[string]any{"status": withNulls(current, desired)})
	if err != nil {
		return
	}
	_, err = c.dyn.Resource(or.res.gvr).Namespace(or.namespace).Patch(ctx, or.name, types.MergePatchType, patch,
		metav1.PatchOptions{FieldManager: "qsp"}, "status")
	if err != nil {
		if apierrors.IsNotFound(err) || ctx.Err() != nil {
			return
		}
		ws.backoff = min(max(2*ws.backoff, minBackoff), maxBackoff)
		if d, ok := apierrors.SuggestsClientDelay(err); ok && time.Duration(d)*time.Second > ws.backoff {
			ws.backoff = min(time.Duration(d)*time.Second, maxBackoff)
		}
		ws.retryAt = now.Add(ws.backoff)
		c.metrics.statusWrites.WithLabelValues("error").Inc()
		c.logger.Warn("write status", "resource", or.res.sourceName(or.namespace, or.name), "err", err, "retryIn", ws.backoff)
		return
	}
	ws.last, ws.backoff, ws.retryAt = now, 0, time.Time{}
	c.metrics.statusWrites.WithLabelValues("ok").Inc()
	if !or.valid && conditionStatus(current, crd.ConditionValid) != "False" {
		c.event(u, corev1.EventTypeWarning, "Invalid", or.message)
	}
}

// desired computes the object's status. ok is false while an edited SLO
// waits for its first evaluation.
func (c *Controller) desired(u *unstructured.Unstructured, or *objectResult, applied *loadResult, snap *engine.Snapshot, current map[string]any, now time.Time) (map[string]any, bool) {
	gen := u.GetGeneration()
	valid := crd.Condition{Type: crd.ConditionValid, Status: "True", ObservedGeneration: gen, Reason: "Valid", Message: "the spec is valid"}
	ready := crd.Condition{Type: crd.ConditionReady, Status: "True", ObservedGeneration: gen, Reason: "Loaded", Message: "in use by QSP"}
	if or.warnings != "" {
		valid.Reason, valid.Message = "ValidWithWarnings", or.warnings
	}
	if !or.valid {
		valid.Status, valid.Reason, valid.Message = "False", "Invalid", or.message
		ready.Status, ready.Reason, ready.Message = "False", "Invalid", "not loaded: the spec is invalid"
	}
	var st any
	isSLO := or.res.kind == spec.KindSLO && !or.res.foreign
	if isSLO && or.valid {
		var statuses []*engine.Status
		if snap != nil {
			statuses = snap.SLO(u.GetName())
		}
		fresh := len(statuses) > 0 && !statuses[0].EvaluatedAt.Before(applied.at)
		claimed := fmt.Sprint(current["observedGeneration"]) == strconv.FormatInt(gen, 10)
		if !fresh && !claimed && now.Sub(applied.at) < freshWait {
			return nil, false
		}
		s := sloStatus(statuses, applied.set.SLO(u.GetName()))
		if s.State == "" || s.State == string(engine.StateUnknown) {
			ready.Status, ready.Reason, ready.Message = "False", "NotEvaluated", "waiting for the first evaluation"
		} else {
			ready.Reason, ready.Message = "Evaluated", "evaluated by QSP"
		}
		s.Status = crd.Status{ObservedGeneration: gen, Conditions: keepTimes(current, now, valid, ready)}
		st = s
	} else {
		st = crd.Status{ObservedGeneration: gen, Conditions: keepTimes(current, now, valid, ready)}
	}
	b, err := json.Marshal(st)
	if err != nil {
		return nil, false
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, false
	}
	return m, true
}

// keepTimes sets each condition's lastTransitionTime: the current one if
// its status did not change, else now.
func keepTimes(current map[string]any, now time.Time, conds ...crd.Condition) []crd.Condition {
	for i := range conds {
		conds[i].LastTransitionTime = now.UTC().Format(time.RFC3339)
		for _, cur := range conditionList(current) {
			if cur["type"] == conds[i].Type && cur["status"] == conds[i].Status {
				if t, ok := cur["lastTransitionTime"].(string); ok {
					conds[i].LastTransitionTime = t
				}
			}
		}
	}
	return conds
}

func conditionList(status map[string]any) []map[string]any {
	l, _ := status["conditions"].([]any)
	out := make([]map[string]any, 0, len(l))
	for _, c := range l {
		if m, ok := c.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

func conditionStatus(status map[string]any, typ string) string {
	for _, c := range conditionList(status) {
		if c["type"] == typ {
			s, _ := c["status"].(string)
			return s
		}
	}
	return ""
}

// conditionStatuses is "Valid=True,Ready=False".
func conditionStatuses(status map[string]any) string {
	var b strings.Builder
	for _, c := range conditionList(status) {
		fmt.Fprintf(&b, "%v=%v,", c["type"], c["status"])
	}
	return b.String()
}

// significant is the status without what changes without meaning:
// lastEvaluation and the conditions' lastTransitionTime.
func significant(status map[string]any) string {
	if status == nil {
		return ""
	}
	m := make(map[string]any, len(status))
	for k, v := range status {
		if k != "lastEvaluation" {
			m[k] = v
		}
	}
	var conds []any
	for _, c := range conditionList(status) {
		cc := make(map[string]any, len(c))
		for k, v := range c {
			if k != "lastTransitionTime" {
				cc[k] = v
			}
		}
		conds = append(conds, cc)
	}
	if conds != nil {
		m["conditions"] = conds
	}
	b, _ := json.Marshal(m) // sorted keys
	return string(b)
}

// withNulls adds a null for every key of current missing from desired, so
// a JSON merge patch removes it.
func withNulls(current, desired map[string]any) map[string]any {
	out := make(map[string]any, len(desired))
	for k, v := range desired {
		if dm, ok := v.(map[string]any); ok {
			if cm, ok := current[k].(map[string]any); ok {
				v = withNulls(cm, dm)
			}
		}
		out[k] = v
	}
	for k := range current {
		if _, ok := desired[k]; !ok {
			out[k] = nil
		}
	}
	return out
}

// sloStatus is the live part of an SLO's status; for a grouped SLO, the
// group with the least budget left.
func sloStatus(statuses []*engine.Status, s *spec.SLO) crd.SLOStatus {
	var out crd.SLOStatus
	if len(statuses) == 0 {
		out.State = string(engine.StateUnknown)
		return out
	}
	w := statuses[0]
	for _, st := range statuses[1:] {
		if st.Budget.RemainingRatio < w.Budget.RemainingRatio {
			w = st
		}
	}
	out.State, out.Reason = string(w.State), w.Reason
	if len(statuses) > 1 {
		out.Groups = len(statuses)
	}
	if !w.EvaluatedAt.IsZero() {
		out.LastEvaluation = w.EvaluatedAt.UTC().Format(time.RFC3339)
	}
	if w.State == engine.StateUnknown {
		return out
	}
	if w.SLI != nil {
		v := round(*w.SLI, 6)
		out.SLI = &v
	}
	if w.Budget.Total > 0 {
		r := round(w.Budget.RemainingRatio, 4)
		out.BudgetRemaining = &r
		out.Budget = strconv.FormatFloat(r*100, 'f', 1, 64) + "%"
	}
	out.Alerts = map[string]string{}
	seen := map[string]bool{}
	var pageBurn float64
	for _, a := range w.Alerts {
		out.Alerts[a.Severity] = string(a.State)
		for i, cr := range a.Conditions {
			for _, wb := range []struct {
				d    time.Duration
				rate float64
			}{{cr.Condition.Long, cr.LongBurn}, {cr.Condition.Short, cr.ShortBurn}} {
				key := a.Severity + "/" + spec.Duration(wb.d).String()
				if seen[key] || math.IsNaN(wb.rate) || math.IsInf(wb.rate, 0) {
					continue
				}
				seen[key] = true
				out.BurnRates = append(out.BurnRates, crd.BurnRate{Severity: a.Severity, Window: spec.Duration(wb.d).String(), Rate: round(wb.rate, 2)})
			}
			if a.Severity == "page" && i == 0 {
				pageBurn = cr.LongBurn
			}
		}
	}
	if len(out.Alerts) == 0 {
		out.Alerts = nil
	}
	if s != nil && out.BudgetRemaining != nil && pageBurn > 0 {
		// At burn rate b the whole budget lasts window/b; what is left
		// lasts remaining × window / b.
		left := time.Duration(math.Max(*out.BudgetRemaining, 0) * float64(s.Spec.Window.Length()) / pageBurn)
		out.BudgetExhaustion = coarse(left).String()
	}
	return out
}

// coarse rounds a duration to two units (3d4h, 5h12m, 7m30s), so it is
// not a change every cycle.
func coarse(d time.Duration) spec.Duration {
	switch {
	case d >= 24*time.Hour:
		return spec.Duration(d.Round(time.Hour))
	case d >= time.Hour:
		return spec.Duration(d.Round(time.Minute))
	}
	return spec.Duration(d.Round(time.Second))
}

func round(x float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(x*p) / p
}

// OnTransitions records an Event on the resource of each transition's
// SLO: Warning when a page fires, Normal otherwise. Only the leader
// records.
func (c *Controller) OnTransitions(_ context.Context, ts []engine.Transition) {
	c.mu.Lock()
	leading, applied, pending := c.leading, c.applied, c.pending
	c.mu.Unlock()
	if !leading {
		return
	}
	for _, t := range ts {
		// The engine may evaluate a reloaded set before the app reports
		// it applied: look in the load on its way too.
		var or *objectResult
		for _, r := range []*loadResult{pending, applied} {
			if or == nil && r != nil {
				or = r.bySLO[t.SLO]
			}
		}
		if or == nil {
			continue
		}
		u := c.object(or)
		if u == nil {
			continue
		}
		typ := corev1.EventTypeNormal
		if t.To == slo.Firing && t.Severity == "page" {
			typ = corev1.EventTypeWarning
		}
		msg := fmt.Sprintf("%s %s: %s → %s", t.Severity, t.Alert, t.From, t.To)
		if t.Condition != "" {
			msg += " (" + t.Condition + ")"
		}
		if t.Key != t.SLO {
			msg += " for " + t.Key
		}
		c.event(u, typ, camel(t.Severity)+camel(string(t.To)), msg)
	}
}

func (c *Controller) event(u *unstructured.Unstructured, typ, reason, msg string) {
	c.mu.Lock()
	rec := c.recorder
	c.mu.Unlock()
	if rec != nil {
		rec.Event(u, typ, reason, msg)
		c.metrics.events.WithLabelValues(typ).Inc()
	}
}

// camel turns "no_data" into "NoData".
func camel(s string) string {
	var b strings.Builder
	for _, p := range strings.Split(s, "_") {
		if p != "" {
			b.WriteString(strings.ToUpper(p[:1]) + p[1:])
		}
	}
	return b.String()
}

// object returns the cached object of a result, or nil.
func (c *Controller) object(or *objectResult) *unstructured.Unstructured {
	for _, inf := range c.informers[or.res.name] {
		o, ok, err := inf.GetStore().GetByKey(or.namespace + "/" + or.name)
		if err == nil && ok {
			if u, ok := o.(*unstructured.Unstructured); ok && u.GetUID() == or.uid {
				return u
			}
		}
	}
	return nil
}

// metrics are the controller's, on the app's registry.
type metrics struct {
	requests       *prometheus.CounterVec
	statusWrites   *prometheus.CounterVec
	events         *prometheus.CounterVec
	reloadSeconds  prometheus.Histogram
	reloadFailures prometheus.Counter
	objects        prometheus.Gauge
	invalid        prometheus.Gauge
	leader         prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "qsp_kubernetes_requests_total",
			Help: "Requests to the Kubernetes API server, by verb (HTTP method; watches are GETs) and status code."}, []string{"method", "code"}),
		statusWrites: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "qsp_kubernetes_status_writes_total",
			Help: "Status writes to resources, by result."}, []string{"result"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "qsp_kubernetes_events_total",
			Help: "Events recorded on resources, by type."}, []string{"type"}),
		reloadSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "qsp_kubernetes_reload_duration_seconds",
			Help: "Time to load the resources with the spec files and hand them to the engine.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)}),
		reloadFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "qsp_kubernetes_reload_failures_total",
			Help: "Reloads refused (invalid spec files, policies that do not compile)."}),
		objects: prometheus.NewGauge(prometheus.GaugeOpts{Name: "qsp_kubernetes_objects", Help: "Resources watched."}),
		invalid: prometheus.NewGauge(prometheus.GaugeOpts{Name: "qsp_kubernetes_objects_invalid", Help: "Resources left out as invalid."}),
		leader:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "qsp_kubernetes_status_writer", Help: "1 while this replica writes statuses and events."}),
	}
	for _, col := range []prometheus.Collector{m.requests, m.statusWrites, m.events, m.reloadSeconds, m.reloadFailures, m.objects, m.invalid, m.leader} {
		if err := reg.Register(col); err != nil {
			return nil, fmt.Errorf("kube: metrics: %w", err)
		}
	}
	return m, nil
}

// countingTransport counts every request the clients make, watches
// included, for qsp_kubernetes_requests_total.
type countingTransport struct {
	next http.RoundTripper
	m    *metrics
}

func (t *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(r)
	code := "error"
	if err == nil {
		code = strconv.Itoa(resp.StatusCode)
	}
	t.m.requests.WithLabelValues(r.Method, code).Inc()
	return resp, err
}

// Requests returns the requests made so far, for benchmarks.
func (c *Controller) Requests() float64 {
	ch := make(chan prometheus.Metric, 64)
	go func() { c.metrics.requests.Collect(ch); close(ch) }()
	var n float64
	for m := range ch {
		pb := &dto.Metric{}
		if err := m.Write(pb); err == nil && pb.Counter != nil {
			n += pb.Counter.GetValue()
		}
	}
	return n
}

// RequestsByMethod returns the requests made so far by "METHOD code".
func (c *Controller) RequestsByMethod() map[string]float64 {
	ch := make(chan prometheus.Metric, 64)
	go func() { c.metrics.requests.Collect(ch); close(ch) }()
	out := map[string]float64{}
	for m := range ch {
		pb := &dto.Metric{}
		if err := m.Write(pb); err == nil && pb.Counter != nil {
			var method, code string
			for _, l := range pb.Label {
				switch l.GetName() {
				case "method":
					method = l.GetValue()
				case "code":
					code = l.GetValue()
				}
			}
			out[method+" "+code] += pb.Counter.GetValue()
		}
	}
	return out
}
