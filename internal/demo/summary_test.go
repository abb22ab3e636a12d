package demo

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/qsp-dev/qsp/internal/spec"
)

func TestFormatDuration(t *testing.T) {
	cases := []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"},
		{42 * time.Second, "42s"},
		{3 * time.Minute, "3m"},
		{3*time.Minute + 43*time.Second, "3m43s"},
		{19*time.Minute + 2500*time.Millisecond, "19m03s"},
		{65 * time.Minute, "1h05m"},
		{26 * time.Hour, "26h00m"},
	}
	for _, c := range cases {
		if got := formatDuration(c.d); got != c.want {
			t.Errorf("formatDuration(%s) = %q, want %q", c.d, got, c.want)
		}
	}
}

func TestSummaryTable(t *testing.T) {
	start := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	sum := &Summary{Speed: 60, Start: start, End: start.Add(3 * time.Hour), SamplesSent: 1000, SamplesLost: 10, Results: []*Result{
		{
			Scenario: "deploy-latency", Started: start, Detected: true, DetectedAt: start.Add(19 * time.Minute), TTD: 19 * time.Minute,
			SLO: "checkout-latency", Severity: "page", Alerts: []string{"checkout-latency page", "checkout-latency-p99 page"},
			Incidents: []int64{4}, Gate: &GateResult{Name: "checkout-deploy", State: "fail", Canary: "fail"},
			Playbooks:  []PlaybookResult{{Playbook: "checkout-rollback", State: "succeeded"}},
			Calls:      []Call{{Method: "POST", Path: PathRollback, Status: 200}},
			FaultEnded: start.Add(21 * time.Minute), EndedBy: "remediation (" + PathRollback + ")",
		},
		{
			Scenario: "telemetry-loss", Started: start.Add(time.Hour), Severity: SeverityNoData, SLO: "checkout-probe",
			Problems: []string{"checkout-probe no_data did not fire"}, Missing: []string{"playbooks: none"},
		},
	}}
	var b strings.Builder
	if err := sum.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	lines := strings.Split(out, "\n")
	for _, want := range []string{
		"SCENARIO", "WHAT QSP DID",
		"deploy-latency  Mar 2 12:00", "12:19", "19m", "paged on checkout-latency; 1 more alerts; incident #4; gate checkout-deploy: fail (canary fail); playbook checkout-rollback: succeeded; POST " + PathRollback + " -> 200; fault ended by remediation",
		"telemetry-loss  Mar 2 13:00", "did not detect it",
		"telemetry-loss: NOT MET: checkout-probe no_data did not fire",
		"telemetry-loss: not checked: playbooks: none",
		"1000 samples sent through remote_write, 10 lost (collector down or refused)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	// The columns line up: every row's WHAT QSP DID starts where the
	// header's does.
	col := strings.Index(lines[0], "WHAT QSP DID")
	for _, l := range lines[1:3] {
		if len(l) <= col || l[col-2:col] != "  " || l[col] == ' ' {
			t.Errorf("row not aligned at column %d: %q", col, l)
		}
	}
}

func TestScenariosAreConsistentWithTheExamples(t *testing.T) {
	set := loadExamples(t)
	names := map[string]bool{}
	for _, sc := range Scenarios() {
		if names[sc.Name] {
			t.Errorf("scenario %s twice", sc.Name)
		}
		names[sc.Name] = true
		ex := sc.Expect
		if set.SLO(ex.SLO) == nil {
			t.Errorf("%s: expects an alert of unknown SLO %s", sc.Name, ex.SLO)
		}
		if !slices.Contains([]string{"page", "ticket", SeverityNoData}, ex.Severity) || ex.Within <= 0 {
			t.Errorf("%s: severity %q within %s", sc.Name, ex.Severity, ex.Within)
		}
		if ex.Gate != "" && set.Gate(ex.Gate) == nil {
			t.Errorf("%s: unknown gate %s", sc.Name, ex.Gate)
		}
		if ex.Playbook != "" {
			pb := set.Playbook(ex.Playbook)
			switch {
			case pb == nil:
				t.Errorf("%s: unknown playbook %s", sc.Name, ex.Playbook)
			case pb.Spec.Guards.DryRun != ex.DryRun:
				t.Errorf("%s: playbook %s dry-run %v, expected %v", sc.Name, ex.Playbook, pb.Spec.Guards.DryRun, ex.DryRun)
			case pb.Spec.Trigger.SLO != ex.SLO:
				t.Errorf("%s: playbook %s triggers on %s, the scenario pages on %s", sc.Name, ex.Playbook, pb.Spec.Trigger.SLO, ex.SLO)
			case ex.Call != "" && !slices.ContainsFunc(pb.Spec.Actions, func(a spec.Action) bool { return a.Webhook != nil && strings.HasSuffix(a.Webhook.URL, ex.Call) }):
				t.Errorf("%s: playbook %s does not call %s", sc.Name, ex.Playbook, ex.Call)
			}
		}
		if sc.Remedy != "" && sc.Remedy != ex.Call {
			t.Errorf("%s: remedy %s is not the call expected of the playbook (%s)", sc.Name, sc.Remedy, ex.Call)
		}
		if sc.Length <= ex.Within && !ex.NoData {
			t.Errorf("%s: the fault (%s) ends before the detection deadline (%s)", sc.Name, sc.Length, ex.Within)
		}
		for _, st := range sc.Steps {
			if st.At > sc.Length || (st.Kind != StepDeploy && st.Kind != StepGate) {
				t.Errorf("%s: step %+v", sc.Name, st)
			}
		}
		// Start and End are a pair: End takes back everything Start did.
		sim := NewSimulator(1)
		sc.Start(sim)
		if sim.Effects() == (Effects{}) {
			t.Errorf("%s: Start injects no fault", sc.Name)
		}
		sim.Update(sc.End)
		if e := sim.Effects(); e != (Effects{}) {
			t.Errorf("%s: End leaves %+v", sc.Name, e)
		}
	}
	// The six of issue 1 and the payment outage of issue 18, which pages
	// first.
	if len(names) != 7 || Scenarios()[0].Name != "payment-outage" {
		t.Errorf("%d scenarios, want seven, the payment outage first", len(names))
	}
	if _, err := selectScenarios([]string{"bot-attack", "stale-cache"}); err != nil {
		t.Error(err)
	}
}
