package drill

import (
	"net"
	"strconv"
	"testing"
)

func TestStableListenAddr(t *testing.T) {
	addr := stableListenAddr()
	host, portS, err := net.SplitHostPort(addr)
	if err != nil || host != "127.0.0.1" {
		t.Fatalf("stableListenAddr() = %q (%v)", addr, err)
	}
	port, _ := strconv.Atoi(portS)
	lo, ok := ephemeralLow()
	if !ok {
		t.Skipf("no ephemeral port range to check against (got %s)", addr)
	}
	if port < 10000 || port >= lo {
		t.Fatalf("port %d is not in [10000, %d): the kernel could hand it out", port, lo)
	}
	// It is free: the CP can bind it.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("bind %s: %v", addr, err)
	}
	ln.Close()
}
