package ui

import (
	"cmp"
	"fmt"
	"html"
	"html/template"
	"math"
	"sort"
	"strings"
	"time"
)

// Charts are SVG drawn here, in Go, and inlined in the page: no scripts,
// no chart library. Every chart has a <title> and <desc> naming what it
// shows and its latest value, and the page puts the same numbers in a
// table (ChartTable) for screen readers and for copying. Colours come
// from the Okabe-Ito palette, which stays distinct for the common colour
// vision deficiencies, and every series or mark that carries a state also
// has a pattern, a dash style or a text label: nothing is told by colour
// alone. Presentation is in attributes and classes, never in style
// attributes, which the CSP forbids.

// Okabe-Ito colours.
const (
	colBlue       = "#0072B2"
	colOrange     = "#E69F00"
	colSky        = "#56B4E9"
	colGreen      = "#009E73"
	colVermillion = "#D55E00"
	colPurple     = "#CC79A7"
	colGrey       = "#6b6b6b"
	colInk        = "#1a1a1a"
)

// Sample is one value of a series at a time; a nil V is a gap (no data).
type Sample struct {
	At time.Time
	V  *float64
}

// Marker is an instant on a time chart: a deploy. Flag is the short
// text on its flag ("D v2.14.0"); empty writes "D".
type Marker struct {
	At    time.Time
	Label string
	Flag  string
}

// Threshold is a further dashed line: an alert threshold.
type Threshold struct {
	V     float64
	Label string
}

// Span is an interval on a time chart: an incident. A zero To is still
// open.
type Span struct {
	From, To time.Time
	Label    string
}

// LineChart is a series over time with an optional reference line (the
// objective, zero budget), deploy markers and incident spans.
type LineChart struct {
	// ID makes the SVG's element IDs unique in the page.
	ID          string
	Title, Desc string
	From, To    time.Time
	Samples     []Sample
	// YMin and YMax fix the value axis; both zero scales it to the data
	// and the reference line, padded, but not above Cap when Cap is set
	// (a ratio never exceeds 1).
	YMin, YMax float64
	Cap        *float64
	// Ref draws a dashed horizontal line labelled RefLabel.
	Ref      *float64
	RefLabel string
	// Format writes a value for the axis and the table; default %.3g.
	Format  func(float64) string
	Markers []Marker
	Spans   []Span
	// Firing are the spans an alert fired, drawn as a solid band along
	// the bottom of the plot, apart from the hatched incidents.
	Firing     []Span
	Thresholds []Threshold
	Loc        *time.Location
	// Projection is a second series drawn dashed after the data: where
	// the forecast takes the value (see projectBudget).
	Projection      []Sample
	ProjectionLabel string
}

// textWidth estimates the width of a label in SVG user units at a font
// size, on the safe side: the pages' sans-serif (DejaVu Sans Bold on a
// Debian desktop) sets digits 0.7 em wide, "×" and "▲" over 0.8 em and
// "m" or "W" a full em; an estimate below the real width lets two labels
// print over each other ("30.83× / 28.02× ▲").
func textWidth(s string, size float64) float64 {
	em := 0.0
	for _, r := range s {
		switch {
		case r == ' ':
			em += 0.35
		case r == '.' || r == ',' || r == ':' || r == 'i' || r == 'l':
			em += 0.4
		case r == 'm' || r == 'w' || r == 'M' || r == 'W':
			em += 1.05
		case r < 0x80:
			em += 0.72
		default:
			em += 0.9
		}
	}
	return em*size + 2
}

// rows lays labels out so that none overlaps another: each label, in x
// order, goes to the first row whose last label ends before it starts.
// It returns the row of each label and the number of rows.
func rows(xs, widths []float64, gap float64) ([]int, int) {
	row := make([]int, len(xs))
	var ends []float64
	order := make([]int, len(xs))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return xs[order[a]] < xs[order[b]] })
	for _, i := range order {
		left := xs[i] - widths[i]/2
		r := 0
		for r < len(ends) && ends[r]+gap > left {
			r++
		}
		if r == len(ends) {
			ends = append(ends, 0)
		}
		ends[r] = xs[i] + widths[i]/2
		row[i] = r
	}
	return row, len(ends)
}

// Chart geometry, in SVG user units; the SVG scales to its container.
const (
	chartW      = 720
	chartH      = 220
	padL        = 64
	padR        = 16
	padT        = 26
	padB        = 34
	maxRowsShow = 48
)

func esc(s string) string { return html.EscapeString(s) }

func (c *LineChart) format(v float64) string {
	if c.Format != nil {
		return c.Format(v)
	}
	return fmt.Sprintf("%.3g", v)
}

// yRange is the value axis: the data and the reference line, padded.
func (c *LineChart) yRange() (lo, hi float64) {
	if c.YMin != 0 || c.YMax != 0 {
		return c.YMin, c.YMax
	}
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, s := range c.Samples {
		if s.V != nil && !math.IsNaN(*s.V) && !math.IsInf(*s.V, 0) {
			lo, hi = math.Min(lo, *s.V), math.Max(hi, *s.V)
		}
	}
	if c.Ref != nil {
		lo, hi = math.Min(lo, *c.Ref), math.Max(hi, *c.Ref)
	}
	for _, t := range c.Thresholds {
		lo, hi = math.Min(lo, t.V), math.Max(hi, t.V)
	}
	if math.IsInf(lo, 1) {
		return 0, 1
	}
	if hi-lo < 1e-9 {
		pad := math.Max(math.Abs(hi)*0.01, 1e-6)
		lo, hi = lo-pad, hi+pad
		if c.Cap != nil && hi > *c.Cap {
			lo, hi = lo-(hi-*c.Cap), *c.Cap
		}
		return lo, hi
	}
	pad := (hi - lo) * 0.08
	lo, hi = lo-pad, hi+pad
	if c.Cap != nil && hi > *c.Cap {
		hi = *c.Cap
	}
	return lo, hi
}

// Latest returns the newest sample with a value.
func (c *LineChart) Latest() (Sample, bool) {
	for i := len(c.Samples) - 1; i >= 0; i-- {
		if c.Samples[i].V != nil {
			return c.Samples[i], true
		}
	}
	return Sample{}, false
}

// SVG draws the chart.
func (c *LineChart) SVG() template.HTML {
	var b strings.Builder
	lo, hi := c.yRange()
	t0, t1 := c.From, c.To
	if !t1.After(t0) {
		t1 = t0.Add(time.Minute)
	}
	loc := c.Loc
	if loc == nil {
		loc = time.UTC
	}
	plotW := float64(chartW - padL - padR)
	x := func(t time.Time) float64 {
		f := float64(t.Sub(t0)) / float64(t1.Sub(t0))
		return padL + math.Max(0, math.Min(1, f))*plotW
	}
	// Deploy flags are stacked in rows above the plot, so that two
	// deploys close in time never print over each other ("DD").
	var marks []Marker
	var mxs, mws []float64
	for _, m := range c.Markers {
		if m.At.Before(t0) || m.At.After(t1) {
			continue
		}
		marks = append(marks, m)
		mxs = append(mxs, x(m.At)+4+textWidth(m.flag(), 10)/2)
		mws = append(mws, textWidth(m.flag(), 10)+8)
	}
	mrow, nrows := rows(mxs, mws, 2)
	padT := float64(padT)
	if nrows > 1 {
		padT += float64(nrows-1) * 12
	}
	plotH := float64(chartH) - padT - padB
	y := func(v float64) float64 {
		f := (v - lo) / (hi - lo)
		return padT + (1-math.Max(-0.02, math.Min(1.02, f)))*plotH
	}
	id := esc(c.ID)
	desc := c.Desc
	if s, ok := c.Latest(); ok && desc == "" {
		desc = fmt.Sprintf("Latest value %s at %s.", c.format(*s.V), s.At.In(loc).Format("2006-01-02 15:04"))
	}
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %d %d" role="img" aria-labelledby="%s-t %s-d" xmlns="http://www.w3.org/2000/svg">`, chartW, chartH, id, id)
	fmt.Fprintf(&b, `<title id="%s-t">%s</title><desc id="%s-d">%s</desc>`, id, esc(c.Title), id, esc(desc))
	// Incidents: hatched spans, so they read without colour.
	fmt.Fprintf(&b, `<defs><pattern id="%s-hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">`+
		`<rect width="6" height="6" fill="%s" fill-opacity="0.12"/><line x1="0" y1="0" x2="0" y2="6" stroke="%s" stroke-width="2" stroke-opacity="0.45"/></pattern></defs>`,
		id, colVermillion, colVermillion)
	// The plot carries its time range, so that a test (or a reader of the
	// markup) can tell where on the axis a span or a marker should be.
	fmt.Fprintf(&b, `<rect class="plot" x="%d" y="%.0f" width="%.0f" height="%.0f" fill="#ffffff" stroke="#c8c8c8" data-from="%s" data-to="%s"/>`,
		padL, padT, plotW, plotH, t0.UTC().Format(time.RFC3339), t1.UTC().Format(time.RFC3339))
	for _, s := range c.Firing {
		to := s.To
		if to.IsZero() || to.After(t1) {
			to = t1
		}
		if to.Before(t0) || s.From.After(t1) {
			continue
		}
		x0, x1 := x(s.From), x(to)
		fmt.Fprintf(&b, `<rect class="firing" x="%.1f" y="%.1f" width="%.1f" height="6" fill="%s"><title>%s</title></rect>`,
			x0, padT+plotH-6, math.Max(x1-x0, 2), colVermillion, esc(s.Label))
	}
	for _, s := range c.Spans {
		to := s.To
		if to.IsZero() || to.After(t1) {
			to = t1
		}
		if to.Before(t0) || s.From.After(t1) {
			continue
		}
		x0, x1 := x(s.From), x(to)
		fmt.Fprintf(&b, `<rect class="span" x="%.1f" y="%.0f" width="%.1f" height="%.0f" fill="url(#%s-hatch)"><title>%s</title></rect>`,
			x0, padT, math.Max(x1-x0, 2), plotH, id, esc(s.Label))
	}
	// Value axis: five ticks.
	for i := range 5 {
		v := lo + (hi-lo)*float64(i)/4
		yy := y(v)
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#e4e4e4"/>`, padL, chartW-padR, yy, yy)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" class="tick">%s</text>`, padL-6, yy+4, esc(c.format(v)))
	}
	// Time axis: ticks at the start, the end and three between.
	for i := range 5 {
		t := t0.Add(time.Duration(float64(t1.Sub(t0)) * float64(i) / 4))
		anchor := "middle"
		switch i {
		case 0:
			anchor = "start"
		case 4:
			anchor = "end"
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="%s" class="tick">%s</text>`, x(t), chartH-padB+16, anchor, esc(timeTick(t.In(loc), t1.Sub(t0))))
	}
	// Alert thresholds: dashed lines labelled at the right end, each
	// label moved down until it clears the one above it.
	lastY := math.Inf(-1)
	ths := append([]Threshold(nil), c.Thresholds...)
	sort.Slice(ths, func(i, j int) bool { return ths[i].V > ths[j].V })
	for _, t := range ths {
		ty := y(t.V)
		fmt.Fprintf(&b, `<line class="threshold" x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="%s" stroke-width="1.2" stroke-dasharray="3 3"><title>%s</title></line>`,
			padL, chartW-padR, ty, ty, colOrange, esc(t.Label))
		ly := math.Max(ty-3, lastY+12)
		if ly > padT+plotH-4 {
			// No room left inside the plot: the line keeps its title and
			// the chart's description names every threshold.
			continue
		}
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" class="label">%s</text>`, chartW-padR-4, ly, esc(t.Label))
		lastY = ly
	}
	if c.Ref != nil {
		ry := y(*c.Ref)
		fmt.Fprintf(&b, `<line class="ref" x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="%s" stroke-width="1.5" stroke-dasharray="6 4"/>`, padL, chartW-padR, ry, ry, colInk)
		// Left, where the newest values, deploys and incidents are not.
		ly := ry - 4
		if ly < padT+12 {
			ly = ry + 14
		}
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="start" class="label">%s</text>`, padL+4, ly, esc(c.RefLabel))
	}
	// The series: segments between gaps.
	var path strings.Builder
	pen := false
	for _, s := range c.Samples {
		if s.V == nil || math.IsNaN(*s.V) || math.IsInf(*s.V, 0) {
			pen = false
			continue
		}
		cmd := "L"
		if !pen {
			cmd = "M"
		}
		fmt.Fprintf(&path, "%s%.1f %.1f ", cmd, x(s.At), y(*s.V))
		pen = true
	}
	if path.Len() > 0 {
		fmt.Fprintf(&b, `<path class="series" d="%s" fill="none" stroke="%s" stroke-width="2" stroke-linejoin="round"/>`, strings.TrimSpace(path.String()), colBlue)
	}
	c.projectionSVG(&b, x, y)
	// Deploys: a vertical line with a labelled flag.
	for i, m := range marks {
		mx := x(m.At)
		fy := padT - 6 - float64(mrow[i])*12
		fmt.Fprintf(&b, `<g class="marker"><title>%s</title><line x1="%.1f" x2="%.1f" y1="%.1f" y2="%d" stroke="%s" stroke-width="1.5" stroke-dasharray="2 2"/>`+
			`<path d="M%.1f %.1f l4 -3 l-4 -3 z" fill="%s"/><text x="%.1f" y="%.1f" class="flag">%s</text></g>`,
			esc(m.Label), mx, mx, fy-6, chartH-padB, colPurple, mx, fy, colPurple, mx+5, fy, esc(m.flag()))
	}
	if len(c.Samples) == 0 || path.Len() == 0 {
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="middle" class="empty">No data in this range</text>`, padL+plotW/2, padT+plotH/2)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) //nolint:gosec // every dynamic string above is escaped
}

func (m Marker) flag() string { return cmp.Or(m.Flag, "D") }

func timeTick(t time.Time, span time.Duration) string {
	switch {
	case span <= 36*time.Hour:
		return t.Format("Jan 2 15:04")
	default:
		return t.Format("Jan 2")
	}
}

// Row is a line of a chart's data table.
type Row struct {
	Time  string
	Value string
}

// Rows returns the chart's data for its table: at most maxRowsShow rows,
// evenly spaced, newest last, and every incident and deploy.
func (c *LineChart) Rows() []Row {
	loc := c.Loc
	if loc == nil {
		loc = time.UTC
	}
	n := len(c.Samples)
	step := max(1, (n+maxRowsShow-1)/maxRowsShow)
	var out []Row
	for i := n - 1; i >= 0; i -= step {
		s := c.Samples[i]
		v := "no data"
		if s.V != nil {
			v = c.format(*s.V)
		}
		out = append(out, Row{Time: s.At.In(loc).Format("2006-01-02 15:04"), Value: v})
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// Bar is one bar of a BarChart.
type Bar struct {
	Label string
	V     *float64
	// Alert marks a bar over its alert threshold: drawn hatched and
	// labelled, not only coloured.
	Alert bool
}

// Rows of stacked bar labels are a line apart, not an em: a label's box
// is its font's line height, 1.15 em for DejaVu Sans and more when a
// glyph ("▲") comes from a fallback font, so rows an em apart overlap
// by a pixel or two in the browser (the bot attack's "30.92× / 28.11× ▲").
const (
	valueRow = 17 // the 12px value labels
	tickRow  = 15 // the 11px window names
)

// inside returns the centre x of a label w wide, moved into [lo, hi].
func inside(x, w, lo, hi float64) float64 {
	return math.Max(lo+w/2, math.Min(x, hi-w/2))
}

// BarChart is burn rates per window.
type BarChart struct {
	ID, Title, Desc string
	Bars            []Bar
	// Ref is a reference level (1: spending the budget exactly over the
	// window).
	Ref      float64
	RefLabel string
	Format   func(float64) string
}

func (c *BarChart) format(v float64) string {
	if c.Format != nil {
		return c.Format(v)
	}
	return fmt.Sprintf("%.3g", v)
}

// SVG draws the chart.
func (c *BarChart) SVG() template.HTML {
	var b strings.Builder
	plotW := float64(chartW - padL - padR)
	n := max(1, len(c.Bars))
	slot := plotW / float64(n)
	// Value labels sit in rows in a band above the bars and window names
	// in rows below them: with 14 windows a label is wider than its slot,
	// and side by side they would print over each other. The chart grows
	// by a row for each extra row of labels.
	labels := make([]string, len(c.Bars))
	cxs := make([]float64, len(c.Bars))
	vxs := make([]float64, len(c.Bars))
	vw := make([]float64, len(c.Bars))
	tw := make([]float64, len(c.Bars))
	for i, bar := range c.Bars {
		cxs[i] = padL + slot*(float64(i)+0.5)
		labels[i] = "no data"
		if bar.V != nil {
			labels[i] = c.format(*bar.V)
			if bar.Alert {
				labels[i] += " ▲"
			}
		}
		vw[i], tw[i] = textWidth(labels[i], 12), textWidth(bar.Label, 11)
		// Value labels stay over the plot: the first one, wider than its
		// slot, would otherwise reach over the axis's top tick.
		vxs[i] = inside(cxs[i], vw[i], padL, chartW-padR)
	}
	vrow, nv := rows(vxs, vw, 3)
	trow, nt := rows(cxs, tw, 3)
	extraTop, extraBottom := valueRow*max(0, nv-1), tickRow*max(0, nt-1)
	h := 200 + extraTop + extraBottom
	padT := float64(padT + extraTop)
	plotH := float64(h-padB-extraBottom) - padT
	hi := c.Ref * 1.25
	for _, bar := range c.Bars {
		if bar.V != nil && !math.IsInf(*bar.V, 0) && !math.IsNaN(*bar.V) {
			hi = math.Max(hi, *bar.V*1.1)
		}
	}
	if hi <= 0 {
		hi = 1
	}
	y := func(v float64) float64 { return padT + (1-math.Max(0, math.Min(1, v/hi)))*plotH }
	id := esc(c.ID)
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %d %d" role="img" aria-labelledby="%s-t %s-d" xmlns="http://www.w3.org/2000/svg">`, chartW, h, id, id)
	fmt.Fprintf(&b, `<title id="%s-t">%s</title><desc id="%s-d">%s</desc>`, id, esc(c.Title), id, esc(c.Desc))
	fmt.Fprintf(&b, `<defs><pattern id="%s-hot" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">`+
		`<rect width="6" height="6" fill="%s"/><line x1="0" y1="0" x2="0" y2="6" stroke="#ffffff" stroke-width="2"/></pattern></defs>`, id, colVermillion)
	fmt.Fprintf(&b, `<rect x="%d" y="%.0f" width="%.0f" height="%.0f" fill="#ffffff" stroke="#c8c8c8"/>`, padL, padT, plotW, plotH)
	for i := range 5 {
		v := hi * float64(i) / 4
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" class="tick">%s</text>`, padL-6, y(v)+4, esc(c.format(v)))
	}
	bw := math.Min(slot*0.6, 60)
	for i, bar := range c.Bars {
		cx := cxs[i]
		label := labels[i]
		if bar.V != nil {
			v := math.Max(0, *bar.V)
			if math.IsInf(v, 1) || math.IsNaN(v) {
				v = hi
			}
			fill := colSky
			if bar.Alert {
				fill = "url(#" + id + "-hot)"
			}
			top := y(v)
			fmt.Fprintf(&b, `<rect class="bar" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s" stroke="%s"><title>%s: %s</title></rect>`,
				cx-bw/2, top, bw, padT+plotH-top, fill, colInk, esc(bar.Label), esc(label))
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" class="value">%s</text>`, vxs[i], padT-6-float64(vrow[i])*valueRow, esc(label))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle" class="tick">%s</text>`, cx, padT+plotH+16+float64(trow[i])*tickRow, esc(bar.Label))
	}
	if c.Ref > 0 {
		// The line's meaning is in the title of the line and the caption:
		// a label would collide with the bars' values.
		ry := y(c.Ref)
		fmt.Fprintf(&b, `<line class="ref" x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="%s" stroke-width="1.5" stroke-dasharray="6 4"><title>%s</title></line>`,
			padL, chartW-padR, ry, ry, colInk, esc(c.RefLabel))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) //nolint:gosec // every dynamic string above is escaped
}

// TimelineEvent is one mark on an incident's timeline: an alert
// transition, a deploy, a gate verdict or a playbook run.
type TimelineEvent struct {
	At time.Time
	// Kind is alert, deploy, gate or playbook: the mark's shape and class.
	Kind  string
	Short string // the label on the strip
	Text  string // the full line of the list and the mark's title
	Href  string
}

// Timeline draws events on one time axis, labels stacked in rows so that
// none overlaps, with the incident as a hatched span.
type Timeline struct {
	ID, Title string
	From, To  time.Time
	Events    []TimelineEvent
	Span      Span
}

// SVG draws the timeline.
func (c *Timeline) SVG() template.HTML {
	var b strings.Builder
	t0, t1 := c.From, c.To
	if !t1.After(t0) {
		t1 = t0.Add(time.Minute)
	}
	plotW := float64(chartW - padL - padR)
	x := func(t time.Time) float64 {
		f := float64(t.Sub(t0)) / float64(t1.Sub(t0))
		return padL + math.Max(0, math.Min(1, f))*plotW
	}
	xs := make([]float64, len(c.Events))
	ws := make([]float64, len(c.Events))
	for i, e := range c.Events {
		ws[i] = textWidth(e.Short, 11) + 4
		// Labels start at their mark; the layout works on centres.
		xs[i] = x(e.At) + ws[i]/2
	}
	row, n := rows(xs, ws, 3)
	const axisY = 30
	h := axisY + 24 + 14*max(1, n)
	id := esc(c.ID)
	fmt.Fprintf(&b, `<svg class="chart timeline" viewBox="0 0 %d %d" role="img" aria-labelledby="%s-t" xmlns="http://www.w3.org/2000/svg">`, chartW, h, id)
	fmt.Fprintf(&b, `<title id="%s-t">%s</title>`, id, esc(c.Title))
	fmt.Fprintf(&b, `<defs><pattern id="%s-hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">`+
		`<rect width="6" height="6" fill="%s" fill-opacity="0.12"/><line x1="0" y1="0" x2="0" y2="6" stroke="%s" stroke-width="2" stroke-opacity="0.45"/></pattern></defs>`,
		id, colVermillion, colVermillion)
	if !c.Span.From.IsZero() {
		to := c.Span.To
		if to.IsZero() || to.After(t1) {
			to = t1
		}
		x0, x1 := x(c.Span.From), x(to)
		fmt.Fprintf(&b, `<rect class="span" x="%.1f" y="4" width="%.1f" height="%d" fill="url(#%s-hatch)"><title>%s</title></rect>`, x0, math.Max(2, x1-x0), h-8, id, esc(c.Span.Label))
	}
	fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="%s"/>`, padL, chartW-padR, axisY, axisY, colGrey)
	for i := range 5 {
		t := t0.Add(time.Duration(float64(t1.Sub(t0)) * float64(i) / 4))
		anchor := "middle"
		switch i {
		case 0:
			anchor = "start"
		case 4:
			anchor = "end"
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="%s" class="tick">%s</text>`, x(t), axisY-8, anchor, esc(t.UTC().Format("15:04")))
	}
	colour := map[string]string{"alert": colVermillion, "deploy": colPurple, "gate": colBlue, "playbook": colGreen}
	for i, e := range c.Events {
		ex := x(e.At)
		ly := float64(axisY + 22 + 14*row[i])
		col := cmp.Or(colour[e.Kind], colInk)
		fmt.Fprintf(&b, `<g class="tl tl-%s"><title>%s: %s</title><line x1="%.1f" x2="%.1f" y1="%d" y2="%.1f" stroke="%s" stroke-width="1.5"/>`+
			`<circle cx="%.1f" cy="%d" r="3.5" fill="%s"/><text x="%.1f" y="%.1f" class="label">%s</text></g>`,
			esc(e.Kind), esc(e.At.UTC().Format("15:04:05")), esc(e.Text), ex, ex, axisY, ly-9, col, ex, axisY, col, ex+2, ly, esc(e.Short))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) //nolint:gosec // every dynamic string above is escaped
}

// projectionSVG draws the projection: a dashed line with its label.
func (c *LineChart) projectionSVG(b *strings.Builder, x func(time.Time) float64, y func(float64) float64) {
	var path strings.Builder
	for i, s := range c.Projection {
		if s.V == nil || math.IsNaN(*s.V) || math.IsInf(*s.V, 0) {
			continue
		}
		cmd := "L"
		if i == 0 || path.Len() == 0 {
			cmd = "M"
		}
		fmt.Fprintf(&path, "%s%.1f %.1f ", cmd, x(s.At), y(*s.V))
	}
	if path.Len() == 0 {
		return
	}
	fmt.Fprintf(b, `<path class="projection" d="%s" fill="none" stroke="%s" stroke-width="2" stroke-dasharray="5 4"><title>%s</title></path>`,
		strings.TrimSpace(path.String()), colVermillion, esc(c.ProjectionLabel))
}
