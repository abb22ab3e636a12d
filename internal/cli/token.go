package cli

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/qsp-dev/qsp/internal/api"
)

// maxTokenBytes bounds what qsp token hash reads.
const maxTokenBytes = 4096

func newTokenCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Create API tokens and hash them for the server configuration",
		Long: `The server configuration (auth.tokens) stores only the SHA-256 of each
token. token new creates a random token and prints it with its hash and the
configuration entry; token hash prints the hash of a token read from stdin.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newTokenNewCommand(), newTokenHashCommand())
	return cmd
}

func newTokenNewCommand() *cobra.Command {
	var name, role string
	cmd := &cobra.Command{
		Use:   "new [--name NAME] [--role ROLE]",
		Short: "Print a new random token, its SHA-256 and its auth.tokens entry",
		Long: `new prints a random 256-bit token, its SHA-256 (hex) and the entry to add
under auth.tokens in the server configuration. The token is shown once:
QSP keeps only the hash. Roles: viewer, operator (acknowledge incidents,
approve playbook runs, run gates), admin (reload, kill switch) and ingest
(receivers only).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := api.ParseRole(role)
			if err != nil || r == api.RoleNone {
				return fmt.Errorf("--role %q: want viewer, operator, admin or ingest", role)
			}
			if strings.ContainsAny(name, "\n\r{}:,\"'#") || strings.TrimSpace(name) == "" {
				return fmt.Errorf("--name %q: want a plain name such as ci-pipeline", name)
			}
			tok, hash, err := api.NewToken()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "token:  %s\nsha256: %s\n\n# Add to the server configuration (qsp.yaml):\nauth:\n  tokens:\n    - {name: %s, role: %s, sha256: %s}\n",
				tok, hash, name, r, hash)
			fmt.Fprintln(cmd.ErrOrStderr(), "Keep the token now: QSP stores only its hash and cannot show it again.")
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "my-token", "the token's name in logs and audit trails")
	cmd.Flags().StringVar(&role, "role", "viewer", "viewer, operator, admin or ingest")
	return cmd
}

func newTokenHashCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "hash",
		Short: "Print the SHA-256 of the token read from stdin",
		Long: `hash reads one token from stdin (surrounding whitespace and the final
newline are ignored) and prints its SHA-256 in hex, as auth.tokens[].sha256
wants it. Reading stdin keeps the token out of the shell history:

  qsp token hash < token.txt`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), maxTokenBytes+1))
			if err != nil {
				return fmt.Errorf("read stdin: %w", err)
			}
			if len(b) > maxTokenBytes {
				return fmt.Errorf("stdin: longer than %d bytes: not a token", maxTokenBytes)
			}
			tok := strings.TrimSpace(string(b))
			switch {
			case tok == "":
				return errors.New("stdin: no token (pipe the token in: qsp token hash < token.txt)")
			case strings.ContainsAny(tok, "\r\n"):
				return errors.New("stdin: more than one line: give one token")
			}
			fmt.Fprintln(cmd.OutOrStdout(), api.HashToken(tok))
			return nil
		},
	}
}
