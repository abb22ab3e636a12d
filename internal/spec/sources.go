package spec

import "fmt"

// Source is one in-memory spec file: a name that diagnostics and
// Origin.File carry (a path, or a name such as "slos.qsp.dev/team/checkout"
// for an object read from Kubernetes) and its YAML.
type Source struct {
	Name string
	Data []byte
}

// LoadSources is Load of the spec files and folders in paths together with
// in-memory sources, validated as one set, so references between them
// resolve and names are unique across both. Each source is parsed the way
// LoadBytes parses its file; sources larger than MaxFileSize are refused
// unread.
func LoadSources(paths []string, sources []Source) (*Set, Diagnostics) {
	var p loader
	for _, path := range paths {
		files, err := specFiles(path)
		if err != nil {
			p.diags.add(Diagnostic{File: path, Message: err.Error()})
			continue
		}
		for _, f := range files {
			data, err := readFile(f)
			if err != nil {
				p.diags.add(Diagnostic{File: f, Message: err.Error()})
				continue
			}
			p.parse(f, data)
		}
	}
	for _, s := range sources {
		if len(s.Data) > MaxFileSize {
			p.diags.add(Diagnostic{File: s.Name, Message: fmt.Sprintf("larger than %d MiB", MaxFileSize>>20)})
			continue
		}
		p.parse(s.Name, s.Data)
	}
	return p.finish()
}
