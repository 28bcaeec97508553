package cluster

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
)

const testKongVersion = "3.9.1"

type accepted struct {
	conn *Conn
	node NodeInfo
	err  error
}

// cpServer is a CP cluster listener on 127.0.0.1:0 whose handler runs Accept
// and then serve (if any) on the accepted connection.
type cpServer struct {
	srv      *httptest.Server
	addr     string
	accepted chan accepted
}

func startCP(t *testing.T, tlsConf *tls.Config, opts *AcceptOptions, serve func(*Conn, NodeInfo)) *cpServer {
	t.Helper()
	cp := &cpServer{accepted: make(chan accepted, 16)}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != OutletPath {
			http.NotFound(w, r)
			return
		}
		c, node, err := Accept(w, r, opts)
		cp.accepted <- accepted{c, node, err}
		if err == nil && serve != nil {
			serve(c, node)
		}
	})
	cp.srv = httptest.NewUnstartedServer(h)
	cp.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	if tlsConf != nil {
		cp.srv.TLS = tlsConf
		cp.srv.StartTLS()
	} else {
		cp.srv.Start()
	}
	cp.addr = cp.srv.Listener.Addr().String()
	t.Cleanup(cp.srv.Close)
	return cp
}

func (cp *cpServer) wsAddr() string { return "ws://" + cp.addr }

func (cp *cpServer) next(t *testing.T) accepted {
	t.Helper()
	select {
	case a := <-cp.accepted:
		return a
	case <-time.After(10 * time.Second):
		t.Fatal("no connection accepted")
		return accepted{}
	}
}

func testNode() NodeInfo {
	return NodeInfo{ID: uuid.NewString(), Hostname: "dp-1.test", Version: testKongVersion}
}

func testBasicInfo() BasicInfo {
	return NewBasicInfo([]PluginInfo{{"rate-limiting", testKongVersion}, {"acl", testKongVersion}}, nil,
		map[string]string{"region": "eu"})
}

func dialDP(t *testing.T, addr string, tlsConf *tls.Config, opts *DialOptions) (*DPConn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, addr, tlsConf, testNode(), testBasicInfo(), opts)
	if err == nil {
		t.Cleanup(func() { _ = c.CloseNow() })
	}
	return c, err
}

// TestSharedModeSync runs a whole v1 session over mTLS in shared mode:
// handshake, basic_info, reconfigure, pings reporting the hash at once, after
// an apply and on the interval, and a normal close.
func TestSharedModeSync(t *testing.T) {
	certPEM, keyPEM := sharedPair(t)
	serverTLS, err := ServerTLSConfig(TLSOptions{Cert: certPEM, Key: keyPEM})
	if err != nil {
		t.Fatal(err)
	}
	// The DP loads the same pair as a file path and as base64, as Kong allows.
	clientTLS, err := ClientTLSConfig(TLSOptions{
		Cert: writeTemp(t, "cluster.crt", []byte(certPEM)),
		Key:  base64.StdEncoding.EncodeToString([]byte(keyPEM)),
	})
	if err != nil {
		t.Fatal(err)
	}

	table := json.RawMessage(`{"_format_version":"3.0","_transform":false,"services":[]}`)
	payload, err := EncodeReconfigure(&Reconfigure{ConfigTable: table, ConfigHash: hashA,
		Hashes: map[string]string{"config": hashA}}, DefaultMaxPayload)
	if err != nil {
		t.Fatal(err)
	}
	pings := make(chan string, 64)
	loopDone := make(chan error, 1)
	cp := startCP(t, serverTLS, nil, func(c *Conn, _ NodeInfo) {
		if err := c.SendReconfigure(context.Background(), payload); err != nil {
			loopDone <- err
			return
		}
		loopDone <- c.ReadLoop(context.Background(), func(h string) { pings <- h })
	})

	dp, err := dialDP(t, cp.addr, clientTLS, &DialOptions{PingInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	a := cp.next(t)
	if a.err != nil {
		t.Fatal(a.err)
	}
	n := a.node
	if n.ID != dp.Node().ID || n.Hostname != "dp-1.test" || n.Version != testKongVersion || n.IP != "127.0.0.1" {
		t.Errorf("node %+v", n)
	}
	if len(n.BasicInfo.Plugins) != 2 || n.BasicInfo.Plugins[0].Name != "acl" || n.BasicInfo.Labels["region"] != "eu" {
		t.Errorf("basic_info %+v", n.BasicInfo)
	}
	leaf, _ := ParseCertsPEM([]byte(certPEM))
	if !n.HasCert || n.CertDetails.ExpiryTimestamp != leaf[0].NotAfter.Unix() {
		t.Errorf("cert details %+v, want expiry %d", n.CertDetails, leaf[0].NotAfter.Unix())
	}

	var current atomic.Value
	current.Store("")
	kaCtx, stopKA := context.WithCancel(context.Background())
	defer stopKA()
	kaDone := make(chan error, 1)
	go func() { kaDone <- dp.Keepalive(kaCtx, func() string { return current.Load().(string) }) }()

	// First ping at once, with the empty hash.
	if h := recvHash(t, pings); h != EmptyHash {
		t.Fatalf("first ping hash %q", h)
	}
	m, err := dp.ReadReconfigure(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if m.ConfigHash != hashA || string(m.ConfigTable) != string(table) {
		t.Fatalf("reconfigure %+v", m)
	}
	// "Apply", then report at once.
	current.Store(m.ConfigHash)
	dp.PingNow()
	readDone := make(chan error, 1)
	go func() { _, err := dp.ReadFrame(context.Background()); readDone <- err }()
	if h := recvHash(t, pings); h != hashA {
		t.Fatalf("ping after apply carried %q", h)
	}

	stopKA()
	if err := <-kaDone; !errors.Is(err, context.Canceled) {
		t.Errorf("Keepalive returned %v", err)
	}
	// Stopping Keepalive leaves the connection up.
	select {
	case err := <-readDone:
		t.Fatalf("read ended when Keepalive stopped: %v", err)
	default:
	}
	if err := dp.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	if err := <-loopDone; err != nil {
		t.Errorf("CP ReadLoop after a normal close: %v", err)
	}
	if err := <-readDone; !errors.Is(err, io.EOF) && err != nil && !strings.Contains(err.Error(), "closed") {
		t.Errorf("DP read after close: %v", err)
	}
}

func recvHash(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case h := <-ch:
		return h
	case <-time.After(10 * time.Second):
		t.Fatal("no ping reached the control plane")
		return ""
	}
}

func TestKeepaliveInterval(t *testing.T) {
	var count atomic.Int32
	cp := startCP(t, nil, nil, func(c *Conn, _ NodeInfo) {
		_ = c.ReadLoop(context.Background(), func(string) { count.Add(1) })
	})
	dp, err := dialDP(t, cp.wsAddr(), nil, &DialOptions{PingInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = dp.ReadFrame(context.Background()) }()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = dp.Keepalive(ctx, func() string { return hashB }) }()
	waitFor(t, "5 pings", func() bool { return count.Load() >= 5 })
}

// TestSharedModeRefusesOtherCert: a DP presenting a certificate other than
// the cluster certificate is refused with Kong's digest message.
func TestSharedModeRefusesOtherCert(t *testing.T) {
	certPEM, keyPEM := sharedPair(t)
	var logs logBuffer
	serverTLS, err := ServerTLSConfig(TLSOptions{Cert: certPEM, Key: keyPEM, Logger: logs.logger()})
	if err != nil {
		t.Fatal(err)
	}
	cp := startCP(t, serverTLS, nil, nil)

	otherCert, otherKey := sharedPair(t)
	pair, err := tls.X509KeyPair([]byte(otherCert), []byte(otherKey))
	if err != nil {
		t.Fatal(err)
	}
	// This DP trusts any CP, so only the CP's check is exercised.
	_, err = dialDP(t, cp.addr, &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{pair}}, nil)
	if err == nil {
		t.Fatal("DP with another certificate connected")
	}
	mustContain(t, err.Error(), "connection to control plane wss://"+cp.addr+"/v1/outlet?node_id=")
	mustContain(t, err.Error(), "bad certificate")
	waitFor(t, "refusal log", func() bool { return strings.Contains(logs.String(), ErrCertDigest.Error()) })
	mustContain(t, logs.String(), "data plane presented incorrect client certificate during handshake (digest does not match the control plane certificate)")
	mustContain(t, logs.String(), "remote_addr=127.0.0.1:")
	if len(cp.accepted) != 0 {
		t.Error("Accept ran for a refused DP")
	}
}

func TestSharedModeRefusesNoClientCert(t *testing.T) {
	certPEM, keyPEM := sharedPair(t)
	var logs logBuffer
	serverTLS, err := ServerTLSConfig(TLSOptions{Cert: certPEM, Key: keyPEM, Logger: logs.logger()})
	if err != nil {
		t.Fatal(err)
	}
	cp := startCP(t, serverTLS, nil, nil)
	if _, err := dialDP(t, cp.addr, &tls.Config{InsecureSkipVerify: true}, nil); err == nil {
		t.Fatal("DP without certificate connected")
	}
	waitFor(t, "refusal log", func() bool {
		return strings.Contains(logs.String(), "data plane failed to present client certificate during handshake")
	})
}

// TestSharedModeDPRefusesForeignCP: the DP trusts only the cluster
// certificate, so a CP with another one is refused by the DP.
func TestSharedModeDPRefusesForeignCP(t *testing.T) {
	certPEM, keyPEM := sharedPair(t)
	serverTLS, err := ServerTLSConfig(TLSOptions{Cert: certPEM, Key: keyPEM})
	if err != nil {
		t.Fatal(err)
	}
	cp := startCP(t, serverTLS, nil, nil)
	otherCert, otherKey := sharedPair(t)
	clientTLS, err := ClientTLSConfig(TLSOptions{Cert: otherCert, Key: otherKey})
	if err != nil {
		t.Fatal(err)
	}
	_, err = dialDP(t, cp.addr, clientTLS, nil)
	if err == nil {
		t.Fatal("DP accepted a foreign CP")
	}
	mustContain(t, err.Error(), "control plane certificate is not the cluster certificate")
}

func TestPKIMode(t *testing.T) {
	ca := newTestCA(t, "cluster-ca", nil)
	cpCert, cpKey := ca.issue(t, leafOpts{cn: "cp.test", usage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		dns: []string{"cp.test"}, ips: []net.IP{net.IPv4(127, 0, 0, 1)}})
	dpCert, dpKey := ca.issue(t, leafOpts{cn: "dp-1", usage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	var logs logBuffer
	serverTLS, err := ServerTLSConfig(TLSOptions{Mode: TLSModePKI, Cert: string(cpCert), Key: string(cpKey),
		CA: writeTemp(t, "ca.crt", ca.pem), Logger: logs.logger()})
	if err != nil {
		t.Fatal(err)
	}
	cp := startCP(t, serverTLS, nil, nil)

	dial := func(cert, key []byte, serverName string, caPEM []byte) error {
		t.Helper()
		conf, err := ClientTLSConfig(TLSOptions{Mode: TLSModePKI, Cert: string(cert), Key: string(key),
			CA: string(caPEM), ServerName: serverName})
		if err != nil {
			t.Fatal(err)
		}
		c, err := dialDP(t, cp.addr, conf, nil)
		if err == nil {
			a := cp.next(t)
			if a.err != nil {
				t.Fatalf("Accept: %v", a.err)
			}
			_ = c.CloseNow()
		}
		return err
	}

	t.Run("ok with cluster_server_name", func(t *testing.T) {
		if err := dial(dpCert, dpKey, "cp.test", ca.pem); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("ok with the CP host as name", func(t *testing.T) {
		if err := dial(dpCert, dpKey, "", ca.pem); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("DP refuses a CP without the name", func(t *testing.T) {
		err := dial(dpCert, dpKey, "other.test", ca.pem)
		if err == nil {
			t.Fatal("connected")
		}
		mustContain(t, err.Error(), "control plane certificate verification failed")
		mustContain(t, err.Error(), "other.test")
	})
	t.Run("DP refuses a CP from another CA", func(t *testing.T) {
		other := newTestCA(t, "other-ca", nil)
		err := dial(dpCert, dpKey, "cp.test", other.pem)
		if err == nil {
			t.Fatal("connected")
		}
		mustContain(t, err.Error(), "certificate signed by unknown authority")
	})
	t.Run("CP refuses a DP from a foreign CA", func(t *testing.T) {
		foreign := newTestCA(t, "foreign-ca", nil)
		fCert, fKey := foreign.issue(t, leafOpts{cn: "dp-x", usage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		if err := dial(fCert, fKey, "cp.test", ca.pem); err == nil {
			t.Fatal("connected")
		}
		waitFor(t, "refusal log", func() bool {
			return strings.Contains(logs.String(), "data plane presented a client certificate that failed verification during handshake") &&
				strings.Contains(logs.String(), "unknown authority")
		})
	})
	t.Run("CP refuses a DP certificate without client auth", func(t *testing.T) {
		sCert, sKey := ca.issue(t, leafOpts{cn: "dp-s", usage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		if err := dial(sCert, sKey, "cp.test", ca.pem); err == nil {
			t.Fatal("connected")
		}
		waitFor(t, "refusal log", func() bool { return strings.Contains(logs.String(), "incompatible key usage") })
	})
	t.Run("verify depth 4", func(t *testing.T) {
		parent := ca
		for i := range 5 {
			parent = newTestCA(t, fmt.Sprintf("intermediate-%d", i+1), parent)
			cert, key := parent.issue(t, leafOpts{cn: "dp-deep", usage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
			err := dial(cert, key, "cp.test", ca.pem)
			if i+1 <= MaxVerifyDepth && err != nil {
				t.Fatalf("%d intermediates refused: %v", i+1, err)
			}
			if i+1 > MaxVerifyDepth && err == nil {
				t.Fatalf("%d intermediates accepted", i+1)
			}
		}
		waitFor(t, "depth log", func() bool { return strings.Contains(logs.String(), "longer than the verify depth 4") })
	})
}

// TestPKICNOnlyCertificate: OpenSSL (Kong's DP) matches the CN when a
// certificate has no DNS SAN; so does the DP here.
func TestPKICNOnlyCertificate(t *testing.T) {
	ca := newTestCA(t, "cluster-ca", nil)
	cpCert, cpKey := ca.issue(t, leafOpts{cn: "cp.test", usage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	dpCert, dpKey := ca.issue(t, leafOpts{cn: "dp-1", usage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	serverTLS, err := ServerTLSConfig(TLSOptions{Mode: TLSModePKI, Cert: string(cpCert), Key: string(cpKey), CA: string(ca.pem)})
	if err != nil {
		t.Fatal(err)
	}
	cp := startCP(t, serverTLS, nil, nil)
	for name, want := range map[string]bool{"cp.test": true, "CP.TEST": true, "cp.other": false} {
		conf, err := ClientTLSConfig(TLSOptions{Mode: TLSModePKI, Cert: string(dpCert), Key: string(dpKey), CA: string(ca.pem), ServerName: name})
		if err != nil {
			t.Fatal(err)
		}
		c, err := dialDP(t, cp.addr, conf, nil)
		if (err == nil) != want {
			t.Errorf("server name %q: err = %v, want ok=%v", name, err, want)
		}
		if err == nil {
			_ = c.CloseNow()
			cp.next(t)
		}
	}
}

func TestAcceptQueryChecks(t *testing.T) {
	cases := []struct{ query, want string }{
		{"node_hostname=h&node_version=3.9.1", "data plane didn't pass the id"},
		{"node_id=" + uuid.NewString() + "&node_hostname=h", "data plane didn't pass the version"},
		{"node_id=abc&node_version=3.9.1", "data plane passed an invalid id: 'abc' (want a UUID)"},
	}
	for _, tc := range cases {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, OutletPath+"?"+tc.query, nil)
		c, _, err := Accept(rec, req, nil)
		if c != nil || err == nil || err.Error() != tc.want {
			t.Errorf("%s: err = %v, want %q", tc.query, err, tc.want)
		}
		var he *HandshakeError
		if !errors.As(err, &he) || he.Status != http.StatusBadRequest {
			t.Errorf("%s: %T %v", tc.query, err, err)
		}
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), tc.want) {
			t.Errorf("%s: response %d %q", tc.query, rec.Code, rec.Body.String())
		}
	}
}

// TestAcceptBasicInfoErrors drives Accept with a raw WebSocket client sending
// a bad first frame; the errors are Kong's texts and the DP gets them as the
// close reason.
func TestAcceptBasicInfoErrors(t *testing.T) {
	cp := startCP(t, nil, &AcceptOptions{BasicInfoTimeout: 200 * time.Millisecond}, nil)
	url := cp.wsAddr() + OutletPath + "?node_id=" + uuid.NewString() + "&node_hostname=h&node_version=3.9.1"
	cases := []struct {
		name string
		send func(ctx context.Context, c *websocket.Conn) error
		want string
	}{
		{"nothing", nil, "failed to receive websocket basic info frame: timeout"},
		{"text frame", func(ctx context.Context, c *websocket.Conn) error {
			return c.Write(ctx, websocket.MessageText, []byte(`{"type":"basic_info","plugins":[]}`))
		}, "failed to receive websocket basic info data: expected a binary frame, got text"},
		{"bad json", sendBinary(`{"type":`), "failed to decode websocket basic info data: "},
		{"wrong type", sendBinary(`{"type":"ping","plugins":[]}`), "invalid basic info data type: ping"},
		{"no type", sendBinary(`{"plugins":[]}`), "invalid basic info data type: unknown"},
		{"no plugins", sendBinary(`{"type":"basic_info"}`), "missing plugins in basic info data"},
		{"closed", func(ctx context.Context, c *websocket.Conn) error {
			return c.Close(websocket.StatusNormalClosure, "")
		}, "failed to receive websocket basic info frame: "},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, _, err := websocket.Dial(ctx, url, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseNow()
			readErr := make(chan error, 1)
			if tc.send != nil {
				if err := tc.send(ctx, c); err != nil {
					t.Fatal(err)
				}
			}
			go func() { _, _, err := c.Read(ctx); readErr <- err }()
			a := cp.next(t)
			if a.err == nil || !strings.HasPrefix(a.err.Error(), tc.want) {
				t.Fatalf("Accept error %v, want %q", a.err, tc.want)
			}
			if strings.HasPrefix(tc.want, "failed to receive websocket basic info frame") {
				return
			}
			err = <-readErr
			var ce websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != websocket.StatusPolicyViolation || !strings.HasPrefix(ce.Reason, tc.want) {
				t.Errorf("DP saw %v, want a close with reason %q", err, tc.want)
			}
		})
	}
}

func sendBinary(s string) func(context.Context, *websocket.Conn) error {
	return func(ctx context.Context, c *websocket.Conn) error {
		return c.Write(ctx, websocket.MessageBinary, []byte(s))
	}
}

// rawKongDP speaks to the CP like Kong's DP (lua-resty-websocket): a plain
// upgrade and WebSocket pings carrying the 32-byte hash, written byte by byte
// so that the test does not depend on a Go WebSocket library. Test-only
// framing.
type rawKongDP struct {
	conn net.Conn
	br   *bufio.Reader
	resp *http.Response
}

func dialRawKongDP(t *testing.T, addr string) *rawKongDP {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	keyRaw := make([]byte, 16)
	_, _ = rand.Read(keyRaw)
	fmt.Fprintf(conn, "GET %s?node_id=%s&node_hostname=kong-dp&node_version=3.9.1 HTTP/1.1\r\nHost: %s\r\n"+
		"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
		OutletPath, uuid.NewString(), addr, base64.StdEncoding.EncodeToString(keyRaw))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade status %d", resp.StatusCode)
	}
	return &rawKongDP{conn: conn, br: br, resp: resp}
}

// frame writes one masked client frame (payload < 126 bytes).
func (k *rawKongDP) frame(t *testing.T, opcode byte, payload []byte) {
	t.Helper()
	if len(payload) >= 126 {
		t.Fatal("test frames are short")
	}
	mask := []byte{0x11, 0x22, 0x33, 0x44}
	out := []byte{0x80 | opcode, 0x80 | byte(len(payload))}
	out = append(out, mask...)
	for i, b := range payload {
		out = append(out, b^mask[i%4])
	}
	if _, err := k.conn.Write(out); err != nil {
		t.Fatal(err)
	}
}

// readFrame reads one server frame (unmasked, payload < 126 bytes).
func (k *rawKongDP) readFrame(t *testing.T) (byte, []byte) {
	t.Helper()
	var hdr [2]byte
	if _, err := io.ReadFull(k.br, hdr[:]); err != nil {
		t.Fatal(err)
	}
	n := int(hdr[1] & 0x7f)
	if n >= 126 {
		t.Fatalf("unexpected long frame")
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(k.br, p); err != nil {
		t.Fatal(err)
	}
	return hdr[0] & 0x0f, p
}

const (
	opBinary = 0x2
	opPing   = 0x9
	opPong   = 0xA
	opClose  = 0x8
)

func TestKongDataPlanePings(t *testing.T) {
	type result struct {
		hashes []string
		err    error
	}
	results := make(chan result, 4)
	// seen reports each hash as the CP delivers it: the CP keeps only the
	// newest undelivered hash, so the test awaits one before sending the next.
	seen := make(chan string, 16)
	cp := startCP(t, nil, nil, func(c *Conn, _ NodeInfo) {
		var mu sync.Mutex
		var hs []string
		err := c.ReadLoop(context.Background(), func(h string) {
			mu.Lock()
			hs = append(hs, h)
			mu.Unlock()
			select {
			case seen <- h:
			default: // later subtests do not read it
			}
		})
		mu.Lock()
		defer mu.Unlock()
		results <- result{hs, err}
	})

	t.Run("hash in the ping payload", func(t *testing.T) {
		k := dialRawKongDP(t, cp.addr)
		k.frame(t, opBinary, []byte(`{"type":"basic_info","plugins":{}}`))
		a := cp.next(t)
		if a.err != nil || a.node.Hostname != "kong-dp" {
			t.Fatalf("accept %+v", a)
		}
		k.frame(t, opPing, []byte(hashA))
		if op, p := k.readFrame(t); op != opPong {
			t.Fatalf("got opcode %x %q, want a pong", op, p)
		}
		select {
		case h := <-seen:
			if h != hashA {
				t.Fatalf("first delivered hash %q, want %q", h, hashA)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the CP never delivered the first ping's hash")
		}
		k.frame(t, opPing, []byte(EmptyHash))
		if op, _ := k.readFrame(t); op != opPong {
			t.Fatalf("got opcode %x, want a pong", op)
		}
		k.frame(t, opClose, []byte{0x03, 0xe8}) // 1000 normal closure
		r := <-results
		if r.err != nil {
			t.Fatalf("ReadLoop: %v", r.err)
		}
		if strings.Join(r.hashes, ",") != hashA+","+EmptyHash {
			t.Errorf("hashes %v", r.hashes)
		}
	})
	t.Run("invalid hash", func(t *testing.T) {
		k := dialRawKongDP(t, cp.addr)
		k.frame(t, opBinary, []byte(`{"type":"basic_info","plugins":[]}`))
		cp.next(t)
		k.frame(t, opPing, []byte("0123"))
		r := <-results
		if r.err == nil || r.err.Error() != "received a ping frame from the data plane with an invalid hash: '0123'" {
			t.Fatalf("ReadLoop: %v", r.err)
		}
		if len(r.hashes) != 0 {
			t.Errorf("hashes %v", r.hashes)
		}
	})
	t.Run("data frame", func(t *testing.T) {
		k := dialRawKongDP(t, cp.addr)
		k.frame(t, opBinary, []byte(`{"type":"basic_info","plugins":[]}`))
		cp.next(t)
		k.frame(t, opBinary, []byte(hashB))
		r := <-results
		if r.err == nil || r.err.Error() != "invalid websocket frame received from data plane: binary" {
			t.Fatalf("ReadLoop: %v", r.err)
		}
	})
}

func TestDeadLinkCP(t *testing.T) {
	done := make(chan error, 1)
	cp := startCP(t, nil, &AcceptOptions{PingWait: 300 * time.Millisecond}, func(c *Conn, _ NodeInfo) {
		done <- c.ReadLoop(context.Background(), nil)
	})
	dp, err := dialDP(t, cp.wsAddr(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = dp.ReadFrame(context.Background()) }()
	// The DP never pings.
	select {
	case err := <-done:
		if err == nil || err.Error() != "did not receive ping frame from data plane within 0.3 seconds" {
			t.Fatalf("ReadLoop: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ReadLoop did not give up")
	}
}

func TestDeadLinkDP(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	// The CP accepts but never reads, so it never answers pings.
	cp := startCP(t, nil, nil, func(*Conn, NodeInfo) { <-release })
	dp, err := dialDP(t, cp.wsAddr(), nil, &DialOptions{PingInterval: 50 * time.Millisecond, PingWait: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = dp.ReadFrame(context.Background()) }()
	start := time.Now()
	err = dp.Keepalive(context.Background(), func() string { return "" })
	if err == nil || err.Error() != "did not receive pong frame from control plane within 0.3 seconds" {
		t.Fatalf("Keepalive: %v", err)
	}
	if time.Since(start) < 300*time.Millisecond {
		t.Errorf("gave up after %v", time.Since(start))
	}
}

// TestCloseReasonReachesDP: the CP refuses an incompatible DP and the DP sees
// Kong's reason.
func TestCloseReasonReachesDP(t *testing.T) {
	cp := startCP(t, nil, nil, func(c *Conn, n NodeInfo) {
		if _, err := CheckCompatibility("3.8.0", n.Version); err != nil {
			_ = c.CloseWithReason(err.Error())
		}
	})
	dp, err := dialDP(t, cp.wsAddr(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = dp.ReadFrame(context.Background())
	if err == nil {
		t.Fatal("no error")
	}
	mustContain(t, err.Error(), "control plane closed the connection: data plane version 3.9.1 is incompatible with older control plane version 3.8.0")
}

// TestOversizedFrame: a frame above cluster_max_payload is refused by the DP
// (read limit) and never sent by a CP with the same limit.
func TestOversizedFrame(t *testing.T) {
	if testing.Short() {
		t.Skip("sends a 16 MiB frame; run without -short")
	}
	big := make([]byte, DefaultMaxPayload+1)
	big[0], big[1] = 0x1f, 0x8b
	sent := make(chan error, 1)
	cp := startCP(t, nil, &AcceptOptions{MaxPayload: 4 * DefaultMaxPayload}, func(c *Conn, _ NodeInfo) {
		sent <- c.SendReconfigure(context.Background(), big)
		_ = c.ReadLoop(context.Background(), nil)
	})
	dp, err := dialDP(t, cp.wsAddr(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = dp.ReadFrame(context.Background())
	if err == nil || err.Error() != "frame from control plane exceeds cluster_max_payload (16777216 bytes)" {
		t.Fatalf("DP read: %v", err)
	}
	<-sent

	// A CP at the default limit refuses to send it at all.
	refused := make(chan error, 1)
	cp2 := startCP(t, nil, nil, func(c *Conn, _ NodeInfo) { refused <- c.SendReconfigure(context.Background(), big) })
	if _, err := dialDP(t, cp2.wsAddr(), nil, nil); err != nil {
		t.Fatal(err)
	}
	err = <-refused
	var tooBig *PayloadTooLargeError
	if !errors.As(err, &tooBig) || tooBig.Limit != DefaultMaxPayload {
		t.Fatalf("SendReconfigure: %v", err)
	}
}

func TestReadReconfigureSkipsOtherTypes(t *testing.T) {
	good, err := EncodeReconfigure(&Reconfigure{ConfigTable: json.RawMessage(`{}`), ConfigHash: hashB}, 0)
	if err != nil {
		t.Fatal(err)
	}
	cp := startCP(t, nil, nil, func(c *Conn, _ NodeInfo) {
		ctx := context.Background()
		_ = c.ws.Write(ctx, websocket.MessageText, []byte("hello"))              // ignored, like Kong
		_ = c.SendReconfigure(ctx, gz(t, []byte(`{"type":"error","error":{}}`))) // other type: skipped
		_ = c.SendReconfigure(ctx, []byte("not gzip"))                           // decode error: reported
		_ = c.SendReconfigure(ctx, good)                                         // delivered
		_ = c.ReadLoop(ctx, nil)
	})
	var logs logBuffer
	dp, err := dialDP(t, cp.wsAddr(), nil, &DialOptions{Logger: logs.logger()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = dp.ReadReconfigure(context.Background())
	if err == nil || err.Error() != "reconfigure frame is not gzip-compressed" {
		t.Fatalf("first: %v", err)
	}
	m, err := dp.ReadReconfigure(context.Background())
	if err != nil || m.ConfigHash != hashB {
		t.Fatalf("second: %+v %v", m, err)
	}
	mustContain(t, logs.String(), "received unknown (text) frame from control plane")
}

func TestOutletURL(t *testing.T) {
	n := NodeInfo{ID: "7f8a1f5e-0000-4000-8000-000000000001", Hostname: "dp 1", Version: "3.9.1"}
	q := "?node_id=7f8a1f5e-0000-4000-8000-000000000001&node_hostname=dp+1&node_version=3.9.1"
	for in, want := range map[string]string{
		"cp.example:8005":            "wss://cp.example:8005/v1/outlet" + q,
		"wss://cp.example:8005":      "wss://cp.example:8005/v1/outlet" + q,
		"https://cp.example:8005/":   "wss://cp.example:8005/v1/outlet" + q,
		"ws://127.0.0.1:9/v1/outlet": "ws://127.0.0.1:9/v1/outlet" + q,
	} {
		got, err := OutletURL(in, n)
		if err != nil || got != want {
			t.Errorf("OutletURL(%q) = %q, %v\nwant %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "ftp://x", "wss://"} {
		if _, err := OutletURL(bad, n); err == nil {
			t.Errorf("OutletURL(%q) succeeded", bad)
		}
	}
}

func TestDialErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := Dial(ctx, "127.0.0.1:1", nil, NodeInfo{ID: "x", Version: "3.9.1"}, BasicInfo{}, nil); err == nil ||
		!strings.Contains(err.Error(), "is not a UUID") {
		t.Errorf("bad id: %v", err)
	}
	if _, err := Dial(ctx, "127.0.0.1:1", nil, NodeInfo{ID: uuid.NewString()}, BasicInfo{}, nil); err == nil ||
		err.Error() != "data plane version is empty" {
		t.Errorf("no version: %v", err)
	}
	// A port with nothing listening: Kong's "connection ... broken" text.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = Dial(ctx, addr, nil, testNode(), testBasicInfo(), nil)
	if err == nil || !strings.HasPrefix(err.Error(), "connection to control plane wss://"+addr+"/v1/outlet?node_id=") ||
		!strings.Contains(err.Error(), " broken: ") {
		t.Errorf("refused: %v", err)
	}
	// The CP's 400 body reaches the DP's error.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "data plane didn't pass the version", http.StatusBadRequest)
	}))
	defer srv.Close()
	_, err = Dial(ctx, "ws://"+srv.Listener.Addr().String(), nil, testNode(), testBasicInfo(), nil)
	if err == nil || !strings.Contains(err.Error(), "400") || !strings.Contains(err.Error(), "data plane didn't pass the version") {
		t.Errorf("400: %v", err)
	}
}

// TestReadLoopShutdown: cancelling the CP's context ends ReadLoop and the DP
// sees a going-away close, which ReadFrame reports as io.EOF.
func TestReadLoopShutdown(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	cp := startCP(t, nil, nil, func(c *Conn, _ NodeInfo) { done <- c.ReadLoop(ctx, nil) })
	dp, err := dialDP(t, cp.wsAddr(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cp.next(t)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("ReadLoop: %v", err)
	}
	if _, err := dp.ReadFrame(context.Background()); !errors.Is(err, io.EOF) {
		t.Fatalf("DP read: %v", err)
	}
}

// TestReuseReadBuffer: with DialOptions.ReuseReadBuffer, ReadFrame reads
// every frame into one buffer (a frame is valid until the next read), skips
// text frames and enforces the read limit as gorilla's ReadMessage does.
func TestReuseReadBuffer(t *testing.T) {
	a, b := bytes.Repeat([]byte("a"), 3000), bytes.Repeat([]byte("b"), 1000)
	over := make([]byte, 10000)
	cp := startCP(t, nil, &AcceptOptions{MaxPayload: 1 << 20}, func(c *Conn, _ NodeInfo) {
		ctx := context.Background()
		_ = c.ws.Write(ctx, websocket.MessageText, []byte("hello")) // ignored
		_ = c.SendReconfigure(ctx, a)
		_ = c.SendReconfigure(ctx, b)
		_ = c.SendReconfigure(ctx, over)
		_ = c.ReadLoop(ctx, nil)
	})
	dp, err := dialDP(t, cp.wsAddr(), nil, &DialOptions{ReuseReadBuffer: true, MaxPayload: 8192})
	if err != nil {
		t.Fatal(err)
	}
	got1, err := dp.ReadFrame(context.Background())
	if err != nil || !bytes.Equal(got1, a) {
		t.Fatalf("first frame: %d bytes, %v", len(got1), err)
	}
	got2, err := dp.ReadFrame(context.Background())
	if err != nil || !bytes.Equal(got2, b) {
		t.Fatalf("second frame: %d bytes, %v", len(got2), err)
	}
	if &got1[0] != &got2[0] {
		t.Error("the second frame was read into a new buffer")
	}
	_, err = dp.ReadFrame(context.Background())
	if err == nil || err.Error() != "frame from control plane exceeds cluster_max_payload (8192 bytes)" {
		t.Fatalf("oversized frame: %v", err)
	}
}
