package spec

import (
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// OpenSLO's pre-v1 documents, openslo/v1alpha (the version Sloth and the
// first oslo releases read) and openslo.com/v2alpha (oslo's draft of the
// next version), are rewritten into the v1 shape on their YAML node tree
// before decoding, so the v1 converter and its diagnostics (positions
// included: rewritten nodes keep the original line and column) apply
// unchanged. Where the versions differ:
//
//	v1alpha SLO  spec.timeWindows[{count, unit, isRolling, calendar}]
//	             → spec.timeWindow[{duration: <count><unit>, isRolling, calendar}]
//	             spec.indicator.thresholdMetric{source, queryType, query}
//	             → spec.indicator.spec.thresholdMetric.metricSource{type, spec.query}
//	             spec.objectives[].ratioMetrics{good, bad, total, incremental}
//	             → spec.indicator.spec.ratioMetric{good, bad, total, counter}
//	v2alpha SLO  spec.sli / spec.sliRef → spec.indicator / spec.indicatorRef
//	v2alpha SLI  metrics {dataSourceRef, spec} → metricSource{metricSourceRef, spec}
//
// Everything else (metadata, service, budgetingMethod, objectives' op,
// value, target, timeSliceTarget, timeSliceWindow, alert policies) has the
// same shape as in v1.

// OpenSLO apiVersions converted besides openslo/v1.
const (
	openSLOv1alpha = "openslo/v1alpha"
	openSLOv2alpha = "openslo.com/v2alpha"
)

// v1alphaUnits maps a v1alpha time window unit to the v1 shorthand.
var v1alphaUnits = map[string]string{
	"minute": "m", "hour": "h", "day": "d", "week": "w", "month": "M", "quarter": "Q", "year": "Y",
}

// upgradeOpenSLO rewrites a v1alpha or v2alpha document into v1 in place
// and decodes it as v1.
func (p *loader) upgradeOpenSLO(doc document, apiVersion, kind string) {
	spec := field(doc.node, "spec")
	if spec == nil || spec.Kind != yaml.MappingNode {
		p.parseOpenSLO(doc, kind) // the v1 decoder names what is missing
		return
	}
	independent, failed := false, false
	defer func() {
		before := len(p.openslo)
		p.parseOpenSLO(doc, kind)
		if len(p.openslo) > before {
			p.openslo[before].failed = failed
			if o, ok := p.openslo[before].spec.(*osloSLO); ok && independent {
				o.independent = true
			}
		}
	}()
	object := kind + "/" + scalar(orEmpty(field(doc.node, "metadata")), "name")
	errorf := func(n *yaml.Node, path, format string, args ...any) {
		failed = true
		p.diags.add(Diagnostic{File: doc.file, Line: n.Line, Column: n.Column, Object: object, Field: path,
			Message: fmt.Sprintf(format, args...) + " (" + apiVersion + ")"})
	}
	switch apiVersion {
	case openSLOv1alpha:
		if kind == "SLO" {
			p.upgradeV1alphaSLO(spec, scalar(orEmpty(field(doc.node, "metadata")), "name"), errorf, &independent)
		}
	case openSLOv2alpha:
		switch kind {
		case "SLO":
			renameKey(spec, "sli", "indicator")
			renameKey(spec, "sliRef", "indicatorRef")
			if ind := field(spec, "indicator"); ind != nil {
				upgradeV2alphaMetrics(field(ind, "spec"))
			}
			if obs := field(spec, "objectives"); obs != nil && obs.Kind == yaml.SequenceNode {
				for _, ob := range obs.Content {
					renameKey(ob, "sli", "indicator")
					renameKey(ob, "sliRef", "indicatorRef")
					if ind := field(ob, "indicator"); ind != nil {
						upgradeV2alphaMetrics(field(ind, "spec"))
					}
				}
			}
		case "SLI":
			upgradeV2alphaMetrics(spec)
		}
	}
}

type errorfFunc func(n *yaml.Node, path, format string, args ...any)

func (p *loader) upgradeV1alphaSLO(spec *yaml.Node, name string, errorf errorfFunc, independent *bool) {
	if tw := field(spec, "timeWindows"); tw != nil {
		renameKey(spec, "timeWindows", "timeWindow")
		if tw.Kind == yaml.SequenceNode {
			for i, w := range tw.Content {
				upgradeV1alphaWindow(w, fmt.Sprintf("spec.timeWindows[%d]", i), errorf)
			}
		}
	}
	if ind := field(spec, "indicator"); ind != nil && ind.Kind == yaml.MappingNode && field(ind, "spec") == nil {
		// v1alpha: indicator: {thresholdMetric: {...}}.
		if tm := field(ind, "thresholdMetric"); tm != nil {
			upgradeV1alphaMetric(tm, "spec.indicator.thresholdMetric", errorf)
		}
		sli := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: ind.Line, Column: ind.Column, Content: ind.Content}
		ind.Content = []*yaml.Node{
			strNode("metadata", ind), {Kind: yaml.MappingNode, Tag: "!!map", Line: ind.Line, Column: ind.Column, Content: []*yaml.Node{strNode("name", ind), strNode(name+"-sli", ind)}},
			strNode("spec", ind), sli,
		}
	}
	obs := field(spec, "objectives")
	if obs == nil || obs.Kind != yaml.SequenceNode {
		return
	}
	// ratioMetrics sit on the objectives in v1alpha. When every
	// objective has the same ones (or one objective has them) they become
	// the SLO's indicator; otherwise each objective keeps its own as a
	// v1 objective indicator and becomes an SLO of its own (v1alpha's
	// objectives are independent, not the parts of a composite).
	var all []*yaml.Node
	var first any
	same := true
	for i, ob := range obs.Content {
		rm := field(ob, "ratioMetrics")
		if rm == nil {
			continue
		}
		var this any
		if err := rm.Decode(&this); err != nil || (len(all) > 0 && fmt.Sprint(this) != fmt.Sprint(first)) {
			same = false
		}
		if len(all) == 0 {
			first = this
		}
		path := fmt.Sprintf("spec.objectives[%d].ratioMetrics", i)
		for _, k := range []string{"good", "bad", "total"} {
			if m := field(rm, k); m != nil {
				upgradeV1alphaMetric(m, path+"."+k, errorf)
			}
		}
		renameKey(rm, "incremental", "counter")
		all = append(all, ob)
	}
	if len(all) == 0 {
		return
	}
	if ind := field(spec, "indicator"); ind != nil {
		errorf(ind, "spec.indicator", "an SLO with ratioMetrics on its objectives has no indicator of its own")
		return
	}
	inline := func(rm *yaml.Node, sliName string) *yaml.Node {
		return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: rm.Line, Column: rm.Column, Content: []*yaml.Node{
			strNode("metadata", rm), {Kind: yaml.MappingNode, Tag: "!!map", Line: rm.Line, Column: rm.Column, Content: []*yaml.Node{strNode("name", rm), strNode(sliName, rm)}},
			strNode("spec", rm), {Kind: yaml.MappingNode, Tag: "!!map", Line: rm.Line, Column: rm.Column, Content: []*yaml.Node{strNode("ratioMetric", rm), rm}},
		}}
	}
	if same {
		rm := field(all[0], "ratioMetrics")
		for _, ob := range all {
			deleteKey(ob, "ratioMetrics")
		}
		spec.Content = append(spec.Content, strNode("indicator", rm), inline(rm, name+"-sli"))
		return
	}
	*independent = true
	for i, ob := range all {
		rm := field(ob, "ratioMetrics")
		deleteKey(ob, "ratioMetrics")
		ob.Content = append(ob.Content, strNode("indicator", rm), inline(rm, fmt.Sprintf("%s-sli-%d", name, i)))
	}
}

// upgradeV1alphaWindow turns {count, unit} into {duration}; isRolling
// defaults to true without a calendar, as Sloth reads v1alpha.
func upgradeV1alphaWindow(w *yaml.Node, path string, errorf errorfFunc) {
	if w.Kind != yaml.MappingNode {
		return
	}
	count, unit := field(w, "count"), field(w, "unit")
	if count == nil && unit == nil {
		return
	}
	if count == nil || unit == nil || count.Kind != yaml.ScalarNode || unit.Kind != yaml.ScalarNode {
		errorf(w, path, "a time window needs count and unit")
		return
	}
	deleteKey(w, "count")
	deleteKey(w, "unit")
	u, ok := v1alphaUnits[strings.ToLower(unit.Value)]
	if !ok {
		errorf(unit, path+".unit", "unit %q cannot be converted: want Minute, Hour, Day, Week, Month, Quarter or Year", unit.Value)
		return
	}
	w.Content = append(w.Content, strNode("duration", count), strNode(count.Value+u, count))
	if field(w, "isRolling") == nil {
		rolling := "true"
		if field(w, "calendar") != nil {
			rolling = "false"
		}
		w.Content = append(w.Content, strNode("isRolling", w), &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: rolling, Line: w.Line, Column: w.Column})
	}
}

// upgradeV1alphaMetric turns {source, queryType, query} into
// {metricSource: {type, spec: {query}}}.
func upgradeV1alphaMetric(m *yaml.Node, path string, errorf errorfFunc) {
	if m.Kind != yaml.MappingNode || field(m, "metricSource") != nil {
		return
	}
	source, qt, query := field(m, "source"), field(m, "queryType"), field(m, "query")
	if qt != nil && qt.Kind == yaml.ScalarNode && !strings.EqualFold(qt.Value, "promql") {
		errorf(qt, path+".queryType", "query type %q cannot be converted: qsp reads PromQL", qt.Value)
	}
	inner := []*yaml.Node{}
	if query != nil {
		inner = append(inner, strNode("query", query), query)
	}
	ms := []*yaml.Node{}
	if source != nil {
		ms = append(ms, strNode("type", source), source)
	}
	ms = append(ms, strNode("spec", m), &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: m.Line, Column: m.Column, Content: inner})
	for _, k := range []string{"source", "queryType", "query"} {
		deleteKey(m, k)
	}
	m.Content = append(m.Content, strNode("metricSource", m), &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: m.Line, Column: m.Column, Content: ms})
}

// upgradeV2alphaMetrics rewrites the metrics of a v2alpha SLI spec:
// {dataSourceRef, spec} → {metricSource: {metricSourceRef, spec}}.
func upgradeV2alphaMetrics(sli *yaml.Node) {
	if sli == nil || sli.Kind != yaml.MappingNode {
		return
	}
	var metrics []*yaml.Node
	if tm := field(sli, "thresholdMetric"); tm != nil {
		metrics = append(metrics, tm)
	}
	if rm := field(sli, "ratioMetric"); rm != nil && rm.Kind == yaml.MappingNode {
		for _, k := range []string{"good", "bad", "total", "raw"} {
			if m := field(rm, k); m != nil {
				metrics = append(metrics, m)
			}
		}
	}
	for _, m := range metrics {
		if m.Kind != yaml.MappingNode || field(m, "metricSource") != nil {
			continue
		}
		ms := []*yaml.Node{}
		if ref := field(m, "dataSourceRef"); ref != nil {
			ms = append(ms, strNode("metricSourceRef", ref), ref)
		}
		if t := field(m, "type"); t != nil {
			ms = append(ms, strNode("type", t), t)
		}
		if s := field(m, "spec"); s != nil {
			ms = append(ms, strNode("spec", s), s)
		}
		for _, k := range []string{"dataSourceRef", "type", "spec"} {
			deleteKey(m, k)
		}
		m.Content = append(m.Content, strNode("metricSource", m), &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: m.Line, Column: m.Column, Content: ms})
	}
}

func strNode(v string, at *yaml.Node) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v, Line: at.Line, Column: at.Column}
}

func renameKey(n *yaml.Node, from, to string) {
	if n == nil || n.Kind != yaml.MappingNode || field(n, to) != nil {
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == from {
			k := *n.Content[i]
			k.Value = to
			n.Content[i] = &k
		}
	}
}

func deleteKey(n *yaml.Node, key string) {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			n.Content = append(n.Content[:i:i], n.Content[i+2:]...)
			return
		}
	}
}
