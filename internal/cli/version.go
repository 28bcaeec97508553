package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/kongfb/kongfb/internal/buildinfo"
	"github.com/kongfb/kongfb/pkg/config"
)

func newVersionCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print kongfb's version and the Kong version it is compatible with",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := a.printer()
			if err != nil {
				return err
			}
			info := buildinfo.Get(config.KongVersion)
			return p.Data(info, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "kongfb %s (kong %s compatible, %s)\n", info.Version, info.KongVersion, info.GoVersion)
				return err
			})
		},
	}
}
