// Package externaltest starts the real components integration tests run
// against (Prometheus, Alertmanager, Chromium, PostgreSQL) as child
// processes on loopback, with bounded waits and cleanup.
//
// A missing component skips the test with a clear message, except under
// CI=true, where it fails: CI installs every component (make deps).
package externaltest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// InCI reports whether the tests run under CI, where nothing may skip.
func InCI() bool { return os.Getenv("CI") == "true" }

// Missing stops the test because a component is not installed: a skip on
// a developer machine, a failure under CI.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...) + " (install it with `make deps`)"
	if InCI() {
		t.Fatalf("CI=true and %s", msg)
	}
	t.Skip(msg)
}

// LookPath returns the path of the first of names found in PATH or in the
// extra directories Debian packages use, or stops the test (Missing).
func LookPath(t testing.TB, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
		for _, dir := range []string{"/usr/bin", "/usr/sbin", "/usr/local/bin"} {
			p := filepath.Join(dir, n)
			if st, err := os.Stat(p); err == nil && !st.IsDir() {
				return p
			}
		}
	}
	Missing(t, "%s not found", strings.Join(names, " or "))
	return ""
}

// FreeAddr returns a loopback address with a port that was free a moment
// ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Process is a child process started by Start.
type Process struct {
	Cmd     *exec.Cmd
	LogPath string

	mu   sync.Mutex
	done chan struct{}
	err  error
}

// Start runs path with args in the background, its output in a log file
// under t.TempDir(). The process is killed when the test ends, and its log
// is printed if the test failed.
func Start(t testing.TB, path string, args ...string) *Process {
	t.Helper()
	return StartEnv(t, nil, path, args...)
}

// StartEnv is Start with extra environment variables ("K=V").
func StartEnv(t testing.TB, env []string, path string, args ...string) *Process {
	t.Helper()
	logf, err := os.CreateTemp(t.TempDir(), filepath.Base(path)+"-*.log")
	if err != nil {
		t.Fatalf("create log: %v", err)
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	p := &Process{Cmd: cmd, LogPath: logf.Name(), done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		logf.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			b, _ := os.ReadFile(p.LogPath)
			if len(b) > 8000 {
				b = b[len(b)-8000:]
			}
			t.Logf("--- log of %s (tail) ---\n%s", filepath.Base(path), b)
		}
	})
	return p
}

// Kill sends SIGKILL to the process group and waits for the process to
// exit (at most 10 s).
func (p *Process) Kill() {
	p.Signal(syscall.SIGKILL)
	p.Wait(10 * time.Second)
}

// Signal sends sig to the process group.
func (p *Process) Signal(sig syscall.Signal) {
	if p.Cmd.Process != nil {
		_ = syscall.Kill(-p.Cmd.Process.Pid, sig)
	}
}

// Wait waits up to d for the process to exit and reports whether it did.
func (p *Process) Wait(d time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(d):
		return false
	}
}

// Exited reports whether the process has exited, and its error.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return true, p.err
	default:
		return false, nil
	}
}

// WaitHTTP polls url until it answers 2xx, the process exits, or timeout
// passes, which fails the test.
func WaitHTTP(t testing.TB, p *Process, url string, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last error
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				return
			}
			last = fmt.Errorf("status %s", resp.Status)
		} else {
			last = err
		}
		if p != nil {
			if exited, err := p.Exited(); exited {
				t.Fatalf("%s exited while waiting for %s: %v", p.Cmd.Path, url, err)
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s not ready after %s: %v", url, timeout, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Eventually polls cond every interval until it returns true or timeout
// passes, which fails the test with msg.
func Eventually(t testing.TB, timeout, interval time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: "+format, append([]any{timeout}, args...)...)
		}
		time.Sleep(interval)
	}
}
