package snapshot

import (
	"testing"

	"filippo.io/age"
	"github.com/kongfb/kongfb/pkg/config"
)

// FuzzDecode feeds arbitrary objects to the reader: it must never panic,
// and whatever it accepts must be internally consistent. Run with a short
// -fuzzminimizetime (e.g. 3s): minimising a multi-KiB snapshot seed takes
// the default 60 s per new input, which looks like a hang:
//
//	go test ./pkg/snapshot -run "^$" -fuzz FuzzDecode -fuzztime 60s -fuzzminimizetime 3s
func FuzzDecode(f *testing.F) {
	cfg := genConfig(f, 2, 1)
	key := seedKey(f, 1)
	// A fixed identity so seeds encrypted to it stay decryptable across runs.
	id, err := age.ParseX25519Identity("AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX")
	if err != nil {
		f.Fatal(err)
	}
	for _, o := range []Options{
		{Compression: CompressionNone},
		{Compression: CompressionGzip, SigningKey: key},
		{Compression: CompressionZstd},
		{Recipients: []string{id.Recipient().String()}, SigningKey: key},
		{Passphrase: "pw", ScryptWorkFactor: 2, Compression: CompressionGzip},
	} {
		e := mustEncode(f, cfg, o)
		f.Add(e.Data)
		f.Add(e.Data[:len(e.Data)/2])
		f.Add(e.KongJSON)
	}
	f.Add(kongExport(f))
	f.Add([]byte(Magic + "{}\nsha256 00\n"))
	f.Add([]byte("{"))
	opts := VerifyOptions{
		Identities: []age.Identity{id},
		Passphrase: "pw",
		// Keep a mutated work factor from making one input take seconds.
		MaxScryptWorkFactor: 8,
		MaxSize:             1 << 20,
		VersionPolicy:       VersionPolicy{Match: MatchAny},
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Decode("fuzz", data, opts)
		if err != nil {
			if s != nil {
				t.Fatal("snapshot returned with an error")
			}
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error is %T, not *Error: %v", err, err)
			}
		} else {
			if s.Config == nil || s.Manifest == nil {
				t.Fatal("nil config or manifest on success")
			}
			h, _ := config.Hash(s.Config)
			if h != s.Manifest.ConfigHash || h == config.EmptyHash {
				t.Fatalf("accepted config hashes to %s, manifest %s", h, s.Manifest.ConfigHash)
			}
		}
		_, _ = ReadHeader("fuzz", data, opts)
	})
}
