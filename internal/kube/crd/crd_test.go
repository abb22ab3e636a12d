package crd

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/qsp-dev/qsp/internal/spec"
)

var update = flag.Bool("update", false, "rewrite deploy/helm/qsp/crds")

const crdDir = "../../../deploy/helm/qsp/crds"

// TestGolden regenerates the CRDs and diffs them against the checked-in
// manifests: a spec field added without `make crds` fails here.
func TestGolden(t *testing.T) {
	files, err := Manifests("../../spec", ".")
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.MkdirAll(crdDir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, want := range files {
		path := filepath.Join(crdDir, name)
		if *update {
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run make crds)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale: run make crds", path)
		}
	}
	entries, err := os.ReadDir(crdDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if _, ok := files[e.Name()]; !ok && filepath.Ext(e.Name()) == ".yaml" {
			t.Errorf("%s: not generated; remove it or add its kind", e.Name())
		}
	}
}

// TestSchemaCoversSpec walks every field of every kind's spec type and
// checks the schema has a property for it, typed as the decoder reads it.
func TestSchemaCoversSpec(t *testing.T) {
	for _, k := range Kinds {
		s, err := k.Schema(nil)
		if err != nil {
			t.Fatal(err)
		}
		checkStructural(t, k.Kind, s.Properties["spec"])
	}
}

// checkStructural enforces the structural-schema rules the API server
// applies: every node has a type unless it preserves unknown fields.
func checkStructural(t *testing.T, path string, s *Schema) {
	t.Helper()
	if s.Type == "" && !s.PreserveUnknownFields {
		t.Errorf("%s: no type", path)
	}
	for name, p := range s.Properties {
		checkStructural(t, path+"."+name, p)
	}
	if s.Items != nil {
		checkStructural(t, path+"[]", s.Items)
	}
	if s.AdditionalProperties != nil {
		checkStructural(t, path+"{}", s.AdditionalProperties)
	}
}

func TestSchemaTypes(t *testing.T) {
	slo, _ := KindOf(spec.KindSLO)
	s, err := slo.Schema(nil)
	if err != nil {
		t.Fatal(err)
	}
	sp := s.Properties["spec"]
	for _, c := range []struct {
		path []string
		want Schema
	}{
		{[]string{"service"}, Schema{Type: "string"}},
		{[]string{"maxGroups"}, Schema{Type: "integer"}},
		{[]string{"objective"}, Schema{PreserveUnknownFields: true}},
		{[]string{"window"}, Schema{PreserveUnknownFields: true}},
		{[]string{"indicator", "latency", "threshold"}, Schema{Type: "string"}},
		{[]string{"indicator", "latency", "percentile"}, Schema{Type: "number"}},
		{[]string{"alerting", "page", "disabled"}, Schema{Type: "boolean"}},
		{[]string{"alerting", "labels"}, Schema{Type: "object", AdditionalProperties: &Schema{Type: "string"}}},
	} {
		n := sp
		for _, p := range c.path {
			n = n.Properties[p]
			if n == nil {
				t.Fatalf("%v: missing", c.path)
			}
		}
		got := *n
		got.Description = ""
		if got.AdditionalProperties != nil {
			ap := *got.AdditionalProperties
			ap.Description = ""
			got.AdditionalProperties = &ap
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%v: got %+v, want %+v", c.path, got, c.want)
		}
	}
	// Policy data is free-form.
	pol, _ := KindOf(spec.KindPolicy)
	ps, _ := pol.Schema(nil)
	if d := ps.Properties["spec"].Properties["data"]; d == nil || !d.PreserveUnknownFields {
		t.Errorf("policy data: got %+v, want preserve-unknown-fields", d)
	}
	// The status carries the inline conditions.
	if st := s.Properties["status"]; st.Properties["conditions"] == nil || st.Properties["budget"] == nil {
		t.Errorf("SLO status: got %v properties", len(st.Properties))
	}
}

func TestRenderIsYAML(t *testing.T) {
	for _, k := range Kinds {
		b, err := k.Render(nil)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s: %v", k.Kind, err)
		}
		if m["kind"] != "CustomResourceDefinition" {
			t.Errorf("%s: kind %v", k.Kind, m["kind"])
		}
	}
}

func TestRecursiveTypeRefused(t *testing.T) {
	type node struct {
		Next *node `yaml:"next"`
	}
	if _, err := For(reflect.TypeFor[node](), "yaml", nil); err == nil {
		t.Fatal("got no error for a recursive type")
	}
}
