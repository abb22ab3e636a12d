//go:build race

package canary

const raceEnabled = true

// Under the race detector, which looks for data races and slows the
// simulations tenfold, the power advice simulates 100 runs per size
// instead of SimRuns; the advice tests widen their tolerance to match.
func init() { simRuns = 100 }
