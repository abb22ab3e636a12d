package cli

import (
	"bytes"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qsp-dev/qsp/internal/api"
	"github.com/qsp-dev/qsp/internal/app"
)

// TestTokenNew: the printed configuration entry loads as a server
// configuration whose auth accepts the printed token with its role.
func TestTokenNew(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := Run([]string{"token", "new", "--name", "ci-pipeline", "--role", "operator"}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	out := stdout.String()
	var tok, hash string
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, "token:  "); ok {
			tok = v
		}
		if v, ok := strings.CutPrefix(line, "sha256: "); ok {
			hash = v
		}
	}
	if !strings.HasPrefix(tok, "qsp_") || len(tok) < 40 || api.HashToken(tok) != hash {
		t.Fatalf("token %q hash %q:\n%s", tok, hash, out)
	}
	if !strings.Contains(stderr.String(), "stores only its hash") {
		t.Errorf("no warning to keep the token: %q", stderr.String())
	}
	cfgText := out[strings.Index(out, "auth:"):]
	path := filepath.Join(t.TempDir(), "qsp.yaml")
	if err := os.WriteFile(path, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := app.LoadConfig(path)
	if err != nil {
		t.Fatalf("the printed entry does not load: %v\n%s", err, cfgText)
	}
	if err := cfg.Normalize(); err != nil {
		t.Fatal(err)
	}
	tc := cfg.Auth.Tokens[0]
	a, err := api.NewAuth(api.AuthOptions{Tokens: []api.Token{{Name: tc.Name, Role: api.Role(tc.Role), SHA256: tc.SHA256}}})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	p, err := a.Authenticate(req)
	if err != nil || p.Name != "ci-pipeline" || p.Role != api.RoleOperator {
		t.Errorf("principal %+v, %v", p, err)
	}
	// Two tokens differ.
	var again bytes.Buffer
	Run([]string{"token", "new"}, nil, &again, &bytes.Buffer{})
	if strings.Contains(again.String(), tok) {
		t.Error("the same token twice")
	}
}

func TestTokenNewBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"token", "new", "--role", "root"},
		{"token", "new", "--role", "none"},
		{"token", "new", "--name", "a: b"},
		{"token", "new", "--name", " "},
	} {
		var stderr bytes.Buffer
		if code := Run(args, nil, &bytes.Buffer{}, &stderr); code != exitError || !strings.Contains(stderr.String(), "--") {
			t.Errorf("%v: exit %d, %q", args, code, stderr.String())
		}
	}
}

func TestTokenHash(t *testing.T) {
	sum, err := exec.LookPath("sha256sum")
	if err != nil {
		t.Skip("sha256sum not installed")
	}
	for _, tok := range []string{"qsp_abcdef", "with spaces inside"} {
		var stdout, stderr bytes.Buffer
		if code := Run([]string{"token", "hash"}, strings.NewReader(tok+"\n"), &stdout, &stderr); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
		cmd := exec.Command(sum)
		cmd.Stdin = strings.NewReader(tok)
		ref, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		if got, want := strings.TrimSpace(stdout.String()), strings.Fields(string(ref))[0]; got != want {
			t.Errorf("hash of %q: %s, sha256sum says %s", tok, got, want)
		}
	}
	for name, in := range map[string]string{"empty": "", "blank": " \n\n", "two lines": "a\nb\n", "huge": strings.Repeat("x", 5000)} {
		var stderr bytes.Buffer
		if code := Run([]string{"token", "hash"}, strings.NewReader(in), &bytes.Buffer{}, &stderr); code != exitError || !strings.Contains(stderr.String(), "stdin") {
			t.Errorf("%s: exit %d, %q", name, code, stderr.String())
		}
	}
}
