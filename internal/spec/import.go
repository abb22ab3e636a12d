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
)

// Import converts OpenSLO or Sloth files to qsp/v1 YAML. Documents of
// another format are errors. The diagnostics hold everything that could
// not be converted (errors) or was converted approximately (warnings), and
// the problems of the result validated as qsp/v1.
func Import(format Format, files ...string) ([]byte, Diagnostics, error) {
	var p loader
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
	if len(p.formats) == 0 && !p.diags.HasErrors() {
		p.diags.add(Diagnostic{File: files[0], Message: fmt.Sprintf("no %s documents found", format)})
	}
	p.convertOpenSLO()
	out, err := Marshal(p.objects...)
	if err != nil {
		return nil, nil, err
	}
	_, diags := p.validate()
	if !diags.HasErrors() {
		// The result must stand on its own: read it back as a user would.
		if _, again := LoadBytes("(imported qsp/v1)", out); again.HasErrors() {
			for _, d := range again.Errors() {
				d.Message = "the converted spec does not validate: " + d.Message
				diags = append(diags, d)
			}
		}
	}
	return out, diags, nil
}

// Marshal writes objects as a multi-document qsp/v1 YAML stream.
func Marshal(objs ...Object) ([]byte, error) {
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
