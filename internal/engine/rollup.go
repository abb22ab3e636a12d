package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/qsp-dev/qsp/internal/slo"
)

// A rollup answers "how many good and total events between minute a and
// minute b" in constant time, whatever the distance, from cumulative sums
// kept at bucket boundaries.
//
// Boundary b holds the sums over [start, b). Three tiers keep boundaries
// at decreasing resolution so memory stays bounded: every minute for the
// recent past (covering the 5m to 6h windows exactly), every 5 minutes for
// the days after (1d, 3d), every hour for the rest of the SLO window. The
// tiers do not overlap: a boundary leaves the minute tier for the 5-minute
// one when it is 6 hours old (if it falls on 5 minutes), and the 5-minute
// tier for the hour one when it is 3 days old (if it falls on an hour), so
// no boundary is kept twice.
//
// A window whose start falls between two boundaries of a coarse tier
// would start at the next boundary, up to 4 or 59 minutes short. The
// engine reads the minutes of that bucket back from the source instead
// (see starts and exactStart): they are old and immutable, so the bucket's
// per-minute counts, checked against the rollup's own sum for the bucket,
// make the window start exactly where it is declared to. Without them the
// window starts at the boundary, and Window reports the start it used.
//
// The sums are float64: counts are exact integers up to 2^53, and a
// window is the difference of two sums, never an average of ratios.
type rollup struct {
	start slo.Minute // boundary start holds zero
	next  slo.Minute // minutes before next are folded; sums at boundary next
	cum   sums
	tiers [3]tier
	// heads parallel the minute tier's cells: the minute that starts at
	// the boundary of cells[i] has its heads at heads[i*headWords:] when
	// headState[i] says so, so a window that ends (and so starts) inside
	// a minute is exact (see subSteps). Heads that do not fit are in wide.
	heads     []uint16
	headState []uint8
	wide      map[slo.Minute][subSteps - 1]sums
	// memo holds start boundaries evaluation read (see windowsToNext).
	memo []startMemo
	// starts are the minutes of the coarse buckets long windows start
	// in, read back from the source (see startBucket).
	starts []*startBucket
}

// minuteHeads are the counts of a minute's first steps (see subSteps).
type minuteHeads = [subSteps - 1]slo.Counts

// A minute's heads take headWords uint16, good and total counts per
// head: what the first half of a minute counts is an integer below
// 65,536 up to 2,184 events a second; larger ones go to wide. With
// the state byte that is 5 bytes a minute (1.8 KiB for the 6h minute
// tier).
const headWords = 2 * (subSteps - 1)

const (
	headUnknown uint8 = iota // folded without heads, or not restored
	headPacked               // in heads
	headWide                 // in rollup.wide
)

// packHeads stores h at cell i when every count is an integer that fits.
func (r *rollup) packHeads(i int, h [subSteps - 1]sums) bool {
	var v [headWords]uint16
	for k, s := range h {
		for j, f := range [2]float64{s.good, s.total} {
			if f < 0 || f > math.MaxUint16 || f != math.Trunc(f) {
				return false
			}
			v[2*k+j] = uint16(f)
		}
	}
	copy(r.heads[i*headWords:], v[:])
	r.headState[i] = headPacked
	return true
}

// headsAt returns the heads of folded minute m, if they are known.
func (r *rollup) headsAt(m slo.Minute) ([subSteps - 1]sums, bool) {
	var h [subSteps - 1]sums
	t := &r.tiers[0]
	old, ok := t.oldest()
	if !ok || len(r.headState) == 0 || m < old || m >= t.newest || m >= r.next || m < r.start {
		return h, false
	}
	i := t.index(m)
	switch r.headState[i] {
	case headPacked:
		v := r.heads[i*headWords : (i+1)*headWords]
		for k := range h {
			h[k] = sums{good: float64(v[2*k]), total: float64(v[2*k+1])}
		}
		return h, true
	case headWide:
		h, ok = r.wide[m]
		return h, ok
	}
	return h, false
}

// setHeads stores the heads of folded minute m, which must be in the
// minute tier.
func (r *rollup) setHeads(m slo.Minute, h [subSteps - 1]sums) {
	i := r.tiers[0].index(m)
	if r.headState[i] == headWide {
		delete(r.wide, m)
	}
	if r.packHeads(i, h) {
		return
	}
	if r.wide == nil {
		r.wide = map[slo.Minute][subSteps - 1]sums{}
	}
	r.wide[m] = h
	r.headState[i] = headWide
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
// minute boundaries for 6h, 5-minute ones for the rest of 3d, hourly
// ones beyond. The tiers follow each other (see cascade), so each covers
// its span past the finer one's, with a few steps to spare for the
// boundaries on the way down (not on the coarser grid) and the bucket a
// window starts in.
func sizeFor(w int64) rollupSize {
	const fineSpan, mediumSpan = 6 * 60, 3 * 24 * 60
	s := rollupSize{fine: int(min(w, fineSpan)) + 1 + mediumStep}
	if w > fineSpan {
		s.medium = int((min(w, mediumSpan)-fineSpan)/mediumStep) + 4
	}
	if w > mediumSpan {
		s.coarse = int((w-mediumSpan)/coarseStep) + 4
	}
	return s
}

func newRollup(start slo.Minute, size rollupSize) *rollup {
	r := &rollup{start: start, next: start}
	r.tiers[0] = newTier(fineStep, size.fine)
	r.heads, r.headState = make([]uint16, size.fine*headWords), make([]uint8, size.fine)
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

// record stores the current sums as boundary b in the minute tier; the
// boundary it pushes out moves on to the coarser tiers (see cascade).
func (r *rollup) record(b slo.Minute) {
	r.cascade(0, b, r.cum)
	if t := &r.tiers[0]; len(r.headState) == len(t.cells) && len(t.cells) > 0 {
		// The minute that starts at b is not folded yet; the cell's
		// former minute is forgotten.
		if r.headState[t.head] == headWide {
			delete(r.wide, b-slo.Minute(len(t.cells)))
		}
		r.headState[t.head] = headUnknown
	}
}

// cascade pushes boundary b with sums s into tier i, when b falls on its
// grid and is newer than what it holds, and passes the boundary the push
// overwrites on to the next tier: a boundary lives in one tier at a time.
// A tier that would skip a step is restarted (its ring holds consecutive
// steps only); rollups persisted with overlapping tiers skip the
// boundaries they already hold.
func (r *rollup) cascade(i int, b slo.Minute, s sums) {
	for ; i < len(r.tiers); i++ {
		t := &r.tiers[i]
		if len(t.cells) == 0 || int64(b)%t.step != 0 || t.n > 0 && b <= t.newest {
			return
		}
		if t.n > 0 && b != t.newest+slo.Minute(t.step) {
			t.n, t.head = 0, -1
		}
		var out sums
		var outB slo.Minute
		full := t.n == len(t.cells)
		if full {
			outB, _ = t.oldest()
			out = t.cells[(t.head+1)%len(t.cells)].sums()
		}
		t.push(b, s)
		if !full {
			return
		}
		b, s = outB, out
	}
}

// fold adds the counts of minute m, which must be r.next. hasData says
// whether telemetry covered the minute.
func (r *rollup) fold(m slo.Minute, c slo.Counts, hasData bool) {
	r.foldHeads(m, c, hasData, nil)
}

// foldHeads folds minute m as fold does, with its heads when not nil.
func (r *rollup) foldHeads(m slo.Minute, c slo.Counts, hasData bool, h *minuteHeads) {
	if m != r.next {
		panic(fmt.Sprintf("rollup: fold minute %d, want %d", m, r.next))
	}
	if h != nil && len(r.headState) > 0 && r.tiers[0].n > 0 && r.tiers[0].newest == m {
		var hs [subSteps - 1]sums
		for k, hc := range h {
			hs[k] = sums{good: hc.Good, total: hc.Total}
		}
		r.setHeads(m, hs)
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
	r.reviseHeads(m, d, becameData, nil)
}

// reviseHeads revises minute m as revise does, and its heads by dh when
// not nil: heads of a minute folded without them stay unknown.
func (r *rollup) reviseHeads(m slo.Minute, d slo.Counts, becameData bool, dh *minuteHeads) {
	if m >= r.next || m < r.start {
		return
	}
	if h, ok := r.headsAt(m); ok && dh != nil {
		for k := range h {
			h[k].good += dh[k].Good
			h[k].total += dh[k].Total
		}
		r.setHeads(m, h)
	} else if ok && (d.Good != 0 || d.Total != 0) {
		// A correction without heads: where in the minute is unknown.
		r.headState[r.tiers[0].index(m)] = headUnknown
		delete(r.wide, m)
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
	// Boundaries after m changed: remembered starts may be wrong, and
	// so may a bucket read back around m.
	r.forget()
	if len(r.starts) > 0 {
		r.dropStartsAt(m)
	}
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
// are r.cum. A b older than anything kept gets the oldest boundary there
// is. It reads no boundary.
func (r *rollup) locate(b slo.Minute) (*tier, int, slo.Minute) {
	if b >= r.next {
		return nil, 0, r.next
	}
	if b <= r.start {
		b = r.start
	}
	var best *tier
	bestB := r.next
	for k := range r.tiers {
		t := &r.tiers[k]
		old, ok := t.oldest()
		if !ok || b > t.newest {
			continue
		}
		// Round up to the tier's grid.
		bb := max(b, old)
		if rem := int64(bb) % t.step; rem != 0 {
			bb += slo.Minute(t.step - rem)
		}
		if bb < bestB {
			best, bestB = t, bb
		}
	}
	if best == nil {
		return nil, 0, r.next
	}
	return best, best.index(bestB), bestB
}

// floorBoundary returns the latest stored boundary at or before b, or
// r.start when none is kept: the sums there are zero by definition. ok is
// false when b is outside [r.start, r.next).
func (r *rollup) floorBoundary(b slo.Minute) (slo.Minute, bool) {
	if b < r.start || b >= r.next {
		return 0, false
	}
	best, found := r.start, false
	for k := range r.tiers {
		t := &r.tiers[k]
		old, ok := t.oldest()
		if !ok || b < old {
			continue
		}
		bb := min(b, t.newest)
		bb -= slo.Minute(int64(bb) % t.step)
		if !found || bb > best {
			best, found = bb, true
		}
	}
	// Nothing at or before b kept: r.start, whose sums are zero, is the
	// boundary before it.
	return best, true
}

// windowSums are the counts of a window and the range they cover.
type windowSums struct {
	counts slo.Counts
	from   slo.Minute // the start used (a boundary at or after the one asked)
	to     slo.Minute
	data   uint32 // minutes with telemetry
	// fromQ and toQ are the steps (see subSteps) past from and to where the window
	// starts and ends (see subSteps).
	fromQ, toQ int
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

// rollupVersion is in every plan's fingerprint: changing it rebuilds
// every persisted rollup. rollupFormat is the encoding written: format 2
// adds the minutes' heads, and format 1 is read as heads unknown.
const (
	rollupVersion = 1
	rollupFormat  = 2
)

var errCorrupt = errors.New("corrupt rollup")

func (r *rollup) marshal() []byte {
	buf := make([]byte, 0, 64+8*r.tiers[0].n)
	buf = binary.AppendUvarint(buf, rollupFormat)
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
	// The heads of the minute tier's boundaries, oldest first: whether
	// they are known, then their counts.
	t := &r.tiers[0]
	for k := t.n - 1; k >= 0; k-- {
		m := t.newest - slo.Minute(k)
		h, ok := r.headsAt(m)
		if !ok {
			buf = append(buf, 0)
			continue
		}
		buf = append(buf, 1)
		for _, hs := range h {
			buf = appendDelta(buf, hs.good)
			buf = appendDelta(buf, hs.total)
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
	format := rd.uvarint()
	if format != 1 && format != rollupFormat {
		if rd.err == nil {
			return nil, fmt.Errorf("rollup version %d: %w", format, errCorrupt)
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
	r.heads, r.headState = make([]uint16, len(r.tiers[0].cells)*headWords), make([]uint8, len(r.tiers[0].cells))
	if format >= 2 {
		if t := &r.tiers[0]; uint64(len(rd.b)) < uint64(t.n) {
			return nil, errCorrupt // a byte per boundary at least
		}
		r.readHeads(rd)
		if rd.err != nil {
			return nil, rd.err
		}
	}
	if len(rd.b) != 0 || r.next < r.start {
		return nil, errCorrupt
	}
	return r, nil
}

// readHeads reads the heads marshal wrote.
func (r *rollup) readHeads(rd *reader) {
	t := &r.tiers[0]
	for k := t.n - 1; k >= 0 && rd.err == nil; k-- {
		m := t.newest - slo.Minute(k)
		if len(rd.b) == 0 {
			rd.err = errCorrupt
			return
		}
		known := rd.b[0]
		rd.b = rd.b[1:]
		if known == 0 {
			continue
		}
		var h [subSteps - 1]sums
		for j := range h {
			h[j].good, h[j].total = rd.delta(), rd.delta()
		}
		if known != 1 || rd.err != nil {
			rd.err = errCorrupt
			return
		}
		if m < r.next && m >= r.start {
			r.setHeads(m, h)
		}
	}
}

// bytes estimates the memory the rollup holds.
func (r *rollup) bytes() int {
	n := 96 + len(r.memo)*32 + len(r.heads)*2 + len(r.headState) + len(r.wide)*64
	for _, b := range r.starts {
		n += 72 + cap(b.enc)
	}
	for i := range r.tiers {
		n += len(r.tiers[i].cells)*20 + 72
	}
	return n
}

// startBucket holds the minutes [lo, hi) between two stored boundaries,
// lo and hi, read back from the source for the windows that start in
// them: the same feeder that folded the minutes counted them again from
// raw samples (old minutes, beyond any revision, so the samples are the
// same), and their sum agreed with the rollup's for the bucket. Per
// minute, enc holds its good and total counts and its heads (appendDelta
// each, from lo on) and a byte saying whether it had data: a few hundred
// bytes for an hour of integer counts.
//
// When the read disagreed (the source no longer has the samples, or the
// counts differ), ok is false and windows starting in the bucket start at
// hi, as without the read; the bucket is not read again before retry
// (a failed read) or ever (a disagreement) while windows start in it.
type startBucket struct {
	lo, hi slo.Minute
	ok     bool
	retry  slo.Minute // with !ok after a failed read: read again from this r.next
	enc    []byte
	// used marks the buckets an evaluation needs (see keepStarts).
	used bool
}

// maxBucket bounds the minutes a bucket read back may span: the hour
// tier's step.
const maxBucket = coarseStep

// bucketMinute is one minute of a bucket being built.
type bucketMinute struct {
	counts slo.Counts
	heads  minuteHeads
	data   bool
}

// encodeBucket packs the minutes of a bucket.
func encodeBucket(ms []bucketMinute) []byte {
	buf := make([]byte, 0, len(ms)*(3+4*(subSteps-1)))
	for _, m := range ms {
		buf = appendDelta(buf, m.counts.Good)
		buf = appendDelta(buf, m.counts.Total)
		for _, h := range m.heads {
			buf = appendDelta(buf, h.Good)
			buf = appendDelta(buf, h.Total)
		}
		var d byte
		if m.data {
			d = 1
		}
		buf = append(buf, d)
	}
	return buf
}

// partial returns the sums over the bucket's minutes from s to hi, less
// the counts of minute s before its step q (its head), with the minutes
// that had data.
func (b *startBucket) partial(s slo.Minute, q int) sums {
	rd := reader{b: b.enc}
	var out sums
	for m := b.lo; m < b.hi && rd.err == nil; m++ {
		good, total := rd.delta(), rd.delta()
		var h [subSteps - 1]sums
		for k := range h {
			h[k].good, h[k].total = rd.delta(), rd.delta()
		}
		if len(rd.b) == 0 {
			rd.err = errCorrupt
			break
		}
		data := rd.b[0] == 1
		rd.b = rd.b[1:]
		if m < s {
			continue
		}
		out.good += good
		out.total += total
		if data {
			out.data++
		}
		if m == s && q > 0 {
			out.good -= h[q-1].good
			out.total -= h[q-1].total
		}
	}
	return out
}

// bucketAt returns the bucket holding minute s, or nil.
func (r *rollup) bucketAt(s slo.Minute) *startBucket {
	for _, b := range r.starts {
		if b.lo <= s && s < b.hi {
			return b
		}
	}
	return nil
}

// windowStart is where a window starts in the rollup: the boundary read,
// and, when that is the boundary found, the start reported and what is
// added to the sums read (the minutes of a bucket read back, less a
// head).
type windowStart struct {
	read slo.Minute
	from slo.Minute
	q    int
	adj  sums
}

// startOf returns where a window of d minutes ending at e starts: at
// edge (e.m-d, e.q), exactly as long as declared, when the rollup keeps
// that boundary (and the heads of a start inside a minute) or the
// minutes of the bucket it is in were read back (starts). Otherwise it
// starts later, never earlier: at the next minute when the start minute's
// heads are unknown, at the next boundary kept when the start is between
// two.
func (r *rollup) startOf(e edge, d int64) windowStart {
	return r.startAt(e.m-slo.Minute(d), e.q)
}

// startAt returns where a window that starts at step q of minute s
// starts (see startOf).
func (r *rollup) startAt(s slo.Minute, q int) windowStart {
	if q > 0 {
		if h, ok := r.headsAt(s); ok {
			return windowStart{read: s, from: s, q: q, adj: sums{good: -h[q-1].good, total: -h[q-1].total}}
		}
	}
	if s >= r.start && s < r.next && len(r.starts) > 0 {
		if q == 0 {
			if _, _, bb := r.locate(s); bb == s {
				return windowStart{read: s, from: s}
			}
		}
		if b := r.bucketAt(s); b != nil && b.ok {
			return windowStart{read: b.hi, from: s, q: q, adj: b.partial(s, q)}
		}
	}
	if q > 0 {
		return windowStart{read: s + 1, from: s + 1}
	}
	return windowStart{read: s, from: s}
}

// apply sets w, read from st.read, to start where st says.
func (st windowStart) apply(w *windowSums) {
	if w.from != st.read {
		return // not the boundary asked: w says where it starts
	}
	w.counts.Good += st.adj.good
	w.counts.Total += st.adj.total
	w.data += st.adj.data
	w.from, w.fromQ = st.from, st.q
}

// needBucket reports the bucket [lo, hi) to read back so a window that
// starts at step q of minute s starts exactly there: the stored
// boundaries around s when s is between two, or minute s itself when the
// start is inside it and its heads are unknown. ok is false when the
// rollup answers the start exactly already, or cannot (s outside it, a
// bucket longer than maxBucket).
func (r *rollup) needBucket(s slo.Minute, q int) (lo, hi slo.Minute, ok bool) {
	if s < r.start || s >= r.next {
		return 0, 0, false
	}
	if q > 0 {
		if _, known := r.headsAt(s); known {
			return 0, 0, false
		}
	}
	_, _, bb := r.locate(s)
	if bb == s {
		if q == 0 {
			return 0, 0, false
		}
		_, _, hi = r.locate(s + 1)
		lo = s
	} else {
		var found bool
		if lo, found = r.floorBoundary(s); !found {
			return 0, 0, false
		}
		hi = bb
	}
	if hi <= s || hi-lo > maxBucket || hi >= r.next {
		return 0, 0, false
	}
	return lo, hi, true
}

// bucketSums returns the rollup's sums over [lo, hi), both stored
// boundaries (or lo its start): what a bucket read back must add up to.
func (r *rollup) bucketSums(lo, hi slo.Minute) (sums, bool) {
	end, hb := r.sumsAt(hi)
	if hb != hi {
		return sums{}, false
	}
	var begin sums
	if lo != r.start {
		var lb slo.Minute
		if begin, lb = r.sumsAt(lo); lb != lo {
			return sums{}, false
		}
	}
	return end.sub(begin), true
}

// keepStarts drops the buckets not marked used since the last call, and
// clears the marks.
func (r *rollup) keepStarts() {
	r.starts = slices.DeleteFunc(r.starts, func(b *startBucket) bool { return !b.used })
	for _, b := range r.starts {
		b.used = false
	}
	if len(r.starts) == 0 {
		r.starts = nil
	}
}

// dropStartsAt forgets the buckets holding minute m, which changed.
func (r *rollup) dropStartsAt(m slo.Minute) {
	r.starts = slices.DeleteFunc(r.starts, func(b *startBucket) bool { return b.lo <= m && m < b.hi })
}
