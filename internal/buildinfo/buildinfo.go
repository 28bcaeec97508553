// Package buildinfo carries the version stamped into the binary at link time.
package buildinfo

import "runtime/debug"

// Set with -ldflags "-X github.com/kongfb/kongfb/internal/buildinfo.Version=…".
var (
	Version = "dev"
	Commit  = ""
	Date    = ""
)

// Info is what `kongfb version` prints.
type Info struct {
	Version     string `json:"version"`
	Commit      string `json:"commit,omitempty"`
	Date        string `json:"date,omitempty"`
	KongVersion string `json:"kong_compatible_version"`
	GoVersion   string `json:"go_version"`
}

// Get returns the build information, falling back to the VCS stamp Go embeds
// when the binary was built without ldflags.
func Get(kongVersion string) Info {
	info := Info{Version: Version, Commit: Commit, Date: Date, KongVersion: kongVersion}
	if bi, ok := debug.ReadBuildInfo(); ok {
		info.GoVersion = bi.GoVersion
		if info.Commit == "" {
			for _, s := range bi.Settings {
				switch s.Key {
				case "vcs.revision":
					info.Commit = s.Value
				case "vcs.time":
					if info.Date == "" {
						info.Date = s.Value
					}
				}
			}
		}
	}
	return info
}
