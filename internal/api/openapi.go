package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/qsp-dev/qsp/internal/alert"
	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/gate"
	"github.com/qsp-dev/qsp/internal/telemetry"
)

// opDoc documents one route of the API. Request and response shapes are
// given as Go values of the types the handlers decode and encode; their
// schemas are derived from the types (openapi_schema.go).
type opDoc struct {
	Summary     string
	Description string
	Tag         string
	Params      []paramDoc
	// Body is a value of the request body's type; nil for no body.
	Body any
	// BodyType is the request's content type; default application/json.
	// Other types are documented as binary.
	BodyType string
	// Empty says success has no body (204).
	Empty bool
	// Status is the status of success; default 200. Also lists other
	// statuses of success with the same body.
	Status []int
	// Response is a value of the response's type; nil with RawSchema set
	// for a document whose shape is its own (JSON Schema, OpenAPI).
	Response  any
	RawSchema map[string]any
	// Errors are the error statuses the route answers besides 401, 403,
	// 429 and 500, which every protected route may.
	Errors []int
}

// paramDoc documents a path or query parameter.
type paramDoc struct {
	Name, In, Description string
	Schema                map[string]any
	Required              bool
}

func pathParam(name, desc string) paramDoc {
	return paramDoc{Name: name, In: "path", Description: desc, Schema: map[string]any{"type": "string"}, Required: true}
}

func query(name, desc string) paramDoc {
	return paramDoc{Name: name, In: "query", Description: desc, Schema: map[string]any{"type": "string"}}
}

func queryEnum(name, desc string, values ...string) paramDoc {
	vs := make([]any, len(values))
	for i, v := range values {
		vs[i] = v
	}
	return paramDoc{Name: name, In: "query", Description: desc, Schema: map[string]any{"type": "string", "enum": vs}}
}

var (
	pageParamDocs = []paramDoc{
		{Name: "limit", In: "query", Description: "Page size, 1 to 10000; default 100.", Schema: map[string]any{"type": "integer", "minimum": 1, "maximum": MaxPageLimit}},
		{Name: "offset", In: "query", Description: "Items to skip.", Schema: map[string]any{"type": "integer", "minimum": 0}},
	}
	rangeParamDocs = []paramDoc{
		query("from", "Start of the range: RFC 3339 or Unix seconds."),
		query("to", "End of the range: RFC 3339 or Unix seconds."),
	}
)

func params(ps ...[]paramDoc) []paramDoc { return slices.Concat(ps...) }

// apiDocs documents every route of the API, keyed by its ServeMux
// pattern. A test checks that the registered routes and this table agree
// both ways.
var apiDocs = map[string]opDoc{
	"GET /api/v1/openapi.json": {Tag: "meta", Summary: "This document (OpenAPI 3.1).",
		RawSchema: map[string]any{"type": "object", "description": "An OpenAPI 3.1 document."}},
	"GET /api/v1/whoami": {Tag: "meta", Summary: "Who the request authenticates as, and its role.", Response: Principal{}},

	"GET /api/v1/services": {Tag: "services", Summary: "Every service at a glance: worst state, and per category the worst state and least budget left.",
		Params: params([]paramDoc{
			queryEnum("state", "Only services in this (worst) state.", stateNames()...),
			{Name: "tier", In: "query", Description: "Only services of this tier.", Schema: map[string]any{"type": "integer", "minimum": 1, "maximum": 4}},
			query("owner", "Only services of this owner."),
		}, pageParamDocs),
		Response: page[ServiceSummary]{}, Errors: []int{400}},
	"GET /api/v1/services/{name}": {Tag: "services", Summary: "A service and the status of each of its SLO groups.",
		Params: []paramDoc{pathParam("name", "The service.")}, Response: serviceDetail{}, Errors: []int{404}},

	"GET /api/v1/slos": {Tag: "slos", Summary: "The status of every SLO group: state, SLI, budget, burn rate per window, alerts.",
		Params: params([]paramDoc{
			query("service", "Only SLOs of this service."),
			queryEnum("category", "Only SLOs of this category.", "quality", "security", "performance"),
			queryEnum("state", "Only SLO groups in this state.", stateNames()...),
		}, pageParamDocs),
		Response: page[*engine.Status]{}, Errors: []int{400}},
	"GET /api/v1/slos/{name}": {Tag: "slos", Summary: "An SLO's groups (one for an ungrouped SLO) with their status.",
		Params: []paramDoc{pathParam("name", "The SLO.")}, Response: sloGroups{}, Errors: []int{404}},
	"GET /api/v1/slos/{name}/traces": {Tag: "slos", Summary: "Example traces of an SLO's bad events, spread over the window, newest first.",
		Description: "From exemplars: the embedded exemplar storage or the remote backend's query_exemplars. Served when the telemetry source has exemplars.",
		Params:      []paramDoc{pathParam("name", "The SLO."), query("window", "How far back, e.g. 1h (default), at most 31d.")}, Response: sloTraces{}, Errors: []int{400, 404, 502}},
	"GET /api/v1/slos/{name}/history": {Tag: "slos", Summary: "An SLO group's SLI, remaining budget and error ratio over a time range.",
		Description: "Default range: the SLO window up to the last evaluation; default step: about 300 points.",
		Params: params([]paramDoc{
			pathParam("name", "The SLO."),
			query("group", "The group's key; required for a grouped SLO."),
		}, rangeParamDocs, []paramDoc{query("step", "Whole minutes between points, e.g. 5m.")}),
		Response: historyView{}, Errors: []int{400, 404}},

	"GET /api/v1/alerts": {Tag: "alerts", Summary: "Alerts that are pending, firing or resolved, with what receivers were told.",
		Params: params([]paramDoc{
			query("service", "Only alerts of this service."), query("slo", "Only alerts of this SLO."),
			query("severity", "Only alerts of this severity: page, ticket, no_data."),
			queryEnum("state", "Only alerts in this state.", "pending", "firing", "resolved"),
		}, pageParamDocs),
		Response: page[alertView]{}, Errors: []int{400}},
	"GET /api/v1/incidents": {Tag: "incidents", Summary: "Incidents, newest first, with their alerts.",
		Params: params([]paramDoc{
			query("service", "Only incidents of this service (empty: the telemetry source's)."),
			queryEnum("state", "Only open or closed incidents.", "open", "closed"),
		}, pageParamDocs),
		Response: page[alert.Incident]{}, Errors: []int{400}},
	"GET /api/v1/incidents/stats": {Tag: "incidents", Summary: "Time to detect, acknowledge and repair per service.",
		Params: []paramDoc{query("window", "How far back, e.g. 7d; default 30d.")}, Response: incidentStatsView{}, Errors: []int{400}},
	"GET /api/v1/incidents/{id}": {Tag: "incidents", Summary: "An incident with its alerts and timeline.",
		Params: []paramDoc{pathParam("id", "The incident's number.")}, Response: incidentWithTraces{}, Errors: []int{400, 404}},
	"POST /api/v1/incidents/{id}/ack": {Tag: "incidents", Summary: "Acknowledge an incident (operator).",
		Params: []paramDoc{pathParam("id", "The incident's number.")}, Body: ackRequest{}, Response: alert.Incident{}, Errors: []int{400, 404, 409, 413, 415}},

	"GET /api/v1/policy/schema": {Tag: "decisions", Summary: "The JSON Schema of the policy input documents.",
		RawSchema: map[string]any{"type": "object", "description": "A JSON Schema."}},
	"GET /api/v1/decisions": {Tag: "decisions", Summary: "The policy decision log, newest first, without inputs.",
		Params: params([]paramDoc{
			queryEnum("point", "Only decisions of this decision point.", "gate", "playbook"),
			query("subject", "Only decisions about this gate or playbook."), query("service", "Only decisions about this service."),
			queryEnum("result", "Only decisions with this result.", "allow", "warn", "deny"),
		}, rangeParamDocs, pageParamDocs),
		Response: page[decisionView]{}, Errors: []int{400}},
	"GET /api/v1/decisions/{id}": {Tag: "decisions", Summary: "A policy decision with its input.",
		Params: []paramDoc{pathParam("id", "The decision's ID.")}, Response: decisionView{}, Errors: []int{404}},
	"GET /api/v1/deploys": {Tag: "deploys", Summary: "Deploy markers, newest first.",
		Params:   params([]paramDoc{query("service", "Only deploys of this service.")}, rangeParamDocs, pageParamDocs),
		Response: page[deployView]{}, Errors: []int{400}},
	"GET /api/v1/gates": {Tag: "gates", Summary: "The deploy gates of the specs.", Params: pageParamDocs,
		Response: page[gateView]{}, Errors: []int{400}},
	"GET /api/v1/gates/{name}": {Tag: "gates", Summary: "A deploy gate.", Params: []paramDoc{pathParam("name", "The gate.")},
		Response: gateView{}, Errors: []int{404}},
	"GET /api/v1/gates/{name}/canary/plan": {Tag: "gates", Summary: "How long the gate's canary analysis must run at a given traffic for each check to reach 80% and 95% power.",
		Description: "The sample-size advice of every configured check, for the effect it is configured to catch, over the rates given; the first plan of a configuration may take a second (simulation), later ones are cached.",
		Params: []paramDoc{pathParam("name", "The gate."),
			query("requestsPerMinute", "Requests each side serves per minute (required)."),
			query("samplesPerMinute", "Samples each side collects per minute for sample metrics; default one per query step."),
			query("baselineErrorRate", "Expected baseline error rate (0-1) of count metrics; default 0.01."),
			query("sigma", "Expected log-scale spread of sample metrics; default 0.3.")},
		Response: &gate.CanaryPlan{}, Errors: []int{400, 404, 422}},
	"GET /api/v1/gates/evaluations": {Tag: "gates", Summary: "Gate evaluations, newest first, with their reasons.",
		Params: params([]paramDoc{
			query("gate", "Only evaluations of this gate."), query("service", "Only evaluations for this service."),
			queryEnum("state", "Only evaluations in this state (alias: verdict).", "running", "pass", "fail", "inconclusive", "error"),
			queryEnum("verdict", "Alias of state.", "running", "pass", "fail", "inconclusive", "error"),
		}, rangeParamDocs, pageParamDocs),
		Response: page[*gate.Evaluation]{}, Errors: []int{400}},
	"GET /api/v1/gates/evaluations/{id}": {Tag: "gates", Summary: "A gate evaluation: verdict, reasons and the numbers behind them.",
		Params: []paramDoc{pathParam("id", "The evaluation's ID.")}, Response: &gate.Evaluation{}, Errors: []int{404}},
	"POST /api/v1/gates/{name}/evaluations": {Tag: "gates", Summary: "Evaluate a gate for a change (operator).",
		Description: "201 with the verdict; 202 with the running evaluation when the gate waits for canary intervals (poll its Location).",
		Params:      []paramDoc{pathParam("name", "The gate.")}, Body: evaluationRequest{}, Status: []int{201, 202},
		Response: &gate.Evaluation{}, Errors: []int{400, 404, 413, 415, 422, 503}},

	// The receivers (internal/telemetry), under /api/v1 with the rest.
	"POST /api/v1/write": {Tag: "ingest", Summary: "Prometheus remote_write 1.0 (snappy-compressed protobuf) into the embedded TSDB (ingest).",
		BodyType: "application/x-protobuf", Body: []byte{}, Status: []int{204}, Empty: true, Errors: []int{400, 413, 415, 503}},
	"POST /api/v1/events": {Tag: "ingest", Summary: "Good/bad event counts and deploy markers from services without Prometheus metrics (ingest).",
		Description: "All or nothing: one invalid event refuses the request with a message per problem.",
		Body:        eventsBody{}, Response: telemetry.EventsResponse{}, Errors: []int{400, 413, 415, 503}},
}

// eventsBody documents the body of the events API, whose events are
// telemetry.Event; the OpenAPI test validates real answers against it.
type eventsBody struct {
	Events []telemetry.Event `json:"events"`
}

// Response types of routes that return maps or anonymous values.
type sloGroups struct {
	SLO    string           `json:"slo"`
	Groups []*engine.Status `json:"groups"`
}

type incidentStatsView struct {
	From     time.Time            `json:"from"`
	To       time.Time            `json:"to"`
	Services []alert.ServiceStats `json:"services"`
}

// ackRequest: by defaults to the authenticated caller.
type ackRequest struct {
	By   string `json:"by,omitempty"`
	Note string `json:"note,omitempty"`
}

func stateNames() []string {
	out := make([]string, len(states))
	for i, s := range states {
		out[i] = string(s)
	}
	return out
}

// errorSchema is the body of every error.
var errorSchema = map[string]any{"type": "object", "properties": map[string]any{"error": map[string]any{"type": "string"}}, "required": []any{"error"}}

// openAPIDoc is the built document of an API and the error met building
// it.
type openAPIDoc struct {
	once sync.Once
	json []byte
	err  error
}

// Document returns the OpenAPI 3.1 document of the routes under /api/v1/,
// built from apiDocs. Routes without documentation are an error.
func Document(routes []Route) (map[string]any, error) {
	g := newSchemaGen()
	paths := map[string]any{}
	var errs []error
	for _, rt := range routes {
		if !strings.HasPrefix(rt.Path(), "/api/v1/") {
			continue
		}
		d, ok := apiDocs[rt.Pattern]
		if !ok {
			errs = append(errs, fmt.Errorf("openapi: route %s is not documented in apiDocs", rt.Pattern))
			continue
		}
		method, path := strings.ToLower(rt.Method()), rt.Path()
		item, _ := paths[path].(map[string]any)
		if item == nil {
			item = map[string]any{}
			paths[path] = item
		}
		item[method] = operation(g, rt, d)
	}
	errs = append(errs, g.errs...)
	g.defs["Error"] = errorSchema
	doc := map[string]any{
		"openapi": "3.1.0",
		"info": map[string]any{
			"title":       "QSP API",
			"version":     "v1",
			"description": "Services, SLOs, alerts, incidents, gates, decisions and playbook runs of a QSP server. Authenticate with `Authorization: Bearer <token>`; each operation names the role it needs in x-qsp-role (viewer < operator < admin; ingest apart).",
		},
		"servers":    []any{map[string]any{"url": "/"}},
		"paths":      paths,
		"security":   []any{map[string]any{"bearer": []any{}}},
		"components": map[string]any{"schemas": g.defs, "securitySchemes": map[string]any{"bearer": map[string]any{"type": "http", "scheme": "bearer"}}},
	}
	return doc, errors.Join(errs...)
}

func operation(g *schemaGen, rt Route, d opDoc) map[string]any {
	op := map[string]any{
		"operationId": operationID(rt.Pattern),
		"summary":     d.Summary,
		"tags":        []any{d.Tag},
		"x-qsp-role":  string(rt.Role),
	}
	if d.Description != "" {
		op["description"] = d.Description
	}
	if rt.Role == RolePublic {
		op["security"] = []any{}
	}
	var ps []any
	for _, p := range d.Params {
		m := map[string]any{"name": p.Name, "in": p.In, "schema": p.Schema}
		if p.Description != "" {
			m["description"] = p.Description
		}
		if p.Required {
			m["required"] = true
		}
		ps = append(ps, m)
	}
	if len(ps) > 0 {
		op["parameters"] = ps
	}
	switch {
	case d.BodyType != "":
		op["requestBody"] = map[string]any{"required": true, "content": map[string]any{d.BodyType: map[string]any{"schema": map[string]any{"type": "string", "format": "binary"}}}}
	case d.Body != nil:
		op["requestBody"] = map[string]any{"required": true, "content": map[string]any{"application/json": map[string]any{"schema": g.of(reflect.TypeOf(d.Body))}}}
	}
	var body map[string]any
	switch {
	case d.Empty:
	case d.RawSchema != nil:
		body = d.RawSchema
	default:
		body = g.of(reflect.TypeOf(d.Response))
		// A handler returns a value, never null, even when its type is a
		// pointer.
		if alts, ok := body["anyOf"].([]any); ok && len(alts) == 2 {
			body = alts[0].(map[string]any)
		}
	}
	resp := map[string]any{}
	statuses := d.Status
	if len(statuses) == 0 {
		statuses = []int{200}
	}
	for _, s := range statuses {
		r := map[string]any{"description": http.StatusText(s)}
		if body != nil {
			r["content"] = map[string]any{"application/json": map[string]any{"schema": body}}
		}
		resp[fmt.Sprint(s)] = r
	}
	errStatuses := slices.Clone(d.Errors)
	if rt.Role != RolePublic {
		errStatuses = append(errStatuses, 401, 403, 429)
	}
	errStatuses = append(errStatuses, 500)
	slices.Sort(errStatuses)
	for _, s := range slices.Compact(errStatuses) {
		resp[fmt.Sprint(s)] = map[string]any{"description": http.StatusText(s),
			"content": map[string]any{"application/json": map[string]any{"schema": map[string]any{"$ref": "#/components/schemas/Error"}}}}
	}
	op["responses"] = resp
	return op
}

// operationID is "get_api_v1_slos_name" for "GET /api/v1/slos/{name}".
func operationID(pattern string) string {
	r := strings.NewReplacer(" /", "_", "/", "_", "{", "", "}", "", ".", "_", "-", "_")
	return strings.ToLower(r.Replace(pattern))
}

// openAPI serves the document of this API's routes.
func (a *API) openAPI(*http.Request) (any, error) {
	d := &a.doc
	d.once.Do(func() {
		routes := a.Routes()
		if a.opts.ServerRoutes != nil {
			routes = a.opts.ServerRoutes()
		}
		var doc map[string]any
		doc, d.err = Document(routes)
		d.json, _ = json.Marshal(doc)
		if d.err != nil {
			// Serve what is documented; the test fails on the error.
			a.log.Warn("openapi document incomplete", "err", d.err)
		}
	})
	return json.RawMessage(d.json), nil
}
