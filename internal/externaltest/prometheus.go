package externaltest

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Prometheus is a real Prometheus started for a test.
type Prometheus struct {
	*Process
	// URL is its base URL, http://127.0.0.1:port.
	URL string
	// Dir holds its prometheus.yml and its TSDB (data/); files the
	// configuration names (rule files) can go next to it.
	Dir string
}

// StartPrometheus starts the Debian Prometheus with config as its
// prometheus.yml, its TSDB in a temporary directory, listening on a free
// 127.0.0.1 port, with flags added (feature flags, the remote-write
// receiver), and waits until it is ready. Under CI=true a missing
// Prometheus fails t; it is stopped when t ends.
func StartPrometheus(t testing.TB, config string, flags ...string) *Prometheus {
	t.Helper()
	bin := LookPath(t, "prometheus")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := FreeAddr(t)
	args := append([]string{"--config.file=" + cfg, "--storage.tsdb.path=" + filepath.Join(dir, "data"),
		"--web.listen-address=" + addr, "--log.level=warn"}, flags...)
	p := Start(t, bin, args...)
	url := "http://" + addr
	WaitHTTP(t, p, url+"/-/ready", 60*time.Second)
	return &Prometheus{Process: p, URL: url, Dir: dir}
}
