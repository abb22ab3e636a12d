package kube_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

var (
	kubeBench  = flag.Bool("kube.bench", false, "run the 1,000-resource controller measurement (TestKubeBench)")
	kubeN      = flag.Int("kube.n", 1000, "SLO resources for -kube.bench")
	kubeReport = flag.String("kube.report", "", "write TestKubeBench's figures to this file")
	kubeQPS    = flag.Float64("kube.qps", 0, "QSP's client QPS for -kube.bench (0: the default, 20)")
)

// TestKubeBench measures controller mode with many resources against the
// real API server: the time from creating each SLO to its status, the
// reload time with all of them, and the API requests per minute QSP makes
// once everything has settled (counted by the client's transport,
// qsp_kubernetes_requests_total, watches included). Figures are recorded
// in docs/benchmarks/kubernetes.md; it asserts nothing about time.
func TestKubeBench(t *testing.T) {
	if !*kubeBench {
		t.Skip("run with -kube.bench")
	}
	n := *kubeN
	c := startCluster(t)
	dir := t.TempDir()
	_, kubeconfig := c.saConfig(t, dir)
	qps = *kubeQPS
	defer func() { qps = 100 }()
	a, stopQSP := startQSP(t, dir, kubeconfig, nil, 5*time.Second)
	defer stopQSP()
	stopPush := push(t, a, []series{{"checkout", 99, 1}})
	defer stopPush()
	ctx := context.Background()
	for !a.Kube().Synced() {
		time.Sleep(100 * time.Millisecond)
	}
	svc := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "qsp.dev/v1alpha1", "kind": "Service",
		"metadata": map[string]any{"name": "checkout", "namespace": "default"},
		"spec":     map[string]any{"owner": "team"},
	}}
	if _, err := c.dyn.Resource(svcGVR).Namespace("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	slos := c.dyn.Resource(sloGVR).Namespace("default")
	created := make([]time.Time, n)
	start := time.Now()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				created[i] = time.Now()
				if _, err := slos.Create(ctx, sloObject(fmt.Sprintf("slo-%04d", i), "checkout", "98", ""), metav1.CreateOptions{}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	applied := time.Since(start)
	seen := map[string]time.Time{}
	deadline := time.Now().Add(10 * time.Minute)
	for len(seen) < n && time.Now().Before(deadline) {
		l, err := slos.List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		for _, u := range l.Items {
			s, _ := u.Object["status"].(map[string]any)
			if _, ok := seen[u.GetName()]; !ok && condition(s, "Ready")["status"] == "True" {
				seen[u.GetName()] = now
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	allStatus := time.Since(start)
	var lat []time.Duration
	for i := range n {
		if at, ok := seen[fmt.Sprintf("slo-%04d", i)]; ok {
			lat = append(lat, at.Sub(created[i]))
		}
	}
	slices.Sort(lat)
	if len(lat) < n {
		t.Errorf("%d of %d SLOs got a status", len(lat), n)
	}
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(p*float64(len(lat))))].Round(time.Millisecond)
	}
	// Reload with every resource: what a change costs.
	var reloads []time.Duration
	for range 5 {
		t0 := time.Now()
		if err := a.Reload(ctx); err != nil {
			t.Fatal(err)
		}
		reloads = append(reloads, time.Since(t0))
	}
	slices.Sort(reloads)
	// Steady state: let the writes after the reloads drain, then count a
	// minute of requests.
	time.Sleep(15 * time.Second)
	r0, byMethod0 := a.Kube().Requests(), a.Kube().RequestsByMethod()
	time.Sleep(time.Minute)
	r1, byMethod1 := a.Kube().Requests(), a.Kube().RequestsByMethod()
	var methods []string
	for k, v := range byMethod1 {
		if d := v - byMethod0[k]; d > 0 {
			methods = append(methods, fmt.Sprintf("%s %.0f", k, d))
		}
	}
	slices.Sort(methods)
	report := fmt.Sprintf(`| figure | value |
| --- | --- |
| SLO resources | %d (+1 Service), QSP client QPS %s |
| creating them (8 clients) | %s |
| until every one has status Ready=True | %s |
| create → status, per resource: p50 / p90 / p99 / max | %s / %s / %s / %s |
| reload with all of them (a.Reload, median of 5; min–max) | %s (%s–%s) |
| API requests per minute at steady state | %.0f (%s) |
`, n, qpsText(), applied.Round(time.Millisecond), allStatus.Round(time.Millisecond),
		pct(0.5), pct(0.9), pct(0.99), pct(1), reloads[2].Round(time.Millisecond), reloads[0].Round(time.Millisecond), reloads[4].Round(time.Millisecond),
		r1-r0, strings.Join(methods, ", "))
	t.Log("\n" + report)
	if *kubeReport != "" {
		if err := os.WriteFile(*kubeReport, []byte(report), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func qpsText() string {
	if *kubeQPS == 0 {
		return "20 (default)"
	}
	return fmt.Sprint(*kubeQPS)
}
