package proxy

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"
	"unsafe"

	"github.com/valyala/fasthttp"

	"github.com/kongfb/kongfb/internal/proxy/router"
	"github.com/kongfb/kongfb/pkg/config"
)

const (
	serverHeader = "kong/" + config.KongVersion
	viaKong      = "1.1 " + serverHeader // proxy_http_version 1.1
)

// Header names, canonical (fasthttp form), as byte slices for the
// allocation-free header setters.
var (
	hdrXRealIP           = []byte("X-Real-Ip")
	hdrXForwardedFor     = []byte("X-Forwarded-For")
	hdrXForwardedProto   = []byte("X-Forwarded-Proto")
	hdrXForwardedHost    = []byte("X-Forwarded-Host")
	hdrXForwardedPort    = []byte("X-Forwarded-Port")
	hdrXForwardedPath    = []byte("X-Forwarded-Path")
	hdrXForwardedPrefix  = []byte("X-Forwarded-Prefix")
	hdrVia               = []byte("Via")
	hdrRequestID         = []byte("X-Kong-Request-Id")
	hdrUpstreamLatency   = []byte("X-Kong-Upstream-Latency")
	hdrProxyLatency      = []byte("X-Kong-Proxy-Latency")
	hdrResponseLatency   = []byte("X-Kong-Response-Latency")
	hdrRouteID           = []byte("Kong-Route-Id")
	hdrRouteName         = []byte("Kong-Route-Name")
	hdrServiceID         = []byte("Kong-Service-Id")
	hdrServiceName       = []byte("Kong-Service-Name")
	hdrLocation          = []byte("Location")
	hdrConnection        = []byte("Connection")
	hdrUpgrade           = []byte("Upgrade")
	hdrSetCookie         = []byte("Set-Cookie")
	valHTTP11            = []byte("HTTP/1.1")
	valHTTP10            = []byte("HTTP/1.0")
	valHTTP              = []byte("http")
	valHTTPS             = []byte("https")
	valViaKong           = []byte(viaKong)
	viaSuffix            = []byte(", " + viaKong)
	valUpgradeTLS        = []byte("TLS/1.2, HTTP/1.1")
	valUpgradeH2         = []byte("HTTP/2")
	valUpgradeConnection = []byte("Upgrade")
)

// hopByHopRequest are removed from every proxied request, as nginx's proxy
// module does by default (Connection/Keep-Alive/Upgrade/TE/Expect) plus
// Kong's Proxy/Proxy-Connection. Transfer-Encoding: the body is buffered
// and sent with a Content-Length.
var hopByHopRequest = []string{"Connection", "Keep-Alive", "Proxy", "Proxy-Connection", "Upgrade", "Te", "Expect", "Transfer-Encoding"}

// hopByHopResponse are removed from proxied responses.
var hopByHopResponse = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Upgrade"}

// scratch is the per-request working memory, pooled: it implements
// router.Headers and holds every buffer the hot path appends into.
type scratch struct {
	ctx   *fasthttp.RequestCtx
	rreq  router.Request
	match router.Match

	hkey   []byte
	hvals  []string
	rid    []byte
	ip     []byte
	port   []byte
	host   []byte // nginx $host: lower-cased Host without port
	xff    []byte
	via    []byte
	fpath  []byte
	phost  []byte
	uri    []byte
	hash   []byte
	num    []byte
	cookie []byte
	body   []byte
	args   fasthttp.Args
	pick   pickInput
	tried  []*peer

	debug     bool
	route     *routeState
	service   *serviceState
	setCookie bool
}

var scratchPool = sync.Pool{New: func() any {
	return &scratch{rid: make([]byte, 0, 32), uri: make([]byte, 0, 256)}
}}

func (sc *scratch) release() {
	sc.ctx = nil
	sc.rreq = router.Request{}
	sc.match = router.Match{}
	sc.hvals = sc.hvals[:0]
	clear(sc.tried)
	sc.tried = sc.tried[:0]
	sc.pick = pickInput{}
	sc.debug, sc.route, sc.service, sc.setCookie = false, nil, nil, false
	scratchPool.Put(sc)
}

// b2s views b as a string without copying. The string is only valid while
// b is: within the request, before the header it points into is modified.
func b2s(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// s2b views s as a read-only byte slice without copying.
func s2b(s string) []byte {
	if s == "" {
		return nil
	}
	return unsafe.Slice(unsafe.StringData(s), len(s))
}

// HeaderValues implements router.Headers over the fasthttp request.
func (sc *scratch) HeaderValues(lowerName string) []string {
	k := sc.hkey[:0]
	upper := true
	for i := 0; i < len(lowerName); i++ {
		c := lowerName[i]
		if upper && 'a' <= c && c <= 'z' {
			c -= 32
		} else if !upper && 'A' <= c && c <= 'Z' {
			c += 32
		}
		k = append(k, c)
		upper = c == '-'
	}
	sc.hkey = k
	vals := sc.ctx.Request.Header.PeekAll(b2s(k))
	if len(vals) == 0 {
		return nil
	}
	start := len(sc.hvals)
	for _, v := range vals {
		sc.hvals = append(sc.hvals, b2s(v))
	}
	return sc.hvals[start:len(sc.hvals):len(sc.hvals)]
}

func (e *Engine) handle(ctx *fasthttp.RequestCtx) {
	e.totalRequests.Add(1)
	e.inFlight.Add(1)
	sc := scratchPool.Get().(*scratch)
	sc.ctx = ctx
	e.serve(sc)
	sc.release()
	e.inFlight.Add(-1)
}

func (e *Engine) serve(sc *scratch) {
	ctx := sc.ctx
	req := &ctx.Request
	sc.rid = appendRequestID(sc.rid[:0])

	rawURI := req.Header.RequestURI()
	path, query, hasQuery := splitRequestURI(rawURI)
	scheme := "http"
	if ctx.IsTLS() {
		scheme = "https"
	}
	port := localPort(ctx)
	sc.rreq = router.Request{
		Method:  b2s(req.Header.Method()),
		Host:    b2s(req.Header.Host()),
		Path:    b2s(path),
		Scheme:  scheme,
		Port:    port,
		Headers: sc,
	}
	if scheme == "https" {
		if cs := ctx.TLSConnectionState(); cs != nil {
			sc.rreq.SNI = cs.ServerName
		}
	}
	st := e.state.Load()
	if st == nil || !st.router.Match(&sc.rreq, &sc.match) {
		e.kongError(sc, fasthttp.StatusNotFound, msgNoRoute, errorMimeForKong(b2s(req.Header.Peek("Accept"))))
		return
	}
	m := &sc.match
	rs := st.routes[m.Route]
	if rs == nil { // cannot happen: every routed route was compiled
		e.kongError(sc, fasthttp.StatusInternalServerError, msgUnexpected, errorMimeForKong(b2s(req.Header.Peek("Accept"))))
		return
	}
	sc.route = rs
	if m.Service != nil {
		sc.service = st.services[m.Service]
	}
	sc.debug = e.opts.AllowDebugHeader && len(req.Header.Peek("Kong-Debug")) > 0
	sc.host = appendNginxHost(sc.host[:0], req.Header.Host())

	if rs.httpsOnly && scheme != "https" {
		if rs.redirectCode == 426 {
			e.kongError(sc, fasthttp.StatusUpgradeRequired, msgUseHTTPS, errorMimeForKong(b2s(req.Header.Peek("Accept"))))
			ctx.Response.Header.SetCanonical(hdrConnection, valUpgradeConnection)
			ctx.Response.Header.SetCanonical(hdrUpgrade, valUpgradeTLS)
			return
		}
		e.redirectHTTPS(sc, rs.redirectCode, rawURI)
		return
	}
	if rs.grpcOnly {
		// kongfb serves HTTP/1.x only, so a gRPC request can never be
		// proxied: Kong's answers for gRPC routes reached over HTTP/1.
		if bytes.HasPrefix(req.Header.ContentType(), []byte("application/grpc")) {
			e.kongError(sc, fasthttp.StatusUpgradeRequired, "Please use HTTP2 protocol", errorMimeForKong(b2s(req.Header.Peek("Accept"))))
			ctx.Response.Header.SetCanonical(hdrConnection, valUpgradeConnection)
			ctx.Response.Header.SetCanonical(hdrUpgrade, valUpgradeH2)
		} else {
			e.kongError(sc, fasthttp.StatusUnsupportedMediaType, "Non-gRPC request matched gRPC route", errorMimeForKong(b2s(req.Header.Peek("Accept"))))
		}
		return
	}
	if sc.service == nil {
		e.kongError(sc, fasthttp.StatusServiceUnavailable, msgNoService, errorMimeForKong(b2s(req.Header.Peek("Accept"))))
		return
	}
	e.proxy(sc, path, query, hasQuery)
}

// splitRequestURI splits the raw request target into path and query (the
// query without '?'; hasQuery reports a '?', even a bare one). An
// absolute-form target ("http://host/p") is reduced to its path.
func splitRequestURI(uri []byte) (path, query []byte, hasQuery bool) {
	if len(uri) > 0 && uri[0] != '/' {
		if i := bytes.Index(uri, []byte("://")); i >= 0 {
			rest := uri[i+3:]
			if j := bytes.IndexAny(rest, "/?"); j >= 0 {
				uri = rest[j:]
			} else {
				uri = nil
			}
		}
	}
	if i := bytes.IndexByte(uri, '?'); i >= 0 {
		return uri[:i], uri[i+1:], true
	}
	return uri, nil, false
}

func localPort(ctx *fasthttp.RequestCtx) int {
	switch a := ctx.LocalAddr().(type) {
	case *net.TCPAddr:
		return a.Port
	}
	return 0
}

// appendNginxHost appends nginx's $host for a Host header value: lower
// case, without the port.
func appendNginxHost(dst, host []byte) []byte {
	if len(host) > 0 && host[0] == '[' {
		if i := bytes.IndexByte(host, ']'); i >= 0 {
			host = host[:i+1]
		}
	} else if i := bytes.IndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	for _, c := range host {
		if 'A' <= c && c <= 'Z' {
			c += 32
		}
		dst = append(dst, c)
	}
	return dst
}

func appendIP(dst []byte, ip net.IP) []byte {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return dst
	}
	return a.Unmap().AppendTo(dst)
}

func isIdempotent(method []byte) bool {
	// nginx never retries POST, LOCK and PATCH once sent.
	switch string(method) {
	case "POST", "LOCK", "PATCH":
		return false
	}
	return true
}

// proxy sends the request upstream (with retries) and relays the answer.
func (e *Engine) proxy(sc *scratch, path, query []byte, hasQuery bool) {
	ctx := sc.ctx
	req := &ctx.Request
	h := &req.Header
	ss, rs, m := sc.service, sc.route, &sc.match
	clientHTTP11 := h.IsHTTP11()
	// Everything read from the request is copied into scratch buffers
	// first: changing headers reuses fasthttp's buffers.
	sc.ip = appendIP(sc.ip[:0], ctx.RemoteIP())
	sc.port = strconv.AppendInt(sc.port[:0], int64(localPort(ctx)), 10)
	sc.fpath = append(sc.fpath[:0], path...)
	if xff := h.PeekBytes(hdrXForwardedFor); len(xff) > 0 {
		sc.xff = append(append(append(sc.xff[:0], xff...), ", "...), sc.ip...)
	} else {
		sc.xff = append(sc.xff[:0], sc.ip...)
	}
	// Via: Kong appends "<client HTTP version> kong/3.9.1" (Lua number
	// formatting: HTTP/1.0 gives "1").
	sc.via = sc.via[:0]
	if v := h.PeekBytes(hdrVia); len(v) > 0 {
		sc.via = append(append(sc.via, v...), ", "...)
	}
	if clientHTTP11 {
		sc.via = append(sc.via, "1.1 "...)
	} else {
		sc.via = append(sc.via, "1 "...)
	}
	sc.via = append(sc.via, serverHeader...)
	wantTrailers := teAsksTrailers(h.Peek("TE"))
	sc.pick.hasKey = false
	if b := ss.bal; b.algo == algoConsistentHashing {
		sc.hashKey(b, query, hasQuery)
	}
	sc.uri = append(sc.uri[:0], m.UpstreamPath...)
	if hasQuery {
		sc.uri = append(append(sc.uri, '?'), query...)
	}
	if rs.preserveHost && ss.https {
		sc.phost = append(sc.phost[:0], h.Host()...)
	}

	// Now rewrite the request in place: fasthttp sends ctx.Request as is.
	removeConnectionTokens(h)
	for _, k := range hopByHopRequest {
		h.Del(k)
	}
	h.ResetConnectionClose()
	if wantTrailers {
		h.Set("Te", "trailers")
	}
	setHeader(h, hdrXRealIP, sc.ip)
	setHeader(h, hdrXForwardedFor, sc.xff)
	if ctx.IsTLS() {
		setHeader(h, hdrXForwardedProto, valHTTPS)
	} else {
		setHeader(h, hdrXForwardedProto, valHTTP)
	}
	setHeader(h, hdrXForwardedHost, sc.host)
	setHeader(h, hdrXForwardedPort, sc.port)
	setHeader(h, hdrXForwardedPath, sc.fpath)
	h.DelBytes(hdrXForwardedPrefix)
	if m.StrippedPrefix != "" {
		h.SetCanonical(hdrXForwardedPrefix, s2b(m.StrippedPrefix))
	}
	setHeader(h, hdrVia, sc.via)
	setHeader(h, hdrRequestID, sc.rid)
	h.SetRequestURIBytes(sc.uri)
	h.SetProtocolBytes(valHTTP11)
	h.SetNoDefaultContentType(true)

	method := h.Method()
	idempotent := isIdempotent(method)
	// fasthttp refuses to write a GET/HEAD body from the body buffer; such
	// a body (rare, but legal) goes out as a sized stream instead.
	if (h.IsGet() || h.IsHead()) && len(req.Body()) > 0 {
		sc.body = append(sc.body[:0], req.Body()...)
	} else {
		sc.body = sc.body[:0]
	}

	start := ctx.Time()
	in := &sc.pick
	in.tried = sc.tried[:0]
	var last *tryError
	var firstSend time.Time
	for try := 0; ; try++ {
		now := time.Now()
		in.now = now.UnixNano()
		p, err := ss.bal.pick(in)
		if err != nil {
			if try == 0 {
				restoreProtocol(h, clientHTTP11)
				msg := msgNoPeer
				if !errors.Is(err, errNoPeer) {
					msg = msgNameResolution
				}
				e.kongError(sc, fasthttp.StatusServiceUnavailable, msg, errorMimeForKong(b2s(h.Peek("Accept"))))
				return
			}
			break // retries exhausted the peers: answer the last failure
		}
		if try == 0 {
			firstSend = now
		}
		// TLS SNI: the host part of the Host header sent (nginx
		// proxy_ssl_name $upstream_host), none for an IP.
		sni := ""
		if !rs.preserveHost {
			hh := p.hostHeader(ss.https)
			h.SetHost(hh)
			if ss.https {
				sni = sniFromHost(hh)
			}
		} else if ss.https {
			sni = sniFromHost(b2s(sc.phost))
		}
		if len(sc.body) > 0 {
			req.SetBodyStream(bytes.NewReader(sc.body), len(sc.body))
		}
		uc := e.clients.get(p.addr, sni, ss.profile)
		uc.touch(now.Unix())
		p.st.active.Add(1)
		te := roundTrip(uc.hc, req, &ctx.Response, ss.writeTimeout, ss.readTimeout, idempotent)
		p.st.active.Add(-1)
		end := time.Now()
		if te == nil {
			status := ctx.Response.StatusCode()
			ss.bal.passive.record(p.st, outcomeStatus, status, end.UnixNano())
			if ss.bal.algo == algoLatency {
				p.observeLatency(end.Sub(now), end.UnixNano())
			}
			restoreProtocol(h, clientHTTP11)
			e.finishProxied(sc, start, firstSend, end, wantTrailers)
			return
		}
		last = te
		o := outcomeTCP
		if te.timeout {
			o = outcomeTimeout
		}
		ss.bal.passive.record(p.st, o, 0, end.UnixNano())
		e.logTryFailure(sc, p, te, try)
		in.tried = append(in.tried, p)
		if try >= ss.retries || te.invalid || (!idempotent && te.phase != phaseConnect) {
			break
		}
	}
	sc.tried = in.tried
	restoreProtocol(h, clientHTTP11)
	status, msg := fasthttp.StatusBadGateway, msgBadGateway
	if last != nil && last.timeout {
		status, msg = fasthttp.StatusGatewayTimeout, msgTimeout
	}
	e.nginxError(sc, status, msg, start, firstSend)
}

func restoreProtocol(h *fasthttp.RequestHeader, http11 bool) {
	// fasthttp decides on "Connection: keep-alive" for HTTP/1.0 clients
	// from the request's protocol after the handler returns.
	if !http11 {
		h.SetProtocolBytes(valHTTP10)
	}
}

// sniFromHost strips the port from a Host value for use as TLS SNI.
func sniFromHost(h string) string {
	if len(h) > 0 && h[0] == '[' {
		return "" // IP literal: no SNI
	}
	if i := lastColon(h); i >= 0 {
		h = h[:i]
	}
	if isIPLiteral(h) {
		return ""
	}
	return h
}

func lastColon(s string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == ':' {
			return i
		}
	}
	return -1
}

func setHeader(h *fasthttp.RequestHeader, k, v []byte) {
	h.DelBytes(k)
	h.SetCanonical(k, v)
}

func teAsksTrailers(te []byte) bool {
	for len(te) > 0 {
		var tok []byte
		if i := bytes.IndexByte(te, ','); i >= 0 {
			tok, te = te[:i], te[i+1:]
		} else {
			tok, te = te, nil
		}
		if bytes.EqualFold(bytes.TrimSpace(tok), []byte("trailers")) {
			return true
		}
	}
	return false
}

// removeConnectionTokens deletes the headers a client names in its
// Connection header (hop-by-hop by declaration), as Kong does.
func removeConnectionTokens(h *fasthttp.RequestHeader) {
	var names [8]string
	for _, name := range connectionTokens(h.PeekBytes(hdrConnection), &names) {
		h.Del(name)
	}
}

// removeResponseConnectionTokens is removeConnectionTokens for an upstream's
// response.
func removeResponseConnectionTokens(h *fasthttp.ResponseHeader) {
	var names [8]string
	for _, name := range connectionTokens(h.PeekBytes(hdrConnection), &names) {
		h.Del(name)
	}
}

// connectionTokens returns the header names a Connection header value v
// declares (all but keep-alive, close and upgrade), at most len(names), as
// copies in names: deleting headers reuses the buffers v points into.
func connectionTokens(v []byte, names *[8]string) []string {
	if len(v) == 0 || bytes.IndexByte(v, ',') < 0 && isPlainConnectionValue(v) {
		return nil
	}
	n := 0
	for len(v) > 0 && n < len(names) {
		var tok []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			tok, v = v[:i], v[i+1:]
		} else {
			tok, v = v, nil
		}
		tok = bytes.TrimSpace(tok)
		if len(tok) == 0 || isPlainConnectionValue(tok) {
			continue
		}
		names[n] = string(tok)
		n++
	}
	return names[:n]
}

func isPlainConnectionValue(v []byte) bool {
	return bytes.EqualFold(v, []byte("keep-alive")) || bytes.EqualFold(v, []byte("close")) || bytes.EqualFold(v, []byte("upgrade"))
}

// finishProxied decorates a proxied upstream response with Kong's headers.
func (e *Engine) finishProxied(sc *scratch, start, firstSend, end time.Time, wantTrailers bool) {
	resp := &sc.ctx.Response
	rh := &resp.Header
	// The upstream connection's fate is decided; the client's is not the
	// upstream's business.
	rh.ResetConnectionClose()
	removeResponseConnectionTokens(rh)
	for _, k := range hopByHopResponse {
		rh.Del(k)
	}
	if !wantTrailers {
		rh.Del("Trailer")
	}
	if v := rh.PeekBytes(hdrVia); len(v) > 0 {
		sc.via = append(append(sc.via[:0], v...), viaSuffix...)
		rh.DelBytes(hdrVia)
		rh.SetCanonical(hdrVia, sc.via)
	} else {
		rh.SetCanonical(hdrVia, valViaKong)
	}
	if len(rh.Server()) == 0 {
		rh.SetServer(serverHeader)
	}
	rh.SetNoDefaultContentType(true)
	sc.num = strconv.AppendInt(sc.num[:0], end.Sub(firstSend).Milliseconds(), 10)
	rh.SetCanonical(hdrUpstreamLatency, sc.num)
	sc.num = strconv.AppendInt(sc.num[:0], firstSend.Sub(start).Milliseconds(), 10)
	rh.SetCanonical(hdrProxyLatency, sc.num)
	rh.SetCanonical(hdrRequestID, sc.rid)
	if sc.setCookie {
		rh.SetCanonical(hdrSetCookie, sc.cookie)
	}
	if sc.debug {
		e.debugHeaders(sc)
	}
}

// kongError answers like kong.response.error(status, msg): a Kong-generated
// response (Server, X-Kong-Response-Latency; no Via).
func (e *Engine) kongError(sc *scratch, status int, msg string, kind mimeKind) {
	e.writeError(sc, status, msg, kind)
	rh := &sc.ctx.Response.Header
	sc.num = strconv.AppendInt(sc.num[:0], time.Since(sc.ctx.Time()).Milliseconds(), 10)
	rh.SetCanonical(hdrResponseLatency, sc.num)
	if sc.debug {
		e.debugHeaders(sc)
	}
}

// nginxError answers an upstream failure like Kong's error handler (nginx
// error_page): the request had been proxied, so the proxied-response
// headers (Via, upstream/proxy latency) are set.
func (e *Engine) nginxError(sc *scratch, status int, msg string, start, firstSend time.Time) {
	req := &sc.ctx.Request
	kind := errorMimeForNginx(b2s(req.Header.Peek("Accept")), b2s(req.Header.ContentType()))
	e.writeError(sc, status, msg, kind)
	rh := &sc.ctx.Response.Header
	end := time.Now()
	rh.SetCanonical(hdrVia, valViaKong)
	sc.num = strconv.AppendInt(sc.num[:0], end.Sub(firstSend).Milliseconds(), 10)
	rh.SetCanonical(hdrUpstreamLatency, sc.num)
	sc.num = strconv.AppendInt(sc.num[:0], firstSend.Sub(start).Milliseconds(), 10)
	rh.SetCanonical(hdrProxyLatency, sc.num)
	if sc.debug {
		e.debugHeaders(sc)
	}
}

func (e *Engine) writeError(sc *scratch, status int, msg string, kind mimeKind) {
	resp := &sc.ctx.Response
	resp.Reset()
	rh := &resp.Header
	rh.SetNoDefaultContentType(true)
	resp.SetStatusCode(status)
	rh.SetContentType(mimeContentTypes[kind])
	body := errorBodies(msg)[kind]
	resp.AppendBodyString(body.pre)
	if kind != mimeGRPC {
		resp.AppendBody(sc.rid)
		resp.AppendBodyString(body.post)
	}
	rh.SetServer(serverHeader)
	rh.SetCanonical(hdrRequestID, sc.rid)
}

// redirectHTTPS answers an https-only route reached over http with
// https_redirect_status_code 301/302/307/308: empty body, Location on https.
func (e *Engine) redirectHTTPS(sc *scratch, code int, rawURI []byte) {
	resp := &sc.ctx.Response
	resp.Reset()
	rh := &resp.Header
	rh.SetNoDefaultContentType(true)
	resp.SetStatusCode(code)
	loc := append(append(append(sc.uri[:0], "https://"...), sc.host...), rawURI...)
	sc.uri = loc
	rh.SetCanonical(hdrLocation, loc)
	rh.SetServer(serverHeader)
	rh.SetCanonical(hdrRequestID, sc.rid)
	sc.num = strconv.AppendInt(sc.num[:0], time.Since(sc.ctx.Time()).Milliseconds(), 10)
	rh.SetCanonical(hdrResponseLatency, sc.num)
	if sc.debug {
		e.debugHeaders(sc)
	}
}

func (e *Engine) debugHeaders(sc *scratch) {
	rh := &sc.ctx.Response.Header
	if rs := sc.route; rs != nil {
		rh.SetCanonical(hdrRouteID, s2b(rs.debugID))
		if rs.hasDebugName {
			rh.SetCanonical(hdrRouteName, s2b(rs.debugName))
		}
	}
	if ss := sc.service; ss != nil {
		rh.SetCanonical(hdrServiceID, s2b(ss.debugID))
		if ss.hasDebugName {
			rh.SetCanonical(hdrServiceName, s2b(ss.debugName))
		}
	}
}

func (e *Engine) logTryFailure(sc *scratch, p *peer, te *tryError, try int) {
	if !e.log.Enabled(context.Background(), slog.LevelWarn) {
		return
	}
	kind := "error"
	if te.timeout {
		kind = "timeout"
	} else if te.invalid {
		kind = "invalid response"
	}
	phase := [...]string{"connecting to", "sending request to", "reading response from"}[te.phase]
	e.log.Warn("proxy: upstream "+kind+" while "+phase+" upstream",
		"upstream", sc.service.bal.name, "peer", p.addr, "try", try+1, "request_id", string(sc.rid), "error", te.err)
}

// hashKey computes the consistent-hashing input (hash_on, then
// hash_fallback) into sc.pick; copied, because the request is rewritten
// before the balancer runs.
func (sc *scratch) hashKey(b *balancer, query []byte, hasQuery bool) {
	sc.setCookie = false
	for i, spec := range [2]hashSpec{b.hashOn, b.hashFb} {
		v := sc.hashValue(spec, query, hasQuery)
		if len(v) > 0 {
			sc.hash = append(sc.hash[:0], v...)
			sc.pick.key, sc.pick.hasKey = b2s(sc.hash), true
			return
		}
		if i == 0 && spec.kind == hashCookie {
			// Kong sets the cookie when the client has none (and then
			// hashes on the new value; hash_fallback must be none).
			sc.cookie = append(sc.cookie[:0], spec.name...)
			sc.cookie = append(sc.cookie, '=')
			n := len(sc.cookie)
			sc.cookie = appendUUID(sc.cookie)
			sc.hash = append(sc.hash[:0], sc.cookie[n:]...)
			sc.cookie = append(append(append(sc.cookie, "; Path="...), b.cookiePath...), "; Same-Site=Lax; HttpOnly"...)
			sc.setCookie = true
			sc.pick.key, sc.pick.hasKey = b2s(sc.hash), true
			return
		}
	}
}

func (sc *scratch) hashValue(spec hashSpec, query []byte, hasQuery bool) []byte {
	req := &sc.ctx.Request
	switch spec.kind {
	case hashIP:
		return sc.ip
	case hashHeader:
		vals := req.Header.PeekAll(spec.name)
		if len(vals) == 1 {
			return vals[0]
		}
		// nginx's $http_<name> joins repeated headers with ", ".
		sc.num = sc.num[:0]
		for i, v := range vals {
			if i > 0 {
				sc.num = append(sc.num, ", "...)
			}
			sc.num = append(sc.num, v...)
		}
		return sc.num
	case hashCookie:
		return req.Header.Cookie(spec.name)
	case hashPath:
		return s2b(sc.match.NormalizedPath)
	case hashQueryArg:
		if !hasQuery {
			return nil
		}
		sc.args.ParseBytes(query)
		return sc.args.Peek(spec.name)
	case hashURICapture:
		if v, ok := sc.match.NamedCapture(spec.name); ok {
			return s2b(v)
		}
		if i, err := strconv.Atoi(spec.name); err == nil && i >= 0 && i < len(sc.match.Captures) {
			return s2b(sc.match.Captures[i])
		}
	}
	return nil
}

// appendUUID appends a random (v4) UUID.
func appendUUID(dst []byte) []byte {
	var raw []byte
	raw = appendRequestID(raw) // 32 random hex digits
	raw[12] = '4'
	raw[16] = "89ab"[raw[16]%4]
	dst = append(dst, raw[0:8]...)
	dst = append(dst, '-')
	dst = append(dst, raw[8:12]...)
	dst = append(dst, '-')
	dst = append(dst, raw[12:16]...)
	dst = append(dst, '-')
	dst = append(dst, raw[16:20]...)
	dst = append(dst, '-')
	return append(dst, raw[20:32]...)
}

// handleRequestError answers requests fasthttp could not read, like
// nginx + Kong's error handler: 413 for a body over the limit, 400
// "Request header or cookie too large" (nginx 494) for oversized headers,
// 408 for a read timeout, else 400.
func (e *Engine) handleRequestError(ctx *fasthttp.RequestCtx, err error) {
	sc := scratchPool.Get().(*scratch)
	sc.ctx = ctx
	sc.rid = appendRequestID(sc.rid[:0])
	status, msg := fasthttp.StatusBadRequest, "Bad request"
	var se *fasthttp.ErrSmallBuffer
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		status, msg = fasthttp.StatusRequestEntityTooLarge, msgPayloadTooLarge
	case errors.As(err, &se):
		msg = "Request header or cookie too large"
	case isTimeout(err):
		status, msg = fasthttp.StatusRequestTimeout, "Request timeout"
	}
	kind := errorMimeForNginx(b2s(ctx.Request.Header.Peek("Accept")), b2s(ctx.Request.Header.ContentType()))
	e.writeError(sc, status, msg, kind)
	sc.num = strconv.AppendInt(sc.num[:0], 0, 10)
	ctx.Response.Header.SetCanonical(hdrResponseLatency, sc.num)
	ctx.Response.SetConnectionClose()
	sc.release()
}
