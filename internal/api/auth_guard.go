package api

import (
	"errors"
	"fmt"
	"html"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
)

// GuardOptions configure Guard.
type GuardOptions struct {
	// Hosts are the host names (no port) requests may name in their Host
	// header besides IP literals and localhost: the listen host,
	// externalURL's host, auth.allowedHosts. "*" allows any; ".example.com"
	// allows every name under example.com.
	Hosts []string
	// Origins are the origins of externalURL (scheme://host[:port]),
	// accepted on state-changing requests besides the request's own.
	Origins []string
	// CORSOrigins are accepted on state-changing requests that carry an
	// Authorization header ("*": any); browsers only send such requests
	// cross-origin after a CORS preflight.
	CORSOrigins []string
	// Exempt are paths served whatever their Host: health probes
	// (kubelet sends the pod IP, a load balancer its own idea of a name).
	Exempt []string
}

// Guard refuses, before anything else runs, the requests a browser can be
// tricked into sending:
//   - DNS rebinding: a Host header naming none of the server's names. A
//     rebinding page always sends its own domain name, so IP literals and
//     localhost are accepted; names must be configured. Reads are checked
//     too: a rebound page could read the API.
//   - Cross-site writes: a state-changing request (not GET, HEAD,
//     OPTIONS) whose Origin is neither the request's own scheme and host
//     nor externalURL's origin (nor, with an Authorization header, a CORS
//     origin), or, without Origin, whose Sec-Fetch-Site is neither
//     same-origin nor none. Requests with neither header (curl, CI,
//     remote_write senders) pass: they are not made by a browser.
//
// Refusals are 403 with the reason, JSON on API paths and a short page on
// the UI's.
func Guard(opts GuardOptions, h http.Handler) http.Handler {
	g := &guard{opts: opts, h: h}
	for _, n := range opts.Hosts {
		n = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(n), "."))
		switch {
		case n == "*":
			g.anyHost = true
		case strings.HasPrefix(n, "."):
			g.suffixes = append(g.suffixes, n)
		case n != "":
			g.names = append(g.names, n)
		}
	}
	for _, o := range opts.CORSOrigins {
		if o == "*" {
			g.anyCORS = true
		}
	}
	return g
}

type guard struct {
	opts     GuardOptions
	h        http.Handler
	anyHost  bool
	anyCORS  bool
	names    []string
	suffixes []string
}

// Errors of Guard.
var (
	ErrForeignHost   = errors.New("forbidden: the Host header names a host this server does not answer to (DNS rebinding guard)")
	ErrForeignOrigin = errors.New("forbidden: a state-changing request from another site (cross-site request guard)")
)

func (g *guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !slices.Contains(g.opts.Exempt, r.URL.Path) {
		if err := g.checkHost(r.Host); err != nil {
			guardDeny(w, r, err)
			return
		}
	}
	if unsafeMethod(r.Method) {
		if err := g.checkOrigin(r); err != nil {
			guardDeny(w, r, err)
			return
		}
	}
	g.h.ServeHTTP(w, r)
}

// hostName returns the name of a Host header, lowercased, without port
// and brackets.
func hostName(hostport string) string {
	h := hostport
	if host, _, err := net.SplitHostPort(hostport); err == nil {
		h = host
	}
	return strings.ToLower(strings.TrimSuffix(strings.Trim(h, "[]"), "."))
}

func (g *guard) checkHost(hostport string) error {
	if g.anyHost {
		return nil
	}
	h := hostName(hostport)
	if h == "" {
		return fmt.Errorf("%w: no Host header", ErrForeignHost)
	}
	if net.ParseIP(h) != nil || h == "localhost" || strings.HasSuffix(h, ".localhost") || slices.Contains(g.names, h) {
		return nil
	}
	for _, s := range g.suffixes {
		if strings.HasSuffix(h, s) {
			return nil
		}
	}
	return fmt.Errorf("%w: %q; add it to auth.allowedHosts if users or clients reach the server by that name", ErrForeignHost, h)
}

func (g *guard) checkOrigin(r *http.Request) error {
	if o := r.Header.Get("Origin"); o != "" {
		if g.allowedOrigin(o, r) {
			return nil
		}
		return fmt.Errorf("%w: Origin %q is not %s", ErrForeignOrigin, o, requestOrigin(r))
	}
	switch s := r.Header.Get("Sec-Fetch-Site"); s {
	case "", "same-origin", "none":
		return nil
	default:
		return fmt.Errorf("%w: Sec-Fetch-Site is %q", ErrForeignOrigin, s)
	}
}

func requestOrigin(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + strings.ToLower(r.Host)
}

func (g *guard) allowedOrigin(o string, r *http.Request) bool {
	u, err := url.Parse(o)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		// "null" (sandboxed frames, some redirects) included.
		return false
	}
	norm := u.Scheme + "://" + strings.ToLower(u.Host)
	if norm == requestOrigin(r) {
		return true
	}
	eq := func(a string) bool { return strings.EqualFold(strings.TrimSuffix(a, "/"), norm) }
	if slices.ContainsFunc(g.opts.Origins, eq) {
		return true
	}
	return r.Header.Get("Authorization") != "" && (g.anyCORS || slices.ContainsFunc(g.opts.CORSOrigins, eq))
}

func guardDeny(w http.ResponseWriter, r *http.Request, err error) {
	if jsonRoute(r.URL.Path) || strings.HasPrefix(r.URL.Path, "/prometheus/") || strings.HasPrefix(r.URL.Path, "/v1/") || r.URL.Path == "/metrics" {
		DenyJSON(w, r, http.StatusForbidden, err.Error())
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusForbidden)
	fmt.Fprintf(w, "<!doctype html><title>Forbidden (403)</title><h1>Forbidden (403)</h1><p>%s</p>\n", html.EscapeString(err.Error()))
}

// LimitConnsPerClient wraps l so that each client address holds at most
// max connections at once; beyond that new connections are closed as
// soon as they are accepted. max <= 0 returns l.
func LimitConnsPerClient(l net.Listener, max int, refused func(addr string)) net.Listener {
	if max <= 0 {
		return l
	}
	return &connLimitListener{Listener: l, max: max, n: map[string]int{}, refused: refused}
}

type connLimitListener struct {
	net.Listener
	max     int
	refused func(addr string)
	mu      sync.Mutex
	n       map[string]int
}

func (l *connLimitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := c.RemoteAddr().String()
		if host, _, err := net.SplitHostPort(ip); err == nil {
			ip = host
		}
		l.mu.Lock()
		ok := l.n[ip] < l.max
		if ok {
			l.n[ip]++
		}
		l.mu.Unlock()
		if !ok {
			c.Close()
			if l.refused != nil {
				l.refused(ip)
			}
			continue
		}
		return &limitedConn{Conn: c, release: func() { l.release(ip) }}, nil
	}
}

func (l *connLimitListener) release(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n[ip]--; l.n[ip] <= 0 {
		delete(l.n, ip)
	}
}

type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
