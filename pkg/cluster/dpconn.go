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
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	gorilla "github.com/gorilla/websocket"
)

// closeTimeout bounds each half of Close's handshake (sending the close frame,
// awaiting the CP's answer), as coder/websocket does on the CP side.
const closeTimeout = 5 * time.Second

// DialOptions tune Dial. Zero values select Kong's defaults.
type DialOptions struct {
	// MaxPayload is cluster_max_payload, the read limit for CP frames.
	MaxPayload int64
	// MaxDecompressed bounds a reconfigure payload after gunzip.
	MaxDecompressed int64
	// Timeout bounds connect, TLS and WebSocket handshakes together (5 s).
	Timeout time.Duration
	// PingInterval is how often Keepalive pings (30 s).
	PingInterval time.Duration
	// PingWait is the silence after which Keepalive drops the link (45 s).
	PingWait time.Duration
	// WriteTimeout bounds sending one frame (30 s).
	WriteTimeout time.Duration
	// Proxy, when set, picks an http:// proxy that the connection tunnels
	// through with CONNECT (cluster_use_proxy).
	Proxy  func(*http.Request) (*url.URL, error)
	Logger *slog.Logger
	// ReuseReadBuffer makes ReadFrame read every frame into one buffer the
	// connection keeps: a frame is then valid only until the next
	// ReadFrame. For readers that are done with a frame before they read
	// the next (many simulated DPs in one process, whose garbage would
	// otherwise set the pace of that process's GC); not for a DP that hands
	// frames to another goroutine.
	ReuseReadBuffer bool
}

// DPConn is a DP's sync connection to its CP (Dial). Its methods are safe
// for concurrent use, except that only one goroutine may read (ReadFrame or
// ReadReconfigure).
//
// It is built on github.com/gorilla/websocket because a DP reports its config
// hash as the payload of WebSocket pings, as Kong's DP does, and that library
// lets a client choose a ping's payload. A kongfb DP therefore syncs from a
// Kong CP and a kongfb CP alike.
type DPConn struct {
	link
	ws              *gorilla.Conn
	maxDecompressed int64
	pingInterval    time.Duration
	kick            chan struct{}

	// reading counts reads in progress and readEnded is closed when a read
	// fails: Close waits on it for the CP's answer to its close frame,
	// which only a running reader receives.
	reading   atomic.Int32
	readEnded chan struct{}
	endOnce   sync.Once

	// reuse and buf: DialOptions.ReuseReadBuffer (reader only).
	reuse bool
	buf   []byte
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

// Dial connects a DP to its CP (Kong's or kongfb's): it opens the WebSocket
// at /v1/outlet with tlsConf (ClientTLSConfig; nil only for ws:// in tests)
// and sends info as the first (basic_info) frame. Errors carry Kong's texts
// ("connection to control plane <url> broken: ...").
//
// After Dial, run one reader (ReadFrame or ReadReconfigure) and Keepalive
// concurrently: pongs and the CP's pings are only processed while a read is
// in progress.
func Dial(ctx context.Context, address string, tlsConf *tls.Config, node NodeInfo, info BasicInfo, opts *DialOptions) (*DPConn, error) {
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
	c := &DPConn{
		maxDecompressed: withDefault(opts.MaxDecompressed, DefaultMaxDecompressed),
		pingInterval:    withDefault(opts.PingInterval, DefaultPingInterval),
		kick:            make(chan struct{}, 1),
		readEnded:       make(chan struct{}),
		reuse:           opts.ReuseReadBuffer,
	}
	c.init(opts.Logger, opts.MaxPayload, opts.PingWait, opts.WriteTimeout)
	c.node = node

	timeout := withDefault(opts.Timeout, DefaultTimeout)
	d := &gorilla.Dialer{
		NetDialContext:   (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext,
		Proxy:            opts.Proxy,
		HandshakeTimeout: timeout,
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
		d.TLSClientConfig = cfg
	}
	ws, resp, err := d.DialContext(ctx, u, nil)
	if err != nil {
		if dl, ok := ctx.Deadline(); ok && ctx.Err() == nil && !time.Now().Before(dl) {
			// gorilla turns ctx's deadline into a socket deadline, which can
			// fire a moment before ctx's own timer: let the timer catch up so
			// that the caller sees ctx.Err() for a dial that ran out of time.
			<-ctx.Done()
		}
		if resp != nil {
			// A refusal before the upgrade: the CP's status and body (Kong's
			// texts from a kongfb or Kong CP) say why.
			err = fmt.Errorf("%w (HTTP %s)", err, resp.Status)
			if resp.Body != nil {
				body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
				if msg := strings.TrimSpace(string(body)); msg != "" {
					err = fmt.Errorf("%w: %s", err, msg)
				}
			}
		}
		return nil, fmt.Errorf("connection to control plane %s broken: %w", u, err)
	}
	c.ws = ws
	ws.SetReadLimit(c.maxPayload)
	ws.SetPongHandler(func(string) error {
		c.touch()
		return nil
	})
	ws.SetPingHandler(func(data string) error {
		c.touch()
		// A pong that cannot be written means a broken link, which the
		// read itself or Keepalive reports; as gorilla's default handler,
		// it is not this read's error.
		_ = ws.WriteControl(gorilla.PongMessage, []byte(data), time.Now().Add(c.writeTimeout))
		return nil
	})
	data, err := EncodeBasicInfo(info)
	if err != nil {
		_ = ws.Close()
		return nil, err
	}
	_ = ws.SetWriteDeadline(c.deadline(ctx))
	if err := ws.WriteMessage(gorilla.BinaryMessage, data); err != nil {
		_ = ws.Close()
		return nil, fmt.Errorf("unable to send basic information to control plane: %s err: %w", u, err)
	}
	c.touch()
	return c, nil
}

func hostOf(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return ""
	}
	return u.Hostname()
}

// deadline is when a write started now must end: WriteTimeout from now, or
// ctx's deadline if that is sooner.
func (c *DPConn) deadline(ctx context.Context) time.Time {
	d := time.Now().Add(c.writeTimeout)
	if cd, ok := ctx.Deadline(); ok && cd.Before(d) {
		return cd
	}
	return d
}

// CloseNow drops the connection without a close handshake.
func (c *DPConn) CloseNow() error { return c.ws.Close() }

// Close ends the connection with a normal closure: it sends the close frame
// and, while a read is in progress, waits for the CP's answer (the reader
// receives it, at most closeTimeout), then closes the socket. Without a
// running reader it closes right after sending.
func (c *DPConn) Close() error {
	err := c.ws.WriteControl(gorilla.CloseMessage, gorilla.FormatCloseMessage(gorilla.CloseNormalClosure, ""),
		time.Now().Add(closeTimeout))
	if err == nil && c.reading.Load() > 0 {
		t := time.NewTimer(closeTimeout)
		select {
		case <-c.readEnded:
		case <-t.C:
		}
		t.Stop()
	}
	_ = c.ws.Close()
	if err != nil {
		return fmt.Errorf("close connection to control plane: %w", err)
	}
	return nil
}

// ReadFrame returns the next binary frame from the CP (a still-compressed
// reconfigure payload), DP side. Text frames are logged and skipped, as
// Kong's DP does. It returns nil error only with a frame; when the CP closes
// the connection the error carries its close reason (io.EOF for a normal
// closure). Cancelling ctx closes the connection.
func (c *DPConn) ReadFrame(ctx context.Context) ([]byte, error) {
	c.reading.Add(1)
	defer c.reading.Add(-1)
	// gorilla's reads take no context: ending ctx closes the socket, which
	// ends the read.
	stop := context.AfterFunc(ctx, func() { _ = c.ws.Close() })
	defer stop()
	for {
		typ, data, err := c.readMessage()
		if err != nil {
			c.endOnce.Do(func() { close(c.readEnded) })
			if e := c.endRead(ctx, err); e != nil {
				return nil, e
			}
			return nil, io.EOF
		}
		c.touch()
		if typ == gorilla.BinaryMessage {
			return data, nil
		}
		c.log.Info("[clustering] received unknown (text) frame from control plane")
	}
}

// readMessage is gorilla's ReadMessage, reading into c.buf when the
// connection reuses its read buffer.
func (c *DPConn) readMessage() (int, []byte, error) {
	if !c.reuse {
		return c.ws.ReadMessage()
	}
	typ, r, err := c.ws.NextReader()
	if err != nil {
		return typ, nil, err
	}
	b := c.buf[:0]
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			c.buf = b
			return typ, b, nil
		}
		if err != nil {
			c.buf = b
			return typ, nil, err
		}
	}
}

// endRead classifies the error that ended reading and closes the socket
// (after a close frame, gorilla has already answered it).
func (c *DPConn) endRead(ctx context.Context, err error) error {
	const peer = "control plane"
	_ = c.ws.Close()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var ce *gorilla.CloseError
	switch {
	case errors.As(err, &ce):
		return closedBy(peer, ce.Code, ce.Text)
	case errors.Is(err, gorilla.ErrReadLimit):
		// gorilla has sent the CP a "message too big" close frame.
		return frameTooBig(peer, c.maxPayload)
	}
	return fmt.Errorf("error while receiving frame from %s: %w", peer, err)
}

// ReadReconfigure reads frames until a reconfigure message arrives and
// returns it decoded, DP side; frames of other types are skipped. A frame
// that does not decode returns an error but leaves the connection open: the
// caller logs it and keeps its running config.
func (c *DPConn) ReadReconfigure(ctx context.Context) (*Reconfigure, error) {
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

// SendPing reports hash to the CP as Kong's DP does: a WebSocket ping whose
// payload is the 32-hex hash ("" means EmptyHash, the 32 zeros Kong sends
// for a node without configuration). The CP's pong is not awaited here;
// Keepalive watches for it. The write ends by ctx's deadline or
// WriteTimeout, whichever is sooner.
func (c *DPConn) SendPing(ctx context.Context, hash string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("unable to send ping frame to control plane: %w", err)
	}
	return c.ping(hash, c.deadline(ctx))
}

func (c *DPConn) ping(hash string, deadline time.Time) error {
	if hash == "" {
		hash = EmptyHash
	}
	// Kong's CP drops a DP whose ping payload is not 32 bytes.
	if err := ValidateHash("config hash", hash); err != nil {
		return fmt.Errorf("unable to send ping frame to control plane: %w", err)
	}
	if err := c.ws.WriteControl(gorilla.PingMessage, []byte(hash), deadline); err != nil {
		return fmt.Errorf("unable to send ping frame to control plane: %w", err)
	}
	return nil
}

// PingNow makes Keepalive ping at once: call it after applying a config so
// the CP learns the new hash without waiting for the next interval.
func (c *DPConn) PingNow() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// Keepalive pings the CP with hash() at once, then every PingInterval and on
// PingNow, DP side. It returns when ctx ends (ctx.Err(), leaving the
// connection up), when a ping cannot be sent, or when nothing (no pong, ping
// or frame) came from the CP for PingWait ("did not receive pong frame from
// control plane within 45 seconds"); in the last two cases it closes the
// connection.
func (c *DPConn) Keepalive(ctx context.Context, hash func() string) error {
	next := time.NewTimer(0)
	defer next.Stop()
	silence := time.NewTimer(c.pingWait)
	defer silence.Stop()
	ping := func() error {
		if err := c.ping(hash(), time.Now().Add(c.writeTimeout)); err != nil {
			_ = c.ws.Close()
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
			next.Stop()
			if err := ping(); err != nil {
				return err
			}
		case <-silence.C:
			if !c.silent(silence) {
				continue
			}
			_ = c.ws.Close()
			return fmt.Errorf("did not receive pong frame from control plane within %s seconds", seconds(c.pingWait))
		}
	}
}
