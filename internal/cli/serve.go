package cli

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

func init() { register(newServeCommand) }

// serveSubcommands lets each `serve <role>` file (serve_cp.go, serve_dp.go)
// register itself without editing this file.
var serveSubcommands []func(*app) *cobra.Command

func registerServe(f func(*app) *cobra.Command) { serveSubcommands = append(serveSubcommands, f) }

func newServeCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run a kongfb node: control plane (cp) or data plane (dp)",
		Long: `Run a long-lived kongfb node. The role is a subcommand:

  cp   a control plane: Kong's Admin API over SQLite or PostgreSQL
  dp   a data plane: proxies traffic with Kong's routing semantics and
       serves Kong's status API (/status, /status/ready)

Settings take Kong's KONG_* environment names where Kong has one
(KONG_PROXY_LISTEN, KONG_STATUS_LISTEN, KONG_DECLARATIVE_CONFIG, ...), so an
existing Kong deployment's environment can be reused.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
	}
	for _, add := range serveSubcommands {
		cmd.AddCommand(add(a))
	}
	return cmd
}

// kongEnvDefaults applies Kong-named environment variables (flag -> env) to
// the flags given nowhere else (see envDefault). The *app argument is not
// needed any more; it stays until the callers drop it.
func kongEnvDefaults(_ *app, cmd *cobra.Command, pairs [][2]string) error {
	for _, p := range pairs {
		if err := envDefault(cmd, p[0], p[1]); err != nil {
			return err
		}
	}
	return nil
}

// kongBool is a boolean flag that also takes kong.conf's spellings: on/off,
// true/false (and 1/0, yes/no), case-insensitively.
type kongBool bool

func (b *kongBool) Set(s string) error {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "on", "true", "1", "yes":
		*b = true
	case "off", "false", "0", "no":
		*b = false
	default:
		return fmt.Errorf("want on or off (or true/false), got %q", s)
	}
	return nil
}

func (b *kongBool) String() string   { return strconv.FormatBool(bool(*b)) }
func (b *kongBool) Type() string     { return "on|off" }
func (b *kongBool) IsBoolFlag() bool { return true }

// nginxDuration is a duration flag that also takes nginx's time syntax used
// by kong.conf: a bare number is seconds ("10" = 10s), and "ms", "s", "m",
// "h" suffixes combine as in Go ("1m30s").
type nginxDuration time.Duration

func (d *nginxDuration) Set(s string) error {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		*d = nginxDuration(time.Duration(n) * time.Second)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("want a duration such as 10s, 500ms or 1m, got %q", s)
	}
	*d = nginxDuration(v)
	return nil
}

func (d *nginxDuration) String() string { return time.Duration(*d).String() }
func (d *nginxDuration) Type() string   { return "duration" }
