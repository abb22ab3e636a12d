package playbook

import (
	"errors"
	"strings"
	"testing"
)

// TestAllowlistSSRF is the SSRF table: only URLs whose scheme, host,
// port and path prefix match an entry pass; tricks that make one parser
// see an allowed host and another an attacker's are refused.
func TestAllowlistSSRF(t *testing.T) {
	a, err := NewAllowlist([]string{"http://127.0.0.1:9099/api/", "https://rollouts.example.com", "http://[::1]:8080/hooks"})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		url   string
		allow bool
	}{
		{"http://127.0.0.1:9099/api/v1/rollouts/checkout/rollback", true},
		{"http://127.0.0.1:9099/api", true},
		{"http://127.0.0.1:9099/api/v1?x=1&y=2", true},
		{"HTTP://127.0.0.1:9099/api/v1", true},
		{"http://127.0.0.1:09099/api/v1", true}, // the same port
		{"https://rollouts.example.com/anything", true},
		{"https://ROLLOUTS.example.com:443/x", true},
		{"http://[::1]:8080/hooks/a", true},
		{"http://[0:0::1]:8080/hooks/a", true}, // the same address
		// Other hosts, ports, schemes, paths.
		{"http://127.0.0.1:9099/apix", false},
		{"http://127.0.0.1:9099/admin", false},
		{"http://127.0.0.1:9099/", false},
		{"http://127.0.0.1:9100/api/x", false},
		{"https://127.0.0.1:9099/api/x", false},
		{"http://localhost:9099/api/x", false},
		{"http://169.254.169.254/latest/meta-data/", false},
		{"https://rollouts.example.com:8443/x", false},
		{"https://rollouts.example.com.evil.net/x", false},
		{"https://evil-rollouts.example.com/x", false},
		{"http://rollouts.example.com/x", false},
		// Userinfo and parser confusion.
		{"http://127.0.0.1:9099@evil.com/api/x", false},
		{"http://user:pass@127.0.0.1:9099/api/x", false},
		{"http://evil.com#@127.0.0.1:9099/api/", false},
		{`http://evil.com\@127.0.0.1:9099/api/`, false},
		{`http://127.0.0.1:9099\@evil.com/api/`, false},
		{"http://127.0.0.1:9099.evil.com/api/", false},
		{"http://127.0.0.1:9099 /api/", false},
		{"http://127.0.0.1:9099/api/\r\nHost: evil", false},
		// IP literal spellings of loopback that are not the listed one.
		{"http://2130706433:9099/api/x", false},
		{"http://0x7f.0.0.1:9099/api/x", false},
		{"http://0177.0.0.1:9099/api/x", false},
		{"http://127.1:9099/api/x", false},
		{"http://[::ffff:127.0.0.1]:9099/api/x", false},
		{"http://127.0.0.1.:9099/api/x", false},
		{"http://[::1%25eth0]:8080/hooks/a", false},
		// Paths that climb out of the prefix.
		{"http://127.0.0.1:9099/api/../admin", false},
		{"http://127.0.0.1:9099/api/./v1", false},
		{"http://127.0.0.1:9099/api/%2e%2e/admin", false},
		{"http://127.0.0.1:9099/api/..%2fadmin", false},
		{"http://127.0.0.1:9099/api/%2E%2E%5Cadmin", false},
		// Not http(s), not absolute.
		{"file:///etc/passwd", false},
		{"gopher://127.0.0.1:9099/api/", false},
		{"//127.0.0.1:9099/api/", false},
		{"/api/v1", false},
		{"", false},
		{"http://127.0.0.1:99999/api/", false},
	}
	for _, c := range cases {
		u, err := a.Check(c.url)
		if c.allow != (err == nil) {
			t.Errorf("%q: allowed=%v (err %v), want %v", c.url, err == nil, err, c.allow)
			continue
		}
		if err != nil && !errors.Is(err, ErrNotAllowed) {
			t.Errorf("%q: error %v does not wrap ErrNotAllowed", c.url, err)
		}
		if err == nil && u == nil {
			t.Errorf("%q: allowed without a URL", c.url)
		}
	}
}

func TestAllowlistConfig(t *testing.T) {
	empty, err := NewAllowlist(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := empty.Check("http://127.0.0.1/api"); !errors.Is(err, ErrNotAllowed) || !strings.Contains(err.Error(), "the allowlist is empty") {
		t.Fatalf("an empty allowlist: got %v, want every URL refused", err)
	}
	for _, bad := range []string{"ftp://x/", "http://u:p@x/", "http://x/?q=1", "not a url", "http://x/#f", "http://"} {
		if _, err := NewAllowlist([]string{"http://ok/", bad}); err == nil || !strings.Contains(err.Error(), "playbooks.allowlist[1]") {
			t.Errorf("%q: got %v, want an error naming playbooks.allowlist[1]", bad, err)
		}
	}
}
