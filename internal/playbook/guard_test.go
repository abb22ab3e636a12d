package playbook

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/qsp-dev/qsp/internal/engine"
)

// flapPlaybook is a burn-rate playbook on search-availability with the
// given guards.
func flapPlaybook(name, kind, forDur, guards string) string {
	return fmt.Sprintf(`
---
apiVersion: qsp/v1
kind: Playbook
metadata: {name: %s}
spec:
  service: search
  trigger:
    slo: search-availability
    burnRate: {window: 5m, above: 10, below: 5, for: %s}
  actions:
    - name: call
      webhook: {url: RECEIVER/api/v1/scale/search, body: '{"run": "{{ .RunID }}"}'}
  guards:
    kind: %s
%s
`, name, forDur, kind, guards)
}

// expectedRuns is what the guards allow for a trigger that fires at every
// episode time: it walks the episodes and applies cooldown and run limit
// as their definitions say, independently of the runner's code.
func expectedRuns(episodes []time.Time, cooldown time.Duration, maxRuns int, per time.Duration) []time.Time {
	var acts []time.Time
	for _, e := range episodes {
		if len(acts) > 0 && e.Before(acts[len(acts)-1].Add(cooldown)) {
			continue
		}
		if maxRuns > 0 {
			n := 0
			for _, a := range acts {
				if a.After(e.Add(-per)) {
					n++
				}
			}
			if n >= maxRuns {
				continue
			}
		}
		acts = append(acts, e)
	}
	return acts
}

// TestAntiFlappingHour feeds a burn rate that crosses the trigger level
// every 15s cycle for an hour (20, 0, 20, 0, ... against above 10, below
// 5) and checks that the action runs exactly as often as the guards
// allow, and that every other episode is in the audit log as suppressed
// with its reason.
func TestAntiFlappingHour(t *testing.T) {
	const cycles = 240 // an hour of 15s cycles
	cases := []struct {
		name     string
		forDur   string
		guards   string
		cooldown time.Duration
		maxRuns  int
		per      time.Duration
		dryRun   bool
		// never: the trigger never holds long enough to fire.
		never bool
	}{
		{name: "cooldown 10m", guards: "    cooldown: 10m", cooldown: 10 * time.Minute},
		{name: "cooldown 25m", guards: "    cooldown: 25m", cooldown: 25 * time.Minute},
		{name: "run limit 3 per hour", guards: "    maxRuns: {count: 3, per: 1h}", maxRuns: 3, per: time.Hour},
		{name: "cooldown 10m and limit 4 per hour", guards: "    cooldown: 10m\n    maxRuns: {count: 4, per: 1h}", cooldown: 10 * time.Minute, maxRuns: 4, per: time.Hour},
		{name: "cooldown 5m and limit 2 per 20m", guards: "    cooldown: 5m\n    maxRuns: {count: 2, per: 20m}", cooldown: 5 * time.Minute, maxRuns: 2, per: 20 * time.Minute},
		{name: "dry run counts like a run", guards: "    cooldown: 10m\n    dryRun: true", cooldown: 10 * time.Minute, dryRun: true},
		{name: "for 1m never holds", forDur: "1m", guards: "    cooldown: 1m", cooldown: time.Minute, never: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			forDur := c.forDur
			if forDur == "" {
				forDur = "0s"
			}
			h := newHarness(t, flapPlaybook("flappy", "scale", forDur, c.guards))
			var episodes []time.Time
			for i := range cycles {
				at := t0.Add(time.Duration(i) * 15 * time.Second)
				h.clk.set(at)
				burn := 0.0
				if i%2 == 0 {
					burn = 20
					episodes = append(episodes, at)
				}
				h.snap.set(snapshotAt(at, status("search-availability", "search", burn)))
				h.step()
			}
			want := expectedRuns(episodes, c.cooldown, c.maxRuns, c.per)
			if c.never {
				want, episodes = nil, nil
			}
			runs := h.runs("flappy")
			states := byState(runs)
			acted := 0
			var actedAt []time.Time
			for _, r := range runs {
				if !r.ActedAt.IsZero() {
					acted++
					actedAt = append(actedAt, r.ActedAt)
				}
			}
			if acted != len(want) || fmt.Sprint(actedAt) != fmt.Sprint(want) {
				t.Fatalf("acted %d times at %v, want %d at %v", acted, actedAt, len(want), want)
			}
			if len(runs) != len(episodes) {
				t.Fatalf("runs recorded: got %d, want one per episode: %d", len(runs), len(episodes))
			}
			final := StateSucceeded
			if c.dryRun {
				final = StateDryRun
			}
			if states[final] != len(want) || states[StateSuppressed] != len(episodes)-len(want) {
				t.Fatalf("states: got %v, want %d %s and %d suppressed", states, len(want), final, len(episodes)-len(want))
			}
			wantCalls := len(want)
			if c.dryRun {
				wantCalls = 0
			}
			if got := h.recv.actions(); got != wantCalls {
				t.Fatalf("receiver acted %d times, want %d", got, wantCalls)
			}
			for _, r := range runs {
				if r.State != StateSuppressed {
					continue
				}
				if !strings.HasPrefix(r.Reason, "suppressed: cooldown until") && !strings.HasPrefix(r.Reason, "suppressed: run limit:") {
					t.Fatalf("suppressed run %s: reason %q says neither cooldown nor run limit", r.ID, r.Reason)
				}
			}
			t.Logf("%d episodes, %d acted, %v", len(episodes), acted, states)
		})
	}
}

// scaleSystem is a service whose replica count two playbooks change, and
// whose two signals the count drives: two replicas are too few (latency
// burns the availability budget), three are too many (idle capacity burns
// the efficiency budget). Without damping, scale-up and scale-down chase
// each other forever.
type scaleSystem struct {
	replicas int
}

func (s *scaleSystem) snapshot(at time.Time) *engine.Snapshot {
	avail, idle := 0.0, 0.0
	if s.replicas <= 2 {
		avail = 20
	} else {
		idle = 20
	}
	eff := status("search-efficiency", "search", idle)
	return snapshotAt(at, status("search-availability", "search", avail), eff)
}

func scalePair(kindDown string) string {
	return `
---
apiVersion: qsp/v1
kind: Playbook
metadata: {name: search-scale-up}
spec:
  service: search
  trigger:
    slo: search-availability
    burnRate: {window: 5m, above: 10, below: 5}
  actions:
    - name: scale-up
      webhook: {url: RECEIVER/api/v1/scale/search/up}
  guards: {kind: scale, cooldown: 2m}
---
apiVersion: qsp/v1
kind: Playbook
metadata: {name: search-scale-down}
spec:
  service: search
  trigger:
    slo: search-efficiency
    burnRate: {window: 5m, above: 10, below: 5}
  actions:
    - name: scale-down
      webhook: {url: RECEIVER/api/v1/scale/search/down}
  guards: {kind: ` + kindDown + `, cooldown: 2m}
`
}

// TestOscillatingPairSettles runs the scale-up/scale-down pair (cooldown
// 2m each) against the scaleSystem in 15s cycles. On one actuator (both
// of kind scale) each reversal doubles the wait, so in two and a half
// hours the pair acts at 0, 2m, 6m, 14m, 30m, 62m and 126m, ever longer
// in one state; as two unrelated actuators (the control) it alternates
// every cooldown, about 60 acts an hour.
func TestOscillatingPairSettles(t *testing.T) {
	run := func(t *testing.T, kindDown string, d time.Duration) []time.Duration {
		h := newHarness(t, scalePair(kindDown))
		sys := &scaleSystem{replicas: 2}
		h.recv.onAct = func(r recorded) {
			// The receiver is the scaling API: the count changes when it
			// acts, before the next cycle's signals.
			switch {
			case strings.HasSuffix(r.Path, "/up"):
				sys.replicas++
			case strings.HasSuffix(r.Path, "/down"):
				sys.replicas--
			}
		}
		var acts []time.Duration
		seen := 0
		for i := range int(d / (15 * time.Second)) {
			at := t0.Add(time.Duration(i) * 15 * time.Second)
			h.clk.set(at)
			h.snap.set(sys.snapshot(at))
			h.step()
			if n := h.recv.actions(); n > seen {
				seen = n
				acts = append(acts, at.Sub(t0))
			}
		}
		return acts
	}
	t.Run("one actuator settles", func(t *testing.T) {
		acts := run(t, "scale", 150*time.Minute)
		m := time.Minute
		want := []time.Duration{0, 2 * m, 6 * m, 14 * m, 30 * m, 62 * m, 126 * m}
		if fmt.Sprint(acts) != fmt.Sprint(want) {
			t.Fatalf("acts at %v, want %v", acts, want)
		}
	})
	t.Run("two actuators alternate", func(t *testing.T) {
		acts := run(t, "other", time.Hour)
		// Each playbook only waits its own cooldown: both act every 2m.
		if len(acts) < 50 {
			t.Fatalf("the control should alternate: got %d acts in an hour: %v", len(acts), acts)
		}
		t.Logf("control: %d acts in an hour", len(acts))
	})
}

func TestSettleWait(t *testing.T) {
	cases := []struct {
		cooldown, settle time.Duration
		n                int
		want             time.Duration
	}{
		{5 * time.Minute, 24 * time.Hour, 0, 5 * time.Minute},
		{5 * time.Minute, 24 * time.Hour, 3, 40 * time.Minute},
		{5 * time.Minute, 24 * time.Hour, 9, 24 * time.Hour},
		{5 * time.Minute, 24 * time.Hour, 1000, 24 * time.Hour},
		{48 * time.Hour, 24 * time.Hour, 2, 48 * time.Hour},
		{0, 24 * time.Hour, 5, 0},
	}
	for _, c := range cases {
		if got := settleWait(c.cooldown, c.n, c.settle); got != c.want {
			t.Errorf("settleWait(%s, %d, %s) = %s, want %s", c.cooldown, c.n, c.settle, got, c.want)
		}
	}
}
