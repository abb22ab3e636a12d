package spec

// Policy is Rego code consulted before QSP acts: at deploy gates and before
// playbook actions. A module may define `deny` and `warn` as sets of
// messages, like conftest policies; see docs/spec.md for its input.
type Policy struct {
	Header `yaml:",inline"`
	Spec   PolicySpec `yaml:"spec"`
}

// PolicySpec is the body of a Policy. Exactly one of Rego and Path is set.
type PolicySpec struct {
	Description string `yaml:"description,omitempty"`
	// Rego is the module's source inline.
	Rego string `yaml:"rego,omitempty"`
	// Path is a .rego file relative to the spec file.
	Path string `yaml:"path,omitempty"`
	// AppliesTo lists the decision points: gate, playbook. Default both.
	AppliesTo []string `yaml:"appliesTo,omitempty"`
	// Data is made available to the module as data.qsp.params.
	Data map[string]any `yaml:"data,omitempty"`
	// Source is the module's text after loading (Rego or Path's file).
	Source string `yaml:"-"`
}

// Decision points a Policy applies to.
const (
	PointGate     = "gate"
	PointPlaybook = "playbook"
)
