package crd

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/qsp-dev/qsp/internal/spec"
)

// Group and Version of QSP's custom resources.
const (
	Group   = "qsp.dev"
	Version = "v1alpha1"
)

// APIVersion is "qsp.dev/v1alpha1".
const APIVersion = Group + "/" + Version

// Condition types on every QSP resource.
const (
	// ConditionValid says whether the resource passed validation; its
	// message is what `qsp validate` prints, without the file position.
	ConditionValid = "Valid"
	// ConditionReady says whether the running QSP uses the resource: for
	// an SLO, that it has been evaluated at least once.
	ConditionReady = "Ready"
)

// Condition is a metav1.Condition.
type Condition struct {
	// Type is Valid or Ready.
	Type string `json:"type"`
	// Status is True, False or Unknown.
	Status string `json:"status"`
	// ObservedGeneration is the metadata.generation the condition is about.
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// LastTransitionTime is when Status last changed (RFC 3339).
	LastTransitionTime string `json:"lastTransitionTime"`
	// Reason is a CamelCase word for machines.
	Reason string `json:"reason"`
	// Message is for humans: for Valid=False, every problem found, as
	// "Kind/name: field.path: message".
	Message string `json:"message"`
}

// Status is the status of every QSP resource.
type Status struct {
	// ObservedGeneration is the metadata.generation QSP last loaded.
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions are Valid and Ready.
	Conditions []Condition `json:"conditions,omitempty"`
}

// SLOStatus is the status of an SLO: the conditions and its live state.
// For a grouped SLO the worst group is shown.
type SLOStatus struct {
	Status
	// State is ok, pending, firing, low_traffic, no_data or unknown (not
	// evaluated yet).
	State string `json:"state,omitempty"`
	// Reason explains the state.
	Reason string `json:"reason,omitempty"`
	// SLI is the good ratio over the SLO window.
	SLI *float64 `json:"sli,omitempty"`
	// Budget is the error budget remaining, as a percentage ("62.5%").
	Budget string `json:"budget,omitempty"`
	// BudgetRemaining is the error budget remaining as a ratio (1 is all
	// of it, negative is overspent).
	BudgetRemaining *float64 `json:"budgetRemaining,omitempty"`
	// BurnRates are the burn rates of the windows the page and ticket
	// alerts watch.
	BurnRates []BurnRate `json:"burnRates,omitempty"`
	// BudgetExhaustion is how long the remaining budget lasts at the
	// current burn rate (of the shortest page window), as a duration; empty
	// when nothing burns.
	BudgetExhaustion string `json:"budgetExhaustion,omitempty"`
	// Alerts are the alert states by severity (page, ticket, no_data).
	Alerts map[string]string `json:"alerts,omitempty"`
	// Groups is the number of groups of a grouped SLO.
	Groups int `json:"groups,omitempty"`
	// LastEvaluation is when the SLO was last evaluated (RFC 3339).
	LastEvaluation string `json:"lastEvaluation,omitempty"`
}

// BurnRate is the burn rate over one window.
type BurnRate struct {
	// Severity is page or ticket.
	Severity string `json:"severity"`
	// Window is the window, e.g. 1h.
	Window string `json:"window"`
	// Rate is the burn rate: 1 spends the budget exactly over the SLO
	// window.
	Rate float64 `json:"rate"`
}

// Kind is one QSP custom resource kind.
type Kind struct {
	Kind      string // qsp/v1 kind, also the CRD kind
	Plural    string
	Singular  string
	ShortName string
	spec      reflect.Type
	status    reflect.Type
	columns   []Column
}

// Resource returns "<plural>.qsp.dev".
func (k Kind) Resource() string { return k.Plural + "." + Group }

// Column is an additionalPrinterColumn.
type Column struct {
	Name        string `yaml:"name"`
	Type        string `yaml:"type"`
	JSONPath    string `yaml:"jsonPath"`
	Description string `yaml:"description,omitempty"`
	Priority    int    `yaml:"priority,omitempty"`
}

var (
	validColumn = Column{Name: "Valid", Type: "string", JSONPath: `.status.conditions[?(@.type=="Valid")].status`, Description: "Whether the resource passed validation."}
	ageColumn   = Column{Name: "Age", Type: "date", JSONPath: ".metadata.creationTimestamp"}
	serviceCol  = Column{Name: "Service", Type: "string", JSONPath: ".spec.service"}
)

// Kinds are QSP's custom resources, in the order of qsp/v1's kinds. Short
// names start with qsp so that they collide neither with Kubernetes' own
// (svc) nor with Sloth's (psl) or Pyrra's.
var Kinds = []Kind{
	{Kind: spec.KindSLO, Plural: "slos", Singular: "slo", ShortName: "qspslo",
		spec: reflect.TypeFor[spec.SLOSpec](), status: reflect.TypeFor[SLOStatus](),
		columns: []Column{
			serviceCol,
			{Name: "Objective", Type: "string", JSONPath: ".spec.objective"},
			{Name: "Window", Type: "string", JSONPath: ".spec.window"},
			{Name: "State", Type: "string", JSONPath: ".status.state"},
			{Name: "Budget", Type: "string", JSONPath: ".status.budget", Description: "Error budget remaining."},
			ageColumn,
			withPriority(validColumn, 1),
		}},
	{Kind: spec.KindService, Plural: "services", Singular: "service", ShortName: "qspsvc",
		spec: reflect.TypeFor[spec.ServiceSpec](), status: reflect.TypeFor[Status](),
		columns: []Column{{Name: "Owner", Type: "string", JSONPath: ".spec.owner"}, validColumn, ageColumn}},
	{Kind: spec.KindPolicy, Plural: "policies", Singular: "policy", ShortName: "qsppolicy",
		spec: reflect.TypeFor[spec.PolicySpec](), status: reflect.TypeFor[Status](),
		columns: []Column{validColumn, ageColumn}},
	{Kind: spec.KindGate, Plural: "gates", Singular: "gate", ShortName: "qspgate",
		spec: reflect.TypeFor[spec.GateSpec](), status: reflect.TypeFor[Status](),
		columns: []Column{serviceCol, validColumn, ageColumn}},
	{Kind: spec.KindPlaybook, Plural: "playbooks", Singular: "playbook", ShortName: "qspplaybook",
		spec: reflect.TypeFor[spec.PlaybookSpec](), status: reflect.TypeFor[Status](),
		columns: []Column{serviceCol, validColumn, ageColumn}},
}

func withPriority(c Column, p int) Column { c.Priority = p; return c }

// KindOf returns the kind named kind ("SLO"), or false.
func KindOf(kind string) (Kind, bool) {
	for _, k := range Kinds {
		if k.Kind == kind {
			return k, true
		}
	}
	return Kind{}, false
}

// The CustomResourceDefinition, as much of apiextensions.k8s.io/v1 as QSP
// writes.
type definition struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name        string            `yaml:"name"`
		Labels      map[string]string `yaml:"labels,omitempty"`
		Annotations map[string]string `yaml:"annotations,omitempty"`
	} `yaml:"metadata"`
	Spec struct {
		Group string `yaml:"group"`
		Names struct {
			Kind       string   `yaml:"kind"`
			ListKind   string   `yaml:"listKind"`
			Plural     string   `yaml:"plural"`
			Singular   string   `yaml:"singular"`
			ShortNames []string `yaml:"shortNames"`
			Categories []string `yaml:"categories"`
		} `yaml:"names"`
		Scope    string    `yaml:"scope"`
		Versions []version `yaml:"versions"`
	} `yaml:"spec"`
}

type version struct {
	Name    string `yaml:"name"`
	Served  bool   `yaml:"served"`
	Storage bool   `yaml:"storage"`
	Schema  struct {
		OpenAPIV3Schema *Schema `yaml:"openAPIV3Schema"`
	} `yaml:"schema"`
	Subresources struct {
		Status struct{} `yaml:"status"`
	} `yaml:"subresources"`
	AdditionalPrinterColumns []Column `yaml:"additionalPrinterColumns"`
}

// Schema returns the OpenAPI v3 schema of the kind's resources.
func (k Kind) Schema(docs Docs) (*Schema, error) {
	sp, err := For(k.spec, "yaml", docs)
	if err != nil {
		return nil, fmt.Errorf("%s spec: %w", k.Kind, err)
	}
	sp.Description = fmt.Sprintf("The qsp/v1 %s's spec, with the same fields and meaning as in a spec file.", k.Kind)
	st, err := For(k.status, "json", docs)
	if err != nil {
		return nil, fmt.Errorf("%s status: %w", k.Kind, err)
	}
	st.Description = "Written by QSP."
	return &Schema{
		Type:        "object",
		Description: fmt.Sprintf("A QSP %s: the qsp/v1 %s as a Kubernetes resource.", k.Kind, k.Kind),
		Properties: map[string]*Schema{
			"apiVersion": {Type: "string"},
			"kind":       {Type: "string"},
			"metadata":   {Type: "object"},
			"spec":       sp,
			"status":     st,
		},
	}, nil
}

// Render returns the CustomResourceDefinition manifest of the kind.
func (k Kind) Render(docs Docs) ([]byte, error) {
	s, err := k.Schema(docs)
	if err != nil {
		return nil, err
	}
	var d definition
	d.APIVersion = "apiextensions.k8s.io/v1"
	d.Kind = "CustomResourceDefinition"
	d.Metadata.Name = k.Resource()
	d.Metadata.Labels = map[string]string{"app.kubernetes.io/part-of": "qsp"}
	d.Spec.Group = Group
	d.Spec.Names.Kind = k.Kind
	d.Spec.Names.ListKind = k.Kind + "List"
	d.Spec.Names.Plural = k.Plural
	d.Spec.Names.Singular = k.Singular
	d.Spec.Names.ShortNames = []string{k.ShortName}
	d.Spec.Names.Categories = []string{"qsp"}
	d.Spec.Scope = "Namespaced"
	v := version{Name: Version, Served: true, Storage: true, AdditionalPrinterColumns: k.columns}
	v.Schema.OpenAPIV3Schema = s
	d.Spec.Versions = []version{v}
	var b bytes.Buffer
	b.WriteString("# Generated by `make crds` from the qsp/v1 spec types (internal/spec) and\n# internal/kube/crd; do not edit.\n")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(d); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// FileName is the manifest's file name under deploy/helm/qsp/crds.
func (k Kind) FileName() string {
	return strings.ToLower(k.Plural) + "." + Group + ".yaml"
}

// Manifests renders every kind's CRD, keyed by FileName, with
// descriptions read from the Go sources in docDirs (internal/spec and this
// package).
func Manifests(docDirs ...string) (map[string][]byte, error) {
	docs, err := ReadDocs(docDirs...)
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for _, k := range Kinds {
		b, err := k.Render(docs)
		if err != nil {
			return nil, err
		}
		out[k.FileName()] = b
	}
	return out, nil
}
