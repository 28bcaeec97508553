// Package cptest is a minimal control plane for data-plane tests: a TLS
// listener on loopback that accepts DPs with pkg/cluster's Accept, pushes the
// configuration it is given, records the hashes DPs report, and can be killed
// and restarted on the same address. It is the real protocol and the real
// mTLS, without the CP's database and Admin API (internal/cp/cluster).
package cptest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	"github.com/kongfb/kongfb/pkg/cluster"
	"github.com/kongfb/kongfb/pkg/config"
)

// Options configure a test CP.
type Options struct {
	// TLS is the cluster listener's TLS settings (cert, key, mode, CA).
	TLS cluster.TLSOptions
	// Addr is the address to listen on; "" means 127.0.0.1:0. Restarting a
	// CP on the address of a closed one uses it.
	Addr string
	// PingWait is the silence after which the CP drops a DP (45 s).
	PingWait time.Duration
	Logger   *slog.Logger
}

// Server is a running test CP.
type Server struct {
	srv    *httptest.Server
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	opts   Options

	mu      sync.Mutex
	payload []byte // the encoded reconfigure frame sent to every DP
	conns   map[*cluster.Conn]cluster.NodeInfo
	hashes  map[string]string // node id -> last reported hash
	pings   int
	accepts int
	changed chan struct{} // closed and replaced on every event
}

// Start listens and serves.
func Start(opts Options) (*Server, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tlsOpts := opts.TLS
	tlsOpts.Logger = log
	tconf, err := cluster.ServerTLSConfig(tlsOpts)
	if err != nil {
		return nil, err
	}
	addr := opts.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("test CP listen %s: %w", addr, err)
	}
	s := &Server{
		log: log, opts: opts,
		conns: map[*cluster.Conn]cluster.NodeInfo{}, hashes: map[string]string{},
		changed: make(chan struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serveOutlet))
	s.srv.Listener = ln
	s.srv.TLS = tconf
	s.srv.Config.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	s.srv.StartTLS()
	return s, nil
}

// Addr is the CP's host:port (cluster_control_plane).
func (s *Server) Addr() string { return s.srv.Listener.Addr().String() }

func (s *Server) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Server) serveOutlet(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != cluster.OutletPath {
		http.NotFound(w, r)
		return
	}
	conn, node, err := cluster.Accept(w, r, &cluster.AcceptOptions{PingWait: s.opts.PingWait, Logger: s.log})
	if err != nil {
		s.log.Error("[clustering] "+err.Error(), "node_id", node.ID)
		return
	}
	s.mu.Lock()
	s.conns[conn] = node
	s.accepts++
	payload := s.payload
	s.notify()
	s.mu.Unlock()
	s.log.Info("[clustering] data plane connected", "node_id", node.ID, "hostname", node.Hostname, "version", node.Version)

	// Like Kong, a new DP gets the current configuration at once.
	if payload != nil {
		if err := conn.SendReconfigure(s.ctx, payload); err != nil {
			s.log.Error("[clustering] "+err.Error(), "node_id", node.ID)
		}
	}
	err = conn.ReadLoop(s.ctx, func(hash string) {
		s.mu.Lock()
		s.hashes[node.ID] = hash
		s.pings++
		s.notify()
		s.mu.Unlock()
	})
	s.mu.Lock()
	delete(s.conns, conn)
	s.notify()
	s.mu.Unlock()
	if err != nil && s.ctx.Err() == nil {
		s.log.Warn("[clustering] data plane disconnected", "node_id", node.ID, "error", err)
	}
}

// SetConfig makes doc (an export document's JSON) with hash the current
// configuration and pushes it to every connected DP. hash "" sends none (the
// DP computes it).
func (s *Server) SetConfig(doc []byte, hash string) error {
	payload, err := cluster.EncodeReconfigure(&cluster.Reconfigure{
		Type: cluster.TypeReconfigure, Timestamp: float64(time.Now().UnixMilli()) / 1000,
		ConfigTable: doc, ConfigHash: hash,
	}, cluster.DefaultMaxPayload)
	if err != nil {
		return err
	}
	return s.SetPayload(payload)
}

// SetConfigFrom exports cfg and pushes it under its config.Hash, returning
// the hash.
func (s *Server) SetConfigFrom(cfg *config.Config) (string, error) {
	doc, err := cfg.MarshalJSON()
	if err != nil {
		return "", err
	}
	hash, _ := config.Hash(cfg)
	return hash, s.SetConfig(doc, hash)
}

// SetPayload makes payload (an encoded reconfigure frame, valid or not) the
// current frame and sends it to every connected DP.
func (s *Server) SetPayload(payload []byte) error {
	s.mu.Lock()
	s.payload = payload
	conns := make([]*cluster.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	var errs []error
	for _, c := range conns {
		if err := c.SendReconfigure(s.ctx, payload); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Connected is the number of DPs connected now.
func (s *Server) Connected() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Accepted is the number of DP connections accepted since start.
func (s *Server) Accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepts
}

// Nodes returns the identities of the connected DPs.
func (s *Server) Nodes() []cluster.NodeInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]cluster.NodeInfo, 0, len(s.conns))
	for _, n := range s.conns {
		out = append(out, n)
	}
	return out
}

// Hash is the last hash node reported ("" if none yet).
func (s *Server) Hash(nodeID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hashes[nodeID]
}

// Pings is the number of pings received since start.
func (s *Server) Pings() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pings
}

// Await blocks until cond holds (checked on every connect, disconnect and
// ping) or ctx ends.
func (s *Server) Await(ctx context.Context, cond func(*Server) bool) error {
	for {
		s.mu.Lock()
		ch := s.changed
		s.mu.Unlock()
		if cond(s) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// Kill stops the CP abruptly, as a crashed process: the listener closes and
// every DP connection drops without a close frame.
func (s *Server) Kill() {
	s.mu.Lock()
	conns := make([]*cluster.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	_ = s.srv.Listener.Close()
	for _, c := range conns {
		_ = c.CloseNow()
	}
	s.cancel()
	s.srv.Close()
}

// Close stops the CP gracefully (DPs get a going-away close frame).
func (s *Server) Close() {
	s.cancel()
	s.srv.Close()
}

// SharedCert generates a cluster certificate and key for cluster_mtls =
// shared (PEM).
func SharedCert() (certPEM, keyPEM string, err error) {
	c, k, err := cluster.GenerateSharedCert(1)
	return string(c), string(k), err
}

// CA is a certificate authority for cluster_mtls = pki tests.
type CA struct {
	Cert *x509.Certificate
	PEM  string
	key  *ecdsa.PrivateKey
}

var (
	serialMu sync.Mutex
	serial   int64 = 1
)

func nextSerial() *big.Int {
	serialMu.Lock()
	defer serialMu.Unlock()
	serial++
	return big.NewInt(serial)
}

// NewCA makes a self-signed CA valid for a day.
func NewCA(cn string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, PEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), key: key}, nil
}

// Issue makes a leaf certificate for cn with the given extended key usage
// (ServerAuth for a CP, ClientAuth for a DP), valid for dnsNames and ips.
func (ca *CA) Issue(cn string, usage x509.ExtKeyUsage, dnsNames []string, ips []net.IP) (certPEM, keyPEM string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		DNSNames: dnsNames, IPAddresses: ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		return "", "", err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", err
	}
	var cb bytes.Buffer
	_ = pem.Encode(&cb, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	return cb.String(), string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})), nil
}

// ClientTLS is a DP's TLS for opts (a convenience for tests).
func ClientTLS(opts cluster.TLSOptions) (*tls.Config, error) { return cluster.ClientTLSConfig(opts) }
