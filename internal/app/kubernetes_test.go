package app

import (
	"os"
	"strings"
	"testing"
)

func TestKubernetesConfigDecodes(t *testing.T) {
	path := t.TempDir() + "/qsp.yaml"
	writeConfig(t, path, `kubernetes:
  enabled: true
  kubeconfig: kube/config
  namespaces: [team-a]
  labelSelector: team=a
  kinds: [SLO, Service, Sloth]
  writeForeignStatus: false
  statusInterval: 2m
  leaderElection: false
  leaseNamespace: qsp
  qps: 5
  burst: 10
`)
	c, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	k := c.Kubernetes
	if !k.Enabled || k.QPS != 5 || k.Burst != 10 || k.LeaderElection == nil || *k.LeaderElection || strings.Join(k.Kinds, ",") != "SLO,Service,Sloth" || k.StatusInterval.D().Minutes() != 2 {
		t.Errorf("got %+v", k)
	}
	writeConfig(t, path, "kubernetes:\n  kinds: SLO\n")
	if _, err := LoadConfig(path); err == nil || !strings.Contains(err.Error(), "kubernetes.kinds") {
		t.Errorf("got %v, want an error at kubernetes.kinds", err)
	}
}

func writeConfig(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}
