package demo

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Scenario is one production incident as data: the fault it injects, the
// timed steps around it (a deploy, a CI gate run) and what QSP is
// expected to do about it.
type Scenario struct {
	Name  string
	Title string
	// Story says what happens, for the summary and the docs.
	Story string
	// Length is how long the fault lasts unless remediation ends it
	// first; then the team's own fix (End) ends it.
	Length time.Duration
	// Start injects the fault; End takes back what remediation did not.
	Start func(s *Simulator)
	End   func(e *Effects)
	// Steps run at offsets from the start.
	Steps []Step
	// Remedy is the platform API path whose call ends the fault, if
	// any; the scenario then stops early.
	Remedy string
	Expect Expectation
}

// Step is a timed action of a scenario.
type Step struct {
	At   time.Duration
	Kind string // StepDeploy or StepGate
	// Service, Version and Gate name what is deployed and gated.
	Service, Version, Gate string
}

// Step kinds.
const (
	// StepDeploy posts a deploy marker to the events API, as a CD system
	// does.
	StepDeploy = "deploy"
	// StepGate runs a deploy gate through the API, as a CI job does.
	StepGate = "gate"
)

// Expectation is what QSP must do about a scenario.
type Expectation struct {
	// SLO and Severity name the alert that must fire: page or ticket, or
	// no_data for the telemetry-missing alert.
	SLO      string
	Severity string
	// Within bounds the time to detect, from the fault's start, in
	// simulated time.
	Within time.Duration
	// Incident requires an incident opened for the SLO's service.
	Incident bool
	// Gate must fail, with a failed canary.
	Gate string
	// Playbook must run; Call is the platform API path it must call
	// exactly once ("" for a playbook that only dry-runs). DryRun marks a
	// playbook expected to record a dry run instead of acting.
	Playbook string
	Call     string
	DryRun   bool
	// NoData requires every SLO to report no_data, never ok, from
	// NoDataAfter into the fault until it ends.
	NoData      bool
	NoDataAfter time.Duration
	// Restarts requires at least one worker restart.
	Restarts bool
}

// Severity of the telemetry-missing alert.
const SeverityNoData = "no_data"

// Scenarios returns the seven scenarios, in the order the demo runs them.
func Scenarios() []Scenario {
	return []Scenario{
		{
			Name:  "payment-outage",
			Title: "Payment provider outage",
			Story: "The payment provider fails: almost every checkout request answers 502 for five minutes. The first " +
				"full bad minute burns the 99.9% availability budget sixteen times too fast over the hour, so the " +
				"availability SLO pages about a minute and a half after the outage begins: the first page a demo " +
				"visitor sees, within 90 seconds of the dashboard being ready at the default speed.",
			Length: 5 * time.Minute,
			Start:  func(s *Simulator) { s.Update(func(e *Effects) { e.CheckoutErrors = paymentOutageErrors }) },
			End:    func(e *Effects) { e.CheckoutErrors = 0 },
			Expect: Expectation{SLO: "checkout-availability", Severity: "page", Within: 3 * time.Minute, Incident: true},
		},
		{
			Name:  "deploy-latency",
			Title: "Latency spike after a deploy",
			Story: "checkout v2.14.0 rolls out with a 60% canary step and an N+1 query: its requests are ten times slower. " +
				"The CI pipeline runs the checkout-deploy gate after 10 minutes of canary and it fails; the latency SLO pages " +
				"and the checkout-rollback playbook aborts the rollout (the tier1-automation policy lets tier-1 rollbacks " +
				"act on a page).",
			// Long enough for the rollback to come first even at high
			// speed, where the playbook runner's 5s cycle is many
			// simulated minutes.
			Length: time.Hour,
			Start: func(s *Simulator) {
				s.Update(func(e *Effects) { e.Canary = &Canary{Version: "v2.14.0", Weight: 0.6, Slow: 10} })
			},
			End: func(e *Effects) { e.Canary = nil },
			Steps: []Step{
				{At: 0, Kind: StepDeploy, Service: "checkout", Version: "v2.14.0"},
				{At: 10 * time.Minute, Kind: StepGate, Service: "checkout", Version: "v2.14.0", Gate: "checkout-deploy"},
			},
			Remedy: PathRollback,
			Expect: Expectation{SLO: "checkout-latency", Severity: "page", Within: 25 * time.Minute, Incident: true,
				Gate: "checkout-deploy", Playbook: "checkout-rollback", Call: PathRollback},
		},
		{
			Name:  "bot-attack",
			Title: "Bot traffic exploiting an auth weakness",
			Story: "Credential stuffing: bots send twelve times the real sign-ins from many addresses. The WAF blocks half; " +
				"almost every sign-in that gets through fails. Both security SLOs burn; when the burn lasts, the " +
				"auth-throttle-bots playbook turns on the per-client sign-in limit, which the trade-off policy allows.",
			Length: time.Hour,
			Start:  func(s *Simulator) { s.Update(func(e *Effects) { e.Bots = 12 }) },
			End:    func(e *Effects) { e.Bots, e.BotsThrottled = 0, false },
			Remedy: PathRateLimit,
			Expect: Expectation{SLO: "auth-login-failures", Severity: "page", Within: 15 * time.Minute, Incident: true,
				Playbook: "auth-throttle-bots", Call: PathRateLimit},
		},
		{
			Name:  "memory-leak",
			Title: "Memory leak in background workers",
			Story: "A release of the auth workers leaks 25 MiB a minute. Memory crosses 85% of the limit after about a " +
				"quarter of an hour and the kernel kills the workers at the limit; they restart and leak again. The " +
				"saturation SLO pages; the auth-restart-workers playbook, still in dry-run, records what it would do.",
			Length: 50 * time.Minute,
			Start:  func(s *Simulator) { s.Update(func(e *Effects) { e.Leak = 25 << 20 }) },
			End:    func(e *Effects) { e.Leak = 0 },
			Expect: Expectation{SLO: "auth-worker-memory", Severity: "page", Within: 30 * time.Minute, Incident: true,
				Playbook: "auth-restart-workers", DryRun: true, Restarts: true},
		},
		{
			Name:  "autoscaling-throttle",
			Title: "Misconfigured autoscaling during a surge",
			Story: "A campaign triples search traffic while the autoscaler's ceiling was left at today's replica count. " +
				"Search sheds the excess with 429s, burning the availability budget; the search-scale-up playbook asks " +
				"for approval within minutes, the page follows, and the on-call approves (the demo does, once paged) to " +
				"raise the ceiling.",
			Length: 40 * time.Minute,
			Start: func(s *Simulator) {
				r := s.Replicas()
				s.Update(func(e *Effects) { e.SearchSurge, e.SearchCap = 3, r })
			},
			End:    func(e *Effects) { e.SearchSurge, e.SearchCap = 0, 0 },
			Remedy: PathAutoscaler,
			Expect: Expectation{SLO: "search-availability", Severity: "page", Within: 20 * time.Minute, Incident: true,
				Playbook: "search-scale-up", Call: PathAutoscaler},
		},
		{
			Name:  "stale-cache",
			Title: "Over-aggressive cache invalidation returns stale data",
			Story: "A new invalidation rule evicts entries faster than they can be rebuilt, and the fallback serves stale " +
				"results: 6% of cached answers are out of date. The freshness (correctness) SLO pages.",
			Length: 30 * time.Minute,
			Start:  func(s *Simulator) { s.Update(func(e *Effects) { e.Stale = 0.06 }) },
			End:    func(e *Effects) { e.Stale = 0 },
			Expect: Expectation{SLO: "search-freshness", Severity: "page", Within: 10 * time.Minute, Incident: true},
		},
		{
			Name:  "telemetry-loss",
			Title: "Telemetry loss: the collector stops",
			Story: "The metrics collector stops for 25 minutes. Every SLO turns no_data, never healthy: ratio SLOs once " +
				"their last samples are 5 minutes old, SLOs on gauges 5 minutes later (PromQL still sees a gauge 5 " +
				"minutes after its last sample). The checkout probe's telemetry-missing alert pages.",
			Length: 25 * time.Minute,
			Start:  func(s *Simulator) { s.Update(func(e *Effects) { e.CollectorDown = true }) },
			End:    func(e *Effects) { e.CollectorDown = false },
			Expect: Expectation{SLO: "checkout-probe", Severity: SeverityNoData, Within: 17 * time.Minute,
				NoData: true, NoDataAfter: 12 * time.Minute},
		},
	}
}

// paymentOutageErrors is the 5xx share of the payment outage: above
// 86.4%, one bad minute is over the page tier's 14.4x burn over 1h for a
// 99.9% objective (0.95 / 60 / 0.001 = 15.8).
const paymentOutageErrors = 0.95

// ScenarioNames lists the scenarios' names.
func ScenarioNames() []string {
	var names []string
	for _, s := range Scenarios() {
		names = append(names, s.Name)
	}
	return names
}

// selectScenarios returns the named scenarios, or all for no names.
func selectScenarios(names []string) ([]Scenario, error) {
	all := Scenarios()
	if len(names) == 0 {
		return all, nil
	}
	var out []Scenario
	for _, n := range names {
		i := slices.IndexFunc(all, func(s Scenario) bool { return s.Name == n })
		if i < 0 {
			return nil, fmt.Errorf("unknown scenario %q: want one of %s", n, strings.Join(ScenarioNames(), ", "))
		}
		out = append(out, all[i])
	}
	return out, nil
}

// Replicas returns the search replicas running now.
func (s *Simulator) Replicas() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return int(math.Floor(s.replicas))
}

// Restarts returns how often the auth workers restarted.
func (s *Simulator) Restarts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return int(s.restarts)
}
