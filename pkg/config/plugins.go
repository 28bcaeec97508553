package config

import "sort"

// bundledPlugins are the plugins Kong Gateway 3.9 (OSS) ships and enables
// with `plugins = bundled` (kong/constants.lua). kongfb accepts them in a
// configuration; it does not execute them (the proxy refuses plugins).
var bundledPlugins = []string{
	"jwt", "acl", "correlation-id", "cors", "oauth2", "tcp-log", "udp-log",
	"file-log", "http-log", "key-auth", "hmac-auth", "basic-auth",
	"ip-restriction", "request-transformer", "response-transformer",
	"request-size-limiting", "rate-limiting", "response-ratelimiting",
	"syslog", "loggly", "datadog", "ldap-auth", "statsd", "bot-detection",
	"aws-lambda", "request-termination", "prometheus", "proxy-cache",
	"session", "acme", "grpc-gateway", "grpc-web", "pre-function",
	"post-function", "azure-functions", "zipkin", "opentelemetry",
	"ai-proxy", "ai-prompt-decorator", "ai-prompt-template",
	"ai-prompt-guard", "ai-request-transformer", "ai-response-transformer",
	"standard-webhooks", "redirect",
}

var bundledPluginSet = func() map[string]bool {
	m := make(map[string]bool, len(bundledPlugins))
	for _, p := range bundledPlugins {
		m[p] = true
	}
	return m
}()

// BundledPlugins returns the names of Kong 3.9's bundled plugins, sorted.
func BundledPlugins() []string {
	out := append([]string(nil), bundledPlugins...)
	sort.Strings(out)
	return out
}

// IsBundledPlugin reports whether name is one of Kong 3.9's bundled plugins.
func IsBundledPlugin(name string) bool { return bundledPluginSet[name] }

// PluginSchema returns a minimal Kong-shaped /schemas/plugins/{name} answer
// for a bundled plugin: the plugin entity's fields with `config` as a generic
// record (kongfb has no per-plugin config schemas, so decK finds no config
// defaults to apply and never reports spurious diffs from them).
func PluginSchema(name string) (map[string]any, bool) {
	if !IsBundledPlugin(name) {
		return nil, false
	}
	fl := []any{}
	for _, f := range pluginsSchema.Record.Fields {
		switch f.Name {
		case "id", "name", "instance_name", "created_at", "updated_at", "route", "service", "consumer", "protocols", "enabled", "tags":
			fl = append(fl, map[string]any{f.Name: f.describe()})
		case "config":
			fl = append(fl, map[string]any{"config": map[string]any{
				"type": "record", "required": true, "fields": []any{},
			}})
		}
	}
	return map[string]any{"fields": fl, "entity_checks": []any{}}, true
}
