package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/qsp-dev/qsp/internal/playbook"
)

// The playbook routes, their roles and their documentation live here with
// the handlers; init adds them to the route table (routeRules), the
// OpenAPI table (apiDocs) and the self-encoding types (customSchemas).
func init() {
	routeSets = append(routeSets, playbookRoutes)
	for pattern, rule := range playbookRules {
		routeRules[pattern] = rule
	}
	for pattern, doc := range playbookDocs {
		apiDocs[pattern] = doc
	}
	customSchemas[reflect.TypeFor[playbook.Duration]()] = str("A duration as specs write it, e.g. 30m or 1h.")
}

// PlaybookRunner is what the playbook routes need
// (Options.Extra["playbooks"]); *playbook.Runner implements it. Methods
// are safe for concurrent use. Approve and Reject return
// playbook.ErrNotFound, playbook.ErrNotPending (the run does not wait for
// an approval) or playbook.ErrInvalid; SetKillSwitch returns
// playbook.ErrKillSwitchForced when the server config holds it on.
type PlaybookRunner interface {
	Playbooks(ctx context.Context) ([]playbook.Info, error)
	Runs(ctx context.Context, f playbook.RunFilter) ([]*playbook.Run, int, error)
	RunByID(ctx context.Context, id string) (*playbook.Run, error)
	Approve(ctx context.Context, id, by, note string) (*playbook.Run, error)
	Reject(ctx context.Context, id, by, note string) (*playbook.Run, error)
	KillSwitch(ctx context.Context) (playbook.KillSwitch, error)
	SetKillSwitch(ctx context.Context, on bool, by, note string) (playbook.KillSwitch, error)
}

// Limits of the approval and kill-switch bodies.
const (
	maxPlaybookBodyBytes = 64 << 10
	maxByRunes           = 200
	maxNoteRunes         = 4000
)

var playbookRules = map[string]Rule{
	"GET /api/v1/playbooks":                    {Role: RoleViewer},
	"GET /api/v1/playbooks/runs":               {Role: RoleViewer},
	"GET /api/v1/playbooks/runs/{id}":          {Role: RoleViewer},
	"POST /api/v1/playbooks/runs/{id}/approve": {Role: RoleOperator, MaxBody: maxPlaybookBodyBytes},
	"POST /api/v1/playbooks/runs/{id}/reject":  {Role: RoleOperator, MaxBody: maxPlaybookBodyBytes},
	"GET /api/v1/playbooks/killswitch":         {Role: RoleViewer},
	"PUT /api/v1/playbooks/killswitch":         {Role: RoleAdmin, MaxBody: maxPlaybookBodyBytes},
}

var playbookDocs = map[string]opDoc{
	"GET /api/v1/playbooks": {Tag: "playbooks", Summary: "The playbooks of the specs with their hysteresis state, last run and problems.",
		Params:   params([]paramDoc{query("service", "Only playbooks of this service.")}, pageParamDocs),
		Response: page[playbook.Info]{}, Errors: []int{400}},
	"GET /api/v1/playbooks/runs": {Tag: "playbooks", Summary: "The audit log: playbook runs, newest first, with trigger, inputs, decisions, approval, attempts and events.",
		Params: params([]paramDoc{
			query("playbook", "Only runs of this playbook."), query("service", "Only runs for this service."),
			queryEnum("state", "Only runs in this state.", runStateNames()...),
		}, rangeParamDocs, pageParamDocs),
		Response: page[*playbook.Run]{}, Errors: []int{400}},
	"GET /api/v1/playbooks/runs/{id}": {Tag: "playbooks", Summary: "A playbook run.",
		Params: []paramDoc{pathParam("id", "The run's ID.")}, Response: &playbook.Run{}, Errors: []int{404}},
	"POST /api/v1/playbooks/runs/{id}/approve": {Tag: "playbooks", Summary: "Approve a pending run (operator); the runner executes it next.",
		Description: "409 when the run is not pending (decided, expired, never needed an approval).",
		Params:      []paramDoc{pathParam("id", "The run's ID.")}, Body: decisionRequest{}, Response: &playbook.Run{},
		Errors: []int{400, 404, 409, 413, 415}},
	"POST /api/v1/playbooks/runs/{id}/reject": {Tag: "playbooks", Summary: "Reject a pending run (operator).",
		Description: "409 when the run is not pending.",
		Params:      []paramDoc{pathParam("id", "The run's ID.")}, Body: decisionRequest{}, Response: &playbook.Run{},
		Errors: []int{400, 404, 409, 413, 415}},
	"GET /api/v1/playbooks/killswitch": {Tag: "playbooks", Summary: "The kill switch that stops every playbook action.",
		Response: playbook.KillSwitch{}},
	"PUT /api/v1/playbooks/killswitch": {Tag: "playbooks", Summary: "Turn the kill switch on or off (admin).",
		Description: "409 when turning off a switch the server config holds on.",
		Body:        killSwitchRequest{}, Response: playbook.KillSwitch{}, Errors: []int{400, 409, 413, 415}},
}

// decisionRequest is the body of approve and reject.
type decisionRequest struct {
	// By is who decides; default the authenticated caller's name.
	By   string `json:"by,omitempty"`
	Note string `json:"note,omitempty"`
}

// killSwitchRequest is the body of PUT /api/v1/playbooks/killswitch.
type killSwitchRequest struct {
	On   *bool  `json:"on"`
	By   string `json:"by,omitempty"`
	Note string `json:"note,omitempty"`
}

func runStateNames() []string {
	out := make([]string, len(playbook.States))
	for i, s := range playbook.States {
		out[i] = string(s)
	}
	return out
}

// playbookRoutes serves the playbooks, their runs (the audit log),
// approvals and the kill switch (Options.Extra["playbooks"]).
func playbookRoutes(a *API) {
	runner, _ := a.opts.Extra["playbooks"].(PlaybookRunner)
	if runner == nil {
		return
	}
	a.handle("GET /api/v1/playbooks", func(r *http.Request) (any, error) {
		infos, err := runner.Playbooks(r.Context())
		if err != nil {
			return nil, err
		}
		if svc := r.URL.Query().Get("service"); svc != "" {
			infos = slices.DeleteFunc(infos, func(i playbook.Info) bool { return i.Service != svc })
		}
		return paginate(infos, r)
	})
	a.handle("GET /api/v1/playbooks/runs", func(r *http.Request) (any, error) { return listRuns(runner, r) })
	a.handle("GET /api/v1/playbooks/runs/{id}", func(r *http.Request) (any, error) {
		run, err := runner.RunByID(r.Context(), r.PathValue("id"))
		return run, playbookError(err)
	})
	decide := func(approve bool) handlerFunc {
		return func(r *http.Request) (any, error) {
			body, err := readBody(r, maxPlaybookBodyBytes)
			if err != nil {
				return nil, err
			}
			var req decisionRequest
			if err := decodeStrict(body, r.Header.Get("Content-Type"), &req, true); err != nil {
				return nil, err
			}
			by, note, err := actorAndNote(r, req.By, req.Note)
			if err != nil {
				return nil, err
			}
			var run *playbook.Run
			if approve {
				run, err = runner.Approve(r.Context(), r.PathValue("id"), by, note)
			} else {
				run, err = runner.Reject(r.Context(), r.PathValue("id"), by, note)
			}
			return run, playbookError(err)
		}
	}
	a.handle("POST /api/v1/playbooks/runs/{id}/approve", decide(true))
	a.handle("POST /api/v1/playbooks/runs/{id}/reject", decide(false))
	a.handle("GET /api/v1/playbooks/killswitch", func(r *http.Request) (any, error) { return runner.KillSwitch(r.Context()) })
	a.handle("PUT /api/v1/playbooks/killswitch", func(r *http.Request) (any, error) {
		body, err := readBody(r, maxPlaybookBodyBytes)
		if err != nil {
			return nil, err
		}
		var req killSwitchRequest
		if err := decodeStrict(body, r.Header.Get("Content-Type"), &req, false); err != nil {
			return nil, err
		}
		if req.On == nil {
			return nil, badRequest(`on: required: true stops every playbook action, false lets them run`)
		}
		by, note, err := actorAndNote(r, req.By, req.Note)
		if err != nil {
			return nil, err
		}
		ks, err := runner.SetKillSwitch(r.Context(), *req.On, by, note)
		return ks, playbookError(err)
	})
}

func listRuns(runner PlaybookRunner, r *http.Request) (any, error) {
	lp, err := listParams(r)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	state := playbook.State(q.Get("state"))
	if state != "" && !slices.Contains(playbook.States, state) {
		return nil, badRequest(fmt.Sprintf("state %q: want one of %s", state, strings.Join(runStateNames(), ", ")))
	}
	runs, total, err := runner.Runs(r.Context(), playbook.RunFilter{
		Playbook: q.Get("playbook"), Service: q.Get("service"), State: state, From: lp.From, To: lp.To, Limit: lp.Limit, Offset: lp.Offset,
	})
	if err != nil {
		return nil, playbookError(err)
	}
	return storePage(runs, total, lp), nil
}

// playbookError maps the runner's errors to status codes.
func playbookError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, playbook.ErrNotFound):
		return notFound(err.Error())
	case errors.Is(err, playbook.ErrNotPending), errors.Is(err, playbook.ErrKillSwitchForced):
		return &statusError{http.StatusConflict, err.Error()}
	case errors.Is(err, playbook.ErrInvalid):
		return badRequest(err.Error())
	}
	return err
}

// decodeStrict reads one JSON object into v: unknown fields and trailing
// data are refused, so a misspelt field is not silently dropped. An
// empty body is an empty object when emptyOK.
func decodeStrict(body []byte, contentType string, v any, emptyOK bool) error {
	if contentType != "" {
		mt, _, err := mime.ParseMediaType(contentType)
		if err != nil || mt != "application/json" {
			return &statusError{http.StatusUnsupportedMediaType, fmt.Sprintf("content type %q: want application/json", contentType)}
		}
	}
	if len(bytes.TrimSpace(body)) == 0 {
		if emptyOK {
			return nil
		}
		return badRequest("body: want a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("body: " + jsonProblem(body, err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badRequest("body: unexpected data after the JSON object")
	}
	return nil
}

// actorAndNote checks who acts and the note. by defaults to the
// authenticated caller; without either the request is refused, since the
// audit log must say who decided.
func actorAndNote(r *http.Request, by, note string) (string, string, error) {
	by = actingAs(r, strings.TrimSpace(by))
	switch {
	case by == "":
		return "", "", badRequest("by: required: who decides (a person or a bot)")
	case !utf8.ValidString(by):
		return "", "", badRequest("by: not valid UTF-8")
	case utf8.RuneCountInString(by) > maxByRunes:
		return "", "", badRequest(fmt.Sprintf("by: longer than %d characters", maxByRunes))
	case strings.IndexFunc(by, unicode.IsControl) >= 0:
		return "", "", badRequest("by: control characters are not allowed")
	case !utf8.ValidString(note):
		return "", "", badRequest("note: not valid UTF-8")
	case utf8.RuneCountInString(note) > maxNoteRunes:
		return "", "", badRequest(fmt.Sprintf("note: longer than %d characters", maxNoteRunes))
	}
	return by, note, nil
}

// actingAs is who an operator action is recorded as. An authenticated
// caller is always recorded: by names the person when a shared token (a
// chat bot's) acts for someone, and is kept as "by via caller"; the body
// alone cannot claim another identity. Without authentication (open mode)
// by is all there is.
func actingAs(r *http.Request, by string) string {
	p, ok := PrincipalFrom(r.Context())
	if !ok || p.Via == ViaAnonymous || p.Name == "" {
		return by
	}
	if by == "" || by == p.Name {
		return p.Name
	}
	return by + " via " + p.Name
}
