package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/qsp-dev/qsp/internal/spec"
)

func newImportCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "import openslo|sloth|pyrra FILE...",
		Short: "Convert OpenSLO, Sloth or Pyrra documents to qsp/v1 YAML",
		Long: `Import converts OpenSLO v1 and v1alpha (Service, SLO, SLI, AlertPolicy,
AlertCondition, DataSource), Sloth prometheus/v1 and sloth.slok.dev/v1, or
Pyrra pyrra.dev/v1alpha1 ServiceLevelObjective documents to qsp/v1 and prints
every object that converts on stdout. Diagnostics go to stderr, always, with
their file:line:col; whatever cannot be converted is named there and the
command exits 1; nothing is dropped silently. Warnings (approximations) keep
exit status 0.`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			format, files := args[0], args[1:]
			var want spec.Format
			switch format {
			case "openslo":
				want = spec.FormatOpenSLO
			case "sloth":
				want = spec.FormatSloth
			case "pyrra":
				want = spec.FormatPyrra
			default:
				return fmt.Errorf("unknown format %q: want openslo, sloth or pyrra", format)
			}
			out, diags, err := spec.Import(want, files...)
			if err != nil {
				return err
			}
			printDiagnostics(cmd.ErrOrStderr(), diags)
			if _, err := cmd.OutOrStdout().Write(out); err != nil {
				return err
			}
			if diags.HasErrors() {
				return errCheckFailed
			}
			return nil
		},
	}
}
