package cluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	gorilla "github.com/gorilla/websocket"
)

// kongCP is a stand-in for Kong's CP: a bare WebSocket server (no kongfb
// code on its side) that records the DP's request and the exact payload of
// every WebSocket ping, answers pings with pongs as lua-resty-websocket does,
// and runs serve once the DP's basic_info frame has arrived.
type kongCP struct {
	addr  string
	reqs  chan *http.Request
	pings chan []byte
	basic chan []byte
}

func startKongCP(t *testing.T, serve func(ctx context.Context, c *websocket.Conn)) *kongCP {
	t.Helper()
	k := &kongCP{reqs: make(chan *http.Request, 4), pings: make(chan []byte, 64), basic: make(chan []byte, 4)}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k.reqs <- r.Clone(context.Background())
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{
			OnPingReceived: func(_ context.Context, p []byte) bool {
				select {
				case k.pings <- append([]byte(nil), p...):
				default:
				}
				return true
			},
		})
		if err != nil {
			return
		}
		defer c.CloseNow()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		typ, data, err := c.Read(ctx)
		if err != nil || typ != websocket.MessageBinary {
			return
		}
		k.basic <- data
		if serve != nil {
			serve(ctx, c)
		}
		// Kong's CP keeps reading: pings are answered inside Read.
		for {
			if _, _, err := c.Read(ctx); err != nil {
				return
			}
		}
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.Start()
	t.Cleanup(srv.Close)
	k.addr = "ws://" + srv.Listener.Addr().String()
	return k
}

func (k *kongCP) nextPing(t *testing.T) []byte {
	t.Helper()
	select {
	case p := <-k.pings:
		return p
	case <-time.After(10 * time.Second):
		t.Fatal("no ping reached the Kong CP stand-in")
		return nil
	}
}

// TestKongControlPlane: a kongfb DP syncs from a CP that knows nothing of
// kongfb. The DP sends Kong's query and basic_info, reads the reconfigure
// frame, and its pings carry exactly the 32-hex hash: 32 zeros before the
// first apply, the new hash at once after PingNow.
func TestKongControlPlane(t *testing.T) {
	payload, err := EncodeReconfigure(&Reconfigure{ConfigTable: []byte(`{"_format_version":"3.0"}`), ConfigHash: hashA}, 0)
	if err != nil {
		t.Fatal(err)
	}
	kcp := startKongCP(t, func(ctx context.Context, c *websocket.Conn) {
		_ = c.Write(ctx, websocket.MessageBinary, payload)
	})
	node := testNode()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dp, err := Dial(ctx, kcp.addr, nil, node, testBasicInfo(), &DialOptions{PingInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dp.CloseNow() })

	r := <-kcp.reqs
	if r.URL.Path != OutletPath || r.URL.Query().Get("node_id") != node.ID ||
		r.URL.Query().Get("node_hostname") != node.Hostname || r.URL.Query().Get("node_version") != node.Version {
		t.Errorf("request %s", r.URL)
	}
	for name := range r.Header {
		if strings.HasPrefix(strings.ToLower(name), "kongfb") {
			t.Errorf("the DP sent kongfb header %s to a Kong CP", name)
		}
	}
	bi, err := DecodeBasicInfo(<-kcp.basic)
	if err != nil || len(bi.Plugins) != 2 {
		t.Fatalf("basic_info %+v, %v", bi, err)
	}

	var current atomic.Value
	current.Store("")
	kaCtx, stopKA := context.WithCancel(context.Background())
	defer stopKA()
	kaDone := make(chan error, 1)
	go func() { kaDone <- dp.Keepalive(kaCtx, func() string { return current.Load().(string) }) }()
	if p := kcp.nextPing(t); string(p) != EmptyHash {
		t.Fatalf("first ping payload %q, want %q", p, EmptyHash)
	}

	m, err := dp.ReadReconfigure(context.Background())
	if err != nil || m.ConfigHash != hashA {
		t.Fatalf("reconfigure %+v, %v", m, err)
	}
	readDone := make(chan error, 1)
	go func() { _, err := dp.ReadFrame(context.Background()); readDone <- err }()
	current.Store(m.ConfigHash)
	dp.PingNow() // the interval is an hour: only PingNow can send this one
	if p := kcp.nextPing(t); string(p) != hashA {
		t.Fatalf("ping after apply carried %q, want %q", p, hashA)
	}

	stopKA()
	if err := <-kaDone; !errors.Is(err, context.Canceled) {
		t.Errorf("Keepalive: %v", err)
	}
	if err := dp.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	if err := <-readDone; !errors.Is(err, io.EOF) {
		t.Errorf("read after a normal close: %v", err)
	}
}

// TestDPLiveness: pongs, pings and frames from the CP each count as a sign of
// life, and the DP answers the CP's pings with pongs.
func TestDPLiveness(t *testing.T) {
	cpPing := make(chan struct{})
	cpPinged := make(chan error, 1)
	cpText := make(chan struct{})
	kcp := startKongCP(t, func(ctx context.Context, c *websocket.Conn) {
		// Ping needs a reader for its pong; CloseRead is one.
		rctx := c.CloseRead(ctx)
		<-cpPing
		cpPinged <- c.Ping(rctx)
		<-cpText
		_ = c.Write(rctx, websocket.MessageText, []byte("hello"))
		<-rctx.Done()
	})
	dp, err := dialDP(t, kcp.addr, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = dp.ReadFrame(context.Background()) }()
	const fresh = time.Hour // lastSeen is reset to 1970 below
	stale := func() { dp.lastSeen.Store(0) }

	stale()
	if err := dp.SendPing(context.Background(), hashA); err != nil {
		t.Fatal(err)
	}
	if p := kcp.nextPing(t); string(p) != hashA {
		t.Fatalf("ping payload %q", p)
	}
	waitFor(t, "the CP's pong to count", func() bool { return dp.sinceSeen() < fresh })

	stale()
	close(cpPing)
	if err := <-cpPinged; err != nil {
		t.Fatalf("the DP did not answer the CP's ping: %v", err)
	}
	waitFor(t, "the CP's ping to count", func() bool { return dp.sinceSeen() < fresh })

	stale()
	close(cpText)
	waitFor(t, "the CP's frame to count", func() bool { return dp.sinceSeen() < fresh })
}

func TestSendPingRefusesBadHash(t *testing.T) {
	kcp := startKongCP(t, nil)
	dp, err := dialDP(t, kcp.addr, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = dp.SendPing(context.Background(), "nothex")
	if err == nil || !strings.HasPrefix(err.Error(), "unable to send ping frame to control plane: ") {
		t.Fatalf("SendPing: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := dp.SendPing(ctx, hashA); !errors.Is(err, context.Canceled) {
		t.Fatalf("SendPing with an ended context: %v", err)
	}
	select {
	case p := <-kcp.pings:
		t.Fatalf("a refused ping reached the CP: %q", p)
	default:
	}
}

// TestDPReadLimit: a frame above the DP's cluster_max_payload ends the read
// with the limit in the message (the 16 MiB default is TestOversizedFrame).
func TestDPReadLimit(t *testing.T) {
	done := make(chan error, 1)
	cp := startCP(t, nil, nil, func(c *Conn, _ NodeInfo) {
		big := make([]byte, 2048)
		big[0], big[1] = 0x1f, 0x8b
		if err := c.SendReconfigure(context.Background(), big); err != nil {
			done <- err
			return
		}
		done <- c.ReadLoop(context.Background(), nil)
	})
	dp, err := dialDP(t, cp.wsAddr(), nil, &DialOptions{MaxPayload: 1024})
	if err != nil {
		t.Fatal(err)
	}
	if dp.MaxPayload() != 1024 {
		t.Errorf("MaxPayload %d", dp.MaxPayload())
	}
	_, err = dp.ReadFrame(context.Background())
	if err == nil || err.Error() != "frame from control plane exceeds cluster_max_payload (1024 bytes)" {
		t.Fatalf("DP read: %v", err)
	}
	// The DP closed the link, so the CP's read loop ends too.
	if err := <-done; err == nil {
		t.Error("CP ReadLoop ended without error")
	}
}

// TestReadFrameContext: ending the read's context ends the read (gorilla's
// reads take no context) and closes the connection.
func TestReadFrameContext(t *testing.T) {
	kcp := startKongCP(t, nil)
	dp, err := dialDP(t, kcp.addr, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := dp.ReadFrame(ctx); done <- err }()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("ReadFrame: %v", err)
	}
	if err := dp.SendPing(context.Background(), hashA); err == nil {
		t.Error("ping sent on a connection closed by a cancelled read")
	}
}

// TestDialThroughProxy: with a proxy (cluster_use_proxy) the DP tunnels its
// mTLS connection through HTTP CONNECT.
func TestDialThroughProxy(t *testing.T) {
	certPEM, keyPEM := sharedPair(t)
	serverTLS, err := ServerTLSConfig(TLSOptions{Cert: certPEM, Key: keyPEM})
	if err != nil {
		t.Fatal(err)
	}
	clientTLS, err := ClientTLSConfig(TLSOptions{Cert: certPEM, Key: keyPEM})
	if err != nil {
		t.Fatal(err)
	}
	cp := startCP(t, serverTLS, nil, nil)
	proxyAddr, targets := startConnectProxy(t)
	proxyURL := &url.URL{Scheme: "http", Host: proxyAddr}
	if _, err := dialDP(t, cp.addr, clientTLS, &DialOptions{Proxy: http.ProxyURL(proxyURL)}); err != nil {
		t.Fatal(err)
	}
	if a := cp.next(t); a.err != nil {
		t.Fatal(a.err)
	}
	if got := <-targets; got != cp.addr {
		t.Errorf("proxy asked for %q, want %q", got, cp.addr)
	}
}

// startConnectProxy runs a minimal HTTP CONNECT proxy on 127.0.0.1:0 and
// reports each tunnel's target.
func startConnectProxy(t *testing.T) (string, <-chan string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	targets := make(chan string, 4)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	track := func(c net.Conn) {
		mu.Lock()
		open = append(open, c)
		mu.Unlock()
	}
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			track(c)
			wg.Add(1)
			go func() {
				defer wg.Done()
				br := bufio.NewReader(c)
				req, err := http.ReadRequest(br)
				if err != nil || req.Method != http.MethodConnect {
					c.Close()
					return
				}
				targets <- req.Host
				up, err := net.Dial("tcp", req.Host)
				if err != nil {
					fmt.Fprint(c, "HTTP/1.1 502 Bad Gateway\r\n\r\n")
					c.Close()
					return
				}
				track(up)
				fmt.Fprint(c, "HTTP/1.1 200 Connection established\r\n\r\n")
				go func() { _, _ = io.Copy(up, br); up.Close() }()
				_, _ = io.Copy(c, up)
				c.Close()
			}()
		}
	}()
	return ln.Addr().String(), targets
}

// TestCPRefusesDataFramesFromDP: a kongfb CP treats a kongfb DP as Kong's CP
// treats any DP: a data frame (such as the text "ping frame" of earlier
// kongfb versions) drops it with Kong's message, which the DP receives as
// the close reason.
func TestCPRefusesDataFramesFromDP(t *testing.T) {
	for _, tc := range []struct {
		name, frame, want string
	}{
		{"old kongfb ping frame", `{"type":"ping","config_hash":"nope"}`,
			`received a ping frame from the data plane with an invalid hash: '{"type":"ping","config_hash":"nope"}'`},
		{"32-byte text frame", hashA, "invalid websocket frame received from data plane: text"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			done := make(chan error, 1)
			cp := startCP(t, nil, nil, func(c *Conn, _ NodeInfo) { done <- c.ReadLoop(context.Background(), nil) })
			dp, err := dialDP(t, cp.wsAddr(), nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := dp.ws.WriteMessage(gorilla.TextMessage, []byte(tc.frame)); err != nil {
				t.Fatal(err)
			}
			err = <-done
			var pe *ProtocolError
			if !errors.As(err, &pe) || err.Error() != tc.want {
				t.Fatalf("ReadLoop: %v", err)
			}
			_, err = dp.ReadFrame(context.Background())
			if err == nil || !strings.Contains(err.Error(), "control plane closed the connection: "+tc.want) {
				t.Fatalf("DP read: %v", err)
			}
		})
	}
}
