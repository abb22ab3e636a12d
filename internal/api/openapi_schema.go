package api

import (
	"encoding"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/gate/canary"
	"github.com/qsp-dev/qsp/internal/gate/vuln"
	"github.com/qsp-dev/qsp/internal/slo"
)

// schemaGen derives JSON Schemas (OpenAPI 3.1 dialect) from the Go types
// handlers return, so the document cannot drift from what the handlers
// encode: field names, optional fields (omitempty), nullable pointers,
// slices and maps (nil encodes as null).
type schemaGen struct {
	defs map[string]any
	seen map[reflect.Type]string
	errs []error
}

func newSchemaGen() *schemaGen {
	return &schemaGen{defs: map[string]any{}, seen: map[reflect.Type]string{}}
}

var (
	jsonMarshaler = reflect.TypeFor[json.Marshaler]()
	textMarshaler = reflect.TypeFor[encoding.TextMarshaler]()
	timeType      = reflect.TypeFor[time.Time]()
	rawType       = reflect.TypeFor[json.RawMessage]()
)

// customSchemas describe the types that encode themselves. A type with its
// own MarshalJSON or MarshalText that is not listed here is an error, so a
// new one cannot slip into the document with a wrong shape.
var customSchemas = map[reflect.Type]map[string]any{
	reflect.TypeFor[engine.Durations](): object(map[string]any{
		"allowed":   str("How long a full outage the budget allows over the window (a Prometheus duration)."),
		"remaining": str("How much of it is left; negative when overspent."),
	}, "allowed", "remaining"),
	reflect.TypeFor[slo.BurnCondition](): object(map[string]any{
		"long":   str("The long window, e.g. 1h."),
		"short":  str("The short window, e.g. 5m."),
		"factor": map[string]any{"type": "number"},
	}, "long", "short", "factor"),
	reflect.TypeFor[canary.Float](): {
		"description": "A number; null for NaN, \"+Inf\" or \"-Inf\" for the infinities.",
		"anyOf":       []any{map[string]any{"type": "number"}, map[string]any{"type": "null"}, map[string]any{"type": "string", "enum": []any{"+Inf", "-Inf"}}},
	},
	reflect.TypeFor[vuln.Severity](): {"type": "string", "enum": []any{"unknown", "low", "medium", "high", "critical"}},
}

func str(desc string) map[string]any { return map[string]any{"type": "string", "description": desc} }

func object(props map[string]any, required ...string) map[string]any {
	return map[string]any{"type": "object", "properties": props, "required": required}
}

func nullable(s map[string]any) map[string]any {
	if t, ok := s["type"].(string); ok {
		c := make(map[string]any, len(s))
		for k, v := range s {
			c[k] = v
		}
		c["type"] = []any{t, "null"}
		return c
	}
	return map[string]any{"anyOf": []any{s, map[string]any{"type": "null"}}}
}

// of returns the schema of t; named structs become components.
func (g *schemaGen) of(t reflect.Type) map[string]any {
	if s, ok := customSchemas[t]; ok {
		return s
	}
	switch {
	case t == timeType:
		return map[string]any{"type": "string", "format": "date-time"}
	case t == rawType:
		return map[string]any{"description": "Any JSON value."}
	case t.Kind() != reflect.Pointer && t.Kind() != reflect.Interface && (t.Implements(jsonMarshaler) || reflect.PointerTo(t).Implements(jsonMarshaler) ||
		t.Implements(textMarshaler) || reflect.PointerTo(t).Implements(textMarshaler)):
		g.errs = append(g.errs, fmt.Errorf("openapi: %s encodes itself: describe it in customSchemas", t))
		return map[string]any{}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return nullable(g.of(t.Elem()))
	case reflect.Interface:
		return map[string]any{}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		s := map[string]any{"type": "integer"}
		if t == reflect.TypeFor[time.Duration]() || t.Name() == "Duration" {
			s["description"] = "A duration in nanoseconds."
		}
		return s
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return map[string]any{"type": "string", "contentEncoding": "base64"}
		}
		s := map[string]any{"type": "array", "items": g.of(t.Elem())}
		if t.Kind() == reflect.Slice {
			return nullable(s)
		}
		return s
	case reflect.Map:
		return nullable(map[string]any{"type": "object", "additionalProperties": g.of(t.Elem())})
	case reflect.Struct:
		return g.structRef(t)
	}
	g.errs = append(g.errs, fmt.Errorf("openapi: no schema for %s", t))
	return map[string]any{}
}

// structRef returns a reference to a named struct's component (built on
// first use), or the inline schema of an anonymous or generic one.
func (g *schemaGen) structRef(t reflect.Type) map[string]any {
	name := componentName(t)
	if name == "" {
		return g.structSchema(t)
	}
	if _, ok := g.seen[t]; !ok {
		g.seen[t] = name
		g.defs[name] = map[string]any{} // break cycles
		g.defs[name] = g.structSchema(t)
	}
	return map[string]any{"$ref": "#/components/schemas/" + name}
}

// componentName is "package.Type" for named, non-generic structs.
func componentName(t reflect.Type) string {
	if t.Name() == "" || strings.ContainsAny(t.Name(), "[]") {
		return ""
	}
	pkg := t.PkgPath()
	pkg = pkg[strings.LastIndexByte(pkg, '/')+1:]
	name := t.Name()
	if pkg == "api" {
		// The API's own wire types are unexported; components are named
		// for people.
		name = strings.ToUpper(name[:1]) + name[1:]
	}
	return pkg + "." + name
}

func (g *schemaGen) structSchema(t reflect.Type) map[string]any {
	props := map[string]any{}
	var required []string
	g.fields(t, props, &required)
	slices.Sort(required)
	s := map[string]any{"type": "object", "properties": props}
	if len(required) > 0 {
		s["required"] = required
	}
	return s
}

func (g *schemaGen) fields(t reflect.Type, props map[string]any, required *[]string) {
	for f := range t.Fields() {
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				g.fields(ft, props, required)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		props[name] = g.of(f.Type)
		optional := false
		for o := range strings.SplitSeq(opts, ",") {
			optional = optional || o == "omitempty" || o == "omitzero"
		}
		if !optional {
			*required = append(*required, name)
		}
	}
}
