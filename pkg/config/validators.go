package config

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Validators with Kong's messages (kong/db/schema/typedefs.lua).

// IsUUID reports whether s is a UUID as Kong's utils.is_valid_uuid accepts
// it: 8-4-4-4-12 hex digits, either case.
func IsUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')) {
				return false
			}
		}
	}
	return true
}

// validateUTF8Name is typedefs.utf8_name: ASCII alphanumerics and . - _ ~,
// plus any non-ASCII UTF-8.
func validateUTF8Name(v any) string {
	s := v.(string)
	if !utf8.ValidString(s) {
		return "invalid utf-8"
	}
	for _, r := range s {
		if r >= 0x80 {
			continue
		}
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_' || r == '~') {
			return fmt.Sprintf("invalid value '%s': the only accepted ascii characters are alphanumerics or ., -, _, and ~", s)
		}
	}
	return ""
}

var hostnameLabelRe = regexp.MustCompile(`^[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?$`)

func validHostname(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	h = strings.TrimSuffix(h, ".")
	for _, l := range strings.Split(h, ".") {
		if len(l) == 0 || len(l) > 63 || !hostnameLabelRe.MatchString(l) {
			return false
		}
	}
	return true
}

// splitHostPort splits "host[:port]" and "[v6]:port"; ok=false on bad syntax.
func splitHostPort(s string) (host string, port string, hasPort bool, ok bool) {
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", "", false, false
		}
		host = s[1:end]
		rest := s[end+1:]
		if rest == "" {
			return host, "", false, net.ParseIP(host) != nil
		}
		if !strings.HasPrefix(rest, ":") {
			return "", "", false, false
		}
		return host, rest[1:], true, net.ParseIP(host) != nil
	}
	if strings.Count(s, ":") > 1 {
		// bare IPv6
		return s, "", false, net.ParseIP(s) != nil
	}
	if i := strings.IndexByte(s, ':'); i >= 0 {
		return s[:i], s[i+1:], true, true
	}
	return s, "", false, true
}

func validPort(p string) bool {
	if p == "" || len(p) > 5 {
		return false
	}
	n, err := strconv.Atoi(p)
	return err == nil && n >= 0 && n <= 65535 && strconv.Itoa(n) == p
}

// validateHost is typedefs.host: a hostname or IP, no port.
func validateHost(v any) string {
	s := v.(string)
	host, _, hasPort, ok := splitHostPort(s)
	if !ok {
		return "invalid value: " + s
	}
	if hasPort {
		return "must not have a port"
	}
	if net.ParseIP(host) != nil || validHostname(host) {
		return ""
	}
	return "invalid value: " + s
}

// validateHostWithOptionalPort is typedefs.host_with_optional_port.
func validateHostWithOptionalPort(v any) string {
	s := v.(string)
	host, port, hasPort, ok := splitHostPort(s)
	if !ok {
		return "invalid value: " + s
	}
	if hasPort && !validPort(port) {
		return "invalid port number"
	}
	if net.ParseIP(host) != nil || validHostname(host) {
		return ""
	}
	return "invalid value: " + s
}

// validateWildcardHost is typedefs.wildcard_host (route hosts, SNI names).
func validateWildcardHost(v any) string {
	s := v.(string)
	host, port, hasPort, ok := splitHostPort(s)
	if !ok {
		return "invalid hostname: " + s
	}
	if hasPort && !validPort(port) {
		return "invalid port number"
	}
	if n := strings.Count(host, "*"); n > 0 {
		if n > 1 {
			return "invalid wildcard: must have at most one wildcard"
		}
		if !strings.HasPrefix(host, "*.") && !strings.HasSuffix(host, ".*") {
			return "invalid wildcard: must be placed at leftmost or rightmost label"
		}
		host = strings.Replace(host, "*", "wildcard", 1)
	}
	if net.ParseIP(host) != nil || validHostname(host) {
		return ""
	}
	return "invalid hostname: " + s
}

// validateSNI is typedefs.sni / wildcard SNI: no IP, no port.
func validateSNI(v any) string {
	s := v.(string)
	if net.ParseIP(strings.Trim(s, "[]")) != nil {
		return "must not be an IP"
	}
	if _, _, hasPort, ok := splitHostPort(s); ok && hasPort {
		return "must not have a port"
	}
	return validateWildcardHost(v)
}

// RFC 3986 characters allowed in a path (unreserved, sub-delims, ':' '@'
// '/' and '%' for escapes).
func isRFC3986PathChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("-._~!$&'()*+,;=:@/%", c) >= 0
}

func checkPercentEncoding(p string) string {
	for i := 0; i < len(p); i++ {
		if p[i] != '%' {
			continue
		}
		if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
			end := i + 3
			if end > len(p) {
				end = len(p)
			}
			return fmt.Sprintf("invalid url-encoded value: '%s'", p[i:end])
		}
	}
	return ""
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// validatePath is typedefs.path (service path, healthcheck http_path).
func validatePath(v any) string {
	p := v.(string)
	if !strings.HasPrefix(p, "/") {
		return "should start with: /"
	}
	if strings.Contains(p, "//") {
		return "must not have empty segments"
	}
	for i := 0; i < len(p); i++ {
		if !isRFC3986PathChar(p[i]) {
			return fmt.Sprintf("invalid path: '%s' (characters outside of the reserved list of RFC 3986 found)", p)
		}
	}
	return checkPercentEncoding(p)
}

// validateRoutePath is the routes.paths element rule: "/" prefix paths must
// be RFC 3986 and already normalised; "~" regex paths must compile.
func validateRoutePath(v any) string {
	p := v.(string)
	if strings.HasPrefix(p, "~") {
		re := p[1:]
		if !strings.HasPrefix(re, "/") {
			return "should start with: / (fixed path) or ~/ (regex path)"
		}
		// Kong's match_none applies to regex paths as well.
		if strings.Contains(p, "//") {
			return "must not have empty segments"
		}
		if err := compileRouteRegex(re); err != nil {
			return fmt.Sprintf("invalid regex: '%s' (%s)", re, err.Error())
		}
		return ""
	}
	if !strings.HasPrefix(p, "/") {
		return "should start with: / (fixed path) or ~/ (regex path)"
	}
	if strings.Contains(p, "//") {
		return "must not have empty segments"
	}
	for i := 0; i < len(p); i++ {
		if !isRFC3986PathChar(p[i]) {
			return fmt.Sprintf("invalid path: '%s' (characters outside of the reserved list of RFC 3986 found)", p)
		}
	}
	if msg := checkPercentEncoding(p); msg != "" {
		return msg
	}
	if n := NormalizePath(p, false); n != p {
		return fmt.Sprintf("non-normalized path, consider use '%s' instead", n)
	}
	return ""
}

var namedGroupRe = regexp.MustCompile(`\(\?<([A-Za-z_][A-Za-z0-9_]*)>`)

// RouteRegexToGo rewrites a Kong route regex (PCRE / Rust regex syntax) into
// Go's RE2 syntax: `(?<name>` becomes `(?P<name>`. RE2 is close to the Rust
// regex crate that Kong's ATC router (traditional_compatible) compiles
// paths with: both reject look-around and back-references.
func RouteRegexToGo(re string) string {
	return namedGroupRe.ReplaceAllString(re, `(?P<$1>`)
}

func compileRouteRegex(re string) error {
	_, err := regexp.Compile(RouteRegexToGo(re))
	if err != nil {
		// Drop Go's "error parsing regexp: " prefix; the message keeps the
		// reason and the offending piece.
		msg := strings.TrimPrefix(err.Error(), "error parsing regexp: ")
		return fmt.Errorf("%s", msg)
	}
	return nil
}

// NormalizePath is Kong's kong.tools.uri normalize(): percent-decodes
// unreserved characters, upper-cases the remaining escapes, optionally merges
// slashes and removes dot segments (RFC 3986 5.2.4).
func NormalizePath(p string, mergeSlashes bool) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c == '%' && i+2 < len(p) && isHex(p[i+1]) && isHex(p[i+2]) {
			n, _ := strconv.ParseUint(p[i+1:i+3], 16, 8)
			d := byte(n)
			if d >= 'a' && d <= 'z' || d >= 'A' && d <= 'Z' || d >= '0' && d <= '9' || d == '-' || d == '.' || d == '_' || d == '~' {
				b.WriteByte(d)
			} else {
				b.WriteString(strings.ToUpper(p[i : i+3]))
			}
			i += 2
			continue
		}
		b.WriteByte(c)
	}
	s := b.String()
	if mergeSlashes {
		for strings.Contains(s, "//") {
			s = strings.ReplaceAll(s, "//", "/")
		}
	}
	return removeDotSegments(s)
}

func removeDotSegments(in string) string {
	if !strings.Contains(in, ".") {
		return in
	}
	var out []string
	segs := strings.Split(in, "/")
	trailing := false
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case ".":
			trailing = last
		case "..":
			if len(out) > 1 {
				out = out[:len(out)-1]
			}
			trailing = last
		default:
			out = append(out, s)
			trailing = false
		}
	}
	res := strings.Join(out, "/")
	if trailing && !strings.HasSuffix(res, "/") {
		res += "/"
	}
	if strings.HasPrefix(in, "/") && !strings.HasPrefix(res, "/") {
		res = "/" + res
	}
	return res
}

// isNotRegexPath is Kong's migration test (migrate_path_280_300.lua): a path
// made only of [a-zA-Z0-9.\-_~/%] is a plain prefix.
func isNotRegexPath(p string) bool {
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(".-_~/%", c) >= 0) {
			return false
		}
	}
	return true
}

// migrateRoutePath is the 1.1/2.1 → 3.0 on-the-fly path migration: plain
// paths are normalised, regex-looking ones get the "~" prefix (after
// decoding escapes of unreserved characters, regex metacharacters escaped).
func migrateRoutePath(p string) string {
	if isNotRegexPath(p) {
		return NormalizePath(p, true)
	}
	if !strings.Contains(p, "%") {
		return "~" + p
	}
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] == '%' && i+2 < len(p) && isHex(p[i+1]) && isHex(p[i+2]) {
			n, _ := strconv.ParseUint(p[i+1:i+3], 16, 8)
			c := byte(n)
			switch {
			case strings.IndexByte("!#$%&'()*+,/:;=?@[]", c) >= 0:
				b.WriteString(strings.ToUpper(p[i : i+3]))
			case strings.IndexByte(".^-{}\\|", c) >= 0:
				b.WriteByte('\\')
				b.WriteByte(c)
			default:
				b.WriteByte(c)
			}
			i += 2
			continue
		}
		b.WriteByte(p[i])
	}
	return "~" + b.String()
}

var methodRe = regexp.MustCompile(`^[A-Z]+$`)

func validateMethod(v any) string {
	s := v.(string)
	if !methodRe.MatchString(s) {
		return "invalid value: " + s
	}
	return ""
}

var headerNameRe = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func validateHeaderName(v any) string {
	s := v.(string)
	if !headerNameRe.MatchString(s) {
		return fmt.Sprintf("bad header name '%s', allowed characters are A-Z, a-z, 0-9, '_', and '-'", s)
	}
	return ""
}

func validateRouteHeaderName(v any) string {
	s := v.(string)
	if strings.EqualFold(s, "host") {
		return "cannot contain 'host' header, which must be specified in the 'hosts' attribute"
	}
	return validateHeaderName(v)
}

// validateIPOrCIDR is typedefs.ip_or_cidr.
func validateIPOrCIDR(v any) string {
	s := v.(string)
	if net.ParseIP(s) != nil {
		return ""
	}
	if _, _, err := net.ParseCIDR(s); err == nil {
		return ""
	}
	return "invalid ip or cidr range: '" + s + "'"
}

// validateUpstreamName: a hostname, no IP, no port.
func validateUpstreamName(v any) string {
	s := v.(string)
	host, _, hasPort, ok := splitHostPort(s)
	if ok && net.ParseIP(host) != nil {
		return fmt.Sprintf("Invalid name ('%s'); no ip addresses allowed", s)
	}
	if ok && hasPort {
		return fmt.Sprintf("Invalid name ('%s'); no port allowed", s)
	}
	if !ok || !validHostname(host) {
		return fmt.Sprintf("Invalid name ('%s'); must be a valid hostname", s)
	}
	return ""
}

// validateTarget: hostname or IP with optional port.
func validateTarget(v any) string {
	s := v.(string)
	host, port, hasPort, ok := splitHostPort(s)
	if !ok || (hasPort && !validPort(port)) || !(net.ParseIP(host) != nil || validHostname(host)) {
		return "Invalid target ('" + s + "'); not a valid hostname or ip address"
	}
	return ""
}

// NormalizeTarget appends Kong's default target port 8000 and brackets a bare
// IPv6 address.
func NormalizeTarget(s string) string {
	host, port, hasPort, ok := splitHostPort(s)
	if !ok {
		return s
	}
	if ip := net.ParseIP(host); ip != nil && strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if !hasPort {
		port = "8000"
	}
	return host + ":" + port
}

func pemBlocks(s string, kind string) ([]*pem.Block, bool) {
	rest := []byte(s)
	var out []*pem.Block
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if kind == "" || strings.Contains(b.Type, kind) {
			out = append(out, b)
		}
	}
	return out, len(out) > 0
}

func validateCert(v any) string {
	blocks, ok := pemBlocks(v.(string), "CERTIFICATE")
	if !ok {
		return "invalid certificate: invalid PEM-encoded value"
	}
	if _, err := x509.ParseCertificate(blocks[0].Bytes); err != nil {
		return "invalid certificate: " + err.Error()
	}
	return ""
}

func validateKey(v any) string {
	blocks, ok := pemBlocks(v.(string), "PRIVATE KEY")
	if !ok {
		return "invalid key: invalid PEM-encoded value"
	}
	b := blocks[0]
	if _, err := x509.ParsePKCS8PrivateKey(b.Bytes); err == nil {
		return ""
	}
	if _, err := x509.ParsePKCS1PrivateKey(b.Bytes); err == nil {
		return ""
	}
	if _, err := x509.ParseECPrivateKey(b.Bytes); err == nil {
		return ""
	}
	return "invalid key: unsupported or malformed private key"
}

func certMatchesKey(cert, key string) bool {
	_, err := tls.X509KeyPair([]byte(cert), []byte(key))
	return err == nil
}

// validateCACert: exactly one PEM certificate, a CA, not expired.
func validateCACert(v any) string {
	blocks, ok := pemBlocks(v.(string), "CERTIFICATE")
	if !ok {
		return "invalid certificate: invalid PEM-encoded value"
	}
	if len(blocks) > 1 {
		return "please submit only one certificate at a time"
	}
	c, err := x509.ParseCertificate(blocks[0].Bytes)
	if err != nil {
		return "invalid certificate: " + err.Error()
	}
	if !c.BasicConstraintsValid || !c.IsCA {
		return "certificate does not appear to be a CA because it is missing the \"CA\" basic constraint"
	}
	if time.Now().After(c.NotAfter) {
		return "certificate expired, \"Not After\" time is in the past"
	}
	return ""
}

// CertDigest is Kong's ca_certificates.cert_digest: hex SHA-256 of the DER.
func CertDigest(certPEM string) string {
	blocks, ok := pemBlocks(certPEM, "CERTIFICATE")
	if !ok {
		return ""
	}
	sum := sha256.Sum256(blocks[0].Bytes)
	return hex.EncodeToString(sum[:])
}
