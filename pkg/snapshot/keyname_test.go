package snapshot

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kongfb/kongfb/pkg/config"
)

func TestVersionPolicy(t *testing.T) {
	p := VersionPolicy{Current: "3.9.1"}
	for _, v := range []string{"3.9.0", "3.9.1", "3.9.1.2", "3.9.5", "3.9.0.0-beta1", "3.9"} {
		if !p.Accepts(v) {
			t.Errorf("3.9.1 should accept %s", v)
		}
	}
	for _, v := range []string{"3.10.0", "4.0.0", "3.8.9", "2.9.1", "", "latest", "3.91.0", "v3.9.1"} {
		if p.Accepts(v) {
			t.Errorf("3.9.1 should refuse %q", v)
		}
	}
	if err := p.Check("3.10.0"); err == nil || err.Error() != `gateway version "3.10.0" does not match 3.9.x (same major.minor as 3.9.1)` {
		t.Fatalf("Check: %v", err)
	}

	got, err := p.Select([]string{"3.10.0", "3.9.0", "4.0.0", "3.9.1.2", "3.9.1", "3.9.2", "3.9.0"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"3.9.1", "3.9.0", "3.9.1.2", "3.9.2"}; !slices.Equal(got, want) {
		// 3.9.1.2 compares above 3.9.1: it is a newer writer, so it comes
		// after the older 3.9.0.
		t.Fatalf("Select order %v, want %v", got, want)
	}

	_, err = p.Select([]string{"4.0.0", "3.10.0", "3.10.0"})
	var nm *NoMatchingVersionError
	if !errors.As(err, &nm) || !errors.Is(err, ErrNoSnapshot) {
		t.Fatalf("want NoMatchingVersionError, got %v", err)
	}
	if want := "no fallback config for gateway 3.9.1 (accepting 3.9.x (same major.minor as 3.9.1)): versions found: 3.10.0, 4.0.0"; err.Error() != want {
		t.Fatalf("error\n got %s\nwant %s", err, want)
	}
	_, err = p.Select(nil)
	if err == nil || !strings.HasSuffix(err.Error(), "no versions found") {
		t.Fatalf("empty: %v", err)
	}

	exact := VersionPolicy{Current: "3.9.1.2", Match: MatchExact}
	if exact.Accepts("3.9.1") || !exact.Accepts("3.9.1.2") || exact.String() != "exactly 3.9.1.2" {
		t.Fatal("exact policy")
	}
	if any := (VersionPolicy{Match: MatchAny}); !any.Accepts("7.0") || any.Accepts("") {
		t.Fatal("any policy")
	}
	if def := (VersionPolicy{}); !def.Accepts(config.KongVersion) || def.current() != config.KongVersion {
		t.Fatal("zero policy should be same minor as config.KongVersion")
	}
}

func TestKeys(t *testing.T) {
	for _, c := range []struct{ prefix, want string }{
		{"fallback", "fallback/3.9.1.2/config.json"},
		{"fallback/", "fallback/3.9.1.2/config.json"},
		{"/a//b/./c/../", "a/b/3.9.1.2/config.json"},
		{"", "3.9.1.2/config.json"},
	} {
		if got := KongObjectKey(c.prefix, "3.9.1.2"); got != c.want {
			t.Errorf("KongObjectKey(%q) = %q, want %q", c.prefix, got, c.want)
		}
	}
	if got := HistoryPrefix("p/", "3.9.1"); got != "p/3.9.1/snapshots/" {
		t.Fatal(got)
	}
	if got := VersionPrefix("p", "3.9.1"); got != "p/3.9.1/" {
		t.Fatal(got)
	}

	hash := "0123456789abcdef0123456789abcdef"
	sha := strings.Repeat("fe", 32)
	k := HistoryKey("a/b/", "3.9.1", time.Date(2025, 1, 8, 10, 15, 30, 123_999_999, time.FixedZone("x", 3600)), hash, sha)
	if k != "a/b/3.9.1/snapshots/20250108T091530.123Z-0123456789ab-fefefefe.snap" {
		t.Fatalf("HistoryKey = %s", k)
	}
	info, err := ParseHistoryKey(k)
	if err != nil {
		t.Fatal(err)
	}
	if info.Prefix != "a/b" || info.Version != "3.9.1" || info.HashPrefix != "0123456789ab" || info.PayloadPrefix != "fefefefe" ||
		!info.CreatedAt.Equal(time.Date(2025, 1, 8, 9, 15, 30, 123_000_000, time.UTC)) {
		t.Fatalf("ParseHistoryKey = %+v", info)
	}
	for _, bad := range []string{
		"a/3.9.1/snapshots/20250108T091530.123Z-0123456789ab.snap",
		"a/3.9.1/other/20250108T091530.123Z-0123456789ab-fefefefe.snap",
		"a/latest/snapshots/20250108T091530.123Z-0123456789ab-fefefefe.snap",
		"a/3.9.1/snapshots/20251308T091530.123Z-0123456789ab-fefefefe.snap",
		"a/3.9.1/snapshots/20250108T091530.123Z-0123456789AB-fefefefe.snap",
	} {
		if _, err := ParseHistoryKey(bad); err == nil {
			t.Errorf("ParseHistoryKey(%q) accepted", bad)
		}
	}

	// Lexicographic key order is time order, across day/year/ms boundaries.
	base := time.Date(1999, 12, 31, 23, 59, 59, 998_000_000, time.UTC)
	var keys []string
	var times []time.Time
	for i := 0; i < 50; i++ {
		ts := base.Add(time.Duration(i*i) * 997 * time.Microsecond * 1000)
		times = append(times, ts.Truncate(time.Millisecond))
		keys = append(keys, HistoryKey("p", "3.9.1", ts, hash, sha))
	}
	shuffled := slices.Clone(keys)
	slices.Reverse(shuffled)
	sort.Strings(shuffled)
	if !slices.Equal(shuffled, keys) {
		t.Fatal("sorted keys are not in time order")
	}
	for i, k := range keys {
		info, err := ParseHistoryKey(k)
		if err != nil || !info.CreatedAt.Equal(times[i]) {
			t.Fatalf("%s: %v %v", k, info.CreatedAt, err)
		}
	}
}

func TestCandidatesAndNewestValid(t *testing.T) {
	cfgOld := genConfig(t, 2, 1)
	cfgNew := genConfig(t, 3, 1)
	key := seedKey(t, 1)
	t0 := testTime

	objs := map[string][]byte{}
	var listing []ObjectInfo
	put := func(k string, data []byte, mod time.Time) {
		objs[k] = data
		listing = append(listing, ObjectInfo{Key: k, LastModified: mod, Size: int64(len(data))})
	}
	old := mustEncode(t, cfgOld, Options{SigningKey: key, CreatedAt: t0, Version: "3.9.0"})
	put(old.Key("fb"), old.Data, t0)
	mid := mustEncode(t, cfgNew, Options{SigningKey: key, CreatedAt: t0.Add(time.Minute)})
	put(mid.Key("fb"), mid.Data, t0.Add(time.Minute))
	newest := mustEncode(t, cfgNew, Options{SigningKey: key, CreatedAt: t0.Add(2 * time.Minute)})
	corrupt := append([]byte(nil), newest.Data...)
	corrupt[len(corrupt)-1] ^= 0xff
	put(newest.Key("fb"), corrupt, t0.Add(2*time.Minute))
	put(KongObjectKey("fb", "3.9.1.2"), mid.KongJSON, t0.Add(90*time.Second))
	put(KongObjectKey("fb", "3.10.0"), mid.KongJSON, t0.Add(time.Hour))
	newer := mustEncode(t, cfgNew, Options{CreatedAt: t0.Add(time.Hour), Version: "3.10.0"})
	put(newer.Key("fb"), newer.Data, t0.Add(time.Hour))
	put("fb/3.9.1/election/1704921469.123-node", nil, t0)
	put("fb/kong.id", nil, t0)
	put("other/3.9.1/config.json", mid.KongJSON, t0.Add(time.Hour))

	cands, err := Candidates("fb/", listing, VersionPolicy{Current: "3.9.1"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range cands {
		got = append(got, fmt.Sprintf("%s %s", c.Kind, c.Version))
	}
	want := []string{"kongfb-snapshot 3.9.1", "kong-config.json 3.9.1.2", "kongfb-snapshot 3.9.1", "kongfb-snapshot 3.9.0"}
	if !slices.Equal(got, want) {
		t.Fatalf("candidates %v, want %v", got, want)
	}
	if cands[0].Key != newest.Key("fb") || cands[2].Key != mid.Key("fb") {
		t.Fatal("order by time")
	}

	fetch := func(_ context.Context, k string) ([]byte, error) {
		d, ok := objs[k]
		if !ok {
			return nil, errors.New("no such key")
		}
		return d, nil
	}
	// Pinned: the corrupt newest and the unsigned Kong object are skipped,
	// the signed mid snapshot is served.
	s, err := NewestValid(context.Background(), cands, fetch, VerifyOptions{TrustedSignerKeys: pinsOf(key)})
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != mid.Key("fb") || !s.Trusted {
		t.Fatalf("served %s", s.Name)
	}
	// Unpinned: the Kong object (newer than mid) is acceptable.
	s, err = NewestValid(context.Background(), cands, fetch, VerifyOptions{})
	if err != nil || s.Kind != KindKong {
		t.Fatalf("served %v %v", s, err)
	}

	// Nothing verifies: every object and reason is listed.
	_, err = NewestValid(context.Background(), cands[:2], fetch, VerifyOptions{TrustedSignerKeys: pinsOf(seedKey(t, 5))})
	var nv *NoValidSnapshotError
	if !errors.As(err, &nv) || len(nv.Errors) != 2 || !errors.Is(err, ErrNoSnapshot) || !errors.Is(err, ErrUntrustedSigner) {
		t.Fatalf("want NoValidSnapshotError, got %v", err)
	}
	if !strings.Contains(err.Error(), "no fallback config verified (2 tried):\n  snapshot \""+newest.Key("fb")+"\": untrusted signer") {
		t.Fatalf("message: %v", err)
	}
	// Oversized objects are skipped without fetching.
	_, err = NewestValid(context.Background(), cands[:1], func(context.Context, string) ([]byte, error) {
		t.Fatal("fetched an oversized object")
		return nil, nil
	}, VerifyOptions{MaxSize: 10})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("%v", err)
	}
	// A cancelled context stops the search.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := NewestValid(ctx, cands, fetch, VerifyOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("%v", err)
	}

	// Only other minors present: the error lists them.
	_, err = Candidates("fb", listing, VersionPolicy{Current: "3.8.0"})
	if err == nil || err.Error() != `no fallback config for gateway 3.8.0 (accepting 3.8.x (same major.minor as 3.8.0)) under "fb": versions found: 3.9.0, 3.9.1, 3.9.1.2, 3.10.0` {
		t.Fatalf("%v", err)
	}
	_, err = Candidates("empty", listing, VersionPolicy{})
	if err == nil || !strings.Contains(err.Error(), "no versions found") {
		t.Fatalf("%v", err)
	}
	// Kong's rule (exact) picks only the exact directory.
	cands, err = Candidates("fb", listing, VersionPolicy{Current: "3.9.1.2", Match: MatchExact})
	if err != nil || len(cands) != 1 || cands[0].Kind != KindKong {
		t.Fatalf("%v %v", cands, err)
	}
}

func pinsOf(keys ...*SigningKey) (out []ed25519.PublicKey) {
	for _, k := range keys {
		out = append(out, k.Public())
	}
	return out
}
