package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// DNS cache lifetimes. Go's resolver does not expose record TTLs, so kongfb
// uses fixed ones: a good answer is reused for dnsTTL (and kept, stale, if a
// refresh fails — Kong's dns_stale_ttl behaviour), a "not found" for
// dnsNotFoundTTL, any other failure for dnsErrorTTL.
const (
	dnsTTL         = 30 * time.Second
	dnsNotFoundTTL = 5 * time.Second
	dnsErrorTTL    = 1 * time.Second
	dnsTimeout     = 5 * time.Second
)

// errNameResolution marks a host that resolved to nothing.
var errNameResolution = errors.New("name resolution failed")

type dnsEntry struct {
	mu      sync.Mutex // held while resolving: one lookup per host at a time
	addrs   []netip.Addr
	err     error
	expires time.Time
}

// dnsCache resolves host names with Go's resolver and caches the answers.
// Like Kong's default dns_order (LAST,SRV,A,CNAME) it prefers A records;
// kongfb falls back to AAAA only when a name has no A record at all, and
// does not follow SRV records.
type dnsCache struct {
	mu       sync.Mutex
	entries  map[string]*dnsEntry
	resolver *net.Resolver
	now      func() time.Time
	// lookupFn replaces the resolver when set (tests).
	lookupFn func(host string) ([]netip.Addr, error)
}

func newDNSCache() *dnsCache {
	return &dnsCache{entries: map[string]*dnsEntry{}, resolver: net.DefaultResolver, now: time.Now}
}

// resolve returns the addresses of host (cached). The error wraps
// errNameResolution when the name does not exist or has no address.
func (c *dnsCache) resolve(host string) ([]netip.Addr, error) {
	c.mu.Lock()
	e := c.entries[host]
	if e == nil {
		e = &dnsEntry{}
		c.entries[host] = e
	}
	c.mu.Unlock()

	e.mu.Lock()
	defer e.mu.Unlock()
	now := c.now()
	if now.Before(e.expires) {
		return e.addrs, e.err
	}
	addrs, err := c.lookup(host)
	switch {
	case err == nil:
		e.addrs, e.err, e.expires = addrs, nil, now.Add(dnsTTL)
	case len(e.addrs) > 0:
		// Keep serving the last good answer (stale) rather than failing
		// traffic because the resolver hiccuped; retry soon.
		e.expires = now.Add(dnsErrorTTL)
	case errors.Is(err, errNameResolution):
		e.addrs, e.err, e.expires = nil, err, now.Add(dnsNotFoundTTL)
	default:
		e.addrs, e.err, e.expires = nil, err, now.Add(dnsErrorTTL)
	}
	return e.addrs, e.err
}

func (c *dnsCache) lookup(host string) ([]netip.Addr, error) {
	if c.lookupFn != nil {
		return c.lookupFn(host)
	}
	ctx, cancel := context.WithTimeout(context.Background(), dnsTimeout)
	defer cancel()
	addrs, err := c.resolver.LookupNetIP(ctx, "ip4", host)
	if err == nil && len(addrs) == 0 || isNotFound(err) {
		addrs, err = c.resolver.LookupNetIP(ctx, "ip6", host)
	}
	if err != nil {
		if isNotFound(err) {
			return nil, fmt.Errorf("resolve %s: %w: %v", host, errNameResolution, err)
		}
		return nil, fmt.Errorf("resolve %s: %w", host, err)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("resolve %s: %w: empty record", host, errNameResolution)
	}
	for i, a := range addrs {
		addrs[i] = a.Unmap()
	}
	return addrs, nil
}

func isNotFound(err error) bool {
	var de *net.DNSError
	if errors.As(err, &de) {
		return de.IsNotFound
	}
	var ae *net.AddrError
	return errors.As(err, &ae) // "no suitable address found"
}

// prune forgets hosts not in keep, so the cache does not grow with every
// host name ever configured.
func (c *dnsCache) prune(keep map[string]bool) {
	c.mu.Lock()
	for h := range c.entries {
		if !keep[h] {
			delete(c.entries, h)
		}
	}
	c.mu.Unlock()
}
