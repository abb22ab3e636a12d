package image_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qsp-dev/qsp/internal/externaltest"
	"github.com/qsp-dev/qsp/internal/image"
)

// goBuild compiles pkg the way `make image` does: static, trimmed, with
// ldflags. The image tool is built too rather than called in-process: it
// is what `make image` runs, and gzip under the race detector is slow.
func goBuild(t *testing.T, pkg, ldflags string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", ldflags, "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// mkimage runs the image tool as `make image` does.
func mkimage(t *testing.T, tool, bin, out string) {
	t.Helper()
	cmd := exec.Command(tool, "-binary", bin, "-version", "v9.8.7-test", "-revision", testRevision, "-source", "https://github.com/qsp-dev/qsp", "-out", out)
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=1796619600") // 2026-12-07T05:00:00Z
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mkimage: %v\n%s", err, b)
	}
}

const testRevision = "0123456789abcdef0123456789abcdef01234567"

// TestImageReadBySkopeo builds the image as `make image` does and reads it
// back with Debian's skopeo: the configuration, the labels and a layer
// holding a binary that runs.
func TestImageReadBySkopeo(t *testing.T) {
	skopeo := externaltest.LookPath(t, "skopeo")
	bin := goBuild(t, "github.com/qsp-dev/qsp/cmd/qsp", "-s -w -X github.com/qsp-dev/qsp/internal/cli.version=v9.8.7-test")
	tool := goBuild(t, "github.com/qsp-dev/qsp/internal/tools/mkimage", "")
	dir := t.TempDir()
	out := filepath.Join(dir, "qsp-image.oci.tar")
	mkimage(t, tool, bin, out)
	created := time.Date(2026, 12, 7, 5, 0, 0, 0, time.UTC)

	raw, err := exec.Command(skopeo, "inspect", "--config", "oci-archive:"+out).Output()
	if err != nil {
		t.Fatalf("skopeo inspect --config: %v\n%s", err, stderrOf(err))
	}
	var cfg struct {
		Created      time.Time `json:"created"`
		Architecture string    `json:"architecture"`
		OS           string    `json:"os"`
		Config       struct {
			User         string
			Entrypoint   []string
			Cmd          []string
			WorkingDir   string
			ExposedPorts map[string]struct{}
			Labels       map[string]string
		} `json:"config"`
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatalf("skopeo's config: %v\n%s", err, raw)
	}
	c := cfg.Config
	if c.User != "65532:65532" {
		t.Errorf("user: got %q, want 65532:65532", c.User)
	}
	if strings.Join(c.Entrypoint, " ") != "/qsp" {
		t.Errorf("entrypoint: got %q, want [/qsp]", c.Entrypoint)
	}
	if strings.Join(c.Cmd, " ") != "serve --config /etc/qsp/qsp.yaml" {
		t.Errorf("cmd: got %q", c.Cmd)
	}
	if c.WorkingDir != "/var/lib/qsp" {
		t.Errorf("working dir: got %q, want /var/lib/qsp", c.WorkingDir)
	}
	if _, ok := c.ExposedPorts["8080/tcp"]; !ok {
		t.Errorf("exposed ports: got %v, want 8080/tcp", c.ExposedPorts)
	}
	if !cfg.Created.Equal(created) || cfg.OS != "linux" {
		t.Errorf("created/os: got %v %s, want %v linux", cfg.Created, cfg.OS, created)
	}
	for k, want := range map[string]string{
		"org.opencontainers.image.version":  "v9.8.7-test",
		"org.opencontainers.image.revision": testRevision,
		"org.opencontainers.image.source":   "https://github.com/qsp-dev/qsp",
		"org.opencontainers.image.created":  "2026-12-07T05:00:00Z",
		"org.opencontainers.image.title":    "qsp",
		"org.opencontainers.image.licenses": "NOASSERTION",
	} {
		if got := c.Labels[k]; got != want {
			t.Errorf("label %s: got %q, want %q", k, got, want)
		}
	}

	// skopeo copies the layers out; the binary in them runs.
	copied := filepath.Join(dir, "copied")
	if b, err := exec.Command(skopeo, "copy", "--quiet", "oci-archive:"+out, "dir:"+copied).CombinedOutput(); err != nil {
		t.Fatalf("skopeo copy: %v\n%s", err, b)
	}
	files := layerFiles(t, copied)
	for name, want := range map[string]string{
		"etc/passwd":                        "nonroot:x:65532:65532:",
		"etc/group":                         "nonroot:x:65532:",
		"etc/ssl/certs/ca-certificates.crt": "-----BEGIN CERTIFICATE-----",
	} {
		f, ok := files[name]
		if !ok {
			t.Errorf("%s: not in any layer", name)
			continue
		}
		if !bytes.Contains(f.data, []byte(want)) {
			t.Errorf("%s: no %q in %.200q", name, want, f.data)
		}
	}
	if d, ok := files["var/lib/qsp/"]; !ok || d.hdr.Uid != 65532 || d.hdr.Gid != 65532 {
		t.Errorf("var/lib/qsp/: got %+v, want a directory owned by 65532:65532", d.hdr)
	}
	q, ok := files["qsp"]
	if !ok {
		t.Fatal("qsp: not in any layer")
	}
	if q.hdr.Mode&0o111 == 0 {
		t.Errorf("qsp: mode %o is not executable", q.hdr.Mode)
	}
	extracted := filepath.Join(dir, "qsp")
	if err := os.WriteFile(extracted, q.data, 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := exec.Command(extracted, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("qsp version from the image: %v\n%s", err, got)
	}
	if !strings.HasPrefix(string(got), "qsp v9.8.7-test ") {
		t.Errorf("qsp version: got %q, want qsp v9.8.7-test ...", got)
	}

	// Reproducible: the same inputs give the same archive, byte for byte.
	again := filepath.Join(dir, "again.oci.tar")
	mkimage(t, tool, bin, again)
	a, _ := os.ReadFile(out)
	b, _ := os.ReadFile(again)
	if !bytes.Equal(a, b) {
		t.Errorf("two builds of the same inputs differ (%d and %d bytes)", len(a), len(b))
	}
}

type layerFile struct {
	hdr  tar.Header
	data []byte
}

// layerFiles reads every gzip tar layer of a skopeo dir: copy.
func layerFiles(t *testing.T, dir string) map[string]layerFile {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]layerFile{}
	layers := 0
	for _, e := range entries {
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(f)
		if err != nil { // the manifest, the config, the version file
			f.Close()
			continue
		}
		layers++
		tr := tar.NewReader(zr)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("layer %s: %v", e.Name(), err)
			}
			data, err := io.ReadAll(io.LimitReader(tr, 256<<20))
			if err != nil {
				t.Fatalf("layer %s: %s: %v", e.Name(), h.Name, err)
			}
			files[h.Name] = layerFile{hdr: *h, data: data}
		}
		f.Close()
	}
	if layers != 2 {
		t.Errorf("layers: got %d, want 2 (base and binary)", layers)
	}
	return files
}

func stderrOf(err error) []byte {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.Stderr
	}
	return nil
}

func TestBuildRefusesMissingInputs(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "qsp")
	if err := os.WriteFile(bin, []byte("not really"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		opts image.Options
		want string
	}{
		{"no binary", image.Options{Version: "v1"}, "no binary"},
		{"no version", image.Options{Binary: bin}, "no version"},
		{"binary missing", image.Options{Binary: filepath.Join(dir, "nope"), Version: "v1"}, "read binary"},
		{"CA bundle missing", image.Options{Binary: bin, Version: "v1", CACerts: filepath.Join(dir, "nope.crt")}, "read CA certificates"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := image.Build(tc.opts, filepath.Join(dir, "out.tar"))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// TestDockerfileMatchesImage keeps the Dockerfile for users' pipelines
// and the image `make image` builds alike: same user, entrypoint,
// command, working directory, environment and port.
func TestDockerfileMatchesImage(t *testing.T) {
	data, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	// The final stage: everything after the last FROM.
	df := string(data)
	final := df[strings.LastIndex(df, "\nFROM "):]
	if !strings.HasPrefix(final, "\nFROM scratch") {
		t.Errorf("final stage: got %q, want FROM scratch", strings.SplitN(final, "\n", 3)[1])
	}
	cfg := image.ImageConfig(image.Options{Version: "v1"})
	quote := func(ss []string) string {
		b, _ := json.Marshal(ss)
		return strings.ReplaceAll(string(b), ",", ", ")
	}
	for _, want := range []string{
		"USER " + cfg.User,
		"WORKDIR " + cfg.WorkingDir,
		"VOLUME " + image.DataDir,
		"EXPOSE " + image.Port,
		"ENTRYPOINT " + quote(cfg.Entrypoint),
		"CMD " + quote(cfg.Cmd),
		"ENV " + strings.Join(cfg.Env, " "),
	} {
		if !strings.Contains(final, "\n"+want+"\n") {
			t.Errorf("Dockerfile's final stage has no line %q", want)
		}
	}
	// The build stage writes the same passwd entry as the image's base layer.
	if !strings.Contains(df, "nonroot:x:65532:65532:nonroot:"+image.DataDir+":/sbin/nologin") {
		t.Error("Dockerfile: no passwd entry nonroot:x:65532:65532 with home " + image.DataDir)
	}
	for k := range image.Labels(image.Options{Version: "v1", Revision: "r", Source: "s"}) {
		if !strings.Contains(final, k+"=") {
			t.Errorf("Dockerfile has no label %s", k)
		}
	}
}
