package app

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLoadConfig: any bytes as qsp.yaml give a configuration or an error
// naming the file, never a panic; what loads also normalizes or says why
// not.
func FuzzLoadConfig(f *testing.F) {
	for _, seed := range []string{
		"listen: 127.0.0.1:8080\ndataDir: data\nspecs: [specs]\n",
		"source: {mode: remote, remote: {url: \"http://127.0.0.1:9090\", timeout: 5s}}\nevaluation: {interval: 15s}\n",
		"store: {driver: postgres, dsnFile: dsn}\ncluster: {replicaID: r1, leaseTTL: 10s}\n",
		"auth:\n  tokens: [{name: ci, role: operator, sha256: \"" + strings.Repeat("ab", 32) + "\"}]\n  rateLimit: {perSecond: 5, burst: 10}\n",
		"alerting: {webhooks: [{name: hook, url: \"http://127.0.0.1:1/x\"}]}\nplaybooks: {allowlist: [\"http://127.0.0.1:9099/\"]}\n",
		"listen: [1, 2]\n", "evaluation: {interval: -5s}\n", "store: {driver: oracle}\n", "\x00\xff", "a: &a [*a, *a]\n",
	} {
		f.Add([]byte(seed))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 {
			return
		}
		path := filepath.Join(dir, "qsp.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := LoadConfig(path)
		if err != nil {
			if !strings.Contains(err.Error(), "qsp.yaml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if err := c.Normalize(); err != nil && !strings.HasPrefix(err.Error(), "config: ") {
			t.Fatalf("normalize error without the config: prefix: %v", err)
		}
	})
}
