package ui

import (
	"strings"
	"testing"
	"time"

	"github.com/qsp-dev/qsp/internal/api"
	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/slo"
)

// TestOncallTelemetryLoss: a service losing all its telemetry is one
// no-data row on the on-call page saying how many SLOs since when, not a
// pending row per SLO; the executive page says No data for it, never OK.
func TestOncallTelemetryLoss(t *testing.T) {
	tu := newTestUI(t, 3)
	f := tu.ui.opts.Engine.(*fixedSnapshots)
	snap := f.Snapshot()
	lost := tu.at.Add(-7 * time.Minute)
	var sts []*engine.Status
	for _, st := range snap.Statuses {
		c := *st
		switch c.Service {
		case "svc-0001":
			c.State, c.Reason, c.DataUntil = engine.StateNoData, "no samples for 7m", lost
			c.Alerts = []engine.AlertStatus{{Severity: engine.SeverityNoData, Name: engine.AlertTelemetryMissing, State: slo.Pending, Since: lost}}
		default:
			c.State = engine.StateOK
			c.Alerts = nil
		}
		sts = append(sts, &c)
	}
	f.snap.Store(engine.NewSnapshot(tu.at, sts, nil))

	_, body := tu.get(t, "/oncall", api.RoleViewer)
	for _, want := range []string{"Pending (0)", "No data (1)", "3 SLOs have no data", "11:53", "7m ago", "QSPTelemetryMissing", "no samples for 7m"} {
		if !strings.Contains(body, want) {
			t.Errorf("on-call page lacks %q", want)
		}
	}
	if n := strings.Count(body, "no samples for 7m"); n != 1 {
		t.Errorf("the telemetry loss shows in %d rows, want 1", n)
	}

	_, body = tu.get(t, "/", api.RoleViewer)
	var row string
	for _, r := range strings.Split(body, "<tr") {
		if strings.Contains(r, "svc-0001") {
			row = r
			break
		}
	}
	if row == "" {
		t.Fatalf("executive page has no row of svc-0001")
	}
	if !strings.Contains(row, "No data") || strings.Contains(row, "OK") {
		t.Errorf("executive row of svc-0001 must say No data and never OK: %s", row)
	}
}
