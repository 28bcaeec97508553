package config

import "testing"

func TestValidatedMarksBuiltConfigsOnly(t *testing.T) {
	doc := []byte(`{"_format_version":"3.0","services":[{"name":"s","url":"http://u.test","routes":[{"name":"r","paths":["/p"]}]}]}`)
	parsed, err := Parse(doc, "kong.json")
	if err != nil {
		t.Fatal(err)
	}
	if !parsed.Validated() {
		t.Error("Parse result not marked validated")
	}
	if !parsed.WithoutDisabled().Validated() {
		t.Error("WithoutDisabled of a validated config lost the mark")
	}
	fromRows, err := FromEntities(map[string][]map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	if !fromRows.Validated() {
		t.Error("FromEntities result not marked validated")
	}
	var inCode Config
	inCode.Services = append(inCode.Services, &Service{ID: "not-a-uuid"})
	if inCode.Validated() {
		t.Error("a Config built in code claims to be validated")
	}
	if (*Config)(nil).Validated() {
		t.Error("nil config claims to be validated")
	}
	if _, err := Parse([]byte(`{"_format_version":"3.0","services":[{"port":-1}]}`), "bad.json"); err == nil {
		t.Error("invalid document parsed")
	}
}
