package admin

import (
	"math"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// Page-size bounds of Kong's Admin API (kong/api/endpoints.lua extract_options).
const (
	defaultPageSize = 100
	maxPageSize     = 1000
	maxTags         = 5
)

// pageQuery is the parsed ?size=&offset=&tags= of a collection GET.
type pageQuery struct {
	Size    int
	Offset  string
	Tags    []string
	TagsOr  bool
	rawTags string // as given, for the next link
	rawSize string
	hasSize bool
	hasTags bool
}

// tagBytes is Kong's tag charset: printable ASCII except ',' and '/', plus
// any non-ASCII character (Kong matches UTF-8 bytes 0x80-0xF4; Go's regexp
// matches runes, so the equivalent is every rune above U+007F).
const tagBytes = `\x20-\x2B\x2D\x2E\x30-\x7E\x{80}-\x{10FFFF}`

var (
	tagsAndRe = regexp.MustCompile(`^([` + tagBytes + `]+(?:,|$))+$`)
	tagsOrRe  = regexp.MustCompile(`^([` + tagBytes + `]+(?:/|$))+$`)
)

// parsePageQuery validates pagination and tag options, returning Kong's
// code-9 / code-11 errors for bad values. Offsets are validated by the store.
func parsePageQuery(q url.Values) (*pageQuery, *kongError) {
	pq := &pageQuery{Size: defaultPageSize, Offset: q.Get("offset")}
	if vs, ok := q["size"]; ok && len(vs) > 0 {
		pq.hasSize = true
		pq.rawSize = vs[0]
		f, err := strconv.ParseFloat(strings.TrimSpace(vs[0]), 64)
		if err != nil || math.IsNaN(f) {
			return nil, newKongError(codeInvalidSize, "size must be a number", nil)
		}
		if f != math.Trunc(f) || f < 1 || f > maxPageSize {
			return nil, newKongError(codeInvalidSize, "size must be an integer between 1 and 1000", nil)
		}
		pq.Size = int(f)
	}
	if vs, ok := q["tags"]; ok && len(vs) > 0 {
		pq.hasTags = true
		tags := vs[0]
		pq.rawTags = tags
		if tags == "" {
			return nil, invalidOptions(map[string]any{"tags": "cannot be null"})
		}
		var list []string
		switch {
		case tagsAndRe.MatchString(tags):
			list = splitNonEmpty(tags, ",")
		case tagsOrRe.MatchString(tags):
			list = splitNonEmpty(tags, "/")
			pq.TagsOr = true
		default:
			return nil, invalidOptions(map[string]any{"tags": "invalid filter syntax"})
		}
		if len(list) > maxTags {
			return nil, invalidOptions(map[string]any{"tags": "cannot query more than 5 tags"})
		}
		pq.Tags = list
	}
	return pq, nil
}

func splitNonEmpty(s, sep string) []string {
	var out []string
	for _, p := range strings.Split(s, sep) {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

// escapeURI escapes like ngx.escape_uri: everything but unreserved characters.
func escapeURI(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			c == '-' || c == '_' || c == '.' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// writePage answers a collection GET with Kong's page body: {"data": […],
// "next": link or null, "offset": … (only when another page follows)}.
func writePage(w http.ResponseWriter, data []any, path, offset string, pq *pageQuery, nested bool) {
	resp := map[string]any{"data": data, "next": nextLink(path, offset, pq, nested)}
	if offset != "" {
		resp["offset"] = offset
	}
	writeJSON(w, http.StatusOK, resp)
}

// nextLink is Kong's `next` value: top-level lists repeat tags and size,
// nested lists (`/services/x/routes`) carry only the offset.
func nextLink(path, offset string, pq *pageQuery, nested bool) any {
	if offset == "" {
		return nil
	}
	link := path + "?offset=" + escapeURI(offset)
	if !nested {
		if pq.hasTags {
			link += "&tags=" + escapeURI(pq.rawTags)
		}
		if pq.hasSize {
			link += "&size=" + pq.rawSize
		}
	}
	return link
}
