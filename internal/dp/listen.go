package dp

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Listen is one entry of a Kong listen directive (proxy_listen, status_listen):
// an address to bind and the nginx flags that followed it.
type Listen struct {
	Addr string // host:port for net.Listen
	// Ignored lists the flags kongfb accepts for compatibility with Kong's
	// kong.conf values but has no use for (reuseport, backlog=N, ...). The
	// caller logs them at debug level so a copied KONG_PROXY_LISTEN just works.
	Ignored []string
}

// ParseListen parses a Kong listen value such as
// "0.0.0.0:8000 reuseport backlog=16384, 127.0.0.1:8001" or "off".
// "off" (alone) yields no listeners. `directive` names the setting in errors.
//
// Flags that change what a client must speak (ssl, proxy_protocol) are
// rejected rather than ignored: silently serving plain HTTP where Kong would
// terminate TLS would break every client in a way that is hard to diagnose.
func ParseListen(directive, value string) ([]Listen, error) {
	v := strings.TrimSpace(value)
	if strings.EqualFold(v, "off") {
		return nil, nil
	}
	if v == "" {
		return nil, fmt.Errorf("%s: empty value (use \"off\" to disable the listener)", directive)
	}
	var out []Listen
	for i, entry := range strings.Split(v, ",") {
		fields := strings.Fields(entry)
		if len(fields) == 0 {
			return nil, fmt.Errorf("%s: entry %d is empty in %q", directive, i+1, value)
		}
		if strings.EqualFold(fields[0], "off") {
			return nil, fmt.Errorf("%s: \"off\" cannot be combined with other listeners in %q", directive, value)
		}
		addr, err := normaliseListenAddr(fields[0])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", directive, err)
		}
		l := Listen{Addr: addr}
		for _, flag := range fields[1:] {
			name, arg, hasArg := strings.Cut(flag, "=")
			switch name {
			case "ssl", "proxy_protocol":
				return nil, fmt.Errorf("%s: %q: the %s flag is not supported by kongfb (it would change the protocol clients must speak)", directive, strings.TrimSpace(entry), name)
			case "http2", "reuseport", "deferred", "bind":
				if hasArg {
					return nil, fmt.Errorf("%s: %q: flag %s takes no value", directive, strings.TrimSpace(entry), name)
				}
			case "backlog":
				if n, err := strconv.Atoi(arg); !hasArg || err != nil || n < 0 {
					return nil, fmt.Errorf("%s: %q: backlog must be backlog=<number>", directive, strings.TrimSpace(entry))
				}
			case "ipv6only":
				if arg != "on" && arg != "off" {
					return nil, fmt.Errorf("%s: %q: ipv6only must be ipv6only=on or ipv6only=off", directive, strings.TrimSpace(entry))
				}
			case "so_keepalive":
				if !hasArg || arg == "" {
					return nil, fmt.Errorf("%s: %q: so_keepalive needs a value (on, off or idle:intvl:cnt)", directive, strings.TrimSpace(entry))
				}
			default:
				return nil, fmt.Errorf("%s: %q: unknown flag %q (Kong accepts ssl, http2, proxy_protocol, deferred, bind, reuseport, backlog=N, ipv6only=on|off, so_keepalive=...)", directive, strings.TrimSpace(entry), flag)
			}
			l.Ignored = append(l.Ignored, flag)
		}
		out = append(out, l)
	}
	return out, nil
}

// normaliseListenAddr checks an "ip:port" (or "[ipv6]:port", "*:port",
// "hostname:port") address and returns it in the form net.Listen takes.
func normaliseListenAddr(s string) (string, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", fmt.Errorf("invalid address %q: want ip:port, e.g. 0.0.0.0:8000", s)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return "", fmt.Errorf("invalid port in %q: want 0-65535", s)
	}
	if host == "*" {
		host = ""
	}
	return net.JoinHostPort(host, port), nil
}
