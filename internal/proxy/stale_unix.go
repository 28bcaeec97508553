//go:build linux || darwin || freebsd || netbsd || openbsd

package proxy

import (
	"crypto/tls"
	"net"
	"syscall"
)

// connClosedByPeer checks, without blocking, whether an idle pooled
// connection was closed (or reset) by the upstream: a non-blocking
// MSG_PEEK read returns 0 bytes at EOF, EAGAIN while the connection is
// alive and idle. nginx gets the same information from epoll on its idle
// keepalive connections. Unexpected data on an idle connection also makes
// it unusable.
func connClosedByPeer(c net.Conn) bool {
	isTLS := false
	if tc, ok := c.(*tls.Conn); ok {
		c, isTLS = tc.NetConn(), true
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	closed := false
	var buf [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, rerr := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case rerr == syscall.EAGAIN || rerr == syscall.EWOULDBLOCK || rerr == syscall.EINTR:
			closed = false
		case rerr != nil:
			closed = true
		default:
			closed = n == 0 || !isTLS
		}
		return true // never wait: this is a probe
	})
	if err != nil {
		return true
	}
	return closed
}
