// Package clustertest gives tests and benchmarks lightweight data planes:
// the hybrid sync protocol (pkg/cluster) plus what a DP does with each
// reconfigure message (gunzip, JSON decode, config parse and validation, and
// a proxy engine's Apply, which compiles the router and balancers), without
// a proxy listener, a status API or a cache. Many of them fit in one
// process, which is how the propagation benchmarks reach N = 50.
package clustertest

import (
	"bytes"
	"context"
	"fmt"
	"hash/maphash"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/kongfb/kongfb/internal/proxy"
	wire "github.com/kongfb/kongfb/pkg/cluster"
	"github.com/kongfb/kongfb/pkg/config"
)

// Options tune a LightDP.
type Options struct {
	// ID, Version, Plugins and Labels identify the DP (defaults: a random
	// UUID, config.KongVersion, the bundled plugins at that version, none).
	ID      string
	Version string
	Plugins []wire.PluginInfo
	Labels  map[string]string
	// OnApplied is called after every configuration the DP applied, with
	// the time its frame was read off the connection.
	OnApplied func(d *LightDP, receivedAt time.Time)
	// RecvOnly DPs only gunzip each frame and find the route names in it by
	// a byte scan, without parsing or applying: they measure the CP's
	// fan-out rather than DP work. They reuse their buffers (frame and
	// decompressed JSON): a real DP runs on its own heap, and the garbage of
	// dozens of simulated ones would set the pace of the GC of the process
	// they share with the CP and the real DPs under test.
	RecvOnly bool
	// FrameOnly DPs do not even gunzip: a frame read off the connection
	// counts as applied (HasRoute stays false). Benchmarks use them to
	// separate the CP's fan-out from the clients' own work.
	FrameOnly bool
}

// LightDP is one lightweight data plane connected to a CP.
type LightDP struct {
	conn     *wire.DPConn
	engine   *proxy.Engine
	parser   config.Reparser // as a real DP parses pushes
	opts     Options
	routes   atomic.Pointer[nameSet]
	decoder  wire.ReconfigureDecoder // RecvOnly
	hash     atomic.Value            // string
	applied  atomic.Int64            // count
	took     atomic.Int64            // last decode+parse+apply, ns
	errMu    sync.Mutex
	err      error
	cancel   context.CancelFunc
	done     chan struct{}
	closeOne sync.Once
}

// BundledPlugins is what a kongfb DP announces: every bundled plugin at
// config.KongVersion.
func BundledPlugins() []wire.PluginInfo {
	var ps []wire.PluginInfo
	for _, p := range config.BundledPlugins() {
		ps = append(ps, wire.PluginInfo{Name: p, Version: config.KongVersion})
	}
	return ps
}

// SharedCert writes a fresh shared-mode cluster certificate and key into a
// temporary directory and returns the TLS options naming them.
func SharedCert(tb testing.TB) wire.TLSOptions {
	tb.Helper()
	c, k, err := wire.GenerateSharedCert(1)
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	certFile, keyFile := filepath.Join(dir, "cluster.crt"), filepath.Join(dir, "cluster.key")
	if err := os.WriteFile(certFile, c, 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(keyFile, k, 0o600); err != nil {
		tb.Fatal(err)
	}
	return wire.TLSOptions{Mode: wire.TLSModeShared, Cert: certFile, Key: keyFile}
}

// Start connects a LightDP to the CP at addr; it is closed when the test
// ends.
func Start(tb testing.TB, addr string, tlsOpts wire.TLSOptions, o Options) *LightDP {
	tb.Helper()
	if o.ID == "" {
		o.ID = uuid.NewString()
	}
	if o.Version == "" {
		o.Version = config.KongVersion
	}
	if o.Plugins == nil {
		o.Plugins = BundledPlugins()
	}
	tlsOpts.Logger = nil
	tc, err := wire.ClientTLSConfig(tlsOpts)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	conn, err := wire.Dial(ctx, addr, tc, wire.NodeInfo{ID: o.ID, Hostname: "light-" + o.ID[:8], Version: o.Version},
		wire.NewBasicInfo(o.Plugins, nil, o.Labels), &wire.DialOptions{ReuseReadBuffer: true})
	if err != nil {
		cancel()
		tb.Fatalf("light DP: %v", err)
	}
	d := &LightDP{
		conn: conn, opts: o, cancel: cancel, done: make(chan struct{}),
		engine: proxy.New(proxy.Options{Logger: slog.New(slog.DiscardHandler)}),
	}
	d.hash.Store(wire.EmptyHash)
	d.routes.Store(&nameSet{})
	go func() { _ = conn.Keepalive(ctx, d.Hash) }()
	go d.read(ctx)
	tb.Cleanup(d.Close)
	return d
}

func (d *LightDP) read(ctx context.Context) {
	defer close(d.done)
	for {
		data, err := d.conn.ReadFrame(ctx)
		if err != nil {
			if ctx.Err() == nil {
				d.setErr(err)
			}
			return
		}
		recv := time.Now()
		if d.opts.FrameOnly {
			d.applied.Add(1)
			if d.opts.OnApplied != nil {
				d.opts.OnApplied(d, recv)
			}
			continue
		}
		if err := d.apply(data); err != nil {
			d.setErr(err)
			_ = d.conn.CloseNow()
			return
		}
		d.took.Store(int64(time.Since(recv)))
		d.applied.Add(1)
		d.conn.PingNow()
		if d.opts.OnApplied != nil {
			d.opts.OnApplied(d, recv)
		}
	}
}

func (d *LightDP) apply(data []byte) error {
	names := nameSet{hashes: make([]uint64, 0, len(d.routes.Load().hashes))}
	if d.opts.RecvOnly {
		m, err := d.decoder.Decode(data)
		if err != nil {
			return fmt.Errorf("light DP: decode: %w", err)
		}
		names.scan(m.ConfigTable)
		d.hash.Store(m.ConfigHash)
	} else {
		m, err := wire.DecodeReconfigure(data, 0, 0)
		if err != nil {
			return fmt.Errorf("light DP: decode: %w", err)
		}
		cfg, err := d.parser.ParseJSON(m.ConfigTable, "config_table")
		if err != nil {
			return fmt.Errorf("light DP: parse: %w", err)
		}
		if err := d.engine.Apply(cfg, m.ConfigHash); err != nil {
			return fmt.Errorf("light DP: apply: %w", err)
		}
		for _, r := range cfg.Routes {
			if r.Name != nil {
				names.add([]byte(*r.Name))
			}
		}
		d.hash.Store(m.ConfigHash)
	}
	names.seal()
	d.routes.Store(&names)
	return nil
}

// nameSet holds the names in a configuration as sorted 64-bit hashes: no
// string per name is kept, so a simulated DP's per-push garbage is one small
// slice. (A collision would make HasRoute true for a name that is not
// there; at 2^-64 per pair, benchmarks do not meet one.)
type nameSet struct{ hashes []uint64 }

var nameSeed = maphash.MakeSeed()

func (s *nameSet) add(name []byte) { s.hashes = append(s.hashes, maphash.Bytes(nameSeed, name)) }

func (s *nameSet) seal() { slices.Sort(s.hashes) }

func (s *nameSet) has(name string) bool {
	_, ok := slices.BinarySearch(s.hashes, maphash.String(nameSeed, name))
	return ok
}

// scan adds every "name":"…" value of a JSON document: enough to tell
// which routes a config holds without parsing it.
func (s *nameSet) scan(doc []byte) {
	key := []byte(`"name":"`)
	for {
		i := bytes.Index(doc, key)
		if i < 0 {
			return
		}
		doc = doc[i+len(key):]
		j := bytes.IndexByte(doc, '"')
		if j < 0 {
			return
		}
		s.add(doc[:j])
		doc = doc[j:]
	}
}

func (d *LightDP) setErr(err error) {
	d.errMu.Lock()
	defer d.errMu.Unlock()
	if d.err == nil {
		d.err = err
	}
}

// Err is why the DP stopped (nil while it runs or after Close).
func (d *LightDP) Err() error {
	d.errMu.Lock()
	defer d.errMu.Unlock()
	return d.err
}

// Done is closed when the DP's connection ended.
func (d *LightDP) Done() <-chan struct{} { return d.done }

// ID is the DP's node id.
func (d *LightDP) ID() string { return d.opts.ID }

// Hash is the hash of the applied configuration (EmptyHash before any).
func (d *LightDP) Hash() string { return d.hash.Load().(string) }

// HasRoute reports whether the applied configuration holds a route of
// that name.
func (d *LightDP) HasRoute(name string) bool { return d.routes.Load().has(name) }

// Applied counts the configurations applied.
func (d *LightDP) Applied() int64 { return d.applied.Load() }

// ApplyTook is how long the last decode+parse+apply took.
func (d *LightDP) ApplyTook() time.Duration { return time.Duration(d.took.Load()) }

// Engine is the DP's proxy engine (no listener unless the caller serves
// one with Engine().Serve).
func (d *LightDP) Engine() *proxy.Engine { return d.engine }

// Close disconnects the DP and stops its engine.
func (d *LightDP) Close() {
	d.closeOne.Do(func() {
		d.cancel()
		_ = d.conn.CloseNow()
		<-d.done
		_ = d.engine.Shutdown(context.Background())
	})
}
