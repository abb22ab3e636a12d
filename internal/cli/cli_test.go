package cli

import (
	"bytes"
	"strings"
	"testing"
)

func run(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = Run(args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func TestExitCodes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		code    int
		stdout  string // substring
		stderr  string // substring
		noStout bool
	}{
		{"version", []string{"version"}, 0, "qsp dev", "", false},
		{"valid specs", []string{"validate", "../../examples"}, 0, "valid: 3 services, 19 SLOs", "", false},
		{"invalid spec", []string{"validate", "../spec/testdata/invalid/composite-cycle.yaml"}, 1, "cycle: journey-a -> journey-b -> journey-a", "", false},
		{"json output", []string{"validate", "-o", "json", "../spec/testdata/invalid/missing-service.yaml"}, 1, `"severity": "error"`, "", false},
		{"warnings only", []string{"validate", "../spec/testdata/invalid/never-fires.yaml"}, 0, "warning:", "", false},
		{"missing file", []string{"validate", "/nonexistent/specs"}, 2, "", "no such file or directory", true},
		{"no args", []string{"validate"}, 2, "", "requires at least 1 arg", true},
		{"unknown command", []string{"frobnicate"}, 2, "", "unknown command", true},
		{"import openslo", []string{"import", "openslo", "../spec/testdata/import/openslo/shop.yaml"}, 0, "kind: SLO", "warning:", false},
		{"import what cannot be converted", []string{"import", "openslo", "../spec/testdata/import/openslo/unconvertible.yaml"}, 1, "", "cannot be converted", false},
		{"import wrong format", []string{"import", "sloth", "../spec/testdata/import/openslo/shop.yaml"}, 1, "", "not Sloth prometheus/v1", true},
		{"import unknown format", []string{"import", "nagios", "x.yaml"}, 2, "", "unknown format", true},
		{"import pyrra", []string{"import", "pyrra", "../spec/testdata/import/pyrra/kinds.yaml"}, 1, "name: api-errors", "want a percentage", false},
		{"import with nothing convertible", []string{"import", "openslo", "../spec/testdata/import/openslo/empty-conversion.yaml"}, 1, "", "cannot be converted", false},
		{"import emits what converts beside a loss", []string{"import", "sloth", "../spec/testdata/import/sloth/camelcase-plugins.yaml"}, 1, "name: myservice-requests-availability", "SLI plugin", false},
		{"import openslo list form", []string{"import", "openslo", "../spec/testdata/import/openslo/list-form.yaml"}, 1, "kind: SLO", "not an object", false},
		{"validate warns of reserved alert labels", []string{"validate", "../spec/testdata/invalid/label-collision.yaml"}, 0, `label "category" is set by QSP on every alert`, "", false},
		{"validate pyrra", []string{"validate", "../spec/testdata/anchors/pyrra/prometheus-http.yaml"}, 0, "valid:", "", false},
		{"status without server", []string{"status", "--url", "http://127.0.0.1:1"}, 2, "", "connection refused", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := run(tc.args...)
			if code != tc.code {
				t.Errorf("exit code: got %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, stdout, stderr)
			}
			if tc.stdout != "" && !strings.Contains(stdout, tc.stdout) {
				t.Errorf("stdout lacks %q:\n%s", tc.stdout, stdout)
			}
			if tc.stderr != "" && !strings.Contains(stderr, tc.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tc.stderr, stderr)
			}
			if tc.noStout && stdout != "" {
				t.Errorf("stdout should be empty on error, got:\n%s", stdout)
			}
		})
	}
}
