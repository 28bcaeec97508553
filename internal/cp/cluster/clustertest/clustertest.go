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
	"log/slog"
	"os"
	"path/filepath"
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
	// fan-out rather than DP work.
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
	routes   atomic.Pointer[map[string]bool]
	hash     atomic.Value // string
	applied  atomic.Int64 // count
	took     atomic.Int64 // last decode+parse+apply, ns
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
		wire.NewBasicInfo(o.Plugins, nil, o.Labels), nil)
	if err != nil {
		cancel()
		tb.Fatalf("light DP: %v", err)
	}
	d := &LightDP{
		conn: conn, opts: o, cancel: cancel, done: make(chan struct{}),
		engine: proxy.New(proxy.Options{Logger: slog.New(slog.DiscardHandler)}),
	}
	d.hash.Store(wire.EmptyHash)
	empty := map[string]bool{}
	d.routes.Store(&empty)
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
	m, err := wire.DecodeReconfigure(data, 0, 0)
	if err != nil {
		return fmt.Errorf("light DP: decode: %w", err)
	}
	names := map[string]bool{}
	if d.opts.RecvOnly {
		scanNames(m.ConfigTable, names)
	} else {
		cfg, err := d.parser.ParseJSON(m.ConfigTable, "config_table")
		if err != nil {
			return fmt.Errorf("light DP: parse: %w", err)
		}
		if err := d.engine.Apply(cfg, m.ConfigHash); err != nil {
			return fmt.Errorf("light DP: apply: %w", err)
		}
		for _, r := range cfg.Routes {
			if r.Name != nil {
				names[*r.Name] = true
			}
		}
	}
	d.routes.Store(&names)
	d.hash.Store(m.ConfigHash)
	return nil
}

// scanNames collects every "name":"…" value of a JSON document: enough to
// tell which routes a config holds without parsing it.
func scanNames(doc []byte, into map[string]bool) {
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
		into[string(doc[:j])] = true
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
func (d *LightDP) HasRoute(name string) bool { return (*d.routes.Load())[name] }

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
