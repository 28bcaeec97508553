package config

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Schema tables of Kong 3.9.1's core entities (kong/db/schema/entities/*.lua).

var protocolNames = []any{"grpc", "grpcs", "http", "https", "tcp", "tls", "tls_passthrough", "udp"}

func idField() *field { return newField("id", tString, uuidF(), auto()) }
func tsField(name string) *field {
	return newField(name, tInteger, auto())
}
func tsMsField(name string) *field {
	return newField(name, tNumber, auto())
}

func validateTag(v any) string {
	s := v.(string)
	ok := utf8.ValidString(s)
	for i := 0; ok && i < len(s); i++ {
		c := s[i]
		if c < 0x80 && (c < 0x21 && c != ' ' || c == 0x7f || c == ',' || c == '/') {
			ok = false
		}
	}
	if !ok {
		return fmt.Sprintf("invalid tag '%s': expected printable ascii (except `,` and `/`) or valid utf-8 sequences", s)
	}
	return ""
}

func tagsField() *field {
	return newField("tags", tSet, elems(newField("", tString, custom(validateTag))))
}

func nameField(opts ...fieldOpt) *field {
	return newField("name", tString, append([]fieldOpt{unique(), custom(validateUTF8Name)}, opts...)...)
}

func foreignField(name, coll string, opts ...fieldOpt) *field {
	return newField(name, tForeign, append([]fieldOpt{foreignTo(coll, "")}, opts...)...)
}

func timeoutField(name string) *field {
	return newField(name, tInteger, dflt(int64(60000)), between(1, 2147483646))
}

// conditional builds Kong's `conditional` entity check.
func conditional(ifField string, ifMatch func(any) bool, ifDesc map[string]any, thenField string, then func(v any, present bool) string, thenDesc map[string]any) entityCheck {
	return entityCheck{
		Fields: []string{ifField, thenField},
		Run: func(e map[string]any) []checkErr {
			if !ifMatch(e[ifField]) {
				return nil
			}
			v, present := e[thenField]
			if msg := then(v, present && v != nil); msg != "" {
				return []checkErr{{thenField, msg}, {"", fmt.Sprintf("failed conditional validation given value of field '%s'", ifField)}}
			}
			return nil
		},
		Desc: map[string]any{"conditional": map[string]any{
			"if_field": ifField, "if_match": ifDesc, "then_field": thenField, "then_match": thenDesc,
		}},
	}
}

func inSet(vals ...string) func(any) bool {
	return func(v any) bool {
		s, ok := v.(string)
		if !ok {
			return false
		}
		for _, x := range vals {
			if s == x {
				return true
			}
		}
		return false
	}
}

func notInSet(vals ...string) func(any) bool {
	in := inSet(vals...)
	return func(v any) bool { _, ok := v.(string); return ok && !in(v) }
}

func strsToAny(vals ...string) []any {
	out := make([]any, len(vals))
	for i, v := range vals {
		out[i] = v
	}
	return out
}

func mustBeNull(v any, present bool) string {
	if present {
		return "value must be null"
	}
	return ""
}

func mustBePresent(v any, present bool) string {
	if !present {
		return "required field missing"
	}
	return ""
}

func mustBeOneOf(vals ...string) func(any, bool) string {
	return func(v any, present bool) string {
		if !present || !inSet(vals...)(v) {
			return oneOfMsg(strsToAny(vals...))
		}
		return ""
	}
}

func atLeastOneOf(names ...string) entityCheck {
	quoted := quoteList(names)
	return entityCheck{
		Fields: names,
		Run: func(e map[string]any) []checkErr {
			for _, n := range names {
				if !isBlank(e[n]) {
					return nil
				}
			}
			return []checkErr{{"", "at least one of these fields must be non-empty: " + quoted}}
		},
		Desc: map[string]any{"at_least_one_of": strsToAny(names...)},
	}
}

func mutuallyRequired(names ...string) entityCheck {
	quoted := quoteList(names)
	return entityCheck{
		Fields: names,
		Run: func(e map[string]any) []checkErr {
			set := 0
			for _, n := range names {
				if !isBlank(e[n]) {
					set++
				}
			}
			if set != 0 && set != len(names) {
				return []checkErr{{"", "all or none of these fields must be set: " + quoted}}
			}
			return nil
		},
		Desc: map[string]any{"mutually_required": strsToAny(names...)},
	}
}

func distinct(a, b string) entityCheck {
	return entityCheck{
		Fields: []string{a, b},
		Run: func(e map[string]any) []checkErr {
			va, vb := e[a], e[b]
			if va != nil && vb != nil && va == vb {
				return []checkErr{{"", fmt.Sprintf("values of these fields must be distinct: '%s', '%s'", a, b)}}
			}
			return nil
		},
		Desc: map[string]any{"distinct": []any{a, b}},
	}
}

func isBlank(v any) bool {
	switch t := v.(type) {
	case nil:
		return true
	case string:
		return t == ""
	case []any:
		return len(t) == 0
	case map[string]any:
		return len(t) == 0
	}
	return false
}

// ---------------------------------------------------------------- services

var urlRe = regexp.MustCompile(`^(?:([A-Za-z0-9][A-Za-z0-9+.\-]*):)?(?://([^/?#]*))?([^?#]*)(?:\?[^#]*)?(?:#.*)?$`)

// expandServiceURL applies the `url` shorthand like Kong (LuaSocket
// url.parse): protocol, host, port and path are taken from the URL and
// override the same fields given separately.
func expandServiceURL(e map[string]any) *errTree {
	raw, ok := e["url"]
	if !ok {
		return nil
	}
	delete(e, "url")
	if raw == nil {
		return nil
	}
	s, ok := raw.(string)
	if !ok {
		t := &errTree{}
		t.setField("url", leaf("expected a string"))
		return t
	}
	m := urlRe.FindStringSubmatch(s)
	var scheme, authority, path string
	if m != nil {
		scheme, authority, path = strings.ToLower(m[1]), m[2], m[3]
	} else {
		path = s
	}
	host, port := authority, ""
	if i := strings.LastIndexByte(host, '@'); i >= 0 {
		host = host[i+1:]
	}
	if strings.HasPrefix(host, "[") {
		if j := strings.IndexByte(host, ']'); j >= 0 {
			if rest := host[j+1:]; strings.HasPrefix(rest, ":") {
				port = rest[1:]
			}
			host = host[1:j]
		}
	} else if i := strings.LastIndexByte(host, ':'); i >= 0 {
		host, port = host[:i], host[i+1:]
	}
	var portVal any
	if port != "" {
		if n, err := strconv.ParseInt(port, 10, 64); err == nil {
			portVal = n
		} else {
			portVal = port // reported as "expected an integer"
		}
	}
	protocol := any(nil)
	if scheme != "" {
		protocol = scheme
	} else if n, ok := portVal.(int64); ok && n == 443 {
		protocol = "https"
	} else {
		protocol = "http"
	}
	if portVal == nil {
		if protocol == "https" {
			portVal = int64(443)
		} else {
			portVal = int64(80)
		}
	}
	e["protocol"] = protocol
	if host != "" {
		e["host"] = host
	} else {
		e["host"] = nil
	}
	e["port"] = portVal
	if path != "" {
		e["path"] = path
	} else {
		e["path"] = nil
	}
	return nil
}

var servicesSchema = &entitySchema{
	Name: CollServices, Singular: "service", EndpointKey: "name", Workspaceable: true,
	Record: newField("", tRecord, fields(
		idField(),
		tsField("created_at"),
		tsField("updated_at"),
		nameField(),
		newField("retries", tInteger, dflt(int64(5)), between(0, 32767)),
		newField("protocol", tString, required(), dflt("http"), oneOf(protocolNames...)),
		newField("host", tString, required(), custom(validateHost)),
		newField("port", tInteger, required(), dflt(int64(80)), between(0, 65535)),
		newField("path", tString, custom(validatePath)),
		timeoutField("connect_timeout"),
		timeoutField("write_timeout"),
		timeoutField("read_timeout"),
		tagsField(),
		foreignField("client_certificate", CollCertificates),
		newField("tls_verify", tBoolean),
		newField("tls_verify_depth", tInteger, dflt(nil), between(0, 64)),
		newField("ca_certificates", tArray, elems(newField("", tString, uuidF()))),
		newField("enabled", tBoolean, required(), dflt(true)),
	)),
	Shorthand: expandServiceURL,
	Checks: []entityCheck{
		conditional("protocol", inSet("tcp", "tls", "tls_passthrough", "udp", "grpc", "grpcs"),
			map[string]any{"one_of": strsToAny("tcp", "tls", "tls_passthrough", "udp", "grpc", "grpcs")},
			"path", mustBeNull, map[string]any{"eq": nil}),
		conditional("protocol", notInSet("https", "tls"), map[string]any{"not_one_of": strsToAny("https", "tls")},
			"client_certificate", mustBeNull, map[string]any{"eq": nil}),
		conditional("protocol", notInSet("https", "tls"), map[string]any{"not_one_of": strsToAny("https", "tls")},
			"tls_verify", mustBeNull, map[string]any{"eq": nil}),
		conditional("protocol", notInSet("https", "tls"), map[string]any{"not_one_of": strsToAny("https", "tls")},
			"tls_verify_depth", mustBeNull, map[string]any{"eq": nil}),
		conditional("protocol", notInSet("https", "tls"), map[string]any{"not_one_of": strsToAny("https", "tls")},
			"ca_certificates", mustBeNull, map[string]any{"eq": nil}),
	},
}

// ---------------------------------------------------------------- routes

func strList(v any) []string {
	a, _ := asArray(v)
	out := make([]string, 0, len(a))
	for _, e := range a {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = "'" + n + "'"
	}
	return strings.Join(q, ", ")
}

// routeProtocolCheck implements routes' per-protocol subschemas and the
// mutually exclusive protocol groups.
func routeProtocolCheck(e map[string]any) []checkErr {
	protos := strList(e["protocols"])
	if len(protos) == 0 {
		return nil
	}
	has := map[string]bool{}
	for _, p := range protos {
		has[p] = true
	}
	groups := [][]string{{"http", "https"}, {"tcp", "tls", "udp"}, {"tls_passthrough"}, {"grpc", "grpcs"}}
	inGroups := 0
	for _, g := range groups {
		for _, p := range g {
			if has[p] {
				inGroups++
				break
			}
		}
	}
	if inGroups > 1 {
		return []checkErr{{"", "these sets are mutually exclusive: ('http', 'https'), ('tcp', 'tls', 'udp'), ('tls_passthrough'), ('grpc', 'grpcs')"}}
	}
	set := func(name string) bool { return !isBlank(e[name]) }
	var out []checkErr
	needOne := func(names []string, when string) {
		for _, n := range names {
			if set(n) {
				return
			}
		}
		out = append(out, checkErr{"", fmt.Sprintf("must set one of %s when 'protocols' is %s", quoteList(names), when)})
	}
	forbid := func(names []string, when string) {
		for _, n := range names {
			if set(n) {
				out = append(out, checkErr{n, fmt.Sprintf("cannot set '%s' when 'protocols' is %s", n, when)})
			}
		}
	}
	switch {
	case has["http"] || has["https"]:
		if has["https"] {
			needOne([]string{"methods", "hosts", "headers", "paths", "snis"}, "'https'")
		} else {
			needOne([]string{"methods", "hosts", "headers", "paths"}, "'http'")
			if set("snis") {
				out = append(out, checkErr{"snis", "'snis' can only be set when 'protocols' is 'grpcs', 'https', 'tls' or 'tls_passthrough'"})
			}
		}
		forbid([]string{"sources", "destinations"}, "'http' or 'https'")
	case has["grpc"] || has["grpcs"]:
		if has["grpcs"] {
			needOne([]string{"hosts", "headers", "paths", "snis"}, "'grpcs'")
		} else {
			needOne([]string{"hosts", "headers", "paths"}, "'grpc'")
			if set("snis") {
				out = append(out, checkErr{"snis", "'snis' can only be set when 'protocols' is 'grpcs', 'https', 'tls' or 'tls_passthrough'"})
			}
		}
		forbid([]string{"methods"}, "'grpc' or 'grpcs'")
		forbid([]string{"sources", "destinations"}, "'grpc' or 'grpcs'")
		if b, ok := e["strip_path"].(bool); ok && b {
			out = append(out, checkErr{"strip_path", "cannot set 'strip_path' when 'protocols' is 'grpc' or 'grpcs'"})
		}
	case has["tls_passthrough"]:
		if !set("snis") {
			out = append(out, checkErr{"", "must set snis when 'protocols' is 'tls_passthrough'"})
		}
		forbid([]string{"methods", "hosts", "paths", "headers"}, "'tls_passthrough'")
	case has["tcp"] || has["tls"] || has["udp"]:
		needOne([]string{"sources", "destinations", "snis"}, "'tcp', 'tls' or 'udp'")
		forbid([]string{"methods", "hosts", "paths", "headers"}, "'tcp', 'tls' or 'udp'")
		if has["udp"] && !has["tls"] && set("snis") {
			out = append(out, checkErr{"snis", "'snis' can only be set when 'protocols' is 'grpcs', 'https', 'tls' or 'tls_passthrough'"})
		}
	}
	return out
}

// routeShorthand reports an unknown first protocol the way Kong's subschema
// lookup does ("unknown type: nope", fixture i07) instead of per-element
// one_of errors.
func routeShorthand(e map[string]any) *errTree {
	a, ok := asArray(e["protocols"])
	if !ok {
		return nil
	}
	for _, p := range a {
		s, ok := p.(string)
		if ok && !valueIn(s, protocolNames) {
			t := &errTree{}
			t.setField("protocols", leaf("unknown type: "+s))
			return t
		}
	}
	return nil
}

var cidrPortRecord = newField("", tRecord, fields(
	newField("ip", tString, custom(validateIPOrCIDR)),
	newField("port", tInteger, between(0, 65535)),
), noAutoRecord(), custom(func(v any) string {
	m := v.(map[string]any)
	if m["ip"] == nil && m["port"] == nil {
		return "at least one of these fields must be non-empty: 'ip', 'port'"
	}
	return ""
}))

var routesSchema = &entitySchema{
	Name: CollRoutes, Singular: "route", EndpointKey: "name", Workspaceable: true,
	Record: newField("", tRecord, fields(
		idField(),
		tsField("created_at"),
		tsField("updated_at"),
		nameField(),
		newField("protocols", tSet, required(), lenMin(1), dflt([]any{"http", "https"}),
			elems(newField("", tString, oneOf(protocolNames...)))),
		newField("https_redirect_status_code", tInteger, required(), dflt(int64(426)),
			oneOf(int64(426), int64(301), int64(302), int64(307), int64(308))),
		newField("strip_path", tBoolean, required(), dflt(true)),
		newField("preserve_host", tBoolean, required(), dflt(false)),
		newField("request_buffering", tBoolean, required(), dflt(true)),
		newField("response_buffering", tBoolean, required(), dflt(true)),
		tagsField(),
		foreignField("service", CollServices),
		newField("snis", tSet, elems(newField("", tString, custom(validateSNI)))),
		newField("sources", tSet, elems(cidrPortRecord)),
		newField("destinations", tSet, elems(cidrPortRecord)),
		newField("methods", tSet, elems(newField("", tString, custom(validateMethod)))),
		newField("hosts", tArray, elems(newField("", tString, custom(validateWildcardHost)))),
		newField("paths", tArray, elems(newField("", tString, custom(validateRoutePath)))),
		&field{Name: "headers", Type: tMap,
			Keys:   newField("", tString, custom(validateRouteHeaderName)),
			Values: newField("", tArray, elems(newField("", tString)))},
		newField("regex_priority", tInteger, dflt(int64(0))),
		newField("path_handling", tString, dflt("v0"), oneOf("v0", "v1")),
	)),
	Shorthand: routeShorthand,
	Checks: []entityCheck{{
		Fields: []string{"protocols", "methods", "hosts", "headers", "paths", "snis", "sources", "destinations", "strip_path"},
		Run:    routeProtocolCheck,
		Desc: map[string]any{"mutually_exclusive_subsets": map[string]any{
			"field": "protocols",
			"subsets": []any{strsToAny("http", "https"), strsToAny("tcp", "tls", "udp"),
				strsToAny("tls_passthrough"), strsToAny("grpc", "grpcs")},
		}},
	}},
}

// ---------------------------------------------------------------- upstreams

func statusList(vals ...int64) []any {
	out := make([]any, len(vals))
	for i, v := range vals {
		out[i] = v
	}
	return out
}

func httpStatuses(def []any) *field {
	return newField("http_statuses", tArray, dflt(def), elems(newField("", tInteger, between(100, 999))))
}

func counter(name string) *field {
	return newField(name, tInteger, dflt(int64(0)), between(0, 255))
}

func interval() *field {
	return newField("interval", tNumber, dflt(int64(0)), between(0, 65535))
}

var healthchecksField = newField("healthchecks", tRecord, fields(
	newField("active", tRecord, fields(
		newField("type", tString, dflt("http"), oneOf("tcp", "http", "https", "grpc", "grpcs")),
		newField("timeout", tNumber, dflt(int64(1)), between(0, 65535)),
		newField("concurrency", tInteger, dflt(int64(10)), between(1, 2147483648)),
		newField("http_path", tString, dflt("/"), custom(validatePath)),
		newField("https_sni", tString, custom(validateHost)),
		newField("https_verify_certificate", tBoolean, dflt(true)),
		&field{Name: "headers", Type: tMap,
			Keys:   newField("", tString, custom(validateHeaderName)),
			Values: newField("", tArray, elems(newField("", tString)))},
		newField("healthy", tRecord, fields(
			interval(),
			httpStatuses(statusList(200, 302)),
			counter("successes"),
		)),
		newField("unhealthy", tRecord, fields(
			interval(),
			httpStatuses(statusList(429, 404, 500, 501, 502, 503, 504, 505)),
			counter("tcp_failures"),
			counter("timeouts"),
			counter("http_failures"),
		)),
	)),
	newField("passive", tRecord, fields(
		newField("type", tString, dflt("http"), oneOf("tcp", "http", "https", "grpc", "grpcs")),
		newField("healthy", tRecord, fields(
			httpStatuses(statusList(200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305, 306, 307, 308)),
			counter("successes"),
		)),
		newField("unhealthy", tRecord, fields(
			httpStatuses(statusList(429, 500, 503)),
			counter("tcp_failures"),
			counter("timeouts"),
			counter("http_failures"),
		)),
	)),
	newField("threshold", tNumber, dflt(int64(0)), between(0, 100)),
))

// HealthchecksDefaults returns a fresh copy of Kong's default upstream
// healthchecks record.
func HealthchecksDefaults() map[string]any {
	return defaultFor(healthchecksField).(map[string]any)
}

var hashOnValues = strsToAny("none", "consumer", "ip", "header", "cookie", "path", "query_arg", "uri_capture")

func matchDesc(v string) map[string]any { return map[string]any{"match": "^" + v + "$"} }

var upstreamsSchema = &entitySchema{
	Name: CollUpstreams, Singular: "upstream", EndpointKey: "name", Workspaceable: true,
	Record: newField("", tRecord, fields(
		idField(),
		tsField("created_at"),
		tsField("updated_at"),
		newField("name", tString, required(), unique(), custom(validateUpstreamName)),
		newField("algorithm", tString, dflt("round-robin"), oneOf("consistent-hashing", "least-connections", "round-robin", "latency")),
		newField("hash_on", tString, dflt("none"), oneOf(hashOnValues...)),
		newField("hash_fallback", tString, dflt("none"), oneOf(hashOnValues...)),
		newField("hash_on_header", tString, custom(validateHeaderName)),
		newField("hash_fallback_header", tString, custom(validateHeaderName)),
		newField("hash_on_cookie", tString),
		newField("hash_on_cookie_path", tString, dflt("/"), custom(validatePath)),
		newField("hash_on_query_arg", tString),
		newField("hash_fallback_query_arg", tString),
		newField("hash_on_uri_capture", tString),
		newField("hash_fallback_uri_capture", tString),
		newField("slots", tInteger, dflt(int64(10000)), between(10, 65536)),
		healthchecksField,
		tagsField(),
		newField("host_header", tString, custom(validateHostWithOptionalPort)),
		foreignField("client_certificate", CollCertificates),
		newField("use_srv_name", tBoolean, dflt(false)),
	)),
	Checks: []entityCheck{
		conditional("hash_on", inSet("header"), matchDesc("header"), "hash_on_header", mustBePresent, map[string]any{"required": true}),
		conditional("hash_fallback", inSet("header"), matchDesc("header"), "hash_fallback_header", mustBePresent, map[string]any{"required": true}),
		conditional("hash_on", inSet("cookie"), matchDesc("cookie"), "hash_on_cookie", mustBePresent, map[string]any{"required": true}),
		conditional("hash_fallback", inSet("cookie"), matchDesc("cookie"), "hash_on_cookie", mustBePresent, map[string]any{"required": true}),
		conditional("hash_on", inSet("none"), matchDesc("none"), "hash_fallback", mustBeOneOf("none"), map[string]any{"one_of": strsToAny("none")}),
		conditional("hash_on", inSet("cookie"), matchDesc("cookie"), "hash_fallback", mustBeOneOf("none"), map[string]any{"one_of": strsToAny("none")}),
		conditional("hash_on", inSet("consumer"), matchDesc("consumer"), "hash_fallback",
			mustBeOneOf("none", "ip", "header", "cookie", "path", "query_arg", "uri_capture"),
			map[string]any{"one_of": strsToAny("none", "ip", "header", "cookie", "path", "query_arg", "uri_capture")}),
		conditional("hash_on", inSet("ip"), matchDesc("ip"), "hash_fallback",
			mustBeOneOf("none", "consumer", "header", "cookie", "path", "query_arg", "uri_capture"),
			map[string]any{"one_of": strsToAny("none", "consumer", "header", "cookie", "path", "query_arg", "uri_capture")}),
		conditional("hash_on", inSet("path"), matchDesc("path"), "hash_fallback",
			mustBeOneOf("none", "consumer", "ip", "header", "cookie", "query_arg", "uri_capture"),
			map[string]any{"one_of": strsToAny("none", "consumer", "ip", "header", "cookie", "query_arg", "uri_capture")}),
		conditional("hash_on", inSet("query_arg"), matchDesc("query_arg"), "hash_on_query_arg", mustBePresent, map[string]any{"required": true}),
		conditional("hash_fallback", inSet("query_arg"), matchDesc("query_arg"), "hash_fallback_query_arg", mustBePresent, map[string]any{"required": true}),
		conditional("hash_on", inSet("uri_capture"), matchDesc("uri_capture"), "hash_on_uri_capture", mustBePresent, map[string]any{"required": true}),
		conditional("hash_fallback", inSet("uri_capture"), matchDesc("uri_capture"), "hash_fallback_uri_capture", mustBePresent, map[string]any{"required": true}),
		distinct("hash_on_header", "hash_fallback_header"),
		distinct("hash_on_query_arg", "hash_fallback_query_arg"),
		distinct("hash_on_uri_capture", "hash_fallback_uri_capture"),
	},
}

// ---------------------------------------------------------------- targets

var targetsSchema = &entitySchema{
	Name: CollTargets, Singular: "target", EndpointKey: "target", CacheKey: []string{"upstream", "target"}, Workspaceable: true,
	Record: newField("", tRecord, fields(
		idField(),
		tsMsField("created_at"),
		tsMsField("updated_at"),
		foreignField("upstream", CollUpstreams, required(), func(f *field) { f.OnDelete = "cascade" }),
		newField("target", tString, required(), custom(validateTarget)),
		newField("weight", tInteger, dflt(int64(100)), between(0, 65535)),
		tagsField(),
	)),
	Normalize: func(e map[string]any) {
		if s, ok := e["target"].(string); ok {
			e["target"] = NormalizeTarget(s)
		}
	},
}

// ---------------------------------------------------------------- consumers

var consumersSchema = &entitySchema{
	Name: CollConsumers, Singular: "consumer", EndpointKey: "username", Workspaceable: true,
	Record: newField("", tRecord, fields(
		idField(),
		tsField("created_at"),
		tsField("updated_at"),
		newField("username", tString, unique()),
		newField("custom_id", tString, unique()),
		tagsField(),
	)),
	Checks: []entityCheck{atLeastOneOf("custom_id", "username")},
}

// ---------------------------------------------------------------- plugins

func validatePluginName(v any) string {
	s := v.(string)
	if !IsBundledPlugin(s) {
		return fmt.Sprintf("plugin '%s' not enabled; add it to the 'plugins' configuration property", s)
	}
	return ""
}

var pluginsSchema = &entitySchema{
	Name: CollPlugins, Singular: "plugin", EndpointKey: "instance_name",
	CacheKey: []string{"name", "route", "service", "consumer"}, Workspaceable: true,
	Record: newField("", tRecord, fields(
		idField(),
		newField("name", tString, required(), custom(validatePluginName)),
		newField("instance_name", tString, unique(), custom(validateUTF8Name)),
		tsField("created_at"),
		tsField("updated_at"),
		foreignField("route", CollRoutes, dflt(nil), func(f *field) { f.OnDelete = "cascade" }),
		foreignField("service", CollServices, dflt(nil), func(f *field) { f.OnDelete = "cascade" }),
		foreignField("consumer", CollConsumers, dflt(nil), func(f *field) { f.OnDelete = "cascade" }),
		newField("config", tRecord, required(), dflt(map[string]any{})),
		newField("protocols", tSet, required(), dflt(strsToAny("grpc", "grpcs", "http", "https")),
			elems(newField("", tString, oneOf(protocolNames...)))),
		newField("enabled", tBoolean, required(), dflt(true)),
		tagsField(),
	)),
}

// ---------------------------------------------------------------- certificates

var certificatesSchema = &entitySchema{
	Name: CollCertificates, Singular: "certificate", Workspaceable: true,
	Record: newField("", tRecord, fields(
		idField(),
		tsField("created_at"),
		tsField("updated_at"),
		newField("cert", tString, required(), custom(validateCert)),
		newField("key", tString, required(), custom(validateKey)),
		newField("cert_alt", tString, custom(validateCert)),
		newField("key_alt", tString, custom(validateKey)),
		tagsField(),
		&field{Name: "snis", Type: tArray, Transient: true,
			Elements: newField("", tString, custom(validateSNI))},
	)),
	Checks: []entityCheck{
		mutuallyRequired("cert_alt", "key_alt"),
		certMatchesKeyCheck("cert", "key", "certificate does not match key"),
		certMatchesKeyCheck("cert_alt", "key_alt", "alternative certificate does not match key"),
	},
}

// certMatchesKeyCheck is Kong's custom_entity_check that the PEM certificate
// in certField belongs to the private key in keyField (both given).
func certMatchesKeyCheck(certField, keyField, msg string) entityCheck {
	return entityCheck{
		Fields: []string{certField, keyField},
		Run: func(e map[string]any) []checkErr {
			c, _ := e[certField].(string)
			k, _ := e[keyField].(string)
			if c != "" && k != "" && !certMatchesKey(c, k) {
				return []checkErr{{"", msg}}
			}
			return nil
		},
		Desc: map[string]any{"custom_entity_check": map[string]any{"field_sources": strsToAny(certField, keyField)}},
	}
}

var snisSchema = &entitySchema{
	Name: CollSNIs, Singular: "sni", EndpointKey: "name", Workspaceable: true,
	Record: newField("", tRecord, fields(
		idField(),
		newField("name", tString, required(), unique(), custom(validateSNI)),
		tsField("created_at"),
		tsField("updated_at"),
		tagsField(),
		foreignField("certificate", CollCertificates, required()),
	)),
}

var caCertificatesSchema = &entitySchema{
	Name: CollCACertificates, Singular: "ca_certificate", Workspaceable: true,
	Record: newField("", tRecord, fields(
		idField(),
		tsField("created_at"),
		tsField("updated_at"),
		newField("cert", tString, required(), custom(validateCACert)),
		newField("cert_digest", tString, unique()),
		tagsField(),
	)),
	Normalize: func(e map[string]any) {
		if e["cert_digest"] == nil {
			if c, ok := e["cert"].(string); ok {
				if d := CertDigest(c); d != "" {
					e["cert_digest"] = d
				}
			}
		}
	},
}

var workspacesSchema = &entitySchema{
	Name: CollWorkspaces, Singular: "workspace", EndpointKey: "name",
	Record: newField("", tRecord, fields(
		idField(),
		newField("name", tString, required(), unique(), custom(validateUTF8Name)),
		newField("comment", tString),
		tsField("created_at"),
		tsField("updated_at"),
		newField("meta", tAny),
		newField("config", tAny),
	)),
}

// schemas by collection name.
var schemas = map[string]*entitySchema{
	CollServices:       servicesSchema,
	CollRoutes:         routesSchema,
	CollUpstreams:      upstreamsSchema,
	CollTargets:        targetsSchema,
	CollConsumers:      consumersSchema,
	CollPlugins:        pluginsSchema,
	CollCertificates:   certificatesSchema,
	CollSNIs:           snisSchema,
	CollCACertificates: caCertificatesSchema,
	CollWorkspaces:     workspacesSchema,
}

// foreignFields lists, per collection, its foreign-key fields and targets.
func (s *entitySchema) foreignFields() []*field {
	if ff, ok := foreignCache[s]; ok {
		return ff
	}
	return s.findForeignFields()
}

// foreignCache holds every schema's foreign fields: the parser asks for
// them several times per entity.
var foreignCache = map[*entitySchema][]*field{}

func init() {
	for _, s := range schemas {
		foreignCache[s] = s.findForeignFields()
	}
}

func (s *entitySchema) findForeignFields() []*field {
	var out []*field
	for _, f := range s.Record.Fields {
		if f.Type == tForeign {
			out = append(out, f)
		}
	}
	return out
}
