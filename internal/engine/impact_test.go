package engine

import (
	"context"
	"math"
	"testing"
	"time"
)

// TestDeployImpact checks the budget consumed around a deploy against
// sums worked out by hand: 400 requests a minute throughout (100 per 15s
// sample); 1 of each 100 bad before the deploy, 10 after it.
func TestDeployImpact(t *testing.T) {
	db := openTSDB(t)
	w := &liveWriter{db: db, values: map[string]float64{}}
	deploy := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	before := map[string][2]float64{"a": {99, 1}}
	after := map[string][2]float64{"a": {90, 10}}
	// A minute holds the samples in (start, end]: the sample at the
	// deploy's own time still belongs to the minute before it.
	w.write(t, deploy.Add(-26*time.Hour), deploy.Add(time.Second), before)
	clk := &clock{deploy.Add(30 * time.Second)}
	set := loadSpecs(t, exhaustionSLO) // 99% over 1d
	e := prepare(t, Options{Source: db, Store: openStore(t), Specs: set, Now: clk.now, Interval: 15 * time.Second})
	ctx := context.Background()
	for now := deploy.Add(15 * time.Second); now.Before(deploy.Add(32 * time.Minute)); now = now.Add(15 * time.Second) {
		w.write(t, now, now.Add(15*time.Second), after)
		clk.t = now.Add(45 * time.Second)
		e.cycle(ctx)
	}

	imps := e.DeployImpact("shop", deploy, 30*time.Minute)
	if len(imps) != 1 {
		t.Fatalf("got %d impacts, want 1: %+v", len(imps), imps)
	}
	d := imps[0]
	// By hand: 30 minutes × 4 bad = 120 before, 30 × 40 = 1,200 after, of
	// 30 × 400 = 12,000 each. The 1d windows ending at the deploy and 30
	// minutes after it hold 1,440 × 400 = 576,000 requests, so the budget
	// is 5,760 bad requests.
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"before bad", d.Before.Bad, 120}, {"before total", d.Before.Total, 12000}, {"before budget", d.Before.Budget, 120.0 / 5760},
		{"after bad", d.After.Bad, 1200}, {"after total", d.After.Total, 12000}, {"after budget", d.After.Budget, 1200.0 / 5760},
		{"excess", d.Excess(), 1080.0 / 5760},
	} {
		if math.Abs(c.got-c.want) > 1e-9*math.Max(1, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
	if !d.Complete || d.SLO != "shop-availability" || d.Span != "30m" {
		t.Errorf("got %+v", d)
	}
	if !d.After.From.Equal(deploy) || !d.After.To.Equal(deploy.Add(30*time.Minute)) || !d.Before.From.Equal(deploy.Add(-30*time.Minute)) {
		t.Errorf("spans: before %s–%s, after %s–%s", d.Before.From, d.Before.To, d.After.From, d.After.To)
	}
	// Ten minutes after the deploy the span is still running.
	if part := e.DeployImpact("shop", deploy.Add(25*time.Minute), 30*time.Minute); len(part) != 1 || part[0].Complete {
		t.Errorf("a deploy 7 minutes ago: got %+v, want incomplete", part)
	}
	if none := e.DeployImpact("other", deploy, 30*time.Minute); len(none) != 0 {
		t.Errorf("another service: got %+v", none)
	}
}
