package spec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// MaxFileSize bounds one spec file; larger files are refused unread.
const MaxFileSize = 8 << 20

// Load reads the spec files and directories in paths (directories
// recursively, *.yaml and *.yml), converts OpenSLO and Sloth documents,
// validates everything together and returns the set with every diagnostic
// found. The set is complete only when diags.HasErrors() is false.
func Load(paths ...string) (*Set, Diagnostics) {
	return LoadSources(paths, nil)
}

// LoadBytes is Load for one in-memory file named name; relative policy
// paths are resolved against the working directory.
func LoadBytes(name string, data []byte) (*Set, Diagnostics) {
	var p loader
	p.parse(name, data)
	return p.finish()
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// Devices and pipes could block forever or never end.
	if st, err := f.Stat(); err != nil {
		return nil, err
	} else if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("file larger than %d MiB", MaxFileSize>>20)
	}
	return data, nil
}

// specFiles expands path into the spec files it names.
func specFiles(path string) ([]string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return []string{path}, nil
	}
	var files []string
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			// Hidden folders, and test fixtures as Go tools skip them:
			// a repository's root then loads its specs, not its tests'.
			if p != path && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if ext := filepath.Ext(p); ext == ".yaml" || ext == ".yml" {
			files = append(files, p)
		}
		return nil
	})
	slices.Sort(files)
	return files, err
}

// loader accumulates objects and diagnostics across files.
type loader struct {
	diags   Diagnostics
	objects []Object
	openslo []*openSLODoc
	formats []docFormat // the format of every document read
	only    Format      // when set, documents of other formats are not read
}

// docFormat records which language a document was written in.
type docFormat struct {
	file   string
	line   int
	format Format
}

// document is one YAML document and what is known about it.
type document struct {
	file string
	node *yaml.Node // the document's root mapping
}

func (p *loader) parse(file string, data []byte) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for i := 0; ; i++ {
		var root yaml.Node
		err := dec.Decode(&root)
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			p.diags.add(yamlError(file, err))
			return
		}
		if len(root.Content) == 0 {
			continue // empty document ("---" at the end)
		}
		n := root.Content[0]
		if isNull(n) {
			continue
		}
		if n.Kind == yaml.SequenceNode {
			// OpenSLO's list form: one YAML document holding a sequence of
			// objects, as OpenSLO's own SDK decodes it.
			for j, item := range n.Content {
				if item.Kind != yaml.MappingNode {
					p.diags.add(Diagnostic{File: file, Line: item.Line, Column: item.Column, Message: fmt.Sprintf("document %d, item %d: expected a mapping with apiVersion and kind, got %s", i+1, j+1, describe(item))})
					continue
				}
				p.parseDocument(document{file: file, node: item})
			}
			continue
		}
		if n.Kind != yaml.MappingNode {
			p.diags.add(Diagnostic{File: file, Line: n.Line, Column: n.Column, Message: fmt.Sprintf("document %d: expected a mapping with apiVersion and kind, got %s", i+1, describe(n))})
			continue
		}
		p.parseDocument(document{file: file, node: n})
	}
}

// yamlError turns a YAML syntax error ("yaml: line 6: did not find
// expected ',' or '}'") into a diagnostic with its line.
func yamlError(file string, err error) Diagnostic {
	msg := strings.TrimSpace(strings.TrimPrefix(err.Error(), "yaml: "))
	d := Diagnostic{File: file}
	var line int
	if _, scanErr := fmt.Sscanf(msg, "line %d:", &line); scanErr == nil {
		d.Line, d.Column = line, 1
		_, msg, _ = strings.Cut(msg, ":")
	}
	d.Message = "invalid YAML: " + strings.TrimSpace(msg)
	return d
}

// field returns the value node of key in a mapping, or nil.
func field(n *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			v := n.Content[i+1]
			if v.Kind == yaml.AliasNode && v.Alias != nil {
				v = v.Alias
			}
			return v
		}
	}
	return nil
}

func scalar(n *yaml.Node, key string) string {
	v := field(n, key)
	if v == nil || v.Kind != yaml.ScalarNode {
		return ""
	}
	return v.Value
}

func (p *loader) parseDocument(doc document) {
	apiVersion := scalar(doc.node, "apiVersion")
	kind := scalar(doc.node, "kind")
	// record notes the document's format and says whether to read it:
	// an import reads only the format it was asked for.
	record := func(f Format) bool {
		p.formats = append(p.formats, docFormat{doc.file, doc.node.Line, f})
		return p.only == "" || p.only == f
	}
	switch {
	case apiVersion == APIVersion:
		if record(FormatQSP) {
			p.parseQSP(doc, kind)
		}
	case apiVersion == "openslo/v1":
		if record(FormatOpenSLO) {
			p.parseOpenSLO(doc, kind)
		}
	case apiVersion == openSLOv1alpha || apiVersion == openSLOv2alpha:
		if record(FormatOpenSLO) {
			p.upgradeOpenSLO(doc, apiVersion, kind)
		}
	case apiVersion == "sloth.slok.dev/v1" && kind == "PrometheusServiceLevel":
		if record(FormatSloth) {
			p.parseSloth(doc, field(doc.node, "spec"), true)
		}
	case apiVersion == "pyrra.dev/v1alpha1" && kind == "ServiceLevelObjective":
		if record(FormatPyrra) {
			p.parsePyrra(doc)
		}
	case scalar(doc.node, "version") == "prometheus/v1":
		if record(FormatSloth) {
			p.parseSloth(doc, doc.node, false)
		}
	case apiVersion == "":
		p.diags.add(Diagnostic{File: doc.file, Line: doc.node.Line, Column: doc.node.Column, Field: "apiVersion",
			Message: "missing; want qsp/v1 (or openslo/v1, pyrra.dev/v1alpha1, or a Sloth document with version: prometheus/v1)"})
	default:
		v := field(doc.node, "apiVersion")
		p.diags.add(Diagnostic{File: doc.file, Line: v.Line, Column: v.Column, Field: "apiVersion",
			Message: fmt.Sprintf("unknown apiVersion %q; want qsp/v1, openslo/v1, sloth.slok.dev/v1, pyrra.dev/v1alpha1 or Sloth prometheus/v1", apiVersion)})
	}
}

func (p *loader) parseQSP(doc document, kind string) {
	var obj Object
	switch kind {
	case KindService:
		obj = &Service{}
	case KindSLO:
		obj = &SLO{}
	case KindPolicy:
		obj = &Policy{}
	case KindGate:
		obj = &Gate{}
	case KindPlaybook:
		obj = &Playbook{}
	default:
		at := field(doc.node, "kind")
		if at == nil {
			at = doc.node
		}
		p.diags.add(Diagnostic{File: doc.file, Line: at.Line, Column: at.Column, Field: "kind",
			Message: fmt.Sprintf("unknown kind %q; want one of Service, SLO, Policy, Gate, Playbook", kind)})
		return
	}
	d := &decoder{diags: &p.diags, file: doc.file, pos: map[string]*yaml.Node{}, failed: map[string]bool{}}
	d.object = kind + "/" + scalar(orEmpty(field(doc.node, "metadata")), "name")
	d.decode(doc.node, reflect.ValueOf(obj).Elem(), "")
	o := obj.Where()
	*o = Origin{File: doc.file, Line: doc.node.Line, Column: doc.node.Column, pos: d.pos, failed: d.failed}
	p.objects = append(p.objects, obj)
}

var emptyMapping = &yaml.Node{Kind: yaml.MappingNode}

func orEmpty(n *yaml.Node) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return emptyMapping
	}
	return n
}

// finish validates everything parsed so far as one set.
func (p *loader) finish() (*Set, Diagnostics) {
	p.convertOpenSLO()
	return p.validate()
}

// validate sorts the objects into a set and validates it.
func (p *loader) validate() (*Set, Diagnostics) {
	set := &Set{}
	for _, o := range p.objects {
		switch o := o.(type) {
		case *Service:
			set.Services = append(set.Services, o)
		case *SLO:
			set.SLOs = append(set.SLOs, o)
		case *Policy:
			set.Policies = append(set.Policies, o)
		case *Gate:
			set.Gates = append(set.Gates, o)
		case *Playbook:
			set.Playbooks = append(set.Playbooks, o)
		}
	}
	v := validator{set: set, diags: &p.diags}
	v.validate()
	p.diags.Sort()
	return set, p.diags
}

// Decode strictly decodes one YAML document from data into v (a pointer to
// a struct with yaml tags), the way spec files are decoded: unknown fields,
// duplicate keys and wrong types are reported with file:line:col, all at
// once. Other configuration files (the server's) use it.
func Decode(file string, data []byte, v any) Diagnostics {
	var diags Diagnostics
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		diags.add(yamlError(file, err))
		return diags
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		panic("spec.Decode: v must be a non-nil pointer")
	}
	if len(root.Content) == 0 {
		return diags
	}
	d := &decoder{diags: &diags, file: file}
	d.decode(&root, rv.Elem(), "")
	return diags
}
