package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/qsp-dev/qsp/internal/slo"
)

// A rollup answers "how many good and total events between minute a and
// minute b" in constant time, whatever the distance, from cumulative sums
// kept at bucket boundaries.
//
// Boundary b holds the sums over [start, b). Three tiers keep boundaries
// at decreasing resolution so memory stays bounded: every minute for the
// recent past (covering the 5m to 6h windows exactly), every 5 minutes for
// the days after (1d, 3d), every hour for the rest of the SLO window. A
// window whose start falls between two boundaries of a coarse tier starts
// at the next boundary, so it is at most 4 minutes (5-minute tier) or 59
// minutes (hour tier) shorter than asked; Window reports the start it used.
//
// The sums are float64: counts are exact integers up to 2^53, and a
// window is the difference of two sums, never an average of ratios.
type rollup struct {
	start slo.Minute // boundary start holds zero
	next  slo.Minute // minutes before next are folded; sums at boundary next
	cum   sums
	tiers [3]tier
	// memo holds start boundaries evaluation read (see windowsToNext).
	memo []startMemo
}

// sums are cumulative counts at one boundary. data counts the minutes that
// had telemetry, so a window can tell how much of it was covered.
type sums struct {
	good, total float64
	data        uint32
}

func (s sums) sub(o sums) sums {
	return sums{s.good - o.good, s.total - o.total, s.data - o.data}
}

// tier is a ring of boundaries every step minutes.
type tier struct {
	step   int64
	cells  []cell
	head   int        // index of the newest boundary
	n      int        // boundaries stored
	newest slo.Minute // the newest boundary
}

// cell holds the sums at one boundary in 20 bytes: good and total as the
// two halves of their float64 bits, then data. A cycle spends much of its
// time waiting for boundaries to come from memory (10,000 SLOs' rollups
// fit in no cache), and one slice of cells brings a boundary in one cache
// line, or two, where a slice per field took three. A struct of two
// float64 and a uint32 would be padded to 24 bytes, 8 KB more per 30d SLO.
type cell [5]uint32

func packCell(s sums) cell {
	g, t := math.Float64bits(s.good), math.Float64bits(s.total)
	return cell{uint32(g), uint32(g >> 32), uint32(t), uint32(t >> 32), s.data}
}

func (c *cell) sums() sums {
	return sums{
		good:  math.Float64frombits(uint64(c[0]) | uint64(c[1])<<32),
		total: math.Float64frombits(uint64(c[2]) | uint64(c[3])<<32),
		data:  c[4],
	}
}

func newTier(step int64, capacity int) tier {
	return tier{step: step, cells: make([]cell, capacity), head: -1}
}

func (t *tier) push(b slo.Minute, s sums) {
	t.head = (t.head + 1) % len(t.cells)
	t.cells[t.head] = packCell(s)
	t.newest = b
	t.n = min(t.n+1, len(t.cells))
}

// oldest returns the oldest boundary stored; ok is false when empty.
func (t *tier) oldest() (slo.Minute, bool) {
	if t.n == 0 {
		return 0, false
	}
	return t.newest - slo.Minute(int64(t.n-1)*t.step), true
}

// at returns the sums at boundary b, which must be stored.
func (t *tier) at(b slo.Minute) sums {
	return t.cells[t.index(b)].sums()
}

// index returns where boundary b, which must be stored, is in the ring.
func (t *tier) index(b slo.Minute) int {
	back := int((t.newest - b) / slo.Minute(t.step))
	return (t.head - back + len(t.cells)) % len(t.cells)
}

// addFrom adds d to every stored boundary after minute m (boundary > m).
func (t *tier) addFrom(m slo.Minute, d sums) {
	for k := 0; k < t.n; k++ {
		b := t.newest - slo.Minute(int64(k)*t.step)
		if b <= m {
			return
		}
		i := (t.head - k + len(t.cells)) % len(t.cells)
		s := t.cells[i].sums()
		t.cells[i] = packCell(sums{s.good + d.good, s.total + d.total, s.data + d.data})
	}
}

// Tier resolutions, in minutes.
const (
	fineStep   = 1
	mediumStep = 5
	coarseStep = 60
)

// rollupSize says how far back each tier reaches.
type rollupSize struct {
	fine, medium, coarse int // boundaries kept
}

// sizeFor returns the tier capacities for a longest window of w minutes:
// minute boundaries for 6h, 5-minute ones for 3d, hourly ones beyond.
func sizeFor(w int64) rollupSize {
	const fineSpan, mediumSpan = 6 * 60, 3 * 24 * 60
	s := rollupSize{fine: int(min(w, fineSpan)) + 1 + mediumStep}
	if w > fineSpan {
		s.medium = int(min(w, mediumSpan)/mediumStep) + 2
	}
	if w > mediumSpan {
		s.coarse = int(w/coarseStep) + 2
	}
	return s
}

func newRollup(start slo.Minute, size rollupSize) *rollup {
	r := &rollup{start: start, next: start}
	r.tiers[0] = newTier(fineStep, size.fine)
	r.tiers[1] = newTier(mediumStep, max(size.medium, 1))
	r.tiers[2] = newTier(coarseStep, max(size.coarse, 1))
	if size.medium == 0 {
		r.tiers[1] = tier{step: mediumStep, head: -1}
	}
	if size.coarse == 0 {
		r.tiers[2] = tier{step: coarseStep, head: -1}
	}
	r.record(start)
	return r
}

// record stores the current sums as boundary b in every tier b falls on.
func (r *rollup) record(b slo.Minute) {
	for i := range r.tiers {
		t := &r.tiers[i]
		if len(t.cells) > 0 && int64(b)%t.step == 0 {
			t.push(b, r.cum)
		}
	}
}

// fold adds the counts of minute m, which must be r.next. hasData says
// whether telemetry covered the minute.
func (r *rollup) fold(m slo.Minute, c slo.Counts, hasData bool) {
	if m != r.next {
		panic(fmt.Sprintf("rollup: fold minute %d, want %d", m, r.next))
	}
	r.cum.good += c.Good
	r.cum.total += c.Total
	if hasData {
		r.cum.data++
	}
	r.next++
	r.record(r.next)
}

// revise adds a correction to minute m, already folded: late samples. The
// cost is the number of boundaries after m.
func (r *rollup) revise(m slo.Minute, d slo.Counts, becameData bool) {
	if m >= r.next || m < r.start {
		return
	}
	ds := sums{good: d.Good, total: d.Total}
	if becameData {
		ds.data = 1
	}
	r.cum.good += ds.good
	r.cum.total += ds.total
	r.cum.data += ds.data
	for i := range r.tiers {
		r.tiers[i].addFrom(m, ds)
	}
	// Boundaries after m changed: remembered starts may be wrong.
	r.forget()
}

// sumsAt returns the sums at the earliest stored boundary at or after b,
// and that boundary.
func (r *rollup) sumsAt(b slo.Minute) (sums, slo.Minute) {
	t, i, bb := r.locate(b)
	if t == nil {
		return r.cum, bb
	}
	return t.cells[i].sums(), bb
}

// locate finds the earliest stored boundary at or after b: its tier and
// index in the tier's ring, or a nil tier for boundary r.next, whose sums
// are r.cum. It reads no boundary.
func (r *rollup) locate(b slo.Minute) (*tier, int, slo.Minute) {
	if b >= r.next {
		return nil, 0, r.next
	}
	if b <= r.start {
		b = r.start
	}
	for k := range r.tiers {
		t := &r.tiers[k]
		old, ok := t.oldest()
		if !ok {
			continue
		}
		// Round up to the tier's grid.
		bb := b
		if rem := int64(bb) % t.step; rem != 0 {
			bb += slo.Minute(t.step - rem)
		}
		if bb >= old && bb <= t.newest {
			return t, t.index(bb), bb
		}
	}
	// Older than anything kept: the oldest boundary there is.
	var best *tier
	bestB := r.next
	for k := range r.tiers {
		if old, ok := r.tiers[k].oldest(); ok && old < bestB {
			best, bestB = &r.tiers[k], old
		}
	}
	if best == nil {
		return nil, 0, r.next
	}
	return best, best.index(bestB), bestB
}

// windowSums are the counts of a window and the range they cover.
type windowSums struct {
	counts slo.Counts
	from   slo.Minute // the start used (a boundary at or after the one asked)
	to     slo.Minute
	data   uint32 // minutes with telemetry
}

// window returns the sums over [from, to).
func (r *rollup) window(from, to slo.Minute) windowSums {
	if from > to {
		from = to
	}
	end, toB := r.sumsAt(to)
	begin, fromB := r.sumsAt(from)
	if fromB > toB {
		fromB = toB
		begin = end
	}
	d := end.sub(begin)
	return windowSums{counts: slo.Counts{Good: d.good, Total: d.total}, from: fromB, to: toB, data: d.data}
}

// last returns the sums over the last d minutes.
func (r *rollup) last(minutes int64) windowSums {
	return r.window(r.next-slo.Minute(minutes), r.next)
}

// windowsToNext fills out[i] with the sums over [froms[i], r.next), as
// window does, for all the windows an evaluation reports at once. Reading
// a start boundary is most of the cost of a window: 10,000 SLOs' rollups
// fit in no cache, so each read waits for memory. Two things make it
// cheaper. All starts are located before any is read, so the reads are
// independent and the CPU overlaps their waits instead of queueing them.
// And a start read from the 5-minute or hour tier, which stays on the
// same boundary for 5 or 60 minutes, is remembered by its position i:
// the next evaluation asking for the same boundary there takes the
// remembered sums. Boundaries do not change once written, except through
// revise, which forgets what was remembered.
//
// The memory makes it a writer: only evaluation calls it, on one
// goroutine per rollup.
func (r *rollup) windowsToNext(froms []slo.Minute, out []windowSums) {
	if len(r.memo) != len(froms) {
		r.memo = make([]startMemo, len(froms))
		r.forget()
	}
	const batch = 16
	for base := 0; base < len(froms); base += batch {
		n := min(batch, len(froms)-base)
		var (
			at     [batch]*cell // the boundaries to read
			memo   [batch]bool  // whether to remember them
			begins [batch]sums
		)
		for k := range n {
			i := base + k
			t, idx, bb := r.locate(froms[i])
			out[i].from, out[i].to = bb, r.next
			switch {
			case t == nil:
				begins[k] = r.cum
			case t.step == fineStep:
				// Minute boundaries move every minute: nothing to remember.
				at[k] = &t.cells[idx]
			case r.memo[i].b == bb:
				begins[k] = r.memo[i].s
			default:
				at[k], memo[k] = &t.cells[idx], true
			}
		}
		for k := range n {
			if at[k] != nil {
				begins[k] = at[k].sums()
			}
		}
		for k := range n {
			i := base + k
			if memo[k] {
				r.memo[i] = startMemo{b: out[i].from, s: begins[k]}
			}
			d := r.cum.sub(begins[k])
			out[i].counts, out[i].data = slo.Counts{Good: d.good, Total: d.total}, d.data
		}
	}
}

// startMemo is the sums at a start boundary, as windowsToNext last read
// them.
type startMemo struct {
	b slo.Minute // noBoundary when nothing is remembered
	s sums
}

const noBoundary = slo.Minute(math.MinInt64)

// forget drops every remembered start boundary.
func (r *rollup) forget() {
	for i := range r.memo {
		r.memo[i].b = noBoundary
	}
}

// Serialisation. A rollup is written as its header and, per tier, the
// boundaries from oldest to newest as deltas: counts per bucket are mostly
// small integers, so they take one to three bytes as varints. Values that
// are not non-negative integers (approximate SLIs, revisions) are written
// as raw float64 behind a tag bit.

const rollupVersion = 1

var errCorrupt = errors.New("corrupt rollup")

func (r *rollup) marshal() []byte {
	buf := make([]byte, 0, 64+8*r.tiers[0].n)
	buf = binary.AppendUvarint(buf, rollupVersion)
	buf = binary.AppendVarint(buf, int64(r.start))
	buf = binary.AppendVarint(buf, int64(r.next))
	buf = appendFloat(buf, r.cum.good)
	buf = appendFloat(buf, r.cum.total)
	buf = binary.AppendUvarint(buf, uint64(r.cum.data))
	for i := range r.tiers {
		t := &r.tiers[i]
		buf = binary.AppendUvarint(buf, uint64(len(t.cells)))
		buf = binary.AppendUvarint(buf, uint64(t.n))
		buf = binary.AppendVarint(buf, int64(t.newest))
		var prev sums
		for k := t.n - 1; k >= 0; k-- {
			s := t.at(t.newest - slo.Minute(int64(k)*t.step))
			buf = appendDelta(buf, s.good-prev.good)
			buf = appendDelta(buf, s.total-prev.total)
			buf = binary.AppendUvarint(buf, uint64(s.data-prev.data))
			prev = s
		}
	}
	return buf
}

func appendFloat(buf []byte, f float64) []byte {
	return binary.LittleEndian.AppendUint64(buf, math.Float64bits(f))
}

// appendDelta writes d as uvarint(d<<1) when d is a small non-negative
// integer, else as 1 followed by the float's bits.
func appendDelta(buf []byte, d float64) []byte {
	if d >= 0 && d < 1<<52 && d == math.Trunc(d) {
		return binary.AppendUvarint(buf, uint64(d)<<1)
	}
	buf = binary.AppendUvarint(buf, 1)
	return appendFloat(buf, d)
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errCorrupt
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errCorrupt
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) float() float64 {
	if r.err != nil {
		return 0
	}
	if len(r.b) < 8 {
		r.err = errCorrupt
		return 0
	}
	f := math.Float64frombits(binary.LittleEndian.Uint64(r.b))
	r.b = r.b[8:]
	return f
}

func (r *reader) delta() float64 {
	v := r.uvarint()
	if v&1 == 0 {
		return float64(v >> 1)
	}
	return r.float()
}

// unmarshalRollup reads a rollup written by marshal, refusing anything
// inconsistent: a corrupt snapshot is rebuilt from telemetry, never used.
func unmarshalRollup(b []byte) (*rollup, error) {
	rd := &reader{b: b}
	if v := rd.uvarint(); v != rollupVersion {
		if rd.err == nil {
			return nil, fmt.Errorf("rollup version %d: %w", v, errCorrupt)
		}
		return nil, rd.err
	}
	r := &rollup{start: slo.Minute(rd.varint()), next: slo.Minute(rd.varint())}
	r.cum.good, r.cum.total = rd.float(), rd.float()
	r.cum.data = uint32(rd.uvarint())
	steps := [3]int64{fineStep, mediumStep, coarseStep}
	for i := range r.tiers {
		capacity, n := rd.uvarint(), rd.uvarint()
		// No tier holds more than 2^16 steps (7 years of hours), and each
		// step takes at least three bytes: a corrupt length is refused
		// before it allocates or loops.
		if rd.err != nil || capacity > 1<<16 || n > capacity || n > uint64(len(rd.b))/3 {
			return nil, errCorrupt
		}
		t := newTier(steps[i], int(capacity))
		if capacity == 0 {
			t = tier{step: steps[i], head: -1}
		}
		newest := slo.Minute(rd.varint())
		var s sums
		for k := int(n) - 1; k >= 0; k-- {
			s.good += rd.delta()
			s.total += rd.delta()
			s.data += uint32(rd.uvarint())
			t.push(newest-slo.Minute(int64(k)*t.step), s)
		}
		if rd.err != nil {
			return nil, rd.err
		}
		if n > 0 && (t.newest != newest || newest > r.next) {
			return nil, errCorrupt
		}
		r.tiers[i] = t
	}
	if len(rd.b) != 0 || r.next < r.start {
		return nil, errCorrupt
	}
	return r, nil
}

// bytes estimates the memory the rollup holds.
func (r *rollup) bytes() int {
	n := 96 + len(r.memo)*32
	for i := range r.tiers {
		n += len(r.tiers[i].cells)*20 + 72
	}
	return n
}
