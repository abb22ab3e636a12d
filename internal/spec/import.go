package spec

import (
	"bytes"
	"fmt"

	"go.yaml.in/yaml/v3"
)

// Format is a spec language QSP reads.
type Format string

// The formats QSP reads.
const (
	FormatQSP     Format = "qsp/v1"
	FormatOpenSLO Format = "OpenSLO v1"
	FormatSloth   Format = "Sloth prometheus/v1"
	FormatPyrra   Format = "Pyrra v1alpha1"
)

// Import converts OpenSLO, Sloth or Pyrra files to qsp/v1 YAML. Documents
// of another format are errors. The diagnostics hold everything that could
// not be converted (errors) or was converted approximately (warnings), and
// the problems of the result validated as qsp/v1. The output always holds
// every object that converted and validates, even when others did not: one
// unconvertible SLO does not hide the rest of its file. Objects that
// converted but do not validate are left out, with a diagnostic saying so.
func Import(format Format, files ...string) ([]byte, Diagnostics, error) {
	p := loader{only: format}
	for _, f := range files {
		data, err := readFile(f)
		if err != nil {
			return nil, nil, fmt.Errorf("import %s: %w", f, err)
		}
		p.parse(f, data)
	}
	for _, df := range p.formats {
		if df.format != format {
			p.diags.add(Diagnostic{File: df.file, Line: df.line, Column: 1, Message: fmt.Sprintf("a %s document, not %s", df.format, format)})
		}
	}
	if len(p.formats) == 0 && !p.diags.HasErrors() && len(files) > 0 {
		p.diags.add(Diagnostic{File: files[0], Message: fmt.Sprintf("no %s documents found", format)})
	}
	p.convertOpenSLO()
	// Marshal before validating: validation fills in defaults, and the
	// output is the spec as converted, not as defaulted.
	docs := make([][]byte, len(p.objects))
	for i, o := range p.objects {
		b, err := Marshal(o)
		if err != nil {
			return nil, nil, err
		}
		docs[i] = b
	}
	_, diags := p.validate()
	// Leave out what does not validate, so the output loads on its own.
	invalid := map[string]bool{}
	for _, d := range diags.Errors() {
		if d.Object != "" {
			invalid[d.Object] = true
		}
	}
	var out []byte
	for i, o := range p.objects {
		ref := o.GetKind() + "/" + o.Meta().Name
		if invalid[ref] {
			w := o.Where()
			diags = append(diags, Diagnostic{File: w.File, Line: w.Line, Column: w.Column, Object: ref,
				Message: "not emitted: the converted object does not validate (see the errors above)"})
			continue
		}
		if len(out) > 0 {
			out = append(out, "---\n"...)
		}
		out = append(out, docs[i]...)
	}
	if len(out) > 0 {
		// The result must stand on its own: read it back as a user would.
		if _, again := LoadBytes("(imported qsp/v1)", out); again.HasErrors() {
			for _, d := range again.Errors() {
				d.Message = "the converted spec does not validate: " + d.Message
				diags = append(diags, d)
			}
		}
	}
	diags.Sort()
	return out, diags, nil
}

// Marshal writes objects as a multi-document qsp/v1 YAML stream.
func Marshal(objs ...Object) ([]byte, error) {
	if len(objs) == 0 {
		return nil, nil // an encoder closed without a document errs "expected STREAM-START"
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	for _, o := range objs {
		if err := enc.Encode(o); err != nil {
			return nil, fmt.Errorf("marshal %s/%s: %w", o.GetKind(), o.Meta().Name, err)
		}
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
