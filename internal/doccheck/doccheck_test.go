package doccheck

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// kind is how a documented command is run.
type kind int

const (
	// run: the command runs to its end; its exit status and output are
	// checked.
	run kind = iota
	// server: the command keeps running (serve, demo); it is started,
	// probed over HTTP, and stopped with SIGINT when the next server
	// starts or the page's commands end. The commands after it talk to it.
	server
	// excluded: not run, for the reason given.
	excluded
)

// expect is what a documented command must do.
type expect struct {
	kind kind
	// dir is where it runs: "root" (the repository, for go run
	// ./cmd/qsp) or "sandbox" (a folder holding the files the page
	// writes, for qsp commands of a user's own setup).
	dir string
	// exit is the exit status wanted (run).
	exit int
	// out must appear in stdout or stderr (run); probe is the path that
	// must answer 200 once it is up (server).
	out, probe string
	reason     string // excluded
	// creates are files the command writes (run, relative to dir): each
	// must be there and non-empty afterwards, and is removed then.
	creates []string
}

// commands lists every shell command of the two pages, as written
// (without its trailing comment). A command on a page but missing here
// fails the test, and so does one here that the pages lost.
var commands = map[string]map[string]expect{
	"README.md": {
		"go run ./cmd/qsp demo": {kind: server, dir: "root", probe: "/"},
		// The demo's history holds last month and its past incidents.
		"go run ./cmd/qsp report --period 2026-11 --format pdf -o 2026-11.pdf": {dir: "root", creates: []string{"2026-11.pdf"}},
		"go run ./cmd/qsp incident export 1 > postmortem-1.md":                 {dir: "root", creates: []string{"postmortem-1.md"}},
		"make test": {kind: excluded, reason: "it runs the whole suite, this test included (20 minutes on 2 cores, and recursion)"},
		"go run ./cmd/qsp validate examples": {
			dir: "root", out: "valid: 3 services, 19 SLOs"},
		"go run ./cmd/qsp import sloth examples/testdata/my-slos.yaml": {
			dir: "root", out: "name: payments-requests-availability"},
		"go run ./cmd/qsp serve --specs examples --insecure-anonymous-admin": {kind: server, dir: "root", probe: "/readyz"},
		"go run ./cmd/qsp status": {dir: "root", out: "checkout-availability"},
		// The sample report has a critical finding: the gate says no.
		"go run ./cmd/qsp gate checkout-deploy --report examples/trivy.json": {dir: "root", exit: 1, out: "policy decision"},
		"go run ./cmd/qsp generate prometheus-rules --specs examples":        {dir: "root", out: "qsp-slo-checkout-journey"},
	},
	"docs/getting-started.md": {
		"go run ./cmd/qsp demo --speed 60": {kind: server, dir: "root", probe: "/"},
		"qsp validate slos/":               {dir: "sandbox", out: "valid: 1 services, 1 SLOs"},
		"qsp serve --config qsp.yaml":      {kind: server, dir: "sandbox", probe: "/healthz"},
	},
}

var fence = regexp.MustCompile("(?s)```(\\w*)\\n(.*?)```")

// block is a fenced block of a page and the paragraph before it.
type block struct {
	lang, body, before string
}

func blocks(page string) []block {
	var out []block
	last := 0
	for _, m := range fence.FindAllStringSubmatchIndex(page, -1) {
		before := page[last:m[0]]
		if i := strings.LastIndex(strings.TrimRight(before, "\n"), "\n\n"); i >= 0 {
			before = before[i:]
		}
		out = append(out, block{lang: page[m[2]:m[3]], body: page[m[4]:m[5]], before: before})
		last = m[1]
	}
	return out
}

// shellCommands returns the commands of a page's sh blocks: each line
// that is not blank or a comment, and its text without the trailing
// comment.
func shellCommands(page string) (lines, keys []string) {
	for _, b := range blocks(page) {
		if b.lang != "sh" && b.lang != "bash" && b.lang != "shell" {
			continue
		}
		sc := bufio.NewScanner(strings.NewReader(b.body))
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			key := line
			if i := strings.Index(key, " #"); i >= 0 {
				key = strings.TrimSpace(key[:i])
			}
			lines = append(lines, line)
			keys = append(keys, key)
		}
	}
	return lines, keys
}

func root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// proc is a server command running in its own process group.
type proc struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan error
}

// syncBuffer is the output of a running command, read while it writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}

func (p *proc) stop(t *testing.T, line string) {
	t.Helper()
	// The group: go run and the program it built.
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		t.Errorf("%s: did not stop within 60s of SIGINT", line)
	}
}

// TestDocumentedCommands runs every shell command of README.md and
// docs/getting-started.md exactly as written, in order. Only the
// environment differs from a user's: QSP_LISTEN, QSP_URL and
// QSP_DATA_DIR move the address and data off 127.0.0.1:8080 and ./data,
// which other programs on the machine may hold, and PATH has the qsp
// binary built from this tree. The getting-started commands of a user's
// own setup run in a folder holding the files that page writes
// (qsp.yaml, slos/checkout.yaml), with the data directory and the remote
// Prometheus of qsp.yaml pointed at the sandbox and a closed local port.
func TestDocumentedCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the documented commands, the demo included (about a minute)")
	}
	repo := root()
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(bin, "qsp"), "./cmd/qsp")
	build.Dir = repo
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, page := range []string{"README.md", "docs/getting-started.md"} {
		t.Run(page, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join(repo, page))
			if err != nil {
				t.Fatal(err)
			}
			sandbox := writeSandbox(t, string(raw))
			lines, keys := shellCommands(string(raw))
			want := commands[page]
			for _, k := range keys {
				if _, ok := want[k]; !ok {
					t.Errorf("%s: command %q is not in this test's table: add what it must do", page, k)
				}
			}
			for k := range want {
				if !slices.Contains(keys, k) {
					t.Errorf("%s: the table has %q, which the page no longer has", page, k)
				}
			}
			if t.Failed() {
				return
			}
			env := append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), "QSP_DATA_DIR="+filepath.Join(t.TempDir(), "data"), "NO_COLOR=1")
			var running *proc
			var runningLine, addr string
			defer func() {
				if running != nil {
					running.stop(t, runningLine)
				}
			}()
			for i, line := range lines {
				e := want[keys[i]]
				dir := repo
				if e.dir == "sandbox" {
					dir = sandbox
				}
				switch e.kind {
				case excluded:
					t.Logf("not run: %s: %s", line, e.reason)
				case run:
					ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
					cmd := exec.CommandContext(ctx, "bash", "-c", line)
					cmd.Dir = dir
					cmd.Env = append(env, "QSP_URL=http://"+addr)
					out, _ := cmd.CombinedOutput()
					cancel()
					code := cmd.ProcessState.ExitCode()
					if code != e.exit || !strings.Contains(string(out), e.out) {
						t.Errorf("%s: exit %d, output:\n%s\nwant exit %d and %q", line, code, tail(out), e.exit, e.out)
					}
					for _, f := range e.creates {
						f = filepath.Join(dir, f)
						if st, err := os.Stat(f); err != nil || st.Size() == 0 {
							t.Errorf("%s: wrote no %s: %v", line, f, err)
						}
						os.Remove(f)
					}
				case server:
					if running != nil {
						running.stop(t, runningLine)
					}
					addr = freeAddr(t)
					cmd := exec.Command("bash", "-c", line)
					cmd.Dir = dir
					cmd.Env = append(env, "QSP_LISTEN="+addr)
					cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
					out := &syncBuffer{}
					cmd.Stdout, cmd.Stderr = out, out
					if err := cmd.Start(); err != nil {
						t.Fatal(err)
					}
					running, runningLine = &proc{cmd: cmd, out: out, done: make(chan error, 1)}, line
					go func(p *proc) { p.done <- p.cmd.Wait() }(running)
					if err := waitOK(running, "http://"+addr+e.probe, 3*time.Minute); err != nil {
						t.Errorf("%s: %s never answered 200: %v\n%s", line, e.probe, err, tail(out.Bytes()))
					}
				}
			}
		})
	}
}

// writeSandbox writes the files a page tells the user to create (a yaml
// block right after a paragraph naming `qsp.yaml` or `slos/NAME.yaml`)
// into a folder.
func writeSandbox(t *testing.T, page string) string {
	t.Helper()
	dir := t.TempDir()
	name := regexp.MustCompile("`((?:slos/[\\w.-]+|qsp)\\.yaml)`[^`]*$")
	for _, b := range blocks(page) {
		m := name.FindStringSubmatch(strings.TrimSpace(b.before))
		if b.lang != "yaml" || m == nil {
			continue
		}
		body := b.body
		if m[1] == "qsp.yaml" {
			// The example's production paths, pointed at the sandbox.
			body = regexp.MustCompile(`(?m)^dataDir: .*$`).ReplaceAllString(body, "dataDir: "+filepath.Join(dir, "data"))
			body = regexp.MustCompile(`url: http://prometheus:9090`).ReplaceAllString(body, "url: http://"+freeAddr(t))
		}
		path := filepath.Join(dir, m[1])
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// waitOK polls url until it answers 200, the process exits or the
// timeout passes.
func waitOK(p *proc, url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: 5 * time.Second}
	last := fmt.Errorf("no answer")
	for time.Now().Before(deadline) {
		select {
		case err := <-p.done:
			p.done <- err
			return fmt.Errorf("exited: %v", err)
		default:
		}
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Errorf("status %d", resp.StatusCode)
		} else {
			last = err
		}
		time.Sleep(250 * time.Millisecond)
	}
	return last
}

func tail(b []byte) string {
	const n = 2000
	if len(b) > n {
		return "…" + string(b[len(b)-n:])
	}
	return string(b)
}
