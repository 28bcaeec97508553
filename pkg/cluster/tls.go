package cluster

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"strings"
	"time"
)

// TLSMode is cluster_mtls.
type TLSMode string

const (
	// TLSModeShared: CP and DPs hold the same certificate; the CP accepts a
	// DP whose certificate is byte-for-byte its own (SHA-256 digest).
	TLSModeShared TLSMode = "shared"
	// TLSModePKI: certificates are issued by a CA (cluster_ca_cert); the CP
	// verifies the DP's chain and the DP verifies the CP's name.
	TLSModePKI TLSMode = "pki"
)

// SharedServerName is the SNI a DP sends in shared mode.
const SharedServerName = "kong_clustering"

// MaxVerifyDepth is nginx's ssl_verify_depth on Kong's cluster listener in
// pki mode: at most 4 intermediate CAs between the DP certificate and the
// trusted CA.
const MaxVerifyDepth = 4

// DefaultCertDays is `kong hybrid gen_cert`'s default validity (3 years).
const DefaultCertDays = 3 * 365

// Kong's handshake refusals (kong/clustering/tls.lua).
var (
	ErrNoClientCert = errors.New("data plane failed to present client certificate during handshake")
	ErrCertDigest   = errors.New("data plane presented incorrect client certificate during handshake " +
		"(digest does not match the control plane certificate)")
)

// ParseTLSMode validates a cluster_mtls value; "" means shared (the default).
func ParseTLSMode(s string) (TLSMode, error) {
	switch TLSMode(s) {
	case "", TLSModeShared:
		return TLSModeShared, nil
	case TLSModePKI:
		return TLSModePKI, nil
	}
	return "", fmt.Errorf("cluster_mtls has an invalid value: '%s' (shared, pki)", s)
}

// TLSOptions are the cluster_* TLS settings.
type TLSOptions struct {
	Mode TLSMode
	// Cert and Key are cluster_cert and cluster_cert_key: each a file path,
	// inline PEM or base64-encoded PEM, as Kong accepts them.
	Cert, Key string
	// CA is cluster_ca_cert (pki mode). Required on the CP; on a DP empty
	// means the system roots (Kong's lua_ssl_trusted_certificate=system).
	CA string
	// ServerName is cluster_server_name: the DP's SNI and the name the CP's
	// certificate must carry in pki mode. Empty means the host of the CP
	// address. Ignored in shared mode.
	ServerName string
	// Logger, on the CP, logs every refused DP certificate with its address.
	Logger *slog.Logger
	// Now is the clock for certificate validity; nil means time.Now.
	Now func() time.Time
}

func (o *TLSOptions) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

// LoadPEM resolves a certificate setting the way Kong's conf_loader does: a
// file path, inline PEM, or base64-encoded PEM. setting names the setting in
// errors (e.g. "cluster_cert"). Inline values are never echoed in errors:
// they may be private keys.
func LoadPEM(setting, value string) ([]byte, error) {
	v := strings.TrimSpace(value)
	if v == "" {
		return nil, fmt.Errorf("%s is empty", setting)
	}
	if strings.Contains(v, "-----BEGIN") {
		return []byte(v), nil
	}
	if fi, err := os.Stat(v); err == nil {
		if fi.IsDir() {
			return nil, fmt.Errorf("%s: failed loading from %s: is a directory", setting, v)
		}
		data, err := os.ReadFile(v)
		if err != nil {
			return nil, fmt.Errorf("%s: failed loading from %s: %w", setting, v, err)
		}
		return data, nil
	}
	if dec, ok := decodeBase64(v); ok && bytes.Contains(dec, []byte("-----BEGIN")) {
		return dec, nil
	}
	if looksLikePath(v) {
		return nil, fmt.Errorf("%s: failed loading from %s: no such file, and not inline or base64-encoded PEM", setting, v)
	}
	return nil, fmt.Errorf("%s: failed loading from inline value (%d bytes): not PEM nor base64-encoded PEM", setting, len(v))
}

func looksLikePath(v string) bool {
	return len(v) <= 4096 && !strings.ContainsAny(v, "\n\r") &&
		(strings.ContainsAny(v, "/\\.") || len(v) < 64)
}

func decodeBase64(v string) ([]byte, bool) {
	v = strings.Join(strings.Fields(v), "")
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if dec, err := enc.DecodeString(v); err == nil {
			return dec, true
		}
	}
	return nil, false
}

// ParseCertsPEM parses every CERTIFICATE block of data, leaf first.
func ParseCertsPEM(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM CERTIFICATE block found")
	}
	return certs, nil
}

// LoadKeyPair loads cluster_cert and cluster_cert_key (any form LoadPEM
// accepts). The certificate may carry intermediates after the leaf.
func LoadKeyPair(cert, key string) (tls.Certificate, error) {
	certPEM, err := LoadPEM("cluster_cert", cert)
	if err != nil {
		return tls.Certificate{}, err
	}
	if _, err := ParseCertsPEM(certPEM); err != nil {
		return tls.Certificate{}, fmt.Errorf("cluster_cert: failed loading certificate: %w", err)
	}
	keyPEM, err := LoadPEM("cluster_cert_key", key)
	if err != nil {
		return tls.Certificate{}, err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("cluster_cert_key: failed loading key (or it does not match cluster_cert): %w", err)
	}
	if pair.Leaf == nil {
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return tls.Certificate{}, fmt.Errorf("cluster_cert: %w", err)
		}
	}
	return pair, nil
}

func loadCAPool(value string) (*x509.CertPool, error) {
	data, err := LoadPEM("cluster_ca_cert", value)
	if err != nil {
		return nil, err
	}
	certs, err := ParseCertsPEM(data)
	if err != nil {
		return nil, fmt.Errorf("cluster_ca_cert: failed loading certificate: %w", err)
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

// CertDigest is the lowercase hex SHA-256 of a certificate's DER, the digest
// shared mode compares.
func CertDigest(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// CertDetails is the cert_details field of Kong's clustering_data_planes.
type CertDetails struct {
	ExpiryTimestamp int64 `json:"expiry_timestamp"`
}

// PeerCertDetails returns the details of the peer's leaf certificate, false
// when it sent none.
func PeerCertDetails(cs *tls.ConnectionState) (CertDetails, bool) {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return CertDetails{}, false
	}
	return CertDetails{ExpiryTimestamp: cs.PeerCertificates[0].NotAfter.Unix()}, true
}

// ServerTLSConfig is the CP cluster listener's TLS: it serves cluster_cert and
// asks every DP for a certificate, then enforces cluster_mtls:
//   - shared: the DP certificate's SHA-256 digest must equal cluster_cert's
//     (Kong: ssl_verify_client optional_no_ca + a digest check in Lua);
//   - pki: the DP chain must verify against cluster_ca_cert for client
//     authentication, with at most MaxVerifyDepth intermediates.
//
// A DP without a certificate is refused in both modes. Refusals abort the
// handshake with Kong's messages and are logged via opts.Logger.
func ServerTLSConfig(opts TLSOptions) (*tls.Config, error) {
	mode, err := ParseTLSMode(string(opts.Mode))
	if err != nil {
		return nil, err
	}
	pair, err := LoadKeyPair(opts.Cert, opts.Key)
	if err != nil {
		return nil, err
	}
	var verify func(cs tls.ConnectionState) error
	switch mode {
	case TLSModeShared:
		want := sha256.Sum256(pair.Leaf.Raw)
		verify = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return ErrNoClientCert
			}
			got := sha256.Sum256(cs.PeerCertificates[0].Raw)
			if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
				return ErrCertDigest
			}
			return nil
		}
	case TLSModePKI:
		if strings.TrimSpace(opts.CA) == "" {
			return nil, errors.New(`cluster_ca_cert must be specified when cluster_mtls = "pki"`)
		}
		pool, err := loadCAPool(opts.CA)
		if err != nil {
			return nil, err
		}
		verify = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return ErrNoClientCert
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			chains, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
				Roots:         pool,
				Intermediates: inter,
				KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
				CurrentTime:   opts.now(),
			})
			if err != nil {
				return fmt.Errorf("data plane presented a client certificate that failed verification during handshake: %v", err)
			}
			for _, ch := range chains {
				// chain = leaf, intermediates..., trusted CA
				if len(ch)-2 <= MaxVerifyDepth {
					return nil
				}
			}
			return fmt.Errorf("data plane presented a client certificate chain longer than the verify depth %d during handshake", MaxVerifyDepth)
		}
	}

	base := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{pair},
		// Ask for a certificate but let the handshake reach VerifyConnection
		// without one, so that a missing certificate gets Kong's message
		// rather than Go's. VerifyConnection then refuses it.
		ClientAuth: tls.RequestClientCert,
		NextProtos: []string{"http/1.1"},
	}
	logger := opts.Logger
	base.VerifyConnection = verify
	base.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		// A per-connection copy only to log the refused peer's address.
		c := base.Clone()
		c.GetConfigForClient = nil
		var remote string
		if hello.Conn != nil {
			remote = hello.Conn.RemoteAddr().String()
		}
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			err := verify(cs)
			if err != nil && logger != nil {
				logger.Error("[clustering] "+err.Error(), "remote_addr", remote)
			}
			return err
		}
		return c, nil
	}
	return base, nil
}

// ClientTLSConfig is a DP's TLS towards its CP: it presents cluster_cert and
// verifies the CP like Kong's DP (ssl_verify = true):
//   - shared: SNI kong_clustering; the CP's certificate must chain to
//     cluster_cert itself (the only trusted certificate);
//   - pki: SNI cluster_server_name (or the CP host); the chain must verify
//     against cluster_ca_cert (or the system roots when empty) for server
//     authentication, and the certificate must carry the name, in a DNS or IP
//     SAN or, for certificates without DNS SANs, in the CN as OpenSSL allows.
//     Without ServerName, Dial checks the host of the CP address.
func ClientTLSConfig(opts TLSOptions) (*tls.Config, error) {
	mode, err := ParseTLSMode(string(opts.Mode))
	if err != nil {
		return nil, err
	}
	pair, err := LoadKeyPair(opts.Cert, opts.Key)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Always present the cluster certificate: Go would otherwise send
		// none when the CP's acceptable-CA list does not name our issuer.
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil },
		// Verification is done in VerifyConnection below, because neither
		// mode fits Go's default: shared mode trusts one certificate whatever
		// its name, and pki mode accepts CN-only certificates like OpenSSL.
		InsecureSkipVerify: true,
		NextProtos:         []string{"http/1.1"},
	}
	switch mode {
	case TLSModeShared:
		cfg.ServerName = SharedServerName
		roots := x509.NewCertPool()
		roots.AddCert(pair.Leaf)
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("control plane presented no certificate")
			}
			// The trust anchor is the cluster certificate itself, so a name
			// check would add nothing: only a holder of the cluster key can
			// present a certificate that chains to it.
			if _, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
				Roots:         roots,
				Intermediates: intermediates(cs.PeerCertificates),
				KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
				CurrentTime:   opts.now(),
			}); err != nil {
				return fmt.Errorf("control plane certificate is not the cluster certificate (cluster_mtls = shared): %w", err)
			}
			return nil
		}
	case TLSModePKI:
		var roots *x509.CertPool
		if strings.TrimSpace(opts.CA) != "" {
			if roots, err = loadCAPool(opts.CA); err != nil {
				return nil, err
			}
		} else if roots, err = x509.SystemCertPool(); err != nil {
			return nil, fmt.Errorf("cluster_ca_cert is empty and the system roots cannot be loaded: %w", err)
		}
		cfg.ServerName = opts.ServerName
		wantName := opts.ServerName
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("control plane presented no certificate")
			}
			name := wantName
			if name == "" {
				name = cs.ServerName
			}
			if name == "" {
				return errors.New("no name to verify the control plane certificate against: set cluster_server_name")
			}
			leaf := cs.PeerCertificates[0]
			if _, err := leaf.Verify(x509.VerifyOptions{
				Roots:         roots,
				Intermediates: intermediates(cs.PeerCertificates),
				KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
				CurrentTime:   opts.now(),
			}); err != nil {
				return fmt.Errorf("control plane certificate verification failed: %w", err)
			}
			if err := verifyName(leaf, name); err != nil {
				return fmt.Errorf("control plane certificate verification failed: %w", err)
			}
			return nil
		}
	}
	return cfg, nil
}

func intermediates(chain []*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range chain[1:] {
		p.AddCert(c)
	}
	return p
}

// verifyName checks a host name like OpenSSL's X509_check_host with default
// flags: SANs first, the subject CN only when there is no DNS SAN.
func verifyName(leaf *x509.Certificate, name string) error {
	err := leaf.VerifyHostname(name)
	if err == nil {
		return nil
	}
	if len(leaf.DNSNames) == 0 && leaf.Subject.CommonName != "" &&
		strings.EqualFold(strings.TrimSuffix(leaf.Subject.CommonName, "."), strings.TrimSuffix(name, ".")) {
		return nil
	}
	return err
}

// GenerateSharedCert makes a certificate and key for cluster_mtls = shared,
// like `kong hybrid gen_cert`: an ECDSA P-384 key, a self-signed certificate
// with subject and issuer CN=kong_clustering, valid from now for days days.
// Both are PEM; the key is PKCS#8 ("PRIVATE KEY"), as Kong writes it.
func GenerateSharedCert(days int) (certPEM, keyPEM []byte, err error) {
	if days < 1 {
		return nil, nil, fmt.Errorf("certificate validity must be at least 1 day, got %d", days)
	}
	if days > 100*366 {
		return nil, nil, fmt.Errorf("certificate validity of %d days is more than 100 years", days)
	}
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate P-384 key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, fmt.Errorf("generate serial number: %w", err)
	}
	now := time.Now().Truncate(time.Second)
	name := pkix.Name{CommonName: SharedServerName}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      name,
		Issuer:       name,
		NotBefore:    now,
		NotAfter:     now.Add(time.Duration(days) * 24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encode key: %w", err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	return certPEM, keyPEM, nil
}
