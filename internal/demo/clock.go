package demo

import (
	"context"
	"sync"
	"time"
)

// Clock is the demo's simulated time, shared by the simulator and the app
// (the receivers reject samples more than 10 minutes ahead of the app's
// clock, and alert timings must be in the same time as the data). It
// stands still at its start until Start, then runs Speed times faster
// than the wall clock; Pause stops it again until the next Start. It is safe for concurrent use.
type Clock struct {
	mu        sync.Mutex
	start     time.Time // simulated time at Start (or while stopped)
	realStart time.Time // wall time of Start; zero while stopped
	speed     float64
	wall      func() time.Time
}

// NewClock returns a stopped clock at start that will run speed times
// faster than wall (time.Now when nil).
func NewClock(start time.Time, speed float64, wall func() time.Time) *Clock {
	if wall == nil {
		wall = time.Now
	}
	if speed <= 0 {
		speed = 1
	}
	return &Clock{start: start, speed: speed, wall: wall}
}

// Start lets the clock run from now on; it is a no-op when running.
func (c *Clock) Start() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.realStart.IsZero() {
		c.realStart = c.wall()
	}
}

// Pause stops the clock at its current time until the next Start; it
// is a no-op when stopped.
func (c *Clock) Pause() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.start = c.nowLocked()
	c.realStart = time.Time{}
}

// Now returns the simulated time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nowLocked()
}

func (c *Clock) nowLocked() time.Time {
	if c.realStart.IsZero() {
		return c.start
	}
	return c.start.Add(time.Duration(float64(c.wall().Sub(c.realStart)) * c.speed))
}

// Speed is how many simulated seconds pass per wall-clock second.
func (c *Clock) Speed() float64 { return c.speed }

// Real converts a simulated duration into wall-clock time.
func (c *Clock) Real(d time.Duration) time.Duration {
	return time.Duration(float64(d) / c.speed)
}

// SleepUntil waits until the simulated time is at least t, or ctx ends.
func (c *Clock) SleepUntil(ctx context.Context, t time.Time) error {
	for {
		d := t.Sub(c.Now())
		if d <= 0 {
			return nil
		}
		// Wake at least every 200ms of wall time: the clock may have
		// been started while this waited.
		timer := time.NewTimer(min(c.Real(d)+time.Millisecond, 200*time.Millisecond))
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-timer.C:
		}
	}
}
