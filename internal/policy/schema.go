package policy

import (
	"encoding/json"
	"maps"
	"reflect"
	"strings"
	"sync"
	"time"
)

// The input schema lets OPA's type checker reject, when the spec loads, a
// module that reads a field the input does not have: `input.chnage.kind`
// would otherwise be undefined at every decision and its deny would never
// fire, a silent pass. It is derived from Input's JSON tags, so it cannot
// drift from what Evaluate sends.

var (
	schemaOnce sync.Once
	schemaDoc  map[string]any
)

// inputSchema returns the JSON schema of Input as decoded JSON. It is
// built once and only read after that.
func inputSchema() map[string]any {
	schemaOnce.Do(func() { schemaDoc = schemaOf(reflect.TypeFor[Input]()) })
	return schemaDoc
}

// InputSchema returns the JSON schema (draft 07) of the document policies
// see as input, for the API and for editors of Rego modules.
func InputSchema() []byte {
	doc := map[string]any{
		"$schema": "http://json-schema.org/draft-07/schema#",
		"title":   "QSP policy input",
	}
	maps.Copy(doc, inputSchema())
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		panic(err) // the schema is built from plain maps and strings
	}
	return b
}

var timeType = reflect.TypeFor[time.Time]()

// schemaOf maps a Go type to JSON schema: structs are closed objects (an
// unknown field is a type error), maps open ones, pointers nullable.
func schemaOf(t reflect.Type) map[string]any {
	if t == timeType {
		return map[string]any{"type": "string"}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return map[string]any{"anyOf": []any{schemaOf(t.Elem()), map[string]any{"type": "null"}}}
	case reflect.Struct:
		props := map[string]any{}
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" {
				continue
			}
			if name == "" {
				name = f.Name
			}
			props[name] = schemaOf(f.Type)
		}
		return map[string]any{"type": "object", "properties": props, "additionalProperties": false}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": schemaOf(t.Elem())}
	case reflect.Slice, reflect.Array:
		return map[string]any{"type": "array", "items": schemaOf(t.Elem())}
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	}
	return map[string]any{} // anything
}
