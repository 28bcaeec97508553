package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestSettingPrecedence pins the order documented in `kongfb --help`:
// flag > KONGFB_* env > --config file > KONG_* env > default.
func TestSettingPrecedence(t *testing.T) {
	cfgFile := filepath.Join(t.TempDir(), "kongfb.yaml")
	if err := os.WriteFile(cfgFile, []byte("probe-listen: from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		args     []string
		kongfb   string // KONGFB_PROBE_LISTEN
		kong     string // KONG_PROBE_LISTEN
		useFile  bool
		expected string
	}{
		{name: "default", expected: "default"},
		{name: "kong env over default", kong: "from-kong", expected: "from-kong"},
		{name: "file over kong env", kong: "from-kong", useFile: true, expected: "from-file"},
		{name: "kongfb env over file", kongfb: "from-kongfb", kong: "from-kong", useFile: true, expected: "from-kongfb"},
		{name: "flag over everything", args: []string{"--probe-listen", "from-flag"}, kongfb: "from-kongfb", kong: "from-kong", useFile: true, expected: "from-flag"},
		{name: "kongfb env over kong env", kongfb: "from-kongfb", kong: "from-kong", expected: "from-kongfb"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("KONGFB_PROBE_LISTEN", tc.kongfb)
			if tc.kongfb == "" {
				os.Unsetenv("KONGFB_PROBE_LISTEN")
			}
			t.Setenv("KONG_PROBE_LISTEN", tc.kong)
			if tc.kong == "" {
				os.Unsetenv("KONG_PROBE_LISTEN")
			}
			var got string
			var out, errw bytes.Buffer
			root := NewRootCommand(Streams{In: strings.NewReader(""), Out: &out, Err: &errw})
			probe := &cobra.Command{
				Use: "probe",
				RunE: func(cmd *cobra.Command, _ []string) error {
					if err := envDefault(cmd, "probe-listen", "KONG_PROBE_LISTEN"); err != nil {
						return err
					}
					got, _ = cmd.Flags().GetString("probe-listen")
					return nil
				},
			}
			probe.Flags().String("probe-listen", "default", "test flag")
			root.AddCommand(probe)
			args := append([]string{"probe"}, tc.args...)
			if tc.useFile {
				args = append(args, "--config", cfgFile)
			}
			root.SetArgs(args)
			if err := root.Execute(); err != nil {
				t.Fatalf("execute: %v (stderr %q)", err, errw.String())
			}
			if got != tc.expected {
				t.Fatalf("probe-listen = %q, want %q", got, tc.expected)
			}
		})
	}
}
