package spec

import (
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/prometheus/promql/parser"
)

func reflectValueOf(ptr any) reflect.Value { return reflect.ValueOf(ptr).Elem() }

// counterFuncs are the functions whose range turns into the window.
var counterFuncs = []string{"rate", "increase"}

// replaceRanges puts the window placeholder into the range of every
// rate() and increase() in q. It fails when q has no such range or has
// ranges anywhere else (subqueries, *_over_time), whose meaning would
// change.
func replaceRanges(q string, expr parser.Expr) (string, bool) {
	type span struct{ start, end int }
	var spans []span
	ok := true
	parser.Inspect(expr, func(node parser.Node, path []parser.Node) error {
		switch n := node.(type) {
		case *parser.SubqueryExpr:
			ok = false
		case *parser.MatrixSelector:
			var parent *parser.Call
			if len(path) > 0 {
				parent, _ = path[len(path)-1].(*parser.Call)
			}
			if parent == nil || !slices.Contains(counterFuncs, parent.Func.Name) {
				ok = false
				return nil
			}
			pr := n.PositionRange()
			end := int(pr.End)
			if end > len(q) || end < 1 || q[end-1] != ']' {
				ok = false
				return nil
			}
			open := strings.LastIndexByte(q[:end], '[')
			if open < int(pr.Start) {
				ok = false
				return nil
			}
			spans = append(spans, span{open + 1, end - 1})
		}
		return nil
	})
	if !ok || len(spans) == 0 {
		return "", false
	}
	slices.SortFunc(spans, func(a, b span) int { return b.start - a.start })
	for _, s := range spans {
		q = q[:s.start] + WindowPlaceholder + q[s.end:]
	}
	return q, true
}

// wrapCounter turns sum(counter{...}) or a bare counter selector into the
// rate of the counter over the window.
func wrapCounter(q string, expr parser.Expr) (string, bool) {
	rate := func(vs *parser.VectorSelector) (start, end int, text string) {
		pr := vs.PositionRange()
		return int(pr.Start), int(pr.End), "rate(" + q[pr.Start:pr.End] + "[" + WindowPlaceholder + "])"
	}
	switch e := expr.(type) {
	case *parser.VectorSelector:
		_, _, text := rate(e)
		return "sum(" + text + ")", true
	case *parser.AggregateExpr:
		vs, ok := e.Expr.(*parser.VectorSelector)
		if !ok || e.Param != nil {
			return "", false
		}
		start, end, text := rate(vs)
		return q[:start] + text + q[end:], true
	}
	return "", false
}

// LeRegexp matches the spellings a histogram bucket boundary v has in the
// wild: 0.3, and 1 or 1.0 (Prometheus 3 writes integral boundaries with
// ".0"). The engine and the generated rules select buckets with it.
func LeRegexp(v float64) string {
	s := strconv.FormatFloat(v, 'f', -1, 64)
	alts := []string{s}
	if !strings.Contains(s, ".") {
		alts = append(alts, s+".0")
	}
	if e := strconv.FormatFloat(v, 'e', -1, 64); !slices.Contains(alts, e) {
		alts = append(alts, e)
	}
	for i, a := range alts {
		alts[i] = strings.NewReplacer(".", `\.`, "+", `\+`).Replace(a)
	}
	return strings.Join(alts, "|")
}
