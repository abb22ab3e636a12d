// Package cluster lets several QSP replicas share one PostgreSQL database
// without a consensus protocol of their own: each replica renews a lease
// (a heartbeat row), the live replicas are those with a fresh lease, and
// every SLO belongs to one live replica by rendezvous hashing. When a
// replica joins or its lease lapses, the SLOs move with their persisted
// rollups and alert states. Statuses are published to the store so any
// replica serves the API and UI for all SLOs.
package cluster

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"hash/fnv"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/store"
)

// Store is what membership needs from the database.
type Store interface {
	Heartbeat(ctx context.Context, id, addr string, started time.Time) error
	Replicas(ctx context.Context, ttl time.Duration) ([]store.Replica, error)
	LeaveReplica(ctx context.Context, id string) error
}

// Options configure a Membership.
type Options struct {
	Store Store
	// ID names the replica; default a random one.
	ID string
	// Addr is where the replica serves, for operators.
	Addr string
	// TTL is the lease: a replica without a heartbeat for TTL is dead and
	// its SLOs move. Default 10s.
	TTL time.Duration
	// Interval between heartbeats. Default TTL/4.
	Interval   time.Duration
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time
}

// Membership tracks the live replicas and decides ownership. It
// implements engine.Shard.
type Membership struct {
	opts    Options
	logger  *slog.Logger
	started time.Time

	mu      sync.RWMutex
	members []string
	epoch   atomic.Uint64

	membersGauge prometheus.Gauge
	changes      prometheus.Counter
	failures     prometheus.Counter
}

// New builds a membership; Join makes the replica live.
func New(opts Options) (*Membership, error) {
	if opts.Store == nil {
		return nil, errors.New("cluster: no store")
	}
	opts.TTL = cmp.Or(opts.TTL, 10*time.Second)
	opts.Interval = cmp.Or(opts.Interval, opts.TTL/4)
	if opts.ID == "" {
		b := make([]byte, 6)
		_, _ = rand.Read(b)
		opts.ID = "qsp-" + hex.EncodeToString(b)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	m := &Membership{opts: opts, logger: opts.Logger.With("component", "cluster", "replica", opts.ID), started: opts.Now(),
		membersGauge: prometheus.NewGauge(prometheus.GaugeOpts{Name: "qsp_cluster_replicas", Help: "Live replicas sharing the database."}),
		changes:      prometheus.NewCounter(prometheus.CounterOpts{Name: "qsp_cluster_membership_changes_total", Help: "Changes of the set of live replicas."}),
		failures:     prometheus.NewCounter(prometheus.CounterOpts{Name: "qsp_cluster_heartbeat_failures_total", Help: "Heartbeats that failed."}),
	}
	opts.Registerer.MustRegister(m.membersGauge, m.changes, m.failures)
	return m, nil
}

// TTL returns how long a silent replica stays a member.
func (m *Membership) TTL() time.Duration { return m.opts.TTL }

// ID returns the replica's ID.
func (m *Membership) ID() string { return m.opts.ID }

// Join renews the lease once and reads the members, so ownership is known
// before the engine starts.
func (m *Membership) Join(ctx context.Context) error {
	return m.beat(ctx)
}

func (m *Membership) beat(ctx context.Context) error {
	if err := m.opts.Store.Heartbeat(ctx, m.opts.ID, m.opts.Addr, m.started); err != nil {
		m.failures.Inc()
		return err
	}
	rs, err := m.opts.Store.Replicas(ctx, m.opts.TTL)
	if err != nil {
		m.failures.Inc()
		return err
	}
	ids := make([]string, 0, len(rs))
	for _, r := range rs {
		ids = append(ids, r.ID)
	}
	m.mu.Lock()
	changed := !slices.Equal(ids, m.members)
	m.members = ids
	m.mu.Unlock()
	if changed {
		m.epoch.Add(1)
		m.changes.Inc()
		m.membersGauge.Set(float64(len(ids)))
		m.logger.Info("replicas changed", "members", ids)
	}
	return nil
}

// Run renews the lease every Interval until ctx ends, then leaves so the
// others take over at once.
func (m *Membership) Run(ctx context.Context) error {
	t := time.NewTicker(m.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			leaveCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return m.opts.Store.LeaveReplica(leaveCtx, m.opts.ID)
		case <-t.C:
			bctx, cancel := context.WithTimeout(ctx, m.opts.Interval)
			if err := m.beat(bctx); err != nil && ctx.Err() == nil {
				// Without a renewed lease this replica will soon own nothing
				// in the others' eyes; it keeps evaluating what it owns until
				// the database answers again, at worst twice for a while.
				m.logger.Warn("heartbeat", "err", err)
			}
			cancel()
		}
	}
}

// Members returns the live replicas' IDs, sorted.
func (m *Membership) Members() []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return slices.Clone(m.members)
}

// Epoch implements engine.Shard.
func (m *Membership) Epoch() uint64 { return m.epoch.Load() }

// Owns implements engine.Shard: the key belongs to the live replica with
// the highest rendezvous score, so when one replica leaves only its keys
// move, spread over the others.
func (m *Membership) Owns(key string) bool {
	return Owner(m.Members(), key) == m.opts.ID
}

// Owner returns the member that owns key, or "" without members.
func Owner(members []string, key string) string {
	best, owner := uint64(0), ""
	for _, id := range members {
		h := fnv.New64a()
		h.Write([]byte(id))
		h.Write([]byte{0})
		h.Write([]byte(key))
		if s := mix(h.Sum64()); owner == "" || s > best {
			best, owner = s, id
		}
	}
	return owner
}

// mix finalises a hash (splitmix64) so scores spread evenly.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// StatusStore is where replicas publish statuses.
type StatusStore interface {
	SaveStatuses(ctx context.Context, rows []store.StatusRow) error
	Statuses(ctx context.Context) ([]store.StatusRow, error)
	StatusesVersion(ctx context.Context) (string, error)
}

// Publisher returns an engine.Options.Publish function that writes a
// replica's statuses to the store.
func Publisher(s StatusStore, replica string, logger *slog.Logger) func(ctx context.Context, sts []*engine.Status) {
	return func(ctx context.Context, sts []*engine.Status) {
		rows := make([]store.StatusRow, 0, len(sts))
		for _, st := range sts {
			b, err := json.Marshal(st)
			if err != nil {
				continue
			}
			rows = append(rows, store.StatusRow{Key: st.Key, SLO: st.SLO, Replica: replica, EvaluatedAt: st.EvaluatedAt, Status: b})
		}
		if err := s.SaveStatuses(ctx, rows); err != nil {
			logger.Error("publish statuses", "err", err)
		}
	}
}

// SharedSnapshot serves the statuses every replica published, read from
// the store at most every MaxAge, so any replica's API and UI show all
// SLOs. Statuses are read and decoded again only when the store's version
// of them moved: replicas publish once a cycle, and an unchanged snapshot
// keeps the API's encoded lists cached. It implements the API's snapshot
// source.
type SharedSnapshot struct {
	store  StatusStore
	maxAge time.Duration
	now    func() time.Time
	logger *slog.Logger
	// local returns this replica's own snapshot, used for the source-down
	// alert and when the store cannot be read.
	local func() *engine.Snapshot

	mu         sync.Mutex
	at         time.Time
	snap       *engine.Snapshot
	version    string              // of the statuses in snap
	sourceDown *engine.AlertStatus // local's, when snap was built
}

// NewSharedSnapshot returns a snapshot source over the store.
func NewSharedSnapshot(s StatusStore, local func() *engine.Snapshot, maxAge time.Duration, now func() time.Time, logger *slog.Logger) *SharedSnapshot {
	if now == nil {
		now = time.Now
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &SharedSnapshot{store: s, local: local, maxAge: cmp.Or(maxAge, time.Second), now: now, logger: logger}
}

// Snapshot returns the statuses of all replicas.
func (s *SharedSnapshot) Snapshot() *engine.Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if s.snap != nil && now.Sub(s.at) < s.maxAge {
		return s.snap
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	local := s.local()
	version, err := s.store.StatusesVersion(ctx)
	if err != nil {
		s.logger.Warn("read shared statuses; serving this replica's own", "err", err)
		return local
	}
	if s.snap != nil && version == s.version && local.SourceDown == s.sourceDown {
		s.at = now
		return s.snap
	}
	rows, err := s.store.Statuses(ctx)
	if err != nil {
		s.logger.Warn("read shared statuses; serving this replica's own", "err", err)
		return local
	}
	sts := make([]*engine.Status, 0, len(rows))
	for _, r := range rows {
		var st engine.Status
		if err := json.Unmarshal(r.Status, &st); err != nil {
			continue
		}
		sts = append(sts, &st)
	}
	s.snap, s.at, s.version, s.sourceDown = engine.NewSnapshot(now, sts, local.SourceDown), now, version, local.SourceDown
	return s.snap
}
