//go:build !(linux || darwin || freebsd || netbsd || openbsd)

package proxy

import "net"

// connClosedByPeer cannot probe without blocking on this platform; a dead
// pooled connection is then detected when the request fails and retried
// by roundTrip.
func connClosedByPeer(net.Conn) bool { return false }
