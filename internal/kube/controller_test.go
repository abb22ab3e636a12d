package kube_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"

	"github.com/qsp-dev/qsp/internal/app"
	"github.com/qsp-dev/qsp/internal/externaltest"
	"github.com/qsp-dev/qsp/internal/spec"
)

const (
	chartDir  = "../../deploy/helm/qsp"
	namespace = "qsp"
	release   = "qsp"
)

// cluster is a real kube-apiserver with QSP's CRDs and chart installed.
type cluster struct {
	k      *externaltest.Kubernetes
	admin  *rest.Config
	dyn    dynamic.Interface
	cs     kubernetes.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
	// sa is the chart's ServiceAccount.
	sa string
	// config is the chart's rendered qsp.yaml.
	config string
}

var (
	sloGVR   = schema.GroupVersionResource{Group: "qsp.dev", Version: "v1alpha1", Resource: "slos"}
	svcGVR   = schema.GroupVersionResource{Group: "qsp.dev", Version: "v1alpha1", Resource: "services"}
	slothGVR = schema.GroupVersionResource{Group: "sloth.slok.dev", Version: "v1", Resource: "prometheusservicelevels"}
	pyrraGVR = schema.GroupVersionResource{Group: "pyrra.dev", Version: "v1alpha1", Resource: "servicelevelobjectives"}
)

// startCluster starts etcd and kube-apiserver, installs the CRDs (QSP's
// and a Sloth CRD) and the chart's manifests rendered by the real Helm,
// all with server-side apply; objects that need a kubelet are applied as
// a server-side dry run.
func startCluster(t testing.TB, helmSet ...string) *cluster {
	t.Helper()
	k := externaltest.StartKubernetes(t)
	admin := &rest.Config{Host: k.URL, BearerToken: k.AdminToken, TLSClientConfig: rest.TLSClientConfig{CAFile: filepath.Join(k.CertDir, "apiserver.crt")}, QPS: 200, Burst: 400}
	c := &cluster{k: k, admin: admin}
	var err error
	if c.dyn, err = dynamic.NewForConfig(admin); err != nil {
		t.Fatal(err)
	}
	if c.cs, err = kubernetes.NewForConfig(admin); err != nil {
		t.Fatal(err)
	}
	c.mapper = restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(c.cs.Discovery()))
	ctx := context.Background()

	crds, _ := filepath.Glob(filepath.Join(chartDir, "crds", "*.yaml"))
	crds = append(crds, "testdata/sloth-crd.yaml", "testdata/pyrra-crd.yaml")
	for _, f := range crds {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		c.apply(t, b)
	}
	// Established: served by discovery.
	externaltest.Eventually(t, 30*time.Second, 200*time.Millisecond, func() bool {
		c.mapper.Reset()
		_, err1 := c.mapper.RESTMapping(schema.GroupKind{Group: "qsp.dev", Kind: "SLO"}, "v1alpha1")
		_, err2 := c.mapper.RESTMapping(schema.GroupKind{Group: "sloth.slok.dev", Kind: "PrometheusServiceLevel"}, "v1")
		_, err3 := c.mapper.RESTMapping(schema.GroupKind{Group: "pyrra.dev", Kind: "ServiceLevelObjective"}, "v1alpha1")
		return err1 == nil && err2 == nil && err3 == nil
	}, "the CRDs are not served")

	if _, err := c.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"template", release, chartDir, "--namespace", namespace,
		"--set", "kubernetes.enabled=true", "--set", "kubernetes.kinds.sloth=true", "--set", "kubernetes.kinds.pyrra=true"}, helmSet...)
	cmd := exec.Command("../../scripts/helm.sh", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			externaltest.Missing(t, "helm (scripts/helm.sh): %v", err)
		}
		t.Fatalf("helm template: %v\n%s", err, stderr.Bytes())
	}
	c.apply(t, out)
	if c.sa == "" {
		t.Fatal("the chart rendered no ServiceAccount")
	}
	return c
}

// apply server-side applies every document of a multi-document YAML.
func (c *cluster) apply(t testing.TB, data []byte) {
	t.Helper()
	ctx := context.Background()
	dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
			return
		} else if err != nil {
			t.Fatalf("decode: %v", err)
		}
		if len(u.Object) == 0 {
			continue
		}
		gvk := u.GroupVersionKind()
		m, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			c.mapper.Reset()
			if m, err = c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version); err != nil {
				t.Fatalf("%s %s: %v", gvk, u.GetName(), err)
			}
		}
		var ri dynamic.ResourceInterface = c.dyn.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			ns := u.GetNamespace()
			if ns == "" {
				ns = namespace
			}
			ri = c.dyn.Resource(m.Resource).Namespace(ns)
		}
		opts := metav1.ApplyOptions{FieldManager: "qsp-test", Force: true}
		switch gvk.Kind {
		case "Deployment", "StatefulSet", "DaemonSet", "Pod":
			// Nothing would run them; the server still validates them
			// fully (schema, defaulting, admission).
			opts.DryRun = []string{metav1.DryRunAll}
		case "ServiceAccount":
			c.sa = u.GetName()
		case "ConfigMap":
			if q, ok, _ := unstructured.NestedString(u.Object, "data", "qsp.yaml"); ok {
				c.config = q
			}
		}
		if _, err := ri.Apply(ctx, u.GetName(), u, opts); err != nil {
			t.Fatalf("apply %s %s: %v", gvk.Kind, u.GetName(), err)
		}
	}
}

// saConfig returns a client configuration with a token of the chart's
// ServiceAccount (TokenRequest), and writes it as a kubeconfig.
func (c *cluster) saConfig(t testing.TB, dir string) (*rest.Config, string) {
	t.Helper()
	tr, err := c.cs.CoreV1().ServiceAccounts(namespace).CreateToken(context.Background(), c.sa,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr(int64(3600))}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(c.k.CertDir, "apiserver.crt")
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, fmt.Appendf(nil, `apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: %q, certificate-authority: %q}}]
users: [{name: qsp, user: {token: %q}}]
contexts: [{name: test, context: {cluster: test, user: qsp, namespace: %s}}]
current-context: test
`, c.k.URL, ca, tr.Status.Token, namespace), 0o600); err != nil {
		t.Fatal(err)
	}
	return &rest.Config{Host: c.k.URL, BearerToken: tr.Status.Token, TLSClientConfig: rest.TLSClientConfig{CAFile: ca}}, kubeconfig
}

func ptr[T any](v T) *T { return &v }

// qps is QSP's client QPS in the tests (the API server is local).
var qps = 100.0

// startQSP runs the real app in controller mode with kubeconfig.
func startQSP(t testing.TB, dir, kubeconfig string, kinds []string, interval time.Duration) (*app.App, func()) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := &app.Config{DataDir: filepath.Join(dir, "data"), Listen: l.Addr().String(),
		Evaluation: app.EvaluationConfig{Interval: spec.Duration(interval), Settle: spec.Duration(time.Second)},
		Kubernetes: app.KubernetesConfig{Enabled: true, Kubeconfig: kubeconfig, Kinds: kinds, LeaseNamespace: namespace, QPS: qps, Burst: 2 * int(qps)}}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, app.Options{Config: cfg, Listener: l})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	return a, func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("app did not stop within 30s")
		}
	}
}

// pusher appends req_total counters to the embedded TSDB: per 15s, ok
// requests with code 200 and bad ones with code 500, for each svc, from
// an hour ago and then live until stop.
type series struct {
	svc     string
	ok, bad float64
}

func push(t testing.TB, a *app.App, ss []series) (stop func()) {
	t.Helper()
	db := a.Embedded().DB()
	type counter struct {
		ls labels.Labels
		v  float64
		d  float64
	}
	var cs []*counter
	for _, s := range ss {
		cs = append(cs,
			&counter{ls: labels.FromStrings("__name__", "req_total", "svc", s.svc, "code", "200"), d: s.ok},
			&counter{ls: labels.FromStrings("__name__", "req_total", "svc", s.svc, "code", "500"), d: s.bad})
	}
	step := 15 * time.Second
	next := time.Now().Add(-65 * time.Minute).Truncate(step)
	appendUntil := func(end time.Time) error {
		ap := db.Appender(context.Background())
		for ; !next.After(end); next = next.Add(step) {
			for _, c := range cs {
				c.v += c.d
				if _, err := ap.Append(0, c.ls, next.UnixMilli(), c.v); err != nil {
					_ = ap.Rollback()
					return err
				}
			}
		}
		return ap.Commit()
	}
	if err := appendUntil(time.Now()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-tick.C:
				if err := appendUntil(now); err != nil {
					t.Errorf("append: %v", err)
					return
				}
			}
		}
	}()
	return func() { cancel(); <-done }
}

func sloObject(name, service, objective, extra string) *unstructured.Unstructured {
	doc := fmt.Sprintf(`apiVersion: qsp.dev/v1alpha1
kind: SLO
metadata: {name: %s, namespace: default}
spec:
  service: %s
  category: quality
  objective: %s
  window: 1h
  indicator:
    ratio:
      bad: sum(rate(req_total{svc=%q,code="500"}[{{.window}}]))
      total: sum(rate(req_total{svc=%q}[{{.window}}]))
  alerting:
    page:
      windows: [{long: 10m, short: 5m, factor: 10}]
    ticket:
      disabled: true
%s`, name, service, objective, service, service, extra)
	u := &unstructured.Unstructured{}
	if err := yaml.NewYAMLOrJSONDecoder(strings.NewReader(doc), 4096).Decode(&u.Object); err != nil {
		panic(err)
	}
	return u
}

func status(t testing.TB, dyn dynamic.Interface, gvr schema.GroupVersionResource, ns, name string) map[string]any {
	t.Helper()
	u, err := dyn.Resource(gvr).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		t.Fatal(err)
	}
	s, _ := u.Object["status"].(map[string]any)
	return s
}

func condition(s map[string]any, typ string) map[string]any {
	l, _ := s["conditions"].([]any)
	for _, c := range l {
		if m, ok := c.(map[string]any); ok && m["type"] == typ {
			return m
		}
	}
	return nil
}

// TestController runs QSP in controller mode against a real
// kube-apiserver and etcd, with the chart's RBAC and a service-account
// token.
func TestController(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Kubernetes control plane")
	}
	c := startCluster(t)
	dir := t.TempDir()
	saCfg, kubeconfig := c.saConfig(t, dir)
	ctx := context.Background()

	// The chart's configuration turns controller mode on with the kinds
	// its RBAC grants: the same section this test configures below.
	if err := os.WriteFile(filepath.Join(dir, "chart-qsp.yaml"), []byte(c.config), 0o600); err != nil {
		t.Fatal(err)
	}
	chartCfg, err := app.LoadConfig(filepath.Join(dir, "chart-qsp.yaml"))
	if err != nil {
		t.Fatalf("the chart's qsp.yaml: %v", err)
	}
	if k := chartCfg.Kubernetes; !k.Enabled || !slices.Contains(k.Kinds, "SLO") || !slices.Contains(k.Kinds, "Sloth") || !slices.Contains(k.Kinds, "Pyrra") {
		t.Errorf("the chart's kubernetes section: got %+v, want enabled with SLO, Sloth and Pyrra", k)
	}

	a, stopQSP := startQSP(t, dir, kubeconfig, []string{"Service", "SLO", "Policy", "Gate", "Playbook", "Sloth", "Pyrra"}, 500*time.Millisecond)
	defer stopQSP()
	stopPush := push(t, a, []series{{"checkout", 99, 1}, {"search", 50, 50}, {"catalog", 199, 1}})
	defer stopPush()
	externaltest.Eventually(t, 60*time.Second, 100*time.Millisecond, func() bool { return a.Kube().Synced() }, "the controller did not sync")

	svc := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "qsp.dev/v1alpha1", "kind": "Service",
		"metadata": map[string]any{"name": "checkout", "namespace": "default"},
		"spec":     map[string]any{"owner": "team-checkout"},
	}}
	search := svc.DeepCopy()
	search.SetName("search")
	for _, o := range []*unstructured.Unstructured{svc, search} {
		if _, err := c.dyn.Resource(svcGVR).Namespace("default").Create(ctx, o, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// 1% bad against 98%: half the budget left, no page. 50% bad against
	// 99%: a burn rate of 50, the page fires.
	slos := c.dyn.Resource(sloGVR).Namespace("default")
	created := time.Now()
	if _, err := slos.Create(ctx, sloObject("checkout-availability", "checkout", "98", ""), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := slos.Create(ctx, sloObject("search-availability", "search", "99", ""), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	t.Run("status", func(t *testing.T) {
		var s map[string]any
		externaltest.Eventually(t, 30*time.Second, 100*time.Millisecond, func() bool {
			s = status(t, c.dyn, sloGVR, "default", "checkout-availability")
			return s["state"] == "ok" && s["budget"] == "50.0%"
		}, "checkout-availability status: got %v, want state ok and budget 50.0%%", s)
		t.Logf("status after %s: %v", time.Since(created).Round(time.Millisecond), s)
		if v := condition(s, "Valid"); v["status"] != "True" {
			t.Errorf("Valid: got %v, want True", v)
		}
		if r := condition(s, "Ready"); r["status"] != "True" {
			t.Errorf("Ready: got %v, want True", r)
		}
		if sli, _ := s["sli"].(float64); sli != 0.99 {
			t.Errorf("sli: got %v, want 0.99", s["sli"])
		}
		if s["lastEvaluation"] == nil || s["burnRates"] == nil {
			t.Errorf("got %v, want lastEvaluation and burnRates", s)
		}
		// Within two evaluation cycles (2 × 500ms) of QSP's first
		// evaluation, plus the reload: bounded generously.
		if d := time.Since(created); d > 15*time.Second {
			t.Errorf("status after %s, want within 15s", d)
		}
	})

	t.Run("page raises a Warning event", func(t *testing.T) {
		var got []string
		externaltest.Eventually(t, 30*time.Second, 200*time.Millisecond, func() bool {
			evs, err := c.cs.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=search-availability"})
			if err != nil {
				t.Fatal(err)
			}
			got = got[:0]
			for _, e := range evs.Items {
				got = append(got, e.Type+"/"+e.Reason+": "+e.Message)
				if e.Type == corev1.EventTypeWarning && e.Reason == "PageFiring" && e.Source.Component == "qsp" {
					return true
				}
			}
			return false
		}, "events of search-availability: got %v, want a Warning PageFiring (status %v)", got, status(t, c.dyn, sloGVR, "default", "search-availability"))
		s := status(t, c.dyn, sloGVR, "default", "search-availability")
		if s["state"] != "firing" {
			t.Errorf("search-availability state: got %v, want firing", s["state"])
		}
	})

	t.Run("invalid resource", func(t *testing.T) {
		bad := sloObject("broken", "checkout", "100", "")
		if _, err := slos.Create(ctx, bad, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// The message is what `qsp validate` prints for the same object
		// in a file, without the file position.
		doc := strings.Replace(strings.Replace(mustYAML(t, bad), "apiVersion: qsp.dev/v1alpha1", "apiVersion: qsp/v1", 1), "namespace: default", "", 1)
		_, diags := spec.LoadBytes("broken.yaml", []byte(doc))
		var want string
		for _, d := range diags.Errors() {
			if d.Field == "spec.objective" {
				want = d.Object + ": " + d.Field + ": " + d.Message
			}
		}
		if want == "" {
			t.Fatalf("spec.LoadBytes found no objective error in %s: %v", doc, diags)
		}
		var v map[string]any
		externaltest.Eventually(t, 15*time.Second, 100*time.Millisecond, func() bool {
			v = condition(status(t, c.dyn, sloGVR, "default", "broken"), "Valid")
			return v["status"] == "False"
		}, "broken: Valid got %v, want False", v)
		if v["message"] != want {
			t.Errorf("Valid message:\n got %q\nwant %q", v["message"], want)
		}
		if a.Specs().SLO("broken") != nil {
			t.Error("the invalid SLO was loaded")
		}
		if a.Specs().SLO("checkout-availability") == nil {
			t.Error("the valid SLOs were unloaded with the invalid one")
		}
	})

	t.Run("edit is evaluated within 2s", func(t *testing.T) {
		cur, err := slos.Get(ctx, "checkout-availability", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// 1% bad against 99.5%: the budget is overspent twice.
		if err := unstructured.SetNestedField(cur.Object, 99.5, "spec", "objective"); err != nil {
			t.Fatal(err)
		}
		edited, err := slos.Update(ctx, cur, metav1.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		var s map[string]any
		externaltest.Eventually(t, 10*time.Second, 50*time.Millisecond, func() bool {
			s = status(t, c.dyn, sloGVR, "default", "checkout-availability")
			return fmt.Sprint(s["observedGeneration"]) == fmt.Sprint(edited.GetGeneration()) && s["budget"] == "-100.0%"
		}, "after the edit: got %v, want generation %d and budget -100.0%%", s, edited.GetGeneration())
		d := time.Since(start)
		t.Logf("edit evaluated and written after %s", d.Round(time.Millisecond))
		if d > 2*time.Second {
			t.Errorf("edit evaluated after %s, want within 2s", d)
		}
	})

	t.Run("sloth resource", func(t *testing.T) {
		psl := &unstructured.Unstructured{}
		doc := `apiVersion: sloth.slok.dev/v1
kind: PrometheusServiceLevel
metadata: {name: catalog, namespace: default}
spec:
  service: catalog
  slos:
    - name: availability
      objective: 99
      sli:
        events:
          errorQuery: sum(rate(req_total{svc="catalog",code="500"}[{{.window}}]))
          totalQuery: sum(rate(req_total{svc="catalog"}[{{.window}}]))
      alerting:
        name: CatalogAvailability
        pageAlert: {disable: true}
        ticketAlert: {disable: true}
`
		if err := yaml.NewYAMLOrJSONDecoder(strings.NewReader(doc), 4096).Decode(&psl.Object); err != nil {
			t.Fatal(err)
		}
		if _, err := c.dyn.Resource(slothGVR).Namespace("default").Create(ctx, psl, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		externaltest.Eventually(t, 60*time.Second, 200*time.Millisecond, func() bool {
			sts := a.Snapshots().Snapshot().SLO("catalog-availability")
			return len(sts) > 0 && sts[0].State == "ok" && sts[0].SLI != nil && *sts[0].SLI > 0.99
		}, "the Sloth SLO catalog-availability was not evaluated")
		// Sloth's status is Sloth's: QSP writes none unless configured.
		time.Sleep(1500 * time.Millisecond)
		if s := status(t, c.dyn, slothGVR, "default", "catalog"); s != nil {
			t.Errorf("QSP wrote the Sloth resource's status: %v", s)
		}
	})

	t.Run("pyrra resource", func(t *testing.T) {
		slo := &unstructured.Unstructured{}
		doc := `apiVersion: pyrra.dev/v1alpha1
kind: ServiceLevelObjective
metadata: {name: catalog-errors, namespace: default}
spec:
  target: "99"
  window: 1d
  indicator:
    ratio:
      errors:
        metric: req_total{svc="catalog",code="500"}
      total:
        metric: req_total{svc="catalog"}
`
		if err := yaml.NewYAMLOrJSONDecoder(strings.NewReader(doc), 4096).Decode(&slo.Object); err != nil {
			t.Fatal(err)
		}
		if _, err := c.dyn.Resource(pyrraGVR).Namespace("default").Create(ctx, slo, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		externaltest.Eventually(t, 60*time.Second, 200*time.Millisecond, func() bool {
			sts := a.Snapshots().Snapshot().SLO("catalog-errors")
			return len(sts) > 0 && sts[0].State == "ok" && sts[0].SLI != nil && *sts[0].SLI > 0.99
		}, "the Pyrra SLO catalog-errors was not evaluated")
		// Pyrra's status is Pyrra's: QSP writes none unless configured.
		time.Sleep(1500 * time.Millisecond)
		if s := status(t, c.dyn, pyrraGVR, "default", "catalog-errors"); s != nil {
			t.Errorf("QSP wrote the Pyrra resource's status: %v", s)
		}
	})

	t.Run("delete removes the SLO", func(t *testing.T) {
		if err := slos.Delete(ctx, "search-availability", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		externaltest.Eventually(t, 10*time.Second, 100*time.Millisecond, func() bool {
			return a.Specs().SLO("search-availability") == nil && len(a.Snapshots().Snapshot().SLO("search-availability")) == 0
		}, "search-availability still loaded after its delete")
		if a.Specs().SLO("checkout-availability") == nil {
			t.Error("checkout-availability gone with search-availability")
		}
	})

	t.Run("outside the chart's RBAC is refused", func(t *testing.T) {
		sa, err := kubernetes.NewForConfig(saCfg)
		if err != nil {
			t.Fatal(err)
		}
		_, err = sa.CoreV1().Secrets(namespace).List(ctx, metav1.ListOptions{})
		if !apierrors.IsForbidden(err) {
			t.Errorf("list secrets with the service account: got %v, want 403 Forbidden", err)
		}
		sad, err := dynamic.NewForConfig(saCfg)
		if err != nil {
			t.Fatal(err)
		}
		// The chart grants list and watch, not get or update, of specs.
		if _, err := sad.Resource(sloGVR).Namespace("default").Update(ctx, sloObject("checkout-availability", "checkout", "90", ""), metav1.UpdateOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("update an SLO with the service account: got %v, want 403 Forbidden", err)
		}
		if _, err := sad.Resource(sloGVR).Namespace("default").List(ctx, metav1.ListOptions{}); err != nil {
			t.Errorf("list SLOs with the service account: %v", err)
		}
	})
}

func mustYAML(t testing.TB, u *unstructured.Unstructured) string {
	t.Helper()
	b, err := yamlMarshal(u.Object)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
