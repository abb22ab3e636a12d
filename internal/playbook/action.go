package playbook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Notifier delivers the message of a notify action, e.g. through the
// alerting package's receivers. Notify is called from the runner's
// execution goroutines, possibly several at once, and must honour ctx
// (the action's timeout). An error is retried with backoff unless it
// wraps ErrPermanent. The same IdempotencyKey comes with every attempt of
// one action of one run, so a notifier that dedupes on it delivers once.
type Notifier interface {
	Notify(ctx context.Context, n Notification) error
}

// Notification is what a notify action sends.
type Notification struct {
	Playbook string
	RunID    string
	Action   string
	Service  string
	// Severity is the trigger's (page, ticket, no_data) or empty.
	Severity string
	// Title is one line: "playbook checkout-rollback: rollback ran".
	Title string
	// Message is the rendered notify.message.
	Message        string
	Trigger        Trigger
	IdempotencyKey string
	// RunURL links to the run in the API.
	RunURL string
	At     time.Time
}

// LogNotifier returns a Notifier that only logs, for servers without a
// notification receiver.
func LogNotifier(logger *slog.Logger) Notifier {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return logNotifier{logger.With("component", "playbook-notify")}
}

type logNotifier struct{ log *slog.Logger }

func (l logNotifier) Notify(_ context.Context, n Notification) error {
	l.log.Info("playbook notification", "playbook", n.Playbook, "run", n.RunID, "action", n.Action,
		"service", n.Service, "message", n.Message, "idempotency_key", n.IdempotencyKey)
	return nil
}

// ErrPermanent marks an action error that retrying does not fix (a 4xx
// answer, a template or secret error, a URL not on the allowlist).
var ErrPermanent = errors.New("permanent")

// Permanent marks err as one that retrying does not fix.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string   { return e.err.Error() }
func (e *permanentError) Unwrap() []error { return []error{e.err, ErrPermanent} }

// Limits of what a run keeps of an attempt.
const (
	maxResponseRead = 64 << 10 // read (and dropped beyond) from a response
	maxKeptText     = 4 << 10  // kept of a response body or command output
	maxRedirects    = 3
)

// outcome is what one attempt of an action did.
type outcome struct {
	status   int
	exitCode *int
	response string
	output   string
	err      error // nil: success; Permanent-wrapped: do not retry
}

// attempt executes one attempt of step i of x's plan with the real
// secrets. It never returns a secret's value: everything kept from the
// receiver or the command is scrubbed.
func (x *runCtx) attempt(ctx context.Context, i int) outcome {
	ap := x.run.Plan.Actions[i]
	step := &x.run.Steps[i]
	rend := newRenderer(&x.r.opts.Secrets)
	var o outcome
	switch ap.Type {
	case TypeWebhook:
		o = x.r.webhook(ctx, rend, ap, x.data(ap.Name, step.IdempotencyKey), step.IdempotencyKey, x.run.ID)
	case TypeNotify:
		o = x.notify(ctx, rend, ap, step.IdempotencyKey)
	case TypeExec:
		o = x.r.execCommand(ctx, ap, x.data(ap.Name, step.IdempotencyKey))
	default:
		o.err = Permanent(fmt.Errorf("unknown action type %q", ap.Type))
	}
	o.response = truncate(rend.scrub(o.response), maxKeptText)
	o.output = truncate(rend.scrub(o.output), maxKeptText)
	if o.err != nil {
		o.err = &scrubbedError{msg: rend.scrub(o.err.Error()), err: o.err}
	}
	return o
}

// scrubbedError is an error whose message had the secrets' values
// replaced; errors.Is and As still see the original chain.
type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }

// webhook calls one webhook action: render with secrets, check the
// final URL against the allowlist, send with the Idempotency-Key, follow
// only redirects that are allowed too.
func (r *Runner) webhook(ctx context.Context, rend *renderer, ap ActionPlan, data *Data, key, runID string) outcome {
	req, err := renderRequest(rend, ap, data)
	if err != nil {
		return outcome{err: Permanent(err)}
	}
	if _, err := r.allow.Check(req.URL); err != nil {
		return outcome{err: Permanent(err)}
	}
	hreq, err := http.NewRequestWithContext(ctx, req.Method, req.URL, strings.NewReader(req.Body))
	if err != nil {
		return outcome{err: Permanent(fmt.Errorf("build request: %w", err))}
	}
	for k, v := range req.Headers {
		if strings.EqualFold(k, "Host") || strings.EqualFold(k, "Idempotency-Key") {
			continue // the allowlisted host and the run's key are not the spec's to change
		}
		hreq.Header.Set(k, v)
	}
	hreq.Header.Set("Idempotency-Key", key)
	hreq.Header.Set("X-QSP-Run", runID)
	if hreq.Header.Get("User-Agent") == "" {
		hreq.Header.Set("User-Agent", "qsp-playbook")
	}
	if req.Body != "" && hreq.Header.Get("Content-Type") == "" {
		hreq.Header.Set("Content-Type", "application/json")
	}
	resp, err := r.client.Do(hreq)
	if err != nil {
		if errors.Is(err, ErrNotAllowed) {
			return outcome{err: Permanent(fmt.Errorf("%s %s: %w", req.Method, hostOf(req.URL), unwrapURLError(err)))}
		}
		// Timeouts, refused connections, resets: the receiver may come
		// back, and the Idempotency-Key makes a repeat harmless.
		return outcome{err: fmt.Errorf("%s %s: %w", req.Method, hostOf(req.URL), unwrapURLError(err))}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponseRead))
	o := outcome{status: resp.StatusCode, response: string(bytes.ToValidUTF8(body, []byte("?")))}
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
	case resp.StatusCode >= 500:
		o.err = fmt.Errorf("%s %s: %s", req.Method, hostOf(req.URL), resp.Status)
	default:
		// 4xx: the request is wrong and will stay wrong; 3xx: a redirect
		// the client did not follow.
		o.err = Permanent(fmt.Errorf("%s %s: %s", req.Method, hostOf(req.URL), resp.Status))
	}
	return o
}

func hostOf(raw string) string {
	if i := strings.Index(raw, "://"); i >= 0 {
		rest := raw[i+3:]
		if j := strings.IndexAny(rest, "/?#"); j >= 0 {
			rest = rest[:j]
		}
		return raw[:i+3] + rest
	}
	return raw
}

// unwrapURLError drops url.Error's repetition of the URL, which may hold
// a secret in its query; the host is said by the caller.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// renderRequest renders a webhook's templates.
func renderRequest(rend *renderer, ap ActionPlan, data *Data) (*Request, error) {
	req := &Request{Method: ap.Method}
	var err error
	if req.URL, err = rend.render("url", ap.URL, data); err != nil {
		return nil, err
	}
	if req.Body, err = rend.render("body", ap.Body, data); err != nil {
		return nil, err
	}
	if len(ap.Headers) > 0 {
		req.Headers = make(map[string]string, len(ap.Headers))
		for _, k := range sortedHeaderNames(ap.Headers) {
			v, err := rend.render("headers."+k, ap.Headers[k], data)
			if err != nil {
				return nil, err
			}
			req.Headers[k] = v
		}
	}
	return req, nil
}

// sensitiveHeader reports whether a header usually carries a credential:
// its value is kept only as the placeholder rendering shows it, and not
// at all if it has no {{ secret }} (a credential written in the spec).
func sensitiveHeader(name string) bool {
	n := strings.ToLower(name)
	return n == "authorization" || n == "cookie" || n == "proxy-authorization" ||
		strings.Contains(n, "token") || strings.Contains(n, "secret") || strings.Contains(n, "key") && n != "idempotency-key"
}

// redactedRequest renders a webhook with placeholders for the audit log.
func redactedRequest(ap ActionPlan, data *Data) (*Request, error) {
	req, err := renderRequest(newRenderer(nil), ap, data)
	if err != nil {
		return nil, err
	}
	for k, v := range req.Headers {
		if sensitiveHeader(k) && !strings.Contains(v, "[secret ") {
			req.Headers[k] = "[redacted]"
		}
	}
	return req, nil
}

// notify sends a notify action through the Notifier.
func (x *runCtx) notify(ctx context.Context, rend *renderer, ap ActionPlan, key string) outcome {
	data := x.data(ap.Name, key)
	msg, err := rend.render("message", ap.Message, data)
	if err != nil {
		return outcome{err: Permanent(err)}
	}
	n := Notification{
		Playbook: x.run.Playbook, RunID: x.run.ID, Action: ap.Name, Service: x.run.Service, Severity: x.run.Trigger.Severity,
		Title:   fmt.Sprintf("playbook %s: %s (%s)", x.run.Playbook, ap.Name, x.run.Trigger.Reason),
		Message: msg, Trigger: x.run.Trigger, IdempotencyKey: key, RunURL: data.RunURL, At: x.r.now(),
	}
	if err := x.r.opts.Notifier.Notify(ctx, n); err != nil {
		return outcome{err: fmt.Errorf("notify: %w", err)}
	}
	return outcome{response: "sent"}
}

// execCommand runs an exec action: argv only (no shell), a minimal
// environment with the run's facts (never the server's environment, which
// holds the secrets), its process group killed at the timeout.
func (r *Runner) execCommand(ctx context.Context, ap ActionPlan, data *Data) outcome {
	if !r.opts.Exec {
		return outcome{err: Permanent(errExecDisabled)}
	}
	if len(ap.Command) == 0 || ap.Command[0] == "" {
		return outcome{err: Permanent(errors.New("exec: no command"))}
	}
	cmd := exec.CommandContext(ctx, ap.Command[0], ap.Command[1:]...)
	cmd.Env = []string{
		"PATH=/usr/local/bin:/usr/bin:/bin",
		"QSP_PLAYBOOK=" + data.Playbook, "QSP_SERVICE=" + data.Service, "QSP_SLO=" + data.SLO,
		"QSP_EVENT=" + data.Event, "QSP_SEVERITY=" + data.Severity, "QSP_REASON=" + data.Reason,
		"QSP_RUN_ID=" + data.RunID, "QSP_ACTION=" + data.Action, "QSP_IDEMPOTENCY_KEY=" + data.IdempotencyKey,
		"QSP_BURN_RATE=" + strconv.FormatFloat(data.BurnRate, 'g', -1, 64), "QSP_INCIDENT=" + strconv.FormatInt(data.Incident, 10),
	}
	var out limitedBuffer
	out.max = maxResponseRead
	// One writer for both: exec then copies through one pipe, one
	// goroutine.
	w := &lossyWriter{&out}
	cmd.Stdout, cmd.Stderr = w, w
	setProcessGroup(cmd)
	cmd.WaitDelay = 2 * time.Second
	err := cmd.Run()
	o := outcome{output: string(bytes.ToValidUTF8(out.Bytes(), []byte("?")))}
	if cmd.ProcessState != nil {
		code := cmd.ProcessState.ExitCode()
		o.exitCode = &code
	}
	switch {
	case err == nil:
	case ctx.Err() != nil:
		o.err = fmt.Errorf("exec %s: %w", ap.Command[0], ctx.Err())
	case errors.Is(err, exec.ErrNotFound) || cmd.ProcessState == nil:
		o.err = Permanent(fmt.Errorf("exec %s: %w", ap.Command[0], err))
	default:
		o.err = fmt.Errorf("exec %s: %w", ap.Command[0], err)
	}
	return o
}

var errExecDisabled = errors.New("exec actions are disabled in the server config (set playbooks.exec: true to allow them)")

// lossyWriter keeps what fits and drops the rest without failing the
// command.
type lossyWriter struct{ b *limitedBuffer }

func (w *lossyWriter) Write(p []byte) (int, error) {
	if room := w.b.max - w.b.Len(); room > 0 {
		w.b.Buffer.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}
