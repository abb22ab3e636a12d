package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/open-policy-agent/opa/v1/util"

	"github.com/qsp-dev/qsp/internal/spec"
)

// refused are the Rego built-ins policies may not call: they reach the
// network or the process environment, so a policy could leak secrets or
// make a decision depend on something outside its input. A module calling
// one fails to compile ("undefined function http.send").
var refused = []string{"http.send", "opa.runtime"}

// refusedPrefixes refuses whole families: net.* resolves names.
var refusedPrefixes = []string{"net."}

// capabilities returns OPA's capabilities without the refused built-ins
// and with no network access for the compiler (remote schema refs).
func capabilities() *ast.Capabilities {
	caps := ast.CapabilitiesForThisVersion()
	keep := caps.Builtins[:0:0]
	for _, b := range caps.Builtins {
		if isRefused(b.Name) {
			continue
		}
		keep = append(keep, b)
	}
	caps.Builtins = keep
	caps.AllowNet = []string{}
	return caps
}

func isRefused(name string) bool {
	if slices.Contains(refused, name) {
		return true
	}
	for _, p := range refusedPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// reservedRoot is the data namespace of QSP: built-in policies
// (qsp.builtin), parameters (qsp.params, qsp.config). User packages live
// elsewhere so that they cannot shadow or extend a built-in.
var reservedRoot = ast.MustParseRef("data.qsp")

// ModuleError is a problem in a policy's Rego: a parse or compile error
// from New, or a runtime error (conflicting values, a built-in error) from
// Evaluate. It names the policy and the position in the Rego source.
type ModuleError struct {
	// Policy is the policy's name.
	Policy string
	// File is the .rego file of a path policy, the spec file of an inline
	// one, or "" when the policy was not loaded from a file.
	File string
	// Line and Column locate the problem in File. For inline Rego, Line is
	// the spec file line (assuming a block scalar, `rego: |`) and Column
	// is 0; RegoLine and RegoColumn then locate it within the module.
	Line, Column         int
	RegoLine, RegoColumn int
	// Code is OPA's error code, e.g. rego_parse_error.
	Code    string
	Message string
}

func (e *ModuleError) Error() string {
	var pos string
	switch {
	case e.File != "" && e.Column > 0:
		pos = fmt.Sprintf("%s:%d:%d", e.File, e.Line, e.Column)
	case e.File != "" && e.Line > 0:
		pos = fmt.Sprintf("%s:%d (rego line %d, column %d)", e.File, e.Line, e.RegoLine, e.RegoColumn)
	case e.File != "":
		pos = e.File
	case e.RegoLine > 0:
		pos = fmt.Sprintf("rego line %d, column %d", e.RegoLine, e.RegoColumn)
	default:
		pos = "rego"
	}
	msg := e.Message
	if e.Code != "" {
		msg = e.Code + ": " + msg
	}
	if e.Policy == "" {
		return fmt.Sprintf("rego: %s", msg)
	}
	return fmt.Sprintf("policy %q: %s: %s", e.Policy, pos, msg)
}

// source is one Rego module to compile, built-in or user, with what is
// needed to report positions in it.
type source struct {
	name    string // policy name
	key     string // module key in the compiler, unique
	text    string
	builtin bool
	lib     bool // a built-in library: helpers, no policy of its own
	// file is the .rego path of a path policy or the spec file of an
	// inline one; inline reports lines from fieldLine.
	file      string
	inline    bool
	fieldLine int
	params    any    // data.qsp.params, JSON-normalized
	pkg       string // the module's package path, "data.team.freeze"
	points    []string
	descr     string
}

// userSource prepares a user Policy for compilation.
func userSource(p *spec.Policy) (*source, error) {
	name := p.Name()
	s := &source{
		name:   name,
		key:    "policy/" + name + ".rego",
		text:   p.Spec.Source,
		points: p.Spec.AppliesTo,
		descr:  p.Spec.Description,
	}
	if s.text == "" {
		s.text = p.Spec.Rego
	}
	if strings.TrimSpace(s.text) == "" {
		return nil, &ModuleError{Policy: name, Message: "no Rego source (spec.rego or spec.path)"}
	}
	if len(s.points) == 0 {
		s.points = []string{PointGate, PointPlaybook}
	}
	for _, pt := range s.points {
		if pt != PointGate && pt != PointPlaybook {
			return nil, fmt.Errorf("policy %q: appliesTo %q is not gate or playbook", name, pt)
		}
	}
	o := p.Where()
	switch {
	case p.Spec.Path != "":
		s.file = p.Spec.Path
		if o.File != "" && !filepath.IsAbs(s.file) {
			s.file = filepath.Join(filepath.Dir(o.File), s.file)
		}
	case o.File != "":
		s.file, s.inline = o.File, true
		s.fieldLine, _ = o.At("spec.rego")
	}
	params, err := jsonValue(p.Spec.Data)
	if err != nil {
		return nil, fmt.Errorf("policy %q: data: %w", name, err)
	}
	if params == nil {
		params = map[string]any{}
	}
	s.params = params
	return s, nil
}

// jsonValue turns YAML-decoded values into the JSON types OPA's store
// holds (numbers as json.Number, timestamps as strings), or says what
// cannot be represented.
func jsonValue(x any) (any, error) {
	if x == nil {
		return nil, nil
	}
	b, err := json.Marshal(x)
	if err != nil {
		return nil, err
	}
	var v any
	if err := util.UnmarshalJSON(b, &v); err != nil {
		return nil, err
	}
	return v, nil
}

// moduleError converts an OPA error located in s into a ModuleError.
func (s *source) moduleError(code, msg string, loc *ast.Location) *ModuleError {
	e := &ModuleError{Policy: s.name, Code: code, Message: msg}
	if s.builtin {
		e.File = s.key
	} else {
		e.File = s.file
	}
	if loc == nil || loc.Row == 0 {
		return e
	}
	switch {
	case s.inline && s.fieldLine > 0:
		// A block scalar's content starts on the line after `rego: |`.
		e.Line = s.fieldLine + loc.Row
		e.RegoLine, e.RegoColumn = loc.Row, loc.Col
	case s.inline || e.File == "":
		e.RegoLine, e.RegoColumn = loc.Row, loc.Col
	default:
		e.Line, e.Column = loc.Row, loc.Col
	}
	return e
}

// parse parses the module as Rego v1 with the restricted capabilities.
func (s *source) parse(caps *ast.Capabilities) (*ast.Module, error) {
	m, err := ast.ParseModuleWithOpts(s.key, s.text, ast.ParserOptions{
		RegoVersion:  ast.RegoV1,
		Capabilities: caps,
	})
	if err != nil {
		return nil, s.astErrors(err)
	}
	if m == nil {
		// The parser returns no module and no error for text without
		// statements, e.g. only comments.
		return nil, &ModuleError{Policy: s.name, File: s.fileOrKey(), Message: "no package declaration"}
	}
	if !s.builtin && m.Package.Path.HasPrefix(reservedRoot) {
		return nil, s.moduleError("", fmt.Sprintf("package %s is reserved for QSP; use a package outside data.qsp", strings.TrimPrefix(m.Package.Path.String(), "data.")), m.Package.Location)
	}
	return m, nil
}

func (s *source) fileOrKey() string {
	if s.builtin {
		return s.key
	}
	return s.file
}

// astErrors converts parse errors of s into ModuleErrors joined with
// errors.Join, one per problem.
func (s *source) astErrors(err error) error {
	return sourcesErrors(map[string]*source{s.key: s}, s, err)
}

// sourcesErrors converts parse or compile errors into ModuleErrors, one per
// problem, attributing each to the module it is located in (a compile
// error in one module may surface while compiling all of them), or to
// fallback when OPA did not locate it.
func sourcesErrors(byKey map[string]*source, fallback *source, err error) error {
	var aerrs ast.Errors
	if !errors.As(err, &aerrs) {
		var one *ast.Error
		if !errors.As(err, &one) {
			return locate(byKey, fallback, "", err.Error(), nil)
		}
		aerrs = ast.Errors{one}
	}
	out := make([]error, 0, len(aerrs))
	for _, e := range aerrs {
		out = append(out, locate(byKey, fallback, e.Code, e.Message, e.Location))
	}
	return errors.Join(out...)
}

// locate makes a ModuleError for a located problem.
func locate(byKey map[string]*source, fallback *source, code, msg string, loc *ast.Location) *ModuleError {
	s := fallback
	if loc != nil {
		if found, ok := byKey[loc.File]; ok {
			s = found
		}
	}
	if s == nil {
		return &ModuleError{Code: code, Message: msg}
	}
	return s.moduleError(code, msg, loc)
}

// evalError converts a runtime error met while evaluating s's query into a
// ModuleError located in the module OPA names (s, or a module s
// imports), and wraps other errors with s's name.
func evalError(byKey map[string]*source, s *source, err error) error {
	var terr *topdown.Error
	if errors.As(err, &terr) {
		return locate(byKey, s, terr.Code, terr.Message, terr.Location)
	}
	return fmt.Errorf("policy %q: %w", s.name, err)
}
