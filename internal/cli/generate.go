package cli

import (
	"github.com/spf13/cobra"
)

// generators are the subcommands of qsp generate; each lives in its own
// file and adds itself here.
var generators []func() *cobra.Command

func newGenerateCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "generate",
		Short: "Generate Prometheus rules or Grafana dashboards from the specs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
	}
	for _, g := range generators {
		cmd.AddCommand(g())
	}
	return cmd
}
