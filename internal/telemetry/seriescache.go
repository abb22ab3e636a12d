package telemetry

import (
	"encoding/binary"
	"hash/maphash"
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
)

// seriesCache maps the wire encoding of a series' labels to its validated
// Labels and TSDB series ref, so a series seen before is appended without
// validating, sorting, copying or hashing its labels again. A remote_write
// sender repeats the same series in every request, so almost every lookup
// hits; Prometheus' scrape loop caches refs the same way.
//
// A ref may go stale when the TSDB drops an inactive series from its head.
// That is safe: the head resolves an unknown ref by the labels, which the
// entry keeps, and returns the new ref, which then replaces the entry.
//
// The key is a 128-bit hash of the wire labels (two independently seeded
// maphash sums) rather than the labels themselves: it halves the cache's
// memory and saves a pointer chase per lookup. Seeds are random per
// process, so a collision cannot be provoked, and the chance of one among
// even 10^7 series is about 10^-25.
//
// Memory is bounded in time: entries live in two generations swapped every
// cacheGeneration, so a series unseen for two generations is forgotten; and
// in size: no entries are added beyond maxCacheEntries.
type seriesCache struct {
	now          func() time.Time
	seed1, seed2 maphash.Seed
	mu           sync.RWMutex
	cur          map[cacheKey]cacheEntry
	prev         map[cacheKey]cacheEntry
	rotated      time.Time
}

type cacheKey [2]uint64

type cacheEntry struct {
	ref    storage.SeriesRef
	labels labels.Labels
	key    cacheKey
}

// cacheHit is the result of one lookup; key is set either way, for add.
type cacheHit struct {
	entry cacheEntry
	found bool
	// stale is set for hits in the previous generation, which must be
	// re-added to stay cached.
	stale bool
	key   cacheKey
}

const (
	cacheGeneration = 15 * time.Minute
	maxCacheEntries = 4 << 20
)

func newSeriesCache(now func() time.Time) *seriesCache {
	return &seriesCache{
		now: now, seed1: maphash.MakeSeed(), seed2: maphash.MakeSeed(),
		cur: map[cacheKey]cacheEntry{}, prev: map[cacheKey]cacheEntry{}, rotated: now(),
	}
}

// lookup appends one cacheHit per series of req to hits, under one read
// lock. keyBuf is scratch space for building keys.
func (c *seriesCache) lookup(req *writeRequest, hits []cacheHit, keyBuf *[]byte) []cacheHit {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for i := range req.series {
		if req.series[i].extraLabels > 0 {
			// Its labels were cut at the limit: it must not match the
			// series of its first labels. buildLabels rejects it.
			hits = append(hits, cacheHit{})
			continue
		}
		b := seriesKey((*keyBuf)[:0], req, &req.series[i])
		*keyBuf = b
		key := cacheKey{maphash.Bytes(c.seed1, b), maphash.Bytes(c.seed2, b)}
		if e, ok := c.cur[key]; ok {
			hits = append(hits, cacheHit{entry: e, found: true, key: key})
			continue
		}
		if e, ok := c.prev[key]; ok {
			hits = append(hits, cacheHit{entry: e, found: true, stale: true, key: key})
			continue
		}
		hits = append(hits, cacheHit{key: key})
	}
	return hits
}

// add stores entries, rotating the generations when one has passed.
func (c *seriesCache) add(entries []cacheEntry) {
	if len(entries) == 0 {
		return
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if now.Sub(c.rotated) >= cacheGeneration || now.Before(c.rotated) {
		c.prev, c.cur = c.cur, make(map[cacheKey]cacheEntry, len(c.cur))
		c.rotated = now
	}
	for _, e := range entries {
		if len(c.cur) >= maxCacheEntries {
			return
		}
		c.cur[e.key] = e
	}
}

// seriesKey appends an unambiguous encoding of the wire labels of s to b:
// each name and value prefixed by its length.
func seriesKey(b []byte, req *writeRequest, s *wireSeries) []byte {
	for _, l := range req.labels[s.labels.start:s.labels.end] {
		b = binary.AppendUvarint(b, uint64(len(l.name)))
		b = append(b, l.name...)
		b = binary.AppendUvarint(b, uint64(len(l.value)))
		b = append(b, l.value...)
	}
	return b
}
