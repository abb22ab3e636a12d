package spec

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Diagnostic is one problem found in a spec file, with its position.
type Diagnostic struct {
	File    string
	Line    int
	Column  int
	Object  string // "Kind/name", empty before the document's kind is known
	Field   string // dotted path, e.g. "spec.indicator.ratio.good"
	Message string
	Warning bool // legal but surely wrong; does not make the spec invalid
}

// String formats the diagnostic as "file:line:col: Kind/name: field: message".
func (d Diagnostic) String() string {
	var b strings.Builder
	b.WriteString(d.File)
	if d.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", d.Line, d.Column)
	}
	b.WriteString(": ")
	if d.Warning {
		b.WriteString("warning: ")
	}
	if d.Object != "" {
		b.WriteString(d.Object)
		b.WriteString(": ")
	}
	if d.Field != "" {
		b.WriteString(d.Field)
		b.WriteString(": ")
	}
	b.WriteString(d.Message)
	return b.String()
}

// Diagnostics is every problem found in one load, errors and warnings.
type Diagnostics []Diagnostic

func (ds *Diagnostics) add(d Diagnostic) { *ds = append(*ds, d) }

// HasErrors reports whether any diagnostic is an error.
func (ds Diagnostics) HasErrors() bool {
	return slices.ContainsFunc(ds, func(d Diagnostic) bool { return !d.Warning })
}

// Errors returns the diagnostics that are errors.
func (ds Diagnostics) Errors() Diagnostics {
	return slices.DeleteFunc(slices.Clone(ds), func(d Diagnostic) bool { return d.Warning })
}

// Warnings returns the diagnostics that are warnings.
func (ds Diagnostics) Warnings() Diagnostics {
	return slices.DeleteFunc(slices.Clone(ds), func(d Diagnostic) bool { return !d.Warning })
}

// Sort orders diagnostics by file, line and column, so output is stable.
func (ds Diagnostics) Sort() {
	slices.SortStableFunc(ds, func(a, b Diagnostic) int {
		return cmp.Or(cmp.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
	})
}

// Error implements error, so a failed load can be returned as one value.
func (ds Diagnostics) Error() string {
	lines := make([]string, 0, len(ds))
	for _, d := range ds.Errors() {
		lines = append(lines, d.String())
	}
	return strings.Join(lines, "\n")
}
