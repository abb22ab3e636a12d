package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/qsp-dev/qsp/internal/report"
)

// maxDocumentBytes bounds a report or postmortem read from the server.
const maxDocumentBytes = 64 << 20

// serverFlags are the flags of the commands that ask a running server.
type serverFlags struct {
	addr, token string
}

func (f *serverFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.addr, "url", envOr(envURL, "http://127.0.0.1:8080"), "URL of the running qsp serve (default $"+envURL+" or http://127.0.0.1:8080)")
	cmd.Flags().StringVar(&f.token, "token", "", "API token (default $QSP_TOKEN)")
}

// get reads path from the server: the body of a 2xx answer, or an error
// with the server's message.
func (f *serverFlags) get(ctx context.Context, path string) ([]byte, error) {
	token := f.token
	if token == "" {
		token = os.Getenv("QSP_TOKEN")
	}
	if _, err := url.Parse(f.addr); err != nil {
		return nil, fmt.Errorf("--url: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(f.addr, "/")+path, nil)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocumentBytes+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxDocumentBytes {
		return nil, fmt.Errorf("GET %s: answer larger than %d MiB", path, maxDocumentBytes>>20)
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("GET %s: %s: %s", path, resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}

// writeOut writes a document to --output, or stdout.
func writeOut(cmd *cobra.Command, output string, data []byte) error {
	if output == "" || output == "-" {
		_, err := cmd.OutOrStdout().Write(data)
		return err
	}
	return os.WriteFile(output, data, 0o644)
}

func newReportCommand() *cobra.Command {
	var sf serverFlags
	var period, service, format, output, chromium string
	cmd := &cobra.Command{
		Use:   "report",
		Short: "Write the SLO report of a month",
		Long: `Report asks a running qsp serve for the SLO report of a month: attainment
per SLO against its objective, the budget spent and by which incidents and
deploys, time to detect and repair, gate verdicts, playbook runs and the SLOs
at risk next period. --format md (default), html, json or pdf; pdf prints the
HTML report here with headless Chromium, which must be on PATH (or named with
--chromium).`,
		Example: `  qsp report --period 2026-11 > 2026-11.md
  qsp report --period 2026-11 --service checkout --format pdf -o checkout-2026-11.pdf`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, _, err := report.ParsePeriod(period, time.UTC); err != nil {
				return fmt.Errorf("--period: %w", err)
			}
			fetch := format
			switch format {
			case "md", "html", "json":
			case "pdf":
				fetch = "html"
				if chromium == "" {
					p, err := report.FindChromium()
					if err != nil {
						return fmt.Errorf("--format pdf: %w", err)
					}
					chromium = p
				}
			default:
				return fmt.Errorf("--format %q: want md, html, json or pdf", format)
			}
			q := url.Values{"period": {period}, "format": {fetch}}
			if service != "" {
				q.Set("service", service)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Minute)
			defer cancel()
			body, err := sf.get(ctx, "/api/v1/reports?"+q.Encode())
			if err != nil {
				return fmt.Errorf("report: %w", err)
			}
			if format == "pdf" {
				if body, err = report.PDF(ctx, chromium, body); err != nil {
					return fmt.Errorf("report: %w", err)
				}
			}
			return writeOut(cmd, output, body)
		},
	}
	sf.add(cmd)
	fl := cmd.Flags()
	fl.StringVar(&period, "period", "", "the month, YYYY-MM (required)")
	fl.StringVar(&service, "service", "", "only this service")
	fl.StringVar(&format, "format", "md", "md, html, json or pdf")
	fl.StringVarP(&output, "output", "o", "", "write to this file instead of stdout")
	fl.StringVar(&chromium, "chromium", "", "Chromium executable for --format pdf (default: chromium, chromium-browser or google-chrome on PATH)")
	_ = cmd.MarkFlagRequired("period")
	return cmd
}

func newIncidentCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "incident",
		Short: "Work with the incidents of a running controller",
	}
	var sf serverFlags
	var format, output string
	export := &cobra.Command{
		Use:   "export ID",
		Short: "Write an incident's postmortem draft",
		Long: `Export writes the postmortem draft of an incident as Markdown (or JSON with
--format json): its timeline, SLIs and budget impact, the deploy before it,
alerts and playbook actions with their reasons, time to detect and repair,
and the open questions only people can answer.`,
		Example: `  qsp incident export 12 > postmortem-12.md`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil || id < 1 {
				return fmt.Errorf("incident id %q: want a positive integer", args[0])
			}
			if format != "md" && format != "json" {
				return fmt.Errorf("--format %q: want md or json", format)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			body, err := sf.get(ctx, fmt.Sprintf("/api/v1/incidents/%d/postmortem?format=%s", id, format))
			if err != nil {
				return fmt.Errorf("incident export: %w", err)
			}
			return writeOut(cmd, output, body)
		},
	}
	sf.add(export)
	export.Flags().StringVar(&format, "format", "md", "md or json")
	export.Flags().StringVarP(&output, "output", "o", "", "write to this file instead of stdout")
	cmd.AddCommand(export)
	return cmd
}
