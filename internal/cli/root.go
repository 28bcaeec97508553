// Package cli holds kongfb's cobra commands: one file per command, each with
// an options struct and a run function that tests call directly. Commands
// print through internal/ui and return errors; Main maps them to exit codes.
package cli

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/kongfb/kongfb/internal/ui"
)

// Exit codes. They are documented in `kongfb --help`.
const (
	ExitOK      = 0 // success
	ExitFailure = 1 // the command ran and failed (invalid config, failed check, runtime error)
	ExitUsage   = 2 // bad flags or arguments
)

// ExitError carries an exit code through cobra. Its message (if any) has
// already been shown to the user unless Silent is false.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit %d", e.Code)
	}
	return e.Err.Error()
}
func (e *ExitError) Unwrap() error { return e.Err }

// usageError marks errors caused by how the command was called.
type usageError struct{ error }

func usageErrorf(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// Streams are the process's standard streams, replaceable in tests.
type Streams struct {
	In  io.Reader
	Out io.Writer
	Err io.Writer
}

// globalOptions are the persistent flags every command shares.
type globalOptions struct {
	Output   string
	LogLevel string
	Config   string
}

// app is what commands get from the root: streams, global options and viper.
type app struct {
	streams Streams
	global  globalOptions
	v       *viper.Viper
}

func (a *app) printer() (*ui.Printer, error) {
	f, err := ui.ParseFormat(a.global.Output)
	if err != nil {
		return nil, usageError{err}
	}
	return ui.New(a.streams.Out, a.streams.Err, f), nil
}

func (a *app) logger() *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(a.global.LogLevel)); err != nil {
		lvl = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(a.streams.Err, &slog.HandlerOptions{Level: lvl}))
}

// NewRootCommand builds the whole command tree.
func NewRootCommand(s Streams) *cobra.Command {
	a := &app{streams: s, v: viper.New()}
	root := &cobra.Command{
		Use:   "kongfb",
		Short: "Kong-compatible control plane and data plane with fallback configuration",
		Long: `kongfb is one binary that runs a Kong-compatible control plane (Admin API,
SQLite or PostgreSQL store, mTLS cluster listener) and data planes that keep
serving across control-plane outages, with fallback configuration exported to
and imported from object storage.

Settings come from flags, then KONGFB_* environment variables, then the file
given with --config, then Kong's own KONG_* environment names where Kong has
one, then the defaults.

Exit codes:
  0  success
  1  the command failed (invalid configuration, failed verification, runtime error)
  2  bad flags or arguments`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return a.loadConfigFile(cmd)
		},
	}
	root.SetIn(s.In)
	root.SetOut(s.Out)
	root.SetErr(s.Err)
	pf := root.PersistentFlags()
	pf.StringVarP(&a.global.Output, "output", "o", "text", "output format: text, json or yaml")
	pf.StringVar(&a.global.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	pf.StringVar(&a.global.Config, "config", "", "config file (YAML) whose keys are flag names")

	root.AddCommand(
		newVersionCommand(a),
		newCompletionCommand(a),
	)
	for _, add := range extraCommands {
		root.AddCommand(add(a))
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	return root
}

// extraCommands lets each command file register itself without editing root.go.
var extraCommands []func(*app) *cobra.Command

func register(f func(*app) *cobra.Command) { extraCommands = append(extraCommands, f) }

// loadConfigFile reads --config (if any) and binds KONGFB_* env so that every
// flag not given on the command line takes its value from the environment
// or else the file. A flag set this way is marked Changed: it was given, and
// envDefault (Kong's KONG_* names, applied later by the commands) must not
// override it.
func (a *app) loadConfigFile(cmd *cobra.Command) error {
	a.v.SetEnvPrefix("KONGFB")
	a.v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	a.v.AutomaticEnv()
	if a.global.Config != "" {
		a.v.SetConfigFile(a.global.Config)
		if err := a.v.ReadInConfig(); err != nil {
			return usageErrorf("read config file %s: %w", a.global.Config, err)
		}
	}
	var firstErr error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Changed || firstErr != nil {
			return
		}
		if !a.v.IsSet(f.Name) {
			return
		}
		val := a.v.Get(f.Name)
		var s string
		switch t := val.(type) {
		case []any:
			parts := make([]string, len(t))
			for i, p := range t {
				parts[i] = fmt.Sprint(p)
			}
			s = strings.Join(parts, ",")
		default:
			s = fmt.Sprint(t)
		}
		if err := f.Value.Set(s); err != nil {
			firstErr = usageErrorf("invalid value %q for %s (from KONGFB_%s or --config): %w",
				s, f.Name, strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_")), err)
			return
		}
		f.Changed = true
	})
	return firstErr
}

// envDefault sets a flag from a Kong-named environment variable (KONG_*) when
// the flag was given neither on the command line nor by KONGFB_* or --config
// (loadConfigFile marks those Changed): the kongfb-specific settings are the
// more deliberate choice.
func envDefault(cmd *cobra.Command, flag, env string) error {
	f := cmd.Flags().Lookup(flag)
	if f == nil || f.Changed {
		return nil
	}
	if val, ok := os.LookupEnv(env); ok {
		if err := f.Value.Set(val); err != nil {
			return usageErrorf("invalid %s=%q: %w", env, val, err)
		}
		f.Changed = true
	}
	return nil
}

// Main runs the CLI and returns the process exit code.
func Main(args []string, in io.Reader, out, errw io.Writer) int {
	root := NewRootCommand(Streams{In: in, Out: out, Err: errw})
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return ExitOK
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		if ee.Err != nil {
			fmt.Fprintf(errw, "Error: %v\n", ee.Err)
		}
		return ee.Code
	}
	fmt.Fprintf(errw, "Error: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) || isCobraUsage(err) {
		fmt.Fprintln(errw, "Run 'kongfb --help' for usage.")
		return ExitUsage
	}
	return ExitFailure
}

func isCobraUsage(err error) bool {
	msg := err.Error()
	return strings.HasPrefix(msg, "unknown command") || strings.HasPrefix(msg, "unknown flag") ||
		strings.Contains(msg, "accepts ") || strings.Contains(msg, "requires at least") ||
		strings.HasPrefix(msg, "required flag")
}
