package progress

import (
	"io"
	"os"
	"strings"
	"testing"

	"github.com/qsp-dev/qsp/internal/engine"
)

func TestBackfillLines(t *testing.T) {
	var b strings.Builder
	report := Backfill(&b)
	report(engine.BackfillProgress{SLOs: 19, Minutes: 443_500})
	// Within the second: dropped.
	report(engine.BackfillProgress{SLOs: 19, DoneSLOs: 3, Minutes: 443_500, Done: 100_000})
	// Finished: always printed.
	report(engine.BackfillProgress{SLOs: 19, DoneSLOs: 19, Minutes: 443_500, Done: 443_500, Finished: true})
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines, want the first and the last:\n%s", len(lines), b.String())
	}
	for i, want := range []string{"backfilling      [....................]   0.0%  0/19 SLOs  0 SLO-minutes", "backfilled       [####################] 100.0%  19/19 SLOs  443.5k SLO-minutes"} {
		if !strings.HasPrefix(lines[i], want) {
			t.Errorf("line %d = %q, want prefix %q", i, lines[i], want)
		}
	}
}

func TestLineClampsBar(t *testing.T) {
	var b strings.Builder
	// More done than the estimate (late data): the bar stays 20 wide.
	New(&b).Line("history", 150, 100, "x", true)
	if !strings.Contains(b.String(), "[####################] 150.0%") {
		t.Errorf("got %q", b.String())
	}
	b.Reset()
	New(&b).Line("empty", 0, 0, "nothing to do", true)
	if !strings.Contains(b.String(), "100.0%  nothing to do") {
		t.Errorf("got %q", b.String())
	}
}

func TestCount(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 21_800: "21.8k", 5_500_000: "5.5M"} {
		if got := Count(n); got != want {
			t.Errorf("Count(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestRedrawOnTerminal: on a terminal each update goes back to the start
// of the line and erases the rest instead of adding a line; the finished
// one ends the line.
func TestRedrawOnTerminal(t *testing.T) {
	var b strings.Builder
	p := NewMode(&b, true)
	p.Line("backfilling", 0, 10, "a", false)
	p.Line("backfilling", 5, 10, "b", false) // within 200ms: dropped
	p.Line("backfilled", 10, 10, "c", true)
	out := b.String()
	if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
		t.Errorf("got %q, want one newline, at the end", out)
	}
	if strings.Count(out, "\r") != 2 || strings.Count(out, "\x1b[K") != 2 || strings.Contains(out, "  b  ") {
		t.Errorf("got %q, want two redraws (the first and the finished line)", out)
	}
	if !strings.HasPrefix(out, "\rbackfilling      [....................]   0.0%  a") {
		t.Errorf("got %q", out)
	}
}

func TestIsTerminal(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	for name, x := range map[string]io.Writer{"pipe": w, "/dev/null": devnull, "builder": &strings.Builder{}} {
		if IsTerminal(x) {
			t.Errorf("%s is reported as a terminal", name)
		}
	}
}
