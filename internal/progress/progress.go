// Package progress prints the progress of long work on a terminal: the
// engine's backfill in qsp serve and qsp demo, and the demo's history. On
// a terminal the line is redrawn in place (carriage return, erase to the
// end of the line) a few times a second and ends with a newline when the
// work is finished; elsewhere (a pipe, a log file) one line at most every
// second, and always the last one, so a log file stays readable and a
// user sees that the work moves.
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/qsp-dev/qsp/internal/engine"
)

// Printer writes progress lines to w. It is safe for concurrent use: the
// engine reports from its loop and from a ticker.
type Printer struct {
	w     io.Writer
	every time.Duration
	tty   bool // redraw in place

	mu    sync.Mutex
	last  time.Time
	began time.Time
}

// New returns a printer to w: redrawn in place when w is a terminal,
// else at most one line a second.
func New(w io.Writer) *Printer { return NewMode(w, IsTerminal(w)) }

// NewMode returns a printer that redraws in place when tty is set.
func NewMode(w io.Writer, tty bool) *Printer {
	p := &Printer{w: w, every: time.Second, tty: tty, began: time.Now()}
	if tty {
		p.every = 200 * time.Millisecond
	}
	return p
}

// IsTerminal reports whether w is a terminal, not a file, a pipe or
// /dev/null.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// Line prints "state [bar] pct% detail elapsed" for done of total, unless
// a line was printed less than a second ago and the work is not finished.
// Elapsed is wall time since New: a simulated clock may stand still.
func (p *Printer) Line(state string, done, total int64, detail string, finished bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if !finished && now.Sub(p.last) < p.every {
		return
	}
	p.last = now
	pct := 100.0
	if total > 0 {
		pct = 100 * float64(done) / float64(total)
	}
	n := min(max(int(pct/5), 0), 20)
	bar := strings.Repeat("#", n) + strings.Repeat(".", 20-n)
	line := fmt.Sprintf("%-16s [%s] %5.1f%%  %s  %s", state, bar, pct, detail, now.Sub(p.began).Round(100*time.Millisecond))
	if !p.tty {
		fmt.Fprintln(p.w, line)
		return
	}
	// Back to the start of the line, the new text, erase what is left of
	// a longer previous one; the newline only once finished.
	end := ""
	if finished {
		end = "\n"
	}
	fmt.Fprintf(p.w, "\r%s\x1b[K%s", line, end)
}

// Backfill returns an engine progress callback printing to w.
func Backfill(w io.Writer) func(engine.BackfillProgress) {
	p := New(w)
	return func(b engine.BackfillProgress) {
		state := "backfilling"
		if b.Finished {
			state = "backfilled"
		}
		p.Line(state, b.Done, b.Minutes, fmt.Sprintf("%d/%d SLOs  %s SLO-minutes", b.DoneSLOs, b.SLOs, Count(b.Done)), b.Finished)
	}
}

// Count shortens a count for a progress line: 950, 21.8k, 5.5M.
func Count(n int64) string {
	switch {
	case n >= 1_000_000:
		return fmt.Sprintf("%.1fM", float64(n)/1e6)
	case n >= 1_000:
		return fmt.Sprintf("%.1fk", float64(n)/1e3)
	}
	return fmt.Sprint(n)
}
