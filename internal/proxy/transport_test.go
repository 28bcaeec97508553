package proxy

import (
	"testing"
	"time"
)

func TestClientPoolReuseAndPrune(t *testing.T) {
	p := newClientPool()
	prof := &clientProfile{key: "ct=1s", connectTimeout: time.Second}
	a := p.get("127.0.0.1:1", "", prof)
	if b := p.get("127.0.0.1:1", "", prof); b != a {
		t.Fatal("same key gave a new client")
	}
	other := p.get("127.0.0.1:2", "", prof)
	if other == a {
		t.Fatal("different address shared a client")
	}
	if c := p.get("127.0.0.1:1", "", &clientProfile{key: "ct=2s", connectTimeout: 2 * time.Second}); c == a {
		t.Fatal("different profile shared a client")
	}
	// Recently used clients survive a prune; stale ones go.
	other.lastUse.Store(time.Now().Add(-time.Hour).Unix())
	p.prune(10 * time.Minute)
	if got := p.get("127.0.0.1:1", "", prof); got != a {
		t.Error("a recently used client was pruned")
	}
	if got := p.get("127.0.0.1:2", "", prof); got == other {
		t.Error("an idle client survived the prune")
	}
}

func TestParseTarget(t *testing.T) {
	cases := []struct {
		in   string
		host string
		port int
		bad  bool
	}{
		{"example.com", "example.com", 8000, false},
		{"example.com:81", "example.com", 81, false},
		{"10.0.0.1:9000", "10.0.0.1", 9000, false},
		{"[::1]:9000", "::1", 9000, false},
		{"[::1]", "::1", 8000, false},
		{"::1", "::1", 8000, false},
		{"host:99999", "", 0, true},
		{"[::1", "", 0, true},
		{"", "", 0, true},
		{":80", "", 0, true},
	}
	for _, c := range cases {
		h, p, err := parseTarget(c.in)
		if c.bad != (err != nil) || !c.bad && (h != c.host || p != c.port) {
			t.Errorf("parseTarget(%q) = %q, %d, %v", c.in, h, p, err)
		}
	}
}

func TestHostHeaderFor(t *testing.T) {
	b := &balancer{}
	cases := []struct {
		t     targetSpec
		https bool
		want  string
	}{
		{targetSpec{host: "a.test", port: 80}, false, "a.test"},
		{targetSpec{host: "a.test", port: 80}, true, "a.test:80"},
		{targetSpec{host: "a.test", port: 443}, true, "a.test"},
		{targetSpec{host: "a.test", port: 8000}, false, "a.test:8000"},
		{targetSpec{host: "::1", port: 8000}, false, "[::1]:8000"},
	}
	for _, c := range cases {
		if got := b.hostHeaderFor(&c.t, c.https); got != c.want {
			t.Errorf("%+v https=%v: %q, want %q", c.t, c.https, got, c.want)
		}
	}
	b.hostHdr = "virtual.test"
	if got := b.hostHeaderFor(&targetSpec{host: "10.0.0.1", port: 8080}, false); got != "virtual.test:8080" {
		t.Errorf("host_header: %q", got)
	}
}
