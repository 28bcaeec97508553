package router

import "strings"

// isReserved reports whether b is one of the RFC 3986 reserved characters
// that Kong keeps percent-encoded while normalising (kong/tools/uri.lua,
// RESERVED_CHARS = "!*'();:@&=+$,/?%#[]").
func isReserved(b byte) bool {
	switch b {
	case '!', '*', '\'', '(', ')', ';', ':', '@', '&', '=', '+', '$', ',', '/', '?', '%', '#', '[', ']':
		return true
	}
	return false
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// needsNormalize reports whether NormalizePath could change p. It is the hot
// path's guard: most request paths start with '/', carry no '%', no "//" and
// no segment starting with '.', and Kong's algorithm returns those verbatim
// (every remaining step only ever copies whole "/segment" pieces).
func needsNormalize(p string) bool {
	if len(p) == 0 || p[0] != '/' {
		return len(p) != 0
	}
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '%':
			return true
		case '/':
			if i+1 < len(p) && (p[i+1] == '/' || p[i+1] == '.') {
				return true
			}
		}
	}
	return false
}

// NormalizePath normalises a request path (without query string) exactly like
// Kong's `normalize(uri, merge_slashes=true)` (kong/tools/uri.lua):
//
//  1. every %XX triplet (hex case-insensitive) is decoded unless the byte is
//     reserved; reserved triplets stay encoded with upper-cased hex;
//  2. dot segments are removed (RFC 3986 remove_dot_segments, Kong's variant);
//  3. runs of '/' are merged.
//
// Like Kong it is a single pass, so it is idempotent except for input whose
// decoding produces a new triplet (e.g. "%%32%65" → "%2e").
func NormalizePath(p string) string {
	if p == "" || p == "/" || !needsNormalize(p) {
		return p
	}
	if strings.IndexByte(p, '%') >= 0 {
		p = decodeUnreserved(p)
	}
	// Kong skips the segment loop when neither a dot nor "//" is present.
	if strings.IndexByte(p, '.') < 0 && !strings.Contains(p, "//") {
		return p
	}
	return removeDotSegments(p)
}

// decodeUnreserved implements step 1 of NormalizePath. It scans left to right
// like ngx.re.gsub: a '%' not followed by two hex digits is kept and scanning
// resumes at the next byte.
func decodeUnreserved(p string) string {
	var b strings.Builder
	b.Grow(len(p))
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c == '%' && i+2 < len(p) {
			hi, ok1 := unhex(p[i+1])
			lo, ok2 := unhex(p[i+2])
			if ok1 && ok2 {
				v := hi<<4 | lo
				if isReserved(v) {
					b.WriteByte('%')
					b.WriteByte(upperHex(p[i+1]))
					b.WriteByte(upperHex(p[i+2]))
				} else {
					b.WriteByte(v)
				}
				i += 2
				continue
			}
		}
		b.WriteByte(c)
	}
	return b.String()
}

func upperHex(c byte) byte {
	if 'a' <= c && c <= 'f' {
		return c - 'a' + 'A'
	}
	return c
}

// removeDotSegments is a literal port of the segment loop of Kong's
// normalize() with merge_slashes=true, so edge cases (paths not starting with
// '/', "/.." at the root, trailing "/.") come out exactly as in Kong.
func removeDotSegments(uri string) string {
	out := make([]byte, 0, len(uri))
	// starts[i] is the offset in out where pushed segment i begins, so that
	// "/../" can drop the last segment.
	var startsBuf [16]int
	starts := startsBuf[:0]
	pop := func() {
		if n := len(starts); n > 0 {
			out = out[:starts[n-1]]
			starts = starts[:n-1]
		}
	}
	for len(uri) > 0 {
		switch {
		case uri == "/.":
			uri = "/"
		case uri == "/..":
			uri = "/"
			pop()
		case uri == "." || uri == "..":
			uri = ""
		case strings.HasPrefix(uri, "../"):
			uri = uri[3:]
		case strings.HasPrefix(uri, "./"):
			uri = uri[2:]
		case strings.HasPrefix(uri, "/./"):
			uri = uri[2:]
		case strings.HasPrefix(uri, "/../"):
			uri = uri[3:]
			pop()
		case strings.HasPrefix(uri, "//"):
			uri = uri[1:]
		default:
			seg := uri
			if i := strings.IndexByte(uri[1:], '/'); i >= 0 {
				seg = uri[:i+1]
			}
			uri = uri[len(seg):]
			starts = append(starts, len(out))
			out = append(out, seg...)
		}
	}
	return string(out)
}

// escapeKeepTable[c] reports whether Kong's escape() leaves byte c as is.
var escapeKeepTable = func() (t [256]bool) {
	for c := 0; c < 256; c++ {
		t[c] = escapeKeepSlow(byte(c))
	}
	return t
}()

func escapeKeep(c byte) bool { return escapeKeepTable[c] }

// escapeKeepSlow is the definition: Kong's pattern
// `[^!#$&'()*+,/:;=?@[\]A-Z\d\-_.~%]` is applied case-insensitively.
func escapeKeepSlow(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '&', '\'', '(', ')', '*', '+', ',', '/', ':', ';', '=', '?', '@', '[', ']', '-', '_', '.', '~', '%':
		return true
	}
	return false
}

// escapedLen returns the length of s after escaping (== len(s) when nothing
// needs escaping).
func escapedLen(s string) int {
	n := len(s)
	for i := 0; i < len(s); i++ {
		if !escapeKeep(s[i]) {
			n += 2
		}
	}
	return n
}

const hexUpper = "0123456789ABCDEF"

func writeEscaped(b *strings.Builder, s string) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if escapeKeep(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexUpper[c>>4])
		b.WriteByte(hexUpper[c&15])
	}
}

// EscapePath re-escapes a normalised path for sending upstream like Kong's
// escape() (kong/tools/uri.lua): bytes outside the reserved/unreserved sets
// (space, '"', '<', '>', '\\', '^', '`', '{', '|', '}', controls, non-ASCII)
// become %XX; '%' itself is kept.
func EscapePath(s string) string {
	n := escapedLen(s)
	if n == len(s) {
		return s
	}
	var b strings.Builder
	b.Grow(n)
	writeEscaped(&b, s)
	return b.String()
}
