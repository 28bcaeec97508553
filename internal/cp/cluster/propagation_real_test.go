package cluster

import (
	"net"
	"testing"

	wire "github.com/kongfb/kongfb/pkg/cluster"
)

// proxyDP is a light DP whose engine also serves proxy traffic on a
// loopback listener.
type proxyDP struct {
	*lightDP
	url string
}

func (p *proxyDP) ProxyURL() string { return p.url }

func startRealDP(tb testing.TB, addr string, tlsOpts wire.TLSOptions) realDP {
	d := startLightDP(tb, addr, tlsOpts, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	go func() { _ = d.engine.Serve(ln) }()
	return &proxyDP{lightDP: d, url: "http://" + ln.Addr().String()}
}
