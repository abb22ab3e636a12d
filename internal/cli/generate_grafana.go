package cli

//lint:file-ignore SA1019 The classic dashboard JSON (dashboard, not dashboardv2) is what Grafana 9 to 12 import and provision from files; v2 needs Grafana 12's v2 dashboard API.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

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

	"github.com/qsp-dev/qsp/internal/spec"
)

func init() { generators = append(generators, newGenerateGrafanaCommand) }

func newGenerateGrafanaCommand() *cobra.Command {
	var src specSource
	var output string
	cmd := &cobra.Command{
		Use:   "grafana (--config FILE | --specs PATH...) [-o DIR]",
		Short: "Generate Grafana dashboards over QSP's /metrics",
		Long: `grafana writes Grafana dashboards (JSON) over the qsp_slo_* series QSP
exports on /metrics: one overview of every SLO (states, error budget
remaining and burn rate by category, firing alerts, the engine's health)
and one dashboard per service (each SLO's SLI, budget and burn rates
against its page thresholds). Every dashboard has a Prometheus data source
variable; import the files or provision them from DIR.

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
	overview, err := overviewDashboard().Build()
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

// sel is the label selector of the overview's filters.
const sel = `category=~"$category", service=~"$service"`

func overviewDashboard() *dashboard.DashboardBuilder {
	cats := make([]string, len(spec.Categories))
	for i, c := range spec.Categories {
		cats[i] = string(c)
	}
	b := dashboard.NewDashboardBuilder("QSP · SLO overview").
		Uid("qsp-overview").
		Description("Every SLO QSP evaluates: states, error budgets and burn rates by category. Generated by qsp generate grafana.").
		Tags([]string{"qsp", "slo"}).
		Refresh("1m").Time("now-24h", "now").Timezone("browser").
		Link(qspLinks()).
		WithVariable(datasourceVariable()).
		WithVariable(dashboard.NewCustomVariableBuilder("category").Label("Category").
			Values(dashboard.StringOrMap{String: strPtr(strings.Join(cats, ","))}).Multi(true).IncludeAll(true).AllValue(".*")).
		WithVariable(dashboard.NewQueryVariableBuilder("service").Label("Service").Datasource(promDS).
			Query(dashboard.StringOrMap{String: strPtr(`label_values(qsp_slo_objective_ratio{category=~"$category"}, service)`)}).
			Refresh(dashboard.VariableRefreshOnTimeRangeChanged).Sort(dashboard.VariableSortAlphabeticalAsc).
			Multi(true).IncludeAll(true).AllValue(".*"))

	b = b.WithRow(dashboard.NewRowBuilder("States"))
	for _, s := range []struct {
		title, state, color string
	}{
		{"Firing", "firing", gfRed}, {"Pending", "pending", gfOrange}, {"No data", "no_data", gfBlue}, {"Low traffic", "low_traffic", gfYellow}, {"OK", "ok", gfGreen},
	} {
		base := s.color
		steps := []any{}
		if s.state != "ok" {
			// Zero is good news for every state but ok.
			base, steps = gfGreen, []any{1.0, s.color}
		}
		b = b.WithPanel(stat.NewPanelBuilder().Title("SLOs " + strings.ToLower(s.title)).
			Description(fmt.Sprintf("SLO groups in the %s state now.", s.state)).
			WithTarget(query(fmt.Sprintf(`count(qsp_slo_state{state=%q, %s} == 1) or vector(0)`, s.state, sel), "")).
			ColorMode(common.BigValueColorModeBackground).GraphMode(common.BigValueGraphModeNone).
			Thresholds(thresholds(base, steps...)).Height(4).Span(4))
	}

	for _, c := range spec.Categories {
		title := strings.ToUpper(string(c)[:1]) + string(c)[1:]
		cs := fmt.Sprintf(`category=%q, service=~"$service"`, c)
		b = b.WithRow(dashboard.NewRowBuilder(title)).
			WithPanel(bargauge.NewPanelBuilder().Title(title + ": error budget remaining").
				Description("Share of each SLO's error budget left over its window; below zero it is overspent.").
				WithTarget(instant(fmt.Sprintf(`sort(qsp_slo_error_budget_remaining_ratio{%s})`, cs), "{{service}} · {{slo}}{{group}}")).
				Unit("percentunit").Min(-1).Max(1).Decimals(1).
				DisplayMode(common.BarGaugeDisplayModeBasic).Orientation(common.VizOrientationHorizontal).
				Thresholds(budgetThresholds()).Height(8).Span(8)).
			WithPanel(timeSeries().Title(title + ": burn rate over 1h").
				Description("Error ratio over the error budget in the last hour; 1 spends the budget exactly over the SLO window, 14.4 is the default page threshold.").
				WithTarget(query(fmt.Sprintf(`qsp_slo_burn_rate{%s, window="1h"}`, cs), "{{service}} · {{slo}}{{group}}")).
				Unit("x").Min(0).Thresholds(thresholds(gfGreen, 1.0, gfOrange, 14.4, gfRed)).
				ThresholdsStyle(common.NewGraphThresholdsStyleConfigBuilder().Mode(common.GraphThresholdsStyleModeDashed)).
				Height(8).Span(8)).
			WithPanel(timeSeries().Title(title + ": error budget remaining over time").
				WithTarget(query(fmt.Sprintf(`qsp_slo_error_budget_remaining_ratio{%s}`, cs), "{{service}} · {{slo}}{{group}}")).
				Unit("percentunit").Thresholds(budgetThresholds()).
				ThresholdsStyle(common.NewGraphThresholdsStyleConfigBuilder().Mode(common.GraphThresholdsStyleModeDashed)).
				Height(8).Span(8))
	}

	b = b.WithRow(dashboard.NewRowBuilder("Alerts")).
		WithPanel(table.NewPanelBuilder().Title("Alerts pending or firing").
			Description("Every SLO alert not inactive, with its severity and state.").
			WithTarget(instant(fmt.Sprintf(`qsp_slo_alert_state{state=~"pending|firing", %s} == 1`, sel), "")).
			Height(8).Span(24))

	return b.WithRow(dashboard.NewRowBuilder("QSP engine")).
		WithPanel(timeSeries().Title("Evaluation cycle duration (p99)").
			WithTarget(query(`histogram_quantile(0.99, sum by (le) (rate(qsp_engine_cycle_duration_seconds_bucket[$__rate_interval])))`, "p99")).
			Unit("s").Min(0).Height(6).Span(8)).
		WithPanel(stat.NewPanelBuilder().Title("Since the last cycle").
			Description("A cycle runs every evaluation interval (15s by default); a growing age means the engine is stuck.").
			WithTarget(query(`time() - max(qsp_engine_last_cycle_timestamp_seconds)`, "")).
			Unit("s").Thresholds(thresholds(gfGreen, 60.0, gfOrange, 300.0, gfRed)).GraphMode(common.BigValueGraphModeNone).Height(6).Span(8)).
		WithPanel(timeSeries().Title("Telemetry fetch failures").
			WithTarget(query(`sum(rate(qsp_engine_fetch_failures_total[$__rate_interval]))`, "failures/s")).
			Unit("reqps").Min(0).Height(6).Span(8))
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
	svcSel := fmt.Sprintf("service=%q", name)
	b = b.WithPanel(bargauge.NewPanelBuilder().Title("Error budget remaining").
		WithTarget(instant(fmt.Sprintf(`sort(qsp_slo_error_budget_remaining_ratio{%s})`, svcSel), "{{slo}}{{group}}")).
		Unit("percentunit").Min(-1).Max(1).Decimals(1).
		DisplayMode(common.BarGaugeDisplayModeBasic).Orientation(common.VizOrientationHorizontal).
		Thresholds(budgetThresholds()).Height(5).Span(12))

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
			b = sloPanels(b, s)
		}
	}
	return b
}

// sloPanels adds an SLO's panels: its SLI over the SLO window (derived
// from the budget spent, as QSP computes it) against the objective, its
// budget, and its burn rate over the page alert's windows against their
// thresholds.
func sloPanels(b *dashboard.DashboardBuilder, s *spec.SLO) *dashboard.DashboardBuilder {
	n := s.Name()
	ss := fmt.Sprintf("slo=%q", n)
	objective := s.Spec.Objective.Ratio()
	desc := s.Spec.Description
	if desc == "" {
		desc = fmt.Sprintf("SLO %s, objective %s over %s.", n, s.Spec.Objective, s.Spec.Window)
	}
	b = b.WithPanel(timeSeries().Title(n + ": SLI over " + s.Spec.Window.String()).
		Description(desc).
		WithTarget(query(fmt.Sprintf(`1 - qsp_slo_error_budget_consumed_ratio{%s} * on (slo, service, category, group) (1 - qsp_slo_objective_ratio{%s})`, ss, ss), "SLI {{group}}")).
		WithTarget(query(fmt.Sprintf(`qsp_slo_objective_ratio{%s}`, ss), "objective {{group}}")).
		Unit("percentunit").Decimals(3).
		Thresholds(thresholds(gfRed, objective, gfGreen)).
		ThresholdsStyle(common.NewGraphThresholdsStyleConfigBuilder().Mode(common.GraphThresholdsStyleModeDashed)).
		Height(7).Span(8))
	b = b.WithPanel(timeSeries().Title(n + ": error budget remaining").
		WithTarget(query(fmt.Sprintf(`qsp_slo_error_budget_remaining_ratio{%s}`, ss), "remaining {{group}}")).
		Unit("percentunit").Thresholds(budgetThresholds()).
		ThresholdsStyle(common.NewGraphThresholdsStyleConfigBuilder().Mode(common.GraphThresholdsStyleModeDashed)).
		Height(7).Span(8))
	burn := timeSeries().Title(n + ": burn rate").Unit("x").Min(0).Height(7).Span(8)
	var windows []string
	var steps []any
	if page := s.Spec.Alerting.Tier(spec.SeverityPage); page != nil {
		for _, w := range page.Windows {
			windows = append(windows, w.Long.String(), w.Short.String())
		}
		factors := []float64{}
		for _, w := range page.Windows {
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
		burn = burn.Description("Burn rate over the page alert's windows; the dashed lines are its thresholds.")
	}
	if len(windows) == 0 {
		windows = []string{"5m", "1h", "6h"}
	}
	slices.Sort(windows)
	windows = slices.Compact(windows)
	burn = burn.WithTarget(query(fmt.Sprintf(`qsp_slo_burn_rate{%s, window=~%q}`, ss, strings.Join(windows, "|")), "{{window}} {{group}}")).
		Thresholds(thresholds(gfGreen, steps...)).
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
