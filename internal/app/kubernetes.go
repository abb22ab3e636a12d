package app

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/kube"
	"github.com/qsp-dev/qsp/internal/spec"
)

func init() { componentBuilders = append(componentBuilders, buildKubernetes) }

// KubernetesConfig is controller mode: QSP reads its custom resources
// (qsp.dev/v1alpha1) and, opt-in, Sloth's and Pyrra's from a cluster,
// loads them with the spec files and writes their status.
type KubernetesConfig struct {
	// Enabled turns controller mode on.
	Enabled bool `yaml:"enabled"`
	// Kubeconfig is a kubeconfig file; empty uses the in-cluster service
	// account.
	Kubeconfig string `yaml:"kubeconfig"`
	// Namespaces to watch; empty watches all (the chart's ClusterRole).
	Namespaces []string `yaml:"namespaces"`
	// LabelSelector filters the resources, e.g. "team=payments".
	LabelSelector string `yaml:"labelSelector"`
	// Kinds to watch: SLO, Service, Policy, Gate, Playbook (the default
	// is all five) and, opt-in, Sloth (sloth.slok.dev/v1
	// PrometheusServiceLevel) and Pyrra (pyrra.dev/v1alpha1
	// ServiceLevelObjective).
	Kinds []string `yaml:"kinds"`
	// WriteForeignStatus lets QSP write status conditions on Sloth and
	// Pyrra resources. Off by default: their status is their tool's.
	WriteForeignStatus bool `yaml:"writeForeignStatus"`
	// StatusInterval is the least time between two status writes of one
	// resource when only evaluation results changed. Default 1m.
	StatusInterval spec.Duration `yaml:"statusInterval"`
	// LeaderElection elects the one replica that writes statuses and
	// events with a Lease. Default true.
	LeaderElection *bool `yaml:"leaderElection"`
	// LeaseNamespace holds the Lease; default $POD_NAMESPACE, else the
	// service account's namespace.
	LeaseNamespace string `yaml:"leaseNamespace"`
	// LeaseName names the Lease; default qsp-status-writer.
	LeaseName string `yaml:"leaseName"`
	// QPS and Burst bound the client's requests; default 20 and 40.
	QPS   float64 `yaml:"qps"`
	Burst int     `yaml:"burst"`
}

// buildKubernetes starts controller mode: the cluster's resources join
// the spec files in every reload from now on.
func buildKubernetes(_ context.Context, a *App) error {
	kc := a.cfg.Kubernetes
	if !kc.Enabled {
		return nil
	}
	if a.cfg.file != "" {
		kc.Kubeconfig = resolveNear(a.cfg.file, kc.Kubeconfig)
	}
	elect := kc.LeaderElection == nil || *kc.LeaderElection
	ns := kc.LeaseNamespace
	if ns == "" {
		ns = os.Getenv("POD_NAMESPACE")
	}
	if ns == "" {
		if b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil {
			ns = string(b)
		}
	}
	id := os.Getenv("POD_NAME")
	if id == "" {
		id, _ = os.Hostname()
	}
	if a.members != nil {
		id = a.members.ID()
	}
	qps, burst := kc.QPS, kc.Burst
	if qps == 0 {
		qps, burst = 20, 40
	}
	ctrl, err := kube.New(kube.Options{
		Kubeconfig: kc.Kubeconfig, Namespaces: kc.Namespaces, LabelSelector: kc.LabelSelector,
		Kinds: kc.Kinds, WriteForeignStatus: kc.WriteForeignStatus, Files: a.cfg.Specs,
		Reload:         a.Reload,
		Snapshot:       func() *engine.Snapshot { return a.snapshots.Snapshot() },
		StatusInterval: kc.StatusInterval.D(),
		LeaderElection: elect, LeaseName: kc.LeaseName, LeaseNamespace: ns, Identity: id,
		QPS: float32(qps), Burst: burst,
		Logger: a.logger, Registerer: a.registry, Now: a.now,
	})
	if err != nil {
		return fmt.Errorf("kubernetes: %w", err)
	}
	a.kube = ctrl
	a.loadSpecs = func() (*spec.Set, spec.Diagnostics) { return ctrl.Load(a.cfg.Specs) }
	a.onReload = append(a.onReload, ctrl.Applied)
	a.onTransitions = append(a.onTransitions, ctrl.OnTransitions)
	a.runners = append(a.runners, runner{name: "kubernetes", run: ctrl.Run})
	return nil
}

func resolveNear(configFile, p string) string {
	if p == "" {
		return p
	}
	return resolve(filepath.Dir(configFile), p)
}
