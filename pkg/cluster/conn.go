package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
)

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
}

// link is what both ends of a sync connection keep: the DP's identity, the
// frame size limit, the liveness clock and the timeouts. Conn (CP side, on
// coder/websocket) and DPConn (DP side, on gorilla/websocket) embed it; only
// the WebSocket library differs between them.
type link struct {
	node NodeInfo
	log  *slog.Logger

	maxPayload   int64
	pingWait     time.Duration
	writeTimeout time.Duration

	// lastSeen is when the peer last proved alive (unix nanoseconds): any
	// ping from the DP on the CP side; any frame, ping or pong from the CP
	// on the DP side.
	lastSeen atomic.Int64
}

func (l *link) init(log *slog.Logger, maxPayload int64, pingWait, writeTimeout time.Duration) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l.log = log
	l.maxPayload = withDefault(maxPayload, DefaultMaxPayload)
	l.pingWait = withDefault(pingWait, DefaultPingWait)
	l.writeTimeout = withDefault(writeTimeout, 30*time.Second)
	l.touch()
}

func (l *link) touch() { l.lastSeen.Store(time.Now().UnixNano()) }

func (l *link) sinceSeen() time.Duration {
	return time.Since(time.Unix(0, l.lastSeen.Load()))
}

// silent reports, when t fired, whether the peer has been silent for
// PingWait; if it has not, t is re-armed for the rest of the wait.
func (l *link) silent(t *time.Timer) bool {
	if since := l.sinceSeen(); since < l.pingWait {
		t.Reset(l.pingWait - since)
		return false
	}
	return true
}

// Node is the DP's identity (CP side) or the identity this DP announced.
func (l *link) Node() NodeInfo { return l.node }

// MaxPayload is the frame size limit in force (cluster_max_payload).
func (l *link) MaxPayload() int64 { return l.maxPayload }

// closedBy is the result of a read ended by the peer's close frame: nil for
// a normal closure or going away, the peer's reason otherwise.
func closedBy(peer string, code int, reason string) error {
	if code == int(websocket.StatusNormalClosure) || code == int(websocket.StatusGoingAway) {
		return nil
	}
	if reason != "" {
		return fmt.Errorf("%s closed the connection: %s (close code %d)", peer, reason, code)
	}
	return fmt.Errorf("%s closed the connection (close code %d)", peer, code)
}

func frameTooBig(peer string, limit int64) error {
	return fmt.Errorf("frame from %s exceeds cluster_max_payload (%d bytes)", peer, limit)
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

// Conn is the CP's side of one DP's sync connection (Accept). Its methods are
// safe for concurrent use; ReadLoop is the only reader.
//
// It is built on github.com/coder/websocket, which hands each ping's payload
// to a callback: that is where a DP's config hash arrives.
type Conn struct {
	link
	ws *websocket.Conn

	// hashes is a latest-wins mailbox of reported hashes, filled by the
	// ping callback inside the reader.
	hashes   chan string
	failOnce sync.Once
	failErr  error
	failCh   chan struct{}
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

	c := &Conn{hashes: make(chan string, 1), failCh: make(chan struct{})}
	c.init(opts.Logger, opts.MaxPayload, opts.PingWait, opts.WriteTimeout)

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

func remoteIP(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

// onDPPing runs inside the WebSocket reader for each ping from the DP, whose
// payload is the DP's config hash (Kong's DP and kongfb's alike). Returning
// false withholds the pong: the read loop drops the DP.
func (c *Conn) onDPPing(payload []byte) bool {
	c.touch()
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
	// The reader is not bound to ctx: cancelling a read context makes
	// coder/websocket drop the connection at once, before a close frame can
	// tell the DP why. Every return path below closes the connection
	// instead, which ends this goroutine.
	readErr := make(chan error, 1)
	go func() {
		// Pings (and their hashes) are handled inside Read; it returns only
		// with an error or a data frame, and Kong's CP accepts no data frame
		// from a DP. Kong checks the length before the frame type.
		typ, data, err := c.ws.Read(context.Background())
		switch {
		case err != nil:
		case len(data) != 32:
			err = invalidPingHash(data)
		default:
			err = protocolErrorf("invalid websocket frame received from data plane: %s", frameType(typ))
		}
		readErr <- err
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
			if !c.silent(silence) {
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
			return c.endRead(ctx, err)
		case <-ctx.Done():
			c.closeAsyncCode(websocket.StatusGoingAway, "control plane is shutting down")
			return ctx.Err()
		}
	}
}

// endRead classifies the error that ended reading and closes the connection.
func (c *Conn) endRead(ctx context.Context, err error) error {
	const peer = "data plane"
	if ctx.Err() != nil {
		_ = c.ws.CloseNow()
		return ctx.Err()
	}
	var ce websocket.CloseError
	var pe *ProtocolError
	switch {
	case errors.As(err, &ce):
		return closedBy(peer, int(ce.Code), ce.Reason)
	case errors.Is(err, websocket.ErrMessageTooBig):
		_ = c.ws.CloseNow()
		return frameTooBig(peer, c.maxPayload)
	case errors.As(err, &pe):
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
