package storage

import (
	"errors"
	"strings"
	"testing"
)

func TestNormalizePath(t *testing.T) {
	cases := []struct {
		in, want string
		escapes  bool
	}{
		{"", "", false},
		{"a", "a", false},
		{"/a/b", "a/b", false},
		{"a//b///c", "a/b/c", false},
		{"a/./b", "a/b", false},
		{"a/b/../c", "a/c", false},
		{"prefix//3.9.1/config.json", "prefix/3.9.1/config.json", false},
		{"prefix/3.9.1/election", "prefix/3.9.1/election", false},
		{"election/", "election/", false},
		{"a/b/..", "a/", false},
		{"a/.", "a/", false},
		{"..", "", true},
		{"a/../../b", "b", true},
		{"./", "", false},
		{"...", "...", false},
		{"a/..b", "a/..b", false},
	}
	for _, c := range cases {
		got, esc := normalizePath(c.in)
		if got != c.want || esc != c.escapes {
			t.Errorf("normalizePath(%q) = %q, %v; want %q, %v", c.in, got, esc, c.want, c.escapes)
		}
	}
}

func TestCleanKey(t *testing.T) {
	good := map[string]string{
		"3.9.1/config.json":        "3.9.1/config.json",
		"/3.9.1//config.json":      "3.9.1/config.json",
		"x/../y":                   "y",
		"election/1704921469.1-id": "election/1704921469.1-id",
		"sp ace/ü":                 "sp ace/ü",
		"a/.kongfbX":               "a/.kongfbX", // only ".kongfb-" is reserved
	}
	for in, want := range good {
		got, err := cleanKey(in)
		if err != nil || got != want {
			t.Errorf("cleanKey(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	bad := []string{"", "/", ".", "..", "../a", "a/", "a/b/", ".kongfb-lock", "x/.kongfb-meta.y", "a\x00b", "\xff", strings.Repeat("k", 1025)}
	for _, in := range bad {
		if _, err := cleanKey(in); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("cleanKey(%q) error = %v, want ErrInvalidKey", in, err)
		}
	}
	if p, err := cleanListPrefix("election/"); err != nil || p != "election/" {
		t.Errorf("cleanListPrefix(election/) = %q, %v", p, err)
	}
	if p, err := cleanListPrefix(""); err != nil || p != "" {
		t.Errorf("cleanListPrefix(\"\") = %q, %v", p, err)
	}
	if _, err := cleanListPrefix("../x"); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("cleanListPrefix(../x) error = %v", err)
	}
}

func TestErrorText(t *testing.T) {
	e := &Error{Op: "put", Scheme: "s3", Bucket: "b", Key: "p/3.9.1/config.json", Kind: ErrAccessDenied, Err: errors.New("Access Denied. (AccessDenied, HTTP 403)")}
	want := `storage: put in bucket "b" key "p/3.9.1/config.json": access denied: Access Denied. (AccessDenied, HTTP 403)`
	if e.Error() != want {
		t.Errorf("Error() = %q\nwant      %q", e.Error(), want)
	}
	if !errors.Is(e, ErrAccessDenied) || errors.Is(e, ErrNotFound) {
		t.Error("errors.Is does not follow Kind")
	}
	l := &Error{Op: "list", Scheme: "file", Bucket: "/d", Key: "election/", Kind: ErrNoSuchBucket}
	if got := l.Error(); got != `storage: list in directory "/d" prefix "election/": bucket does not exist` {
		t.Errorf("list Error() = %q", got)
	}
}

func TestNormalizeETag(t *testing.T) {
	for in, want := range map[string]string{
		`"abc"`: `"abc"`, `abc`: `"abc"`, `W/"abc"`: `"abc"`, ` "abc" `: `"abc"`, "": "", "*": "*",
	} {
		if got := normalizeETag(in); got != want {
			t.Errorf("normalizeETag(%q) = %q, want %q", in, got, want)
		}
	}
}
