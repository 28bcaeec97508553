package config

import (
	"bytes"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"sync"
)

// EmptyHash is Kong's DECLARATIVE_EMPTY_CONFIG_HASH: the hash of "no
// configuration" (kong/constants.lua). A Kong DP stores a config that has no
// entities besides workspaces under this hash whatever the CP sent.
const EmptyHash = "00000000000000000000000000000000"

// hashGroups are the collections Kong hashes on their own, in the order their
// hashes are concatenated into config_hash (kong/clustering/config_helper.lua,
// calculate_config_hash). Everything else in the document is the "rest".
var hashGroups = [...]string{"routes", "services", "plugins", "upstreams", "targets"}

// sortedStringLimit is the buffer size past which Kong replaces the buffer's
// content by its raw MD5 before writing the next value. It bounds Kong's memory
// use, and because it changes the bytes that get hashed it is part of the
// hash's definition, not an optimisation we could skip.
const sortedStringLimit = 1_000_000

// Hash returns Kong's hybrid-mode config_hash of c and the per-group hashes
// {config, routes, services, plugins, upstreams, targets}, computed over the
// export document c.ExportMap() exactly as a Kong control plane computes it
// over its own export.
//
// A nil config, or one with no entities besides workspaces, hashes to
// EmptyHash (every group too): that is the hash a Kong data plane stores and
// reports for such a config (config_is_empty in kong/db/declarative/import.lua),
// so kongfb reports the same.
func Hash(c *Config) (configHash string, hashes map[string]string) {
	if c.hashIsEmpty() {
		return EmptyHash, hashEmptyAll()
	}
	return HashDocument(c.ExportMap())
}

// HashDocument computes Kong's config_hash and per-group hashes over a generic
// JSON document, as Kong's calculate_config_hash does over the Lua table cjson
// decodes from it. Nothing is normalised: the document is hashed as given.
//
// How JSON values map to what Kong sees:
//   - nil (JSON null) is Kong's ngx.null and hashes as "/null/". A group key
//     that is absent hashes as EmptyHash; one that is present with null value
//     hashes as md5("/null/"), because cjson keeps JSON null as ngx.null.
//   - Numbers may be float64, json.Number or any Go integer/float type. Lua has
//     only doubles, so each is converted to float64 (as cjson's strtod does)
//     and printed like Lua's tostring ("%.14g"): 10 → "10", 0.9 → "0.9",
//     2^53 → "9.007199254741e+15".
//   - An empty array and an empty object are both an empty Lua table to
//     cjson, so both hash as "{}".
//
// A nil document hashes to EmptyHash, like Kong's calculate_hash(nil); an
// empty one ({}) does not (Kong's spec gives aaf38faf0b5851d711027bb4d812d50d).
func HashDocument(doc map[string]any) (string, map[string]string) {
	if doc == nil {
		return EmptyHash, hashEmptyAll()
	}
	w := newHashWriter()
	defer w.release()

	hashes := make(map[string]string, len(hashGroups)+1)
	concat := make([]byte, 0, 32*(len(hashGroups)+1))
	for _, g := range hashGroups {
		h := EmptyHash
		if v, ok := doc[g]; ok {
			h = w.hash(v)
		}
		hashes[g] = h
		concat = append(concat, h...)
	}
	rest := make(map[string]any, len(doc))
	for k, v := range doc {
		if !hashIsGroup(k) {
			rest[k] = v
		}
	}
	concat = append(concat, w.hash(rest)...)
	sum := md5.Sum(concat)
	configHash := hex.EncodeToString(sum[:])
	hashes["config"] = configHash
	return configHash, hashes
}

// hashAnyValue is Kong's calculate_config_hash for a value that need not be a
// document (Kong hashes a non-table as a single value). It exists so that the
// scalar cases of Kong's own spec can be checked.
func hashAnyValue(v any) string {
	if doc, ok := v.(map[string]any); ok {
		h, _ := HashDocument(doc)
		return h
	}
	w := newHashWriter()
	defer w.release()
	return w.hash(v)
}

func hashIsGroup(k string) bool {
	for _, g := range hashGroups {
		if k == g {
			return true
		}
	}
	return false
}

func hashEmptyAll() map[string]string {
	h := map[string]string{"config": EmptyHash}
	for _, g := range hashGroups {
		h[g] = EmptyHash
	}
	return h
}

// hashWriter builds Kong's to_sorted_string serialisation into one
// buffer. Buffers are pooled because a CP hashes every config it pushes.
type hashWriter struct {
	buf  []byte
	keys [][]string // per-depth scratch for sorting map keys
}

var hashWriterPool = sync.Pool{New: func() any { return &hashWriter{buf: make([]byte, 0, 64<<10)} }}

func newHashWriter() *hashWriter { return hashWriterPool.Get().(*hashWriter) }

func (w *hashWriter) release() {
	// Do not keep huge buffers alive in the pool; the 1e6 rule caps the
	// buffer near 1 MB, so this only drops the rare oversized one.
	if cap(w.buf) > 4<<20 {
		w.buf = make([]byte, 0, 64<<10)
	}
	hashWriterPool.Put(w)
}

// hash is Kong's calculate_hash for a non-nil value: lower-case hex MD5 of
// the value's sorted string.
func (w *hashWriter) hash(v any) string {
	w.buf = w.buf[:0]
	w.value(v, 0)
	sum := md5.Sum(w.buf)
	return hex.EncodeToString(sum[:])
}

// value appends v's sorted string. The size check happens at the start of
// every call, i.e. before each value (never between a map key and its ':'),
// which is exactly where Kong checks.
func (w *hashWriter) value(v any, depth int) {
	if len(w.buf) > sortedStringLimit {
		sum := md5.Sum(w.buf)
		w.buf = append(w.buf[:0], sum[:]...)
	}
	switch x := v.(type) {
	case nil:
		w.buf = append(w.buf, "/null/"...)
	case string:
		w.buf = append(w.buf, x...)
	case bool:
		w.buf = strconv.AppendBool(w.buf, x)
	case float64:
		w.buf = hashAppendLuaNumber(w.buf, x)
	case json.Number:
		w.buf = hashAppendLuaNumber(w.buf, hashJSONNumber(x))
	case int:
		w.buf = hashAppendLuaNumber(w.buf, float64(x))
	case int64:
		w.buf = hashAppendLuaNumber(w.buf, float64(x))
	case map[string]any:
		w.mapValue(x, depth)
	case []any:
		w.arrayLen(len(x), func(i int) { w.value(x[i], depth+1) })
	case []string:
		if x == nil {
			w.buf = append(w.buf, "/null/"...)
			return
		}
		// Strings carry no nested values, but Kong still checks the buffer
		// before each element, so go through value for each.
		w.arrayLen(len(x), func(i int) { w.value(x[i], depth+1) })
	default:
		w.reflectValue(reflect.ValueOf(v), depth)
	}
}

// arrayLen writes an array of n elements: up to 5 elements are joined by ';'
// with no trailing ';', more are each followed by ';' (Kong unrolls n ≤ 5).
// An empty array is an empty Lua table: "{}".
func (w *hashWriter) arrayLen(n int, elem func(i int)) {
	switch {
	case n == 0:
		w.buf = append(w.buf, "{}"...)
	case n <= 5:
		for i := 0; i < n; i++ {
			if i > 0 {
				w.buf = append(w.buf, ';')
			}
			elem(i)
		}
	default:
		for i := 0; i < n; i++ {
			elem(i)
			w.buf = append(w.buf, ';')
		}
	}
}

func (w *hashWriter) mapValue(m map[string]any, depth int) {
	if len(m) == 0 {
		w.buf = append(w.buf, "{}"...)
		return
	}
	keys := w.scratchKeys(depth, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	// Go compares strings bytewise, like LuaJIT's string '<' used by table.sort.
	slices.Sort(keys)
	w.keys[depth] = keys
	for _, k := range keys {
		w.buf = append(w.buf, k...)
		w.buf = append(w.buf, ':')
		w.value(m[k], depth+1)
		w.buf = append(w.buf, ';')
	}
}

func (w *hashWriter) scratchKeys(depth, n int) []string {
	for len(w.keys) <= depth {
		w.keys = append(w.keys, nil)
	}
	k := w.keys[depth][:0]
	if cap(k) < n {
		k = make([]string, 0, n)
	}
	return k
}

// reflectValue handles values that are not what encoding/json produces when
// decoding into any (typed slices, maps with string keys, pointers, other
// number types). They are hashed as the JSON value they would encode to.
func (w *hashWriter) reflectValue(rv reflect.Value, depth int) {
	switch rv.Kind() {
	case reflect.Invalid:
		w.buf = append(w.buf, "/null/"...)
	case reflect.Pointer, reflect.Interface:
		if rv.IsNil() {
			w.buf = append(w.buf, "/null/"...)
			return
		}
		w.value(rv.Elem().Interface(), depth)
	case reflect.String:
		w.buf = append(w.buf, rv.String()...)
	case reflect.Bool:
		w.buf = strconv.AppendBool(w.buf, rv.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		w.buf = hashAppendLuaNumber(w.buf, float64(rv.Int()))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		w.buf = hashAppendLuaNumber(w.buf, float64(rv.Uint()))
	case reflect.Float32, reflect.Float64:
		w.buf = hashAppendLuaNumber(w.buf, rv.Float())
	case reflect.Slice, reflect.Array:
		if rv.Kind() == reflect.Slice && rv.IsNil() {
			w.buf = append(w.buf, "/null/"...)
			return
		}
		if rv.Type().Elem().Kind() == reflect.Uint8 {
			// encoding/json writes byte slices as base64 strings.
			b := make([]byte, rv.Len())
			reflect.Copy(reflect.ValueOf(b), rv)
			w.buf = append(w.buf, base64.StdEncoding.EncodeToString(b)...)
			return
		}
		w.arrayLen(rv.Len(), func(i int) { w.value(rv.Index(i).Interface(), depth+1) })
	case reflect.Map:
		if rv.IsNil() {
			w.buf = append(w.buf, "/null/"...)
			return
		}
		if rv.Type().Key().Kind() != reflect.String {
			w.jsonFallback(rv.Interface(), depth)
			return
		}
		m := make(map[string]any, rv.Len())
		it := rv.MapRange()
		for it.Next() {
			m[it.Key().String()] = it.Value().Interface()
		}
		w.mapValue(m, depth)
	default:
		w.jsonFallback(rv.Interface(), depth)
	}
}

// jsonFallback hashes a value (struct, map with non-string keys) as the JSON
// it encodes to. A value JSON cannot encode (func, chan) has no Kong
// equivalent either (Kong raises "invalid type to be sorted"); it is written
// as a marker naming its type so the hash stays deterministic.
func (w *hashWriter) jsonFallback(v any, depth int) {
	b, err := json.Marshal(v)
	if err != nil {
		w.buf = fmt.Appendf(w.buf, "/invalid %T/", v)
		return
	}
	var g any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&g); err != nil {
		w.buf = fmt.Appendf(w.buf, "/invalid %T/", v)
		return
	}
	w.value(g, depth)
}

// hashJSONNumber converts a JSON number the way cjson does (strtod): to the
// nearest double, ±Inf when out of range.
func hashJSONNumber(n json.Number) float64 {
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil {
		// ParseFloat returns ±Inf (or 0 for underflow) with ErrRange, which
		// is what strtod gives; anything else is not a JSON number at all.
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
			return f
		}
		return math.NaN()
	}
	return f
}

// hashAppendLuaNumber formats f as LuaJIT's tostring (and string.buffer:put) do:
// C's "%.14g", with "inf", "-inf" and "nan" for the non-finite values.
// strconv's 'g' with precision 14 drops trailing zeros and switches to the
// exponent form at the same points as C's %g (exponent < -4 or ≥ 14), with
// at least two exponent digits, so the output is byte-identical.
func hashAppendLuaNumber(b []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		return append(b, "nan"...)
	case math.IsInf(f, 1):
		return append(b, "inf"...)
	case math.IsInf(f, -1):
		return append(b, "-inf"...)
	}
	return strconv.AppendFloat(b, f, 'g', 14, 64)
}

// hashLuaNumber is hashAppendLuaNumber as a string.
func hashLuaNumber(f float64) string { return string(hashAppendLuaNumber(nil, f)) }
