package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/qsp-dev/qsp/internal/alert"
	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/report"
)

func init() {
	routeSets = append(routeSets, reportRoutes)
	// Reports and postmortem drafts are read-only: viewers may read them.
	routeRules["GET /api/v1/reports"] = Rule{Role: RoleViewer}
	routeRules["GET /api/v1/incidents/{id}/postmortem"] = Rule{Role: RoleViewer}
	routeRules["GET /reports"] = Rule{Role: RoleViewer}
	routeRules["GET /incidents/{id}/postmortem"] = Rule{Role: RoleViewer}
	formats := []string{"json", "md", "html", "pdf"}
	apiDocs["GET /api/v1/reports"] = opDoc{Tag: "reports", Summary: "The SLO report of a month.",
		Description: "Attainment per SLO against its objective, the budget spent and by which incidents and deploys, " +
			"time to detect and repair, gate verdicts, playbook runs and the SLOs at risk next period. " +
			"format md, html or pdf answers the document itself (text/markdown, text/html, application/pdf); " +
			"pdf needs Chromium on the server's PATH and answers 501 without it.",
		Params: []paramDoc{query("period", "The month, YYYY-MM (required)."), query("service", "Only this service."),
			queryEnum("format", "The document's format; default json.", formats...)},
		Response: report.Report{}, Errors: []int{400, 404, 501}}
	apiDocs["GET /api/v1/incidents/{id}/postmortem"] = opDoc{Tag: "incidents", Summary: "A postmortem draft of an incident.",
		Description: "Timeline, SLIs and budget impact, the deploy before it, alerts and actions with their reasons, " +
			"time to detect and repair, open questions. Markdown (text/markdown) by default; format=json gives the data.",
		Params:   []paramDoc{pathParam("id", "The incident's number."), queryEnum("format", "md (default) or json.", "md", "json")},
		Response: report.Postmortem{}, Errors: []int{400, 404}}
}

// Reporter builds reports and postmortem drafts (Options.Extra
// ["reports"]); *report.Builder implements it. Safe for concurrent use.
type Reporter interface {
	// Build returns an error wrapping report.ErrBadPeriod for a period
	// that is not a month that has begun.
	Build(ctx context.Context, req report.Request) (*report.Report, error)
	Postmortem(ctx context.Context, inc alert.Incident) (*report.Postmortem, error)
}

// ReportRenderer writes a report as a self-contained HTML document
// (Options.Extra["reportHTML"]); the UI's ui.RenderReport is one.
type ReportRenderer func(w io.Writer, r *report.Report) error

// Limits of the report parameters.
const maxServiceParam = 253

// reportRoutes serves reports and postmortem drafts.
func reportRoutes(a *API) {
	rep, _ := a.opts.Extra["reports"].(Reporter)
	if rep == nil {
		return
	}
	render, _ := a.opts.Extra["reportHTML"].(ReportRenderer)
	chromium, _ := a.opts.Extra["chromium"].(string)
	a.mux.HandleFunc("GET /api/v1/reports", a.document(func(r *http.Request) (*doc, error) {
		return a.reportDoc(r, rep, render, chromium)
	}))
	keeper, _ := a.opts.Extra["incidents"].(IncidentKeeper)
	if keeper == nil {
		return
	}
	a.mux.HandleFunc("GET /api/v1/incidents/{id}/postmortem", a.document(func(r *http.Request) (*doc, error) {
		return postmortemDoc(r, keeper, rep)
	}))
}

// doc is a response that is either JSON data or a document of its own
// content type.
type doc struct {
	data        any
	contentType string
	filename    string
	body        []byte
}

// document wraps a handler that answers JSON or a document.
func (a *API) document(h func(r *http.Request) (*doc, error)) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		d, err := h(r)
		if err != nil {
			a.writeError(w, r, err)
			return
		}
		if d.contentType == "" {
			writeJSON(w, http.StatusOK, d.data)
			return
		}
		w.Header().Set("Content-Type", d.contentType)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if d.filename != "" {
			w.Header().Set("Content-Disposition", fmt.Sprintf("inline; filename=%q", d.filename))
		}
		_, _ = w.Write(d.body)
	}
}

func (a *API) reportDoc(r *http.Request, rep Reporter, render ReportRenderer, chromium string) (*doc, error) {
	q := r.URL.Query()
	req := report.Request{Period: q.Get("period"), Service: q.Get("service")}
	if req.Period == "" {
		return nil, badRequest("period: required: a month, YYYY-MM")
	}
	if len(req.Service) > maxServiceParam || !utf8.ValidString(req.Service) {
		return nil, badRequest(fmt.Sprintf("service: longer than %d bytes or not UTF-8", maxServiceParam))
	}
	if req.Service != "" && a.opts.Specs().Service(req.Service) == nil && !a.hasService(req.Service) {
		return nil, notFound(fmt.Sprintf("service %q: no such service", req.Service))
	}
	format := q.Get("format")
	switch format {
	case "", "json", "md", "html", "pdf":
	default:
		return nil, badRequest(fmt.Sprintf("format %q: want json, md, html or pdf", format))
	}
	if (format == "html" || format == "pdf") && render == nil {
		return nil, &statusError{http.StatusNotImplemented, "format " + format + ": this server has no HTML renderer (the UI is off)"}
	}
	rp, err := rep.Build(r.Context(), req)
	if errors.Is(err, report.ErrBadPeriod) {
		return nil, badRequest(err.Error())
	}
	if err != nil {
		return nil, err
	}
	name := "qsp-report-" + req.Period
	if req.Service != "" {
		name += "-" + sanitizeName(req.Service)
	}
	var buf bytes.Buffer
	switch format {
	case "", "json":
		return &doc{data: rp}, nil
	case "md":
		if err := rp.Markdown(&buf); err != nil {
			return nil, err
		}
		return &doc{contentType: "text/markdown; charset=utf-8", filename: name + ".md", body: buf.Bytes()}, nil
	}
	if err := render(&buf, rp); err != nil {
		return nil, err
	}
	if format == "html" {
		return &doc{contentType: "text/html; charset=utf-8", filename: name + ".html", body: buf.Bytes()}, nil
	}
	pdf, err := report.PDF(r.Context(), chromium, buf.Bytes())
	if errors.Is(err, report.ErrNoChromium) {
		return nil, &statusError{http.StatusNotImplemented, "format pdf: " + err.Error()}
	}
	if err != nil {
		return nil, err
	}
	return &doc{contentType: "application/pdf", filename: name + ".pdf", body: pdf}, nil
}

// hasService reports whether an SLO of the snapshot belongs to service.
func (a *API) hasService(service string) bool {
	snap := a.opts.Engine.Snapshot()
	return snap != nil && slices.ContainsFunc(snap.Statuses, func(st *engine.Status) bool { return st.Service == service })
}

// postmortemDoc answers the postmortem draft of the incident named by
// the request's {id}: Markdown, or JSON with format=json.
func postmortemDoc(r *http.Request, keeper IncidentKeeper, rep Reporter) (*doc, error) {
	id, err := incidentID(r)
	if err != nil {
		return nil, err
	}
	format := r.URL.Query().Get("format")
	if format != "" && format != "md" && format != "json" {
		return nil, badRequest(fmt.Sprintf("format %q: want md or json", format))
	}
	inc, err := keeper.Get(r.Context(), id)
	if err != nil {
		return nil, incidentError(err)
	}
	pm, err := rep.Postmortem(r.Context(), inc)
	if err != nil {
		return nil, err
	}
	if format == "json" {
		return &doc{data: pm}, nil
	}
	var buf bytes.Buffer
	if err := pm.Markdown(&buf); err != nil {
		return nil, err
	}
	return &doc{contentType: "text/markdown; charset=utf-8", filename: fmt.Sprintf("postmortem-incident-%d.md", id), body: buf.Bytes()}, nil
}

// sanitizeName keeps a file name to letters, digits, dot, dash and
// underscore.
func sanitizeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 128 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
			return r
		}
		return '_'
	}, s)
}
