package cli

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/qsp-dev/qsp/internal/api"
	"github.com/qsp-dev/qsp/internal/engine"
)

func newStatusCommand() *cobra.Command {
	var addr, output, token, service, category, state string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the SLOs of a running controller",
		Long: `Status asks a running qsp serve for every SLO's state, budget and burn
rates and prints them as a table, or as JSON with -o json.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if token == "" {
				token = os.Getenv("QSP_TOKEN")
			}
			if _, err := url.Parse(addr); err != nil {
				return fmt.Errorf("--url: %w", err)
			}
			q := url.Values{"limit": {"10000"}}
			for k, v := range map[string]string{"service": service, "category": category, "state": state} {
				if v != "" {
					q.Set(k, v)
				}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			var body json.RawMessage
			c := &api.Client{Base: addr, Token: token}
			if err := c.Do(ctx, http.MethodGet, "/api/v1/slos?"+q.Encode(), nil, &body); err != nil {
				return fmt.Errorf("status: %w", err)
			}
			switch output {
			case "json":
				_, err := fmt.Fprintf(cmd.OutOrStdout(), "%s\n", body)
				return err
			case "table":
				var p struct {
					Items []*engine.Status `json:"items"`
				}
				if err := json.Unmarshal(body, &p); err != nil {
					return fmt.Errorf("status: decode: %w", err)
				}
				return printStatusTable(cmd.OutOrStdout(), p.Items)
			}
			return fmt.Errorf("unknown output format %q: want table or json", output)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&addr, "url", envOr(envURL, "http://127.0.0.1:8080"), "URL of the running qsp serve (default $"+envURL+" or http://127.0.0.1:8080)")
	fl.StringVarP(&output, "output", "o", "table", "table or json")
	fl.StringVar(&token, "token", "", "API token (default $QSP_TOKEN)")
	fl.StringVar(&service, "service", "", "only this service")
	fl.StringVar(&category, "category", "", "only this category: quality, security or performance")
	fl.StringVar(&state, "state", "", "only this state: ok, pending, firing, no_data, low_traffic")
	return cmd
}

// stateRank orders states worst first, as the engine lists them: no
// data, firing, pending, low traffic, not evaluated yet, ok.
var stateRank = map[engine.State]int{
	engine.StateNoData: 0, engine.StateFiring: 1, engine.StatePending: 2,
	engine.StateLowTraffic: 3, engine.StateUnknown: 4, engine.StateOK: 5,
}

// sortWorstFirst orders statuses by state, worst first, then by the
// budget left (least first), then by name.
func sortWorstFirst(sts []*engine.Status) {
	slices.SortStableFunc(sts, func(a, b *engine.Status) int {
		ra, oka := stateRank[a.State]
		rb, okb := stateRank[b.State]
		if !oka {
			ra = len(stateRank)
		}
		if !okb {
			rb = len(stateRank)
		}
		return cmp.Or(cmp.Compare(ra, rb), cmp.Compare(a.Budget.RemainingRatio, b.Budget.RemainingRatio), strings.Compare(a.Key, b.Key))
	})
}

// printStatusTable prints the statuses worst first, the state coloured
// on a terminal.
func printStatusTable(w io.Writer, sts []*engine.Status) error {
	sts = slices.Clone(sts)
	sortWorstFirst(sts)
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SLO\tSERVICE\tCATEGORY\tSTATE\tOBJECTIVE\tSLI\tBUDGET LEFT\tBURN 1H\tBURN 5M\tALERTS")
	states := make([]engine.State, len(sts))
	for i, st := range sts {
		states[i] = st.State
		name := st.Key
		alerts := []string{}
		for _, a := range st.Alerts {
			if a.State == "firing" || a.State == "pending" {
				alerts = append(alerts, a.Severity+":"+string(a.State))
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, st.Service, st.Category, st.State,
			pct(st.Objective), optPct(st.SLI), fmt.Sprintf("%.1f%%", 100*st.Budget.RemainingRatio),
			burn(st, time.Hour), burn(st, 5*time.Minute), strings.Join(alerts, ","))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	out := b.String()
	if colorOn(w) {
		header, _, _ := strings.Cut(out, "\n")
		out = paintColumn(out, len([]rune(header[:strings.Index(header, "STATE")])), states)
	}
	_, err := io.WriteString(w, out)
	return err
}

func pct(f float64) string {
	return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.4f", 100*f), "0"), ".") + "%"
}

func optPct(f *float64) string {
	if f == nil {
		return "-"
	}
	return fmt.Sprintf("%.4f%%", 100**f)
}

func burn(st *engine.Status, d time.Duration) string {
	for _, w := range st.Windows {
		if w.Name == durationName(d) && w.BurnRate != nil {
			return fmt.Sprintf("%.2f", *w.BurnRate)
		}
	}
	return "-"
}

func durationName(d time.Duration) string {
	switch d {
	case time.Hour:
		return "1h"
	case 5 * time.Minute:
		return "5m"
	}
	return d.String()
}
