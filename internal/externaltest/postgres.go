package externaltest

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
)

// postgresBin finds the directory of Debian's PostgreSQL server binaries
// (the newest major version installed).
func postgresBin(t testing.TB) string {
	t.Helper()
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi > vj
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p)
	}
	Missing(t, "PostgreSQL server (initdb) not found")
	return ""
}

// Postgres is a PostgreSQL server started for a test.
type Postgres struct {
	Proc *Process
	Addr string // 127.0.0.1:port
	dir  string
}

// DSN returns a connection string for database name.
func (p *Postgres) DSN(name string) string {
	host, port, _ := net.SplitHostPort(p.Addr)
	return fmt.Sprintf("postgres://qsp@%s:%s/%s?sslmode=disable", host, port, name)
}

// CreateDB creates a fresh database and returns its DSN.
func (p *Postgres) CreateDB(t testing.TB, name string) string {
	t.Helper()
	db, err := sql.Open("pgx", p.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE DATABASE ` + name); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	return p.DSN(name)
}

// StartPostgres initialises a cluster in a temporary directory and starts
// a server on a free loopback port, trusting local connections as user
// qsp. As root, the server runs as the postgres user (PostgreSQL refuses
// to run as root). The server is stopped when the test ends.
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	bin := postgresBin(t)
	p, stop, err := startPostgres(bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return p
}

// StartPostgresMain is StartPostgres for TestMain, which has no testing.TB:
// it returns the server and a function that stops it, or why it could not
// start; missing is true when PostgreSQL is not installed.
func StartPostgresMain() (p *Postgres, stop func(), missing bool, err error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(dirs) == 0 {
		path, lerr := exec.LookPath("initdb")
		if lerr != nil {
			return nil, nil, true, fmt.Errorf("PostgreSQL server (initdb) not found")
		}
		dirs = []string{path}
	}
	sort.Strings(dirs)
	p, stop, err = startPostgres(filepath.Dir(dirs[len(dirs)-1]))
	return p, stop, false, err
}

func startPostgres(bin string) (_ *Postgres, _ func(), err error) {
	dir, err := os.MkdirTemp("", "qsp-pg-*")
	if err != nil {
		return nil, nil, err
	}
	var stops []func()
	stop := func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	defer func() {
		if err != nil {
			stop()
		}
	}()
	stops = append(stops, func() { os.RemoveAll(dir) })
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, nil, fmt.Errorf("running as root and there is no postgres user to run PostgreSQL as")
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, nil, err
		}
		if err := os.Chmod(dir, 0o700); err != nil {
			return nil, nil, err
		}
	}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", "qsp", "--auth=trust", "-E", "UTF8", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	addr := l.Addr().String()
	l.Close()
	_, port, _ := net.SplitHostPort(addr)
	logf, err := os.CreateTemp("", "postgres-*.log")
	if err != nil {
		return nil, nil, err
	}
	stops = append(stops, func() { os.Remove(logf.Name()) })
	cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", data, "-p", port, "-k", dir,
		"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=200", "-c", "shared_buffers=64MB")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: cred}
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("start postgres: %w", err)
	}
	p := &Postgres{Addr: addr, dir: dir, Proc: &Process{Cmd: cmd, LogPath: logf.Name(), done: make(chan struct{})}}
	go func() {
		err := cmd.Wait()
		logf.Close()
		p.Proc.mu.Lock()
		p.Proc.err = err
		p.Proc.mu.Unlock()
		close(p.Proc.done)
	}()
	stops = append(stops, func() {
		// SIGINT is PostgreSQL's fast shutdown.
		p.Proc.Signal(syscall.SIGINT)
		if !p.Proc.Wait(20 * time.Second) {
			p.Proc.Kill()
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		db, err := sql.Open("pgx", p.DSN("postgres"))
		if err == nil {
			err = db.PingContext(ctx)
			db.Close()
		}
		if err == nil {
			return p, stop, nil
		}
		if exited, perr := p.Proc.Exited(); exited {
			b, _ := os.ReadFile(logf.Name())
			return nil, nil, fmt.Errorf("postgres exited: %v\n%s", perr, b)
		}
		select {
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("postgres not ready after 60s: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
