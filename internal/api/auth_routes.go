package api

import (
	"net/http"
	"slices"
	"strings"
)

// Rule is what a route needs: a role, and a bound on its request body.
type Rule struct {
	Role Role
	// MaxBody bounds the request body; 0 is DefaultMaxBodyBytes, negative
	// means the handler bounds it itself (the receivers, by their
	// configured limits).
	MaxBody int64
	// Unlimited keeps the route outside every rate limit: health probes
	// must answer 200 however many wrong tokens a client guessed.
	Unlimited bool
	// Query marks the Prometheus-compatible query API: requests with a
	// token count against AuthOptions.QueryRateLimit instead of the API's
	// limit, since data sources send queries in bursts.
	Query bool
}

// routeRules is the role every route of the server needs, in one place:
// the API, the UI, the receivers and the server's own endpoints. Keys are
// ServeMux patterns exactly as registered. A route missing here is
// served to admins only, and the authorization matrix test fails.
var routeRules = map[string]Rule{
	// The server.
	"GET /healthz":   {Role: RolePublic, Unlimited: true},
	"GET /readyz":    {Role: RolePublic, Unlimited: true},
	"GET /metrics":   {Role: RoleViewer},
	"POST /-/reload": {Role: RoleAdmin},

	// Receivers (internal/telemetry) and the Prometheus query API over
	// the embedded TSDB (GET and POST queries).
	"POST /api/v1/write":  {Role: RoleIngest, MaxBody: -1},
	"POST /v1/metrics":    {Role: RoleIngest, MaxBody: -1},
	"POST /v1/traces":     {Role: RoleIngest, MaxBody: -1},
	"POST /api/v1/events": {Role: RoleIngest, MaxBody: -1},
	"/prometheus/api/v1/": {Role: RoleViewer, Query: true},
	// Its root, which Grafana and people open to check the data source URL.
	"GET /prometheus":     {Role: RoleViewer, Query: true},
	"GET /prometheus/{$}": {Role: RoleViewer, Query: true},

	// The JSON API: SLOs and services (api.go).
	"GET /api/v1/openapi.json":        {Role: RolePublic},
	"GET /api/v1/whoami":              {Role: RolePublic},
	"GET /api/v1/services":            {Role: RoleViewer},
	"GET /api/v1/services/{name}":     {Role: RoleViewer},
	"GET /api/v1/slos":                {Role: RoleViewer},
	"GET /api/v1/slos/{name}":         {Role: RoleViewer},
	"GET /api/v1/slos/{name}/history": {Role: RoleViewer},
	"GET /api/v1/slos/{name}/traces":  {Role: RoleViewer},
	// Alerts and incidents (incidents.go).
	"GET /api/v1/alerts":              {Role: RoleViewer},
	"GET /api/v1/incidents":           {Role: RoleViewer},
	"GET /api/v1/incidents/stats":     {Role: RoleViewer},
	"GET /api/v1/incidents/{id}":      {Role: RoleViewer},
	"POST /api/v1/incidents/{id}/ack": {Role: RoleOperator},
	// Gates, decisions, deploys (gates.go).
	"GET /api/v1/policy/schema":             {Role: RoleViewer},
	"GET /api/v1/decisions":                 {Role: RoleViewer},
	"GET /api/v1/decisions/{id}":            {Role: RoleViewer},
	"GET /api/v1/deploys":                   {Role: RoleViewer},
	"GET /api/v1/gates":                     {Role: RoleViewer},
	"GET /api/v1/gates/{name}":              {Role: RoleViewer},
	"GET /api/v1/gates/evaluations":         {Role: RoleViewer},
	"GET /api/v1/gates/{name}/canary/plan":  {Role: RoleViewer},
	"GET /api/v1/gates/evaluations/{id}":    {Role: RoleViewer},
	"POST /api/v1/gates/{name}/evaluations": {Role: RoleOperator, MaxBody: MaxEvaluationRequestBytes},

	// The web UI (internal/ui).
	"GET /{$}":                          {Role: RoleViewer},
	"GET /oncall":                       {Role: RoleViewer},
	"GET /slos":                         {Role: RoleViewer},
	"GET /slos/{name}":                  {Role: RoleViewer},
	"GET /services/{name}":              {Role: RoleViewer},
	"GET /incidents":                    {Role: RoleViewer},
	"GET /incidents/{id}":               {Role: RoleViewer},
	"POST /incidents/{id}/ack":          {Role: RoleOperator, MaxBody: 64 << 10},
	"GET /gates":                        {Role: RoleViewer},
	"GET /gates/evaluations/{id}":       {Role: RoleViewer},
	"GET /decisions":                    {Role: RoleViewer},
	"GET /playbooks":                    {Role: RoleViewer},
	"GET /playbooks/runs/{id}":          {Role: RoleViewer},
	"POST /playbooks/runs/{id}/approve": {Role: RoleOperator, MaxBody: 64 << 10},
	"POST /playbooks/runs/{id}/reject":  {Role: RoleOperator, MaxBody: 64 << 10},
	"GET /login":                        {Role: RolePublic},
	"POST /login":                       {Role: RolePublic, MaxBody: 16 << 10},
	"POST /logout":                      {Role: RolePublic, MaxBody: 16 << 10},
	"GET /static/{file}":                {Role: RolePublic},
}

// RuleOf returns the rule of a route pattern, and whether the table has
// one. Without one the route is for admins only.
func RuleOf(pattern string) (Rule, bool) {
	r, ok := routeRules[pattern]
	if !ok {
		return Rule{Role: RoleAdmin}, false
	}
	return r, true
}

// RulePatterns returns every pattern of the role table, sorted.
func RulePatterns() []string {
	out := make([]string, 0, len(routeRules))
	for p := range routeRules {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// Route is a registered route and the role it needs.
type Route struct {
	// Pattern is the ServeMux pattern: "GET /api/v1/slos/{name}".
	Pattern string `json:"pattern"`
	Role    Role   `json:"role"`
	// Ruled says the route is in the role table.
	Ruled bool `json:"ruled"`
}

// Method returns the route's method, "" for every method.
func (r Route) Method() string {
	m, _, ok := strings.Cut(r.Pattern, " ")
	if !ok {
		return ""
	}
	return m
}

// Path returns the route's path pattern.
func (r Route) Path() string {
	if _, p, ok := strings.Cut(r.Pattern, " "); ok {
		return p
	}
	return r.Pattern
}

// Mux is a ServeMux that puts every route behind Auth.Require with the
// rule of its pattern, and remembers the routes. With a nil Auth routes
// are served as they are.
type Mux struct {
	*http.ServeMux
	auth   *Auth
	deny   Denier
	routes []Route
}

// NewMux returns a Mux whose refusals go to deny.
func NewMux(auth *Auth, deny Denier) *Mux {
	return &Mux{ServeMux: http.NewServeMux(), auth: auth, deny: deny}
}

// Handle registers h for pattern behind the pattern's rule.
func (m *Mux) Handle(pattern string, h http.Handler) {
	rule, ok := RuleOf(pattern)
	m.routes = append(m.routes, Route{Pattern: pattern, Role: rule.Role, Ruled: ok})
	if m.auth != nil {
		if !ok {
			m.auth.log.Warn("route has no rule in the role table: admins only", "pattern", pattern)
		}
		h = m.auth.RequireRule(rule, m.deny, h)
	}
	m.ServeMux.Handle(pattern, h)
}

// HandleFunc registers f for pattern behind the pattern's rule.
func (m *Mux) HandleFunc(pattern string, f func(http.ResponseWriter, *http.Request)) {
	m.Handle(pattern, http.HandlerFunc(f))
}

// Routes returns the registered routes, sorted by pattern.
func (m *Mux) Routes() []Route {
	out := slices.Clone(m.routes)
	slices.SortFunc(out, func(a, b Route) int { return strings.Compare(a.Pattern, b.Pattern) })
	return out
}
