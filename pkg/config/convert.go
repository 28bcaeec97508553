package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
)

// Conversions between validated generic entities (Admin-API form: foreign
// keys as {"id": …}) and the typed structs of types.go.

func gStr(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}

func gStrPtr(m map[string]any, k string) *string {
	if s, ok := m[k].(string); ok {
		return &s
	}
	return nil
}

func gInt(m map[string]any, k string) int {
	n, _ := isInt(m[k])
	return int(n)
}

func gInt64(m map[string]any, k string) int64 {
	n, _ := isInt(m[k])
	return n
}

func gIntPtr(m map[string]any, k string) *int {
	if n, ok := isInt(m[k]); ok {
		i := int(n)
		return &i
	}
	return nil
}

func gFloat(m map[string]any, k string) float64 {
	f, _ := isNumber(m[k])
	return f
}

func gBool(m map[string]any, k string) bool {
	b, _ := m[k].(bool)
	return b
}

func gBoolPtr(m map[string]any, k string) *bool {
	if b, ok := m[k].(bool); ok {
		return &b
	}
	return nil
}

// gStrs returns nil for null/absent and an empty (non-nil) slice for [],
// so the export distinguishes them like Kong does.
func gStrs(m map[string]any, k string) []string {
	a, ok := asArray(m[k])
	if !ok {
		return nil
	}
	out := make([]string, 0, len(a))
	for _, e := range a {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func gMap(m map[string]any, k string) map[string]any {
	r, _ := asRecord(m[k])
	return r
}

// gFK reads a foreign key in either form ({"id": x} or a bare id).
func gFK(m map[string]any, k string) *string {
	switch t := m[k].(type) {
	case string:
		return &t
	case map[string]any:
		if id, ok := t["id"].(string); ok {
			return &id
		}
	}
	return nil
}

func gCIDRPorts(m map[string]any, k string) []CIDRPort {
	a, ok := asArray(m[k])
	if !ok {
		return nil
	}
	out := make([]CIDRPort, 0, len(a))
	for _, e := range a {
		r, _ := e.(map[string]any)
		if r == nil {
			continue
		}
		out = append(out, CIDRPort{IP: gStrPtr(r, "ip"), Port: gIntPtr(r, "port")})
	}
	return out
}

func gHeaders(m map[string]any, k string) map[string][]string {
	r, ok := asRecord(m[k])
	if !ok || m[k] == nil {
		return nil
	}
	out := make(map[string][]string, len(r))
	for hk := range r {
		out[hk] = gStrs(r, hk)
	}
	return out
}

func toService(m map[string]any) *Service {
	return &Service{
		ID: gStr(m, "id"), CreatedAt: gInt64(m, "created_at"), UpdatedAt: gInt64(m, "updated_at"),
		Name: gStrPtr(m, "name"), Retries: gInt(m, "retries"), Protocol: gStr(m, "protocol"),
		Host: gStr(m, "host"), Port: gInt(m, "port"), Path: gStrPtr(m, "path"),
		ConnectTimeout: gInt(m, "connect_timeout"), WriteTimeout: gInt(m, "write_timeout"),
		ReadTimeout: gInt(m, "read_timeout"), Tags: gStrs(m, "tags"),
		ClientCertificate: gFK(m, "client_certificate"), TLSVerify: gBoolPtr(m, "tls_verify"),
		TLSVerifyDepth: gIntPtr(m, "tls_verify_depth"), CACertificates: gStrs(m, "ca_certificates"),
		Enabled: gBool(m, "enabled"), WsID: gStr(m, "ws_id"),
	}
}

func toRoute(m map[string]any) *Route {
	return &Route{
		ID: gStr(m, "id"), CreatedAt: gInt64(m, "created_at"), UpdatedAt: gInt64(m, "updated_at"),
		Name: gStrPtr(m, "name"), Protocols: gStrs(m, "protocols"), Methods: gStrs(m, "methods"),
		Hosts: gStrs(m, "hosts"), Paths: gStrs(m, "paths"), Headers: gHeaders(m, "headers"),
		HTTPSRedirectStatusCode: gInt(m, "https_redirect_status_code"),
		RegexPriority:           gInt64(m, "regex_priority"), StripPath: gBool(m, "strip_path"),
		PathHandling: gStr(m, "path_handling"), PreserveHost: gBool(m, "preserve_host"),
		RequestBuffering: gBool(m, "request_buffering"), ResponseBuffering: gBool(m, "response_buffering"),
		SNIs: gStrs(m, "snis"), Sources: gCIDRPorts(m, "sources"), Destinations: gCIDRPorts(m, "destinations"),
		Tags: gStrs(m, "tags"), Service: gFK(m, "service"), WsID: gStr(m, "ws_id"),
	}
}

func toUpstream(m map[string]any) *Upstream {
	return &Upstream{
		ID: gStr(m, "id"), CreatedAt: gInt64(m, "created_at"), UpdatedAt: gInt64(m, "updated_at"),
		Name: gStr(m, "name"), Algorithm: gStr(m, "algorithm"), HashOn: gStr(m, "hash_on"),
		HashFallback: gStr(m, "hash_fallback"), HashOnHeader: gStrPtr(m, "hash_on_header"),
		HashFallbackHeader: gStrPtr(m, "hash_fallback_header"), HashOnCookie: gStrPtr(m, "hash_on_cookie"),
		HashOnCookiePath: gStr(m, "hash_on_cookie_path"), HashOnQueryArg: gStrPtr(m, "hash_on_query_arg"),
		HashFallbackQueryArg: gStrPtr(m, "hash_fallback_query_arg"), HashOnURICapture: gStrPtr(m, "hash_on_uri_capture"),
		HashFallbackURICapture: gStrPtr(m, "hash_fallback_uri_capture"), Slots: gInt(m, "slots"),
		Healthchecks: gMap(m, "healthchecks"), Tags: gStrs(m, "tags"), HostHeader: gStrPtr(m, "host_header"),
		ClientCertificate: gFK(m, "client_certificate"), UseSrvName: gBool(m, "use_srv_name"), WsID: gStr(m, "ws_id"),
	}
}

func toTarget(m map[string]any) *Target {
	up := ""
	if p := gFK(m, "upstream"); p != nil {
		up = *p
	}
	return &Target{
		ID: gStr(m, "id"), CreatedAt: gFloat(m, "created_at"), UpdatedAt: gFloat(m, "updated_at"),
		Upstream: up, Target: gStr(m, "target"), Weight: gInt(m, "weight"), Tags: gStrs(m, "tags"), WsID: gStr(m, "ws_id"),
	}
}

func toConsumer(m map[string]any) *Consumer {
	return &Consumer{
		ID: gStr(m, "id"), CreatedAt: gInt64(m, "created_at"), UpdatedAt: gInt64(m, "updated_at"),
		Username: gStrPtr(m, "username"), CustomID: gStrPtr(m, "custom_id"), Tags: gStrs(m, "tags"), WsID: gStr(m, "ws_id"),
	}
}

func toPlugin(m map[string]any) *Plugin {
	cfg := gMap(m, "config")
	if cfg == nil {
		cfg = map[string]any{}
	}
	return &Plugin{
		ID: gStr(m, "id"), CreatedAt: gInt64(m, "created_at"), UpdatedAt: gInt64(m, "updated_at"),
		Name: gStr(m, "name"), InstanceName: gStrPtr(m, "instance_name"), Route: gFK(m, "route"),
		Service: gFK(m, "service"), Consumer: gFK(m, "consumer"), Config: cfg,
		Protocols: gStrs(m, "protocols"), Enabled: gBool(m, "enabled"), Tags: gStrs(m, "tags"), WsID: gStr(m, "ws_id"),
	}
}

func toCertificate(m map[string]any) *Certificate {
	return &Certificate{
		ID: gStr(m, "id"), CreatedAt: gInt64(m, "created_at"), UpdatedAt: gInt64(m, "updated_at"),
		Cert: gStr(m, "cert"), Key: gStr(m, "key"), CertAlt: gStrPtr(m, "cert_alt"), KeyAlt: gStrPtr(m, "key_alt"),
		Tags: gStrs(m, "tags"), WsID: gStr(m, "ws_id"),
	}
}

func toSNI(m map[string]any) *SNI {
	c := ""
	if p := gFK(m, "certificate"); p != nil {
		c = *p
	}
	return &SNI{
		ID: gStr(m, "id"), CreatedAt: gInt64(m, "created_at"), UpdatedAt: gInt64(m, "updated_at"),
		Name: gStr(m, "name"), Certificate: c, Tags: gStrs(m, "tags"), WsID: gStr(m, "ws_id"),
	}
}

func toCACertificate(m map[string]any) *CACertificate {
	return &CACertificate{
		ID: gStr(m, "id"), CreatedAt: gInt64(m, "created_at"), UpdatedAt: gInt64(m, "updated_at"),
		Cert: gStr(m, "cert"), CertDigest: gStrPtr(m, "cert_digest"), Tags: gStrs(m, "tags"), WsID: gStr(m, "ws_id"),
	}
}

func toWorkspace(m map[string]any) *Workspace {
	return &Workspace{
		ID: gStr(m, "id"), Name: gStr(m, "name"), Comment: gStrPtr(m, "comment"),
		Config: gMap(m, "config"), Meta: gMap(m, "meta"),
		CreatedAt: gInt64(m, "created_at"), UpdatedAt: gInt64(m, "updated_at"),
	}
}

// addTyped appends a validated entity to the typed config.
func (c *Config) addTyped(coll string, m map[string]any) {
	c.appendTyped(toTyped(coll, m))
}

// toTyped converts a validated record of a core collection to its entity
// type (a pointer), nil for other collections.
func toTyped(coll string, m map[string]any) any {
	switch coll {
	case CollServices:
		return toService(m)
	case CollRoutes:
		return toRoute(m)
	case CollUpstreams:
		return toUpstream(m)
	case CollTargets:
		return toTarget(m)
	case CollConsumers:
		return toConsumer(m)
	case CollPlugins:
		return toPlugin(m)
	case CollCertificates:
		return toCertificate(m)
	case CollSNIs:
		return toSNI(m)
	case CollCACertificates:
		return toCACertificate(m)
	case CollWorkspaces:
		return toWorkspace(m)
	}
	return nil
}

// appendTyped adds an entity made by toTyped to its collection.
func (c *Config) appendTyped(v any) {
	switch t := v.(type) {
	case *Service:
		c.Services = append(c.Services, t)
	case *Route:
		c.Routes = append(c.Routes, t)
	case *Upstream:
		c.Upstreams = append(c.Upstreams, t)
	case *Target:
		c.Targets = append(c.Targets, t)
	case *Consumer:
		c.Consumers = append(c.Consumers, t)
	case *Plugin:
		c.Plugins = append(c.Plugins, t)
	case *Certificate:
		c.Certificates = append(c.Certificates, t)
	case *SNI:
		c.SNIs = append(c.SNIs, t)
	case *CACertificate:
		c.CACertificates = append(c.CACertificates, t)
	case *Workspace:
		c.Workspaces = append(c.Workspaces, t)
	}
}

// genericOf turns a typed entity into generic JSON values (numbers as int64
// or float64, like the decoders produce).
func genericOf(v any) (map[string]any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var raw any
	if err := dec.Decode(&raw); err != nil {
		return nil, err
	}
	m, ok := normalizeNumbers(raw).(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%T is not an object", v)
	}
	return m, nil
}

func normalizeNumbers(v any) any {
	switch t := v.(type) {
	case json.Number:
		return numberValue(string(t))
	case map[string]any:
		for k, e := range t {
			t[k] = normalizeNumbers(e)
		}
		return t
	case []any:
		for i, e := range t {
			t[i] = normalizeNumbers(e)
		}
		return t
	}
	return v
}

// typedRows lists a typed config's core entities as generic maps in
// Admin-API form (foreign keys as {"id": …}), per collection, in
// topological order.
func (c *Config) typedRows() ([]string, map[string][]map[string]any, error) {
	order := []string{CollWorkspaces, CollConsumers, CollCertificates, CollCACertificates, CollServices,
		CollRoutes, CollSNIs, CollUpstreams, CollTargets, CollPlugins}
	out := map[string][]map[string]any{}
	add := func(coll string, v any) error {
		m, ok := adminMap(v)
		if !ok {
			var err error
			if m, err = genericOf(v); err != nil {
				return fmt.Errorf("encode %s: %w", coll, err)
			}
			for _, f := range schemas[coll].foreignFields() {
				if s, ok := m[f.Name].(string); ok {
					m[f.Name] = map[string]any{"id": s}
				}
			}
		}
		out[coll] = append(out[coll], m)
		return nil
	}
	var err error
	each := func(coll string, n int, get func(i int) any) {
		for i := 0; i < n && err == nil; i++ {
			if v := get(i); v != nil {
				err = add(coll, v)
			}
		}
	}
	each(CollWorkspaces, len(c.Workspaces), func(i int) any { return nilIfNil(c.Workspaces[i]) })
	each(CollConsumers, len(c.Consumers), func(i int) any { return nilIfNil(c.Consumers[i]) })
	each(CollCertificates, len(c.Certificates), func(i int) any { return nilIfNil(c.Certificates[i]) })
	each(CollCACertificates, len(c.CACertificates), func(i int) any { return nilIfNil(c.CACertificates[i]) })
	each(CollServices, len(c.Services), func(i int) any { return nilIfNil(c.Services[i]) })
	each(CollRoutes, len(c.Routes), func(i int) any { return nilIfNil(c.Routes[i]) })
	each(CollSNIs, len(c.SNIs), func(i int) any { return nilIfNil(c.SNIs[i]) })
	each(CollUpstreams, len(c.Upstreams), func(i int) any { return nilIfNil(c.Upstreams[i]) })
	each(CollTargets, len(c.Targets), func(i int) any { return nilIfNil(c.Targets[i]) })
	each(CollPlugins, len(c.Plugins), func(i int) any { return nilIfNil(c.Plugins[i]) })
	return order, out, err
}

// nilIfNil turns a typed nil pointer into an untyped nil.
func nilIfNil[T any](p *T) any {
	if p == nil {
		return nil
	}
	return p
}

func sortedCollections(m map[string][]map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Direct typed → generic conversion (Admin-API form) for Validate: avoids
// a JSON round trip per entity, which dominated Validate's cost.

func pStr(p *string) any {
	if p == nil {
		return nil
	}
	return *p
}

func pFK(p *string) any {
	if p == nil {
		return nil
	}
	return map[string]any{"id": *p}
}

func pInt(p *int) any {
	if p == nil {
		return nil
	}
	return int64(*p)
}

func pBool(p *bool) any {
	if p == nil {
		return nil
	}
	return *p
}

func sList(s []string) any {
	if s == nil {
		return nil
	}
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

func cidrList(l []CIDRPort) any {
	if l == nil {
		return nil
	}
	out := make([]any, len(l))
	for i, c := range l {
		out[i] = map[string]any{"ip": pStr(c.IP), "port": pInt(c.Port)}
	}
	return out
}

func headerMap(h map[string][]string) any {
	if h == nil {
		return nil
	}
	out := make(map[string]any, len(h))
	for k, v := range h {
		out[k] = sList(v)
	}
	return out
}

func withWs(m map[string]any, ws string) map[string]any {
	if ws != "" {
		m["ws_id"] = ws
	}
	return m
}

func adminMap(v any) (map[string]any, bool) {
	switch e := v.(type) {
	case *Service:
		return withWs(map[string]any{"id": e.ID, "created_at": e.CreatedAt, "updated_at": e.UpdatedAt,
			"name": pStr(e.Name), "retries": int64(e.Retries), "protocol": e.Protocol, "host": e.Host,
			"port": int64(e.Port), "path": pStr(e.Path), "connect_timeout": int64(e.ConnectTimeout),
			"write_timeout": int64(e.WriteTimeout), "read_timeout": int64(e.ReadTimeout), "tags": sList(e.Tags),
			"client_certificate": pFK(e.ClientCertificate), "tls_verify": pBool(e.TLSVerify),
			"tls_verify_depth": pInt(e.TLSVerifyDepth), "ca_certificates": sList(e.CACertificates),
			"enabled": e.Enabled}, e.WsID), true
	case *Route:
		return withWs(map[string]any{"id": e.ID, "created_at": e.CreatedAt, "updated_at": e.UpdatedAt,
			"name": pStr(e.Name), "protocols": sList(e.Protocols), "methods": sList(e.Methods),
			"hosts": sList(e.Hosts), "paths": sList(e.Paths), "headers": headerMap(e.Headers),
			"https_redirect_status_code": int64(e.HTTPSRedirectStatusCode), "regex_priority": e.RegexPriority,
			"strip_path": e.StripPath, "path_handling": e.PathHandling, "preserve_host": e.PreserveHost,
			"request_buffering": e.RequestBuffering, "response_buffering": e.ResponseBuffering,
			"snis": sList(e.SNIs), "sources": cidrList(e.Sources), "destinations": cidrList(e.Destinations),
			"tags": sList(e.Tags), "service": pFK(e.Service)}, e.WsID), true
	case *Upstream:
		var hc any
		if e.Healthchecks != nil {
			hc = deepCopy(e.Healthchecks)
		}
		return withWs(map[string]any{"id": e.ID, "created_at": e.CreatedAt, "updated_at": e.UpdatedAt,
			"name": e.Name, "algorithm": e.Algorithm, "hash_on": e.HashOn, "hash_fallback": e.HashFallback,
			"hash_on_header": pStr(e.HashOnHeader), "hash_fallback_header": pStr(e.HashFallbackHeader),
			"hash_on_cookie": pStr(e.HashOnCookie), "hash_on_cookie_path": e.HashOnCookiePath,
			"hash_on_query_arg": pStr(e.HashOnQueryArg), "hash_fallback_query_arg": pStr(e.HashFallbackQueryArg),
			"hash_on_uri_capture": pStr(e.HashOnURICapture), "hash_fallback_uri_capture": pStr(e.HashFallbackURICapture),
			"slots": int64(e.Slots), "healthchecks": hc, "tags": sList(e.Tags), "host_header": pStr(e.HostHeader),
			"client_certificate": pFK(e.ClientCertificate), "use_srv_name": e.UseSrvName}, e.WsID), true
	case *Target:
		return withWs(map[string]any{"id": e.ID, "created_at": e.CreatedAt, "updated_at": e.UpdatedAt,
			"upstream": map[string]any{"id": e.Upstream}, "target": e.Target, "weight": int64(e.Weight),
			"tags": sList(e.Tags)}, e.WsID), true
	case *Consumer:
		return withWs(map[string]any{"id": e.ID, "created_at": e.CreatedAt, "updated_at": e.UpdatedAt,
			"username": pStr(e.Username), "custom_id": pStr(e.CustomID), "tags": sList(e.Tags)}, e.WsID), true
	case *Plugin:
		var cfg any
		if e.Config != nil {
			cfg = deepCopy(e.Config)
		}
		return withWs(map[string]any{"id": e.ID, "created_at": e.CreatedAt, "updated_at": e.UpdatedAt,
			"name": e.Name, "instance_name": pStr(e.InstanceName), "route": pFK(e.Route), "service": pFK(e.Service),
			"consumer": pFK(e.Consumer), "config": cfg, "protocols": sList(e.Protocols), "enabled": e.Enabled,
			"tags": sList(e.Tags)}, e.WsID), true
	case *Certificate:
		return withWs(map[string]any{"id": e.ID, "created_at": e.CreatedAt, "updated_at": e.UpdatedAt,
			"cert": e.Cert, "key": e.Key, "cert_alt": pStr(e.CertAlt), "key_alt": pStr(e.KeyAlt),
			"tags": sList(e.Tags)}, e.WsID), true
	case *SNI:
		return withWs(map[string]any{"id": e.ID, "created_at": e.CreatedAt, "updated_at": e.UpdatedAt,
			"name": e.Name, "certificate": map[string]any{"id": e.Certificate}, "tags": sList(e.Tags)}, e.WsID), true
	case *CACertificate:
		return withWs(map[string]any{"id": e.ID, "created_at": e.CreatedAt, "updated_at": e.UpdatedAt,
			"cert": e.Cert, "cert_digest": pStr(e.CertDigest), "tags": sList(e.Tags)}, e.WsID), true
	}
	return nil, false
}
