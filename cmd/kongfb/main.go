// Command kongfb is a Kong-compatible control plane and data plane with
// fallback configuration. All logic lives in internal/cli and below.
package main

import (
	"os"

	"github.com/kongfb/kongfb/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
