// Package kube is QSP's controller mode: it watches QSP's custom resources
// (qsp.dev/v1alpha1) and, opt-in, Sloth's and Pyrra's, in a Kubernetes
// cluster, turns them into spec documents that are loaded and validated
// together with the spec files, and hands the set to the engine through
// the app's reload path. It writes each resource's status (Valid, Ready
// and, for SLOs, the live state and budget) and Events on alert
// transitions; with several replicas only the holder of a Lease writes.
// It sits beside the spec files at the start of the data flow.
package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/policy"
	"github.com/qsp-dev/qsp/internal/spec"
)

// Defaults of the options.
const (
	DefaultStatusInterval = time.Minute
	DefaultDebounce       = 200 * time.Millisecond
	DefaultLeaseName      = "qsp-status-writer"
	DefaultLeaseDuration  = 30 * time.Second
)

// Options configure a Controller.
type Options struct {
	// Config is the REST configuration; nil builds it from Kubeconfig, or
	// in-cluster when Kubeconfig is empty.
	Config     *rest.Config
	Kubeconfig string
	// Namespaces to watch; empty watches all.
	Namespaces []string
	// LabelSelector filters the watched resources ("team=payments").
	LabelSelector string
	// Kinds to watch (AllKinds); empty is DefaultKinds.
	Kinds []string
	// WriteForeignStatus lets QSP write status.conditions on Sloth and
	// Pyrra resources; off by default, they belong to those tools.
	WriteForeignStatus bool
	// Files are the spec files and folders loaded with the resources.
	Files []string
	// Reload asks the app to load specs again (through Load) and hand
	// them to the engine; required.
	Reload func(ctx context.Context) error
	// Snapshot returns every SLO's latest status; required. With replicas
	// on a shared store it is all replicas' statuses, so the one status
	// writer reports the SLOs other replicas evaluate.
	Snapshot func() *engine.Snapshot
	// StatusInterval is the least time between two status writes of one
	// resource when only evaluation results changed. Default 1m.
	StatusInterval time.Duration
	// Debounce gathers bursts of resource changes into one reload.
	Debounce time.Duration
	// LeaderElection makes one replica the status and event writer,
	// elected with a coordination.k8s.io Lease. Without it this process
	// writes.
	LeaderElection bool
	LeaseName      string
	LeaseNamespace string
	LeaseDuration  time.Duration
	// Identity names this replica in the Lease; default the hostname.
	Identity string
	// QPS and Burst bound the client's requests (client-go's limiter).
	QPS   float32
	Burst int

	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time
}

// Controller watches the cluster's resources. Load, Applied and
// OnTransitions are safe for concurrent use; Run is called once.
type Controller struct {
	opts      Options
	logger    *slog.Logger
	now       func() time.Time
	dyn       dynamic.Interface
	core      kubernetes.Interface
	resources []resource
	factories []dynamicinformer.DynamicSharedInformerFactory
	informers map[string][]cache.SharedIndexInformer // by resource name
	changed   chan struct{}
	metrics   *metrics

	mu sync.Mutex
	// pending is the result of the last Load, applied once the app has
	// handed its set to the engine.
	pending *loadResult
	// applied is the result the running set came from.
	applied *loadResult
	// writes is what the status writer knows per object (uid).
	writes   map[types.UID]*writeState
	recorder record.EventRecorder
	leading  bool
	synced   bool
}

// loadResult is what one Load found about each object.
type loadResult struct {
	set     *spec.Set
	at      time.Time
	objects map[types.UID]*objectResult
	// bySLO maps a qsp/v1 SLO name to the object that declared it.
	bySLO map[string]*objectResult
}

// objectResult is one object's validation.
type objectResult struct {
	res        resource
	namespace  string
	name       string
	uid        types.UID
	generation int64
	valid      bool
	message    string   // the diagnostics, "Kind/name: field: message; ..."
	warnings   string   // warnings of a valid object
	slos       []string // the qsp/v1 SLOs it declares
}

// New checks the options and builds the clients; nothing is watched until
// Run.
func New(opts Options) (*Controller, error) {
	if opts.Reload == nil || opts.Snapshot == nil {
		return nil, errors.New("kube: Reload and Snapshot are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	if opts.StatusInterval <= 0 {
		opts.StatusInterval = DefaultStatusInterval
	}
	if opts.Debounce <= 0 {
		opts.Debounce = DefaultDebounce
	}
	if opts.LeaseName == "" {
		opts.LeaseName = DefaultLeaseName
	}
	if opts.LeaseDuration <= 0 {
		opts.LeaseDuration = DefaultLeaseDuration
	}
	if len(opts.Kinds) == 0 {
		opts.Kinds = DefaultKinds
	}
	// client-go logs through klog (leader election, reflector errors);
	// send it to this logger. klog's logger is process-wide.
	klog.SetSlogLogger(opts.Logger.With("component", "client-go"))
	c := &Controller{
		opts: opts, logger: opts.Logger.With("component", "kubernetes"), now: opts.Now,
		informers: map[string][]cache.SharedIndexInformer{}, changed: make(chan struct{}, 1),
		writes: map[types.UID]*writeState{},
	}
	seen := map[string]bool{}
	for _, k := range opts.Kinds {
		r, err := resourceOf(k)
		if err != nil {
			return nil, fmt.Errorf("kube: kinds: %w", err)
		}
		if !seen[k] {
			seen[k] = true
			c.resources = append(c.resources, r)
		}
	}
	cfg := opts.Config
	if cfg == nil {
		var err error
		if opts.Kubeconfig != "" {
			cfg, err = clientcmd.BuildConfigFromFlags("", opts.Kubeconfig)
		} else {
			cfg, err = rest.InClusterConfig()
		}
		if err != nil {
			return nil, fmt.Errorf("kube: client config: %w", err)
		}
	}
	cfg = rest.CopyConfig(cfg)
	cfg.UserAgent = "qsp"
	if opts.QPS > 0 {
		cfg.QPS, cfg.Burst = opts.QPS, max(opts.Burst, int(opts.QPS))
	}
	var err error
	if c.metrics, err = newMetrics(opts.Registerer); err != nil {
		return nil, err
	}
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return &countingTransport{next: rt, m: c.metrics} })
	if c.dyn, err = dynamic.NewForConfig(cfg); err != nil {
		return nil, fmt.Errorf("kube: %w", err)
	}
	if c.core, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, fmt.Errorf("kube: %w", err)
	}
	if opts.LeaderElection && opts.LeaseNamespace == "" {
		return nil, errors.New("kube: leaderElection needs the Lease's namespace")
	}
	namespaces := opts.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	for _, ns := range namespaces {
		f := dynamicinformer.NewFilteredDynamicSharedInformerFactory(c.dyn, 0, ns, func(o *metav1.ListOptions) {
			o.LabelSelector = opts.LabelSelector
		})
		c.factories = append(c.factories, f)
		for _, r := range c.resources {
			inf := f.ForResource(r.gvr).Informer()
			if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
				AddFunc:    func(any) { c.signal() },
				UpdateFunc: func(old, cur any) { c.onUpdate(old, cur) },
				DeleteFunc: func(any) { c.signal() },
			}); err != nil {
				return nil, fmt.Errorf("kube: watch %s: %w", r.gvr, err)
			}
			c.informers[r.name] = append(c.informers[r.name], inf)
		}
	}
	return c, nil
}

func (c *Controller) signal() {
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

// onUpdate reloads when an object's spec changed (its generation) or its
// metadata that the conversion reads; QSP's own status writes change
// neither and so do not cause reloads.
func (c *Controller) onUpdate(old, cur any) {
	o, ok1 := old.(*unstructured.Unstructured)
	n, ok2 := cur.(*unstructured.Unstructured)
	if !ok1 || !ok2 || o.GetGeneration() != n.GetGeneration() ||
		o.GetAnnotations()[DisplayNameAnnotation] != n.GetAnnotations()[DisplayNameAnnotation] ||
		!mapsEqual(o.GetLabels(), n.GetLabels()) {
		c.signal()
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// Run watches until ctx ends: it reloads on every change (debounced),
// and writes statuses and events while it leads.
func (c *Controller) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, f := range c.factories {
		f.Start(ctx.Done())
	}
	defer func() {
		for _, f := range c.factories {
			f.Shutdown()
		}
	}()
	for _, f := range c.factories {
		for gvr, ok := range f.WaitForCacheSync(ctx.Done()) {
			if !ok && ctx.Err() == nil {
				return fmt.Errorf("watch %s: cache did not sync", gvr)
			}
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	c.mu.Lock()
	c.synced = true
	c.mu.Unlock()
	c.logger.Info("watching", "kinds", c.opts.Kinds, "namespaces", c.opts.Namespaces, "labelSelector", c.opts.LabelSelector)

	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.core.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	c.mu.Lock()
	c.recorder = broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "qsp"})
	c.mu.Unlock()

	wg.Add(1)
	go func() {
		defer wg.Done()
		c.lead(ctx)
	}()
	c.signal() // the first load, now that the caches are complete
	// Statuses are checked every second, and every 100ms for a few
	// seconds after a reload, so an edit's first evaluation shows at once.
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var lastPass, fastUntil time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c.changed:
			// Gather a burst (kubectl apply -f of a folder) into one load.
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(c.opts.Debounce):
			}
			select {
			case <-c.changed:
			default:
			}
			start := time.Now()
			err := c.opts.Reload(ctx)
			c.metrics.reloadSeconds.Observe(time.Since(start).Seconds())
			if err != nil && ctx.Err() == nil {
				c.metrics.reloadFailures.Inc()
				c.logger.Warn("reload with the cluster's resources refused", "err", err)
			}
			c.writeStatuses(ctx)
			lastPass, fastUntil = time.Now(), time.Now().Add(freshWait)
		case now := <-tick.C:
			if now.Before(fastUntil) || now.Sub(lastPass) >= time.Second {
				c.writeStatuses(ctx)
				lastPass = now
			}
		}
	}
}

// lead runs the leader election; without it this process leads.
func (c *Controller) lead(ctx context.Context) {
	setLeading := func(v bool) {
		c.mu.Lock()
		c.leading = v
		if v {
			// A new leader writes every status once: it cannot know what
			// the previous one wrote last.
			c.writes = map[types.UID]*writeState{}
		}
		c.mu.Unlock()
		c.metrics.leader.Set(b2f(v))
	}
	if !c.opts.LeaderElection {
		setLeading(true)
		return
	}
	id := c.opts.Identity
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Name: c.opts.LeaseName, Namespace: c.opts.LeaseNamespace},
		Client:     c.core.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: id},
	}
	d := c.opts.LeaseDuration
	for ctx.Err() == nil {
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock: lock, LeaseDuration: d, RenewDeadline: d * 2 / 3, RetryPeriod: d / 6,
			ReleaseOnCancel: true, Name: "qsp",
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(context.Context) {
					c.logger.Info("leading: this replica writes statuses and events", "lease", c.opts.LeaseNamespace+"/"+c.opts.LeaseName, "identity", id)
					setLeading(true)
				},
				OnStoppedLeading: func() { setLeading(false) },
			},
		})
		if err != nil {
			c.logger.Error("leader election", "err", err)
			return
		}
		le.Run(ctx)
	}
}

func b2f(v bool) float64 {
	if v {
		return 1
	}
	return 0
}

// Load loads paths together with the watched resources. An invalid
// resource is left out, with its diagnostics kept for its status, and the
// rest loaded again, until every remaining resource is valid: a Service
// left out makes the SLOs that name it invalid in the next round. Errors
// in the files are returned as they are, and refuse the reload as without
// the cluster. Before the watch caches are complete only the files load.
func (c *Controller) Load(paths []string) (*spec.Set, spec.Diagnostics) {
	c.mu.Lock()
	synced := c.synced
	c.mu.Unlock()
	if !synced {
		return spec.LoadSources(paths, nil)
	}
	var objs []watched
	for _, r := range c.resources {
		for _, inf := range c.informers[r.name] {
			for _, o := range inf.GetStore().List() {
				if u, ok := o.(*unstructured.Unstructured); ok {
					objs = append(objs, watched{r, u})
				}
			}
		}
	}
	result, set, diags := load(paths, objs, c.now())
	if result == nil {
		return set, diags
	}
	c.mu.Lock()
	c.pending = result
	c.mu.Unlock()
	c.metrics.objects.Set(float64(len(result.objects)))
	invalid := 0
	for _, or := range result.objects {
		if !or.valid {
			invalid++
		}
	}
	c.metrics.invalid.Set(float64(invalid))
	return set, diags
}

// watched is one object of a watched kind.
type watched struct {
	res resource
	u   *unstructured.Unstructured
}

// load is Load over given objects. result is nil when the files are
// invalid; diags are then the files' errors, else the files' warnings.
func load(paths []string, objs []watched, now time.Time) (*loadResult, *spec.Set, spec.Diagnostics) {
	type entry struct {
		src spec.Source
		res *objectResult
	}
	result := &loadResult{at: now, objects: map[types.UID]*objectResult{}, bySLO: map[string]*objectResult{}}
	var entries []entry
	for _, w := range objs {
		r, u := w.res, w.u
		or := &objectResult{res: r, namespace: u.GetNamespace(), name: u.GetName(), uid: u.GetUID(), generation: u.GetGeneration(), valid: true}
		result.objects[or.uid] = or
		data, err := r.document(u)
		if err != nil {
			or.valid, or.message = false, err.Error()
			continue
		}
		entries = append(entries, entry{spec.Source{Name: r.sourceName(or.namespace, or.name), Data: data}, or})
	}
	// Stable order: diagnostics and duplicate-name conflicts do not depend
	// on the informers' map order (the older object keeps the name).
	sort.Slice(entries, func(i, j int) bool { return entries[i].src.Name < entries[j].src.Name })
	byName := map[string]*objectResult{}
	for _, e := range entries {
		byName[e.src.Name] = e.res
	}
	var set *spec.Set
	var diags spec.Diagnostics
	// Every round leaves out at least one object, so this ends.
	for {
		srcs := make([]spec.Source, 0, len(entries))
		for _, e := range entries {
			srcs = append(srcs, e.src)
		}
		set, diags = spec.LoadSources(paths, srcs)
		bad := map[*objectResult][]string{}
		var fileErrs spec.Diagnostics
		for _, d := range diags {
			or := byName[d.File]
			if or == nil {
				if !d.Warning {
					fileErrs = append(fileErrs, d)
				}
				continue
			}
			if d.Warning {
				or.warnings = joinMsg(or.warnings, message(d))
				continue
			}
			bad[or] = append(bad[or], message(d))
		}
		if len(fileErrs) > 0 {
			return nil, set, fileErrs
		}
		if len(bad) == 0 {
			// Rego that does not compile is found by the policy engine,
			// not the loader: without this one Policy resource would
			// refuse every reload.
			bad = badPolicies(set, byName)
		}
		if len(bad) == 0 {
			break
		}
		kept := entries[:0]
		for _, e := range entries {
			if msgs, ok := bad[e.res]; ok {
				e.res.valid, e.res.message, e.res.warnings = false, strings.Join(msgs, "; "), ""
				continue
			}
			e.res.warnings = ""
			kept = append(kept, e)
		}
		entries = kept
	}
	for _, o := range set.SLOs {
		if or := byName[o.Where().File]; or != nil {
			or.slos = append(or.slos, o.Name())
			result.bySLO[o.Name()] = or
		}
	}
	result.set = set
	// The files' warnings only: the objects' are in their status.
	return result, set, slices.DeleteFunc(diags, func(d spec.Diagnostic) bool { return byName[d.File] != nil || !d.Warning })
}

// badPolicies compiles the policies of set as the app will; when they do
// not compile together, each Policy resource is compiled alone (with the
// files' policies) and those that fail are returned with OPA's message.
// The files' own policies are the app's to refuse.
func badPolicies(set *spec.Set, byName map[string]*objectResult) map[*objectResult][]string {
	if len(set.Policies) == 0 {
		return nil
	}
	if _, err := policy.New(policy.Options{Policies: set.Policies}); err == nil {
		return nil
	}
	var files []*spec.Policy
	for _, p := range set.Policies {
		if byName[p.Where().File] == nil {
			files = append(files, p)
		}
	}
	bad := map[*objectResult][]string{}
	for _, p := range set.Policies {
		or := byName[p.Where().File]
		if or == nil {
			continue
		}
		if _, err := policy.New(policy.Options{Policies: append(slices.Clip(files), p)}); err != nil {
			bad[or] = append(bad[or], fmt.Sprintf("Policy/%s: spec.rego: %v", p.Name(), err))
		}
	}
	return bad
}

// message is a diagnostic as `qsp validate` prints it, without the
// position in the generated document: "SLO/x: spec.objective: ...".
func message(d spec.Diagnostic) string {
	d.File, d.Line, d.Column = "", 0, 0
	return strings.TrimPrefix(d.String(), ": ")
}

func joinMsg(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// Applied tells the controller that the app runs set: the statuses of the
// load it came from are published.
func (c *Controller) Applied(set *spec.Set) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending != nil && c.pending.set == set {
		c.pending.at = c.now()
		c.applied = c.pending
		c.pending = nil
	}
}

// Synced reports whether the watch caches are complete and the first
// load with the cluster's resources has been applied.
func (c *Controller) Synced() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.applied != nil
}
