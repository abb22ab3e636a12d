// Package spec is the qsp/v1 language: the kinds users write in Git
// (Service, SLO, Policy, Gate, Playbook), loading multi-document YAML,
// strict validation with file:line:col, and import of OpenSLO v1 and Sloth
// prometheus/v1 documents. It is the first stage of the data flow; every
// other package consumes the validated Set it produces.
package spec

import "go.yaml.in/yaml/v3"

// APIVersion is the only version of the language so far.
const APIVersion = "qsp/v1"

// The kinds of qsp/v1.
const (
	KindService  = "Service"
	KindSLO      = "SLO"
	KindPolicy   = "Policy"
	KindGate     = "Gate"
	KindPlaybook = "Playbook"
)

// Metadata names an object. Names are unique per kind.
type Metadata struct {
	Name        string            `yaml:"name"`
	DisplayName string            `yaml:"displayName,omitempty"`
	Labels      map[string]string `yaml:"labels,omitempty"`
	Annotations map[string]string `yaml:"annotations,omitempty"`
}

// Origin is where an object was declared.
type Origin struct {
	File   string
	Line   int
	Column int
	// pos maps field paths ("spec.objective") to their nodes.
	pos map[string]*yaml.Node
	// failed holds the paths that did not decode.
	failed map[string]bool
}

// decodeFailed reports whether path or one of its ancestors did not
// decode; validation stays quiet about those.
func (o Origin) decodeFailed(path string) bool {
	for p := path; p != ""; {
		if o.failed[p] {
			return true
		}
		i := lastSep(p)
		if i < 0 {
			return false
		}
		p = p[:i]
	}
	return false
}

// At returns the position of the field at path, or of its nearest declared
// ancestor when the field was defaulted.
func (o Origin) At(path string) (line, col int) {
	for p := path; ; {
		if n, ok := o.pos[p]; ok {
			return n.Line, n.Column
		}
		i := lastSep(p)
		if i < 0 {
			return o.Line, o.Column
		}
		p = p[:i]
	}
}

func lastSep(p string) int {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '.' || p[i] == '[' {
			return i
		}
	}
	return -1
}

// Object is implemented by every kind.
type Object interface {
	// Kind returns the kind, e.g. "SLO".
	GetKind() string
	// Meta returns the object's metadata.
	Meta() *Metadata
	// Where returns where the object was declared.
	Where() *Origin
}

// Header is the part every document shares.
type Header struct {
	APIVersion string   `yaml:"apiVersion"`
	Kind       string   `yaml:"kind"`
	Metadata   Metadata `yaml:"metadata"`
	origin     Origin
}

// GetKind implements Object.
func (h *Header) GetKind() string { return h.Kind }

// Meta implements Object.
func (h *Header) Meta() *Metadata { return &h.Metadata }

// Where implements Object.
func (h *Header) Where() *Origin { return &h.origin }

// Name returns metadata.name.
func (h *Header) Name() string { return h.Metadata.Name }

// Ref returns "Kind/name", the way objects are named in messages.
func (h *Header) Ref() string { return h.Kind + "/" + h.Metadata.Name }

// Set is a validated collection of objects, in declaration order.
type Set struct {
	Services  []*Service
	SLOs      []*SLO
	Policies  []*Policy
	Gates     []*Gate
	Playbooks []*Playbook
}

// Service returns the service named name, or nil.
func (s *Set) Service(name string) *Service { return find(s.Services, name) }

// SLO returns the SLO named name, or nil.
func (s *Set) SLO(name string) *SLO { return find(s.SLOs, name) }

// Policy returns the policy named name, or nil.
func (s *Set) Policy(name string) *Policy { return find(s.Policies, name) }

// Gate returns the gate named name, or nil.
func (s *Set) Gate(name string) *Gate { return find(s.Gates, name) }

// Playbook returns the playbook named name, or nil.
func (s *Set) Playbook(name string) *Playbook { return find(s.Playbooks, name) }

// SLOsOf returns the SLOs of service, in declaration order.
func (s *Set) SLOsOf(service string) []*SLO {
	var out []*SLO
	for _, o := range s.SLOs {
		if o.Spec.Service == service {
			out = append(out, o)
		}
	}
	return out
}

// Objects returns every object of the set, services first.
func (s *Set) Objects() []Object {
	var out []Object
	for _, o := range s.Services {
		out = append(out, o)
	}
	for _, o := range s.SLOs {
		out = append(out, o)
	}
	for _, o := range s.Policies {
		out = append(out, o)
	}
	for _, o := range s.Gates {
		out = append(out, o)
	}
	for _, o := range s.Playbooks {
		out = append(out, o)
	}
	return out
}

type named interface{ Name() string }

func find[T named](xs []T, name string) T {
	for _, x := range xs {
		if x.Name() == name {
			return x
		}
	}
	var zero T
	return zero
}
