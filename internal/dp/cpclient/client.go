// Package cpclient is a data plane's hybrid-mode sync client (Kong's sync
// protocol v1, data_plane.lua): it connects to the control plane over mutual
// TLS, announces the node, receives `reconfigure` pushes, validates and
// applies them through dp.Node (source "cp"), writes every applied
// configuration to the disk cache and reports its hash to the CP on every
// ping and right after an apply. When the link breaks it reconnects after a
// random 5-10 s, while the node keeps serving what it has.
//
// As in Kong, frames that arrive while a configuration is being applied are
// not queued: only the newest is kept, so a burst of pushes costs at most one
// more apply. A configuration whose hash is the running one is not reloaded.
// A configuration that fails validation is rejected: the running one stays,
// every error is logged at ERROR and the rejection shows in /status
// (kongfb.last_error; a broken link shows in kongfb.cp_error). Kong's DP only tells the CP about it in Konnect mode
// (an `error` frame an OSS CP would refuse), and pkg/cluster has no such
// message, so the CP learns it only through the unchanged hash in the DP's
// pings.
package cpclient

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/kongfb/kongfb/internal/dp"
	"github.com/kongfb/kongfb/internal/dp/cache"
	"github.com/kongfb/kongfb/pkg/cluster"
	"github.com/kongfb/kongfb/pkg/config"
)

// Defaults (Kong 3.9 data_plane.lua and kongfb's start-up rule).
const (
	DefaultReconnectMin   = 5 * time.Second
	DefaultReconnectMax   = 10 * time.Second
	DefaultConnectTimeout = 3 * time.Second
)

// Options configure a Client.
type Options struct {
	// Address is cluster_control_plane: "host:port" or a ws(s):// URL.
	Address string
	// TLS is cluster.ClientTLSConfig's result; nil only for ws:// in tests.
	TLS *tls.Config
	// Node is the data plane the client feeds; required.
	Node *dp.Node
	// Cache receives every applied configuration; nil disables caching.
	Cache *cache.Cache

	// NodeID (a UUID, <prefix>/kong.id), Hostname and Version identify the
	// node to the CP. Version defaults to config.KongVersion.
	NodeID, Hostname, Version string
	// Plugins is basic_info.plugins: the plugins this node can run.
	Plugins []cluster.PluginInfo

	// MaxPayload is cluster_max_payload (16 MiB); MaxDecompressed bounds
	// a reconfigure payload after gunzip (256 MiB).
	MaxPayload, MaxDecompressed int64
	// PingInterval (30 s) and PingWait (45 s) are Kong's keepalive timings.
	PingInterval, PingWait time.Duration
	// Timeout bounds each connect/TLS/WebSocket handshake (5 s).
	Timeout time.Duration
	// ConnectTimeout bounds the first connection attempt (3 s): past it the
	// CP counts as unreachable for FirstAttempt (the cache is already
	// served; the fallback importer decides on it).
	ConnectTimeout time.Duration
	// ReconnectMin and ReconnectMax bound the random delay before each
	// reconnection (Kong: 5-10 s).
	ReconnectMin, ReconnectMax time.Duration
	// Proxy, when set, is an http:// proxy the connection tunnels through
	// with CONNECT (cluster_use_proxy, proxy_server).
	Proxy *url.URL

	Logger *slog.Logger
	// Now is the clock for last_sync_at; nil means time.Now.
	Now func() time.Time
}

// Client is one DP's link to its CP.
type Client struct {
	o   Options
	log *slog.Logger
	now func() time.Time

	firstOnce sync.Once
	firstDone chan struct{}
	firstErr  error

	// cachedHash is the hash of the configuration last written to (or read
	// from) the cache, so that an unchanged push after a failed cache write
	// retries the write. Only the cache writer (cacheLoop) touches it once
	// Run has started.
	cachedHash string
	// toCache is the newest applied configuration not yet written to the
	// cache (cacheLoop writes it).
	toCache cacheBox
	// cacheWrite is Options.Cache.Write (tests substitute a slow disk).
	cacheWrite func(doc []byte, m cache.Meta) error

	// parser reuses the validated entities of the previous push: a push
	// usually changes a few entities of many.
	parser config.Reparser

	// onFrame, when set (tests), is called after a frame is put in the
	// mailbox, with the number of frames received on this connection.
	onFrame func(n int)
}

// New checks opts and returns a client; Run starts it.
func New(opts Options) (*Client, error) {
	if opts.Node == nil {
		return nil, errors.New("cpclient: Options.Node is nil")
	}
	if strings.TrimSpace(opts.Address) == "" {
		return nil, errors.New("cluster_control_plane is empty")
	}
	if opts.Version == "" {
		opts.Version = config.KongVersion
	}
	if _, err := cluster.OutletURL(opts.Address, cluster.NodeInfo{ID: opts.NodeID}); err != nil {
		return nil, err
	}
	if opts.MaxPayload == 0 {
		opts.MaxPayload = cluster.DefaultMaxPayload
	}
	if err := cluster.ValidateMaxPayload(opts.MaxPayload); err != nil {
		return nil, err
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = DefaultConnectTimeout
	}
	if opts.ReconnectMin <= 0 {
		opts.ReconnectMin = DefaultReconnectMin
	}
	if opts.ReconnectMax <= 0 {
		opts.ReconnectMax = DefaultReconnectMax
	}
	if opts.ReconnectMax < opts.ReconnectMin {
		return nil, fmt.Errorf("reconnect delay: maximum %s is below minimum %s", opts.ReconnectMax, opts.ReconnectMin)
	}
	c := &Client{o: opts, log: opts.Logger, now: opts.Now, firstDone: make(chan struct{}),
		toCache: cacheBox{ready: make(chan struct{}, 1)}}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	if opts.Cache != nil {
		c.cacheWrite = opts.Cache.Write
	}
	return c, nil
}

// FirstAttempt is closed once the first connection attempt has succeeded,
// failed or run past ConnectTimeout; FirstAttemptErr then tells which.
func (c *Client) FirstAttempt() <-chan struct{} { return c.firstDone }

// FirstAttemptErr is nil when the first attempt connected (valid after
// FirstAttempt is closed).
func (c *Client) FirstAttemptErr() error {
	<-c.firstDone
	return c.firstErr
}

func (c *Client) settleFirst(err error) {
	c.firstOnce.Do(func() {
		c.firstErr = err
		close(c.firstDone)
	})
}

// SetCachedHash tells the client which configuration the cache holds (the
// one Restore served), so that the CP re-sending it does not rewrite it.
func (c *Client) SetCachedHash(h string) { c.cachedHash = h }

// Run keeps the node synced with the CP until ctx ends, reconnecting after
// every failure. It returns nil once ctx is cancelled, after the cache
// holds the last configuration applied.
func (c *Client) Run(ctx context.Context) error {
	stopCache, cacheDone := make(chan struct{}), make(chan struct{})
	go c.cacheLoop(stopCache, cacheDone)
	defer func() { close(stopCache); <-cacheDone }()
	first := true
	for {
		err := c.session(ctx, first)
		first = false
		if ctx.Err() != nil {
			c.log.Info("[clustering] sync client stopped")
			return nil
		}
		delay := c.reconnectDelay()
		if err == nil || errors.Is(err, io.EOF) {
			err = errors.New("control plane closed the connection")
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "connection to control plane") {
			msg = fmt.Sprintf("connection to control plane %s broken: %s", c.o.Address, msg)
		}
		c.log.Error(fmt.Sprintf("[clustering] %s (retrying after %s seconds)", msg,
			strings.TrimSuffix(fmt.Sprintf("%.3f", delay.Seconds()), ".000")))
		c.o.Node.SetLinkError(errors.New(msg))
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			c.log.Info("[clustering] sync client stopped")
			return nil
		case <-t.C:
		}
	}
}

// reconnectDelay draws the delay before the next attempt uniformly from
// [ReconnectMin, ReconnectMax], so that DPs cut off together do not return
// together.
func (c *Client) reconnectDelay() time.Duration {
	span := c.o.ReconnectMax - c.o.ReconnectMin
	if span <= 0 {
		return c.o.ReconnectMin
	}
	return c.o.ReconnectMin + rand.N(span+1)
}

// session runs one connection: dial, then read, apply and ping until the
// link fails or ctx ends.
func (c *Client) session(ctx context.Context, first bool) error {
	dctx, cancel := ctx, context.CancelFunc(func() {})
	if first {
		dctx, cancel = context.WithTimeout(ctx, c.o.ConnectTimeout)
	}
	conn, err := cluster.Dial(dctx, c.o.Address, c.o.TLS,
		cluster.NodeInfo{ID: c.o.NodeID, Hostname: c.o.Hostname, Version: c.o.Version},
		cluster.NewBasicInfo(c.o.Plugins, nil, nil),
		&cluster.DialOptions{
			MaxPayload: c.o.MaxPayload, MaxDecompressed: c.o.MaxDecompressed,
			Timeout: c.o.Timeout, PingInterval: c.o.PingInterval, PingWait: c.o.PingWait,
			Proxy:  proxyFunc(c.o.Proxy),
			Logger: c.log,
		})
	timedOut := first && dctx.Err() != nil && ctx.Err() == nil
	cancel()
	if err != nil {
		if timedOut {
			err = fmt.Errorf("%w (no answer within the first-connect timeout of %s)", err, c.o.ConnectTimeout)
		}
		if first {
			c.settleFirst(err)
		}
		return err
	}
	if first {
		c.settleFirst(nil)
	}
	c.log.Info("[clustering] connected to control plane", "control_plane", c.o.Address,
		"node_id", c.o.NodeID, "running_hash", hashOrEmpty(c.o.Node.State().Hash))
	c.o.Node.SetCPConnected(true)
	defer c.o.Node.SetCPConnected(false)

	// The reader is not bound to ctx: cancelling a read closes the
	// connection at once, without the close frame that tells the CP this
	// DP is going away. Stopping closes the connection instead.
	sctx, scancel := context.WithCancel(context.Background())
	defer scancel()
	box := newMailbox()
	var wg sync.WaitGroup
	readErr := make(chan error, 1)
	kaErr := make(chan error, 1)
	wg.Add(3)
	go func() {
		defer wg.Done()
		n := 0
		for {
			data, err := conn.ReadFrame(sctx)
			if err != nil {
				readErr <- err
				return
			}
			n++
			if box.put(data) {
				c.log.Debug("[clustering] a newer configuration arrived before the previous one was applied; the older one is skipped")
			}
			if c.onFrame != nil {
				c.onFrame(n)
			}
		}
	}()
	go func() {
		defer wg.Done()
		kaErr <- conn.Keepalive(sctx, func() string { return c.o.Node.State().Hash })
	}()
	go func() {
		defer wg.Done()
		for {
			select {
			case <-sctx.Done():
				return
			case <-box.ready:
			}
			if data := box.take(); data != nil {
				c.handle(conn, data)
			}
		}
	}()

	var end error
	select {
	case <-ctx.Done():
		// Graceful stop: a normal close frame, bounded so that a CP that
		// does not answer cannot hold up the shutdown.
		closed := make(chan struct{})
		go func() { _ = conn.Close(); close(closed) }()
		select {
		case <-closed:
		case <-time.After(2 * time.Second):
			_ = conn.CloseNow()
		}
	case end = <-readErr:
		_ = conn.CloseNow()
	case end = <-kaErr:
		_ = conn.CloseNow()
	}
	scancel()
	// The applier finishes an apply in progress before it sees the
	// cancellation: an apply is never cut in half.
	wg.Wait()
	// Keepalive closes the connection when the CP goes silent, so the
	// reader then fails with "use of closed network connection": report the
	// silence, which is the cause.
	if end != nil && errors.Is(end, net.ErrClosed) {
		select {
		case kerr := <-kaErr:
			if kerr != nil && !errors.Is(kerr, context.Canceled) {
				end = kerr
			}
		default:
		}
	}
	return end
}

// handle decodes, validates and applies one reconfigure frame.
func (c *Client) handle(conn *cluster.DPConn, data []byte) {
	m, err := cluster.DecodeReconfigure(data, conn.MaxPayload(), c.o.MaxDecompressed)
	if errors.Is(err, cluster.ErrNotReconfigure) {
		c.log.Debug("[clustering] ignoring a frame from the control plane", "error", err)
		return
	}
	if err != nil {
		c.reject("", err)
		return
	}
	hash := m.ConfigHash
	if hash != "" && hash == c.o.Node.State().Hash {
		c.log.Info("[clustering] same config received from control plane, no need to reload", "hash", hash)
		c.o.Node.ConfirmSource(hash, dp.SourceCP, c.o.Address)
		c.o.Node.MarkSynced(c.now())
		c.writeCache(m.ConfigTable, hash)
		return
	}
	start := time.Now()
	cfg, err := c.parser.ParseJSON(m.ConfigTable, "")
	if err != nil {
		nameInput(err, "control plane "+c.o.Address)
		c.reject(hash, err)
		return
	}
	changed, err := c.o.Node.Apply(&dp.Snapshot{Config: cfg, Hash: hash, Source: dp.SourceCP, Origin: c.o.Address})
	if err != nil {
		c.reject(hash, err)
		return
	}
	st := c.o.Node.State()
	c.o.Node.MarkSynced(c.now())
	if changed {
		// Report the new hash at once, as Kong's DP does after an apply.
		conn.PingNow()
		c.log.Info("[clustering] configuration from control plane applied", "hash", st.Hash,
			"services", st.Services, "routes", st.Routes, "took", time.Since(start).Round(time.Millisecond))
	}
	c.writeCache(m.ConfigTable, st.Hash)
}

// reject logs a configuration the node will not serve, with every error, and
// reports it in /status. The running configuration is untouched.
func (c *Client) reject(hash string, err error) {
	dp.LogConfigError(c.log, "[clustering] unable to update running config: bad config received from control plane", err,
		"control_plane", c.o.Address, "config_hash", hash, "running_hash", hashOrEmpty(c.o.Node.State().Hash))
	if hash != "" {
		err = fmt.Errorf("bad config received from control plane (hash %s): %w", hash, err)
	} else {
		err = fmt.Errorf("bad config received from control plane: %w", err)
	}
	c.o.Node.ReportError(err)
}

// writeCache hands an applied configuration to the cache writer. The
// apply path never waits for the disk (compression, fsync, rename): the
// next push is applied while the previous one is being written. Only the
// newest configuration waits: the cache holds the last good configuration,
// and one superseded before its turn need not reach the disk.
func (c *Client) writeCache(doc []byte, hash string) {
	if c.cacheWrite == nil {
		return
	}
	c.toCache.put(doc, hash)
}

// cacheLoop writes what writeCache hands over until stop is closed, and
// then whatever is still pending, so that a stopped client leaves the
// cache with the last configuration it applied.
func (c *Client) cacheLoop(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	for {
		select {
		case <-c.toCache.ready:
			if doc, hash, ok := c.toCache.take(); ok {
				c.persist(doc, hash)
			}
		case <-stop:
			if doc, hash, ok := c.toCache.take(); ok {
				c.persist(doc, hash)
			}
			return
		}
	}
}

// cacheBox holds the newest configuration not yet written to the cache.
type cacheBox struct {
	mu    sync.Mutex
	doc   []byte
	hash  string
	ready chan struct{}
}

func (b *cacheBox) put(doc []byte, hash string) {
	b.mu.Lock()
	b.doc, b.hash = doc, hash
	b.mu.Unlock()
	select {
	case b.ready <- struct{}{}:
	default:
	}
}

func (b *cacheBox) take() ([]byte, string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	doc, hash := b.doc, b.hash
	b.doc, b.hash = nil, ""
	return doc, hash, doc != nil
}

// persist writes one configuration to the cache (cacheLoop only).
func (c *Client) persist(doc []byte, hash string) {
	if hash == c.cachedHash {
		return
	}
	start := time.Now()
	if err := c.cacheWrite(doc, cache.Meta{ConfigHash: hash, Source: dp.SourceCP, Origin: c.o.Address}); err != nil {
		c.log.Error("[clustering] cannot write the config cache; the node keeps serving but a restart without the control plane would not find this configuration",
			"path", c.o.Cache.Path(), "error", err)
		c.o.Node.ReportError(err)
		return
	}
	c.cachedHash = hash
	c.log.Debug("[clustering] config cache written", "path", c.o.Cache.Path(), "hash", hash,
		"took", time.Since(start).Round(time.Millisecond))
}

// nameInput puts where a configuration came from into config's errors,
// which otherwise say "<input>".
func nameInput(err error, name string) {
	var ve *config.ValidationError
	if errors.As(err, &ve) && ve.File == "" {
		ve.File = name
	}
	var se *config.SyntaxError
	if errors.As(err, &se) && se.File == "" {
		se.File = name
	}
}

// proxyFunc is http.ProxyURL for a set proxy, nil (no proxy) otherwise.
func proxyFunc(u *url.URL) func(*http.Request) (*url.URL, error) {
	if u == nil {
		return nil
	}
	return http.ProxyURL(u)
}

func hashOrEmpty(h string) string {
	if h == "" {
		return cluster.EmptyHash
	}
	return h
}

// mailbox holds the newest frame not yet applied (Kong keeps one: frames
// superseded while an apply runs are dropped).
type mailbox struct {
	mu    sync.Mutex
	data  []byte
	ready chan struct{}
}

func newMailbox() *mailbox { return &mailbox{ready: make(chan struct{}, 1)} }

// put stores data, replacing a frame not yet taken; it reports whether one
// was replaced.
func (m *mailbox) put(data []byte) (replaced bool) {
	m.mu.Lock()
	replaced = m.data != nil
	m.data = data
	m.mu.Unlock()
	select {
	case m.ready <- struct{}{}:
	default:
	}
	return replaced
}

func (m *mailbox) take() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.data
	m.data = nil
	return d
}
