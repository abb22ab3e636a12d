package spec

import (
	"fmt"
	"maps"
	"slices"
	"strconv"

	"go.yaml.in/yaml/v3"
)

// Sloth (https://github.com/slok/sloth) prometheus/v1 documents, and the
// same SLOs in its Kubernetes PrometheusServiceLevel resource, convert to
// one qsp Service and one SLO per Sloth SLO, named <service>-<slo> as Sloth
// names its sloth_id.

type slothSpec struct {
	Version string            `yaml:"version"`
	Service string            `yaml:"service"`
	Labels  map[string]string `yaml:"labels"`
	Plugins *slothPlugins     `yaml:"slo_plugins"`
	SLOs    []slothSLO        `yaml:"slos"`
}

// slothPlugins is a chain of Sloth SLO plugins (Sloth v0.12+).
type slothPlugins struct {
	OverridePrevious bool `yaml:"overridePrevious"`
	Chain            []struct {
		ID       string `yaml:"id"`
		Config   any    `yaml:"config"`
		Priority int    `yaml:"priority"`
	} `yaml:"chain"`
}

type slothSLO struct {
	Name        string            `yaml:"name"`
	Description string            `yaml:"description"`
	Objective   Objective         `yaml:"objective"`
	Labels      map[string]string `yaml:"labels"`
	Plugins     *slothPlugins     `yaml:"plugins"`
	SLI         slothSLI          `yaml:"sli"`
	Alerting    slothAlerting     `yaml:"alerting"`
}

type slothSLI struct {
	Raw *struct {
		ErrorRatioQuery string `yaml:"error_ratio_query"`
	} `yaml:"raw"`
	Events *struct {
		ErrorQuery string `yaml:"error_query"`
		TotalQuery string `yaml:"total_query"`
	} `yaml:"events"`
	Plugin *struct {
		ID      string            `yaml:"id"`
		Options map[string]string `yaml:"options"`
	} `yaml:"plugin"`
}

type slothAlerting struct {
	Name        string            `yaml:"name"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
	PageAlert   slothAlert        `yaml:"page_alert"`
	TicketAlert slothAlert        `yaml:"ticket_alert"`
}

type slothAlert struct {
	Disable     bool              `yaml:"disable"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// slothCamel maps the Kubernetes resource's field names to the file
// format's. Both spellings are read in both forms, as Sloth's own example
// files mix them.
var slothCamel = map[string]string{
	"sloPlugins":      "slo_plugins",
	"errorQuery":      "error_query",
	"totalQuery":      "total_query",
	"errorRatioQuery": "error_ratio_query",
	"pageAlert":       "page_alert",
	"ticketAlert":     "ticket_alert",
}

func renameKeys(n *yaml.Node, names map[string]string, depth int) {
	if n == nil || depth > 20 {
		return
	}
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if to, ok := names[n.Content[i].Value]; ok {
				n.Content[i].Value = to
			}
		}
	}
	for _, c := range n.Content {
		renameKeys(c, names, depth+1)
	}
}

func (p *loader) parseSloth(doc document, n *yaml.Node, k8s bool) {
	if n == nil || n.Kind != yaml.MappingNode {
		p.diags.add(Diagnostic{File: doc.file, Line: doc.node.Line, Column: doc.node.Column, Field: "spec", Message: "required: the Sloth service and its SLOs"})
		return
	}
	prefix := ""
	var sp slothSpec
	d := &decoder{diags: &p.diags, file: doc.file, pos: map[string]*yaml.Node{}}
	renameKeys(n, slothCamel, 0)
	if k8s {
		prefix = "spec"
		meta := orEmpty(field(doc.node, "metadata"))
		d.object = "PrometheusServiceLevel/" + scalar(meta, "name")
	} else {
		d.object = "Sloth/" + scalar(n, "service")
	}
	d.decode(n, reflectValueOf(&sp), prefix)
	at := func(path string) (int, int) {
		o := Origin{File: doc.file, Line: n.Line, Column: n.Column, pos: d.pos}
		return o.At(path)
	}
	report := func(warning bool, path, format string, args ...any) {
		line, col := at(path)
		p.diags.add(Diagnostic{File: doc.file, Line: line, Column: col, Object: d.object, Field: path, Message: fmt.Sprintf(format, args...), Warning: warning})
	}
	path := func(s string) string {
		if prefix == "" {
			return s
		}
		return prefix + "." + s
	}
	if sp.Service == "" {
		report(false, path("service"), "required")
		return
	}
	origin := func(qspPaths map[string]string) Origin {
		o := Origin{File: doc.file, Line: n.Line, Column: n.Column, pos: map[string]*yaml.Node{}}
		for q, s := range qspPaths {
			if node, ok := d.pos[s]; ok {
				o.pos[q] = node
			}
		}
		return o
	}

	owner := sp.Labels["owner"]
	if owner == "" {
		owner = sp.Labels["team"]
	}
	if owner == "" {
		owner = "unassigned"
		report(true, path("labels"), "Sloth has no owner: spec.owner is set to %q (an owner or team label carries it over)", owner)
	}
	svc := &Service{Header: Header{APIVersion: APIVersion, Kind: KindService, Metadata: Metadata{Name: sp.Service}}, Spec: ServiceSpec{Owner: owner}}
	svc.origin = origin(map[string]string{"metadata.name": path("service")})
	svc.Spec.Labels = map[string]string{}
	for k, v := range sp.Labels {
		switch k {
		case "owner", "team":
			if k == "team" {
				svc.Spec.Labels[k] = v
			}
		case "tier":
			if t, err := strconv.Atoi(v); err == nil {
				svc.Spec.Tier = t
			} else {
				svc.Spec.Labels[k] = v
			}
		default:
			svc.Spec.Labels[k] = v
		}
	}
	if len(svc.Spec.Labels) == 0 {
		svc.Spec.Labels = nil
	}
	if !p.hasQSPService(sp.Service) {
		p.objects = append(p.objects, svc)
	}

	p.slothPlugins(report, path("slo_plugins"), sp.Plugins, nil)
	for i, s := range sp.SLOs {
		sp := path(fmt.Sprintf("slos[%d]", i))
		if s.Name == "" {
			report(false, sp+".name", "required")
			continue
		}
		slo := &SLO{Header: Header{APIVersion: APIVersion, Kind: KindSLO, Metadata: Metadata{Name: svc.Name() + "-" + s.Name, Labels: s.Labels}}}
		slo.origin = origin(map[string]string{
			"metadata.name":                sp + ".name",
			"spec.objective":               sp + ".objective",
			"spec.indicator":               sp + ".sli",
			"spec.indicator.ratio.bad":     sp + ".sli.events.error_query",
			"spec.indicator.ratio.total":   sp + ".sli.events.total_query",
			"spec.alerting.name":           sp + ".alerting.name",
			"spec.alerting.labels":         sp + ".alerting.labels",
			"spec.alerting.page.labels":    sp + ".alerting.page_alert.labels",
			"spec.alerting.ticket.labels":  sp + ".alerting.ticket_alert.labels",
			"spec.alerting.page.windows":   sp + ".alerting.page_alert",
			"spec.alerting.ticket.windows": sp + ".alerting.ticket_alert",
		})
		spec := &slo.Spec
		spec.Service = svc.Name()
		spec.Description = s.Description
		spec.Objective = s.Objective
		// Sloth's default SLO period; its alert windows are the workbook's,
		// which are qsp's defaults for 30 days too.
		spec.Window = Window{Rolling: Duration(workbookWindow)}
		spec.Category = Quality
		if c := Category(s.Labels["category"]); slices.Contains(Categories, c) {
			spec.Category = c
		} else {
			report(true, sp, "Sloth has no quality/security/performance category: set to quality (a category label of quality, security or performance carries it over)")
		}
		switch {
		case s.SLI.Plugin != nil:
			report(false, sp+".sli.plugin", "SLI plugin %q cannot be converted: its queries live in Sloth's plugin code; write them as sli.events (error_query and total_query)", s.SLI.Plugin.ID)
			continue
		case s.SLI.Raw != nil:
			spec.Indicator = Indicator{Ratio: &RatioIndicator{ErrorRatio: s.SLI.Raw.ErrorRatioQuery}}
			slo.origin.pos["spec.indicator.ratio.errorRatio"] = d.pos[sp+".sli.raw.error_ratio_query"]
			report(true, sp+".sli.raw", "a raw error ratio is converted to ratio.errorRatio: QSP evaluates it every minute and weighs each minute the same (approximate); the generated Prometheus rules use the query as Sloth does")
		case s.SLI.Events != nil:
			spec.Indicator = Indicator{Ratio: &RatioIndicator{Bad: s.SLI.Events.ErrorQuery, Total: s.SLI.Events.TotalQuery}}
		default:
			report(false, sp+".sli", "required: events (error_query and total_query) or raw (error_ratio_query)")
			continue
		}
		if slo.origin.pos["spec.indicator.ratio.errorRatio"] == nil {
			delete(slo.origin.pos, "spec.indicator.ratio.errorRatio")
		}
		p.slothPlugins(report, sp+".plugins", s.Plugins, spec)
		a := s.Alerting
		// Sloth puts the SLO's labels on its alerts too.
		alertLabels := map[string]string{}
		for k, v := range s.Labels {
			if k == "category" && Category(v) == spec.Category {
				continue // carried over as the SLO's category, which QSP's alerts carry
			}
			alertLabels[k] = v
		}
		maps.Copy(alertLabels, a.Labels)
		if len(alertLabels) == 0 {
			alertLabels = nil
		}
		spec.Alerting = Alerting{
			Name:        a.Name,
			Labels:      alertLabels,
			Annotations: a.Annotations,
			Page:        &AlertTier{Disabled: a.PageAlert.Disable, Labels: a.PageAlert.Labels, Annotations: a.PageAlert.Annotations},
			Ticket:      &AlertTier{Disabled: a.TicketAlert.Disable, Labels: a.TicketAlert.Labels, Annotations: a.TicketAlert.Annotations},
		}
		if rb := a.Annotations["runbook"]; rb != "" {
			spec.Alerting.RunbookURL = rb
			delete(spec.Alerting.Annotations, "runbook")
			if len(spec.Alerting.Annotations) == 0 {
				spec.Alerting.Annotations = nil
			}
		}
		p.objects = append(p.objects, slo)
	}
}

// slothPlugin says what becomes of each Sloth SLO plugin: lost plugins
// change what Sloth measures or alerts on, the others only how its rules
// are written, which QSP does its own way.
var slothPluginFate = map[string]struct {
	lost bool
	why  string
}{
	"sloth.dev/core/debug/v1":                           {false, "it only logs"},
	"sloth.dev/core/noop/v1":                            {false, "it does nothing"},
	"sloth.dev/core/validate/v1":                        {false, "QSP validates the SLO itself"},
	"sloth.dev/core/sli_rules/v1":                       {false, "QSP computes the SLI itself (qsp generate prometheus-rules writes recording rules)"},
	"sloth.dev/core/metadata_rules/v1":                  {false, "QSP exposes SLO metadata on /metrics"},
	"sloth.dev/core/alert_rules/v1":                     {false, "QSP alerts itself (qsp generate prometheus-rules writes the alerting rules)"},
	"sloth.dev/contrib/rule_intervals/v1":               {false, "QSP evaluates every minute; rule intervals are not kept"},
	"sloth.dev/contrib/validate_victoria_metrics/v1":    {false, "QSP validates PromQL itself"},
	"sloth.dev/contrib/info_labels/v1":                  {false, "its labels go on Sloth's info metric only, which QSP does not write"},
	"sloth.dev/contrib/denominator_corrected_rules/v1":  {true, "it changes how the error ratio is computed"},
	"sloth.dev/contrib/error_budget_exhausted_alert/v1": {true, "it adds an alert when the budget is exhausted (a budgetPolicy step with action notify is the qsp equivalent)"},
	"sloth.dev/contrib/remove_labels/v1":                {true, "it removes labels from the generated rules"},
}

func (p *loader) slothPlugins(report func(bool, string, string, ...any), path string, pl *slothPlugins, _ *SLOSpec) {
	if pl == nil {
		return
	}
	for i, c := range pl.Chain {
		cp := fmt.Sprintf("%s.chain[%d]", path, i)
		fate, known := slothPluginFate[c.ID]
		switch {
		case !known:
			report(false, cp+".id", "Sloth plugin %q is not converted: QSP cannot run Sloth plugins, and what it changes is lost", c.ID)
		case fate.lost:
			report(false, cp+".id", "Sloth plugin %q is not converted: %s", c.ID, fate.why)
		default:
			report(true, cp+".id", "Sloth plugin %q is not needed: %s", c.ID, fate.why)
		}
	}
}
