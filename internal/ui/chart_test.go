package ui

import (
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"strings"
	"testing"
	"time"
)

// svgDoc parses an SVG and returns its elements in order, failing on any
// XML error: the charts must be well-formed.
func svgDoc(t *testing.T, svg string) []xml.StartElement {
	t.Helper()
	dec := xml.NewDecoder(strings.NewReader(svg))
	var els []xml.StartElement
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return els
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed: %v\n%s", err, svg)
		}
		if se, ok := tok.(xml.StartElement); ok {
			els = append(els, se)
		}
	}
}

func attr(e xml.StartElement, name string) string {
	for _, a := range e.Attr {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

func count(els []xml.StartElement, name, class string) int {
	n := 0
	for _, e := range els {
		if e.Name.Local == name && (class == "" || attr(e, "class") == class) {
			n++
		}
	}
	return n
}

func fp(f float64) *float64 { return &f }

func TestLineChart(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	var samples []Sample
	for i := range 100 {
		s := Sample{At: t0.Add(time.Duration(i) * time.Hour)}
		if i < 40 || i >= 50 { // a gap of ten hours without data
			s.V = fp(0.999 - float64(i%7)/10000)
		}
		samples = append(samples, s)
	}
	obj := 0.999
	c := &LineChart{
		ID: `sli-x"y`, Title: `SLI of <script>alert(1)</script>`, From: t0, To: t0.Add(99 * time.Hour), Samples: samples,
		Ref: &obj, RefLabel: "objective 99.9%",
		Markers: []Marker{{At: t0.Add(10 * time.Hour), Label: "Deploy v1 & <b>"}, {At: t0.Add(-time.Hour), Label: "before the range"}},
		Spans:   []Span{{From: t0.Add(60 * time.Hour), To: t0.Add(70 * time.Hour), Label: "Incident 7"}, {From: t0.Add(90 * time.Hour), Label: "open incident"}},
	}
	svg := string(c.SVG())
	els := svgDoc(t, svg)
	if strings.Contains(svg, "<script>") || strings.Contains(svg, "<b>") {
		t.Error("labels are not escaped")
	}
	if els[0].Name.Local != "svg" || attr(els[0], "role") != "img" || attr(els[0], "aria-labelledby") == "" {
		t.Errorf("root: %+v", els[0])
	}
	if count(els, "title", "") < 1 || count(els, "desc", "") != 1 {
		t.Error("no title or desc")
	}
	if got := count(els, "g", "marker"); got != 1 {
		t.Errorf("%d deploy markers drawn, want 1 (the other is outside the range)", got)
	}
	if got := count(els, "rect", "span"); got != 2 {
		t.Errorf("%d incident spans, want 2", got)
	}
	// The gap splits the series into two segments.
	for _, e := range els {
		if e.Name.Local == "path" && attr(e, "class") == "series" {
			if n := strings.Count(attr(e, "d"), "M"); n != 2 {
				t.Errorf("series has %d segments, want 2", n)
			}
		}
	}
	// Every coordinate is a finite number inside the viewBox.
	for _, e := range els {
		for _, a := range e.Attr {
			switch a.Name.Local {
			case "x", "y", "x1", "x2", "y1", "y2", "width", "height":
				var f float64
				if _, err := fmt.Sscan(a.Value, &f); err != nil || math.IsNaN(f) || f < -1 || f > chartW+1 {
					t.Errorf("%s %s=%q", e.Name.Local, a.Name.Local, a.Value)
				}
			}
		}
	}
	rows := c.Rows()
	if len(rows) > maxRowsShow || len(rows) < maxRowsShow/2 || rows[len(rows)-1].Time != "2026-11-05 03:00" {
		t.Errorf("%d rows, last %+v", len(rows), rows[len(rows)-1])
	}
	if !strings.Contains(c.Desc+svg, "Latest value") {
		t.Error("the description does not give the latest value")
	}
}

func TestLineChartEdges(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for name, c := range map[string]*LineChart{
		"empty":       {ID: "a", Title: "empty", From: t0, To: t0.Add(time.Hour)},
		"no values":   {ID: "b", Title: "gaps", From: t0, To: t0.Add(time.Hour), Samples: []Sample{{At: t0}, {At: t0.Add(time.Minute)}}},
		"flat":        {ID: "c", Title: "flat", From: t0, To: t0.Add(time.Hour), Samples: []Sample{{At: t0, V: fp(1)}, {At: t0.Add(time.Hour), V: fp(1)}}, Cap: fp(1)},
		"inf and nan": {ID: "d", Title: "odd", From: t0, To: t0.Add(time.Hour), Samples: []Sample{{At: t0, V: fp(math.Inf(1))}, {At: t0.Add(time.Minute), V: fp(math.NaN())}, {At: t0.Add(2 * time.Minute), V: fp(0.5)}}},
		"zero range":  {ID: "e", Title: "instant", From: t0, To: t0, Samples: []Sample{{At: t0, V: fp(0.3)}}},
	} {
		t.Run(name, func(t *testing.T) {
			svg := string(c.SVG())
			svgDoc(t, svg)
			if strings.Contains(svg, "NaN") || strings.Contains(svg, "Inf") {
				t.Errorf("non-finite coordinate:\n%s", svg)
			}
		})
	}
	lo, hi := (&LineChart{Samples: []Sample{{V: fp(1)}}, Cap: fp(1)}).yRange()
	if hi > 1 || lo >= 1 {
		t.Errorf("capped flat range [%v, %v]", lo, hi)
	}
}

func TestBarChart(t *testing.T) {
	c := &BarChart{ID: "burn", Title: "Burn <rates>", Desc: "d", Ref: 1, RefLabel: "1×", Format: func(v float64) string { return num(v) + "×" }, Bars: []Bar{
		{Label: "5m", V: fp(20), Alert: true}, {Label: "1h", V: fp(0.5)}, {Label: "30d"}, {Label: "6h", V: fp(math.Inf(1))},
	}}
	svg := string(c.SVG())
	els := svgDoc(t, svg)
	if strings.Contains(svg, "<rates>") {
		t.Error("title not escaped")
	}
	if got := count(els, "rect", "bar"); got != 3 {
		t.Errorf("%d bars, want 3 (one without data)", got)
	}
	if !strings.Contains(svg, "no data") || !strings.Contains(svg, "20.00× ▲") {
		t.Errorf("labels missing:\n%s", svg)
	}
	hatched := 0
	for _, e := range els {
		if attr(e, "class") == "bar" && strings.HasPrefix(attr(e, "fill"), "url(#") {
			hatched++
		}
	}
	if hatched != 1 {
		t.Errorf("%d hatched bars, want the one over its threshold", hatched)
	}
}

// TestLabelRows: labels wider than their slots go to further rows, and
// no two labels of one row overlap (issue 22: "100.00× ▲100.00×", "DD").
func TestLabelRows(t *testing.T) {
	for _, tc := range []struct {
		name     string
		xs, ws   []float64
		wantRows int
	}{
		{"apart", []float64{10, 100, 200}, []float64{20, 20, 20}, 1},
		{"14 bars", func() []float64 {
			var xs []float64
			for i := range 14 {
				xs = append(xs, 23+45.7*float64(i))
			}
			return xs
		}(), []float64{70, 70, 70, 70, 70, 70, 70, 70, 70, 70, 70, 70, 70, 70}, 2},
		{"same instant", []float64{50, 50, 50}, []float64{30, 30, 30}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			row, n := rows(tc.xs, tc.ws, 2)
			if n != tc.wantRows {
				t.Errorf("got %d rows, want %d", n, tc.wantRows)
			}
			for i := range tc.xs {
				for j := i + 1; j < len(tc.xs); j++ {
					if row[i] == row[j] && math.Abs(tc.xs[i]-tc.xs[j]) < (tc.ws[i]+tc.ws[j])/2 {
						t.Errorf("labels %d and %d overlap in row %d", i, j, row[i])
					}
				}
			}
		})
	}
}

// BenchmarkErrorChart draws a 1h error-rate chart (60 steps) with three
// thresholds, ten deploy flags close together and two incidents: the
// label layout (rows) is the cost this adds to the SLO page.
func BenchmarkErrorChart(b *testing.B) {
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	c := &LineChart{ID: "e", Title: "Error rate", From: t0, To: t0.Add(time.Hour), Format: func(v float64) string { return pctN(v, 2) },
		Thresholds: []Threshold{{0.0144, "page 14.4×"}, {0.006, "page 6×"}, {0.003, "ticket 3×"}}}
	for i := range 60 {
		v := 0.001 * float64(i%7)
		c.Samples = append(c.Samples, Sample{At: t0.Add(time.Duration(i) * time.Minute), V: &v})
	}
	for i := range 10 {
		c.Markers = append(c.Markers, Marker{At: t0.Add(time.Duration(20+i) * time.Minute), Label: "deploy", Flag: "D v2.14." + fmt.Sprint(i)})
	}
	c.Spans = []Span{{From: t0.Add(25 * time.Minute), Label: "incident"}}
	c.Firing = []Span{{From: t0.Add(27 * time.Minute), Label: "firing"}}
	b.ReportAllocs()
	for b.Loop() {
		_ = c.SVG()
	}
}

// BenchmarkBurnChart14 draws the burn-rate bars of 14 windows with their
// labels laid out in rows.
func BenchmarkBurnChart14(b *testing.B) {
	c := &BarChart{ID: "b", Title: "Burn", Ref: 1, Format: func(v float64) string { return measure(v) + "×" }}
	for i := range 14 {
		v := 100.0
		c.Bars = append(c.Bars, Bar{Label: span(time.Duration(5<<i) * time.Minute), V: &v, Alert: i%2 == 0})
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = c.SVG()
	}
}
