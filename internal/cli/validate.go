package cli

import (
	"github.com/spf13/cobra"
)

func newValidateCommand() *cobra.Command { return pendingCommand("validate PATH...", "Validate spec files") }
func newImportCommand() *cobra.Command   { return pendingCommand("import openslo|sloth FILE", "Convert to qsp/v1") }
