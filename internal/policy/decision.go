package policy

import (
	"context"
	"encoding/json"
	"time"
)

// Result is the outcome of a decision.
type Result string

// The results, from most to least permissive.
const (
	// Allow: no policy denied or warned.
	Allow Result = "allow"
	// Warn: no policy denied, at least one warned. The action goes ahead.
	Warn Result = "warn"
	// Deny: at least one policy denied. The action must not go ahead.
	Deny Result = "deny"
)

// Levels of a Reason.
const (
	LevelDeny = "deny"
	LevelWarn = "warn"
	LevelInfo = "info"
)

// Reason is one human-readable statement of one policy about a decision.
type Reason struct {
	// Policy is the policy's name: a built-in name such as "error-budget",
	// or the metadata.name of a user Policy.
	Policy string `json:"policy"`
	// Level is deny, warn or info.
	Level   string `json:"level"`
	Message string `json:"message"`
}

// String formats the reason the way the CLI prints it:
// "deny error-budget: feature 1.4.2 is frozen: ...".
func (r Reason) String() string { return r.Level + " " + r.Policy + ": " + r.Message }

// Decision is the engine's answer at one decision point, kept with the
// input it was made on so that it can be audited and replayed.
type Decision struct {
	// ID is a UUIDv7: unique and ordered by Time.
	ID   string    `json:"id"`
	Time time.Time `json:"time"`
	// Point is "gate" or "playbook".
	Point string `json:"point"`
	// Subject is the name of the gate or playbook.
	Subject string `json:"subject"`
	// Service is the service the decision is about.
	Service string `json:"service"`
	Result  Result `json:"result"`
	// Reasons are in policy order (built-ins first, then user policies in
	// spec order), denies before warnings before infos within a policy.
	Reasons []Reason `json:"reasons"`
	// Policies names the policies consulted, in evaluation order.
	Policies []string `json:"policies"`
	// Input is the input document exactly as the policies saw it.
	Input json.RawMessage `json:"input"`
}

// Allowed reports whether the action may go ahead (allow or warn).
func (d *Decision) Allowed() bool { return d.Result != Deny }

// Recorder stores decisions with their input: the decision log, which the
// API serves. The store implements it.
//
// RecordDecision is called once per decision, synchronously, from the
// goroutine that called Evaluate, and may be called from many goroutines
// at once. It must not modify d; d is not modified after the call, so an
// implementation may keep it.
type Recorder interface {
	RecordDecision(ctx context.Context, d *Decision) error
}
