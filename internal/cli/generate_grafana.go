package cli

//lint:file-ignore SA1019 The classic dashboard JSON (dashboard, not dashboardv2) is what Grafana 9 to 12 import and provision from files; v2 needs Grafana 12's v2 dashboard API.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/grafana/grafana-foundation-sdk/go/bargauge"
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/text"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
	"github.com/spf13/cobra"

	"github.com/qsp-dev/qsp/internal/rulegen"
	"github.com/qsp-dev/qsp/internal/spec"
)

func init() { generators = append(generators, newGenerateGrafanaCommand) }

func newGenerateGrafanaCommand() *cobra.Command {
	var src specSource
	var output string
	cmd := &cobra.Command{
		Use:   "grafana (--config FILE | --specs PATH...) [-o DIR]",
		Short: "Generate Grafana dashboards over the SLIs and their burn rates",
		Long: `grafana writes Grafana dashboards (JSON) over the SLIs themselves and the
series the rules of qsp generate prometheus-rules record (load them into
the Prometheus the dashboards query): one overview of every SLO (firing
alerts, error budget remaining and burn rate by category) and one dashboard
per service (each SLO's SLI over 5 minutes against its objective, its
budget and its burn rates against the alert's factors). Every dashboard has
a Prometheus data source variable; import the files or provision them from
DIR.

Files are named qsp-overview.json and qsp-service-<service>.json. Exit
status 0 on success, 1 when the specs are invalid, 2 on other errors.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			set, _, diags, err := src.load()
			if err != nil {
				return err
			}
			if diags.HasErrors() {
				printDiagnostics(cmd.ErrOrStderr(), diags)
				return errCheckFailed
			}
			boards, err := grafanaDashboards(set)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(output, 0o755); err != nil {
				return fmt.Errorf("output folder: %w", err)
			}
			for _, b := range boards {
				data, err := json.MarshalIndent(b.Dashboard, "", "  ")
				if err != nil {
					return fmt.Errorf("dashboard %s: %w", b.File, err)
				}
				path := filepath.Join(output, b.File)
				if err := writeFileAtomic(path, append(data, '\n')); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), path)
			}
			return nil
		},
	}
	src.register(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", ".", "folder to write the dashboards to")
	return cmd
}

// grafanaDashboard is a generated dashboard and its file name.
type grafanaDashboard struct {
	File      string
	Dashboard dashboard.Dashboard
}

// The data source every panel queries: the dashboard's variable.
var promDS = common.DataSourceRef{Type: strPtr("prometheus"), Uid: strPtr("${datasource}")}

func strPtr(s string) *string   { return &s }
func f64Ptr(f float64) *float64 { return &f }

// Colours of the thresholds: the Okabe-Ito palette the built-in UI uses,
// which stays distinct for the common colour vision deficiencies.
const (
	gfGreen  = "#009E73"
	gfYellow = "#F0E442"
	gfOrange = "#E69F00"
	gfRed    = "#D55E00"
	gfBlue   = "#0072B2"
)

func thresholds(base string, steps ...any) *dashboard.ThresholdsConfigBuilder {
	ts := []dashboard.Threshold{{Color: base}}
	for i := 0; i+1 < len(steps); i += 2 {
		ts = append(ts, dashboard.Threshold{Value: f64Ptr(steps[i].(float64)), Color: steps[i+1].(string)})
	}
	return dashboard.NewThresholdsConfigBuilder().Mode(dashboard.ThresholdsModeAbsolute).Steps(ts)
}

// budgetThresholds: overspent, under a quarter left, under half left,
// more.
func budgetThresholds() *dashboard.ThresholdsConfigBuilder {
	return thresholds(gfRed, 0.0, gfOrange, 0.25, gfYellow, 0.5, gfGreen)
}

func query(expr, legend string) *prometheus.DataqueryBuilder {
	q := prometheus.NewDataqueryBuilder().Expr(expr).Datasource(promDS)
	if legend != "" {
		q = q.LegendFormat(legend)
	}
	return q
}

func instant(expr, legend string) *prometheus.DataqueryBuilder {
	return query(expr, legend).Instant().Format(prometheus.PromQueryFormatTable)
}

// timeSeries is a time series panel with its legend shown and a shared
// tooltip, sorted: most panels plot one series per SLO, group or window.
func timeSeries() *timeseries.PanelBuilder {
	return timeseries.NewPanelBuilder().
		Legend(common.NewVizLegendOptionsBuilder().ShowLegend(true).DisplayMode(common.LegendDisplayModeList).Placement(common.LegendPlacementBottom)).
		Tooltip(common.NewVizTooltipOptionsBuilder().Mode(common.TooltipDisplayModeMulti).Sort(common.SortOrderDescending))
}

func datasourceVariable() *dashboard.DatasourceVariableBuilder {
	return dashboard.NewDatasourceVariableBuilder("datasource").Label("Prometheus").Type("prometheus")
}

func qspLinks() *dashboard.DashboardLinkBuilder {
	return dashboard.NewDashboardLinkBuilder("QSP dashboards").Type(dashboard.DashboardLinkTypeDashboards).
		Tags([]string{"qsp"}).AsDropdown(true).IncludeVars(true).KeepTime(true)
}

// grafanaDashboards builds the overview and one dashboard per service of
// set, services in declaration order.
func grafanaDashboards(set *spec.Set) ([]grafanaDashboard, error) {
	overview, err := overviewDashboard(set).Build()
	if err != nil {
		return nil, fmt.Errorf("overview dashboard: %w", err)
	}
	out := []grafanaDashboard{{File: "qsp-overview.json", Dashboard: overview}}
	for _, svc := range set.Services {
		d, err := serviceDashboard(set, svc).Build()
		if err != nil {
			return nil, fmt.Errorf("dashboard of service %s: %w", svc.Name(), err)
		}
		out = append(out, grafanaDashboard{File: "qsp-service-" + fileSafe(svc.Name()) + ".json", Dashboard: d})
	}
	return out, nil
}

var unsafeFile = regexp.MustCompile(`[^A-Za-z0-9._-]`)

func fileSafe(s string) string { return unsafeFile.ReplaceAllString(s, "_") }

// uid is a Grafana dashboard UID: at most 40 characters.
func uid(s string) string {
	s = unsafeFile.ReplaceAllString(s, "-")
	if len(s) > 40 {
		s = s[:40]
	}
	return s
}

// sel is the label selector of the overview's filters, on the series
// the generated rules record and alert with.
const sel = `category=~"$category", service=~"$service"`

// firstPageWindow is the long window of an SLO's first alert pair (page
// first, else ticket): the burn rate the overview plots, recorded by the
// generated rules for every SLO.
func firstPageWindow(s *spec.SLO) (time.Duration, float64, bool) {
	for _, sev := range []string{spec.SeverityPage, spec.SeverityTicket} {
		if t := s.Spec.Alerting.Tier(sev); t != nil && len(t.Windows) > 0 {
			return t.Windows[0].Long.D(), t.Windows[0].Factor, true
		}
	}
	return 0, 0, false
}

// budgetRemaining is the PromQL of an SLO's error budget left over its
// rolling window, from the window's recorded error ratio; calendar
// windows have no recorded ratio.
func budgetRemaining(s *spec.SLO) (string, bool) {
	w := s.Spec.Window
	budget := s.Spec.Objective.Budget()
	if w.Calendar != "" || w.Rolling <= 0 || budget <= 0 {
		return "", false
	}
	return fmt.Sprintf(`1 - %s{slo=%q} / %s`, rulegen.RecordName(w.Rolling.D()), s.Name(), strconv.FormatFloat(budget, 'g', -1, 64)), true
}

func overviewDashboard(set *spec.Set) *dashboard.DashboardBuilder {
	cats := make([]string, len(spec.Categories))
	for i, c := range spec.Categories {
		cats[i] = string(c)
	}
	b := dashboard.NewDashboardBuilder("QSP · SLO overview").
		Uid("qsp-overview").
		Description("Every SLO's error budget and burn rate by category, from the SLIs themselves: the series the rules of qsp generate prometheus-rules record and alert with (load them into this Prometheus). Generated by qsp generate grafana.").
		Tags([]string{"qsp", "slo"}).
		Refresh("1m").Time("now-24h", "now").Timezone("browser").
		Link(qspLinks()).
		WithVariable(datasourceVariable()).
		WithVariable(dashboard.NewCustomVariableBuilder("category").Label("Category").
			Values(dashboard.StringOrMap{String: strPtr(strings.Join(cats, ","))}).Multi(true).IncludeAll(true).AllValue(".*")).
		WithVariable(dashboard.NewQueryVariableBuilder("service").Label("Service").Datasource(promDS).
			Query(dashboard.StringOrMap{String: strPtr(`label_values(` + rulegen.ErrorRatioRecord + `5m, service)`)}).
			Refresh(dashboard.VariableRefreshOnTimeRangeChanged).Sort(dashboard.VariableSortAlphabeticalAsc).
			Multi(true).IncludeAll(true).AllValue(".*"))

	b = b.WithRow(dashboard.NewRowBuilder("Alerts")).
		WithPanel(stat.NewPanelBuilder().Title("SLO alerts firing").
			Description("Burn-rate alerts of the generated rules firing now.").
			WithTarget(query(fmt.Sprintf(`count(ALERTS{alertstate="firing", slo!="", %s}) or vector(0)`, sel), "")).
			ColorMode(common.BigValueColorModeBackground).GraphMode(common.BigValueGraphModeNone).
			Thresholds(thresholds(gfGreen, 1.0, gfRed)).Height(6).Span(6)).
		WithPanel(stat.NewPanelBuilder().Title("SLO alerts pending").
			WithTarget(query(fmt.Sprintf(`count(ALERTS{alertstate="pending", slo!="", %s}) or vector(0)`, sel), "")).
			ColorMode(common.BigValueColorModeBackground).GraphMode(common.BigValueGraphModeNone).
			Thresholds(thresholds(gfGreen, 1.0, gfOrange)).Height(6).Span(6)).
		WithPanel(table.NewPanelBuilder().Title("Alerts pending or firing").
			Description("Every SLO alert of the generated rules not inactive, with its severity, window pair and state.").
			WithTarget(instant(fmt.Sprintf(`ALERTS{slo!="", %s}`, sel), "")).
			Height(6).Span(12))

	for _, c := range spec.Categories {
		var slos []*spec.SLO
		for _, s := range set.SLOs {
			if s.Spec.Category == c {
				slos = append(slos, s)
			}
		}
		if len(slos) == 0 {
			continue
		}
		title := strings.ToUpper(string(c)[:1]) + string(c)[1:]
		budget := bargauge.NewPanelBuilder().Title(title + ": error budget remaining").
			Description("Share of each SLO's error budget left over its rolling window, from the window's recorded error ratio; below zero it is overspent. Calendar windows are on QSP's own pages.").
			Unit("percentunit").Min(-1).Max(1).Decimals(1).
			DisplayMode(common.BarGaugeDisplayModeBasic).Orientation(common.VizOrientationHorizontal).
			Thresholds(budgetThresholds()).Height(8).Span(12)
		burn := timeSeries().Title(title + ": burn rate over the first alert window").
			Description("Error ratio over the error budget, over the long window of each SLO's first alert pair; 1 spends the budget exactly over the SLO window.").
			Unit("x").Min(0).Height(8).Span(12)
		for _, s := range slos {
			filter := fmt.Sprintf(`slo=%q, %s`, s.Name(), sel)
			if q, ok := budgetRemaining(s); ok {
				budget = budget.WithTarget(instant(strings.Replace(q, fmt.Sprintf(`{slo=%q}`, s.Name()), "{"+filter+"}", 1), "{{slo}}"+groupLegend(s)))
			}
			if w, _, ok := firstPageWindow(s); ok && s.Spec.Objective.Budget() > 0 {
				burn = burn.WithTarget(query(fmt.Sprintf(`%s{%s} / %s`, rulegen.RecordName(w), filter, strconv.FormatFloat(s.Spec.Objective.Budget(), 'g', -1, 64)),
					fmt.Sprintf("{{slo}}%s over %s", groupLegend(s), spec.Duration(w))))
			}
		}
		b = b.WithRow(dashboard.NewRowBuilder(title)).WithPanel(budget).WithPanel(burn)
	}
	return b
}

// groupLegend names an SLO's group labels in a legend.
func groupLegend(s *spec.SLO) string {
	if len(s.Spec.GroupBy) == 0 {
		return ""
	}
	parts := make([]string, len(s.Spec.GroupBy))
	for i, g := range s.Spec.GroupBy {
		parts[i] = g + "={{" + g + "}}"
	}
	return " {" + strings.Join(parts, ", ") + "}"
}

// serviceDashboard is a service's SLOs, one row per category.
func serviceDashboard(set *spec.Set, svc *spec.Service) *dashboard.DashboardBuilder {
	name := svc.Name()
	title := svc.Metadata.DisplayName
	if title == "" {
		title = name
	}
	b := dashboard.NewDashboardBuilder("QSP · "+title).
		Uid(uid("qsp-service-"+name)).
		Description(fmt.Sprintf("The SLOs of service %s. Generated by qsp generate grafana.", name)).
		Tags([]string{"qsp", "slo", "service:" + name}).
		Refresh("1m").Time("now-24h", "now").Timezone("browser").
		Link(qspLinks()).
		WithVariable(datasourceVariable())

	var about strings.Builder
	fmt.Fprintf(&about, "**%s**", markdownEscape(title))
	if d := svc.Spec.Description; d != "" {
		fmt.Fprintf(&about, " — %s", markdownEscape(d))
	}
	fmt.Fprintf(&about, "\n\nOwner: %s", markdownEscape(svc.Spec.Owner))
	if svc.Spec.Tier > 0 {
		fmt.Fprintf(&about, " · tier %d", svc.Spec.Tier)
	}
	if u := svc.Spec.RunbookURL; u != "" {
		fmt.Fprintf(&about, " · [runbook](%s)", u)
	}
	for _, j := range svc.Spec.Journeys {
		fmt.Fprintf(&about, "\n\nJourney **%s**: %s", markdownEscape(j.Name), markdownEscape(strings.Join(j.SLOs, ", ")))
	}
	b = b.WithPanel(text.NewPanelBuilder().Title("About").Mode(text.TextModeMarkdown).Content(about.String()).Height(5).Span(12))
	budget := bargauge.NewPanelBuilder().Title("Error budget remaining").
		Description("Over each SLO's rolling window, from the recorded error ratio.").
		Unit("percentunit").Min(-1).Max(1).Decimals(1).
		DisplayMode(common.BarGaugeDisplayModeBasic).Orientation(common.VizOrientationHorizontal).
		Thresholds(budgetThresholds()).Height(5).Span(12)
	for _, s := range set.SLOsOf(name) {
		if q, ok := budgetRemaining(s); ok {
			budget = budget.WithTarget(instant(q, "{{slo}}"+groupLegend(s)))
		}
	}
	b = b.WithPanel(budget)

	for _, c := range spec.Categories {
		var slos []*spec.SLO
		for _, s := range set.SLOsOf(name) {
			if s.Spec.Category == c {
				slos = append(slos, s)
			}
		}
		if len(slos) == 0 {
			continue
		}
		b = b.WithRow(dashboard.NewRowBuilder(strings.ToUpper(string(c)[:1]) + string(c)[1:]))
		for _, s := range slos {
			b = sloPanels(b, set, s)
		}
	}
	return b
}

// sliStep is the window of the SLI panel: short, so an incident shows
// as it happens rather than flattened into the SLO window.
const sliStep = 5 * time.Minute

// sloPanels adds an SLO's panels over its SLI itself: the SLI over 5
// minutes against the objective (the SLI's PromQL, or for slice-judged
// SLIs the step series the rules record), its error budget left over
// the SLO window, and its burn rate over the page alert's windows
// against their factors (the recorded error ratios).
func sloPanels(b *dashboard.DashboardBuilder, set *spec.Set, s *spec.SLO) *dashboard.DashboardBuilder {
	n := s.Name()
	objective := s.Spec.Objective.Ratio()
	budgetText := strconv.FormatFloat(s.Spec.Objective.Budget(), 'g', -1, 64)
	desc := s.Spec.Description
	if desc == "" {
		desc = fmt.Sprintf("SLO %s, objective %s over %s.", n, s.Spec.Objective, s.Spec.Window)
	}
	sli := timeSeries().Title(n + ": SLI over " + spec.Duration(sliStep).String()).
		Unit("percentunit").Decimals(3).
		Thresholds(thresholds(gfRed, objective, gfGreen)).
		ThresholdsStyle(common.NewGraphThresholdsStyleConfigBuilder().Mode(common.GraphThresholdsStyleModeDashed)).
		Height(7).Span(8)
	if er, reason := rulegen.ErrorRatioExpr(set, s, sliStep); reason == "" {
		sli = sli.Description(desc + " The dashed line is the objective.").
			WithTarget(query("1 - (\n"+er+"\n)", "SLI"+groupLegend(s)))
	} else {
		sli = sli.Description(desc + " No PromQL for this SLI: " + reason + ".")
	}
	b = b.WithPanel(sli)
	remaining := timeSeries().Title(n + ": error budget remaining").
		Unit("percentunit").Thresholds(budgetThresholds()).
		ThresholdsStyle(common.NewGraphThresholdsStyleConfigBuilder().Mode(common.GraphThresholdsStyleModeDashed)).
		Height(7).Span(8)
	if q, ok := budgetRemaining(s); ok {
		remaining = remaining.Description("Over the rolling " + s.Spec.Window.String() + " window.").WithTarget(query(q, "remaining"+groupLegend(s)))
	} else {
		remaining = remaining.Description("A calendar window has no fixed length to record: QSP's SLO page shows the current period's budget.")
	}
	b = b.WithPanel(remaining)
	burn := timeSeries().Title(n + ": burn rate").Unit("x").Min(0).Height(7).Span(8)
	var windows []time.Duration
	var steps []any
	tier := s.Spec.Alerting.Tier(spec.SeverityPage)
	if tier == nil || len(tier.Windows) == 0 {
		tier = s.Spec.Alerting.Tier(spec.SeverityTicket)
	}
	if tier != nil {
		factors := []float64{}
		for _, w := range tier.Windows {
			windows = append(windows, w.Long.D(), w.Short.D())
			factors = append(factors, w.Factor)
		}
		slices.Sort(factors)
		factors = slices.Compact(factors)
		for i, f := range factors {
			color := gfOrange
			if i == len(factors)-1 {
				color = gfRed
			}
			steps = append(steps, f, color)
		}
		burn = burn.Description("Burn rate (error ratio over the budget) over the alert's windows; the dashed lines are its factors.")
	}
	slices.Sort(windows)
	windows = slices.Compact(windows)
	for _, w := range windows {
		burn = burn.WithTarget(query(fmt.Sprintf(`%s{slo=%q} / %s`, rulegen.RecordName(w), n, budgetText), spec.Duration(w).String()+groupLegend(s)))
	}
	burn = burn.Thresholds(thresholds(gfGreen, steps...)).
		ThresholdsStyle(common.NewGraphThresholdsStyleConfigBuilder().Mode(common.GraphThresholdsStyleModeDashed))
	return b.WithPanel(burn)
}

// markdownEscape keeps names and descriptions from the specs from
// becoming markup in a text panel.
func markdownEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, "*", `\*`, "_", `\_`, "[", `\[`, "]", `\]`, "<", "&lt;", ">", "&gt;", "`", "\\`", "#", `\#`)
	return r.Replace(s)
}

var _ cog.Builder[dashboard.Dashboard] = (*dashboard.DashboardBuilder)(nil)
