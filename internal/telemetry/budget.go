package telemetry

import (
	"fmt"
	"net/http"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Budget bounds the memory that ingestion requests hold at once: their
// bodies as read, the decompressed bytes and the decoded structures. Every
// receiver (remote_write, OTLP metrics, events; traces when they come)
// takes what a request needs from one shared Budget before allocating it,
// and gives it back when the request ends. When the budget is spent a
// request is refused with 429 and Retry-After, which remote_write and OTLP
// senders retry, instead of growing the heap until the kernel kills the
// process.
//
// Taking and giving back are one atomic operation each, so the fast path
// pays nothing measurable. A Budget is safe for concurrent use.
type Budget struct {
	size    int64
	used    atomic.Int64
	refused *prometheus.CounterVec
}

// DefaultBudgetBytes is the default size of the shared ingest budget:
// 256 MiB holds about a hundred typical remote_write or OTLP requests
// (1–3 MiB each once decoded) in flight at once, and three requests at the
// per-request ceilings (16 MiB body, 64 MiB decompressed), while staying a
// small share of the 1–2 GiB a QSP container is usually given. Set it to
// about a quarter of the memory limit.
const DefaultBudgetBytes = 256 << 20

// budgetRetryAfter is the Retry-After of a refusal: long enough for the
// requests in flight to finish, short enough not to build a backlog.
const budgetRetryAfter = "1"

// NewBudget returns a budget of size bytes (DefaultBudgetBytes when size is
// 0, unlimited when negative) whose refusals are counted in reg (nil: not
// exported).
func NewBudget(size int64, reg prometheus.Registerer) (*Budget, error) {
	switch {
	case size == 0:
		size = DefaultBudgetBytes
	case size < 0:
		size = 1<<63 - 1
	}
	b := &Budget{size: size, refused: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "qsp_ingest_budget_refused_requests_total",
		Help: "Ingestion requests refused because the shared decompression and body budget was spent, by receiver.",
	}, []string{"receiver"})}
	if reg != nil {
		inUse := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "qsp_ingest_budget_bytes_in_use",
			Help: "Bytes of the shared ingest budget held by requests in flight.",
		}, func() float64 { return float64(b.used.Load()) })
		size := prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "qsp_ingest_budget_bytes",
			Help: "Size of the shared ingest budget in bytes.",
		})
		size.Set(float64(b.size))
		for _, c := range []prometheus.Collector{b.refused, inUse, size} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("ingest budget: register metrics: %w", err)
			}
		}
	}
	return b, nil
}

// Size returns the budget's size in bytes.
func (b *Budget) Size() int64 { return b.size }

// InUse returns the bytes currently taken.
func (b *Budget) InUse() int64 { return b.used.Load() }

func (b *Budget) tryTake(n int64) bool {
	for {
		cur := b.used.Load()
		if n > b.size-cur {
			return false
		}
		if b.used.CompareAndSwap(cur, cur+n) {
			return true
		}
	}
}

// Reserve starts the reservation of one request for receiver (a metric
// label). The zero Reservation of a nil Budget takes nothing.
func (b *Budget) Reserve(receiver string) Reservation {
	return Reservation{b: b, receiver: receiver}
}

// Reservation is what one request holds of a Budget. It is used by the
// request's goroutine only; Release gives everything back and must be
// called exactly once, when nothing the reservation paid for is in use any
// more.
type Reservation struct {
	b        *Budget
	receiver string
	held     int64
}

// Take adds n bytes to the reservation before they are allocated. It
// fails with 429 (retryable) when the budget has not enough left, and with
// 413 when n alone exceeds the whole budget, since retrying cannot help.
func (r *Reservation) Take(n int64) error {
	if r == nil || r.b == nil || n <= 0 {
		return nil
	}
	if r.b.tryTake(n) {
		r.held += n
		return nil
	}
	r.b.refused.WithLabelValues(r.receiver).Inc()
	if r.held+n > r.b.size {
		return errorf(http.StatusRequestEntityTooLarge, "request needs %d bytes of memory to decode, more than the whole ingest budget of %d bytes (receivers.budgetBytes); send smaller batches", r.held+n, r.b.size)
	}
	return &httpError{status: http.StatusTooManyRequests, retryAfter: budgetRetryAfter,
		msg: fmt.Sprintf("ingest memory budget of %d bytes is in use by other requests; retry later", r.b.size)}
}

// Held returns the bytes the reservation holds.
func (r *Reservation) Held() int64 { return r.held }

// Release gives the reservation back to its budget.
func (r *Reservation) Release() {
	if r != nil && r.b != nil && r.held > 0 {
		r.b.used.Add(-r.held)
	}
	r.held = 0
}
