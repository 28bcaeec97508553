package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// DefaultMaxBodyBytes bounds request bodies. Kong's nginx default for the
// admin listener is 10m; POST /config of a large declarative file needs more,
// so kongfb allows 16 MiB (the same as Kong's cluster_max_payload).
const DefaultMaxBodyBytes = 16 << 20

// bodyKind says how a request body was encoded.
type bodyKind int

const (
	bodyNone bodyKind = iota
	bodyJSON
	bodyForm // application/x-www-form-urlencoded or multipart/form-data
	bodyYAML // only accepted by POST /config
)

// requestBody is a decoded request body. Form bodies hold strings whose types
// are inferred from the entity schema later (Kong's arguments.infer).
type requestBody struct {
	kind bodyKind
	raw  []byte
	args map[string]any
}

// errBodyTooLarge is answered with 413.
var errBodyTooLarge = errors.New("request body too large")

// errUnsupportedMedia is answered with an empty 415, as Kong does.
var errUnsupportedMedia = errors.New("unsupported media type")

// errBadJSON is answered with Kong's byte-exact {"message":"Cannot parse JSON body"}.
var errBadJSON = errors.New("cannot parse JSON body")

// readBody reads and decodes the body of a POST/PUT/PATCH request. Kong
// refuses (415) a body with no or an unknown content type; an absent body is
// an empty argument set. allowYAML admits application/yaml and text/yaml
// (POST /config only).
func readBody(r *http.Request, limit int64, allowYAML bool) (*requestBody, error) {
	raw, err := readAllLimited(r.Body, limit)
	if err != nil {
		return nil, err
	}
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		if len(bytes.TrimSpace(raw)) == 0 {
			return &requestBody{kind: bodyNone, args: map[string]any{}}, nil
		}
		return nil, errUnsupportedMedia
	}
	mt, params, perr := mime.ParseMediaType(ct)
	if perr != nil {
		// Kong matches on the prefix only; fall back to that for odd parameters.
		mt = strings.ToLower(strings.TrimSpace(strings.SplitN(ct, ";", 2)[0]))
	}
	switch {
	case mt == "application/json" || strings.HasSuffix(mt, "+json"):
		if len(bytes.TrimSpace(raw)) == 0 {
			return &requestBody{kind: bodyJSON, args: map[string]any{}}, nil
		}
		var v any
		dec := json.NewDecoder(bytes.NewReader(raw))
		if err := dec.Decode(&v); err != nil {
			return nil, errBadJSON
		}
		if dec.More() {
			return nil, errBadJSON
		}
		obj, ok := v.(map[string]any)
		if !ok {
			if allowYAML {
				// POST /config reports a non-object itself with Kong's code-14 text.
				return &requestBody{kind: bodyJSON, raw: raw}, nil
			}
			return nil, errBadJSON
		}
		return &requestBody{kind: bodyJSON, raw: raw, args: obj}, nil
	case mt == "application/x-www-form-urlencoded":
		vals, err := url.ParseQuery(string(raw))
		if err != nil {
			return nil, fmt.Errorf("invalid form body: %w", err)
		}
		return &requestBody{kind: bodyForm, raw: raw, args: decodeFormArgs(vals)}, nil
	case mt == "multipart/form-data":
		vals, err := parseMultipart(raw, params["boundary"])
		if err != nil {
			return nil, err
		}
		return &requestBody{kind: bodyForm, raw: raw, args: decodeFormArgs(vals)}, nil
	case allowYAML && (mt == "application/yaml" || mt == "text/yaml" || mt == "application/x-yaml" || mt == "text/x-yaml"):
		return &requestBody{kind: bodyYAML, raw: raw}, nil
	}
	return nil, errUnsupportedMedia
}

func readAllLimited(r io.Reader, limit int64) ([]byte, error) {
	if r == nil {
		return nil, nil
	}
	if limit <= 0 {
		limit = DefaultMaxBodyBytes
	}
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errBodyTooLarge
		}
		return nil, fmt.Errorf("read request body: %w", err)
	}
	if int64(len(data)) > limit {
		return nil, errBodyTooLarge
	}
	return data, nil
}

func parseMultipart(raw []byte, boundary string) (url.Values, error) {
	if boundary == "" {
		return nil, errors.New("invalid multipart body: no boundary in Content-Type")
	}
	mr := multipart.NewReader(bytes.NewReader(raw), boundary)
	vals := url.Values{}
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return vals, nil
		}
		if err != nil {
			return nil, fmt.Errorf("invalid multipart body: %w", err)
		}
		data, err := io.ReadAll(p)
		if err != nil {
			return nil, fmt.Errorf("invalid multipart body: part %q: %w", p.FormName(), err)
		}
		// Kong hands the part's content to the DAO, files included (this is how
		// `curl -F cert=@cert.pem` uploads a certificate).
		vals.Add(p.FormName(), string(data))
	}
}

var arraySuffix = regexp.MustCompile(`^(.+)\[(\d*)\]$`)

// decodeFormArgs turns flat form keys into nested values the way Kong's
// arguments.decode does: `a.b=1` → {"a":{"b":"1"}}, `a[]=1&a[]=2` and
// repeated keys → arrays, `a[2]=x` → array position 2 (1-based).
func decodeFormArgs(vals url.Values) map[string]any {
	out := map[string]any{}
	names := make([]string, 0, len(vals))
	for k := range vals {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, name := range names {
		vs := vals[name]
		var value any
		if len(vs) == 1 {
			value = vs[0]
		} else {
			arr := make([]any, len(vs))
			for i, s := range vs {
				arr[i] = s
			}
			value = arr
		}
		if strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".") || name == "" {
			mergeArg(out, name, value)
			continue
		}
		segs := strings.Split(name, ".")
		container := out
		for i, seg := range segs {
			if seg == "" {
				continue
			}
			if i == len(segs)-1 {
				setArraySeg(container, seg, value)
				break
			}
			container = childMap(container, seg)
		}
	}
	return out
}

// childMap returns (creating it) the object under key; a[1].b style keys
// address the first element of an array of objects.
func childMap(container map[string]any, seg string) map[string]any {
	base, idx := seg, -1
	if m := arraySuffix.FindStringSubmatch(seg); m != nil {
		base = m[1]
		idx = 0
		if m[2] != "" {
			n, _ := strconv.Atoi(m[2])
			if n > 0 {
				idx = n - 1
			}
		}
	}
	if idx < 0 {
		if m, ok := container[base].(map[string]any); ok {
			return m
		}
		m := map[string]any{}
		container[base] = m
		return m
	}
	arr, _ := container[base].([]any)
	for len(arr) <= idx {
		arr = append(arr, map[string]any{})
	}
	m, ok := arr[idx].(map[string]any)
	if !ok {
		m = map[string]any{}
		arr[idx] = m
	}
	container[base] = arr
	return m
}

func setArraySeg(container map[string]any, seg string, value any) {
	m := arraySuffix.FindStringSubmatch(seg)
	if m == nil {
		mergeArg(container, seg, value)
		return
	}
	base := m[1]
	arr, _ := container[base].([]any)
	if m[2] != "" {
		n, _ := strconv.Atoi(m[2])
		if n < 1 {
			n = 1
		}
		for len(arr) < n {
			arr = append(arr, nil)
		}
		arr[n-1] = value
	} else {
		switch t := value.(type) {
		case []any:
			arr = append(arr, t...)
		default:
			arr = append(arr, t)
		}
	}
	container[base] = arr
}

// mergeArg sets key, turning repeated keys into arrays (Kong's combine).
func mergeArg(container map[string]any, key string, value any) {
	prev, ok := container[key]
	if !ok {
		container[key] = value
		return
	}
	switch p := prev.(type) {
	case []any:
		if v, ok := value.([]any); ok {
			container[key] = append(p, v...)
		} else {
			container[key] = append(p, value)
		}
	default:
		container[key] = []any{p, value}
	}
}

// inferArgs converts form strings to the types the entity schema declares
// (Kong's arguments.infer): "" → null, numbers, booleans, scalars → arrays
// for array/set fields, and nested records. fields is the "fields" list of a
// Kong schema document ([{"name": {...}}, ...]).
func inferArgs(args map[string]any, fields []any) map[string]any {
	defs := fieldDefs(fields)
	for k, v := range args {
		if def, ok := defs[k]; ok {
			args[k] = inferValue(v, def)
		}
	}
	return args
}

func fieldDefs(fields []any) map[string]map[string]any {
	defs := map[string]map[string]any{}
	for _, f := range fields {
		fm, ok := f.(map[string]any)
		if !ok {
			continue
		}
		for name, def := range fm {
			if d, ok := def.(map[string]any); ok {
				defs[name] = d
			}
		}
	}
	return defs
}

func inferValue(v any, def map[string]any) any {
	if def == nil {
		return v
	}
	if s, ok := v.(string); ok && s == "" {
		return nil
	}
	typ, _ := def["type"].(string)
	switch typ {
	case "number", "integer":
		if s, ok := v.(string); ok {
			if f, err := strconv.ParseFloat(strings.TrimSpace(s), 64); err == nil {
				return f
			}
		}
	case "boolean":
		if s, ok := v.(string); ok {
			switch s {
			case "true":
				return true
			case "false":
				return false
			}
		}
	case "array", "set":
		arr, ok := v.([]any)
		if !ok {
			arr = []any{v}
		}
		elem, _ := def["elements"].(map[string]any)
		for i, e := range arr {
			arr[i] = inferValue(e, elem)
		}
		return arr
	case "foreign":
		if s, ok := v.(string); ok {
			return map[string]any{"id": s}
		}
	case "map":
		if m, ok := v.(map[string]any); ok {
			elem, _ := def["values"].(map[string]any)
			if elem == nil {
				elem, _ = def["elements"].(map[string]any)
			}
			for k, e := range m {
				m[k] = inferValue(e, elem)
			}
		}
	case "record":
		if m, ok := v.(map[string]any); ok {
			if sub, ok := def["fields"].([]any); ok {
				return inferArgs(m, sub)
			}
		}
	}
	return v
}
