package cli

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/qsp-dev/qsp/internal/rulegen"
)

func init() { generators = append(generators, newGenerateRulesCommand) }

func newGenerateRulesCommand() *cobra.Command {
	var src specSource
	var output, externalURL string
	cmd := &cobra.Command{
		Use:   "prometheus-rules (--config FILE | --specs PATH...) [-o FILE]",
		Short: "Generate Prometheus recording and multi-window burn-rate alerting rules",
		Long: `prometheus-rules writes a Prometheus rule file for the SLOs in the specs:
recording rules slo:sli_error:ratio_rate<window> for each window the SLO's
alert pairs use, and one page and one ticket alerting rule per SLO with the
labels and annotations of QSP's own alerts. Every indicator kind is written:
slice-judged SLIs (threshold, latency percentile, timeslices budgeting) also
record their condition every evaluation step (slo:sli_value_good), and
composites combine their children's ratios. An SLO that cannot be written
(for example a composite over grouped children) is listed with its reason in
the file's header and on stderr.

The file passes promtool check rules. Exit status 0 on success, 1 when the
specs are invalid, 2 on other errors.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			set, specs, diags, err := src.load()
			if err != nil {
				return err
			}
			if diags.HasErrors() {
				printDiagnostics(cmd.ErrOrStderr(), diags)
				return errCheckFailed
			}
			res, err := rulegen.Generate(set, rulegen.Options{ExternalURL: externalURL})
			if err != nil {
				return err
			}
			for _, s := range res.Skipped {
				fmt.Fprintf(cmd.ErrOrStderr(), "skipped SLO %s: %s\n", s.SLO, s.Reason)
			}
			var b bytes.Buffer
			if err := res.Write(&b, rulegen.Options{Source: strings.Join(specs, ", ")}); err != nil {
				return err
			}
			if output == "" || output == "-" {
				_, err := cmd.OutOrStdout().Write(b.Bytes())
				return err
			}
			return writeFileAtomic(output, b.Bytes())
		},
	}
	src.register(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "", "write the rules to FILE instead of stdout")
	cmd.Flags().StringVar(&externalURL, "external-url", "", "QSP's external URL, for the dashboard annotation")
	return cmd
}

// writeFileAtomic writes through a temporary file in the same folder, so
// a Prometheus watching the file never loads half of it.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
