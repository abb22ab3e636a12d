package telemetry

import (
	"cmp"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
)

// QueryLimits bounds one caller-supplied PromQL query before and while it
// is evaluated, so that a viewer cannot take the server down with a single
// request. The zero value of each field means its default.
//
// The bounds are checked in the order a query costs: its length and a
// linear pre-parse scan of its nesting (Prometheus' parser is quadratic in
// nesting: 80,000 parentheses take more than 25 s), then, after parsing,
// the points of every subquery's evaluation grid (the engine allocates
// per-step state for that grid before any sample is counted against
// MaxSamples), and the whole is under one deadline that starts before
// parsing.
type QueryLimits struct {
	// MaxLength is the longest query accepted, in bytes (default 64 KiB).
	MaxLength int
	// MaxDepth bounds the nesting of a query as the pre-parse scan counts
	// it: each open bracket, and each operator within the same brackets,
	// is one level (default 128).
	MaxDepth int
	// MaxPoints bounds the points per series of every evaluation grid:
	// (end-start)/step of a range query, and for each subquery the
	// parent's span plus the subquery's range, over its step (default
	// 11,000, Prometheus' limit for range queries).
	MaxPoints int
	// Timeout bounds a query from before it is parsed until it is
	// evaluated (default 2m, as Prometheus' --query.timeout). A request's
	// timeout parameter may only shorten it.
	Timeout time.Duration
	// MaxConcurrent bounds the queries evaluated at once (default 20, as
	// Prometheus' --query.max-concurrency), so that MaxSamples bounds the
	// memory of all of them; others wait for a slot within their
	// Timeout.
	MaxConcurrent int
	// MaxExemplars bounds the exemplars of one query_exemplars answer
	// (default 10,000): the newest are kept and a warning says how many
	// were left out. The time range is not bounded: exemplar storage is
	// a fixed-size ring (source.embedded.maxExemplars).
	MaxExemplars int
}

// Defaults of QueryLimits.
const (
	DefaultQueryMaxLength    = 64 << 10
	DefaultQueryMaxDepth     = 128
	DefaultMaxConcurrent     = 20
	DefaultQueryMaxExemplars = 10_000
	// DefaultMaxPointsPerSeries is Prometheus' limit on range query points.
	DefaultMaxPointsPerSeries = 11_000
)

// ErrQueryLimit is wrapped by every error that refuses a query for
// exceeding one of the QueryLimits.
var ErrQueryLimit = errors.New("query exceeds a limit")

// withDefaults returns l with zero fields set to their defaults, or an
// error if a field is negative.
func (l QueryLimits) withDefaults() (QueryLimits, error) {
	if l.MaxLength < 0 || l.MaxDepth < 0 || l.MaxPoints < 0 || l.Timeout < 0 || l.MaxConcurrent < 0 || l.MaxExemplars < 0 {
		return l, errors.New("query limits must not be negative")
	}
	l.MaxLength = cmp.Or(l.MaxLength, DefaultQueryMaxLength)
	l.MaxDepth = cmp.Or(l.MaxDepth, DefaultQueryMaxDepth)
	l.MaxPoints = cmp.Or(l.MaxPoints, DefaultMaxPointsPerSeries)
	l.Timeout = cmp.Or(l.Timeout, DefaultQueryTimeout)
	l.MaxConcurrent = cmp.Or(l.MaxConcurrent, DefaultMaxConcurrent)
	l.MaxExemplars = cmp.Or(l.MaxExemplars, DefaultQueryMaxExemplars)
	return l, nil
}

// scanQuery checks q against maxLength and maxDepth in one pass over its
// bytes, before q is parsed, allocating at most maxDepth small stack
// entries. Its depth is an upper bound of the depth of the syntax tree
// the parser would build: every bracket opens a level, and every operator
// adds a level within its brackets (an operator chain "1+1+…" is as deep
// as it is long). String literals and comments are skipped as the PromQL
// lexer reads them; label matchers inside braces are not operators.
func scanQuery(q string, maxLength, maxDepth int) error {
	if len(q) > maxLength {
		return fmt.Errorf("%w: the query is %s bytes long, more than query.maxLength (%s)", ErrQueryLimit, thousands(len(q)), thousands(maxLength))
	}
	type level struct {
		kind byte  // the opening bracket
		ops  int32 // operators seen at this level
	}
	var (
		stack []level
		depth int // levels open plus the operators counted in each
	)
	tooDeep := func(i int) error {
		line, col := lineCol(q, i)
		return fmt.Errorf("%w: the query nests deeper than query.maxDepth (%d levels of brackets and operators) at %d:%d", ErrQueryLimit, maxDepth, line, col)
	}
	op := func() bool {
		if len(stack) > 0 && stack[len(stack)-1].kind == '{' {
			return true // a matcher's "=", "!=", "=~", "!~"
		}
		if len(stack) > 0 {
			stack[len(stack)-1].ops++
		}
		depth++
		return depth <= maxDepth
	}
	for i := 0; i < len(q); i++ {
		switch c := q[i]; c {
		case '"', '\'':
			// Interpreted strings: a backslash escapes the next byte. An
			// unterminated string runs to the end; the parser reports it.
			for i++; i < len(q) && q[i] != c; i++ {
				if q[i] == '\\' {
					i++
				}
			}
		case '`':
			for i++; i < len(q) && q[i] != '`'; i++ {
			}
		case '#':
			for i++; i < len(q) && q[i] != '\n'; i++ {
			}
		case '(', '[', '{':
			// A range or subquery bracket also wraps the expression
			// before it in one more node.
			if c == '[' && !op() {
				return tooDeep(i)
			}
			stack = append(stack, level{kind: c})
			if depth++; depth > maxDepth {
				return tooDeep(i)
			}
		case ')', ']', '}':
			// Unbalanced closers are the parser's to report.
			if n := len(stack); n > 0 {
				depth -= 1 + int(stack[n-1].ops)
				stack = stack[:n-1]
			}
		case '+', '-', '*', '/', '%', '^', '<', '>', '=', '!':
			if (c == '<' || c == '>' || c == '=' || c == '!') && i+1 < len(q) && (q[i+1] == '=' || q[i+1] == '~') {
				i++ // one two-byte operator
			}
			if !op() {
				return tooDeep(i)
			}
		default:
			if !isIdentStart(c) {
				continue
			}
			j := i + 1
			for j < len(q) && isIdentByte(q[j]) {
				j++
			}
			// Keywords are case-insensitive, as the lexer reads them.
			switch w := q[i:j]; {
			case strings.EqualFold(w, "and"), strings.EqualFold(w, "or"), strings.EqualFold(w, "unless"), strings.EqualFold(w, "atan2"):
				if !op() {
					return tooDeep(i)
				}
			}
			i = j - 1
		}
	}
	return nil
}

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

func isIdentByte(c byte) bool {
	return isIdentStart(c) || '0' <= c && c <= '9'
}

// lineCol is the 1-based line and byte column of offset i in q, as the
// parser's positions read.
func lineCol(q string, i int) (line, col int) {
	line = 1 + strings.Count(q[:i], "\n")
	return line, i - strings.LastIndexByte(q[:i], '\n')
}

// checkSubqueries refuses expr if any subquery's evaluation grid has more
// than maxPoints points per series. span is the evaluation span of the
// query (end-start of a range query, 0 for an instant query); a subquery
// is evaluated over its parent's span plus its own range, at its step or
// at defaultStep(range) when it has none, so nested subqueries widen the
// spans of the ones inside them. The engine allocates per-step state for
// each such grid before it counts any sample, which MaxSamples does not
// cover: "sum_over_time(vector(1)[30d:1ms])" asks for 2.6 billion steps.
//
// Range selectors are not bounded here: they read stored samples, which
// the engine counts against MaxSamples as it loads them.
func checkSubqueries(q string, expr parser.Node, span time.Duration, maxPoints int, defaultStep func(rangeMillis int64) int64) error {
	var walk func(n parser.Node, span time.Duration) error
	walk = func(n parser.Node, span time.Duration) error {
		if sq, ok := n.(*parser.SubqueryExpr); ok {
			step := sq.Step
			if step <= 0 {
				step = time.Duration(defaultStep(sq.Range.Milliseconds())) * time.Millisecond
			}
			if sq.Timestamp != nil || sq.StartOrEnd != 0 {
				// "@ t" pins the subquery: one window, whatever the span.
				span = 0
			}
			// In floats: spans of query_range may be centuries.
			points := (float64(span)+float64(sq.Range))/float64(max(step, time.Millisecond)) + 1
			if points > float64(maxPoints) {
				pr := sq.PositionRange()
				line, col := lineCol(q, min(max(int(pr.Start), 0), len(q)))
				return fmt.Errorf("%w: the subquery at %d:%d (range %s plus %s evaluated, step %s) has %s points per series, more than query.maxPoints (%s); use a larger step or a shorter range",
					ErrQueryLimit, line, col, fmtDuration(sq.Range), fmtDuration(span), fmtDuration(step), approxThousands(points), thousands(maxPoints))
			}
			return walk(sq.Expr, span+sq.Range)
		}
		for _, c := range parser.Children(n) {
			if err := walk(c, span); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(expr, span)
}

func fmtDuration(d time.Duration) string {
	return model.Duration(d).String()
}

func approxThousands(f float64) string {
	if f >= 1e15 {
		return fmt.Sprintf("%.3g", f)
	}
	return thousands(int(f))
}
