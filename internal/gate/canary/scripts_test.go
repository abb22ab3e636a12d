package canary

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/qsp-dev/qsp/internal/externaltest"
)

// TestReferenceScriptsReproduceTestdata reruns the reference scripts with
// Debian's scipy and R and checks that they produce the checked-in files
// byte for byte, so that the expected values are what the references say.
func TestReferenceScriptsReproduceTestdata(t *testing.T) {
	python := "/usr/bin/python3"
	if err := exec.Command(python, "-c", "import scipy, numpy").Run(); err != nil {
		externaltest.Missing(t, "Debian's python3-scipy (%s with scipy)", python)
	}
	rscript := externaltest.LookPath(t, "Rscript")
	dir := t.TempDir()
	for _, c := range []struct {
		cmd    *exec.Cmd
		out    string
		golden string
	}{
		{exec.Command(python, filepath.Join("testdata", "gen_scipy.py"), filepath.Join(dir, "scipy.json")), "scipy.json", "scipy.json"},
		{exec.Command(rscript, filepath.Join("testdata", "gen_r.R"), filepath.Join(dir, "r_wilcox.json")), "r_wilcox.json", "r_wilcox.json"},
		{exec.Command(python, filepath.Join("testdata", "gen_power.py"), filepath.Join(dir, "power.json")), "power.json", "power.json"},
	} {
		if out, err := c.cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", c.cmd.Args, err, out)
		}
		got, err := os.ReadFile(filepath.Join(dir, c.out))
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(filepath.Join("testdata", c.golden))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s regenerated differs from testdata/%s: rerun the script and review the change", c.out, c.golden)
		}
	}
}
