package cli

import (
	"cmp"
	"errors"
	"os"

	"github.com/spf13/cobra"

	"github.com/qsp-dev/qsp/internal/app"
	"github.com/qsp-dev/qsp/internal/spec"
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

// errNoSpecs is returned when a generator is told neither specs nor a
// configuration file. It does not default to the current folder: from a
// repository's root that parses test fixtures too.
var errNoSpecs = errors.New("no specs: pass --config FILE (the server configuration, whose specs are read) or --specs PATH")

// specSource is where a generator reads its specs from: the --specs
// flags, or else the specs the server configuration lists, as serve
// reads them.
type specSource struct {
	config string
	specs  []string
}

func (s *specSource) register(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&s.config, "config", "c", "", "server configuration file (qsp.yaml) whose specs to read, as serve does")
	cmd.Flags().StringSliceVar(&s.specs, "specs", nil, "spec files or folders (repeatable; overrides the configuration's specs)")
}

// paths returns the spec paths to load.
func (s *specSource) paths() ([]string, error) {
	if len(s.specs) > 0 {
		return s.specs, nil
	}
	if s.config == "" {
		return nil, errNoSpecs
	}
	cfg, err := app.LoadConfig(s.config)
	if err != nil {
		return nil, err
	}
	if len(cfg.Specs) == 0 {
		return nil, errors.New("no specs: the configuration file lists none; pass --specs PATH")
	}
	return cfg.Specs, nil
}

// load loads the specs; diagnostics are returned when they have errors.
func (s *specSource) load() (*spec.Set, []string, spec.Diagnostics, error) {
	paths, err := s.paths()
	if err != nil {
		return nil, nil, nil, err
	}
	set, diags := spec.Load(paths...)
	if diags.HasErrors() {
		return nil, paths, diags, nil
	}
	return set, paths, nil, nil
}

// Environment variables that default the address flags, so scripts (and
// the documentation's command test) can move every command to another
// port without changing the commands.
const (
	envListen = "QSP_LISTEN" // serve and demo --listen
	envURL    = "QSP_URL"    // --url of status, gate, report and incident
	// envDataDir defaults serve --data-dir.
	envDataDir = "QSP_DATA_DIR"
)

func envOr(key, def string) string { return cmp.Or(os.Getenv(key), def) }
