package proxy

import (
	"strconv"
	"strings"
)

// Kong's error messages for responses the proxy produces itself.
const (
	msgNoRoute         = "no Route matched with those values"
	msgNoService       = "no Service found with those values"
	msgUseHTTPS        = "Please use HTTPS protocol"
	msgNoPeer          = "failure to get a peer from the ring-balancer"
	msgNameResolution  = "name resolution failed"
	msgBadGateway      = "An invalid response was received from the upstream server"
	msgUnavailable     = "The upstream server is currently unavailable"
	msgTimeout         = "The upstream server is timing out"
	msgUnexpected      = "An unexpected error occurred"
	msgPayloadTooLarge = "Payload too large"
)

// mimeKind is one of the content types Kong renders errors in.
type mimeKind uint8

const (
	mimeJSON mimeKind = iota
	mimeHTML
	mimeXML
	mimePlain
	mimeGRPC // application/grpc: Kong answers {"message": …} without a template
	nMimeKinds
)

var mimeContentTypes = [nMimeKinds]string{
	mimeJSON:  "application/json; charset=utf-8",
	mimeHTML:  "text/html; charset=utf-8",
	mimeXML:   "application/xml; charset=utf-8",
	mimePlain: "text/plain; charset=utf-8",
	mimeGRPC:  "application/json; charset=utf-8",
}

// errorTemplates are kong/tools/http.lua's ERROR_TEMPLATES, byte for byte
// (Lua long strings drop their first newline). The first %s is the message,
// the second the request id.
var errorTemplates = [nMimeKinds]string{
	mimeJSON:  "{\n  \"message\":\"%s\",\n  \"request_id\":\"%s\"\n}",
	mimeHTML:  "<!doctype html>\n<html>\n  <head>\n    <meta charset=\"utf-8\">\n    <title>Error</title>\n  </head>\n  <body>\n    <h1>Error</h1>\n    <p>%s.</p>\n    <p>request_id: %s</p>\n  </body>\n</html>\n",
	mimeXML:   "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<error>\n  <message>%s</message>\n  <requestid>%s</requestid>\n</error>\n",
	mimePlain: "%s\nrequest_id: %s\n",
}

// errorBody is a pre-rendered error body split around the request id, so
// that rendering one on the hot path is two appends and no formatting.
type errorBody struct{ pre, post string }

// renderedErrors caches the bodies per message; filled once at init for
// every message kongfb produces (the map is read-only afterwards).
var renderedErrors = map[string]*[nMimeKinds]errorBody{}

func init() {
	for _, m := range []string{msgNoRoute, msgNoService, msgUseHTTPS, msgNoPeer, msgNameResolution,
		msgBadGateway, msgUnavailable, msgTimeout, msgUnexpected, msgPayloadTooLarge} {
		renderedErrors[m] = renderError(m)
	}
}

func renderError(msg string) *[nMimeKinds]errorBody {
	var out [nMimeKinds]errorBody
	for k := mimeKind(0); k < nMimeKinds; k++ {
		if k == mimeGRPC {
			// kong.response.exit with a table body: cjson, no request id.
			out[k] = errorBody{pre: `{"message":` + strconv.Quote(msg) + `}`}
			continue
		}
		t := errorTemplates[k]
		i := strings.Index(t, "%s")
		j := strings.Index(t[i+2:], "%s") + i + 2
		out[k] = errorBody{pre: t[:i] + msg + t[i+2:j], post: t[j+2:]}
	}
	return &out
}

func errorBodies(msg string) *[nMimeKinds]errorBody {
	if b, ok := renderedErrors[msg]; ok {
		return b
	}
	return renderError(msg) // not on the hot path: every message we emit is pre-rendered
}

// mimeByName is kong/tools/http.lua's MIME_TYPES lookup (exact, case-sensitive
// keys, like the Lua table).
func mimeByName(s string) (mimeKind, bool) {
	switch s {
	case "application/json", "application":
		return mimeJSON, true
	case "text/html":
		return mimeHTML, true
	case "application/xml":
		return mimeXML, true
	case "text/plain", "text":
		return mimePlain, true
	case "application/grpc":
		return mimeGRPC, true
	case "default":
		return mimeJSON, true
	}
	return 0, false
}

// getMimeType is kong.tools.http.get_mime_type(content_header) with
// use_default = true: the parameters are cut off, "*/*" is the default,
// "type/*" looks up "type", anything unknown is the default (JSON).
func getMimeType(h string) mimeKind {
	h = strings.TrimSpace(h)
	if i := strings.IndexByte(h, ';'); i >= 0 {
		h = h[:i]
	}
	slash := strings.IndexByte(h, '/')
	if slash < 0 {
		return mimeJSON
	}
	sub := h[slash+1:]
	if j := strings.IndexByte(sub, '/'); j >= 0 {
		sub = sub[:j]
	}
	if sub == "*" {
		if h[:slash] == "*" {
			return mimeJSON
		}
		if k, ok := mimeByName(h[:slash]); ok {
			return k
		}
		return mimeJSON
	}
	if k, ok := mimeByName(h); ok {
		return k
	}
	return mimeJSON
}

// responseType is kong.tools.http.get_response_type(accept): of the
// comma-separated media ranges, the first one with the strictly highest q
// (> 0) decides; no header, or nothing parseable, gives JSON.
func responseType(accept string) mimeKind {
	kind := mimeJSON
	maxQ := 0.0
	for accept != "" {
		var entry string
		if i := strings.IndexByte(accept, ','); i >= 0 {
			entry, accept = accept[:i], accept[i+1:]
		} else {
			entry, accept = accept, ""
		}
		mt, q, ok := parseMediaRange(strings.TrimSpace(entry))
		if ok && q > maxQ {
			maxQ = q
			kind = getMimeType(mt)
		}
	}
	return kind
}

func isMediaTokenChar(c byte, first bool) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	case first:
		return false
	}
	switch c {
	case '-', '!', '#', '$', '&', '^', '_', '+', '.':
		return true
	}
	return false
}

// mediaToken matches Kong's `(?:[a-z0-9][a-z0-9-!#$&^_+.]+|\*)` (case
// insensitive) at the start of s and returns its length (0 = no match).
func mediaToken(s string) int {
	if s != "" && s[0] == '*' {
		return 1
	}
	if len(s) < 2 || !isMediaTokenChar(s[0], true) {
		return 0
	}
	n := 1
	for n < len(s) && isMediaTokenChar(s[n], false) {
		n++
	}
	if n < 2 {
		return 0
	}
	return n
}

// parseMediaRange follows the regex of get_response_type, anchored at the
// start only: "type/subtype" then any number of ";q=<qvalue>" or
// ";token[=value]" parameters. The last q seen wins; default 1.
func parseMediaRange(s string) (mediaType string, q float64, ok bool) {
	a := mediaToken(s)
	if a == 0 || a >= len(s) || s[a] != '/' {
		return "", 0, false
	}
	b := mediaToken(s[a+1:])
	if b == 0 {
		return "", 0, false
	}
	mediaType = s[:a+1+b]
	rest := s[a+1+b:]
	q = 1
	for {
		r := strings.TrimLeft(rest, " \t\r\n\f\v")
		if r == "" || r[0] != ';' {
			return mediaType, q, true
		}
		r = strings.TrimLeft(r[1:], " \t\r\n\f\v")
		if v, n := parseQ(r); n > 0 {
			q = v
			rest = r[n:]
			continue
		}
		n := mediaToken(r)
		if n == 0 || r[0] == '*' {
			return mediaType, q, true
		}
		r = r[n:]
		if r != "" && r[0] == '=' {
			e := strings.IndexByte(r, ';')
			if e < 0 {
				e = len(r)
			}
			r = r[e:]
		}
		rest = r
	}
}

// parseQ matches `q=(1(?:\.0{0,3}|)|0(?:\.\d{0,3}|))`; n is the length
// consumed (0 = no match).
func parseQ(s string) (float64, int) {
	if len(s) < 3 || s[0] != 'q' && s[0] != 'Q' || s[1] != '=' {
		return 0, 0
	}
	switch s[2] {
	case '1':
		n := 3
		if n < len(s) && s[n] == '.' {
			n++
			for k := 0; k < 3 && n < len(s) && s[n] == '0'; k++ {
				n++
			}
		}
		return 1, n
	case '0':
		n := 3
		v := 0.0
		if n < len(s) && s[n] == '.' {
			n++
			scale := 0.1
			for k := 0; k < 3 && n < len(s) && s[n] >= '0' && s[n] <= '9'; k++ {
				v += float64(s[n]-'0') * scale
				scale /= 10
				n++
			}
		}
		return v, n
	}
	return 0, 0
}

// errorMimeForNginx picks the content type of an nginx-produced error
// (kong/error_handlers.lua): the Accept header, else the request's
// Content-Type, else error_default_type (text/plain); a value starting with
// application/grpc gets the bare {"message": …} body.
func errorMimeForNginx(accept, contentType string) mimeKind {
	h := accept
	if h == "" {
		h = contentType
		if h == "" {
			h = "text/plain"
		}
	}
	if strings.HasPrefix(h, "application/grpc") {
		return mimeGRPC
	}
	k := responseType(h)
	if k == mimeGRPC {
		return mimeJSON
	}
	return k
}

// errorMimeForKong picks the content type of kong.response.error: from the
// Accept header only, default JSON.
func errorMimeForKong(accept string) mimeKind {
	k := responseType(accept)
	if k == mimeGRPC {
		// Kong would render the empty gRPC template; kongfb does not proxy
		// gRPC, so answer JSON rather than an empty body.
		return mimeJSON
	}
	return k
}
