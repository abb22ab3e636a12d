// Package cli holds the cobra commands of the qsp binary. Commands turn flags
// into Options for the packages that do the work, print results to stdout and
// logs to stderr, and map errors to exit codes in one place (exitCode).
package cli

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

// Exit codes shared by every command.
const (
	exitOK     = 0
	exitFailed = 1 // a check said no: invalid spec, failed gate
	exitError  = 2 // usage or runtime error, inconclusive result
)

// errCheckFailed is returned by commands whose check ran and said no. The
// command has already printed why.
var errCheckFailed = errors.New("check failed")

// errNotImplemented is returned by commands that a later milestone fills in.
var errNotImplemented = errors.New("not implemented yet")

// Run executes the qsp command line and returns the process exit code.
func Run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRootCommand(stdin, stdout, stderr)
	root.SetArgs(args)
	err := root.Execute()
	return exitCode(err, stderr)
}

// exitCode maps a command error to an exit code and prints it once.
func exitCode(err error, stderr io.Writer) int {
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errCheckFailed):
		return exitFailed
	default:
		fmt.Fprintf(stderr, "qsp: %v\n", err)
		return exitError
	}
}

func newRootCommand(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "qsp",
		Short: "Keep services inside their Quality, Security and Performance objectives",
		Long: `qsp evaluates SLOs declared as YAML (qsp/v1) over Prometheus telemetry,
alerts on error-budget burn, gates deploys and runs guarded playbooks.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(
		newVersionCommand(),
		newValidateCommand(),
		newImportCommand(),
		newServeCommand(),
		newStatusCommand(),
		newGenerateCommand(),
		newGateCommand(),
		newTokenCommand(),
		newDemoCommand(),
		newReportCommand(),
		newIncidentCommand(),
	)
	for _, c := range []struct{ use, short string }{} {
		root.AddCommand(pendingCommand(c.use, c.short))
	}
	return root
}

// pendingCommand stands in for a command whose milestone has not landed: it
// says so and exits 2 rather than pretending to work.
func pendingCommand(use, short string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short + " (not implemented yet)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			return fmt.Errorf("%s: %w", cmd.Name(), errNotImplemented)
		},
	}
}
