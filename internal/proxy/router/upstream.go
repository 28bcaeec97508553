package router

import "strings"

// sanitizePostfix is Kong's sanitize_uri_postfix (kong/router/utils.lua): a
// remainder of "." or ".." becomes empty and a leading "./" or "../" is
// dropped, so stripping "/route" from "/route../x" cannot climb upwards.
func sanitizePostfix(p string) string {
	switch {
	case p == "":
		return p
	case p == "." || p == "..":
		return ""
	case strings.HasPrefix(p, "./"):
		return p[2:]
	case strings.HasPrefix(p, "../"):
		return p[3:]
	}
	return p
}

// upstreamParts computes Kong's path_handling "v0" upstream path
// (kong/router/utils.lua get_upstream_uri) as up to three pieces to be
// concatenated, so that the caller can build the final (escaped) string with
// a single allocation.
//
// base is service.path or "/", req the normalised request path, prefix the
// matched part of the path when strip_path is set (the route's prefix path, or
// the whole regex match) and "/" otherwise (Kong's `match_t.prefix or "/"`).
func upstreamParts(base, req, prefix string, strip bool) (a, b, c string) {
	postfix := ""
	if len(prefix) < len(req) {
		postfix = sanitizePostfix(req[len(prefix):])
	}
	if strings.HasSuffix(base, "/") {
		if strip {
			switch {
			case postfix == "":
				if base == "/" {
					return "/", "", ""
				}
				if strings.HasSuffix(req, "/") {
					return base, "", ""
				}
				return base[:len(base)-1], "", ""
			case postfix[0] == '/':
				return base[:len(base)-1], postfix, ""
			default:
				return base, postfix, ""
			}
		}
		if len(req) > 0 {
			return base, req[1:], ""
		}
		return base, "", ""
	}
	if strip {
		switch {
		case postfix == "":
			if len(req) > 1 && req[len(req)-1] == '/' {
				return base, "/", ""
			}
			return base, "", ""
		case postfix[0] == '/':
			return base, postfix, ""
		default:
			return base, "/", postfix
		}
	}
	if req == "/" {
		return base, "", ""
	}
	return base, req, ""
}

// joinEscaped concatenates the pieces and applies Kong's escape() to the
// result. A single piece that needs no escaping is returned without copying.
func joinEscaped(a, b, c string) string {
	na, nb, nc := escapedLen(a), escapedLen(b), escapedLen(c)
	if na == len(a) && nb == len(b) && nc == len(c) {
		switch {
		case b == "" && c == "":
			return a
		case a == "" && c == "":
			return b
		}
	}
	var sb strings.Builder
	sb.Grow(na + nb + nc)
	writeEscaped(&sb, a)
	writeEscaped(&sb, b)
	writeEscaped(&sb, c)
	return sb.String()
}

// UpstreamPath returns the escaped upstream path for a normalised request
// path (see upstreamParts for the arguments). When the pieces spell req
// itself, as "/" + req[1:] does for a service without path, req is used
// as it is: no copy.
func UpstreamPath(base, req, prefix string, strip bool) string {
	a, b, c := upstreamParts(base, req, prefix, strip)
	if c == "" && b != "" && len(a)+len(b) == len(req) && req[len(a):] == b && req[:len(a)] == a {
		a, b = req, ""
	}
	return joinEscaped(a, b, c)
}
