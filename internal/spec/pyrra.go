package spec

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Pyrra (https://github.com/pyrra-dev/pyrra) pyrra.dev/v1alpha1
// ServiceLevelObjective resources convert to one qsp SLO each, in a
// Service named after the resource's namespace ("default" without one).
// The alerts are Pyrra's own (slo/rules.go Windows): for a window W, page
// (Pyrra's critical) on 14x over W/672 with short W/8064 and on 7x over
// W/112 with short W/1344; ticket (warning) on 2x over W/28 with short
// W/336 and on 1x over W/7 with short W/112 — for 28 days: 1h/5m, 6h/30m,
// 1d/2h, 4d/6h.

type pyrraResource struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name        string            `yaml:"name"`
		Namespace   string            `yaml:"namespace"`
		Labels      map[string]string `yaml:"labels"`
		Annotations map[string]string `yaml:"annotations"`
	} `yaml:"metadata"`
	Spec struct {
		Description string `yaml:"description"`
		Target      string `yaml:"target"`
		Window      string `yaml:"window"`
		Indicator   struct {
			Ratio *struct {
				Errors   pyrraQuery `yaml:"errors"`
				Total    pyrraQuery `yaml:"total"`
				Grouping []string   `yaml:"grouping"`
			} `yaml:"ratio"`
			Latency *struct {
				Success  pyrraQuery `yaml:"success"`
				Total    pyrraQuery `yaml:"total"`
				Grouping []string   `yaml:"grouping"`
			} `yaml:"latency"`
			LatencyNative *struct {
				Total    pyrraQuery `yaml:"total"`
				Latency  string     `yaml:"latency"`
				Grouping []string   `yaml:"grouping"`
			} `yaml:"latencyNative"`
			BoolGauge *struct {
				Metric   string   `yaml:"metric"`
				Grouping []string `yaml:"grouping"`
			} `yaml:"bool_gauge"`
		} `yaml:"indicator"`
		Alerting struct {
			Disabled   *bool  `yaml:"disabled"`
			Burnrates  *bool  `yaml:"burnrates"`
			Absent     *bool  `yaml:"absent"`
			Name       string `yaml:"name"`
			AbsentName string `yaml:"absentName"`
			Severities *struct {
				Absent       string `yaml:"absent"`
				FastBurn     string `yaml:"fastBurn"`
				MediumBurn   string `yaml:"mediumBurn"`
				SlowBurn     string `yaml:"slowBurn"`
				LongTermBurn string `yaml:"longTermBurn"`
			} `yaml:"severities"`
		} `yaml:"alerting"`
		PartialResponseStrategy string `yaml:"partial_response_strategy"`
		PerformanceOverAccuracy bool   `yaml:"performanceOverAccuracy"`
		RuleOutput              any    `yaml:"ruleOutput"`
	} `yaml:"spec"`
	Status any `yaml:"status"`
}

type pyrraQuery struct {
	Metric string `yaml:"metric"`
}

// PyrraWindows returns Pyrra's page and ticket burn-rate windows for an SLO
// window w, as Pyrra's slo.Windows computes them, and the "for" of each
// tier (the shortest of its pairs: qsp has one per tier).
func PyrraWindows(w time.Duration) (page, ticket []BurnWindow, pageFor, ticketFor Duration) {
	r := func(d time.Duration) Duration { return Duration(max(d.Round(time.Minute), time.Minute)) }
	page = []BurnWindow{
		{Long: r(w / (28 * 24)), Short: r(w / (28 * 24 * 12)), Factor: 14},
		{Long: r(w / (28 * 4)), Short: r(w / (28 * 24 * 2)), Factor: 7},
	}
	ticket = []BurnWindow{
		{Long: r(w / 28), Short: r(w / (28 * 12)), Factor: 2},
		{Long: r(w / 7), Short: r(w / (28 * 4)), Factor: 1},
	}
	return page, ticket, Duration((w / (28 * 24 * 30)).Round(time.Minute)), Duration((w / (28 * 24)).Round(time.Minute))
}

func (p *loader) parsePyrra(doc document) {
	var r pyrraResource
	d := &decoder{diags: &p.diags, file: doc.file, pos: map[string]*yaml.Node{}}
	d.object = "ServiceLevelObjective/" + scalar(orEmpty(field(doc.node, "metadata")), "name")
	d.decode(doc.node, reflectValueOf(&r), "")
	o := Origin{File: doc.file, Line: doc.node.Line, Column: doc.node.Column, pos: d.pos}
	report := func(warning bool, path, format string, args ...any) {
		line, col := o.At(path)
		p.diags.add(Diagnostic{File: doc.file, Line: line, Column: col, Object: d.object, Field: path, Message: fmt.Sprintf(format, args...), Warning: warning})
	}
	m, sp := r.Metadata, r.Spec
	if m.Name == "" {
		report(false, "metadata.name", "required")
		return
	}
	service := m.Namespace
	if service == "" {
		service = "default"
		report(true, "metadata", "Pyrra has no service: the SLO goes into Service %q (the namespace names it when set)", service)
	}
	// Pyrra's pyrra.dev/... labels are not label names Prometheus accepts
	// in qsp metadata; pyrra.dev/team names the owner.
	labels := map[string]string{}
	for _, k := range slices.Sorted(maps.Keys(m.Labels)) {
		if strings.Contains(k, "/") {
			report(true, "metadata.labels."+k, "label %q is not a Prometheus label name: not kept (pyrra.dev/team sets the service owner)", k)
			continue
		}
		labels[k] = m.Labels[k]
	}
	if len(labels) == 0 {
		labels = nil
	}
	if !p.hasQSPService(service) {
		owner := m.Labels["owner"]
		if owner == "" {
			owner = m.Labels["pyrra.dev/team"]
		}
		if owner == "" {
			owner = m.Labels["team"]
		}
		if owner == "" {
			owner = "unassigned"
			report(true, "metadata.labels", "Pyrra has no owner: the Service's owner is %q (an owner or team label carries it over)", owner)
		}
		svc := &Service{Header: Header{APIVersion: APIVersion, Kind: KindService, Metadata: Metadata{Name: service}}, Spec: ServiceSpec{Owner: owner}}
		svc.origin = Origin{File: doc.file, Line: doc.node.Line, Column: doc.node.Column, pos: map[string]*yaml.Node{}}
		p.objects = append(p.objects, svc)
	}
	slo := &SLO{Header: Header{APIVersion: APIVersion, Kind: KindSLO, Metadata: Metadata{Name: m.Name, Labels: labels, Annotations: m.Annotations}}}
	slo.origin = Origin{File: doc.file, Line: doc.node.Line, Column: doc.node.Column, pos: map[string]*yaml.Node{}}
	for q, s := range map[string]string{"metadata.name": "metadata.name", "spec.objective": "spec.target", "spec.window": "spec.window", "spec.indicator": "spec.indicator", "spec.alerting.name": "spec.alerting.name"} {
		if n, ok := d.pos[s]; ok {
			slo.origin.pos[q] = n
		}
	}
	s := &slo.Spec
	s.Service, s.Description, s.Category = service, sp.Description, Quality
	if c := Category(m.Labels["category"]); c == Security || c == Performance {
		s.Category = c
	}
	target, err := strconv.ParseFloat(sp.Target, 64)
	if err != nil || target <= 0 || target >= 100 {
		report(false, "spec.target", "want a percentage above 0 and below 100, e.g. \"99.5\", got %q", sp.Target)
		return
	}
	s.Objective = NewObjective(target)
	var win Duration
	if err := win.UnmarshalYAML(&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: sp.Window}); err != nil || win <= 0 {
		report(false, "spec.window", "want a duration such as 28d or 4w, got %q", sp.Window)
		return
	}
	s.Window = Window{Rolling: win}

	ind := sp.Indicator
	by := func(g []string) string {
		if len(g) == 0 {
			return ""
		}
		return " by (" + strings.Join(g, ", ") + ")"
	}
	rate := func(g []string, metric string) string {
		return fmt.Sprintf("sum%s (rate(%s[%s]))", by(g), strings.TrimSpace(metric), WindowPlaceholder)
	}
	switch {
	case ind.Ratio != nil:
		s.GroupBy = ind.Ratio.Grouping
		s.Indicator = Indicator{Ratio: &RatioIndicator{Bad: rate(s.GroupBy, ind.Ratio.Errors.Metric), Total: rate(s.GroupBy, ind.Ratio.Total.Metric)}}
	case ind.Latency != nil:
		s.GroupBy = ind.Latency.Grouping
		s.Indicator = Indicator{Ratio: &RatioIndicator{Good: rate(s.GroupBy, ind.Latency.Success.Metric), Total: rate(s.GroupBy, ind.Latency.Total.Metric)}}
	case ind.LatencyNative != nil:
		l := ind.LatencyNative
		s.GroupBy = l.Grouping
		lat, err := time.ParseDuration(strings.TrimSpace(l.Latency))
		if err != nil {
			if f, ferr := strconv.ParseFloat(l.Latency, 64); ferr == nil {
				lat, err = time.Duration(f*float64(time.Second)), nil
			}
		}
		if err != nil {
			report(false, "spec.indicator.latencyNative.latency", "want a latency such as 1s or 0.5, got %q", l.Latency)
			return
		}
		h := fmt.Sprintf("sum%s (rate(%s[%s]))", by(s.GroupBy), strings.TrimSpace(l.Total.Metric), WindowPlaceholder)
		s.Indicator = Indicator{Ratio: &RatioIndicator{
			Good:  fmt.Sprintf("histogram_fraction(0, %s, %s) * histogram_count(%s)", strconv.FormatFloat(lat.Seconds(), 'g', -1, 64), h, h),
			Total: "histogram_count(" + h + ")",
		}}
		report(true, "spec.indicator.latencyNative", "a native histogram SLI is evaluated with PromQL at minute steps (approximate)")
	case ind.BoolGauge != nil:
		s.GroupBy = ind.BoolGauge.Grouping
		s.Indicator = Indicator{Availability: &AvailabilityIndicator{Query: strings.TrimSpace(ind.BoolGauge.Metric)}}
	default:
		report(false, "spec.indicator", "required: ratio, latency, latencyNative or bool_gauge")
		return
	}

	a := sp.Alerting
	page, ticket, pageFor, ticketFor := PyrraWindows(win.D())
	s.Alerting = Alerting{
		Name:   "ErrorBudgetBurn", // Pyrra's default alertname
		Page:   &AlertTier{Windows: page, For: pageFor, Labels: map[string]string{"severity": "critical"}},
		Ticket: &AlertTier{Windows: ticket, For: ticketFor, Labels: map[string]string{"severity": "warning"}},
	}
	if a.Name != "" {
		s.Alerting.Name = a.Name
	}
	report(true, "spec.alerting", "Pyrra's burn-rate alerts: page (severity critical) on %s and %s for %s, ticket (warning) on %s and %s for %s (Pyrra waits per pair; qsp per tier, the shorter wait)",
		fmtBW(page[0]), fmtBW(page[1]), pageFor, fmtBW(ticket[0]), fmtBW(ticket[1]), ticketFor)
	if sv := a.Severities; sv != nil {
		if sv.FastBurn != "" || sv.MediumBurn != "" {
			s.Alerting.Page.Labels["severity"] = firstNonEmpty(sv.FastBurn, sv.MediumBurn)
		}
		if sv.SlowBurn != "" || sv.LongTermBurn != "" {
			s.Alerting.Ticket.Labels["severity"] = firstNonEmpty(sv.SlowBurn, sv.LongTermBurn)
		}
		if sv.FastBurn != sv.MediumBurn && sv.MediumBurn != "" || sv.SlowBurn != sv.LongTermBurn && sv.LongTermBurn != "" {
			report(true, "spec.alerting.severities", "qsp has one severity per tier: page takes fastBurn, ticket slowBurn")
		}
	}
	if (a.Disabled != nil && *a.Disabled) || (a.Burnrates != nil && !*a.Burnrates) {
		s.Alerting.Page.Disabled, s.Alerting.Ticket.Disabled = true, true
	}
	noData := !(a.Disabled != nil && *a.Disabled) && (a.Absent == nil || *a.Absent)
	s.Alerting.NoData.Alert = &noData
	if a.AbsentName != "" {
		report(true, "spec.alerting.absentName", "the absent alert is QSP's QSPTelemetryMissing; the name %q is not kept", a.AbsentName)
	}
	if sp.PartialResponseStrategy != "" {
		report(true, "spec.partial_response_strategy", "a Thanos query option; not converted (set it on the remote source)")
	}
	if sp.PerformanceOverAccuracy {
		report(true, "spec.performanceOverAccuracy", "a rule-generation option of Pyrra; QSP counts exactly")
	}
	if sp.RuleOutput != nil {
		report(true, "spec.ruleOutput", "labels of Pyrra's recording rules; not converted")
	}
	p.objects = append(p.objects, slo)
}

func fmtBW(b BurnWindow) string { return fmt.Sprintf("%s/%s@%v", b.Long, b.Short, b.Factor) }

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
