package ui

import (
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/qsp-dev/qsp/internal/report"
)

// reportFS holds the report's body, shared by the /reports page and the
// standalone document (RenderReport), and the document's frame.
//
//go:embed reportdoc/*.html
var reportFS embed.FS

var reportFuncs = template.FuncMap{
	"rpct":    report.Percent,
	"roptpct": report.OptPercent,
	"rcount":  report.Count,
	"rsec":    report.Seconds,
	"rstamp":  func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") },
	"rmonth":  func(t time.Time) string { return t.Format("January 2006") },
}

// reportDoc is the standalone report document's template, parsed once.
var reportDoc = template.Must(template.New("doc").Funcs(funcs).Funcs(reportFuncs).ParseFS(reportFS, "reportdoc/*.html"))

// parseReport adds the report's body to the /reports page.
func (u *UI) parseReport() error {
	t := u.pages["report"]
	if t == nil {
		return fmt.Errorf("ui: no report template")
	}
	t, err := t.Funcs(reportFuncs).ParseFS(reportFS, "reportdoc/body.html")
	if err != nil {
		return fmt.Errorf("ui: report template: %w", err)
	}
	u.pages["report"] = t
	return nil
}

// reportView is what the report's body shows.
type reportView struct {
	R      *report.Report
	SLOs   []reportSLO
	Prev   []string // earlier periods, for links
	Query  string   // "period=...&service=..." for the download links
	Inline template.CSS
}

type reportSLO struct {
	report.SLOReport
	Chart template.HTML
}

func newReportView(r *report.Report) reportView {
	v := reportView{R: r}
	for i, s := range r.SLOs {
		obj := s.Objective
		c := &LineChart{ID: "rep" + strconv.Itoa(i), Title: "Daily attainment of " + s.Key, From: r.From, To: r.To,
			Ref: &obj, RefLabel: "objective " + report.Percent(obj), Format: func(f float64) string { return report.Percent(f) }, Cap: ptr(1.0)}
		for _, d := range s.Daily {
			c.Samples = append(c.Samples, Sample{At: d.Day.Add(12 * time.Hour), V: d.Attainment})
		}
		for _, sp := range s.ByIncident {
			c.Spans = append(c.Spans, Span{From: sp.From, To: sp.To, Label: sp.Ref})
		}
		for _, sp := range s.ByDeploy {
			c.Markers = append(c.Markers, Marker{At: sp.From, Label: sp.Ref})
		}
		v.SLOs = append(v.SLOs, reportSLO{SLOReport: s, Chart: c.SVG()})
	}
	for k := 1; k <= 3; k++ {
		v.Prev = append(v.Prev, r.From.AddDate(0, -k, 0).Format("2006-01"))
	}
	v.Query = "period=" + r.Period
	if r.Service != "" {
		v.Query += "&service=" + template.URLQueryEscaper(r.Service)
	}
	return v
}

func ptr[T any](v T) *T { return &v }

// RenderReport writes r as a self-contained HTML document (styles
// inline, charts as SVG, no script and nothing loaded from elsewhere), for
// the API's html format and for printing to PDF.
func RenderReport(w io.Writer, r *report.Report) error {
	v := newReportView(r)
	css, err := staticFS.ReadFile("static/style.css")
	if err != nil {
		return fmt.Errorf("render report: %w", err)
	}
	v.Inline = template.CSS(css) //nolint:gosec // our own embedded stylesheet
	if err := reportDoc.ExecuteTemplate(w, "doc", v); err != nil {
		return fmt.Errorf("render report: %w", err)
	}
	return nil
}

// reportPage is /reports: the report of ?period= (default the current
// month) and ?service=.
func (u *UI) reportPage(r *http.Request) (*view, error) {
	if u.opts.Reports == nil {
		return nil, notFoundf("Reports are not configured on this server.")
	}
	q := r.URL.Query()
	period := q.Get("period")
	if period == "" {
		period = u.opts.Now().UTC().Format("2006-01")
	}
	rp, err := u.opts.Reports.Build(r.Context(), report.Request{Period: period, Service: q.Get("service")})
	if err != nil {
		if errors.Is(err, report.ErrBadPeriod) {
			return nil, badRequestf("%s", err.Error())
		}
		return nil, err
	}
	return &view{Template: "report", Title: "SLO report " + rp.Period, Nav: "reports", Data: newReportView(rp)}, nil
}

// postmortem serves an incident's postmortem draft as Markdown.
func (u *UI) postmortem(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		u.renderError(w, r, badRequestf("The incident number must be a positive integer."))
		return
	}
	if u.opts.Incidents == nil || u.opts.Reports == nil {
		u.renderError(w, r, notFoundf("Postmortem drafts are not configured on this server."))
		return
	}
	inc, err := u.opts.Incidents.Get(r.Context(), id)
	if err != nil {
		u.renderError(w, r, err)
		return
	}
	pm, err := u.opts.Reports.Postmortem(r.Context(), inc)
	if err != nil {
		u.renderError(w, r, err)
		return
	}
	var b strings.Builder
	if err := pm.Markdown(&b); err != nil {
		u.renderError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/markdown; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Disposition", fmt.Sprintf("inline; filename=\"postmortem-incident-%d.md\"", id))
	_, _ = io.WriteString(w, b.String())
}
