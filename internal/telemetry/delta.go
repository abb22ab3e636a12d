package telemetry

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

// deltaAccumulator turns OTLP delta sums and delta explicit-bucket
// histograms into cumulative ones: one running total per series identity
// (resource, scope, metric and point attributes), so what reaches the TSDB
// is an ordinary Prometheus counter or classic histogram.
//
// Updates are transactional: a request's points are accumulated in a
// deltaTxn and become the new totals only after the TSDB commit succeeded.
// A request that fails with 503 and is retried is therefore not counted
// twice. One transaction runs at a time (the mutex is held from begin to
// end), so totals reach the TSDB in the order they were computed.
type deltaAccumulator struct {
	now       func() time.Time
	mu        sync.Mutex
	states    map[string]*deltaState
	lastSweep time.Time
}

// deltaState is the running total of one series.
type deltaState struct {
	start, last pcommon.Timestamp
	seen        time.Time
	// Sums.
	value float64
	// Histograms.
	count   uint64
	sum     float64
	hasSum  bool
	buckets []uint64
	bounds  []float64
}

const (
	// deltaStaleAfter forgets series that sent nothing for this long; if
	// one comes back, its total restarts at zero (a counter reset).
	deltaStaleAfter = time.Hour
	// maxDeltaSeries bounds the accumulator's memory.
	maxDeltaSeries = 1 << 20
)

func newDeltaAccumulator(now func() time.Time) *deltaAccumulator {
	return &deltaAccumulator{now: now, states: map[string]*deltaState{}, lastSweep: now()}
}

// deltaTxn is one request's view of the accumulator.
type deltaTxn struct {
	acc     *deltaAccumulator
	now     time.Time
	pending map[string]*deltaState
}

// begin locks the accumulator until end.
func (a *deltaAccumulator) begin(now time.Time) *deltaTxn {
	a.mu.Lock()
	if now.Sub(a.lastSweep) >= time.Minute {
		for k, s := range a.states {
			if now.Sub(s.seen) > deltaStaleAfter {
				delete(a.states, k)
			}
		}
		a.lastSweep = now
	}
	return &deltaTxn{acc: a, now: now, pending: map[string]*deltaState{}}
}

// commit makes the transaction's totals the current ones.
func (t *deltaTxn) commit() {
	for k, s := range t.pending {
		t.acc.states[k] = s
	}
	clear(t.pending)
}

// end releases the accumulator, dropping uncommitted totals.
func (t *deltaTxn) end() { t.acc.mu.Unlock() }

var errTooManyDeltaSeries = errors.New("too many delta series to accumulate; send cumulative temporality")

// state returns the transaction's copy of the state of key, creating it if
// there is none.
func (t *deltaTxn) state(key string, start pcommon.Timestamp) (*deltaState, bool, error) {
	if s, ok := t.pending[key]; ok {
		return s, true, nil
	}
	if s, ok := t.acc.states[key]; ok {
		c := *s
		c.buckets = slices.Clone(s.buckets)
		t.pending[key] = &c
		return &c, true, nil
	}
	if len(t.acc.states)+len(t.pending) >= maxDeltaSeries {
		return nil, false, errTooManyDeltaSeries
	}
	s := &deltaState{start: start}
	t.pending[key] = s
	return s, false, nil
}

func startOf(start, ts pcommon.Timestamp) pcommon.Timestamp {
	if start == 0 || start > ts {
		return ts
	}
	return start
}

// addSum adds a delta sum point to its total and rewrites the point as the
// cumulative value since the total's start.
func (t *deltaTxn) addSum(key string, p pmetric.NumberDataPoint) error {
	ts := p.Timestamp()
	s, existed, err := t.state(key, startOf(p.StartTimestamp(), ts))
	if err != nil {
		return err
	}
	if existed && ts <= s.last {
		return fmt.Errorf("delta point is not after the previous one of its series at %s", s.last.AsTime().UTC().Format(time.RFC3339Nano))
	}
	s.last, s.seen = ts, t.now
	p.SetStartTimestamp(s.start)
	if p.Flags().NoRecordedValue() {
		// A staleness marker: passed on, nothing to add.
		return nil
	}
	switch p.ValueType() {
	case pmetric.NumberDataPointValueTypeInt:
		s.value += float64(p.IntValue())
	case pmetric.NumberDataPointValueTypeDouble:
		s.value += p.DoubleValue()
	}
	p.SetDoubleValue(s.value)
	return nil
}

// addHistogram adds a delta histogram point to its total. A change of
// bucket layout restarts the total, which PromQL reads as a reset.
func (t *deltaTxn) addHistogram(key string, p pmetric.HistogramDataPoint) error {
	ts := p.Timestamp()
	start := startOf(p.StartTimestamp(), ts)
	s, existed, err := t.state(key, start)
	if err != nil {
		return err
	}
	if existed && ts <= s.last {
		return fmt.Errorf("delta point is not after the previous one of its series at %s", s.last.AsTime().UTC().Format(time.RFC3339Nano))
	}
	bounds := p.ExplicitBounds().AsRaw()
	counts := p.BucketCounts().AsRaw()
	if existed && (!slices.Equal(bounds, s.bounds) || len(counts) != len(s.buckets)) {
		*s = deltaState{start: start}
	}
	if s.bounds == nil {
		s.bounds = bounds
		s.buckets = make([]uint64, len(counts))
	}
	s.last, s.seen = ts, t.now
	p.SetStartTimestamp(s.start)
	p.RemoveMin()
	p.RemoveMax()
	if p.Flags().NoRecordedValue() {
		return nil
	}
	s.count += p.Count()
	if p.HasSum() {
		s.sum += p.Sum()
		s.hasSum = true
	}
	for i, c := range counts {
		s.buckets[i] += c
	}
	p.SetCount(s.count)
	if s.hasSum {
		p.SetSum(s.sum)
	}
	p.BucketCounts().FromRaw(s.buckets)
	return nil
}

// attrsKey encodes attributes in key order, so the same set gives the same
// key whatever order the sender used.
func attrsKey(m pcommon.Map) string {
	if m.Len() == 0 {
		return ""
	}
	type kv struct{ k, v string }
	kvs := make([]kv, 0, m.Len())
	for k, v := range m.All() {
		kvs = append(kvs, kv{k, v.AsString()})
	}
	slices.SortFunc(kvs, func(a, b kv) int { return strings.Compare(a.k, b.k) })
	var b strings.Builder
	for _, e := range kvs {
		b.WriteString(e.k)
		b.WriteByte(0)
		b.WriteString(e.v)
		b.WriteByte(2)
	}
	return b.String()
}
