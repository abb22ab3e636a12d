package externaltest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"
)

// Kubernetes is a real control plane on loopback: etcd and kube-apiserver,
// both built from their Go modules by scripts/build-etcd.sh and
// scripts/build-kube-apiserver.sh (make deps). There is no kubelet,
// controller-manager or scheduler: objects are stored and served, pods do
// not run.
type Kubernetes struct {
	// URL is the API server's https address.
	URL string
	// AdminToken authenticates as system:masters, for test setup only.
	AdminToken string
	// CertDir holds the API server's self-signed serving certificate.
	CertDir string
}

// kubeBinary finds a binary built by the scripts: $QSP_KUBE_<NAME>, else
// the newest ${QSP_CACHE:-$HOME/.cache/qsp}/<name>-v*.
func kubeBinary(t testing.TB, name, env string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		return p
	}
	cache := os.Getenv("QSP_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "qsp")
	}
	matches, _ := filepath.Glob(filepath.Join(cache, name+"-v*"))
	sort.Strings(matches)
	for i := len(matches) - 1; i >= 0; i-- {
		if st, err := os.Stat(matches[i]); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return matches[i]
		}
	}
	Missing(t, "%s not built under %s (scripts/build-%s.sh)", name, cache, name)
	return ""
}

// StartKubernetes starts etcd and kube-apiserver on random loopback ports,
// with RBAC authorization, a static admin token and a service-account
// signing key (so TokenRequest issues real tokens), and waits until the
// API server is ready. Both are killed when the test ends.
func StartKubernetes(t testing.TB) *Kubernetes {
	t.Helper()
	etcd := kubeBinary(t, "etcd", "QSP_ETCD")
	apiserver := kubeBinary(t, "kube-apiserver", "QSP_KUBE_APISERVER")
	dir := t.TempDir()

	client, peer := FreeAddr(t), FreeAddr(t)
	ep := Start(t, etcd,
		"--name=qsp-test", "--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls=http://"+client, "--advertise-client-urls=http://"+client,
		"--listen-peer-urls=http://"+peer, "--initial-advertise-peer-urls=http://"+peer,
		"--initial-cluster=qsp-test=http://"+peer, "--log-level=warn",
		// A test cluster: fsync per write is not what is tested.
		"--unsafe-no-fsync")
	WaitHTTP(t, ep, "http://"+client+"/health", 30*time.Second)

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(dir, "sa.key")
	pubPath := filepath.Join(dir, "sa.pub")
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, keyPath, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))
	writeFile(t, pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}))
	token := fmt.Sprintf("admin-%x", key.PublicKey.N.Bytes()[:8])
	tokens := filepath.Join(dir, "tokens.csv")
	writeFile(t, tokens, []byte(token+`,admin,admin-uid,"system:masters"`+"\n"))

	addr := FreeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	certDir := filepath.Join(dir, "certs")
	ap := Start(t, apiserver,
		"--etcd-servers=http://"+client,
		"--advertise-address=127.0.0.1", "--bind-address=127.0.0.1", "--secure-port="+port,
		"--cert-dir="+certDir,
		"--token-auth-file="+tokens,
		"--authorization-mode=RBAC",
		"--service-account-key-file="+pubPath,
		"--service-account-signing-key-file="+keyPath,
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-cluster-ip-range=10.96.0.0/24",
		"--profiling=false",
		// The kubernetes Service's endpoints would point at loopback, which
		// the reconciler refuses; nothing here needs them.
		"--endpoint-reconciler-type=none",
		"--enable-priority-and-fairness=false",
		"--v=0")
	k := &Kubernetes{URL: "https://" + addr, AdminToken: token, CertDir: certDir}
	// Ready includes the RBAC bootstrap roles and the default namespace.
	deadline := time.Now().Add(90 * time.Second)
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	for {
		req, _ := http.NewRequest(http.MethodGet, k.URL+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if exited, err := ap.Exited(); exited {
			t.Fatalf("kube-apiserver exited: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("kube-apiserver not ready after 90s: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return k
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
