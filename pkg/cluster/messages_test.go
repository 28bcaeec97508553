package cluster

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

const (
	hashA = "0123456789abcdef0123456789abcdef"
	hashB = "fedcba9876543210fedcba9876543210"
)

func gz(t testing.TB, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestIsValidHash(t *testing.T) {
	for s, want := range map[string]bool{
		hashA:                               true,
		EmptyHash:                           true,
		strings.ToUpper(hashA):              false, // Kong's md5 hex is lowercase
		hashA[:31]:                          false,
		hashA + "0":                         false,
		"0123456789abcdef0123456789abcdeg":  false,
		"":                                  false,
		"0123456789abcdef0123456789abcde\n": false,
	} {
		if got := IsValidHash(s); got != want {
			t.Errorf("IsValidHash(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestReconfigureRoundTrip(t *testing.T) {
	table := `{"_format_version":"3.0","_transform":false,"services":[{"id":"s1","host":"a<b>&c"}]}`
	in := &Reconfigure{
		Timestamp:   1704921469.123,
		ConfigTable: json.RawMessage(table),
		ConfigHash:  hashA,
		Hashes:      map[string]string{"config": hashA, "routes": hashB},
	}
	payload, err := EncodeReconfigure(in, DefaultMaxPayload)
	if err != nil {
		t.Fatal(err)
	}
	if payload[0] != 0x1f || payload[1] != 0x8b {
		t.Fatalf("payload is not gzip: % x", payload[:2])
	}
	// What a Kong DP would see after inflate: Kong's field names and values.
	zr, err := gzip.NewReader(bytes.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	var generic map[string]any
	if err := json.NewDecoder(zr).Decode(&generic); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"type", "timestamp", "config_table", "config_hash", "hashes"} {
		if _, ok := generic[k]; !ok {
			t.Errorf("encoded message lacks %q: %v", k, generic)
		}
	}
	if generic["type"] != "reconfigure" || generic["timestamp"] != 1704921469.123 {
		t.Errorf("type/timestamp = %v/%v", generic["type"], generic["timestamp"])
	}

	out, err := DecodeReconfigure(payload, DefaultMaxPayload, DefaultMaxDecompressed)
	if err != nil {
		t.Fatal(err)
	}
	if out.Type != TypeReconfigure || out.ConfigHash != hashA || out.Timestamp != in.Timestamp {
		t.Errorf("decoded %+v", out)
	}
	if string(out.ConfigTable) != table {
		t.Errorf("config_table = %s\nwant %s", out.ConfigTable, table)
	}
	if out.Hashes["routes"] != hashB || len(out.Hashes) != 2 {
		t.Errorf("hashes = %v", out.Hashes)
	}
	filled := out.FilledHashes()
	if len(filled) != 6 || filled["targets"] != EmptyHash || filled["config"] != hashA {
		t.Errorf("FilledHashes = %v", filled)
	}
}

func TestEncodeReconfigureRejects(t *testing.T) {
	ok := json.RawMessage(`{}`)
	for name, m := range map[string]*Reconfigure{
		"nil":          nil,
		"wrong type":   {Type: "ping", ConfigTable: ok},
		"array table":  {ConfigTable: json.RawMessage(`[]`)},
		"no table":     {},
		"bad hash":     {ConfigTable: ok, ConfigHash: "abc"},
		"bad hashes":   {ConfigTable: ok, Hashes: map[string]string{"routes": "XYZ"}},
		"invalid json": {ConfigTable: json.RawMessage(`{"a":}`)},
	} {
		if _, err := EncodeReconfigure(m, 0); err == nil {
			t.Errorf("%s: EncodeReconfigure succeeded", name)
		}
	}
}

// incompressibleTable returns a config table whose gzip is at least n bytes.
func incompressibleTable(t testing.TB, n int) json.RawMessage {
	t.Helper()
	// base64 of random bytes carries 6 bits per character; gzip cannot get
	// it much below 3/4 of its size.
	raw := make([]byte, n)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	return json.RawMessage(`{"_format_version":"3.0","_comment":"` + base64.StdEncoding.EncodeToString(raw) + `"}`)
}

func TestReconfigureOverMaxPayload(t *testing.T) {
	if testing.Short() {
		t.Skip("gzips 20+ MiB (slow under -race); run without -short")
	}
	table := incompressibleTable(t, int(DefaultMaxPayload)+1<<20)
	_, err := EncodeReconfigure(&Reconfigure{ConfigTable: table, ConfigHash: hashA}, DefaultMaxPayload)
	var tooBig *PayloadTooLargeError
	if !errors.As(err, &tooBig) {
		t.Fatalf("EncodeReconfigure over 16 MiB: err = %v, want PayloadTooLargeError", err)
	}
	mustContain(t, err.Error(), "cluster_max_payload")

	payload, err := EncodeReconfigure(&Reconfigure{ConfigTable: table, ConfigHash: hashA}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(payload)) <= DefaultMaxPayload {
		t.Fatalf("test payload is only %d bytes compressed", len(payload))
	}
	_, err = DecodeReconfigure(payload, DefaultMaxPayload, DefaultMaxDecompressed)
	if !errors.As(err, &tooBig) || tooBig.Size != int64(len(payload)) {
		t.Fatalf("DecodeReconfigure of %d bytes: err = %v", len(payload), err)
	}
	// 0 selects the default limit.
	if _, err = DecodeReconfigure(payload, 0, 0); !errors.As(err, &tooBig) {
		t.Fatalf("default limit not applied: %v", err)
	}
}

func TestDecodeReconfigureBomb(t *testing.T) {
	// 24 MiB of spaces inside the JSON gzip to ~24 KiB: a 1000:1 bomb.
	var plain bytes.Buffer
	plain.WriteString(`{"type":"reconfigure","config_table":{},"pad":"`)
	plain.Write(bytes.Repeat([]byte{' '}, 24<<20))
	plain.WriteString(`"}`)
	bomb := gz(t, plain.Bytes())
	if len(bomb) > 1<<20 {
		t.Fatalf("bomb is %d bytes", len(bomb))
	}
	_, err := DecodeReconfigure(bomb, DefaultMaxPayload, 4<<20)
	var tooBig *PayloadTooLargeError
	if !errors.As(err, &tooBig) || !tooBig.Partial || tooBig.Limit != 4<<20 {
		t.Fatalf("bomb: err = %v", err)
	}
	mustContain(t, err.Error(), "decompressed reconfigure payload exceeds the limit of 4194304 bytes")
	// Within a larger limit the same payload decodes.
	if _, err := DecodeReconfigure(bomb, DefaultMaxPayload, 32<<20); err != nil {
		t.Fatalf("within limit: %v", err)
	}
}

func TestDecodeReconfigureErrors(t *testing.T) {
	valid := gz(t, []byte(`{"type":"reconfigure","config_table":{}}`))
	corrupt := append([]byte(nil), valid...)
	corrupt[len(corrupt)-6] ^= 0xff // CRC
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "reconfigure frame is empty"},
		{"not gzip", []byte(`{"type":"reconfigure"}`), "reconfigure frame is not gzip-compressed"},
		{"bad header", []byte{0x1f, 0x8b, 0, 0}, "invalid gzip data"},
		{"truncated", valid[:len(valid)-10], "corrupt gzip data"},
		{"bad crc", corrupt, "corrupt gzip data"},
		{"bad json", gz(t, []byte(`{"type":`)), "invalid JSON"},
		{"not json", gz(t, []byte(`hello`)), "invalid JSON"},
		{"array", gz(t, []byte(`[1,2]`)), "not a JSON object"},
		{"wrong type", gz(t, []byte(`{"type":"error","config_table":{}}`)), `not a reconfigure message: type is "error"`},
		{"no type", gz(t, []byte(`{"config_table":{}}`)), "not a reconfigure message: message has no type"},
		{"numeric type", gz(t, []byte(`{"type":5}`)), "not a reconfigure message: type is 5"},
		{"no table", gz(t, []byte(`{"type":"reconfigure"}`)), "reconfigure message has no config_table"},
		{"null table", gz(t, []byte(`{"type":"reconfigure","config_table":null}`)), "reconfigure message has no config_table"},
		{"array table", gz(t, []byte(`{"type":"reconfigure","config_table":[]}`)), "config_table is not a JSON object"},
		{"short hash", gz(t, []byte(`{"type":"reconfigure","config_table":{},"config_hash":"abc"}`)),
			`invalid config_hash "abc": want 32 lowercase hexadecimal characters`},
		{"upper hash", gz(t, []byte(`{"type":"reconfigure","config_table":{},"config_hash":"`+strings.ToUpper(hashA)+`"}`)),
			"invalid config_hash"},
		{"numeric hash", gz(t, []byte(`{"type":"reconfigure","config_table":{},"config_hash":12}`)), "config_hash is not a string"},
		{"bad hashes", gz(t, []byte(`{"type":"reconfigure","config_table":{},"hashes":{"routes":"x"}}`)), "invalid hashes.routes"},
		{"hashes not object", gz(t, []byte(`{"type":"reconfigure","config_table":{},"hashes":"x"}`)), "hashes is not an object"},
		{"hash value not string", gz(t, []byte(`{"type":"reconfigure","config_table":{},"hashes":{"routes":1}}`)), "hashes.routes is not a string"},
		{"bad timestamp", gz(t, []byte(`{"type":"reconfigure","config_table":{},"timestamp":"x"}`)), "timestamp is not a number"},
	}
	for _, tc := range cases {
		_, err := DecodeReconfigure(tc.data, 0, 0)
		if err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q, want it to contain %q", tc.name, err, tc.want)
		}
	}
	if _, err := DecodeReconfigure(gz(t, []byte(`{"type":"error"}`)), 0, 0); !errors.Is(err, ErrNotReconfigure) {
		t.Errorf("wrong type does not wrap ErrNotReconfigure: %v", err)
	}
	// Optional fields: no hash (the DP computes it), empty hashes as [] or {}.
	for _, doc := range []string{
		`{"type":"reconfigure","config_table":{"_format_version":"3.0"}}`,
		`{"type":"reconfigure","config_table":{},"hashes":[],"config_hash":null}`,
		`{"type":"reconfigure","config_table":{},"hashes":{}}`,
	} {
		m, err := DecodeReconfigure(gz(t, []byte(doc)), 0, 0)
		if err != nil {
			t.Errorf("%s: %v", doc, err)
			continue
		}
		if m.ConfigHash != "" || len(m.Hashes) != 0 {
			t.Errorf("%s: decoded %+v", doc, m)
		}
	}
}

func TestDecodeBasicInfo(t *testing.T) {
	cases := []struct {
		doc, want string
	}{
		{`{"type":"basic_info","plugins":[{"name":"acl","version":"3.9.1"},{"name":"cors"}]}`, ""},
		{`{"type":"basic_info","plugins":{}}`, ""},                    // cjson's empty table
		{`{"type":"basic_info","plugins":[],"labels":{"a":"b"}}`, ""}, // labels kept
		{`{"type":"basic_info"}`, "missing plugins in basic info data"},
		{`{"type":"basic_info","plugins":"acl"}`, "missing plugins in basic info data"},
		{`{"type":"reconfigure","plugins":[]}`, "invalid basic info data type: reconfigure"},
		{`{"plugins":[]}`, "invalid basic info data type: unknown"},
		{`[1,2]`, "invalid basic info data type: unknown"},
		{`"basic_info"`, "failed to decode websocket basic info data"},
		{`{"type":"basic_info",`, "failed to decode websocket basic info data: "},
		{``, "failed to decode websocket basic info data: "},
		{`{"type":"basic_info","plugins":[5]}`, "plugins[0] is not an object"},
		{`{"type":"basic_info","plugins":[{"version":"1.0.0"}]}`, "plugins[0].name is missing"},
		{`{"type":"basic_info","plugins":[],"labels":{"a":1}}`, "labels.a is not a string"},
	}
	for _, tc := range cases {
		b, err := DecodeBasicInfo([]byte(tc.doc))
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.doc, err)
			} else if b.Type != TypeBasicInfo || b.Plugins == nil {
				t.Errorf("%s: decoded %+v", tc.doc, b)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: no error, want %q", tc.doc, tc.want)
			continue
		}
		if !strings.HasPrefix(err.Error(), tc.want) && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q, want %q", tc.doc, err, tc.want)
		}
	}
	b, err := DecodeBasicInfo([]byte(`{"type":"basic_info","plugins":[{"name":"acl","version":"3.9.1"},{"name":"cors"}],"labels":{"region":"eu"},"process_conf":{"role":"data_plane"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Plugins) != 2 || b.Plugins[0] != (PluginInfo{"acl", "3.9.1"}) || b.Plugins[1].Version != "" ||
		b.Labels["region"] != "eu" || b.ProcessConf["role"] != "data_plane" {
		t.Errorf("decoded %+v", b)
	}
}

func TestNewBasicInfoSortsLikeKong(t *testing.T) {
	b := NewBasicInfo([]PluginInfo{{"rate-limiting", "3.9.1"}, {"ACL", "3.9.1"}, {"cors", "3.9.1"}, {"Basic-Auth", "3.9.1"}}, nil, nil)
	var names []string
	for _, p := range b.Plugins {
		names = append(names, p.Name)
	}
	if got := strings.Join(names, ","); got != "ACL,Basic-Auth,cors,rate-limiting" {
		t.Errorf("order %s", got)
	}
	data, err := EncodeBasicInfo(NewBasicInfo(nil, nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != `{"type":"basic_info","plugins":[]}` {
		t.Errorf("empty basic_info = %s", data)
	}
}

func TestValidateMaxPayload(t *testing.T) {
	if err := ValidateMaxPayload(DefaultMaxPayload); err != nil {
		t.Error(err)
	}
	if err := ValidateMaxPayload(MinMaxPayload - 1); err == nil || err.Error() != "cluster_max_payload must be 4194304 (4MB) or greater" {
		t.Errorf("err = %v", err)
	}
}

func BenchmarkEncodeReconfigure(b *testing.B) {
	table := benchTable(2000)
	b.SetBytes(int64(len(table)))
	for b.Loop() {
		if _, err := EncodeReconfigure(&Reconfigure{ConfigTable: table, ConfigHash: hashA}, DefaultMaxPayload); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeReconfigure(b *testing.B) {
	table := benchTable(2000)
	payload, err := EncodeReconfigure(&Reconfigure{ConfigTable: table, ConfigHash: hashA}, DefaultMaxPayload)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(table)))
	for b.Loop() {
		if _, err := DecodeReconfigure(payload, 0, 0); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(payload)), "gzip-bytes")
}

// benchTable is a config export with n services and n routes, shaped like
// Kong's hybrid export.
func benchTable(n int) json.RawMessage {
	var sb strings.Builder
	sb.WriteString(`{"_format_version":"3.0","_transform":false,"services":[`)
	for i := range n {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(`{"id":"` + fakeUUID(i) + `","name":"svc-` + itoa(i) + `","host":"upstream-` + itoa(i) +
			`.internal","port":80,"protocol":"http","path":null,"retries":5,"connect_timeout":60000,"write_timeout":60000,` +
			`"read_timeout":60000,"tags":null,"client_certificate":null,"tls_verify":null,"tls_verify_depth":null,` +
			`"ca_certificates":null,"enabled":true,"created_at":1700000000,"updated_at":1700000000}`)
	}
	sb.WriteString(`],"routes":[`)
	for i := range n {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(`{"id":"` + fakeUUID(n+i) + `","name":"route-` + itoa(i) + `","paths":["/api/` + itoa(i) +
			`"],"methods":null,"hosts":null,"protocols":["http","https"],"strip_path":true,"preserve_host":false,` +
			`"regex_priority":0,"https_redirect_status_code":426,"path_handling":"v0","service":"` + fakeUUID(i) + `"}`)
	}
	sb.WriteString(`]}`)
	return json.RawMessage(sb.String())
}

func itoa(i int) string { return strconv.Itoa(i) }

func fakeUUID(i int) string {
	s := strconv.Itoa(i)
	s = strings.Repeat("0", 12-len(s)) + s
	return "00000000-0000-4000-8000-" + s
}

// TestReconfigureDecoder: the reusing decoder returns what DecodeReconfigure
// returns, frame after frame of different sizes, keeps its limits (and works
// after refusing a frame), and does reuse its buffer: decoding the same
// frame many times allocates far fewer bytes than DecodeReconfigure does.
func TestReconfigureDecoder(t *testing.T) {
	var d ReconfigureDecoder
	for i, n := range []int{200, 20, 400, 0} {
		frame, err := EncodeReconfigure(&Reconfigure{ConfigTable: benchTable(n), ConfigHash: hashA,
			Hashes: map[string]string{"config": hashB}}, DefaultMaxPayload)
		if err != nil {
			t.Fatal(err)
		}
		want, err := DecodeReconfigure(frame, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		got, err := d.Decode(frame)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !bytes.Equal(got.ConfigTable, want.ConfigTable) || got.ConfigHash != want.ConfigHash ||
			got.Hashes["config"] != hashB || got.Timestamp != want.Timestamp {
			t.Fatalf("frame %d: decoder gave %s… %s, DecodeReconfigure %s… %s", i,
				quoteShort(string(got.ConfigTable)), got.ConfigHash, quoteShort(string(want.ConfigTable)), want.ConfigHash)
		}
	}

	frame, err := EncodeReconfigure(&Reconfigure{ConfigTable: benchTable(50), ConfigHash: hashA}, DefaultMaxPayload)
	if err != nil {
		t.Fatal(err)
	}
	small := ReconfigureDecoder{MaxDecompressed: 1000}
	var tooBig *PayloadTooLargeError
	if _, err := small.Decode(frame); !errors.As(err, &tooBig) || tooBig.Limit != 1000 {
		t.Fatalf("over MaxDecompressed: %v", err)
	}
	if _, err := small.Decode([]byte("not gzip")); err == nil || err.Error() != "reconfigure frame is not gzip-compressed" {
		t.Fatalf("not gzip: %v", err)
	}
	if m, err := d.Decode(frame); err != nil || m.ConfigHash != hashA {
		t.Fatalf("after refusals: %v", err)
	}

	allocated := func(decode func() error) uint64 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range 50 {
			if err := decode(); err != nil {
				t.Fatal(err)
			}
		}
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	// A large table, so that the buffer (what reuse saves) dwarfs the
	// decode's small fixed allocations and whatever other goroutines of
	// the test binary allocate meanwhile (-race makes both bigger).
	big, err := EncodeReconfigure(&Reconfigure{ConfigTable: benchTable(500), ConfigHash: hashA}, DefaultMaxPayload)
	if err != nil {
		t.Fatal(err)
	}
	fresh := allocated(func() error { _, err := DecodeReconfigure(big, 0, 0); return err })
	reused := allocated(func() error { _, err := d.Decode(big); return err })
	t.Logf("50 decodes of a %d-byte frame: DecodeReconfigure allocated %d bytes, the decoder %d", len(big), fresh, reused)
	if reused*4 > fresh {
		t.Errorf("decoder allocated %d bytes for 50 frames, DecodeReconfigure %d: the buffer is not reused", reused, fresh)
	}
}

// TestWriteReconfigureMatchesEncoder: the hand-written envelope is what
// json.Encoder (no HTML escaping) writes for the same message, for a
// compact table (the encoder would also compact a spaced one).
func TestWriteReconfigureMatchesEncoder(t *testing.T) {
	for _, m := range []Reconfigure{
		{Type: TypeReconfigure, ConfigTable: json.RawMessage(`{}`)},
		{Type: TypeReconfigure, ConfigTable: benchTable(3), ConfigHash: hashA},
		{Type: TypeReconfigure, Timestamp: 1795336851.123456, ConfigTable: json.RawMessage(`{"a":"<&>"}`),
			ConfigHash: hashA, Hashes: map[string]string{"routes": hashB, "config": hashA, "<x>": hashB}},
		{Type: TypeReconfigure, Timestamp: 1e21, ConfigTable: json.RawMessage(`{"b":[1,2]}`), Hashes: map[string]string{}},
	} {
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(&m); err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		if err := writeReconfigure(&got, &m); err != nil {
			t.Fatal(err)
		}
		if got.String() != want.String() {
			t.Errorf("writeReconfigure:\n%s\njson.Encoder:\n%s", got.String(), want.String())
		}
	}
	if err := writeReconfigure(io.Discard, &Reconfigure{Type: TypeReconfigure, ConfigTable: json.RawMessage(`{"a":}`)}); err == nil {
		t.Error("an invalid config_table was written")
	}
}
