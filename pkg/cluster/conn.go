package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
)

// PingFramesHeader negotiates kongfb's ping frames (see the package
// documentation): a kongfb DP sends it with value "1" and a kongfb CP echoes
// it in the 101 response.
const PingFramesHeader = "Kongfb-Ping-Frames"

// NodeInfo identifies a DP. Dial uses ID, Hostname and Version; Accept fills
// every field.
type NodeInfo struct {
	ID       string
	Hostname string
	Version  string
	// IP is the DP's address as the CP sees it.
	IP string
	// CertDetails describes the DP's client certificate; HasCert is false
	// when the connection carried none (plain ws:// in tests).
	CertDetails CertDetails
	HasCert     bool
	BasicInfo   BasicInfo
	// PingFrames is true for a kongfb DP, which reports its hash in ping
	// frames rather than in WebSocket ping payloads.
	PingFrames bool
}

type side int

const (
	cpSide side = iota + 1
	dpSide
)

// Conn is one sync connection, seen from the CP (Accept) or the DP (Dial).
// Its methods are safe for concurrent use, except that only one goroutine
// may read (ReadLoop on the CP; ReadFrame/ReadReconfigure on the DP).
type Conn struct {
	ws   *websocket.Conn
	side side
	node NodeInfo
	log  *slog.Logger

	maxPayload      int64
	maxDecompressed int64
	pingInterval    time.Duration
	pingWait        time.Duration
	writeTimeout    time.Duration
	pingFrames      bool

	// lastSeen is when the peer last proved alive (unix nanoseconds): any
	// ping from a DP on the CP side; any frame or pong from the CP on the DP
	// side.
	lastSeen atomic.Int64

	// CP side: latest-wins mailbox of reported hashes, filled by the
	// WebSocket ping callback and by ping frames.
	hashes   chan string
	failOnce sync.Once
	failErr  error
	failCh   chan struct{}

	// DP side.
	kick     chan struct{}
	pingBusy atomic.Bool
}

func newConn(s side, log *slog.Logger) *Conn {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Conn{
		side:   s,
		log:    log,
		hashes: make(chan string, 1),
		failCh: make(chan struct{}),
		kick:   make(chan struct{}, 1),
	}
	c.touch()
	return c
}

func (c *Conn) touch() { c.lastSeen.Store(time.Now().UnixNano()) }

func (c *Conn) sinceSeen() time.Duration {
	return time.Since(time.Unix(0, c.lastSeen.Load()))
}

// fail records a fatal protocol error found in a callback, where the
// connection cannot be closed directly; the read loop picks it up.
func (c *Conn) fail(err error) {
	c.failOnce.Do(func() {
		c.failErr = err
		close(c.failCh)
	})
}

func (c *Conn) deliverHash(h string) {
	select {
	case c.hashes <- h:
		return
	default:
	}
	// Full: replace the stale hash with the newer one. Only the reader
	// goroutine sends, so the second send cannot race with another sender.
	select {
	case <-c.hashes:
	default:
	}
	select {
	case c.hashes <- h:
	default:
	}
}

// Node is the DP's identity (CP side) or the identity this DP announced.
func (c *Conn) Node() NodeInfo { return c.node }

// MaxPayload is the frame size limit in force (cluster_max_payload).
func (c *Conn) MaxPayload() int64 { return c.maxPayload }

// CloseNow drops the connection without a close handshake.
func (c *Conn) CloseNow() error { return c.ws.CloseNow() }

// Close ends the connection with a normal closure.
func (c *Conn) Close() error { return c.ws.Close(websocket.StatusNormalClosure, "") }

// CloseWithReason ends the connection telling the peer why (a policy
// violation close frame): the CP uses it for incompatible DPs, so the DP can
// log the reason Kong only logs on the CP.
func (c *Conn) CloseWithReason(reason string) error {
	return c.ws.Close(websocket.StatusPolicyViolation, closeReason(reason))
}

// closeAsync sends a close frame with reason and finishes the close
// handshake in the background: coder/websocket waits up to 10 s for the
// peer's answer, and a misbehaving peer must not hold up the caller.
func (c *Conn) closeAsync(reason string) { c.closeAsyncCode(websocket.StatusPolicyViolation, reason) }

func (c *Conn) closeAsyncCode(code websocket.StatusCode, reason string) {
	go func() { _ = c.ws.Close(code, closeReason(reason)) }()
}

// closeReason fits a reason into a close frame (at most 123 bytes).
func closeReason(s string) string {
	const max = 123
	if len(s) <= max {
		return s
	}
	cut := max - len("…")
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + "…"
}

func seconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
}

func withDefault[T int64 | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// ---------------------------------------------------------------- CP side

// AcceptOptions tune Accept. Zero values select Kong's defaults.
type AcceptOptions struct {
	// MaxPayload is cluster_max_payload, the read limit for DP frames.
	MaxPayload int64
	// BasicInfoTimeout bounds the wait for the DP's first frame (5 s).
	BasicInfoTimeout time.Duration
	// PingWait is the silence after which ReadLoop drops the DP (45 s).
	PingWait time.Duration
	// WriteTimeout bounds sending one frame (30 s).
	WriteTimeout time.Duration
	Logger       *slog.Logger
}

// HandshakeError is an Accept refusal sent as an HTTP response before the
// WebSocket upgrade; Message is Kong's log text.
type HandshakeError struct {
	Status  int
	Message string
}

func (e *HandshakeError) Error() string { return e.Message }

// Accept upgrades a DP's request to /v1/outlet, CP side. It checks the query
// (node_id, node_version; 400 otherwise, as Kong), reads the DP's basic_info
// frame within BasicInfoTimeout and returns the connection with the DP's
// identity. On error it has already answered the request or closed the
// WebSocket; the caller only logs the error (Kong's texts).
//
// Do not use r.Context() after Accept: the connection is hijacked.
func Accept(w http.ResponseWriter, r *http.Request, opts *AcceptOptions) (*Conn, NodeInfo, error) {
	if opts == nil {
		opts = &AcceptOptions{}
	}
	q := r.URL.Query()
	node := NodeInfo{
		ID:       q.Get("node_id"),
		Hostname: q.Get("node_hostname"),
		Version:  q.Get("node_version"),
		IP:       remoteIP(r.RemoteAddr),
	}
	refuse := func(msg string) (*Conn, NodeInfo, error) {
		http.Error(w, msg, http.StatusBadRequest)
		return nil, node, &HandshakeError{Status: http.StatusBadRequest, Message: msg}
	}
	if node.ID == "" {
		return refuse("data plane didn't pass the id")
	}
	// Kong stores the id in a uuid column; refusing here gives a clear error
	// instead of a failed registry write later.
	if _, err := uuid.Parse(node.ID); err != nil {
		return refuse(fmt.Sprintf("data plane passed an invalid id: '%s' (want a UUID)", quoteShort(node.ID)))
	}
	if node.Version == "" {
		return refuse("data plane didn't pass the version")
	}
	if r.TLS != nil {
		node.CertDetails, node.HasCert = PeerCertDetails(r.TLS)
	}

	c := newConn(cpSide, opts.Logger)
	c.maxPayload = withDefault(opts.MaxPayload, DefaultMaxPayload)
	c.pingWait = withDefault(opts.PingWait, DefaultPingWait)
	c.writeTimeout = withDefault(opts.WriteTimeout, 30*time.Second)
	c.pingFrames = r.Header.Get(PingFramesHeader) == "1"
	node.PingFrames = c.pingFrames
	if c.pingFrames {
		w.Header().Set(PingFramesHeader, "1")
	}

	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		OnPingReceived: func(_ context.Context, payload []byte) bool {
			return c.onDPPing(payload)
		},
	})
	if err != nil {
		return nil, node, fmt.Errorf("failed to perform server side websocket handshake: %w", err)
	}
	c.ws = ws
	ws.SetReadLimit(c.maxPayload)

	ctx, cancel := context.WithTimeout(context.Background(), withDefault(opts.BasicInfoTimeout, DefaultTimeout))
	typ, data, err := ws.Read(ctx)
	timedOut := ctx.Err() != nil
	cancel()
	if err != nil {
		if timedOut {
			err = errors.New("timeout")
		}
		_ = ws.CloseNow()
		return nil, node, fmt.Errorf("failed to receive websocket basic info frame: %v", err)
	}
	if typ != websocket.MessageBinary {
		err := errors.New("failed to receive websocket basic info data: expected a binary frame, got text")
		c.closeAsync(err.Error())
		return nil, node, err
	}
	bi, err := DecodeBasicInfo(data)
	if err != nil {
		c.closeAsync(err.Error())
		return nil, node, err
	}
	node.BasicInfo = *bi
	c.node = node
	c.touch()
	return c, node, nil
}

func hostOf(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return ""
	}
	return u.Hostname()
}

func remoteIP(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

// onDPPing runs inside the WebSocket reader for each ping from the DP. A Kong
// DP carries its hash as the payload; a kongfb DP's payload is the library's
// counter and its hash comes in a ping frame instead.
func (c *Conn) onDPPing(payload []byte) bool {
	c.touch()
	if c.pingFrames {
		return true
	}
	if len(payload) != 32 {
		c.fail(invalidPingHash(payload))
		return false
	}
	c.deliverHash(string(payload))
	return true
}

// ReadLoop reads from the DP until the connection ends (CP side), calling
// onPing with the DP's config hash for every ping, as Kong's CP updates the
// DP's registry row on every ping. Pongs are sent automatically. It returns
// nil when the DP closed the connection normally, and an error (with Kong's
// text) when the DP sent an invalid frame or hash, stayed silent for
// PingWait ("did not receive ping frame from data plane within 45 seconds"),
// or ctx ended. The connection is closed when ReadLoop returns.
func (c *Conn) ReadLoop(ctx context.Context, onPing func(hash string)) error {
	if c.side != cpSide {
		return errors.New("ReadLoop is for the control plane side of a connection")
	}
	// The reader is not bound to ctx: cancelling a read context makes
	// coder/websocket drop the connection at once, before a close frame can
	// tell the DP why. Every return path below closes the connection
	// instead, which ends this goroutine.
	readErr := make(chan error, 1)
	go func() {
		for {
			typ, data, err := c.ws.Read(context.Background())
			if err != nil {
				readErr <- err
				return
			}
			if !c.pingFrames {
				// Kong's CP accepts nothing but pings from a DP, and checks
				// the length before the frame type.
				if len(data) != 32 {
					readErr <- invalidPingHash(data)
				} else {
					readErr <- protocolErrorf("invalid websocket frame received from data plane: %s", frameType(typ))
				}
				return
			}
			hash, err := DecodePingFrame(data)
			if err != nil {
				readErr <- err
				return
			}
			c.touch()
			c.deliverHash(hash)
		}
	}()

	silence := time.NewTimer(c.pingWait)
	defer silence.Stop()
	for {
		select {
		case h := <-c.hashes:
			if onPing != nil {
				onPing(h)
			}
		case <-silence.C:
			if since := c.sinceSeen(); since < c.pingWait {
				silence.Reset(c.pingWait - since)
				continue
			}
			_ = c.ws.CloseNow()
			return fmt.Errorf("did not receive ping frame from data plane within %s seconds", seconds(c.pingWait))
		case <-c.failCh:
			c.closeAsync(c.failErr.Error())
			return c.failErr
		case err := <-readErr:
			// A hash that arrived with the last frames still counts.
			select {
			case h := <-c.hashes:
				if onPing != nil {
					onPing(h)
				}
			default:
			}
			return c.endRead(ctx, err, "data plane")
		case <-ctx.Done():
			c.closeAsyncCode(websocket.StatusGoingAway, "control plane is shutting down")
			return ctx.Err()
		}
	}
}

// endRead classifies the error that ended reading and closes the connection.
func (c *Conn) endRead(ctx context.Context, err error, peer string) error {
	if ctx.Err() != nil {
		_ = c.ws.CloseNow()
		return ctx.Err()
	}
	var ce websocket.CloseError
	switch {
	case errors.As(err, &ce):
		if ce.Code == websocket.StatusNormalClosure || ce.Code == websocket.StatusGoingAway {
			return nil
		}
		if ce.Reason != "" {
			return fmt.Errorf("%s closed the connection: %s (close code %d)", peer, ce.Reason, int(ce.Code))
		}
		return fmt.Errorf("%s closed the connection (close code %d)", peer, int(ce.Code))
	case errors.Is(err, websocket.ErrMessageTooBig):
		_ = c.ws.CloseNow()
		return fmt.Errorf("frame from %s exceeds cluster_max_payload (%d bytes)", peer, c.maxPayload)
	}
	var pe *ProtocolError
	if errors.As(err, &pe) {
		c.closeAsync(pe.Message)
		return err
	}
	_ = c.ws.CloseNow()
	return fmt.Errorf("error while receiving frame from %s: %w", peer, err)
}

func frameType(t websocket.MessageType) string {
	switch t {
	case websocket.MessageText:
		return "text"
	case websocket.MessageBinary:
		return "binary"
	}
	return t.String()
}

// SendReconfigure sends an encoded reconfigure payload (EncodeReconfigure)
// to the DP as one binary frame, within WriteTimeout. Cancelling ctx during
// the write closes the connection (coder/websocket semantics).
func (c *Conn) SendReconfigure(ctx context.Context, payload []byte) error {
	if int64(len(payload)) > c.maxPayload {
		return fmt.Errorf("unable to send updated configuration to data plane: %w",
			&PayloadTooLargeError{What: "reconfigure frame", Size: int64(len(payload)), Limit: c.maxPayload})
	}
	wctx, cancel := context.WithTimeout(ctx, c.writeTimeout)
	defer cancel()
	if err := c.ws.Write(wctx, websocket.MessageBinary, payload); err != nil {
		return fmt.Errorf("unable to send updated configuration to data plane: %w", err)
	}
	return nil
}

// ---------------------------------------------------------------- DP side

// DialOptions tune Dial. Zero values select Kong's defaults.
type DialOptions struct {
	// MaxPayload is cluster_max_payload, the read limit for CP frames.
	MaxPayload int64
	// MaxDecompressed bounds a reconfigure payload after gunzip.
	MaxDecompressed int64
	// Timeout bounds connect, TLS and WebSocket handshakes (5 s).
	Timeout time.Duration
	// PingInterval is how often Keepalive pings (30 s).
	PingInterval time.Duration
	// PingWait is the silence after which Keepalive drops the link (45 s).
	PingWait time.Duration
	// WriteTimeout bounds sending one frame (30 s).
	WriteTimeout time.Duration
	// Proxy, when set, is used for an HTTP CONNECT proxy (cluster_use_proxy).
	Proxy  func(*http.Request) (*url.URL, error)
	Logger *slog.Logger
}

// OutletURL builds the DP's URL: address is cluster_control_plane
// ("host:port") or a ws://, wss://, http:// or https:// URL; the path
// /v1/outlet and Kong's query (node_id, node_hostname, node_version) are
// added.
func OutletURL(address string, node NodeInfo) (string, error) {
	raw := strings.TrimSpace(address)
	if raw == "" {
		return "", errors.New("control plane address is empty")
	}
	if !strings.Contains(raw, "://") {
		raw = "wss://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("invalid control plane address %q: %w", address, err)
	}
	switch u.Scheme {
	case "wss", "https":
		u.Scheme = "wss"
	case "ws", "http":
		u.Scheme = "ws"
	default:
		return "", fmt.Errorf("invalid control plane address %q: scheme must be wss or ws", address)
	}
	if u.Host == "" {
		return "", fmt.Errorf("invalid control plane address %q: no host", address)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	if u.Path == "" {
		u.Path = OutletPath
	}
	// Kong's order; escaped, where Kong concatenates raw values.
	u.RawQuery = "node_id=" + url.QueryEscape(node.ID) +
		"&node_hostname=" + url.QueryEscape(node.Hostname) +
		"&node_version=" + url.QueryEscape(node.Version)
	return u.String(), nil
}

// Dial connects a DP to its CP: it opens the WebSocket at /v1/outlet with
// tlsConf (ClientTLSConfig; nil only for ws:// in tests), requires the CP to
// accept kongfb ping frames, and sends info as the first (basic_info) frame.
// Errors carry Kong's texts ("connection to control plane <url> broken: ...").
//
// After Dial, run one reader (ReadFrame or ReadReconfigure) and Keepalive
// concurrently: pongs are only processed while a read is in progress.
func Dial(ctx context.Context, address string, tlsConf *tls.Config, node NodeInfo, info BasicInfo, opts *DialOptions) (*Conn, error) {
	if opts == nil {
		opts = &DialOptions{}
	}
	if _, err := uuid.Parse(node.ID); err != nil {
		return nil, fmt.Errorf("data plane node id %q is not a UUID", node.ID)
	}
	if node.Version == "" {
		return nil, errors.New("data plane version is empty")
	}
	u, err := OutletURL(address, node)
	if err != nil {
		return nil, err
	}
	c := newConn(dpSide, opts.Logger)
	c.maxPayload = withDefault(opts.MaxPayload, DefaultMaxPayload)
	c.maxDecompressed = withDefault(opts.MaxDecompressed, DefaultMaxDecompressed)
	c.pingInterval = withDefault(opts.PingInterval, DefaultPingInterval)
	c.pingWait = withDefault(opts.PingWait, DefaultPingWait)
	c.writeTimeout = withDefault(opts.WriteTimeout, 30*time.Second)
	c.pingFrames = true
	node.PingFrames = true
	c.node = node

	timeout := withDefault(opts.Timeout, DefaultTimeout)
	tr := &http.Transport{
		Proxy:               opts.Proxy,
		DialContext:         (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout: timeout,
		ForceAttemptHTTP2:   false,
	}
	if tlsConf != nil {
		cfg := tlsConf.Clone()
		if orig := cfg.VerifyConnection; orig != nil && cfg.ServerName == "" {
			// pki without cluster_server_name: the CP's certificate must name
			// the host of the CP address, as Kong's DP checks. Go sends no
			// SNI for an IP address, so the state may lack the name.
			host := hostOf(u)
			cfg.VerifyConnection = func(cs tls.ConnectionState) error {
				if cs.ServerName == "" {
					cs.ServerName = host
				}
				return orig(cs)
			}
		}
		tr.TLSClientConfig = cfg
	}
	defer tr.CloseIdleConnections()
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ws, resp, err := websocket.Dial(hctx, u, &websocket.DialOptions{
		HTTPClient: &http.Client{Transport: tr},
		HTTPHeader: http.Header{PingFramesHeader: []string{"1"}},
		OnPingReceived: func(context.Context, []byte) bool {
			c.touch()
			return true
		},
		OnPongReceived: func(context.Context, []byte) { c.touch() },
	})
	if err != nil {
		if resp != nil && resp.Body != nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			if msg := strings.TrimSpace(string(body)); msg != "" {
				err = fmt.Errorf("%w: %s", err, msg)
			}
		}
		return nil, fmt.Errorf("connection to control plane %s broken: %w", u, err)
	}
	c.ws = ws
	if resp.Header.Get(PingFramesHeader) != "1" {
		_ = ws.CloseNow()
		return nil, fmt.Errorf("connection to control plane %s broken: the control plane does not support kongfb ping frames "+
			"(header %s); a kongfb data plane needs a kongfb control plane", u, PingFramesHeader)
	}
	ws.SetReadLimit(c.maxPayload)
	data, err := EncodeBasicInfo(info)
	if err != nil {
		_ = ws.CloseNow()
		return nil, err
	}
	wctx, wcancel := context.WithTimeout(ctx, c.writeTimeout)
	defer wcancel()
	if err := ws.Write(wctx, websocket.MessageBinary, data); err != nil {
		_ = ws.CloseNow()
		return nil, fmt.Errorf("unable to send basic information to control plane: %s err: %w", u, err)
	}
	c.touch()
	return c, nil
}

// ReadFrame returns the next binary frame from the CP (a still-compressed
// reconfigure payload), DP side. Text frames are logged and skipped, as
// Kong's DP does. It returns nil error only with a frame; when the CP closes
// the connection the error carries its close reason (io.EOF for a normal
// closure). Cancelling ctx closes the connection.
func (c *Conn) ReadFrame(ctx context.Context) ([]byte, error) {
	if c.side != dpSide {
		return nil, errors.New("ReadFrame is for the data plane side of a connection")
	}
	for {
		typ, data, err := c.ws.Read(ctx)
		if err != nil {
			if e := c.endRead(ctx, err, "control plane"); e != nil {
				return nil, e
			}
			return nil, io.EOF
		}
		c.touch()
		if typ == websocket.MessageBinary {
			return data, nil
		}
		c.log.Info("[clustering] received unknown (text) frame from control plane")
	}
}

// ReadReconfigure reads frames until a reconfigure message arrives and
// returns it decoded, DP side; frames of other types are skipped. A frame
// that does not decode returns an error but leaves the connection open: the
// caller logs it and keeps its running config.
func (c *Conn) ReadReconfigure(ctx context.Context) (*Reconfigure, error) {
	for {
		data, err := c.ReadFrame(ctx)
		if err != nil {
			return nil, err
		}
		m, err := DecodeReconfigure(data, c.maxPayload, c.maxDecompressed)
		if errors.Is(err, ErrNotReconfigure) {
			c.log.Debug("[clustering] ignoring frame from control plane", "error", err)
			continue
		}
		return m, err
	}
}

// SendPing reports hash to the CP ("" means EmptyHash), DP side: a ping frame
// with the hash, then a WebSocket ping whose pong proves the CP alive. The
// pong is not awaited here; Keepalive watches for it. As with every
// coder/websocket write, cancelling ctx while the frame is being written
// closes the connection.
func (c *Conn) SendPing(ctx context.Context, hash string) error {
	if c.side != dpSide {
		return errors.New("SendPing is for the data plane side of a connection")
	}
	frame, err := EncodePingFrame(hash)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, c.writeTimeout)
	defer cancel()
	if err := c.ws.Write(wctx, websocket.MessageText, frame); err != nil {
		return fmt.Errorf("unable to send ping frame to control plane: %w", err)
	}
	// One WebSocket ping in flight at a time; it ends with its pong, the
	// connection closing, or PingWait.
	if c.pingBusy.CompareAndSwap(false, true) {
		go func() {
			defer c.pingBusy.Store(false)
			pctx, cancel := context.WithTimeout(context.Background(), c.pingWait)
			defer cancel()
			_ = c.ws.Ping(pctx)
		}()
	}
	return nil
}

// PingNow makes Keepalive ping at once: call it after applying a config so
// the CP learns the new hash without waiting for the next interval.
func (c *Conn) PingNow() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// Keepalive pings the CP with hash() at once, then every PingInterval and on
// PingNow, DP side. It returns when ctx ends (ctx.Err()), when a ping cannot
// be sent, or when nothing came from the CP for PingWait ("did not receive
// pong frame from control plane within 45 seconds"); in the last two cases
// it closes the connection.
func (c *Conn) Keepalive(ctx context.Context, hash func() string) error {
	if c.side != dpSide {
		return errors.New("Keepalive is for the data plane side of a connection")
	}
	next := time.NewTimer(0)
	defer next.Stop()
	silence := time.NewTimer(c.pingWait)
	defer silence.Stop()
	// Cancelling a context during a coder/websocket write closes the
	// connection, even when the frame is already on the wire; stopping
	// Keepalive must not do that, so pings run under a context that ctx's
	// cancellation does not reach (each write is bounded by WriteTimeout).
	wctx := context.WithoutCancel(ctx)
	ping := func() error {
		if err := c.SendPing(wctx, hash()); err != nil {
			_ = c.ws.CloseNow()
			return err
		}
		next.Reset(c.pingInterval)
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-next.C:
			if err := ping(); err != nil {
				return err
			}
		case <-c.kick:
			// Restart the interval after an immediate ping, as Kong's write
			// loop does.
			if !next.Stop() {
				select {
				case <-next.C:
				default:
				}
			}
			if err := ping(); err != nil {
				return err
			}
		case <-silence.C:
			if since := c.sinceSeen(); since < c.pingWait {
				silence.Reset(c.pingWait - since)
				continue
			}
			_ = c.ws.CloseNow()
			return fmt.Errorf("did not receive pong frame from control plane within %s seconds", seconds(c.pingWait))
		}
	}
}
