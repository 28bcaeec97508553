package cluster

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/klauspost/compress/gzip"

	"github.com/kongfb/kongfb/pkg/jsonscan"
)

// Protocol constants (Kong 3.9: kong/constants.lua, kong_defaults.lua).
const (
	// OutletPath is the v1 sync endpoint on the CP's cluster listener.
	OutletPath = "/v1/outlet"

	// DefaultMaxPayload is cluster_max_payload's default: the largest
	// (compressed) frame either side reads.
	DefaultMaxPayload int64 = 16 << 20
	// MinMaxPayload is the smallest cluster_max_payload Kong accepts.
	MinMaxPayload int64 = 4 << 20
	// DefaultMaxDecompressed bounds a reconfigure payload after gunzip. Kong
	// has no such limit; kongfb has one so that a 16 MiB frame cannot expand
	// into gigabytes (a decompression bomb). Real configs compress 10-20x, so
	// 256 MiB leaves room for any config that fits in 16 MiB compressed.
	DefaultMaxDecompressed int64 = 256 << 20

	// DefaultPingInterval is CLUSTERING_PING_INTERVAL.
	DefaultPingInterval = 30 * time.Second
	// DefaultPingWait is PING_WAIT = 1.5 x the ping interval: the silence after
	// which either side declares the link dead.
	DefaultPingWait = 45 * time.Second
	// DefaultTimeout is CLUSTERING_TIMEOUT: connect, handshake and the wait
	// for the DP's basic_info frame.
	DefaultTimeout = 5 * time.Second

	// EmptyHash is the config hash of a node that has no configuration.
	EmptyHash = "00000000000000000000000000000000"

	// Message types.
	TypeBasicInfo   = "basic_info"
	TypeReconfigure = "reconfigure"
)

// HashGroups are the keys of a reconfigure message's `hashes` object.
var HashGroups = []string{"config", "routes", "services", "plugins", "upstreams", "targets"}

// ValidateMaxPayload checks a cluster_max_payload value like Kong's conf_loader.
func ValidateMaxPayload(n int64) error {
	if n < MinMaxPayload {
		return errors.New("cluster_max_payload must be 4194304 (4MB) or greater")
	}
	return nil
}

// IsValidHash reports whether s is a config hash as Kong writes it: an MD5
// digest in 32 lowercase hexadecimal characters.
func IsValidHash(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// ValidateHash returns an error naming what when s is not a valid hash.
func ValidateHash(what, s string) error {
	if !IsValidHash(s) {
		return fmt.Errorf("invalid %s %q: want 32 lowercase hexadecimal characters", what, quoteShort(s))
	}
	return nil
}

// PluginInfo is one entry of basic_info.plugins: a plugin the node has
// installed and its version.
type PluginInfo struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
}

// BasicInfo is the DP's first frame.
type BasicInfo struct {
	Type    string       `json:"type"`
	Plugins []PluginInfo `json:"plugins"`
	// ProcessConf is the DP's kong.conf with sensitive values masked by the
	// sender. kongfb only passes it through.
	ProcessConf map[string]any `json:"process_conf,omitempty"`
	// Filters are Wasm filters (Kong only); passed through untouched.
	Filters json.RawMessage   `json:"filters,omitempty"`
	Labels  map[string]string `json:"labels,omitempty"`
}

// NewBasicInfo builds a basic_info message with the plugins sorted
// case-insensitively by name, as Kong sends them.
func NewBasicInfo(plugins []PluginInfo, processConf map[string]any, labels map[string]string) BasicInfo {
	ps := append([]PluginInfo(nil), plugins...)
	sort.SliceStable(ps, func(i, j int) bool {
		a, b := strings.ToLower(ps[i].Name), strings.ToLower(ps[j].Name)
		if a != b {
			return a < b
		}
		return ps[i].Name < ps[j].Name
	})
	if ps == nil {
		ps = []PluginInfo{}
	}
	return BasicInfo{Type: TypeBasicInfo, Plugins: ps, ProcessConf: processConf, Labels: labels}
}

// EncodeBasicInfo serialises b (type forced to basic_info, plugins never null).
func EncodeBasicInfo(b BasicInfo) ([]byte, error) {
	b.Type = TypeBasicInfo
	if b.Plugins == nil {
		b.Plugins = []PluginInfo{}
	}
	data, err := json.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("encode basic_info: %w", err)
	}
	return data, nil
}

// DecodeBasicInfo parses the DP's first frame. Its errors are Kong's CP log
// texts (control_plane.lua handle_cp_websocket).
func DecodeBasicInfo(data []byte) (*BasicInfo, error) {
	var top any
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, fmt.Errorf("failed to decode websocket basic info data: %v", err)
	}
	obj, isObj := top.(map[string]any)
	if !isObj {
		if _, isArr := top.([]any); isArr {
			// A JSON array is a Lua table without a `type` key.
			return nil, errors.New("invalid basic info data type: unknown")
		}
		return nil, errors.New("failed to decode websocket basic info data")
	}
	switch t := obj["type"].(type) {
	case string:
		if t != TypeBasicInfo {
			return nil, fmt.Errorf("invalid basic info data type: %s", t)
		}
	case nil:
		return nil, errors.New("invalid basic info data type: unknown")
	default:
		raw, _ := json.Marshal(t)
		return nil, fmt.Errorf("invalid basic info data type: %s", raw)
	}

	b := &BasicInfo{Type: TypeBasicInfo}
	switch ps := obj["plugins"].(type) {
	case []any:
		b.Plugins = make([]PluginInfo, 0, len(ps))
		for i, p := range ps {
			po, ok := p.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("failed to decode websocket basic info data: plugins[%d] is not an object", i)
			}
			name, ok := po["name"].(string)
			if !ok || name == "" {
				return nil, fmt.Errorf("failed to decode websocket basic info data: plugins[%d].name is missing or not a string", i)
			}
			pi := PluginInfo{Name: name}
			switch v := po["version"].(type) {
			case string:
				pi.Version = v
			case nil:
			default:
				return nil, fmt.Errorf("failed to decode websocket basic info data: plugins[%d].version is not a string", i)
			}
			b.Plugins = append(b.Plugins, pi)
		}
	case map[string]any:
		// cjson encodes an empty Lua table as {}: a DP without plugins.
		// Non-empty objects have no array part either, so Kong's ipairs sees
		// no plugins in them; the same here.
		b.Plugins = []PluginInfo{}
	default:
		return nil, errors.New("missing plugins in basic info data")
	}

	if pc, ok := obj["process_conf"].(map[string]any); ok {
		b.ProcessConf = pc
	}
	if f, ok := obj["filters"]; ok && f != nil {
		raw, err := json.Marshal(f)
		if err == nil {
			b.Filters = raw
		}
	}
	switch ls := obj["labels"].(type) {
	case map[string]any:
		b.Labels = make(map[string]string, len(ls))
		for k, v := range ls {
			s, ok := v.(string)
			if !ok {
				return nil, fmt.Errorf("failed to decode websocket basic info data: labels.%s is not a string", k)
			}
			b.Labels[k] = s
		}
	case nil:
	case []any:
		// cjson's empty table again.
		if len(ls) != 0 {
			return nil, errors.New("failed to decode websocket basic info data: labels is not an object")
		}
	default:
		return nil, errors.New("failed to decode websocket basic info data: labels is not an object")
	}
	return b, nil
}

// Reconfigure is the CP's config push.
type Reconfigure struct {
	Type string `json:"type"`
	// Timestamp is the CP's clock (seconds, fractional) when it built the
	// payload; informational.
	Timestamp float64 `json:"timestamp,omitempty"`
	// ConfigTable is the declarative export document, kept as raw JSON so the
	// DP can hand it to the config parser without a generic decode.
	ConfigTable json.RawMessage `json:"config_table"`
	// ConfigHash is the hash the DP stores and reports; "" when the CP did not
	// send one (the DP then computes it, as Kong does).
	ConfigHash string            `json:"config_hash,omitempty"`
	Hashes     map[string]string `json:"hashes,omitempty"`
}

// FilledHashes returns Hashes with every group of HashGroups present, missing
// ones set to EmptyHash (Kong's config_helper fill_empty_hashes).
func (r *Reconfigure) FilledHashes() map[string]string {
	out := make(map[string]string, len(HashGroups))
	for k, v := range r.Hashes {
		out[k] = v
	}
	for _, g := range HashGroups {
		if out[g] == "" {
			out[g] = EmptyHash
		}
	}
	return out
}

// ErrNotReconfigure marks a CP frame of another type. Kong's DP ignores such
// frames; callers should log and carry on.
var ErrNotReconfigure = errors.New("not a reconfigure message")

// PayloadTooLargeError reports a payload over a size limit.
type PayloadTooLargeError struct {
	What  string // e.g. "reconfigure frame", "decompressed reconfigure payload"
	Size  int64  // bytes seen (a lower bound when Partial)
	Limit int64
	// Partial is true when reading stopped at the limit, so Size is only a
	// lower bound.
	Partial bool
}

func (e *PayloadTooLargeError) Error() string {
	if e.Partial {
		return fmt.Sprintf("%s exceeds the limit of %d bytes", e.What, e.Limit)
	}
	return fmt.Sprintf("%s is %d bytes, above the limit of %d bytes", e.What, e.Size, e.Limit)
}

// limitWriter fails once more than limit bytes have been written.
type limitWriter struct {
	w     io.Writer
	n     int64
	limit int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.limit > 0 && l.n+int64(len(p)) > l.limit {
		return 0, &PayloadTooLargeError{What: "compressed reconfigure payload", Limit: l.limit, Partial: true}
	}
	n, err := l.w.Write(p)
	l.n += int64(n)
	return n, err
}

// EncodeReconfigure serialises m and gzips it into a reconfigure frame.
// maxCompressed (cluster_max_payload; <= 0 means no limit) bounds the result:
// a DP would refuse a larger frame, so the CP must not send one.
func EncodeReconfigure(m *Reconfigure, maxCompressed int64) ([]byte, error) {
	if m == nil {
		return nil, errors.New("encode reconfigure: nil message")
	}
	msg := *m
	if msg.Type == "" {
		msg.Type = TypeReconfigure
	}
	if msg.Type != TypeReconfigure {
		return nil, fmt.Errorf("encode reconfigure: type is %q, want %q", msg.Type, TypeReconfigure)
	}
	if first := firstNonSpace(msg.ConfigTable); first != '{' {
		return nil, errors.New("encode reconfigure: config_table must be a JSON object")
	}
	if msg.ConfigHash != "" {
		if err := ValidateHash("config_hash", msg.ConfigHash); err != nil {
			return nil, fmt.Errorf("encode reconfigure: %w", err)
		}
	}
	if err := validateHashes(msg.Hashes); err != nil {
		return nil, fmt.Errorf("encode reconfigure: %w", err)
	}

	var buf bytes.Buffer
	lw := &limitWriter{w: &buf, limit: maxCompressed}
	// A compressor's state is about a megabyte: one per push per CP was
	// most of a CP's garbage.
	zw := gzipWriters.Get().(*gzip.Writer)
	defer gzipWriters.Put(zw)
	zw.Reset(lw)
	if err := writeReconfigure(zw, &msg); err != nil {
		var tooBig *PayloadTooLargeError
		if errors.As(err, &tooBig) {
			return nil, fmt.Errorf("encode reconfigure: %w (cluster_max_payload)", err)
		}
		return nil, fmt.Errorf("encode reconfigure: %w", err)
	}
	if err := zw.Close(); err != nil {
		var tooBig *PayloadTooLargeError
		if errors.As(err, &tooBig) {
			return nil, fmt.Errorf("encode reconfigure: %w (cluster_max_payload)", err)
		}
		return nil, fmt.Errorf("encode reconfigure: gzip: %w", err)
	}
	return buf.Bytes(), nil
}

// writeReconfigure writes msg as JSON, with the members in Reconfigure's
// field order, as json.Encoder would. It writes the envelope around
// config_table itself: json.Encoder would compact the table, most of the
// frame, into a growing buffer on every push. The table is checked with
// json.Valid instead, so an invalid one is still refused.
func writeReconfigure(w io.Writer, msg *Reconfigure) error {
	if !json.Valid(msg.ConfigTable) {
		return errors.New("config_table is not valid JSON")
	}
	var head bytes.Buffer
	head.WriteString(`{"type":"` + msg.Type + `"`) // TypeReconfigure, checked by the caller
	if msg.Timestamp != 0 {
		ts, err := json.Marshal(msg.Timestamp)
		if err != nil {
			return fmt.Errorf("timestamp: %w", err)
		}
		head.WriteString(`,"timestamp":`)
		head.Write(ts)
	}
	head.WriteString(`,"config_table":`)
	var tail bytes.Buffer
	if msg.ConfigHash != "" {
		tail.WriteString(`,"config_hash":"` + msg.ConfigHash + `"`) // 32 hex digits, checked by the caller
	}
	if len(msg.Hashes) > 0 {
		tail.WriteString(`,"hashes":`)
		enc := json.NewEncoder(&tail)
		// Kong's DP decodes with cjson/simdjson; HTML escaping would only
		// grow the payload.
		enc.SetEscapeHTML(false)
		if err := enc.Encode(msg.Hashes); err != nil {
			return fmt.Errorf("hashes: %w", err)
		}
		tail.Truncate(tail.Len() - 1) // Encode's newline
	}
	tail.WriteString("}\n")
	for _, b := range [][]byte{head.Bytes(), msg.ConfigTable, tail.Bytes()} {
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

func validateHashes(h map[string]string) error {
	for _, k := range sortedKeys(h) {
		if err := ValidateHash("hashes."+k, h[k]); err != nil {
			return err
		}
	}
	return nil
}

// DecodeReconfigure gunzips and parses a reconfigure frame. maxCompressed
// bounds the frame (cluster_max_payload) and maxDecompressed the JSON inside
// it; <= 0 selects DefaultMaxPayload / DefaultMaxDecompressed. A frame of
// another type returns an error wrapping ErrNotReconfigure.
func DecodeReconfigure(data []byte, maxCompressed, maxDecompressed int64) (*Reconfigure, error) {
	plain, err := gunzipFrame(data, maxCompressed, maxDecompressed, nil)
	if err != nil {
		return nil, err
	}
	return parseReconfigureJSON(plain)
}

// ReconfigureDecoder is DecodeReconfigure gunzipping into one buffer that it
// reuses: the ConfigTable of a message it returns is valid only until its
// next Decode. It suits a reader that is done with each configuration
// before the next arrives (many simulated DPs in one process, whose garbage
// would otherwise set the pace of the process's GC).
type ReconfigureDecoder struct {
	// MaxCompressed and MaxDecompressed are DecodeReconfigure's limits.
	MaxCompressed, MaxDecompressed int64
	buf                            []byte
}

// Decode is DecodeReconfigure(data, d.MaxCompressed, d.MaxDecompressed).
func (d *ReconfigureDecoder) Decode(data []byte) (*Reconfigure, error) {
	plain, err := gunzipFrame(data, d.MaxCompressed, d.MaxDecompressed, d.buf[:0])
	if err != nil {
		return nil, err
	}
	d.buf = plain
	return parseReconfigureJSON(plain)
}

// gunzipFrame checks a reconfigure frame's size and gzip header and
// decompresses it, appending to dst (nil: a new buffer).
func gunzipFrame(data []byte, maxCompressed, maxDecompressed int64, dst []byte) ([]byte, error) {
	if maxCompressed <= 0 {
		maxCompressed = DefaultMaxPayload
	}
	if maxDecompressed <= 0 {
		maxDecompressed = DefaultMaxDecompressed
	}
	if len(data) == 0 {
		return nil, errors.New("reconfigure frame is empty")
	}
	if int64(len(data)) > maxCompressed {
		return nil, &PayloadTooLargeError{What: "reconfigure frame", Size: int64(len(data)), Limit: maxCompressed}
	}
	if len(data) < 2 || data[0] != 0x1f || data[1] != 0x8b {
		return nil, errors.New("reconfigure frame is not gzip-compressed")
	}
	// Decompressor state is large: reuse it across frames.
	zr, _ := gzipReaders.Get().(*gzip.Reader)
	if zr == nil {
		zr = new(gzip.Reader)
	}
	defer gzipReaders.Put(zr)
	if err := zr.Reset(bytes.NewReader(data)); err != nil {
		return nil, fmt.Errorf("reconfigure frame: invalid gzip data: %w", err)
	}
	// Read one byte past the limit to tell "exactly at the limit" from
	// "over it" without ever holding more than limit+1 bytes. gzip's
	// trailer states the size (mod 2^32): reading into a buffer of that
	// size spares the growing copies of a large config.
	hint := int64(binary.LittleEndian.Uint32(data[len(data)-4:]))
	plain, err := readAll(dst, io.LimitReader(zr, maxDecompressed+1), min(hint, maxDecompressed)+1)
	if err != nil {
		return nil, fmt.Errorf("reconfigure frame: corrupt gzip data: %w", err)
	}
	if int64(len(plain)) > maxDecompressed {
		return nil, &PayloadTooLargeError{What: "decompressed reconfigure payload", Limit: maxDecompressed, Partial: true}
	}
	return plain, nil
}

var gzipReaders sync.Pool

var gzipWriters = sync.Pool{New: func() any { return gzip.NewWriter(nil) }}

// readAll is io.ReadAll appending to b, with room for size bytes made first.
func readAll(b []byte, r io.Reader, size int64) ([]byte, error) {
	if int64(cap(b)-len(b)) < size {
		b = append(make([]byte, 0, int64(len(b))+max(size, 512)), b...)
	}
	for {
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			return b, err
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)] // grow
		}
	}
}

func parseReconfigureJSON(plain []byte) (*Reconfigure, error) {
	if firstNonSpace(plain) != '{' {
		if !json.Valid(plain) {
			return nil, errors.New("reconfigure frame: invalid JSON")
		}
		return nil, errors.New("reconfigure frame: message is not a JSON object")
	}
	var raw struct {
		Type        json.RawMessage `json:"type"`
		Timestamp   json.RawMessage `json:"timestamp"`
		ConfigTable json.RawMessage `json:"config_table"`
		ConfigHash  json.RawMessage `json:"config_hash"`
		Hashes      json.RawMessage `json:"hashes"`
	}
	// One pass that only delimits the members: config_table is most of the
	// frame, and the DP's config parser reads and validates all of it
	// anyway (an invalid table is refused there, and the running config
	// stays). The small members are decoded and checked below. Only a
	// malformed envelope takes encoding/json's path, for its message.
	if ms, ok := jsonscan.Object(plain); ok {
		raw.Type, raw.Timestamp, raw.ConfigTable = ms.Get("type"), ms.Get("timestamp"), ms.Get("config_table")
		raw.ConfigHash, raw.Hashes = ms.Get("config_hash"), ms.Get("hashes")
	} else if err := json.Unmarshal(plain, &raw); err != nil {
		return nil, fmt.Errorf("reconfigure frame: invalid JSON: %w", err)
	}
	var typ string
	if len(raw.Type) == 0 || isNull(raw.Type) {
		return nil, fmt.Errorf("%w: message has no type", ErrNotReconfigure)
	}
	if err := json.Unmarshal(raw.Type, &typ); err != nil {
		return nil, fmt.Errorf("%w: type is %s", ErrNotReconfigure, quoteShort(string(raw.Type)))
	}
	if typ != TypeReconfigure {
		return nil, fmt.Errorf("%w: type is %q", ErrNotReconfigure, quoteShort(typ))
	}
	m := &Reconfigure{Type: typ}

	if len(raw.ConfigTable) == 0 || isNull(raw.ConfigTable) {
		return nil, errors.New("reconfigure message has no config_table")
	}
	if firstNonSpace(raw.ConfigTable) != '{' {
		return nil, errors.New("reconfigure message: config_table is not a JSON object")
	}
	m.ConfigTable = raw.ConfigTable

	if len(raw.Timestamp) > 0 && !isNull(raw.Timestamp) {
		if err := json.Unmarshal(raw.Timestamp, &m.Timestamp); err != nil {
			return nil, fmt.Errorf("reconfigure message: timestamp is not a number: %s", quoteShort(string(raw.Timestamp)))
		}
	}
	if len(raw.ConfigHash) > 0 && !isNull(raw.ConfigHash) {
		if err := json.Unmarshal(raw.ConfigHash, &m.ConfigHash); err != nil {
			return nil, fmt.Errorf("reconfigure message: config_hash is not a string: %s", quoteShort(string(raw.ConfigHash)))
		}
		if err := ValidateHash("config_hash", m.ConfigHash); err != nil {
			return nil, fmt.Errorf("reconfigure message: %w", err)
		}
	}
	if len(raw.Hashes) > 0 && !isNull(raw.Hashes) {
		var hs map[string]any
		if err := json.Unmarshal(raw.Hashes, &hs); err != nil {
			// cjson encodes an empty table as {} but also accepts [] from
			// other senders; an empty array means no hashes.
			var arr []any
			if json.Unmarshal(raw.Hashes, &arr) != nil || len(arr) != 0 {
				return nil, errors.New("reconfigure message: hashes is not an object")
			}
		}
		if len(hs) > 0 {
			m.Hashes = make(map[string]string, len(hs))
			for _, k := range sortedKeys(hs) {
				s, ok := hs[k].(string)
				if !ok {
					return nil, fmt.Errorf("reconfigure message: hashes.%s is not a string", k)
				}
				if err := ValidateHash("hashes."+k, s); err != nil {
					return nil, fmt.Errorf("reconfigure message: %w", err)
				}
				m.Hashes[k] = s
			}
		}
	}
	return m, nil
}

// ProtocolError is a frame the peer must not send; the connection is closed
// with its message as the reason.
type ProtocolError struct{ Message string }

func (e *ProtocolError) Error() string { return e.Message }

func protocolErrorf(format string, a ...any) error {
	return &ProtocolError{Message: fmt.Sprintf(format, a...)}
}

func invalidPingHash(data []byte) error {
	return protocolErrorf("received a ping frame from the data plane with an invalid hash: '%s'", quoteShort(string(data)))
}

// quoteShort cuts s for messages: peers control these strings and a 16 MiB
// frame must not end up in one log line.
func quoteShort(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func firstNonSpace(b []byte) byte {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		}
		return c
	}
	return 0
}

func isNull(b []byte) bool { return string(bytes.TrimSpace(b)) == "null" }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
