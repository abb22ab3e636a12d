package api

import (
	"context"
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// CSRFHeader carries the CSRF token on state-changing JSON API requests
// made with the UI session cookie (the UI's forms carry it in CSRFField).
const CSRFHeader = "X-CSRF-Token"

// Defaults of the limits Auth enforces besides the rate limits.
var (
	// DefaultLoginLimit allows 10 failed sign-ins per client address,
	// then one every 6 seconds.
	DefaultLoginLimit = Limit{PerSecond: 1.0 / 6, Burst: 10}
)

// Body deadlines: how long a client may take to send a request body
// once its headers are read.
const (
	DefaultBodyTimeout       = 30 * time.Second
	DefaultIngestBodyTimeout = 2 * time.Minute
)

// SessionStore records revoked UI sessions where every replica sees them.
// Implementations are safe for concurrent use; internal/store's Store is
// one.
type SessionStore interface {
	// RevokeSession records that session id is revoked; the record may be
	// dropped after expires, when the session's cookie has expired anyway.
	RevokeSession(ctx context.Context, id string, expires time.Time) error
	// SessionRevoked reports whether id was revoked.
	SessionRevoked(ctx context.Context, id string) (bool, error)
}

// LoginLimitError is a sign-in refused because the client failed too
// often; Wait is how long until the next attempt is allowed.
type LoginLimitError struct{ Wait time.Duration }

func (e *LoginLimitError) Error() string {
	return fmt.Sprintf("too many failed sign-ins from this address: retry in %s", e.Wait.Round(time.Second))
}

// revokedSessions are the sessions this process revoked, checked before
// the store so a sign-out takes effect here at once even if the store is
// down.
type revokedSessions struct {
	mu sync.Mutex
	m  map[string]time.Time
}

// maxRevokedInMemory bounds the in-process set; the store holds them all.
const maxRevokedInMemory = 4096

func (rs *revokedSessions) add(id string, expires, now time.Time) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if len(rs.m) >= maxRevokedInMemory {
		for k, exp := range rs.m {
			if !now.Before(exp) {
				delete(rs.m, k)
			}
		}
	}
	if len(rs.m) < maxRevokedInMemory {
		rs.m[id] = expires
	}
}

func (rs *revokedSessions) has(id string) bool {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	_, ok := rs.m[id]
	return ok
}

func (a *Auth) revoke(ctx context.Context, id string, expires time.Time) error {
	if id == "" {
		return nil
	}
	a.revoked.add(id, expires, a.now())
	if a.sessions == nil {
		return nil
	}
	if err := a.sessions.RevokeSession(ctx, id, expires); err != nil {
		return fmt.Errorf("revoke session: %w", err)
	}
	return nil
}

// isRevoked fails closed: a session the store cannot vouch for is not
// accepted (the request is anonymous and may sign in again).
func (a *Auth) isRevoked(ctx context.Context, id string) bool {
	if id == "" || a.revoked.has(id) {
		return true
	}
	if a.sessions == nil {
		return false
	}
	revoked, err := a.sessions.SessionRevoked(ctx, id)
	if err != nil {
		a.log.Warn("session check", "err", err)
		return true
	}
	return revoked
}

// peek reports whether key's bucket has a request left, without taking
// it, or how long until it has.
func (ls *limiters) peek(key string, now time.Time) (time.Duration, bool) {
	if ls.limit == rate.Inf {
		return 0, true
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	e := ls.m[key]
	if e == nil {
		return 0, true
	}
	if tokens := e.l.TokensAt(now); tokens < 1 {
		return time.Duration((1 - tokens) / float64(ls.limit) * float64(time.Second)), false
	}
	return 0, true
}
