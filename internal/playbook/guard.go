package playbook

import (
	"fmt"
	"time"

	"github.com/qsp-dev/qsp/internal/store"
)

// maxSettleDoublings caps the exponent of the settling wait, so the
// multiplication cannot overflow; the settle window caps the wait anyway.
const maxSettleDoublings = 20

// actuatorGuard judges whether a run of playbook with plan p may act on
// its actuator at now, given the runs that acted on the actuator within
// the lookback (oldest first). It is the cooldown, settling and run-limit
// rule in one pure function; the pipeline calls it read-only before
// policies and approval, and again inside the store's actuator lock at
// the moment of acting. It returns "" or why the run must not act.
type actuatorGuard struct {
	plan     Plan
	playbook string
	actuator string
	// settle is the window in which reversals are counted and the longest
	// a settling wait can be.
	settle time.Duration
}

// lookback is how far back acts matter to the guard.
func (g actuatorGuard) lookback() time.Duration {
	return max(g.settle, g.plan.Cooldown.D(), g.plan.MaxRunsPer.D())
}

// cooldown returns why the run must wait and until when, or "". The wait after the last
// act on the actuator is the playbook's cooldown; when the last act came
// from another playbook (this run would reverse it: scale-down after
// scale-up), the wait doubles for every reversal already counted on the
// actuator within the settle window, capped at that window. An
// oscillating pair therefore acts at 0, c, 3c, 7c, 15c, ...: the
// intervals grow until the pair settles in one state.
func (g actuatorGuard) cooldown(acts []store.PlaybookAct, now time.Time) (string, time.Time) {
	if len(acts) == 0 {
		return "", time.Time{}
	}
	last := acts[len(acts)-1]
	wait := g.plan.Cooldown.D()
	if last.Playbook == g.playbook {
		if until := last.At.Add(wait); now.Before(until) {
			return fmt.Sprintf("cooldown until %s, last run at %s (%s)", clock(until), clock(last.At), last.RunID), until
		}
		return "", time.Time{}
	}
	n := reversals(acts, now.Add(-g.settle))
	wait = settleWait(wait, n, g.settle)
	if until := last.At.Add(wait); now.Before(until) {
		if n == 0 {
			return fmt.Sprintf("cooldown until %s, last run on %s by playbook %s at %s (%s)",
				clock(until), g.actuator, last.Playbook, clock(last.At), last.RunID), until
		}
		return fmt.Sprintf("settling until %s: %s reversed %d times in the last %s, so reversing playbook %s (run %s at %s) waits %s (cooldown %s doubled %d times)",
			clock(until), g.actuator, n, Duration(g.settle).String(), last.Playbook, last.RunID, clock(last.At),
			Duration(wait).String(), g.plan.Cooldown.String(), n), until
	}
	return "", time.Time{}
}

// settleWait is cooldown doubled n times, at most the settle window (or
// the cooldown, if that is longer).
func settleWait(cooldown time.Duration, n int, settle time.Duration) time.Duration {
	limit := max(settle, cooldown)
	wait := cooldown
	for range min(n, maxSettleDoublings) {
		wait *= 2
		if wait >= limit {
			return limit
		}
	}
	return wait
}

// reversals counts the acts at or after since whose playbook differs from
// the act before them.
func reversals(acts []store.PlaybookAct, since time.Time) int {
	n := 0
	for i := 1; i < len(acts); i++ {
		if !acts[i].At.Before(since) && acts[i].Playbook != acts[i-1].Playbook {
			n++
		}
	}
	return n
}

// runLimit returns why the run must wait for the run limit and until
// when, or "": at most MaxRuns acts on the actuator in the MaxRunsPer
// before now.
func (g actuatorGuard) runLimit(acts []store.PlaybookAct, now time.Time) (string, time.Time) {
	if g.plan.MaxRuns <= 0 || g.plan.MaxRunsPer <= 0 {
		return "", time.Time{}
	}
	from := now.Add(-g.plan.MaxRunsPer.D())
	var in []store.PlaybookAct
	for _, a := range acts {
		if a.At.After(from) {
			in = append(in, a)
		}
	}
	if len(in) < g.plan.MaxRuns {
		return "", time.Time{}
	}
	// The next run may go when enough of these leave the window.
	freeAt := in[len(in)-g.plan.MaxRuns].At.Add(g.plan.MaxRunsPer.D())
	return fmt.Sprintf("run limit: %d runs on %s in the last %s (at most %d); the next may run at %s",
		len(in), g.actuator, g.plan.MaxRunsPer.String(), g.plan.MaxRuns, clock(freeAt)), freeAt
}

// String writes d as in specs.
func (d Duration) String() string {
	b, _ := d.MarshalText()
	return string(b)
}

// clock formats a time for reasons: UTC, to the second.
func clock(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") }
