package ui

import (
	"fmt"
	"html/template"
	"math"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/slo"
	"github.com/qsp-dev/qsp/internal/spec"
)

// Badge is a state as the pages show it: a text, an icon and a class for
// the colour. The text and icon carry the meaning; the colour only helps.
type Badge struct {
	Class string
	Icon  string
	Text  string
}

// badges of SLO, alert, gate, decision, incident and playbook states.
var badges = map[string]Badge{
	// SLO states.
	string(engine.StateOK):         {"b-ok", "✓", "OK"},
	string(engine.StatePending):    {"b-warn", "◔", "Pending"},
	string(engine.StateFiring):     {"b-bad", "▲", "Firing"},
	string(engine.StateNoData):     {"b-nodata", "?", "No data"},
	string(engine.StateLowTraffic): {"b-muted", "○", "Low traffic"},
	string(engine.StateUnknown):    {"b-muted", "…", "Not evaluated yet"},
	"":                             {"b-none", "–", "No SLOs"},
	// Alert states.
	"inactive": {"b-ok", "✓", "Inactive"},
	"resolved": {"b-ok", "✓", "Resolved"},
	// Incidents.
	"open":   {"b-bad", "●", "Open"},
	"closed": {"b-ok", "✓", "Closed"},
	// Gate verdicts.
	"pass":         {"b-ok", "✓", "Pass"},
	"fail":         {"b-bad", "✗", "Fail"},
	"inconclusive": {"b-warn", "?", "Inconclusive"},
	"error":        {"b-bad", "!", "Error"},
	"running":      {"b-warn", "◔", "Running"},
	// Decisions.
	"allow": {"b-ok", "✓", "Allow"},
	"warn":  {"b-warn", "!", "Warn"},
	"deny":  {"b-bad", "✗", "Deny"},
	// Playbook runs.
	"new":        {"b-muted", "…", "New"},
	"queued":     {"b-warn", "◔", "Queued"},
	"retrying":   {"b-warn", "↻", "Retrying"},
	"succeeded":  {"b-ok", "✓", "Succeeded"},
	"failed":     {"b-bad", "✗", "Failed"},
	"dry_run":    {"b-muted", "◌", "Dry run"},
	"suppressed": {"b-muted", "⊘", "Suppressed"},
	"denied":     {"b-bad", "✗", "Denied"},
	"refused":    {"b-bad", "⊘", "Refused"},
	"rejected":   {"b-muted", "✗", "Rejected"},
	"expired":    {"b-muted", "⌛", "Expired"},
	"approved":   {"b-ok", "✓", "Approved"},
	// Steps and events.
	"planned": {"b-muted", "…", "Planned"},
	"skipped": {"b-muted", "–", "Skipped"},
	"stop":    {"b-bad", "■", "Stop"},
	"wait":    {"b-warn", "◔", "Wait"},
	"info":    {"b-muted", "i", "Info"},
}

// stepBadge is the badge of a playbook run's audit event: the stage that
// ends a run that succeeded is not a red "Stop" but a done step.
func stepBadge(outcome, runState any) Badge {
	if fmt.Sprint(outcome) == "stop" {
		switch fmt.Sprint(runState) {
		case "succeeded", "dry_run", "approved":
			return Badge{"b-ok", "✓", "Done"}
		case "suppressed", "expired", "rejected", "skipped":
			return Badge{"b-muted", "■", "Ended"}
		}
	}
	return badge(outcome)
}

func badge(state any) Badge {
	s := fmt.Sprint(state)
	if b, ok := badges[s]; ok {
		return b
	}
	return Badge{"b-muted", "•", strings.ReplaceAll(s, "_", " ")}
}

// pct writes a ratio as a percentage with up to digits decimals, without
// trailing zeros: 0.999 → "99.9%".
func pctN(f float64, digits int) string {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return "–"
	}
	s := strconv.FormatFloat(100*f, 'f', digits, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	if s == "-0" {
		s = "0"
	}
	return s + "%"
}

func pct(f float64) string { return pctN(f, 3) }

func optPct(f *float64) string {
	if f == nil {
		return "no data"
	}
	return pctN(*f, 3)
}

func optNum(f *float64) string {
	if f == nil {
		return "no data"
	}
	return num(*f)
}

func num(f float64) string {
	switch {
	case math.IsNaN(f):
		return "–"
	case math.IsInf(f, 1):
		return "∞"
	case math.IsInf(f, -1):
		return "-∞"
	case f != 0 && math.Abs(f) < 0.01:
		// Never e-notation: 'g' writes 1e-05 below 0.0001.
		if math.Abs(f) < 0.0001 {
			if f < 0 {
				return "> -0.0001"
			}
			return "< 0.0001"
		}
		return strconv.FormatFloat(f, 'g', 2, 64)
	}
	return strconv.FormatFloat(f, 'f', 2, 64)
}

func burn(f *float64) string {
	if f == nil {
		return "no data"
	}
	return num(*f) + "×"
}

func ts(t time.Time) string {
	if t.IsZero() {
		return "–"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

func isoTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// dur writes a duration for people: "3d 4h", "12m", "45s".
func dur(d time.Duration) string {
	neg := d < 0
	if neg {
		d = -d
	}
	var s string
	switch {
	case d >= 24*time.Hour:
		s = fmt.Sprintf("%dd %dh", d/(24*time.Hour), (d%(24*time.Hour))/time.Hour)
	case d >= time.Hour:
		s = fmt.Sprintf("%dh %dm", d/time.Hour, (d%time.Hour)/time.Minute)
	case d >= time.Minute:
		s = fmt.Sprintf("%dm", d/time.Minute)
	default:
		s = fmt.Sprintf("%ds", d/time.Second)
	}
	if neg {
		return "-" + s
	}
	return s
}

func seconds(f float64) string { return dur(time.Duration(f * float64(time.Second))) }

// ago writes how long before now t was.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "–"
	}
	d := now.Sub(t)
	if d < 0 {
		return "in " + dur(-d)
	}
	if d < 5*time.Second {
		return "just now"
	}
	return dur(d) + " ago"
}

func query(kv ...string) template.URL {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			v.Set(kv[i], kv[i+1])
		}
	}
	if len(v) == 0 {
		return ""
	}
	return template.URL("?" + v.Encode()) //nolint:gosec // url.Values encodes every part
}

func pathEscape(s string) string { return url.PathEscape(s) }

// secretHeader matches header names whose values are credentials.
var secretHeader = regexp.MustCompile(`(?i)authorization|cookie|token|secret|password|api[-_]?key|signature`)

// redactHeaders hides the values of credential headers; the playbook
// runner already replaces secrets with placeholders, this also covers
// headers it does not know.
func redactHeaders(h map[string]string) map[string]string {
	out := make(map[string]string, len(h))
	for k, v := range h {
		if secretHeader.MatchString(k) && !strings.HasPrefix(v, "[secret ") {
			v = "[redacted]"
		}
		out[k] = v
	}
	return out
}

func categoryLabel(c spec.Category) string {
	switch c {
	case spec.Quality:
		return "Quality"
	case spec.Security:
		return "Security"
	case spec.Performance:
		return "Performance"
	}
	return string(c)
}

func money(v float64, currency string) string {
	if currency == "" {
		currency = "USD"
	}
	switch {
	case v == 0:
		return "0 " + currency
	case math.Abs(v) < 0.01:
		return strconv.FormatFloat(v, 'g', 3, 64) + " " + currency
	}
	return strconv.FormatFloat(v, 'f', 4, 64) + " " + currency
}

var funcs = template.FuncMap{
	"badge":      badge,
	"pct":        pct,
	"optPct":     optPct,
	"optNum":     optNum,
	"num":        num,
	"burn":       burn,
	"ts":         ts,
	"iso":        isoTime,
	"dur":        dur,
	"seconds":    seconds,
	"ago":        ago,
	"query":      query,
	"pathEscape": pathEscape,
	"category":   categoryLabel,
	"money":      money,
	"redact":     redactHeaders,
	"add":        func(a, b int) int { return a + b },
	"pctN":       pctN,
	"count":      countInt,
	"span":       span,
	"cond":       condName,
	"evidence":   evidence,
	"change":     change,
	"effect":     effect,
	"measure":    measure,
	"stepBadge":  stepBadge,
	"humanize":   humanize,
	"list":       func(s ...string) []string { return s },
	"deref": func(f *float64) float64 {
		if f == nil {
			return 0
		}
		return *f
	},
}

// count writes an event count as people count: a whole number with
// thousands separators. The engine's counts are float sums of counter
// increases, so 1944.0000001 is 1,944 and never "1944.00".
func countInt(f float64) string {
	switch {
	case math.IsNaN(f):
		return "–"
	case math.IsInf(f, 1):
		return "∞"
	case math.IsInf(f, -1):
		return "-∞"
	}
	r := math.Round(f)
	neg := r < 0
	s := strconv.FormatFloat(math.Abs(r), 'f', 0, 64)
	var b strings.Builder
	if neg && s != "0" {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// span writes a window length in its largest units without spaces, as
// Prometheus durations read: 1008m → "16h48m", 84m → "1h24m", 720h →
// "30d". The alert labels keep the engine's names; only pages use these.
func span(d time.Duration) string {
	if d <= 0 {
		return "0s"
	}
	var b strings.Builder
	for _, u := range []struct {
		d    time.Duration
		name string
	}{{24 * time.Hour, "d"}, {time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}} {
		if n := d / u.d; n > 0 {
			fmt.Fprintf(&b, "%d%s", n, u.name)
			d -= n * u.d
		}
	}
	if b.Len() == 0 {
		return d.String()
	}
	return b.String()
}

// condName names a multiwindow burn condition for people: "16h48m/1h24m".
func condName(c slo.BurnCondition) string { return span(c.Long) + "/" + span(c.Short) }

// evidence writes a p-value in words with the figure beside it:
// "strong evidence (p < 0.001)", never "p=1.5e-14".
func evidence(p float64) string {
	switch {
	case math.IsNaN(p) || p < 0:
		return "no test"
	case p < 0.001:
		return "strong evidence (p < 0.001)"
	case p < 0.01:
		return "good evidence (p = " + strconv.FormatFloat(p, 'f', 3, 64) + ")"
	case p < 0.05:
		return "some evidence (p = " + strconv.FormatFloat(p, 'f', 3, 64) + ")"
	case p < 0.1:
		return "weak evidence (p = " + strconv.FormatFloat(p, 'f', 2, 64) + ")"
	}
	return "no evidence of a difference (p = " + strconv.FormatFloat(math.Min(p, 1), 'f', 2, 64) + ")"
}

// change writes a relative change of a canary against its baseline:
// "+12%", "−3%", and "new (baseline 0)" where the baseline is zero,
// never "+inf%".
func change(base, canary float64) string {
	switch {
	case math.IsNaN(base) || math.IsNaN(canary):
		return "–"
	case base == 0 && canary == 0:
		return "no change"
	case base == 0:
		return "from none (baseline 0)"
	}
	r := (canary - base) / math.Abs(base)
	if math.IsInf(r, 0) || math.IsNaN(r) {
		return "–"
	}
	s := strconv.FormatFloat(math.Round(100*r), 'f', 0, 64)
	if r >= 0 && s != "0" {
		s = "+" + s
	}
	if s == "-0" {
		s = "0"
	}
	return s + "%"
}

// effect writes a Cliff's-delta-like effect size in words with the
// figure: "large (0.62)".
func effect(d float64) string {
	a := math.Abs(d)
	var w string
	switch {
	case math.IsNaN(d):
		return "–"
	case a < 0.147:
		w = "negligible"
	case a < 0.33:
		w = "small"
	case a < 0.474:
		w = "medium"
	default:
		w = "large"
	}
	return w + " (" + strconv.FormatFloat(d, 'f', 2, 64) + ")"
}

// measure writes a measured value for a table: at most four significant
// digits, never in e-notation; tiny non-zero values read "< 0.0001".
func measure(f float64) string {
	switch {
	case math.IsNaN(f):
		return "–"
	case math.IsInf(f, 1):
		return "∞"
	case math.IsInf(f, -1):
		return "-∞"
	case f == 0:
		return "0"
	case math.Abs(f) < 0.0001:
		if f < 0 {
			return "> -0.0001"
		}
		return "< 0.0001"
	case math.Abs(f) >= 1e6:
		return countInt(f)
	}
	digits := max(0, 3-int(math.Floor(math.Log10(math.Abs(f)))))
	s := strconv.FormatFloat(f, 'f', digits, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

var (
	pValueRe = regexp.MustCompile(`\bp=([0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)`)
	infPctRe = regexp.MustCompile(`[+-]inf%`)
	longNum  = regexp.MustCompile(`\b[0-9]+\.[0-9]{5,}(?:[eE][-+]?[0-9]+)?\b|\b[0-9](?:\.[0-9]+)?[eE]-[0-9]+\b`)
)

// humanize rewrites the figures of a verdict's message for people: a
// p-value in words with its figure ("strong evidence (p < 0.001)"), an
// infinite change from a zero baseline in words, and no 16-digit floats
// or e-notation. The messages themselves stay exact in the API.
func humanize(msg string) string {
	msg = pValueRe.ReplaceAllStringFunc(msg, func(m string) string {
		p, err := strconv.ParseFloat(m[2:], 64)
		if err != nil {
			return m
		}
		return evidence(p)
	})
	msg = infPctRe.ReplaceAllString(msg, "from none (baseline 0)")
	return longNum.ReplaceAllStringFunc(msg, func(m string) string {
		f, err := strconv.ParseFloat(m, 64)
		if err != nil {
			return m
		}
		return measure(f)
	})
}
