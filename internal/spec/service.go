package spec

import "time"

// Service is something users depend on, owned by a team.
type Service struct {
	Header `yaml:",inline"`
	Spec   ServiceSpec `yaml:"spec"`
}

// ServiceSpec is the body of a Service.
type ServiceSpec struct {
	Description string `yaml:"description,omitempty"`
	// Owner is the team or person accountable for the service. Required.
	Owner string `yaml:"owner"`
	// Tier is the criticality, 1 (most critical) to 4; 0 means unset.
	Tier int `yaml:"tier,omitempty"`
	// Labels are added to every alert and metric about the service.
	Labels map[string]string `yaml:"labels,omitempty"`
	// Journeys are the user journeys the service serves and the SLOs that
	// measure them.
	Journeys []Journey `yaml:"journeys,omitempty"`
	// RunbookURL is the default runbook of the service's alerts.
	RunbookURL string `yaml:"runbookURL,omitempty"`
	// Cost, when set, is shown as cost per request on the executive view.
	Cost *Cost `yaml:"cost,omitempty"`
	// Corrections exclude maintenance windows from every SLO of the service.
	Corrections []Correction `yaml:"corrections,omitempty"`
}

// Journey is a user journey: a named path through the service.
type Journey struct {
	Name        string   `yaml:"name"`
	Description string   `yaml:"description,omitempty"`
	SLOs        []string `yaml:"slos,omitempty"`
}

// Cost is how much one request costs, for the executive view.
type Cost struct {
	// Query is PromQL that returns the cost per request.
	Query string `yaml:"query"`
	// Currency is the unit of the query's result, e.g. USD.
	Currency string `yaml:"currency,omitempty"`
}

// Correction is a maintenance window: events in it are excluded from
// error budgets. It is one interval [start, start+duration), or a series of
// them repeating every Every.
type Correction struct {
	Name        string    `yaml:"name"`
	Description string    `yaml:"description,omitempty"`
	Start       time.Time `yaml:"start"`
	// End or Duration bounds the window; exactly one is set.
	End      time.Time `yaml:"end,omitempty"`
	Duration Duration  `yaml:"duration,omitempty"`
	// Every repeats the window, e.g. 7d for a weekly window.
	Every Duration `yaml:"every,omitempty"`
	// Until ends a repeating window; zero means forever.
	Until time.Time `yaml:"until,omitempty"`
}

// Length returns how long each occurrence of the window lasts.
func (c Correction) Length() time.Duration {
	if !c.End.IsZero() {
		return c.End.Sub(c.Start)
	}
	return c.Duration.D()
}
