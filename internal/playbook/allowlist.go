package playbook

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// ErrNotAllowed is wrapped by Allowlist.Check when a URL is not one the
// server lets playbooks call.
var ErrNotAllowed = errors.New("not on the playbooks allowlist")

// maxURLBytes bounds a webhook URL.
const maxURLBytes = 8 << 10

// Allowlist holds the URL prefixes webhook actions may call (the server
// configuration's playbooks.allowlist): the SSRF guard. A URL is allowed
// when its scheme, host and port equal an entry's and its path is the
// entry's path or below it (on a segment boundary). Hosts are compared as
// written, not resolved: 2130706433, 127.1 and [::ffff:127.0.0.1] are not
// 127.0.0.1. URLs with user information, backslashes, control characters
// or dot segments (also percent-encoded) are refused, since parsers
// disagree about them. An empty allowlist allows nothing.
type Allowlist struct {
	entries []allowEntry
}

type allowEntry struct {
	raw    string
	scheme string
	host   string // lower case; IP literals in canonical form
	port   int
	path   string // without a trailing slash; "" for any path
}

// NewAllowlist parses the configured prefixes.
func NewAllowlist(prefixes []string) (*Allowlist, error) {
	a := &Allowlist{}
	var errs []error
	for i, p := range prefixes {
		u, err := parseStrict(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("playbooks.allowlist[%d] %q: %w", i, p, err))
			continue
		}
		if u.RawQuery != "" || u.Fragment != "" {
			errs = append(errs, fmt.Errorf("playbooks.allowlist[%d] %q: a prefix has no query or fragment", i, p))
			continue
		}
		e, err := entryOf(u)
		if err != nil {
			errs = append(errs, fmt.Errorf("playbooks.allowlist[%d] %q: %w", i, p, err))
			continue
		}
		e.raw = p
		e.path = strings.TrimSuffix(e.path, "/")
		a.entries = append(a.entries, e)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return a, nil
}

// Empty reports whether nothing is allowed.
func (a *Allowlist) Empty() bool { return a == nil || len(a.entries) == 0 }

// Check returns the parsed URL if raw may be called, or an error wrapping
// ErrNotAllowed that says why not.
func (a *Allowlist) Check(raw string) (*url.URL, error) {
	if a.Empty() {
		return nil, fmt.Errorf("%w: the allowlist is empty, so no webhook may be called (set playbooks.allowlist in the server config)", ErrNotAllowed)
	}
	u, err := parseStrict(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %w", ErrNotAllowed, truncate(raw, 200), err)
	}
	e, err := entryOf(u)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %w", ErrNotAllowed, truncate(raw, 200), err)
	}
	for _, x := range a.entries {
		if x.scheme == e.scheme && x.host == e.host && x.port == e.port && underPath(e.path, x.path) {
			return u, nil
		}
	}
	return nil, fmt.Errorf("%w: %s://%s%s matches no allowed prefix", ErrNotAllowed, e.scheme, u.Host, truncate(e.path, 200))
}

func underPath(path, prefix string) bool {
	if prefix == "" {
		return true
	}
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}

// parseStrict parses an absolute http(s) URL, refusing what parsers
// disagree on.
func parseStrict(raw string) (*url.URL, error) {
	if len(raw) > maxURLBytes {
		return nil, fmt.Errorf("longer than %d bytes", maxURLBytes)
	}
	for _, c := range raw {
		if c <= ' ' || c == 0x7f || c == '\\' {
			return nil, fmt.Errorf("control character, space or backslash at %q", truncate(raw, 200))
		}
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.Unwrap(err) // url.Error repeats the URL
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("scheme %q is not http or https", u.Scheme)
	}
	if u.Opaque != "" || u.Host == "" {
		return nil, errors.New("not an absolute URL with a host")
	}
	if u.User != nil || strings.Contains(u.Host, "@") {
		return nil, errors.New("user information in a URL is not allowed (put credentials in a header with {{ secret }})")
	}
	return u, nil
}

func entryOf(u *url.URL) (allowEntry, error) {
	e := allowEntry{scheme: strings.ToLower(u.Scheme)}
	host := strings.ToLower(u.Hostname())
	if host == "" {
		return e, errors.New("no host")
	}
	if strings.Contains(host, "%") {
		return e, errors.New("IPv6 zones are not allowed")
	}
	if strings.HasSuffix(host, ".") {
		return e, errors.New("a host ending in a dot is not allowed")
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		host = ip.String()
	}
	e.host = host
	switch p := u.Port(); {
	case p != "":
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return e, fmt.Errorf("port %q out of range", p)
		}
		e.port = n
	case e.scheme == "https":
		e.port = 443
	default:
		e.port = 80
	}
	path := u.EscapedPath()
	low := strings.ToLower(path)
	if strings.Contains(low, "%2e") || strings.Contains(low, "%2f") || strings.Contains(low, "%5c") {
		return e, errors.New("percent-encoded dots, slashes or backslashes in the path are not allowed")
	}
	for _, seg := range strings.Split(path, "/") {
		if seg == "." || seg == ".." {
			return e, errors.New("dot segments (. and ..) in the path are not allowed")
		}
	}
	e.path = path
	return e, nil
}

// truncate shortens s to at most n bytes (on a rune boundary) for
// messages.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8Start(s[i]) {
		i--
	}
	return s[:i] + "…"
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }
