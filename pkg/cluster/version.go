package cluster

import (
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
)

// SyncStatus is a DP's sync_status in the CP's registry (Kong's
// CLUSTERING_SYNC_STATUS, kong/constants.lua).
type SyncStatus string

// The six values Kong defines.
const (
	SyncStatusUnknown                   SyncStatus = "unknown"
	SyncStatusNormal                    SyncStatus = "normal"
	SyncStatusKongVersionIncompatible   SyncStatus = "kong_version_incompatible"
	SyncStatusPluginSetIncompatible     SyncStatus = "plugin_set_incompatible"
	SyncStatusPluginVersionIncompatible SyncStatus = "plugin_version_incompatible"
	SyncStatusFilterSetIncompatible     SyncStatus = "filter_set_incompatible"
)

// SyncStatuses lists every SyncStatus in Kong's order.
var SyncStatuses = []SyncStatus{
	SyncStatusUnknown, SyncStatusNormal, SyncStatusKongVersionIncompatible,
	SyncStatusPluginSetIncompatible, SyncStatusPluginVersionIncompatible, SyncStatusFilterSetIncompatible,
}

// Valid reports whether s is one of the six statuses.
func (s SyncStatus) Valid() bool {
	for _, v := range SyncStatuses {
		if s == v {
			return true
		}
	}
	return false
}

// IncompatibleError says why a CP will not sync a DP. Message is Kong's text.
type IncompatibleError struct {
	Status  SyncStatus
	Message string
}

func (e *IncompatibleError) Error() string { return e.Message }

// Version is a Kong version as the compatibility rules see it.
type Version struct {
	Major, Minor, Patch int
	// Build is the fourth number of an Enterprise version such as 3.6.0.0,
	// -1 when absent.
	Build int
	Raw   string
}

// ParseVersion parses like Kong's `^(%d+)%.(%d+)%.%d+`: three dot-separated
// numbers at the start, anything after (a fourth number, "-beta", ...)
// allowed. "3.9" and "v3.9.1" are not versions.
func ParseVersion(s string) (Version, error) {
	v := Version{Raw: s, Build: -1}
	rest := s
	var ok bool
	if v.Major, rest, ok = leadingInt(rest); !ok || !strings.HasPrefix(rest, ".") {
		return Version{}, fmt.Errorf("invalid version %q: want MAJOR.MINOR.PATCH", s)
	}
	if v.Minor, rest, ok = leadingInt(rest[1:]); !ok || !strings.HasPrefix(rest, ".") {
		return Version{}, fmt.Errorf("invalid version %q: want MAJOR.MINOR.PATCH", s)
	}
	if v.Patch, rest, ok = leadingInt(rest[1:]); !ok {
		return Version{}, fmt.Errorf("invalid version %q: want MAJOR.MINOR.PATCH", s)
	}
	if strings.HasPrefix(rest, ".") {
		if b, _, ok := leadingInt(rest[1:]); ok {
			v.Build = b
		}
	}
	return v, nil
}

func (v Version) String() string { return v.Raw }

// Num is Kong's numeric form of a version (compat/version.lua
// string_to_number): the leading digits of the first four dot-separated parts
// weighted 1e9, 1e6, 1e3 and 1, so 3.9.1 is 3009001000 and 3.6.0.2 is
// 3006000002. A part without leading digits counts 0.
func (v Version) Num() int64 { return VersionNum(v.Raw) }

// VersionNum is Version.Num for a raw string.
func VersionNum(s string) int64 {
	var n int64
	base := int64(1_000_000_000)
	for i, part := range strings.SplitN(s, ".", 4) {
		if i == 3 {
			// Kong splits into at most four parts; the last keeps any dots.
			part, _, _ = strings.Cut(part, ".")
		}
		if d, _, ok := leadingInt(part); ok {
			n += base * int64(d)
		}
		base /= 1000
	}
	return n
}

// leadingInt reads the decimal digits at the start of s. It fails on no
// digits and on numbers too large for an int (which no version has).
func leadingInt(s string) (int, string, bool) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 || i > 9 {
		return 0, s, false
	}
	n, err := strconv.Atoi(s[:i])
	if err != nil {
		return 0, s, false
	}
	return n, s[i:], true
}

// CheckCompatibility applies Kong's connect-time rules
// (compat/init.lua check_kong_version_compatibility): the major versions must
// match and the DP's minor must not be newer than the CP's; patch (and build)
// numbers are ignored. On failure the error is an *IncompatibleError with
// Kong's message and status kong_version_incompatible; the CP then closes the
// connection.
func CheckCompatibility(cpVersion, dpVersion string) (SyncStatus, error) {
	cp, cpErr := ParseVersion(cpVersion)
	if cpErr != nil {
		return SyncStatusKongVersionIncompatible, &IncompatibleError{
			Status:  SyncStatusKongVersionIncompatible,
			Message: "data plane version " + dpVersion + " is incompatible with control plane version",
		}
	}
	dp, dpErr := ParseVersion(dpVersion)
	if dpErr != nil {
		return SyncStatusKongVersionIncompatible, &IncompatibleError{
			Status: SyncStatusKongVersionIncompatible,
			Message: fmt.Sprintf("data plane version is incompatible with control plane version %s (%d.x.y are accepted)",
				cpVersion, cp.Major),
		}
	}
	if cp.Major != dp.Major {
		return SyncStatusKongVersionIncompatible, &IncompatibleError{
			Status: SyncStatusKongVersionIncompatible,
			Message: fmt.Sprintf("data plane version %s is incompatible with control plane version %s (%d.x.y are accepted)",
				dpVersion, cpVersion, cp.Major),
		}
	}
	if cp.Minor < dp.Minor {
		return SyncStatusKongVersionIncompatible, &IncompatibleError{
			Status:  SyncStatusKongVersionIncompatible,
			Message: fmt.Sprintf("data plane version %s is incompatible with older control plane version %s", dpVersion, cpVersion),
		}
	}
	return SyncStatusNormal, nil
}

// Note is a message Kong logs at connect time without refusing the DP.
type Note struct {
	Level   slog.Level
	Message string
}

// pluginVersions maps plugin name to its parsed version; a plugin whose
// version does not parse maps to nil (Kong's `{}` entry: present, no version).
func pluginVersions(ps []PluginInfo) map[string]*Version {
	m := make(map[string]*Version, len(ps))
	for _, p := range ps {
		if v, err := ParseVersion(p.Version); err == nil {
			vv := v
			m[p.Name] = &vv
		} else {
			m[p.Name] = nil
		}
	}
	return m
}

// ConnectNotes returns what Kong logs when a compatible DP connects: a
// different minor version (INFO) and, for every plugin the CP has, whether the
// DP lacks it (WARN) or runs another version (WARN for another major, INFO
// for another minor). Call it only after CheckCompatibility passed.
func ConnectNotes(cpVersion, dpVersion string, cpPlugins, dpPlugins []PluginInfo) []Note {
	var notes []Note
	if cp, err := ParseVersion(cpVersion); err == nil {
		if dp, err := ParseVersion(dpVersion); err == nil && cp.Minor != dp.Minor {
			notes = append(notes, Note{slog.LevelInfo, "data plane minor version " + dpVersion +
				" is different to control plane minor version " + cpVersion})
		}
	}
	cpMap, dpMap := pluginVersions(cpPlugins), pluginVersions(dpPlugins)
	for _, p := range cpPlugins {
		cv := cpMap[p.Name]
		dv, present := dpMap[p.Name]
		switch {
		case !present && cv != nil:
			notes = append(notes, Note{slog.LevelWarn, p.Name + " plugin " + cv.Raw + " is missing from data plane"})
		case !present:
			notes = append(notes, Note{slog.LevelWarn, p.Name + " plugin is missing from data plane"})
		case cv != nil && dv != nil:
			msg := "data plane " + p.Name + " plugin version " + dv.Raw +
				" is different to control plane plugin version " + cv.Raw
			if cv.Major != dv.Major {
				notes = append(notes, Note{slog.LevelWarn, msg})
			} else if cv.Minor != dv.Minor {
				notes = append(notes, Note{slog.LevelInfo, msg})
			}
		case dv != nil:
			notes = append(notes, Note{slog.LevelInfo, "data plane " + p.Name + " plugin version " + dv.Raw +
				" has unspecified version on control plane"})
		case cv != nil:
			notes = append(notes, Note{slog.LevelInfo, "data plane " + p.Name +
				" plugin version is unspecified, and is different to control plane plugin version " + cv.Raw})
		}
	}
	return notes
}

// CheckConfiguredPlugins applies Kong's per-push rules
// (compat/init.lua check_configuration_compatibility) to the plugins used in
// the config being pushed (`configured`, plugin names): a plugin missing on
// the DP gives plugin_set_incompatible; a plugin whose major version differs,
// or whose DP minor is newer than the CP's, gives plugin_version_incompatible.
// The CP then skips this push but keeps the DP connected.
//
// Plugins are checked in the CP's plugin order, as Kong does; a configured
// plugin the CP does not list (Kong cannot have one) is then checked for
// presence on the DP only, in name order. Kong exempts opentelemetry 0.1.x on
// the DP, the version it had before it followed Kong's own numbering.
func CheckConfiguredPlugins(cpPlugins, dpPlugins []PluginInfo, configured []string) (SyncStatus, error) {
	return NewPluginSet(cpPlugins).CheckConfigured(NewPluginSet(dpPlugins), configured)
}

// PluginSet is a node's plugin list with the versions parsed, for a CP that
// checks every push against every connected DP (CheckConfigured): both
// lists are fixed for a connection's lifetime, so they are parsed once.
type PluginSet struct {
	list     []PluginInfo
	versions map[string]*Version // nil: unparseable version
}

// NewPluginSet parses ps's versions.
func NewPluginSet(ps []PluginInfo) *PluginSet {
	return &PluginSet{list: ps, versions: pluginVersions(ps)}
}

// CheckConfigured is CheckConfiguredPlugins with s as the CP's plugins.
func (s *PluginSet) CheckConfigured(dp *PluginSet, configured []string) (SyncStatus, error) {
	if len(configured) == 0 {
		return SyncStatusNormal, nil
	}
	cpPlugins := s.list
	want := make(map[string]bool, len(configured))
	for _, n := range configured {
		want[n] = true
	}
	cpMap, dpMap := s.versions, dp.versions
	seen := make(map[string]bool, len(cpPlugins))
	for _, p := range cpPlugins {
		if !want[p.Name] || seen[p.Name] {
			continue
		}
		seen[p.Name] = true
		cv := cpMap[p.Name]
		dv, present := dpMap[p.Name]
		if !present {
			msg := "configured " + p.Name + " plugin is missing from data plane"
			if cv != nil {
				msg = "configured " + p.Name + " plugin " + cv.Raw + " is missing from data plane"
			}
			return SyncStatusPluginSetIncompatible, &IncompatibleError{Status: SyncStatusPluginSetIncompatible, Message: msg}
		}
		if cv == nil || dv == nil {
			continue
		}
		if p.Name == "opentelemetry" && dv.Major == 0 && dv.Minor == 1 {
			continue
		}
		if cv.Major != dv.Major || cv.Minor < dv.Minor {
			return SyncStatusPluginVersionIncompatible, &IncompatibleError{
				Status: SyncStatusPluginVersionIncompatible,
				Message: "configured data plane " + p.Name + " plugin version " + dv.Raw +
					" is different to control plane plugin version " + cv.Raw,
			}
		}
	}
	var extra []string
	for n := range want {
		if !seen[n] {
			if _, known := cpMap[n]; !known {
				extra = append(extra, n)
			}
		}
	}
	sort.Strings(extra)
	for _, n := range extra {
		if _, present := dpMap[n]; !present {
			return SyncStatusPluginSetIncompatible, &IncompatibleError{
				Status:  SyncStatusPluginSetIncompatible,
				Message: "configured " + n + " plugin is missing from data plane",
			}
		}
	}
	return SyncStatusNormal, nil
}
