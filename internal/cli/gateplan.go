package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/pflag"

	"github.com/qsp-dev/qsp/internal/gate"
	"github.com/qsp-dev/qsp/internal/gate/canary"
	"github.com/qsp-dev/qsp/internal/spec"
)

// plan holds the flags of qsp gate --plan.
type plan struct {
	on                bool
	traffic           float64
	samplesPerMinute  float64
	baselineErrorRate float64
	sigma             float64
}

func (p *plan) flags(fl *pflag.FlagSet) {
	fl.BoolVar(&p.on, "plan", false, "print how long the canary analysis must run for each check to reach its power, and exit")
	fl.Float64Var(&p.traffic, "traffic", 0, "with --plan: requests per minute each side (canary and baseline) serves")
	fl.Float64Var(&p.samplesPerMinute, "samples-per-minute", 0, "with --plan: samples per minute each side collects for sample metrics (default: one per query step)")
	fl.Float64Var(&p.baselineErrorRate, "baseline-error-rate", 0, "with --plan: expected baseline error rate, 0-1 (default 0.01)")
	fl.Float64Var(&p.sigma, "sigma", 0, "with --plan: expected log-scale spread of latencies (default 0.3)")
}

func (p *plan) input() canary.PlanInput {
	return canary.PlanInput{RequestsPerMinute: p.traffic, SamplesPerMinute: p.samplesPerMinute,
		BaselineErrorRate: p.baselineErrorRate, Sigma: p.sigma}
}

// runGatePlan prints the canary plan of gate name, from the local specs
// or the server, and writes it as JSON with --json.
func runGatePlan(ctx context.Context, stdout io.Writer, name string, f *gateFlags) error {
	if f.plan.traffic <= 0 {
		return errors.New("--plan needs --traffic, the requests per minute each side serves")
	}
	var cp *gate.CanaryPlan
	if len(f.specs) > 0 {
		set, diags := spec.Load(f.specs...)
		if diags.HasErrors() {
			return fmt.Errorf("specs are invalid:\n%w", diags)
		}
		g := set.Gate(name)
		if g == nil {
			return fmt.Errorf("gate %q: not in the specs", name)
		}
		var err error
		if cp, err = gate.PlanCanary(g, f.plan.input()); err != nil {
			return err
		}
	} else {
		if f.token == "" {
			f.token = os.Getenv("QSP_TOKEN")
		}
		b, err := newRemoteGate(f.url, f.token)
		if err != nil {
			return err
		}
		q := url.Values{}
		in := f.plan.input()
		for k, v := range map[string]float64{"requestsPerMinute": in.RequestsPerMinute, "samplesPerMinute": in.SamplesPerMinute,
			"baselineErrorRate": in.BaselineErrorRate, "sigma": in.Sigma} {
			if v != 0 {
				q.Set(k, strconv.FormatFloat(v, 'g', -1, 64))
			}
		}
		cp = &gate.CanaryPlan{}
		if err := b.Do(ctx, http.MethodGet, "/api/v1/gates/"+url.PathEscape(name)+"/canary/plan?"+q.Encode(), nil, cp); err != nil {
			return err
		}
	}
	printPlan(stdout, cp)
	if f.jsonFile != "" {
		data, err := json.MarshalIndent(cp, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(f.jsonFile, append(data, '\n'), 0o644); err != nil {
			return fmt.Errorf("write --json: %w", err)
		}
	}
	return nil
}

func printPlan(w io.Writer, cp *gate.CanaryPlan) {
	p := cp.Plan
	fmt.Fprintf(w, "gate %s: canary plan at %g requests and %g samples per minute per side\n",
		cp.Gate, float64(p.Input.RequestsPerMinute), float64(p.Input.SamplesPerMinute))
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "METRIC\tCHECK\tEFFECT\tN80/SIDE\tN95/SIDE\t80% AFTER\t95% AFTER")
	for _, m := range p.Metrics {
		name := m.Name
		if m.Critical {
			name += " (critical)"
		}
		for _, c := range m.Checks {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, c.Check, c.Power.Effect,
				sizeText(c.Power.N80, c.Power.Beyond), sizeText(c.Power.N95, c.Power.Beyond),
				minutesText(float64(c.Minutes80)), minutesText(float64(c.Minutes95)))
		}
	}
	_ = tw.Flush()
	verdict := "enough"
	if !cp.Enough {
		verdict = "NOT enough"
	}
	fmt.Fprintf(w, "%s; the gate's interval is %s: %s\n", p.Explanation, minutesText(float64(cp.IntervalMinutes)), verdict)
}

func sizeText(n, beyond int) string {
	if n == 0 {
		return fmt.Sprintf("> %d", beyond)
	}
	return strconv.Itoa(n)
}

func minutesText(m float64) string {
	switch {
	case math.IsInf(m, 1):
		return "never"
	case m < 1:
		return fmt.Sprintf("%.0fs", math.Ceil(m*60))
	case m < 120:
		return fmt.Sprintf("%.0fm", math.Ceil(m))
	}
	return fmt.Sprintf("%.1fh", math.Ceil(m/6)/10)
}
