package proxy

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// Upstream connection pool settings (Kong: upstream_keepalive_pool_size 512,
// upstream_keepalive_idle_timeout 60 s; nginx puts no cap on the number of
// upstream connections, so MaxConns is only a safety net).
const (
	upstreamMaxConns        = 16384
	upstreamIdleTimeout     = 60 * time.Second
	upstreamReadBufferSize  = 32 << 10 // also the largest upstream response header accepted
	upstreamWriteBufferSize = 16 << 10
	// staleProbeAfter: a pooled connection idle for longer than this is
	// checked for a close by the upstream before it is reused (see
	// connClosedByPeer), so that a request is not sent into a dead socket.
	staleProbeAfter = time.Second
	// maxStaleRetries bounds how many dead pooled connections one request
	// may run into before it dials a fresh one.
	maxStaleRetries = 3
)

// clientProfile is the per-service connection setup shared by all the
// addresses the service reaches: connect timeout and TLS settings. Profiles
// are interned by the engine so HostClients (and their pooled connections)
// survive config swaps.
type clientProfile struct {
	key            string
	connectTimeout time.Duration
	tls            bool
	tlsVerify      bool
	tlsTemplate    *tls.Config // RootCAs / client certificate; ServerName set per client
}

// clientKey identifies one HostClient: one address, one profile, one SNI.
type clientKey struct {
	addr    string
	sni     string // TLS only
	profile *clientProfile
}

// upstreamClient is one HostClient plus when it was last used (HostClient
// tracks that only inside Do, which roundTrip does not call).
type upstreamClient struct {
	hc      *fasthttp.HostClient
	lastUse atomic.Int64 // unix seconds
}

// touch records a use; it writes only when the second changed, so the hot
// path mostly reads a shared cache line instead of bouncing it.
func (c *upstreamClient) touch(nowSec int64) {
	if c.lastUse.Load() != nowSec {
		c.lastUse.Store(nowSec)
	}
}

// clientPool holds the HostClients. Reads are lock-free (copy-on-write
// map); a new address/profile takes the mutex once.
type clientPool struct {
	mu sync.Mutex
	m  atomic.Pointer[map[clientKey]*upstreamClient]
}

func newClientPool() *clientPool {
	p := &clientPool{}
	m := map[clientKey]*upstreamClient{}
	p.m.Store(&m)
	return p
}

func (p *clientPool) get(addr, sni string, prof *clientProfile) *upstreamClient {
	if c, ok := (*p.m.Load())[clientKey{addr, sni, prof}]; ok {
		return c
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	old := *p.m.Load()
	// The key strings may point into request buffers: clone them.
	k := clientKey{strings.Clone(addr), strings.Clone(sni), prof}
	if c, ok := old[k]; ok {
		return c
	}
	c := &upstreamClient{hc: newHostClient(k)}
	c.lastUse.Store(time.Now().Unix())
	m := make(map[clientKey]*upstreamClient, len(old)+1)
	for kk, v := range old {
		m[kk] = v
	}
	m[k] = c
	p.m.Store(&m)
	return c
}

// prune drops clients unused for longer than maxIdle (closing their idle
// connections), so addresses that left the config do not pile up. A
// request still running on a dropped client finishes normally; its
// connection then idles out in the orphaned client.
func (p *clientPool) prune(maxIdle time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := *p.m.Load()
	m := make(map[clientKey]*upstreamClient, len(old))
	var drop []*upstreamClient
	limit := time.Now().Add(-maxIdle).Unix()
	for k, c := range old {
		if c.lastUse.Load() < limit {
			drop = append(drop, c)
			continue
		}
		m[k] = c
	}
	p.m.Store(&m)
	for _, c := range drop {
		c.hc.CloseIdleConnections()
	}
}

func (p *clientPool) closeIdle() {
	for _, c := range *p.m.Load() {
		c.hc.CloseIdleConnections()
	}
}

// dialError marks an error of the connect phase.
type dialError struct{ err error }

func (e *dialError) Error() string { return "connect: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }
func (e *dialError) Timeout() bool {
	var ne net.Error
	return errors.As(e.err, &ne) && ne.Timeout()
}

func newHostClient(k clientKey) *fasthttp.HostClient {
	d := &net.Dialer{Timeout: k.profile.connectTimeout, KeepAlive: 30 * time.Second}
	hc := &fasthttp.HostClient{
		Addr:                          k.addr,
		MaxConns:                      upstreamMaxConns,
		MaxIdleConnDuration:           upstreamIdleTimeout,
		ReadBufferSize:                upstreamReadBufferSize,
		WriteBufferSize:               upstreamWriteBufferSize,
		ConnPoolStrategy:              fasthttp.LIFO, // reuse the warmest connection, let the rest idle out
		NoDefaultUserAgentHeader:      true,
		DisableHeaderNamesNormalizing: false,
		DisablePathNormalizing:        true,
		MaxIdemponentCallAttempts:     1, // retries are the proxy's business (Kong semantics)
	}
	if k.profile.tls {
		cfg := k.profile.tlsTemplate.Clone()
		cfg.ServerName = k.sni
		cfg.InsecureSkipVerify = !k.profile.tlsVerify
		hc.IsTLS = true
		hc.TLSConfig = cfg
		timeout := k.profile.connectTimeout
		hc.Dial = func(addr string) (net.Conn, error) {
			raw, err := d.Dial("tcp", addr)
			if err != nil {
				return nil, &dialError{err}
			}
			c := tls.Client(raw, cfg)
			// The handshake is part of connecting (nginx counts it against
			// proxy_connect_timeout).
			_ = c.SetDeadline(time.Now().Add(timeout))
			if err := c.Handshake(); err != nil {
				raw.Close()
				return nil, &dialError{err}
			}
			_ = c.SetDeadline(time.Time{})
			return c, nil
		}
		return hc
	}
	hc.Dial = func(addr string) (net.Conn, error) {
		c, err := d.Dial("tcp", addr)
		if err != nil {
			return nil, &dialError{err}
		}
		return c, nil
	}
	return hc
}

// tryPhase says how far a failed try got.
type tryPhase uint8

const (
	phaseConnect tryPhase = iota // nothing was sent
	phaseSend                    // (part of) the request may have been sent
	phaseReceive                 // the request was sent, the response failed
)

// tryError is a failed try: where it failed, whether it timed out, and
// whether nginx would call it an invalid response (not retried by Kong's
// default proxy_next_upstream "error timeout").
type tryError struct {
	phase   tryPhase
	timeout bool
	invalid bool
	err     error
}

func (e *tryError) Error() string { return e.err.Error() }

// roundTrip sends req to hc and reads the response into resp, with Kong's
// write/read timeouts. It replaces HostClient.Do to know how far a failed
// try got (nginx never retries a non-idempotent request once sent) and to
// send the request line verbatim.
func roundTrip(hc *fasthttp.HostClient, req *fasthttp.Request, resp *fasthttp.Response,
	writeTimeout, readTimeout time.Duration, idempotent bool) *tryError {
	for attempt := 0; ; attempt++ {
		cc, err := hc.AcquireConn(0, false)
		if err != nil {
			var de *dialError
			te := &tryError{phase: phaseConnect, err: err}
			if errors.As(err, &de) {
				te.timeout = de.Timeout()
			}
			return te
		}
		conn := cc.Conn()
		reused := !cc.LastUseTime().IsZero()
		if reused && time.Since(cc.LastUseTime()) > staleProbeAfter && connClosedByPeer(conn) {
			hc.CloseConn(cc)
			attempt-- // a dead idle connection is not an attempt
			continue
		}
		te := exchange(hc, conn, req, resp, writeTimeout, readTimeout)
		if te == nil {
			if req.ConnectionClose() || resp.ConnectionClose() {
				hc.CloseConn(cc)
			} else {
				hc.ReleaseConn(cc)
			}
			return nil
		}
		hc.CloseConn(cc)
		// A reused connection that the upstream closed under us (before any
		// response byte): the request was not processed; retry it on
		// another connection when that is safe — always if nothing could
		// have been sent, otherwise only for idempotent methods.
		if reused && !te.timeout && !te.invalid && attempt < maxStaleRetries &&
			(te.phase == phaseSend || idempotent) && isConnClosed(te.err) {
			resp.ResetBody()
			continue
		}
		return te
	}
}

func exchange(hc *fasthttp.HostClient, conn net.Conn, req *fasthttp.Request, resp *fasthttp.Response,
	writeTimeout, readTimeout time.Duration) *tryError {
	if err := conn.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
		return &tryError{phase: phaseSend, err: err}
	}
	bw := hc.AcquireWriter(conn)
	err := req.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	hc.ReleaseWriter(bw)
	if err != nil {
		return &tryError{phase: phaseSend, timeout: isTimeout(err), err: err}
	}
	if err := conn.SetReadDeadline(time.Now().Add(readTimeout)); err != nil {
		return &tryError{phase: phaseReceive, err: err}
	}
	resp.SkipBody = req.Header.IsHead()
	br := hc.AcquireReader(conn)
	err = resp.ReadLimitBody(br, 0)
	hc.ReleaseReader(br)
	if err != nil {
		te := &tryError{phase: phaseReceive, timeout: isTimeout(err), err: err}
		te.invalid = !te.timeout && !isNetError(err)
		return te
	}
	return nil
}

func isTimeout(err error) bool {
	if errors.Is(err, fasthttp.ErrTimeout) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// isNetError tells transport failures (reset, EOF, …) from a malformed
// response.
func isNetError(err error) bool {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return true
	}
	var oe *net.OpError
	return errors.As(err, &oe)
}

// isConnClosed reports the errors of writing to / reading from a
// connection the peer has closed.
func isConnClosed(err error) bool {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	var oe *net.OpError
	return errors.As(err, &oe)
}
