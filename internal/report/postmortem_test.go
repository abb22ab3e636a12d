package report_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/qsp-dev/qsp/internal/alert"
)

func TestPostmortem(t *testing.T) {
	var f fixture
	readJSON(t, "month.json", &f)
	b, _ := builder(t, &f)
	first := time.Date(2026, 11, 10, 12, 0, 0, 0, time.UTC)
	ttr := 1800.0
	inc := alert.Incident{ID: 1, Service: "checkout", Title: "checkout-availability page", Severity: "page", State: "closed",
		FirstBadAt: first, DetectedAt: first.Add(3 * time.Minute), ResolvedAt: first.Add(30 * time.Minute), TimeToDetect: 180, TimeToRepair: &ttr,
		Alerts: []alert.IncidentAlert{{Key: "checkout-availability", SLO: "checkout-availability", Severity: "page", Alert: "SLOBurnRatePage", State: "resolved",
			FiredAt: first.Add(3 * time.Minute), ResolvedAt: first.Add(30 * time.Minute)}},
		Timeline: []alert.IncidentEvent{{At: first, Kind: alert.EventFirstBad, Key: "checkout-availability"},
			{At: first.Add(3 * time.Minute), Kind: alert.EventDetected, Key: "checkout-availability", Severity: "page", Detail: "burn rate 24 over 1h and 5m"}}}
	pm, err := b.Postmortem(context.Background(), inc)
	if err != nil {
		t.Fatal(err)
	}
	if pm.DeployBefore == nil || pm.DeployBefore.Version != "v2.13.0" {
		t.Fatalf("deploy before: got %+v, want checkout v2.13.0 (11:50)", pm.DeployBefore)
	}
	if len(pm.SLIs) != 1 || pm.SLIs[0].Bad != 1200 || pm.SLIs[0].Total != 3000 {
		t.Fatalf("SLIs: got %+v, want checkout-availability with 1200 bad of 3000", pm.SLIs)
	}
	var md bytes.Buffer
	if err := pm.Markdown(&md); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"# Postmortem draft: incident 1 — checkout-availability page", "Time to detect (MTTD): 3m", "Time to repair (MTTR): 30m",
		"checkout v2.13.0 at 2026-11-10 11:50 UTC (10m before the first bad minute)", "| checkout-availability | 99.9 % | 60 % | 1,200 |",
		"**detected** checkout-availability (page): burn rate 24 over 1h and 5m", "## Open questions", "Did the deploy of checkout v2.13.0",
		"Nobody acknowledged the page", "No playbook ran"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("postmortem lacks %q:\n%s", want, md.String())
		}
	}
}
