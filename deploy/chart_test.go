// Package deploy_test checks the Helm chart (deploy/helm/qsp) with the
// real Helm, built from helm.sh/helm/v4 at the version scripts/helm.sh
// pins, and the plain manifests rendered from it (deploy/kubernetes).
package deploy_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/qsp-dev/qsp/internal/app"
	"github.com/qsp-dev/qsp/internal/externaltest"
)

const chart = "helm/qsp"

var helmOnce struct {
	sync.Once
	path string
	err  error
}

// helm runs the pinned Helm; it is built once per machine and cached.
func helm(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	helmOnce.Do(func() {
		out, err := exec.Command("../scripts/helm.sh", "--print-path").Output()
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				err = errors.New(err.Error() + ": " + string(ee.Stderr))
			}
			helmOnce.err = err
			return
		}
		helmOnce.path = strings.TrimSpace(string(out))
	})
	if helmOnce.err != nil {
		// Helm is built from the module proxy on first use; without it
		// (offline) it is a missing component: a skip, a failure in CI.
		externaltest.Missing(t, "helm: scripts/helm.sh could not build it: %v", helmOnce.err)
	}
	home := t.TempDir()
	cmd := exec.Command(helmOnce.path, args...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home, "HELM_CONFIG_HOME="+home, "HELM_DATA_HOME="+home)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// object is one rendered Kubernetes object.
type object map[string]any

func (o object) kind() string { s, _ := o["kind"].(string); return s }

func (o object) name() string { return str(o, "metadata", "name") }

// get walks o along keys (map keys, or list indices as ints).
func get(v any, keys ...any) any {
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				if o, ok2 := v.(object); ok2 {
					m = o
				} else {
					return nil
				}
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func str(v any, keys ...any) string { s, _ := get(v, keys...).(string); return s }

// render runs helm template and decodes every object.
func render(t *testing.T, args ...string) []object {
	t.Helper()
	out, stderr, err := helm(t, append([]string{"template", "qsp", chart, "--namespace", "qsp"}, args...)...)
	if err != nil {
		t.Fatalf("helm template %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return decode(t, out)
}

func decode(t *testing.T, s string) []object {
	t.Helper()
	dec := yaml.NewDecoder(strings.NewReader(s))
	var objs []object
	for {
		var o object
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			t.Fatalf("rendered YAML: %v", err)
		}
		if o != nil {
			objs = append(objs, o)
		}
	}
}

func find(objs []object, kind, name string) object {
	for _, o := range objs {
		if o.kind() == kind && (name == "" || o.name() == name) {
			return o
		}
	}
	return nil
}

func kinds(objs []object) map[string]int {
	k := map[string]int{}
	for _, o := range objs {
		k[o.kind()]++
	}
	return k
}

func TestHelmLint(t *testing.T) {
	for _, values := range []string{"", "ha", "remote", "monitoring", "networkpolicy", "controller"} {
		t.Run("values="+values, func(t *testing.T) {
			args := []string{"lint", "--strict", chart}
			if values != "" {
				args = append(args, "--values", filepath.Join("testdata/values", values+".yaml"))
			}
			out, stderr, err := helm(t, args...)
			if err != nil {
				t.Fatalf("helm %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr)
			}
		})
	}
}

// serverConfig loads the rendered qsp.yaml the way `qsp serve` does.
func serverConfig(t *testing.T, objs []object) *app.Config {
	t.Helper()
	cm := find(objs, "ConfigMap", "qsp-config")
	if cm == nil {
		t.Fatal("no ConfigMap qsp-config")
	}
	data := str(cm, "data", "qsp.yaml")
	var raw map[string]any
	if err := yaml.Unmarshal([]byte(data), &raw); err != nil {
		t.Fatalf("qsp.yaml: %v", err)
	}
	// Fields the server gains on other branches (controller mode, the
	// anonymous-admin switch) are checked once app.Config has them.
	if _, ok := raw["kubernetes"]; ok && !hasField(reflect.TypeOf(app.Config{}), "kubernetes") {
		delete(raw, "kubernetes")
	}
	if a, ok := raw["auth"].(map[string]any); ok {
		if _, ok := a["insecureAnonymousAdmin"]; ok && !hasField(reflect.TypeOf(app.AuthConfig{}), "insecureAnonymousAdmin") {
			delete(a, "insecureAnonymousAdmin")
		}
	}
	trimmed, err := yaml.Marshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "qsp.yaml")
	if err := os.WriteFile(path, trimmed, 0o600); err != nil {
		t.Fatal(err)
	}
	// Normalize checks the DSN file exists only through the environment.
	t.Setenv("QSP_POSTGRES_DSN", "postgres://unused")
	cfg, err := app.LoadConfig(path)
	if err != nil {
		t.Fatalf("the rendered qsp.yaml does not load: %v\n%s", err, data)
	}
	if err := cfg.Normalize(); err != nil {
		t.Fatalf("the rendered qsp.yaml is refused: %v\n%s", err, data)
	}
	return cfg
}

func hasField(typ reflect.Type, yamlName string) bool {
	for i := range typ.NumField() {
		if strings.Split(typ.Field(i).Tag.Get("yaml"), ",")[0] == yamlName {
			return true
		}
	}
	return false
}

// checkPod asserts what every rendering shares: the hardened pod, the
// real health endpoints, the config and data mounts.
func checkPod(t *testing.T, objs []object) object {
	t.Helper()
	d := find(objs, "Deployment", "qsp")
	if d == nil {
		t.Fatalf("no Deployment qsp; kinds %v", kinds(objs))
	}
	pod := get(d, "spec", "template", "spec")
	if got := get(pod, "securityContext", "runAsNonRoot"); got != true {
		t.Errorf("pod runAsNonRoot: got %v", got)
	}
	if got := get(pod, "securityContext", "seccompProfile", "type"); got != "RuntimeDefault" {
		t.Errorf("pod seccompProfile: got %v", got)
	}
	c := get(pod, "containers", 0)
	sc := get(c, "securityContext")
	for _, tc := range []struct {
		key  []any
		want any
	}{
		{[]any{"runAsNonRoot"}, true},
		{[]any{"runAsUser"}, 65532},
		{[]any{"readOnlyRootFilesystem"}, true},
		{[]any{"allowPrivilegeEscalation"}, false},
		{[]any{"capabilities", "drop", 0}, "ALL"},
		{[]any{"seccompProfile", "type"}, "RuntimeDefault"},
	} {
		if got := get(sc, tc.key...); got != tc.want {
			t.Errorf("container securityContext %v: got %v, want %v", tc.key, got, tc.want)
		}
	}
	if got := str(c, "livenessProbe", "httpGet", "path"); got != "/healthz" {
		t.Errorf("liveness probe: got %q, want /healthz", got)
	}
	if got := str(c, "readinessProbe", "httpGet", "path"); got != "/readyz" {
		t.Errorf("readiness probe: got %q, want /readyz", got)
	}
	mounts := map[string]string{}
	for _, m := range get(c, "volumeMounts").([]any) {
		mounts[str(m, "mountPath")] = str(m, "name")
	}
	if mounts["/etc/qsp/qsp.yaml"] != "config" || mounts["/var/lib/qsp"] != "data" {
		t.Errorf("mounts: got %v, want the config at /etc/qsp/qsp.yaml and data at /var/lib/qsp", mounts)
	}
	return d
}

func volume(d object, name string) any {
	for _, v := range get(d, "spec", "template", "spec", "volumes").([]any) {
		if str(v, "name") == name {
			return v
		}
	}
	return nil
}

func TestHelmTemplate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		args  []string
		check func(t *testing.T, objs []object, cfg *app.Config)
	}{
		{"defaults", nil, func(t *testing.T, objs []object, cfg *app.Config) {
			if cfg.Source.Mode != "embedded" || cfg.Store.Driver != "sqlite" || cfg.DataDir != "/var/lib/qsp" || cfg.Listen != "0.0.0.0:8080" {
				t.Errorf("config: got source %s, store %s, dataDir %s, listen %s", cfg.Source.Mode, cfg.Store.Driver, cfg.DataDir, cfg.Listen)
			}
			if find(objs, "PersistentVolumeClaim", "qsp-data") == nil || get(volume(find(objs, "Deployment", "qsp"), "data"), "persistentVolumeClaim", "claimName") != "qsp-data" {
				t.Error("the data directory is not on the PVC qsp-data")
			}
			// Every generated token's SHA-256 is in the configuration.
			sec := find(objs, "Secret", "qsp-tokens")
			if sec == nil {
				t.Fatal("no Secret qsp-tokens")
			}
			hashes := map[string]string{}
			for _, tok := range cfg.Auth.Tokens {
				hashes[tok.Name] = tok.SHA256
			}
			for _, name := range []string{"admin", "ingest", "metrics"} {
				raw, err := base64.StdEncoding.DecodeString(str(sec, "data", name))
				if err != nil || len(raw) < 32 {
					t.Errorf("token %s: %q is not a long base64 token (%v)", name, str(sec, "data", name), err)
					continue
				}
				sum := sha256.Sum256(raw)
				if got := hashes[name]; got != hex.EncodeToString(sum[:]) {
					t.Errorf("token %s: config has sha256 %s, the Secret's token hashes to %x", name, got, sum)
				}
			}
			for _, k := range []string{"ClusterRole", "ServiceMonitor", "NetworkPolicy"} {
				if kinds(objs)[k] != 0 {
					t.Errorf("%s rendered by default", k)
				}
			}
			if sa := find(objs, "ServiceAccount", "qsp"); sa == nil || sa["automountServiceAccountToken"] != false {
				t.Errorf("service account: got %v, want one without an automounted token", sa)
			}
		}},
		{"ha", []string{"--values", "testdata/values/ha.yaml"}, func(t *testing.T, objs []object, cfg *app.Config) {
			d := find(objs, "Deployment", "qsp")
			if get(d, "spec", "replicas") != 3 || str(d, "spec", "strategy", "type") != "RollingUpdate" {
				t.Errorf("deployment: got replicas %v, strategy %v", get(d, "spec", "replicas"), get(d, "spec", "strategy"))
			}
			if find(objs, "PersistentVolumeClaim", "") != nil || get(volume(d, "data"), "emptyDir") == nil {
				t.Error("replicas keep their data directory on a PVC, want an emptyDir")
			}
			if cfg.Store.Driver != "postgres" || cfg.Store.DSNFile != "/etc/qsp/secrets/store/dsn" {
				t.Errorf("store: got %+v", cfg.Store)
			}
			if str(volume(d, "store-dsn"), "secret", "secretName") != "qsp-postgres" {
				t.Errorf("store-dsn volume: got %v", volume(d, "store-dsn"))
			}
			r := cfg.Source.Remote
			if cfg.Source.Mode != "remote" || r.URL != "http://mimir-query-frontend.mimir:8080/prometheus" || r.TenantID != "team-a" ||
				r.BearerTokenFile != "/etc/qsp/secrets/remote/token" || r.TLS.CAFile != "/etc/qsp/secrets/remote/ca.crt" {
				t.Errorf("remote source: got %s %+v", cfg.Source.Mode, r)
			}
			if cfg.Evaluation.PersistInterval.D().String() != "1m0s" {
				t.Errorf("config values not merged: persistInterval %v", cfg.Evaluation.PersistInterval.D())
			}
		}},
		{"remote", []string{"--values", "testdata/values/remote.yaml"}, func(t *testing.T, objs []object, cfg *app.Config) {
			r := cfg.Source.Remote
			if r.BasicAuth == nil || r.BasicAuth.Username != "qsp" || r.BasicAuth.PasswordFile != "/etc/qsp/secrets/remote/password" || r.TLS.ServerName != "prometheus.monitoring.svc" {
				t.Errorf("remote source: got %+v (basic auth %+v)", r, r.BasicAuth)
			}
			if find(objs, "Secret", "qsp-tokens") != nil || len(cfg.Auth.Tokens) != 1 || cfg.Auth.Tokens[0].Role != "operator" {
				t.Errorf("tokens: got %+v, want only the listed one", cfg.Auth.Tokens)
			}
			d := find(objs, "Deployment", "qsp")
			if str(volume(d, "data"), "emptyDir", "sizeLimit") != "1Gi" {
				t.Errorf("data volume: got %v", volume(d, "data"))
			}
			if str(volume(d, "specs-0"), "configMap", "name") != "team-a.specs" {
				t.Errorf("spec ConfigMap volume: got %v", volume(d, "specs-0"))
			}
			if !strings.Contains(str(find(objs, "ConfigMap", "qsp-specs"), "data", "checkout.yaml"), "name: checkout") {
				t.Error("inline spec missing from qsp-specs")
			}
		}},
		{"monitoring", []string{"--values", "testdata/values/monitoring.yaml"}, func(t *testing.T, objs []object, _ *app.Config) {
			for _, k := range []string{"ServiceMonitor", "PodMonitor"} {
				m := find(objs, k, "qsp")
				if m == nil || m["apiVersion"] != "monitoring.coreos.com/v1" {
					t.Errorf("%s: got %v", k, m)
					continue
				}
				ep := get(m, "spec", map[string]string{"ServiceMonitor": "endpoints", "PodMonitor": "podMetricsEndpoints"}[k], 0)
				if str(ep, "path") != "/metrics" || str(ep, "authorization", "credentials", "name") != "qsp-tokens" || str(ep, "authorization", "credentials", "key") != "metrics" {
					t.Errorf("%s endpoint: got %v, want /metrics with the generated metrics token", k, ep)
				}
			}
			if str(find(objs, "ServiceMonitor", "qsp"), "metadata", "labels", "release") != "kube-prometheus-stack" {
				t.Error("ServiceMonitor labels not applied")
			}
		}},
		{"networkpolicy", []string{"--values", "testdata/values/networkpolicy.yaml"}, func(t *testing.T, objs []object, _ *app.Config) {
			np := find(objs, "NetworkPolicy", "qsp")
			if np == nil {
				t.Fatal("no NetworkPolicy")
			}
			if get(np, "spec", "ingress", 0, "ports", 0, "port") != "http" || get(np, "spec", "egress", 0, "ports", 0, "port") != 53 || get(np, "spec", "egress", 1, "ports", 0, "port") != 9093 {
				t.Errorf("NetworkPolicy spec: got %v", np["spec"])
			}
		}},
		{"controller", []string{"--values", "testdata/values/controller.yaml"}, func(t *testing.T, objs []object, _ *app.Config) {
			if n := kinds(objs); n["Role"] != 3 || n["RoleBinding"] != 3 || n["ClusterRole"] != 0 {
				t.Errorf("RBAC for two namespaces and the lease: got %v", n)
			}
			if sa := find(objs, "ServiceAccount", "qsp"); sa["automountServiceAccountToken"] != true {
				t.Error("controller mode without the service account token")
			}
			var k map[string]any
			if err := yaml.Unmarshal([]byte(str(find(objs, "ConfigMap", "qsp-config"), "data", "qsp.yaml")), &k); err != nil {
				t.Fatal(err)
			}
			kube := get(k, "kubernetes")
			if got := get(kube, "kinds"); !reflect.DeepEqual(got, []any{"Service", "SLO", "Policy", "Gate", "Playbook", "Sloth", "Pyrra"}) {
				t.Errorf("kubernetes.kinds: got %v", got)
			}
			if get(kube, "enabled") != true || str(kube, "labelSelector") != "qsp.dev/enabled=true" || !reflect.DeepEqual(get(kube, "namespaces"), []any{"team-a", "team-b"}) {
				t.Errorf("kubernetes: got %v", kube)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := render(t, tc.args...)
			checkPod(t, objs)
			tc.check(t, objs, serverConfig(t, objs))
		})
	}
}

// TestValuesRejected: the schema catches wrong types and typos, the
// templates the combinations QSP would refuse at start, each with a
// message naming the value.
func TestValuesRejected(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"replicas not a number", []string{"--set-string", "replicas=two"}, "at '/replicas': got string, want integer"},
		{"typo in a key", []string{"--set", "persistence.sise=1Gi"}, "additional properties 'sise' not allowed"},
		{"unknown role", []string{"--set", "auth.generate[0].name=x", "--set", "auth.generate[0].role=root"}, "/auth/generate/0/role"},
		{"bad hash", []string{"--set", "auth.tokens[0].name=ci", "--set", "auth.tokens[0].role=viewer", "--set", "auth.tokens[0].sha256=abc"}, "/auth/tokens/0/sha256"},
		{"bad source mode", []string{"--set", "source.mode=prometheus"}, "/source/mode"},
		{"replicas on SQLite", []string{"--set", "replicas=2"}, "replicas > 1 needs store.driver: postgres"},
		{"replicas on the embedded TSDB", []string{"--set", "replicas=2", "--set", "store.driver=postgres", "--set", "store.postgres.existingSecret=pg"}, "replicas > 1 needs source.mode: remote"},
		{"postgres without a DSN", []string{"--set", "store.driver=postgres"}, "store.postgres.existingSecret"},
		{"remote without a URL", []string{"--set", "source.mode=remote"}, "source.remote.url"},
		{"no token on 0.0.0.0", []string{"--set", "auth.generate=null"}, "needs a token"},
		{"existing Secret without a cluster", []string{"--set", "auth.existingSecret.name=tokens"}, "Secret qsp/tokens not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"template", "qsp", chart, "--namespace", "qsp"}, tc.args...)
			_, stderr, err := helm(t, args...)
			if err == nil {
				t.Fatalf("helm %s: rendered, want an error with %q", strings.Join(tc.args, " "), tc.want)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("helm %s: got %q, want an error with %q", strings.Join(tc.args, " "), stderr, tc.want)
			}
		})
	}
	// insecureAnonymousAdmin is the one way to run without tokens.
	objs := render(t, "--set", "auth.generate=null", "--set", "auth.insecureAnonymousAdmin=true")
	if !strings.Contains(str(find(objs, "ConfigMap", "qsp-config"), "data", "qsp.yaml"), "insecureAnonymousAdmin: true") {
		t.Error("auth.insecureAnonymousAdmin not rendered into qsp.yaml")
	}
}

// TestManifestsInSync re-renders deploy/kubernetes and compares.
func TestManifestsInSync(t *testing.T) {
	if _, _, err := helm(t, "version"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cmd := exec.Command("../scripts/manifests.sh", dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/manifests.sh: %v\n%s", err, out)
	}
	for _, f := range []string{"qsp.yaml", "qsp-controller.yaml"} {
		want, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join("kubernetes", f))
		if err != nil {
			t.Fatalf("%v (run make manifests)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("deploy/kubernetes/%s is not what the chart renders: run `make manifests` and commit the result", f)
		}
		objs := decode(t, string(got))
		checkPod(t, objs)
		serverConfig(t, objs)
	}
}

// TestRenderedConfigServes runs qsp serve with the configuration the
// chart renders by default: the probes' paths answer, and /metrics takes
// the generated metrics token the monitors send (so the chart's hashes
// are the ones the server checks) and refuses a request without one.
// Only the listen address, data directory and specs folder are moved to
// the test's loopback and temporary directories.
func TestRenderedConfigServes(t *testing.T) {
	objs := render(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "qsp.yaml")
	if err := os.WriteFile(cfgPath, []byte(str(find(objs, "ConfigMap", "qsp-config"), "data", "qsp.yaml")), 0o600); err != nil {
		t.Fatal(err)
	}
	specs := filepath.Join(dir, "specs")
	if err := os.MkdirAll(specs, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "qsp")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/qsp-dev/qsp/cmd/qsp").CombinedOutput(); err != nil {
		t.Fatalf("go build qsp: %v\n%s", err, out)
	}
	addr := externaltest.FreeAddr(t)
	base := "http://" + addr
	p := externaltest.Start(t, bin, "serve", "--config", cfgPath, "--listen", addr, "--external-url", base,
		"--data-dir", filepath.Join(dir, "data"), "--specs", specs)
	externaltest.WaitHTTP(t, p, base+"/readyz", 60*time.Second)

	token, err := base64.StdEncoding.DecodeString(str(find(objs, "Secret", "qsp-tokens"), "data", "metrics"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path, token string
		want        int
	}{
		{"/healthz", "", http.StatusOK},
		{"/readyz", "", http.StatusOK},
		{"/metrics", "", http.StatusUnauthorized},
		{"/metrics", "qsp_not-a-token", http.StatusUnauthorized},
		{"/metrics", string(token), http.StatusOK},
	} {
		req, _ := http.NewRequest(http.MethodGet, base+tc.path, nil)
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", tc.path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("GET %s (token %t): got %d, want %d", tc.path, tc.token != "", resp.StatusCode, tc.want)
		}
	}
}
