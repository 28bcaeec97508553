package drill

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// stableListenAddr returns 127.0.0.1:<port> with a port that is free now
// and lies below the kernel's ephemeral range, so that no outgoing
// connection and no port-0 listener on the host can take it while the
// process that binds it is down. Without a readable range (outside Linux)
// it returns 127.0.0.1:0.
func stableListenAddr() string {
	lo, ok := ephemeralLow()
	const floor = 10000
	if !ok || lo-1 <= floor {
		return "127.0.0.1:0"
	}
	for range 100 {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(floor+rand.IntN(lo-floor)))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		ln.Close()
		return addr
	}
	return "127.0.0.1:0"
}

// ephemeralLow is the first port of the kernel's ephemeral range.
func ephemeralLow() (int, bool) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, false
	}
	var lo, hi int
	if _, err := fmt.Sscan(strings.TrimSpace(string(b)), &lo, &hi); err != nil || lo <= 0 || hi < lo {
		return 0, false
	}
	return lo, true
}
