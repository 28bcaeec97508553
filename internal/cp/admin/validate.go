package admin

import (
	"github.com/google/uuid"

	"github.com/kongfb/kongfb/pkg/config"
)

// validateMode names pkg/config's modes for the Admin API's operations.
type validateMode = config.ValidateMode

const (
	modeInsert = config.Insert
	// modeUpsert: PUT replaces the whole entity.
	modeUpsert = config.Upsert
	// modeUpdate: PATCH; the handler passes the stored row merged with the
	// body, so every field is given and entity checks see the result.
	modeUpdate = config.Update
)

// validateEntity runs pkg/config's schema over an entity and converts a
// violation into Kong's code-2 error.
func validateEntity(coll string, args map[string]any, mode validateMode) (map[string]any, *kongError) {
	row, v := config.ValidateEntity(coll, args, mode)
	if v != nil {
		return nil, newKongError(codeSchemaViolation, v.Message(), v.Fields)
	}
	return row, nil
}

// schemaFields returns the "fields" list of coll's Kong schema document.
func schemaFields(coll string) []any {
	doc, ok := config.Schema(coll)
	if !ok {
		return nil
	}
	fl, _ := doc["fields"].([]any)
	return fl
}

// inferEntityArgs converts form-encoded strings to the schema's types. For
// plugins the config record follows the plugin's own schema when it has one.
func inferEntityArgs(coll string, args map[string]any) {
	inferArgs(args, schemaFields(coll))
	if coll != "plugins" {
		return
	}
	name, _ := args["name"].(string)
	cfg, ok := args["config"].(map[string]any)
	if name == "" || !ok {
		return
	}
	doc, ok := config.PluginSchema(name)
	if !ok {
		return
	}
	fl, _ := doc["fields"].([]any)
	if def, ok := fieldDefs(fl)["config"]; ok {
		if sub, ok := def["fields"].([]any); ok && len(sub) > 0 {
			args["config"] = inferArgs(cfg, sub)
		}
	}
}

// mergeEntity merges a PATCH body into the stored row the way Kong's
// Schema:merge_values does: fields of type record merge recursively (so
// PATCH {"config":{"minute":5}} keeps the plugin's other settings); every
// other field, maps and arrays included, is replaced.
func mergeEntity(coll string, current, patch map[string]any) map[string]any {
	return mergeRecord(deepCopy(current).(map[string]any), patch, fieldDefs(schemaFields(coll)))
}

func mergeRecord(bottom, top map[string]any, defs map[string]map[string]any) map[string]any {
	for k, v := range top {
		def := defs[k]
		tm, topIsMap := v.(map[string]any)
		bm, bottomIsMap := bottom[k].(map[string]any)
		isRecord := def != nil && def["type"] == "record"
		if topIsMap && bottomIsMap && isRecord {
			var sub map[string]map[string]any
			if fl, ok := def["fields"].([]any); ok && len(fl) > 0 {
				sub = fieldDefs(fl)
				bottom[k] = mergeRecord(bm, tm, sub)
			} else {
				// A record without declared fields (plugin config without a
				// schema): merge nested objects as records too.
				bottom[k] = mergeUntyped(bm, tm)
			}
			continue
		}
		bottom[k] = v
	}
	return bottom
}

func mergeUntyped(bottom, top map[string]any) map[string]any {
	for k, v := range top {
		tm, ok1 := v.(map[string]any)
		bm, ok2 := bottom[k].(map[string]any)
		if ok1 && ok2 {
			bottom[k] = mergeUntyped(bm, tm)
			continue
		}
		bottom[k] = v
	}
	return bottom
}

func newID() string { return uuid.NewString() }
