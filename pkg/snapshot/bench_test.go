package snapshot

import (
	"crypto/ed25519"
	"testing"

	"filippo.io/age"
	"github.com/kongfb/kongfb/pkg/config"
)

// benchConfig has 10,000 routes: 1,000 services with 10 routes each, 1,000
// upstreams with a target each, 100 plugins and 100 consumers.
func benchConfig(b *testing.B) *config.Config {
	b.Helper()
	cfg := genConfig(b, 1000, 10)
	if len(cfg.Routes) != 10000 {
		b.Fatalf("%d routes", len(cfg.Routes))
	}
	return cfg
}

func benchOpts(b *testing.B) (Options, VerifyOptions) {
	id := newIdentity(b)
	key := seedKey(b, 1)
	return Options{Compression: CompressionZstd, Recipients: []string{id.Recipient().String()}, SigningKey: key, NodeID: "cp-1", Term: 1},
		VerifyOptions{Identities: []age.Identity{id}, TrustedSignerKeys: []ed25519.PublicKey{key.Public()}}
}

// BenchmarkEncode: validate + hash + export JSON + zstd + age + sign, 10k routes.
func BenchmarkEncode(b *testing.B) {
	cfg := benchConfig(b)
	opts, _ := benchOpts(b)
	e := mustEncode(b, cfg, opts)
	b.ReportMetric(float64(e.Manifest.ContentSize), "json-bytes")
	b.ReportMetric(float64(len(e.Data)), "object-bytes")
	b.SetBytes(e.Manifest.ContentSize)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Encode(cfg, opts); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecode: verify signature + sha256 + age + zstd + parse/validate +
// hash check, 10k routes.
func BenchmarkDecode(b *testing.B) {
	cfg := benchConfig(b)
	opts, vo := benchOpts(b)
	e := mustEncode(b, cfg, opts)
	key := e.Key("fb")
	b.ReportMetric(float64(len(e.Data)), "object-bytes")
	b.SetBytes(e.Manifest.ContentSize)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Decode(key, e.Data, vo); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPayload isolates the format's own cost (compression and
// encryption of the export JSON) from config validation and parsing.
func BenchmarkPayload(b *testing.B) {
	cfg := benchConfig(b)
	content, err := cfg.MarshalJSON()
	if err != nil {
		b.Fatal(err)
	}
	id := newIdentity(b)
	for _, comp := range []Compression{CompressionGzip, CompressionZstd} {
		b.Run(string(comp)+"+age/seal", func(b *testing.B) {
			b.SetBytes(int64(len(content)))
			var n int
			for i := 0; i < b.N; i++ {
				c, err := compress(content, comp)
				if err != nil {
					b.Fatal(err)
				}
				p, err := encrypt(c, []age.Recipient{id.Recipient()})
				if err != nil {
					b.Fatal(err)
				}
				n = len(p)
			}
			b.ReportMetric(float64(n), "payload-bytes")
		})
		c, _ := compress(content, comp)
		p, _ := encrypt(c, []age.Recipient{id.Recipient()})
		b.Run(string(comp)+"+age/open", func(b *testing.B) {
			b.SetBytes(int64(len(content)))
			for i := 0; i < b.N; i++ {
				d, err := decrypt(p, []age.Identity{id}, int64(len(p)))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := decompress(d, comp, int64(len(content))); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
