package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/qsp-dev/qsp/internal/policy"
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
			for _, a := range args {
				if _, err := os.Stat(a); err != nil {
					return err // a path that is not there is a usage error (2), not an invalid spec (1)
				}
			}
			set, diags := spec.Load(args...)
			if !diags.HasErrors() {
				// Rego that parses may still not compile or type-check
				// against the policy input: build the policy engine as the
				// server would.
				diags = append(diags, policyDiagnostics(set)...)
				diags.Sort()
			}
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

// printDiagnostics prints one diagnostic a line; on a terminal errors
// are red and warnings yellow.
func printDiagnostics(w io.Writer, diags spec.Diagnostics) {
	color := colorOn(w)
	for _, d := range diags {
		switch {
		case !color:
			fmt.Fprintln(w, d.String())
		case d.Warning:
			fmt.Fprintln(w, "\x1b[33m"+d.String()+colorReset)
		default:
			fmt.Fprintln(w, "\x1b[31m"+d.String()+colorReset)
		}
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

// policyDiagnostics compiles the set's policies and reports what does not
// compile as diagnostics at the module's position.
func policyDiagnostics(set *spec.Set) spec.Diagnostics {
	_, err := policy.New(policy.Options{Policies: set.Policies})
	if err == nil {
		return nil
	}
	var out spec.Diagnostics
	var walk func(err error)
	walk = func(err error) {
		if multi, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range multi.Unwrap() {
				walk(e)
			}
			return
		}
		var me *policy.ModuleError
		if errors.As(err, &me) {
			d := spec.Diagnostic{File: me.File, Line: me.Line, Column: max(me.Column, 1), Object: "Policy/" + me.Policy, Field: "spec.rego", Message: me.Message}
			if me.Code != "" {
				d.Message = me.Code + ": " + me.Message
			}
			if me.Column == 0 && me.RegoLine > 0 {
				d.Message += fmt.Sprintf(" (rego line %d, column %d)", me.RegoLine, me.RegoColumn)
			}
			if p := set.Policy(me.Policy); p != nil && d.File == "" {
				d.File, d.Line, d.Column = p.Where().File, p.Where().Line, p.Where().Column
			}
			out = append(out, d)
			return
		}
		if u := errors.Unwrap(err); u != nil && u != err {
			if _, ok := u.(interface{ Unwrap() []error }); ok {
				walk(u)
				return
			}
		}
		out = append(out, spec.Diagnostic{File: "(policies)", Message: err.Error()})
	}
	walk(err)
	return out
}
