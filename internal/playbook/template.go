package playbook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"text/template"
	"text/template/parse"

	"github.com/qsp-dev/qsp/internal/spec"
)

// Data is what action templates see as dot: {{ .Service }}, {{ .Reason }}.
// Every field is filled for every trigger; fields a trigger does not have
// (the gate of an SLO trigger) are empty.
type Data struct {
	Playbook string
	Service  string
	// SLO and Key name the SLO and its group ("search-tenant{tenant=\"a\"}").
	SLO   string
	Key   string
	Group map[string]string
	// Category is the SLO's category: quality, security or performance.
	Category string
	// Event is firing, resolved, no_data, burn_rate, gate or schedule.
	Event     string
	Severity  string
	Alert     string
	Condition string
	// Reason says in one line why the playbook runs.
	Reason string
	// BurnRate is the burn rate that triggered (the trigger's window, or
	// the alert's short window); Window names its window.
	BurnRate float64
	Window   string
	// Budget is the share of the error budget left (1 untouched, 0 spent).
	Budget float64
	// Incident is the ID of the open incident the alert belongs to, 0 if
	// none.
	Incident   int64
	Gate       string
	Evaluation string
	Schedule   string
	RunID      string
	RunURL     string
	Action     string
	// IdempotencyKey is the key of this action of this run, the same on
	// every attempt.
	IdempotencyKey string
	// At is the trigger's time, RFC 3339.
	At     string
	DryRun bool
}

// Limits of templates. Templates come from specs (reviewed, in Git), but
// the data comes from telemetry and the limits keep rendering bounded in
// time and memory whatever both hold.
const (
	// MaxTemplateBytes bounds the text of one template.
	MaxTemplateBytes = 16 << 10
	// MaxRenderedBytes bounds the output of one template (a body).
	MaxRenderedBytes = 256 << 10
	// maxRangeDepth bounds nested range actions: each may iterate over a
	// map of the data, so the work is at most len(map)^depth.
	maxRangeDepth = 2
)

// Errors of rendering.
var (
	// ErrTemplate: the template is not one playbooks may run (syntax, a
	// forbidden construct, a failure while executing, too much output).
	ErrTemplate = errors.New("template")
	// ErrSecret: a {{ secret "NAME" }} could not be resolved.
	ErrSecret = errors.New("secret")
)

// rangeFields are the fields of Data a range action may iterate over:
// the maps and slices, whose sizes the data bounds. Ranging over a number
// (Go 1.22 lets {{ range 1000000000 }} count) could loop for hours.
var rangeFields = map[string]bool{"Group": true}

// secretName is what may follow QSP_SECRET_ and name a file in the
// secrets directory: no path separators, no dots.
var secretName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)

// Secrets resolves {{ secret "NAME" }} at run time from the environment
// (QSP_SECRET_NAME) or a file (Dir/NAME). Values are never stored: runs
// keep a rendering with placeholders, and what a receiver answers is
// scrubbed of the values before it is kept.
type Secrets struct {
	// Dir holds one file per secret; empty: environment only.
	Dir string
	// Getenv reads the environment; default os.Getenv.
	Getenv func(string) string
}

// Lookup returns the value of secret name.
func (s Secrets) Lookup(name string) (string, error) {
	if !secretName.MatchString(name) {
		return "", fmt.Errorf("%w %q: a name is letters, digits and _", ErrSecret, name)
	}
	getenv := s.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	if v := getenv("QSP_SECRET_" + name); v != "" {
		return v, nil
	}
	if s.Dir != "" {
		b, err := os.ReadFile(filepath.Join(s.Dir, name))
		if err == nil {
			return strings.TrimRight(string(b), "\r\n"), nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("%w %s: %w", ErrSecret, name, err)
		}
		return "", fmt.Errorf("%w %s is not set: set QSP_SECRET_%s or create %s", ErrSecret, name, name, filepath.Join(s.Dir, name))
	}
	return "", fmt.Errorf("%w %s is not set: set QSP_SECRET_%s in the server's environment", ErrSecret, name, name)
}

// renderer renders the templates of one action, either with the secrets'
// values (to send) or with placeholders (to keep). It remembers the values
// it used so that they can be scrubbed from anything kept.
type renderer struct {
	secrets *Secrets // nil: placeholders
	used    map[string]string
	// secretErr is the last secret that could not be resolved.
	secretErr error
}

func newRenderer(s *Secrets) *renderer { return &renderer{secrets: s, used: map[string]string{}} }

// placeholder is what a secret looks like in the audit log.
func placeholder(name string) string { return "[secret " + name + "]" }

func (r *renderer) secret(name string) (string, error) {
	if r.secrets == nil {
		if !secretName.MatchString(name) {
			r.secretErr = fmt.Errorf("%w %q: a name is letters, digits and _", ErrSecret, name)
			return "", r.secretErr
		}
		return placeholder(name), nil
	}
	v, err := r.secrets.Lookup(name)
	if err != nil {
		r.secretErr = err
		return "", err
	}
	r.used[name] = v
	return v, nil
}

func (r *renderer) funcs() template.FuncMap {
	return template.FuncMap{
		"secret": r.secret,
		"json": func(v any) (string, error) {
			b, err := json.Marshal(v)
			return string(b), err
		},
		"upper": strings.ToUpper,
		"lower": strings.ToLower,
	}
}

// render executes one template on data. name says where the template is
// in the spec, for errors.
func (r *renderer) render(name, text string, data *Data) (string, error) {
	if !strings.Contains(text, "{{") {
		return text, nil // most headers and many URLs are plain
	}
	t, err := parseTemplate(name, text, r.funcs())
	if err != nil {
		return "", err
	}
	w := &limitedBuffer{max: MaxRenderedBytes}
	if err := t.Execute(w, data); err != nil {
		if r.secretErr != nil {
			// The secret's own error says what to do; text/template's
			// wrapping only adds the position.
			err, r.secretErr = r.secretErr, nil
			return "", fmt.Errorf("%s: %w", name, err)
		}
		return "", fmt.Errorf("%w %s: %s", ErrTemplate, name, strings.TrimPrefix(err.Error(), "template: "))
	}
	return w.String(), nil
}

// scrub replaces the values of the secrets the renderer used with their
// placeholders in s: for what receivers answer and errors mention.
func (r *renderer) scrub(s string) string {
	if len(r.used) == 0 || s == "" {
		return s
	}
	// Longest values first, so a secret that contains another is
	// replaced whole.
	names := make([]string, 0, len(r.used))
	for n := range r.used {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return len(r.used[names[i]]) > len(r.used[names[j]]) })
	for _, n := range names {
		if v := r.used[n]; v != "" {
			s = strings.ReplaceAll(s, v, placeholder(n))
		}
	}
	return s
}

// parseTemplate parses text with funcs and checks that it is bounded: no
// template definitions or calls (recursion), range only over the data's
// maps, nested at most maxRangeDepth deep.
func parseTemplate(name, text string, funcs template.FuncMap) (*template.Template, error) {
	if len(text) > MaxTemplateBytes {
		return nil, fmt.Errorf("%w %s: %d bytes, at most %d", ErrTemplate, name, len(text), MaxTemplateBytes)
	}
	t, err := template.New(name).Funcs(funcs).Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %s", ErrTemplate, name, strings.TrimPrefix(err.Error(), "template: "))
	}
	if len(t.Templates()) > 1 {
		return nil, fmt.Errorf("%w %s: define and block are not allowed in playbook templates", ErrTemplate, name)
	}
	if t.Tree == nil || t.Root == nil {
		return t, nil
	}
	if err := checkNode(t.Root, 0); err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrTemplate, name, err)
	}
	return t, nil
}

var errForbidden = errors.New("forbidden")

func checkNode(n parse.Node, depth int) error {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return nil
		}
		for _, c := range n.Nodes {
			if err := checkNode(c, depth); err != nil {
				return err
			}
		}
	case *parse.TemplateNode:
		return fmt.Errorf("{{ template %q }} is not allowed in playbook templates (%w)", n.Name, errForbidden)
	case *parse.IfNode:
		return checkBranch(&n.BranchNode, depth)
	case *parse.WithNode:
		return checkBranch(&n.BranchNode, depth)
	case *parse.RangeNode:
		if depth+1 > maxRangeDepth {
			return fmt.Errorf("range nested more than %d deep (%w)", maxRangeDepth, errForbidden)
		}
		if !rangeOverData(n.Pipe) {
			return fmt.Errorf("range may only iterate over %s (%w)", strings.Join(sortedKeys(rangeFields), ", "), errForbidden)
		}
		if err := checkNode(n.List, depth+1); err != nil {
			return err
		}
		if n.ElseList != nil {
			return checkNode(n.ElseList, depth)
		}
	}
	return nil
}

func checkBranch(b *parse.BranchNode, depth int) error {
	if err := checkNode(b.List, depth); err != nil {
		return err
	}
	if b.ElseList != nil {
		return checkNode(b.ElseList, depth)
	}
	return nil
}

// rangeOverData reports whether a range pipeline is one field of the
// data that holds a map or a slice: {{ range .Group }},
// {{ range $k, $v := .Group }} or {{ range $.Group }}.
func rangeOverData(p *parse.PipeNode) bool {
	if p == nil || len(p.Cmds) != 1 || len(p.Cmds[0].Args) != 1 {
		return false
	}
	switch n := p.Cmds[0].Args[0].(type) {
	case *parse.FieldNode: // .Group
		return len(n.Ident) == 1 && rangeFields[n.Ident[0]]
	case *parse.VariableNode: // $.Group: the data's, from within a range
		return len(n.Ident) == 2 && n.Ident[0] == "$" && rangeFields[n.Ident[1]]
	}
	return false
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, "."+k)
	}
	sort.Strings(out)
	return out
}

// limitedBuffer fails writes beyond max bytes, which stops a template's
// execution at once.
type limitedBuffer struct {
	bytes.Buffer
	max int
}

var errTooLong = errors.New("output too long")

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > b.max {
		return 0, fmt.Errorf("%w: more than %d bytes", errTooLong, b.max)
	}
	return b.Buffer.Write(p)
}

// CheckTemplates checks the templates of a playbook's actions for what
// the spec's validation does not: the constructs playbook templates may
// not use. Runs of a playbook with such a template are refused.
func CheckTemplates(pb *spec.Playbook) error {
	var errs []error
	r := newRenderer(nil)
	check := func(path, text string) {
		if _, err := parseTemplate(path, text, r.funcs()); err != nil {
			errs = append(errs, err)
		}
	}
	for i, a := range pb.Spec.Actions {
		p := fmt.Sprintf("spec.actions[%d]", i)
		switch {
		case a.Webhook != nil:
			check(p+".webhook.url", a.Webhook.URL)
			for _, k := range sortedHeaderNames(a.Webhook.Headers) {
				check(p+".webhook.headers."+k, a.Webhook.Headers[k])
			}
			check(p+".webhook.body", a.Webhook.Body)
		case a.Notify != nil:
			check(p+".notify.message", a.Notify.Message)
		}
	}
	return errors.Join(errs...)
}

func sortedHeaderNames(h map[string]string) []string {
	out := make([]string, 0, len(h))
	for k := range h {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
