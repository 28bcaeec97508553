package config

import (
	"fmt"
	"strings"
	"testing"
)

// benchDoc is a decK-style file with n services, each with a nested route,
// a plugin, and an upstream with two targets.
func benchDoc(n int) []byte {
	var b strings.Builder
	b.WriteString("_format_version: \"3.0\"\nservices:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "- name: svc-%d\n  url: http://up-%d.internal:8080/base\n  routes:\n  - name: route-%d\n    hosts: [api-%d.example.com]\n    paths: [/v1/svc-%d, \"~/v2/svc-%d/(?<id>\\\\d+)$\"]\n    methods: [GET, POST]\n  plugins:\n  - name: rate-limiting\n    config: {second: 10}\n", i, i, i, i, i, i)
	}
	b.WriteString("upstreams:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "- name: up-%d.internal\n  targets:\n  - target: 10.0.%d.%d:8080\n  - target: 10.1.%d.%d\n", i, i/250, i%250, i/250, i%250)
	}
	return []byte(b.String())
}

func BenchmarkParseYAML1000Services(b *testing.B) {
	doc := benchDoc(1000)
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := Parse(doc, "kong.yaml"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkValidateTyped1000Services(b *testing.B) {
	cfg, err := Parse(benchDoc(1000), "kong.yaml")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := cfg.Validate(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseExport parses Kong's flattened export (what a DP receives
// in every reconfigure and what a fallback snapshot holds): the DP's cost
// per push.
func BenchmarkParseExport(b *testing.B) {
	for _, n := range []int{30, 1000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			cfg, err := Parse(benchDoc(n), "kong.yaml")
			if err != nil {
				b.Fatal(err)
			}
			doc, err := cfg.MarshalJSON()
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(doc)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := Parse(doc, ""); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
