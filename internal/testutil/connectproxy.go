package testutil

import (
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
)

// Connect is one CONNECT request a proxy from StartConnectProxy served.
type Connect struct {
	Target             string // host:port asked for
	ProxyAuthorization string // the Proxy-Authorization header, "" if none
}

// StartConnectProxy runs a minimal HTTP CONNECT proxy on 127.0.0.1:0 for
// the test's lifetime: it reports every CONNECT on the returned channel
// (buffered; later ones are dropped when it is full) and splices the
// client to the target. Cleanup closes every tunnel.
func StartConnectProxy(t testing.TB) (addr string, connects <-chan Connect) {
	t.Helper()
	ch := make(chan Connect, 16)
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	track := func(c ...net.Conn) { mu.Lock(); conns = append(conns, c...); mu.Unlock() }
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
			return
		}
		select {
		case ch <- Connect{Target: r.Host, ProxyAuthorization: r.Header.Get("Proxy-Authorization")}:
		default:
		}
		upstream, err := net.Dial("tcp", r.Host)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		client, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			_ = upstream.Close()
			return
		}
		track(client, upstream)
		if _, err := client.Write([]byte("HTTP/1.1 200 Connection Established\r\n\r\n")); err != nil {
			_ = client.Close()
			_ = upstream.Close()
			return
		}
		wg.Add(2)
		go func() { defer wg.Done(); _, _ = io.Copy(upstream, buf); _ = upstream.Close() }()
		go func() { defer wg.Done(); _, _ = io.Copy(client, upstream); _ = client.Close() }()
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String(), ch
}
