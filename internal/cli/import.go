package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/qsp-dev/qsp/internal/spec"
)

func newImportCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "import openslo|sloth FILE...",
		Short: "Convert OpenSLO v1 or Sloth prometheus/v1 documents to qsp/v1 YAML",
		Long: `Import converts OpenSLO v1 (Service, SLO, SLI, AlertPolicy, AlertCondition,
DataSource) or Sloth prometheus/v1 documents to qsp/v1 and prints them on
stdout. Whatever cannot be converted is reported with its location on stderr
and the command exits 1; nothing is dropped silently.`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			format, files := args[0], args[1:]
			var want spec.Format
			switch format {
			case "openslo":
				want = spec.FormatOpenSLO
			case "sloth":
				want = spec.FormatSloth
			default:
				return fmt.Errorf("unknown format %q: want openslo or sloth", format)
			}
			out, diags, err := spec.Import(want, files...)
			if err != nil {
				return err
			}
			printDiagnostics(cmd.ErrOrStderr(), diags)
			if diags.HasErrors() {
				return errCheckFailed
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
}
