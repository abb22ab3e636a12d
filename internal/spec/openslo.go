package spec

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// OpenSLO v1 (https://github.com/OpenSLO/OpenSLO, pkg/openslo/v1): the
// documents are decoded strictly like qsp/v1 ones, then converted to qsp/v1
// once every file is read, because SLOs refer to SLIs, alert policies,
// alert conditions and data sources declared elsewhere. What cannot be
// converted is an error at its position; what is converted approximately
// is a warning that says how.

type osloMeta struct {
	Name        string      `yaml:"name"`
	DisplayName string      `yaml:"displayName"`
	Labels      osloLabels  `yaml:"labels"`
	Annotations osloLabels  `yaml:"annotations"`
	Project     string      `yaml:"project"` // older documents
	Extra       interface{} `yaml:"-"`
}

// osloLabels accepts OpenSLO's label values, a string or a list of strings.
type osloLabels map[string][]string

func (l *osloLabels) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("expected a mapping, got %s", describe(n))
	}
	out := osloLabels{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i].Value, n.Content[i+1]
		switch v.Kind {
		case yaml.ScalarNode:
			out[k] = []string{v.Value}
		case yaml.SequenceNode:
			for _, c := range v.Content {
				if c.Kind != yaml.ScalarNode {
					return fmt.Errorf("label %q: expected strings, got %s", k, describe(c))
				}
				out[k] = append(out[k], c.Value)
			}
		default:
			return fmt.Errorf("label %q: expected a string or a list of strings, got %s", k, describe(v))
		}
	}
	*l = out
	return nil
}

// flat turns list labels into qsp's single values, joining lists with ",".
func (l osloLabels) flat() map[string]string {
	if len(l) == 0 {
		return nil
	}
	out := make(map[string]string, len(l))
	for k, vs := range l {
		out[k] = strings.Join(vs, ",")
	}
	return out
}

type osloService struct {
	Description string `yaml:"description"`
}

type osloSLO struct {
	Description     string            `yaml:"description"`
	Service         string            `yaml:"service"`
	Indicator       *osloInlineSLI    `yaml:"indicator"`
	IndicatorRef    string            `yaml:"indicatorRef"`
	BudgetingMethod string            `yaml:"budgetingMethod"`
	TimeWindow      []osloTimeWindow  `yaml:"timeWindow"`
	Objectives      []osloObjective   `yaml:"objectives"`
	AlertPolicies   []osloPolicyEntry `yaml:"alertPolicies"`
	// independent is set for openslo/v1alpha, whose objectives each
	// carry their own ratioMetrics as separate SLOs, not a composite.
	independent bool
}

type osloInlineSLI struct {
	Metadata osloMeta `yaml:"metadata"`
	Spec     osloSLI  `yaml:"spec"`
}

type osloSLI struct {
	Description     string          `yaml:"description"`
	ThresholdMetric *osloMetric     `yaml:"thresholdMetric"`
	RatioMetric     *osloRatioMetic `yaml:"ratioMetric"`
}

type osloRatioMetic struct {
	Counter bool        `yaml:"counter"`
	Good    *osloMetric `yaml:"good"`
	Bad     *osloMetric `yaml:"bad"`
	Total   *osloMetric `yaml:"total"`
	RawType string      `yaml:"rawType"`
	Raw     *osloMetric `yaml:"raw"`
}

type osloMetric struct {
	MetricSource osloMetricSource `yaml:"metricSource"`
}

type osloMetricSource struct {
	MetricSourceRef string         `yaml:"metricSourceRef"`
	Type            string         `yaml:"type"`
	Spec            map[string]any `yaml:"spec"`
}

type osloTimeWindow struct {
	Duration  string        `yaml:"duration"`
	IsRolling bool          `yaml:"isRolling"`
	Calendar  *osloCalendar `yaml:"calendar"`
}

type osloCalendar struct {
	StartTime string `yaml:"startTime"`
	TimeZone  string `yaml:"timeZone"`
}

type osloObjective struct {
	DisplayName     string         `yaml:"displayName"`
	Op              string         `yaml:"op"`
	Value           *float64       `yaml:"value"`
	Target          *float64       `yaml:"target"`
	TargetPercent   *float64       `yaml:"targetPercent"`
	TimeSliceTarget *float64       `yaml:"timeSliceTarget"`
	TimeSliceWindow string         `yaml:"timeSliceWindow"`
	Indicator       *osloInlineSLI `yaml:"indicator"`
	IndicatorRef    string         `yaml:"indicatorRef"`
	CompositeWeight *float64       `yaml:"compositeWeight"`
}

// osloPolicyEntry is an inline AlertPolicy or a reference to one.
type osloPolicyEntry struct {
	Kind           string          `yaml:"kind"`
	Metadata       osloMeta        `yaml:"metadata"`
	Spec           osloAlertPolicy `yaml:"spec"`
	AlertPolicyRef string          `yaml:"alertPolicyRef"`
	TargetRef      string          `yaml:"targetRef"` // seen in some documents
}

type osloAlertPolicy struct {
	Description         string               `yaml:"description"`
	AlertWhenNoData     bool                 `yaml:"alertWhenNoData"`
	AlertWhenBreaching  bool                 `yaml:"alertWhenBreaching"`
	AlertWhenResolved   bool                 `yaml:"alertWhenResolved"`
	Conditions          []osloConditionEntry `yaml:"conditions"`
	NotificationTargets []osloTargetEntry    `yaml:"notificationTargets"`
}

type osloConditionEntry struct {
	Kind         string            `yaml:"kind"`
	Metadata     osloMeta          `yaml:"metadata"`
	Spec         osloConditionSpec `yaml:"spec"`
	ConditionRef string            `yaml:"conditionRef"`
}

type osloTargetEntry struct {
	TargetRef   string   `yaml:"targetRef"`
	Kind        string   `yaml:"kind"`
	Metadata    osloMeta `yaml:"metadata"`
	Spec        any      `yaml:"spec"`
	Description string   `yaml:"description"`
}

type osloConditionSpec struct {
	Severity    string        `yaml:"severity"`
	Condition   osloCondition `yaml:"condition"`
	Description string        `yaml:"description"`
}

type osloCondition struct {
	Kind           string  `yaml:"kind"`
	Op             string  `yaml:"op"`
	Threshold      float64 `yaml:"threshold"`
	LookbackWindow string  `yaml:"lookbackWindow"`
	AlertAfter     string  `yaml:"alertAfter"`
}

type osloDataSource struct {
	Description       string         `yaml:"description"`
	Type              string         `yaml:"type"`
	ConnectionDetails map[string]any `yaml:"connectionDetails"`
}

type osloNotificationTarget struct {
	Description string `yaml:"description"`
	Target      string `yaml:"target"`
}

// openSLODoc is one decoded OpenSLO document.
type openSLODoc struct {
	file     string
	line     int
	col      int
	kind     string
	meta     osloMeta
	spec     any
	pos      map[string]*yaml.Node
	consumed bool // referenced by a converted SLO
	// failed is set when rewriting a v1alpha or v2alpha document into v1
	// reported an error: the document is not converted.
	failed bool
}

func (o *openSLODoc) ref() string { return o.kind + "/" + o.meta.Name }

// at returns the position of path in the document.
func (o *openSLODoc) at(path string) (int, int) {
	origin := Origin{File: o.file, Line: o.line, Column: o.col, pos: o.pos}
	return origin.At(path)
}

func (p *loader) parseOpenSLO(doc document, kind string) {
	var spec any
	switch kind {
	case "Service":
		spec = &osloService{}
	case "SLO":
		spec = &osloSLO{}
	case "SLI":
		spec = &osloSLI{}
	case "AlertPolicy":
		spec = &osloAlertPolicy{}
	case "AlertCondition":
		spec = &osloConditionSpec{}
	case "DataSource":
		spec = &osloDataSource{}
	case "AlertNotificationTarget":
		spec = &osloNotificationTarget{}
	default:
		at := orEmpty(field(doc.node, "kind"))
		p.diags.add(Diagnostic{File: doc.file, Line: at.Line, Column: at.Column, Field: "kind",
			Message: fmt.Sprintf("unknown OpenSLO kind %q; want Service, SLO, SLI, AlertPolicy, AlertCondition, AlertNotificationTarget or DataSource", kind)})
		return
	}
	var whole struct {
		APIVersion string   `yaml:"apiVersion"`
		Kind       string   `yaml:"kind"`
		Metadata   osloMeta `yaml:"metadata"`
		Spec       any      `yaml:"-"`
	}
	d := &decoder{diags: &p.diags, file: doc.file, pos: map[string]*yaml.Node{}}
	d.object = kind + "/" + scalar(orEmpty(field(doc.node, "metadata")), "name")
	// Decode header and spec separately so the spec goes into its kind's type.
	header := &yaml.Node{Kind: yaml.MappingNode, Line: doc.node.Line, Column: doc.node.Column}
	var specNode *yaml.Node
	for i := 0; i+1 < len(doc.node.Content); i += 2 {
		if doc.node.Content[i].Value == "spec" {
			specNode = doc.node.Content[i+1]
			continue
		}
		header.Content = append(header.Content, doc.node.Content[i], doc.node.Content[i+1])
	}
	d.decode(header, reflectValueOf(&whole), "")
	if specNode == nil && kind == "Service" {
		specNode = &yaml.Node{Kind: yaml.MappingNode, Line: doc.node.Line, Column: doc.node.Column} // a Service's spec is optional
	}
	if specNode == nil {
		p.diags.add(Diagnostic{File: doc.file, Line: doc.node.Line, Column: doc.node.Column, Object: d.object, Field: "spec", Message: "required"})
		return
	}
	if kind == "SLO" && specNode.Kind == yaml.MappingNode {
		// alertPolicies may name policies: "- fast-burn" is
		// "- alertPolicyRef: fast-burn".
		if ap := field(specNode, "alertPolicies"); ap != nil && ap.Kind == yaml.SequenceNode {
			for i, e := range ap.Content {
				if e.Kind == yaml.ScalarNode {
					key := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "alertPolicyRef", Line: e.Line, Column: e.Column}
					ap.Content[i] = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: e.Line, Column: e.Column, Content: []*yaml.Node{key, e}}
				}
			}
		}
	}
	d.decode(specNode, reflectValueOf(spec), "spec")
	p.openslo = append(p.openslo, &openSLODoc{
		file: doc.file, line: doc.node.Line, col: doc.node.Column,
		kind: kind, meta: whole.Metadata, spec: spec, pos: d.pos,
	})
}

// osloConverter turns the OpenSLO documents of one load into qsp objects.
type osloConverter struct {
	p     *loader
	docs  map[string]*openSLODoc // by "Kind/name"
	names map[string]bool        // qsp SLO names in use
}

func (p *loader) convertOpenSLO() {
	if len(p.openslo) == 0 {
		return
	}
	c := &osloConverter{p: p, docs: map[string]*openSLODoc{}, names: map[string]bool{}}
	for _, d := range p.openslo {
		if prev, ok := c.docs[d.ref()]; ok {
			c.errorf(d, "metadata.name", "duplicate name: %s is already declared at %s:%d:%d", d.ref(), prev.file, prev.line, prev.col)
			continue
		}
		c.docs[d.ref()] = d
	}
	services := map[string]bool{}
	for _, d := range p.openslo {
		if d.kind == "Service" && !d.failed {
			c.service(d)
			services[d.meta.Name] = true
		}
	}
	for _, d := range p.openslo {
		if d.kind != "SLO" || d.failed {
			continue
		}
		slo := d.spec.(*osloSLO)
		if slo.Service != "" && !services[slo.Service] && !p.hasQSPService(slo.Service) {
			// qsp needs the service declared; OpenSLO lets SLOs name one
			// that is not.
			c.warnf(d, "spec.service", "service %q is not declared as an OpenSLO Service: a qsp Service with owner \"unassigned\" is created", slo.Service)
			p.objects = append(p.objects, &Service{
				Header: c.header(d, KindService, c.serviceName(slo.Service), osloMeta{Name: c.serviceName(slo.Service)}),
				Spec:   ServiceSpec{Owner: "unassigned"},
			})
			services[slo.Service] = true
		}
		c.slo(d)
	}
	for _, d := range p.openslo {
		if d.consumed || d.kind == "Service" || d.kind == "SLO" {
			continue
		}
		c.warnf(d, "", "%s is not used by any SLO and is not converted", d.ref())
	}
}

func (p *loader) hasQSPService(name string) bool {
	for _, o := range p.objects {
		if s, ok := o.(*Service); ok && s.Name() == name {
			return true
		}
	}
	return false
}

func (c *osloConverter) report(d *openSLODoc, warning bool, path, format string, args ...any) {
	line, col := d.at(path)
	c.p.diags.add(Diagnostic{File: d.file, Line: line, Column: col, Object: d.ref() + " (OpenSLO)", Field: path,
		Message: fmt.Sprintf(format, args...), Warning: warning})
}

func (c *osloConverter) errorf(d *openSLODoc, path, format string, args ...any) {
	c.report(d, false, path, format, args...)
}

func (c *osloConverter) warnf(d *openSLODoc, path, format string, args ...any) {
	c.report(d, true, path, format, args...)
}

// header builds a qsp header whose origin points into the OpenSLO document,
// with qsp field paths mapped to the OpenSLO nodes they came from.
func (c *osloConverter) header(d *openSLODoc, kind, name string, meta osloMeta) Header {
	return Header{
		APIVersion: APIVersion, Kind: kind,
		Metadata: Metadata{Name: name, DisplayName: meta.DisplayName, Labels: meta.Labels.flat(), Annotations: meta.Annotations.flat()},
		origin:   Origin{File: d.file, Line: d.line, Column: d.col, pos: map[string]*yaml.Node{}},
	}
}

// mapPos makes qsp path qspPath report at the OpenSLO node of osloPath.
func mapPos(h *Header, d *openSLODoc, qspPath, osloPath string) {
	if n, ok := d.pos[osloPath]; ok {
		h.origin.pos[qspPath] = n
	}
}

func (c *osloConverter) service(d *openSLODoc) {
	s := d.spec.(*osloService)
	owner := firstLabel(d.meta.Labels, "owner", "team")
	if owner == "" {
		owner = "unassigned"
		c.warnf(d, "metadata", "OpenSLO services have no owner: spec.owner is set to %q (add an owner or team label to carry it over)", owner)
	}
	name := c.serviceName(d.meta.Name)
	if name != d.meta.Name {
		c.warnf(d, "metadata.name", "%q is not a valid qsp name (nor an OpenSLO v1 one, a DNS label): the Service is named %q, and SLOs of service %q refer to it", d.meta.Name, name, d.meta.Name)
	}
	c.p.objects = append(c.p.objects, &Service{
		Header: c.header(d, KindService, name, d.meta),
		Spec:   ServiceSpec{Description: s.Description, Owner: owner},
	})
}

// serviceName is the qsp name of an OpenSLO service: names with
// characters qsp does not allow (oslo's examples have "example service")
// become a slug, the same for the Service and the SLOs that name it,
// unless another Service already has that name.
func (c *osloConverter) serviceName(name string) string {
	if name == "" || nameRE.MatchString(name) {
		return name
	}
	slug := osloSlug(name)
	for _, d := range c.p.openslo {
		if d.kind == "Service" && d.meta.Name == slug {
			return name // taken: validation names the original
		}
	}
	return slug
}

func osloSlug(name string) string {
	slug := strings.Trim(invalidNameRun.ReplaceAllString(name, "-"), "-_.")
	if len(slug) > 128 {
		slug = strings.Trim(slug[:128], "-_.")
	}
	if !nameRE.MatchString(slug) {
		return name // nothing usable: validation names the original
	}
	return slug
}

var invalidNameRun = regexp.MustCompile(`[^a-zA-Z0-9_.-]+`)

func firstLabel(l osloLabels, keys ...string) string {
	for _, k := range keys {
		if vs := l[k]; len(vs) > 0 {
			return vs[0]
		}
	}
	return ""
}

// resolvedSLI is an SLI found inline or by reference, with the document
// and path prefix to report its problems at.
type resolvedSLI struct {
	sli  *osloSLI
	doc  *openSLODoc
	path string
}

func (c *osloConverter) resolveSLI(d *openSLODoc, path string, inline *osloInlineSLI, ref string) (resolvedSLI, bool) {
	switch {
	case inline != nil && ref != "":
		c.errorf(d, path, "set indicator or indicatorRef, not both")
	case inline != nil:
		return resolvedSLI{sli: &inline.Spec, doc: d, path: path + "indicator.spec"}, true
	case ref != "":
		sd, ok := c.docs["SLI/"+ref]
		if !ok {
			c.errorf(d, path+"indicatorRef", "SLI %q is not declared", ref)
			return resolvedSLI{}, false
		}
		sd.consumed = true
		return resolvedSLI{sli: sd.spec.(*osloSLI), doc: sd, path: "spec"}, true
	default:
		c.errorf(d, strings.TrimSuffix(path, "."), "set indicator or indicatorRef")
	}
	return resolvedSLI{}, false
}

func (c *osloConverter) slo(d *openSLODoc) {
	o := d.spec.(*osloSLO)
	composite := slices.ContainsFunc(o.Objectives, func(ob osloObjective) bool {
		return ob.Indicator != nil || ob.IndicatorRef != ""
	})
	if len(o.Objectives) == 0 {
		c.errorf(d, "spec.objectives", "required: at least one objective")
		return
	}
	base := SLOSpec{Service: c.serviceName(o.Service), Description: o.Description, Category: Quality}
	if cat := firstLabel(d.meta.Labels, "category", "qsp_category"); slices.Contains(Categories, Category(cat)) {
		base.Category = Category(cat)
	} else {
		c.warnf(d, "metadata", "OpenSLO has no quality/security/performance category: set to quality (a category label carries it over)")
	}
	// Convert every part even after a failure, so one run names every
	// problem; only a fully converted SLO is kept.
	ok := c.window(d, &base)
	alerting, aok := c.alerting(d, o.AlertPolicies)
	ok = ok && aok
	base.Alerting = alerting

	var sli resolvedSLI
	if !composite {
		var sok bool
		if sli, sok = c.resolveSLI(d, "spec.", o.Indicator, o.IndicatorRef); !sok {
			return
		}
	} else if o.Indicator != nil || o.IndicatorRef != "" {
		c.errorf(d, "spec.indicator", "a composite SLO has indicators on its objectives, not on spec")
		return
	}

	var converted []Object
	var parts []CompositePart
	var weights float64
	for i, ob := range o.Objectives {
		path := fmt.Sprintf("spec.objectives[%d]", i)
		name := d.meta.Name
		if len(o.Objectives) > 1 || composite {
			name = fmt.Sprintf("%s-%s", d.meta.Name, objectiveSuffix(ob, i))
		}
		if c.names[name] {
			c.errorf(d, path+".displayName", "objective name %q repeats within the SLO", name)
			ok = false
			continue
		}
		c.names[name] = true
		spec := base
		objSLI := sli
		if composite {
			var sok bool
			if objSLI, sok = c.resolveSLI(d, path+".", ob.Indicator, ob.IndicatorRef); !sok {
				ok = false
				continue
			}
		}
		h := c.header(d, KindSLO, name, d.meta)
		mapPos(&h, d, "spec.service", "spec.service")
		mapPos(&h, d, "spec.window", "spec.timeWindow")
		mapPos(&h, d, "spec.objective", path)
		if !c.objective(d, path, ob, o.BudgetingMethod, objSLI, &spec, &h) {
			ok = false
			continue
		}
		converted = append(converted, &SLO{Header: h, Spec: spec})
		if composite {
			w := 1.0
			if ob.CompositeWeight != nil {
				w = *ob.CompositeWeight
			}
			weights += w
			parts = append(parts, CompositePart{SLO: name, Weight: w})
		}
	}
	if !ok {
		return
	}
	c.p.objects = append(c.p.objects, converted...)
	if !composite || o.independent {
		return
	}
	// OpenSLO weights are relative; qsp's add up to 1.
	for i := range parts {
		parts[i].Weight = roundWeight(parts[i].Weight / weights)
	}
	fixWeights(parts)
	if math.Abs(weights-1) > 1e-9 {
		c.warnf(d, "spec.objectives", "composite weights normalised to add up to 1 (they added up to %s)", formatFloat(weights))
	}
	target := 0.0
	for _, ob := range o.Objectives {
		if t, ok := osloTarget(ob); ok {
			target = max(target, t)
		}
	}
	h := c.header(d, KindSLO, d.meta.Name, d.meta)
	spec := base
	spec.Objective = NewObjective(target * 100)
	spec.Indicator = Indicator{Composite: &CompositeIndicator{Objectives: parts}}
	c.warnf(d, "spec.objectives", "composite SLO converted to %s with the children %s; its objective is the highest child target, %s%%",
		d.meta.Name, strings.Join(partNames(parts), ", "), spec.Objective.Percent())
	c.p.objects = append(c.p.objects, &SLO{Header: h, Spec: spec})
}

func partNames(ps []CompositePart) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.SLO
	}
	return out
}

// roundWeight keeps normalised weights readable (0.333333333333, not
// 0.33333333333333331).
func roundWeight(w float64) float64 { return math.Round(w*1e12) / 1e12 }

// fixWeights puts the rounding remainder on the last weight so the sum is 1.
func fixWeights(ps []CompositePart) {
	sum := 0.0
	for _, p := range ps[:len(ps)-1] {
		sum += p.Weight
	}
	ps[len(ps)-1].Weight = roundWeight(1 - sum)
}

func objectiveSuffix(ob osloObjective, i int) string {
	if ob.DisplayName != "" {
		s := strings.ToLower(strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
				return r
			}
			return '-'
		}, ob.DisplayName))
		s = strings.Trim(s, "-")
		if s != "" {
			return s
		}
	}
	return strconv.Itoa(i + 1)
}

func osloTarget(ob osloObjective) (float64, bool) {
	switch {
	case ob.Target != nil:
		return *ob.Target, true
	case ob.TargetPercent != nil:
		return *ob.TargetPercent / 100, true
	}
	return 0, false
}

// objective fills the indicator, objective and budgeting of one qsp SLO.
func (c *osloConverter) objective(d *openSLODoc, path string, ob osloObjective, method string, sli resolvedSLI, spec *SLOSpec, h *Header) bool {
	if ob.Target != nil && ob.TargetPercent != nil {
		c.errorf(d, path, "set target or targetPercent, not both")
		return false
	}
	target, ok := osloTarget(ob)
	if !ok {
		c.errorf(d, path, "required: target or targetPercent")
		return false
	}
	if target <= 0 || target >= 1 {
		c.errorf(d, path+".target", "must be above 0 and below 1, got %v", target)
		return false
	}
	spec.Objective = NewObjective(target * 100)

	switch method {
	case "Occurrences":
		spec.Budgeting = Budgeting{Method: Occurrences}
	case "Timeslices", "RatioTimeslices":
		spec.Budgeting = Budgeting{Method: Timeslices}
		if method == "RatioTimeslices" {
			spec.Budgeting.Method = RatioTimeslices
		}
		w, ok := c.duration(d, path+".timeSliceWindow", ob.TimeSliceWindow, false)
		if !ok {
			return false
		}
		spec.Budgeting.SliceLength = Duration(w)
		mapPos(h, d, "spec.budgeting.sliceLength", path+".timeSliceWindow")
		if method == "Timeslices" {
			if ob.TimeSliceTarget == nil {
				c.errorf(d, path+".timeSliceTarget", "required with Timeslices budgeting")
				return false
			}
			if sli.sli.RatioMetric != nil {
				spec.Budgeting.SliceObjective = NewObjective(*ob.TimeSliceTarget * 100)
			} else {
				c.warnf(d, path+".timeSliceTarget", "a threshold SLI's slice is good when the threshold holds; timeSliceTarget %v is not used", *ob.TimeSliceTarget)
			}
		}
	case "":
		c.errorf(d, "spec.budgetingMethod", "required: Occurrences, Timeslices or RatioTimeslices")
		return false
	default:
		c.errorf(d, "spec.budgetingMethod", "unknown budgeting method %q; want Occurrences, Timeslices or RatioTimeslices", method)
		return false
	}

	s := sli.sli
	switch {
	case s.RatioMetric != nil && s.ThresholdMetric != nil:
		c.errorf(sli.doc, sli.path, "set ratioMetric or thresholdMetric, not both")
		return false
	case s.RatioMetric != nil:
		r, ok := c.ratio(sli)
		if !ok {
			return false
		}
		spec.Indicator = Indicator{Ratio: r}
		if ob.Op != "" && ob.Op != "gt" && ob.Op != "gte" {
			c.warnf(d, path+".op", "op %q on a ratio objective is read as \"good ratio at least target\"", ob.Op)
		}
	case s.ThresholdMetric != nil:
		q, ok := c.query(sli.doc, sli.path+".thresholdMetric", s.ThresholdMetric)
		if !ok {
			return false
		}
		ops := map[string]string{"lt": "<", "lte": "<=", "gt": ">", "gte": ">="}
		op, ok := ops[ob.Op]
		if !ok {
			c.errorf(d, path+".op", "a threshold objective needs op lt, lte, gt or gte, got %q", ob.Op)
			return false
		}
		if ob.Value == nil {
			c.errorf(d, path+".value", "required for a threshold objective")
			return false
		}
		spec.Indicator = Indicator{Threshold: &ThresholdIndicator{Query: q, Op: op, Value: NewValue(*ob.Value)}}
		if method == "Occurrences" {
			c.warnf(d, "spec.budgetingMethod", "qsp judges a threshold per time slice: Occurrences becomes timeslices of 1m (each minute's value is one data point)")
			spec.Budgeting = Budgeting{Method: Timeslices, SliceLength: Duration(time.Minute)}
		}
		if method == "RatioTimeslices" {
			c.errorf(d, "spec.budgetingMethod", "RatioTimeslices needs a ratio metric, not a threshold metric")
			return false
		}
	default:
		c.errorf(sli.doc, sli.path, "set ratioMetric or thresholdMetric")
		return false
	}
	return true
}

// ratio converts a ratioMetric: queries get the window placeholder.
func (c *osloConverter) ratio(sli resolvedSLI) (*RatioIndicator, bool) {
	rm := sli.sli.RatioMetric
	p := sli.path + ".ratioMetric"
	if rm.Raw != nil || rm.RawType != "" {
		if rm.Raw == nil || rm.Good != nil || rm.Bad != nil || rm.Total != nil {
			c.errorf(sli.doc, p+".raw", "raw is used alone, with rawType")
			return nil, false
		}
		q, ok := c.query(sli.doc, p+".raw", rm.Raw)
		if !ok {
			return nil, false
		}
		switch rm.RawType {
		case "failure":
		case "success":
			q = "1 - (" + q + ")"
		default:
			c.errorf(sli.doc, p+".rawType", "want success or failure, got %q", rm.RawType)
			return nil, false
		}
		c.warnf(sli.doc, p+".raw", "a precomputed ratio becomes ratio.errorRatio: QSP evaluates it every minute and weighs each minute the same (approximate)")
		return &RatioIndicator{ErrorRatio: q}, true
	}
	if rm.Total == nil {
		c.errorf(sli.doc, p+".total", "required")
		return nil, false
	}
	if (rm.Good == nil) == (rm.Bad == nil) {
		c.errorf(sli.doc, p, "set good or bad")
		return nil, false
	}
	out := &RatioIndicator{}
	for _, part := range []struct {
		name string
		m    *osloMetric
		dst  *string
	}{{"good", rm.Good, &out.Good}, {"bad", rm.Bad, &out.Bad}, {"total", rm.Total, &out.Total}} {
		if part.m == nil {
			continue
		}
		q, ok := c.query(sli.doc, p+"."+part.name, part.m)
		if !ok {
			return nil, false
		}
		w, err := windowedCounterQuery(q, rm.Counter)
		if err != nil {
			c.errorf(sli.doc, p+"."+part.name+".metricSource.spec", "%v", err)
			return nil, false
		}
		*part.dst = w
	}
	return out, true
}

// query returns the PromQL of a metric source; only Prometheus-compatible
// sources convert.
func (c *osloConverter) query(d *openSLODoc, path string, m *osloMetric) (string, bool) {
	ms := m.MetricSource
	typ := ms.Type
	if ms.MetricSourceRef != "" {
		ds, ok := c.docs["DataSource/"+ms.MetricSourceRef]
		if !ok {
			c.errorf(d, path+".metricSource.metricSourceRef", "DataSource %q is not declared", ms.MetricSourceRef)
			return "", false
		}
		src := ds.spec.(*osloDataSource)
		defer func() { ds.consumed = true }()
		if typ == "" {
			typ = src.Type
		}
		if len(src.ConnectionDetails) > 0 && !ds.consumed {
			c.warnf(ds, "spec.connectionDetails", "connection details are not converted: qsp reads from the source configured on qsp serve")
		}
	}
	switch strings.ToLower(typ) {
	case "prometheus", "thanos", "mimir", "cortex", "victoriametrics", "promql":
	case "":
		c.errorf(d, path+".metricSource.type", "required (qsp converts Prometheus-compatible sources)")
		return "", false
	default:
		c.errorf(d, path+".metricSource.type", "source type %q cannot be converted: qsp reads PromQL from Prometheus-compatible backends", typ)
		return "", false
	}
	for _, k := range []string{"query", "promql"} {
		if q, ok := ms.Spec[k].(string); ok && q != "" {
			return strings.TrimSpace(q), true
		}
	}
	c.errorf(d, path+".metricSource.spec", "required: query (the PromQL of the metric)")
	return "", false
}

// windowedCounterQuery rewrites an OpenSLO Prometheus query into a qsp
// ratio query with the window placeholder: range selectors inside rate()
// and increase() take the placeholder; a counter selector without a range
// (counter: true, e.g. sum(http_requests_total{...})) is wrapped in rate().
func windowedCounterQuery(q string, counter bool) (string, error) {
	if HasWindowPlaceholder(q) {
		return q, nil
	}
	expr, err := ParseExpr(q)
	if err != nil {
		return "", fmt.Errorf("invalid PromQL: %s", promqlError(err))
	}
	if out, ok := replaceRanges(q, expr); ok {
		return out, nil
	}
	if counter {
		if out, ok := wrapCounter(q, expr); ok {
			return out, nil
		}
	}
	return "", fmt.Errorf("cannot turn %q into a query over a window: qsp ratio queries take the shape sum(rate(counter[window])); write it that way or mark the metric counter: true", q)
}

// durationRE-free parsing of OpenSLO duration shorthands: a number and one
// of m, h, d, w, M, Q, Y.
func parseOSLODuration(s string) (n int, unit byte, err error) {
	if len(s) < 2 {
		return 0, 0, fmt.Errorf("%q is not a duration shorthand such as 28d or 1M", s)
	}
	unit = s[len(s)-1]
	n, err = strconv.Atoi(s[:len(s)-1])
	if err != nil || n <= 0 || !strings.ContainsRune("mhdwMQY", rune(unit)) {
		return 0, 0, fmt.Errorf("%q is not a duration shorthand such as 28d or 1M", s)
	}
	return n, unit, nil
}

func (c *osloConverter) duration(d *openSLODoc, path, s string, allowMonth bool) (time.Duration, bool) {
	if s == "" {
		c.errorf(d, path, "required")
		return 0, false
	}
	n, unit, err := parseOSLODuration(s)
	if err != nil {
		c.errorf(d, path, "%v", err)
		return 0, false
	}
	switch unit {
	case 'm':
		return time.Duration(n) * time.Minute, true
	case 'h':
		return time.Duration(n) * time.Hour, true
	case 'd':
		return time.Duration(n) * 24 * time.Hour, true
	case 'w':
		return time.Duration(n) * 7 * 24 * time.Hour, true
	case 'M':
		if allowMonth {
			c.warnf(d, path, "a rolling %s becomes %dd (qsp rolling windows have a fixed length)", s, 30*n)
			return time.Duration(30*n) * 24 * time.Hour, true
		}
	}
	c.errorf(d, path, "%q cannot be converted here", s)
	return 0, false
}

func (c *osloConverter) window(d *openSLODoc, spec *SLOSpec) bool {
	o := d.spec.(*osloSLO)
	if len(o.TimeWindow) != 1 {
		c.errorf(d, "spec.timeWindow", "exactly one time window is required, got %d", len(o.TimeWindow))
		return false
	}
	tw := o.TimeWindow[0]
	p := "spec.timeWindow[0]"
	if tw.IsRolling {
		if tw.Calendar != nil {
			c.warnf(d, p+".calendar", "a rolling window has no calendar; ignored")
		}
		w, ok := c.duration(d, p+".duration", tw.Duration, true)
		if !ok {
			return false
		}
		spec.Window = Window{Rolling: Duration(w)}
		return true
	}
	n, unit, err := parseOSLODuration(tw.Duration)
	if err != nil {
		c.errorf(d, p+".duration", "%v", err)
		return false
	}
	switch {
	case n == 1 && unit == 'w':
		spec.Window = Window{Calendar: CalendarWeek}
	case n == 1 && unit == 'M':
		spec.Window = Window{Calendar: CalendarMonth}
	default:
		c.errorf(d, p+".duration", "calendar window %q cannot be converted: qsp has calendar weeks (1w) and months (1M)", tw.Duration)
		return false
	}
	if tw.Calendar != nil {
		spec.Window.TimeZone = tw.Calendar.TimeZone
		if tw.Calendar.TimeZone == "UTC" {
			spec.Window.TimeZone = ""
		}
		if st := tw.Calendar.StartTime; st != "" {
			t, err := time.Parse(time.DateTime, st)
			switch {
			case err != nil:
				c.errorf(d, p+".calendar.startTime", "%q is not a time such as 2022-01-01 00:00:00", st)
				return false
			case spec.Window.Calendar == CalendarWeek && (t.Weekday() != time.Monday || t.Hour() != 0 || t.Minute() != 0):
				c.warnf(d, p+".calendar.startTime", "qsp calendar weeks start on Monday 00:00; the start %s is not kept", st)
			case spec.Window.Calendar == CalendarMonth && (t.Day() != 1 || t.Hour() != 0 || t.Minute() != 0):
				c.warnf(d, p+".calendar.startTime", "qsp calendar months start on the 1st at 00:00; the start %s is not kept", st)
			}
		}
	}
	return true
}

// alerting converts alert policies: each burnrate condition becomes a
// window pair of its severity's tier.
func (c *osloConverter) alerting(d *openSLODoc, entries []osloPolicyEntry) (Alerting, bool) {
	var a Alerting
	if len(entries) == 0 {
		return a, true
	}
	var page, ticket []BurnWindow
	var pageFor, ticketFor Duration
	noData := false
	ok := true
	for i, e := range entries {
		path := fmt.Sprintf("spec.alertPolicies[%d]", i)
		doc, pol := d, &e.Spec
		ref := e.AlertPolicyRef
		if ref == "" {
			ref = e.TargetRef
		}
		if ref != "" {
			pd, found := c.docs["AlertPolicy/"+ref]
			if !found {
				c.errorf(d, path+".alertPolicyRef", "AlertPolicy %q is not declared", ref)
				ok = false
				continue
			}
			pd.consumed = true
			doc, pol, path = pd, pd.spec.(*osloAlertPolicy), "spec"
		} else if !strings.HasPrefix(path, "spec.alertPolicies") || e.Kind != "" && e.Kind != "AlertPolicy" {
			c.errorf(d, path+".kind", "want AlertPolicy, got %q", e.Kind)
			ok = false
			continue
		} else {
			path += ".spec"
		}
		noData = noData || pol.AlertWhenNoData
		for j, t := range pol.NotificationTargets {
			name := t.TargetRef
			if name == "" {
				name = t.Metadata.Name
			}
			if td, found := c.docs["AlertNotificationTarget/"+name]; found {
				td.consumed = true
			}
			c.warnf(doc, fmt.Sprintf("%s.notificationTargets[%d]", path, j), "notification target %q is not converted: route alerts with Alertmanager (qsp labels them service, slo, severity)", name)
		}
		for j, ce := range pol.Conditions {
			cp := fmt.Sprintf("%s.conditions[%d]", path, j)
			cdoc, cond := doc, &ce.Spec
			if ce.ConditionRef != "" {
				cd, found := c.docs["AlertCondition/"+ce.ConditionRef]
				if !found {
					c.errorf(doc, cp+".conditionRef", "AlertCondition %q is not declared", ce.ConditionRef)
					ok = false
					continue
				}
				cd.consumed = true
				cdoc, cond, cp = cd, cd.spec.(*osloConditionSpec), "spec"
			} else {
				cp += ".spec"
			}
			if cond.Condition.Kind != "burnrate" {
				c.errorf(cdoc, cp+".condition.kind", "condition kind %q cannot be converted: qsp alerts on burn rates (kind burnrate)", cond.Condition.Kind)
				ok = false
				continue
			}
			if op := cond.Condition.Op; op != "" && op != "gte" && op != "gt" {
				c.errorf(cdoc, cp+".condition.op", "op %q cannot be converted: burn-rate alerts fire when the rate is at least the threshold", op)
				ok = false
				continue
			}
			long, lok := c.duration(cdoc, cp+".condition.lookbackWindow", cond.Condition.LookbackWindow, false)
			if !lok {
				ok = false
				continue
			}
			short := max((long / 12).Round(time.Minute), time.Minute)
			bw := BurnWindow{Long: Duration(long), Short: Duration(short), Factor: cond.Condition.Threshold}
			c.warnf(cdoc, cp+".condition.lookbackWindow", "OpenSLO has one window per condition: qsp adds the workbook's short window (1/12 of the long one), %s", Duration(short))
			var after Duration
			if cond.Condition.AlertAfter != "" {
				aa, aok := c.duration(cdoc, cp+".condition.alertAfter", cond.Condition.AlertAfter, false)
				if !aok {
					ok = false
					continue
				}
				after = Duration(aa)
			}
			switch sev := strings.ToLower(cond.Severity); sev {
			case "page", "critical", "high", "p1":
				page = append(page, bw)
				pageFor = max(pageFor, after)
			case "ticket", "warning", "low", "medium", "info", "p2", "p3":
				ticket = append(ticket, bw)
				ticketFor = max(ticketFor, after)
			default:
				ticket = append(ticket, bw)
				ticketFor = max(ticketFor, after)
				c.warnf(cdoc, cp+".severity", "severity %q becomes a ticket (qsp tiers are page and ticket)", cond.Severity)
			}
		}
	}
	a.Page = &AlertTier{Disabled: len(page) == 0, Windows: page, For: pageFor}
	a.Ticket = &AlertTier{Disabled: len(ticket) == 0, Windows: ticket, For: ticketFor}
	alert := noData
	a.NoData.Alert = &alert
	return a, ok
}
