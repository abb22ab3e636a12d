package policy

import (
	"embed"
	"fmt"
	"slices"

	"github.com/qsp-dev/qsp/internal/spec"
)

// builtinFS holds the built-in policies and their shared helpers.
//
//go:embed builtin/*.rego
var builtinFS embed.FS

// Names of the built-in policies, as they appear in Reason.Policy. User
// policies may not take these names.
const (
	BuiltinErrorBudget     = "error-budget"
	BuiltinTradeOff        = "trade-off"
	BuiltinVulnerabilities = "vulnerabilities"
)

// builtinPolicy is a built-in policy: a module whose deny, warn and info
// are collected at its decision points.
type builtinPolicy struct {
	name   string
	file   string // under builtin/
	points []string
	descr  string
}

// builtins are evaluated in this order, before user policies.
var builtins = []builtinPolicy{
	{BuiltinErrorBudget, "error_budget.rego", []string{PointGate},
		"freezes risky deploys while an SLO's error budget is spent; fixes, rollbacks and mitigations pass with a warning"},
	{BuiltinTradeOff, "trade_off.rego", []string{PointGate, PointPlaybook},
		"weighs what a change or action costs other categories against the priorities between quality, security and performance"},
	{BuiltinVulnerabilities, "vulnerabilities.rego", []string{PointGate},
		"enforces the gate's vulnerability thresholds: counts per severity, age, findings without a fix"},
}

// builtinLibs are built-in modules that define no policy, only helpers.
var builtinLibs = []string{"format.rego"}

// DefaultPriorities is the trade-off order unless Options.Priorities says
// otherwise: availability and correctness first, then security, then speed.
var DefaultPriorities = []spec.Category{spec.Quality, spec.Security, spec.Performance}

// builtinSources returns the built-in modules ready to compile: policies
// with their points, then libraries.
func builtinSources() ([]*source, error) {
	var out []*source
	for _, b := range builtins {
		s, err := builtinSource(b.name, b.file)
		if err != nil {
			return nil, err
		}
		s.points, s.descr = b.points, b.descr
		out = append(out, s)
	}
	for _, f := range builtinLibs {
		s, err := builtinSource("builtin/"+f, f)
		if err != nil {
			return nil, err
		}
		s.lib = true
		out = append(out, s)
	}
	return out, nil
}

func builtinSource(name, file string) (*source, error) {
	text, err := builtinFS.ReadFile("builtin/" + file)
	if err != nil {
		return nil, fmt.Errorf("read built-in policy %s: %w", file, err)
	}
	return &source{name: name, key: "builtin/" + file, text: string(text), builtin: true}, nil
}

// isBuiltinName reports whether name is taken by a built-in policy.
func isBuiltinName(name string) bool {
	return slices.ContainsFunc(builtins, func(b builtinPolicy) bool { return b.name == name })
}

// checkPriorities validates a trade-off order: each category exactly once.
func checkPriorities(p []spec.Category) error {
	if len(p) != len(spec.Categories) {
		return fmt.Errorf("priorities %v: want each of %v exactly once", p, spec.Categories)
	}
	for _, c := range spec.Categories {
		if !slices.Contains(p, c) {
			return fmt.Errorf("priorities %v: want each of %v exactly once", p, spec.Categories)
		}
	}
	return nil
}
