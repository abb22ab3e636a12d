package progress

import (
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
