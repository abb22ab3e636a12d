package cli

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/qsp-dev/qsp/internal/spec"
)

func newValidateCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "validate PATH...",
		Short: "Validate spec files and folders (qsp/v1, OpenSLO v1, Sloth)",
		Long: `Validate reads every spec file in PATH (folders recursively, *.yaml and
*.yml) and reports every problem at once as file:line:col: Kind/name: field:
message. Exit status 0 when valid (warnings allowed), 1 when invalid.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			set, diags := spec.Load(args...)
			out := cmd.OutOrStdout()
			switch output {
			case "text":
				printDiagnostics(out, diags)
				if !diags.HasErrors() {
					fmt.Fprintf(out, "valid: %s\n", summary(set, diags))
				}
			case "json":
				if err := writeDiagnosticsJSON(out, diags); err != nil {
					return err
				}
			default:
				return fmt.Errorf("unknown output format %q: want text or json", output)
			}
			if diags.HasErrors() {
				return errCheckFailed
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func printDiagnostics(w io.Writer, diags spec.Diagnostics) {
	for _, d := range diags {
		fmt.Fprintln(w, d.String())
	}
}

func summary(set *spec.Set, diags spec.Diagnostics) string {
	s := fmt.Sprintf("%d services, %d SLOs, %d policies, %d gates, %d playbooks",
		len(set.Services), len(set.SLOs), len(set.Policies), len(set.Gates), len(set.Playbooks))
	if n := len(diags.Warnings()); n > 0 {
		s += fmt.Sprintf(" (%d warnings)", n)
	}
	return s
}

func writeDiagnosticsJSON(w io.Writer, diags spec.Diagnostics) error {
	type item struct {
		File     string `json:"file"`
		Line     int    `json:"line,omitempty"`
		Column   int    `json:"column,omitempty"`
		Object   string `json:"object,omitempty"`
		Field    string `json:"field,omitempty"`
		Message  string `json:"message"`
		Severity string `json:"severity"`
	}
	items := make([]item, 0, len(diags))
	for _, d := range diags {
		sev := "error"
		if d.Warning {
			sev = "warning"
		}
		items = append(items, item{d.File, d.Line, d.Column, d.Object, d.Field, d.Message, sev})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(map[string]any{"valid": !diags.HasErrors(), "diagnostics": items})
}
