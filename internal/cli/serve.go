package cli

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/qsp-dev/qsp/internal/app"
	"github.com/qsp-dev/qsp/internal/progress"
	"github.com/qsp-dev/qsp/internal/spec"
)

// serveFlags are the flags that override the configuration file.
type serveFlags struct {
	config      string
	listen      string
	dataDir     string
	specs       []string
	source      string
	remoteURL   string
	retention   string
	logLevel    string
	logFormat   string
	externalURL string
	// insecureAnonymousAdmin sets auth.insecureAnonymousAdmin.
	insecureAnonymousAdmin bool
}

func (f *serveFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVarP(&f.config, "config", "c", "", "server configuration file (qsp.yaml)")
	fl.StringVar(&f.listen, "listen", "", "HTTP listen address (default $"+envListen+", the configuration's listen, or 127.0.0.1:8080)")
	fl.StringVar(&f.dataDir, "data-dir", "", "data directory for the TSDB and the database (default $"+envDataDir+", the configuration's dataDir, or ./data)")
	fl.StringSliceVar(&f.specs, "specs", nil, "spec files or folders (repeatable)")
	fl.StringVar(&f.source, "source", "", "telemetry source: embedded or remote")
	fl.StringVar(&f.remoteURL, "remote-url", "", "Prometheus-compatible API of the remote source")
	fl.StringVar(&f.retention, "retention", "", "embedded TSDB retention (default 35d)")
	fl.StringVar(&f.logLevel, "log-level", "", "debug, info, warn or error (default info)")
	fl.StringVar(&f.logFormat, "log-format", "", "text or json (default text)")
	fl.StringVar(&f.externalURL, "external-url", "", "URL users reach QSP at, for links in alerts")
	fl.BoolVar(&f.insecureAnonymousAdmin, "insecure-anonymous-admin", false,
		"without auth.tokens, let every request act as admin (default: read-only viewer); for a laptop, never a shared server")
}

// loadConfig reads the configuration file, if any, and applies the flags.
func (f *serveFlags) loadConfig() (*app.Config, error) {
	cfg := &app.Config{}
	if f.config != "" {
		c, err := app.LoadConfig(f.config)
		if err != nil {
			return nil, err
		}
		cfg = c
	}
	if l := cmp.Or(f.listen, os.Getenv(envListen)); l != "" {
		// The flag, then the environment, then the file.
		cfg.Listen = l
	}
	if d := cmp.Or(f.dataDir, os.Getenv(envDataDir)); d != "" {
		cfg.DataDir = d
	}
	if len(f.specs) > 0 {
		cfg.Specs = f.specs
	}
	if f.source != "" {
		cfg.Source.Mode = f.source
	}
	if f.remoteURL != "" {
		cfg.Source.Remote.URL = f.remoteURL
		if f.source == "" {
			cfg.Source.Mode = app.ModeRemote
		}
	}
	if f.retention != "" {
		var d spec.Duration
		if err := d.UnmarshalText([]byte(f.retention)); err != nil {
			return nil, fmt.Errorf("--retention: %w", err)
		}
		cfg.Source.Embedded.Retention = d
	}
	if f.logLevel != "" {
		cfg.LogLevel = f.logLevel
	}
	if f.logFormat != "" {
		cfg.LogFormat = f.logFormat
	}
	if f.externalURL != "" {
		cfg.ExternalURL = f.externalURL
	}
	if f.insecureAnonymousAdmin {
		cfg.Auth.InsecureAnonymousAdmin = true
	}
	if len(cfg.Specs) == 0 {
		return nil, fmt.Errorf("no specs: pass --specs PATH or list specs in the configuration file")
	}
	return cfg, nil
}

func newServeCommand() *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the controller: receivers, SLO engine, alerting, API and UI",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := f.loadConfig()
			if err != nil {
				return err
			}
			logger, err := newLogger(cmd.ErrOrStderr(), cfg.LogLevel, cfg.LogFormat)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			a, err := app.New(ctx, app.Options{Config: cfg, Logger: logger, Progress: progress.Backfill(cmd.ErrOrStderr())})
			if err != nil {
				return err
			}
			go reloadOnHUP(ctx, a, logger)
			return a.Run(ctx)
		},
	}
	f.register(cmd)
	return cmd
}

// reloadOnHUP reloads the specs on SIGHUP, like Prometheus.
func reloadOnHUP(ctx context.Context, a *app.App, logger *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if err := a.Reload(ctx); err != nil {
				logger.Error("reload on SIGHUP", "err", err)
			}
		}
	}
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if level == "" {
		level = "info"
	}
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", format)
}
