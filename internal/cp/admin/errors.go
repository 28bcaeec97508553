package admin

import (
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/kongfb/kongfb/internal/cp/store"
)

// Kong's DAO error codes (kong/db/errors.lua). The Admin API answers with
// {"code","name","message","fields"} bodies carrying these codes, and clients
// such as decK and go-kong rely on the status code each maps to.
const (
	codeInvalidPrimaryKey     = 1
	codeSchemaViolation       = 2
	codePrimaryKeyViolation   = 3
	codeForeignKeyViolation   = 4
	codeUniqueViolation       = 5
	codeNotFound              = 6
	codeInvalidOffset         = 7
	codeDatabaseError         = 8
	codeInvalidSize           = 9
	codeInvalidUnique         = 10
	codeInvalidOptions        = 11
	codeOperationUnsupported  = 12
	codeForeignKeysUnresolved = 13
	codeDeclarativeConfig     = 14
	codeReferencedByOthers    = 19
)

var codeNames = map[int]string{
	codeInvalidPrimaryKey:     "invalid primary key",
	codeSchemaViolation:       "schema violation",
	codePrimaryKeyViolation:   "primary key violation",
	codeForeignKeyViolation:   "foreign key violation",
	codeUniqueViolation:       "unique constraint violation",
	codeNotFound:              "not found",
	codeInvalidOffset:         "invalid offset",
	codeDatabaseError:         "database error",
	codeInvalidSize:           "invalid size",
	codeInvalidUnique:         "invalid unique %s",
	codeInvalidOptions:        "invalid options",
	codeOperationUnsupported:  "operation unsupported",
	codeForeignKeysUnresolved: "foreign keys unresolved",
	codeDeclarativeConfig:     "invalid declarative configuration",
	codeReferencedByOthers:    "referenced by others",
}

var codeStatus = map[int]int{
	codeInvalidPrimaryKey:     http.StatusBadRequest,
	codeSchemaViolation:       http.StatusBadRequest,
	codePrimaryKeyViolation:   http.StatusBadRequest,
	codeForeignKeyViolation:   http.StatusBadRequest,
	codeUniqueViolation:       http.StatusConflict,
	codeNotFound:              http.StatusNotFound,
	codeInvalidOffset:         http.StatusBadRequest,
	codeDatabaseError:         http.StatusInternalServerError,
	codeInvalidSize:           http.StatusBadRequest,
	codeInvalidUnique:         http.StatusBadRequest,
	codeInvalidOptions:        http.StatusBadRequest,
	codeOperationUnsupported:  http.StatusMethodNotAllowed,
	codeForeignKeysUnresolved: http.StatusBadRequest,
	codeDeclarativeConfig:     http.StatusBadRequest,
	codeReferencedByOthers:    http.StatusBadRequest,
}

// kongError is the JSON body of a DAO error. Field order matches what Kong's
// docs show; clients parse the JSON, so order is cosmetic.
type kongError struct {
	Code    int    `json:"code"`
	Name    string `json:"name"`
	Message string `json:"message"`
	Fields  any    `json:"fields,omitempty"`
	Options any    `json:"options,omitempty"`
	// FlattenedErrors is only set by POST /config?flatten_errors=1.
	FlattenedErrors any `json:"flattened_errors,omitempty"`
}

func (e *kongError) status() int {
	if s, ok := codeStatus[e.Code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

func newKongError(code int, message string, fields any) *kongError {
	return &kongError{Code: code, Name: codeNames[code], Message: message, Fields: fields}
}

// message is Kong's plain {"message": "..."} body.
type message struct {
	Message string `json:"message"`
}

var (
	msgNotFound         = message{"Not found"}
	msgMethodNotAllowed = message{"Method not allowed"}
	msgBadJSON          = message{"Cannot parse JSON body"}
	msgUnauthorized     = message{"Invalid credentials. Token or User credentials required"}
	msgUnexpected       = message{"An unexpected error occurred"}
)

// schemaViolation builds Kong's code-2 error from a `fields` tree, with the
// message Kong derives from it: entity-level errors first, then fields sorted
// by name, nested errors flattened one level as `field.sub: msg`.
func schemaViolation(fields map[string]any) *kongError {
	return newKongError(codeSchemaViolation, schemaViolationMessage(fields), fields)
}

func schemaViolationMessage(fields map[string]any) string {
	var buf []string
	if ent, ok := fields["@entity"]; ok {
		switch t := ent.(type) {
		case []any:
			for _, e := range t {
				buf = append(buf, fmt.Sprint(e))
			}
		case []string:
			buf = append(buf, t...)
		default:
			buf = append(buf, fmt.Sprint(t))
		}
	}
	keys := sortedKeys(fields)
	for _, k := range keys {
		if k == "@entity" {
			continue
		}
		switch t := fields[k].(type) {
		case map[string]any:
			for _, sk := range sortedKeys(t) {
				buf = append(buf, fmt.Sprintf("%s.%s: %s", k, sk, luaValueText(t[sk])))
			}
		case []any:
			// Lua arrays are tables keyed 1..n; holes (nil) are skipped by pairs.
			type kv struct {
				k string
				v any
			}
			var items []kv
			for i, v := range t {
				if v == nil {
					continue
				}
				items = append(items, kv{strconv.Itoa(i + 1), v})
			}
			// sorted_keys sorts the numeric keys as numbers, which is index order.
			for _, it := range items {
				buf = append(buf, fmt.Sprintf("%s.%s: %s", k, it.k, luaValueText(it.v)))
			}
		default:
			buf = append(buf, fmt.Sprintf("%s: %s", k, luaValueText(t)))
		}
	}
	if len(buf) == 1 {
		return "schema violation (" + buf[0] + ")"
	}
	return fmt.Sprintf("%d schema violations (%s)", len(buf), strings.Join(buf, "; "))
}

// luaValueText renders a leaf error the way Lua's string.format("%s") or
// pl.pretty would: strings verbatim, tables pretty-printed.
func luaValueText(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case map[string]any, []any:
		return store.LuaTable(t)
	default:
		return fmt.Sprint(t)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// notFoundError is the code-6 body PATCH answers for a missing entity.
func notFoundError(key map[string]any, byPrimaryKey bool) *kongError {
	if byPrimaryKey {
		return newKongError(codeNotFound, "could not find the entity with primary key '"+store.LuaTable(key)+"'", key)
	}
	return newKongError(codeNotFound, "could not find the entity with '"+store.LuaTable(key)+"'", key)
}

func invalidOptions(options map[string]any) *kongError {
	var buf []string
	for _, k := range sortedKeys(options) {
		buf = append(buf, fmt.Sprintf("%s: %s", k, luaValueText(options[k])))
	}
	msg := "invalid option (" + strings.Join(buf, "") + ")"
	if len(buf) > 1 {
		msg = fmt.Sprintf("%d option violations (%s)", len(buf), strings.Join(buf, "; "))
	}
	e := newKongError(codeInvalidOptions, msg, nil)
	e.Options = options
	return e
}

// foreignKeysUnresolved is Kong's code-13 error for {"service":{"name":"x"}}
// references that match no entity.
func foreignKeysUnresolved(field, keyName string, keyValue any, parent string) *kongError {
	text := fmt.Sprintf("the foreign key cannot be resolved with '%s' for an existing '%s' entity",
		store.LuaTable(map[string]any{keyName: keyValue}), parent)
	return newKongError(codeForeignKeysUnresolved,
		fmt.Sprintf("foreign key unresolved (%s.%s: %s)", field, keyName, text),
		map[string]any{field: map[string]any{keyName: text}})
}
