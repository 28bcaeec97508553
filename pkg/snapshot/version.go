package snapshot

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/kongfb/kongfb/pkg/config"
)

// VersionMatch says which gateway versions a reader accepts.
type VersionMatch int

const (
	// MatchMinor (the default) accepts objects written by any version with
	// the same major.minor: 3.9.1 reads 3.9.0, 3.9.1, 3.9.1.2 and 3.9.5.
	// Kong itself only reads its exact version string, which turns a
	// harmless tag difference (3.11 vs 3.11.0.3) into a missing object; the
	// config schema does not change within a minor series, so kongfb does
	// not make that mistake.
	MatchMinor VersionMatch = iota
	// MatchExact is Kong EE's rule: the version segment must equal Current.
	MatchExact
	// MatchAny accepts every version (for inspection tools such as
	// `kongfb snapshot ls|verify`).
	MatchAny
)

// VersionPolicy decides which `<prefix>/<version>/…` directories and which
// manifest gateway_version values a reader accepts. The zero value accepts
// the same major.minor as config.KongVersion.
type VersionPolicy struct {
	Current string // the reader's gateway version; "" = config.KongVersion
	Match   VersionMatch
}

func (p VersionPolicy) current() string {
	if p.Current == "" {
		return config.KongVersion
	}
	return p.Current
}

// String describes the policy for messages, e.g. "3.9.x (same major.minor as 3.9.1)".
func (p VersionPolicy) String() string {
	cur := p.current()
	switch p.Match {
	case MatchExact:
		return "exactly " + cur
	case MatchAny:
		return "any version"
	}
	v, ok := parseVersion(cur)
	if !ok {
		return "exactly " + cur + " (not a MAJOR.MINOR version)"
	}
	return fmt.Sprintf("%d.%d.x (same major.minor as %s)", v.nums[0], v.nums[1], cur)
}

// Accepts reports whether an object written by gateway version v may be read.
func (p VersionPolicy) Accepts(v string) bool {
	cur := p.current()
	switch p.Match {
	case MatchAny:
		return v != ""
	case MatchExact:
		return v == cur
	}
	if v == cur {
		return true
	}
	a, ok1 := parseVersion(cur)
	b, ok2 := parseVersion(v)
	if !ok1 || !ok2 {
		return false
	}
	return a.nums[0] == b.nums[0] && a.nums[1] == b.nums[1]
}

// Check returns nil when v is accepted, else an error naming v and the policy.
func (p VersionPolicy) Check(v string) error {
	if p.Accepts(v) {
		return nil
	}
	return fmt.Errorf("gateway version %q does not match %s", v, p)
}

// Select returns the accepted versions among found, best first: the exact
// version, then older versions newest first (their schema is a subset of
// ours), then newer ones oldest first. When none is accepted it returns a
// *NoMatchingVersionError listing what was found.
func (p VersionPolicy) Select(found []string) ([]string, error) {
	var ok []string
	for _, v := range found {
		if p.Accepts(v) && !slices.Contains(ok, v) {
			ok = append(ok, v)
		}
	}
	if len(ok) == 0 {
		return nil, &NoMatchingVersionError{Policy: p, Found: uniqueSorted(found)}
	}
	slices.SortStableFunc(ok, p.compareRank)
	return ok, nil
}

// compareRank orders versions by preference for this policy (see Select).
func (p VersionPolicy) compareRank(a, b string) int {
	cur := p.current()
	ra, rb := p.rank(a, cur), p.rank(b, cur)
	if ra != rb {
		return cmp.Compare(ra, rb)
	}
	c := compareVersions(a, b)
	if ra == 1 {
		c = -c // older versions: newest first
	}
	if c == 0 {
		c = strings.Compare(a, b)
	}
	return c
}

func (p VersionPolicy) rank(v, cur string) int {
	switch {
	case v == cur:
		return 0
	case compareVersions(v, cur) <= 0:
		return 1
	default:
		return 2
	}
}

// NoMatchingVersionError says no object of an acceptable version exists and
// lists the versions that do, so a tag mismatch is not mistaken for a
// missing backup.
type NoMatchingVersionError struct {
	Prefix string // storage prefix searched, if known
	Policy VersionPolicy
	Found  []string // every version directory found, sorted
}

func (e *NoMatchingVersionError) Error() string {
	where := ""
	if e.Prefix != "" {
		where = fmt.Sprintf(" under %q", e.Prefix)
	}
	if len(e.Found) == 0 {
		return fmt.Sprintf("no fallback config for gateway %s (accepting %s)%s: no versions found", e.Policy.current(), e.Policy, where)
	}
	return fmt.Sprintf("no fallback config for gateway %s (accepting %s)%s: versions found: %s",
		e.Policy.current(), e.Policy, where, strings.Join(e.Found, ", "))
}

func (e *NoMatchingVersionError) Unwrap() error { return ErrNoSnapshot }

type version struct {
	nums []int
}

// parseVersion accepts Kong's version strings: two to four dot-separated
// numbers ("3.9", "3.9.1", "3.6.0.0"), optionally followed by a suffix
// starting with '-' or '+' ("3.10.0.0-beta1").
func parseVersion(s string) (version, bool) {
	if i := strings.IndexAny(s, "-+"); i >= 0 {
		s = s[:i]
	}
	parts := strings.Split(s, ".")
	if len(parts) < 2 || len(parts) > 4 {
		return version{}, false
	}
	v := version{nums: make([]int, len(parts))}
	for i, part := range parts {
		if part == "" || len(part) > 9 || strings.TrimLeft(part, "0123456789") != "" {
			return version{}, false
		}
		n, err := strconv.Atoi(part)
		if err != nil {
			return version{}, false
		}
		v.nums[i] = n
	}
	return v, true
}

// compareVersions compares numerically (missing components count as 0),
// falling back to string order for unparseable versions.
func compareVersions(a, b string) int {
	va, oka := parseVersion(a)
	vb, okb := parseVersion(b)
	if !oka || !okb {
		return strings.Compare(a, b)
	}
	for i := 0; i < 4; i++ {
		var x, y int
		if i < len(va.nums) {
			x = va.nums[i]
		}
		if i < len(vb.nums) {
			y = vb.nums[i]
		}
		if x != y {
			return cmp.Compare(x, y)
		}
	}
	return 0
}

func uniqueSorted(in []string) []string {
	out := slices.Clone(in)
	slices.SortFunc(out, func(a, b string) int {
		if c := compareVersions(a, b); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	return slices.Compact(out)
}
