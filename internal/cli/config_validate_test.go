package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kongfb/kongfb/internal/ui"
)

const validKongYAML = `_format_version: "3.0"
services:
  - name: httpbin-service
    url: https://httpbin.org
    routes:
      - name: httpbin-route
        paths:
          - /mock
        strip_path: true
`

// Two errors: a service without host, and a route with a bad path.
const invalidKongYAML = `_format_version: "3.0"
services:
  - name: no-host
    port: 80
  - name: ok
    host: example.com
    routes:
      - name: bad-path
        paths:
          - "no-leading-slash"
`

func TestConfigValidateValid(t *testing.T) {
	f := writeTestFile(t, "kong.yaml", validKongYAML)
	p, out, errb := testPrinter(ui.FormatText)
	if err := configValidateRun(&configValidateOptions{Files: []string{f}, Printer: p}); err != nil {
		t.Fatal(err)
	}
	if want := f + ": valid (1 service, 1 route)\n"; out.String() != want {
		t.Errorf("stdout %q, want %q", out, want)
	}
	if errb.Len() != 0 {
		t.Errorf("stderr %q", errb)
	}
}

func TestConfigValidateEmptyConfig(t *testing.T) {
	f := writeTestFile(t, "empty.yaml", "_format_version: \"3.0\"\n")
	p, out, _ := testPrinter(ui.FormatText)
	if err := configValidateRun(&configValidateOptions{Files: []string{f}, Printer: p}); err != nil {
		t.Fatal(err)
	}
	if want := f + ": valid (0 services, 0 routes)\n"; out.String() != want {
		t.Errorf("stdout %q, want %q", out, want)
	}
}

func exitCode(err error) int {
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	return -1
}

func TestConfigValidateInvalid(t *testing.T) {
	f := writeTestFile(t, "kong.yaml", invalidKongYAML)
	p, out, _ := testPrinter(ui.FormatText)
	err := configValidateRun(&configValidateOptions{Files: []string{f}, Printer: p})
	if exitCode(err) != ExitFailure {
		t.Fatalf("err = %v, want ExitError code 1", err)
	}
	if !strings.Contains(err.Error(), "kong.yaml is invalid") {
		t.Errorf("err = %v", err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 3 || lines[0] != f+": invalid (2 errors)" {
		t.Fatalf("output:\n%s", out)
	}
	// One line per error, each naming the file, the entity and the field.
	var host, path bool
	for _, l := range lines[1:] {
		if !strings.HasPrefix(l, f+":") {
			t.Errorf("line %q does not start with the file", l)
		}
		if strings.Contains(l, "service 'no-host'") && strings.Contains(l, "host: required field missing") {
			host = true
		}
		if strings.Contains(l, "route 'bad-path'") && strings.Contains(l, "paths") {
			path = true
		}
	}
	if !host || !path {
		t.Errorf("missing an error line:\n%s", out)
	}
}

func TestConfigValidateSyntaxError(t *testing.T) {
	f := writeTestFile(t, "kong.json", "{\n  \"_format_version\": \"3.0\",\n  \"services\": [}\n")
	p, out, _ := testPrinter(ui.FormatText)
	err := configValidateRun(&configValidateOptions{Files: []string{f}, Printer: p})
	if exitCode(err) != ExitFailure {
		t.Fatalf("err = %v, want ExitError code 1", err)
	}
	if !strings.HasPrefix(out.String(), f+":3:") {
		t.Errorf("output %q, want it to start with file:3:col", out)
	}
}

func TestConfigValidateJSONOutput(t *testing.T) {
	good := writeTestFile(t, "good.yaml", validKongYAML)
	bad := writeTestFile(t, "bad.yaml", invalidKongYAML)
	syn := writeTestFile(t, "syn.json", "{\"services\": [}")
	p, out, _ := testPrinter(ui.FormatJSON)
	err := configValidateRun(&configValidateOptions{Files: []string{good, bad, syn}, Printer: p})
	if exitCode(err) != ExitFailure || !strings.Contains(err.Error(), "2 of 3 files are invalid") {
		t.Fatalf("err = %v", err)
	}
	var res struct {
		Valid bool `json:"valid"`
		Files []struct {
			File     string         `json:"file"`
			Valid    bool           `json:"valid"`
			Entities map[string]int `json:"entities"`
			Message  string         `json:"message"`
			Fields   map[string]any `json:"fields"`
			Errors   []struct {
				EntityType string `json:"entity_type"`
				EntityName string `json:"entity_name"`
				Field      string `json:"field"`
				Message    string `json:"message"`
			} `json:"errors"`
			SyntaxError *struct {
				Line, Column int
				Message      string
			} `json:"syntax_error"`
		} `json:"files"`
	}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if res.Valid || len(res.Files) != 3 {
		t.Fatalf("result: %s", out)
	}
	g, b, s := res.Files[0], res.Files[1], res.Files[2]
	if !g.Valid || g.Entities["services"] != 1 || g.Entities["routes"] != 1 || g.File != good {
		t.Errorf("good file: %+v", g)
	}
	if b.Valid || len(b.Errors) != 2 || !strings.HasPrefix(b.Message, "declarative config is invalid: ") {
		t.Errorf("bad file: %+v", b)
	}
	// Kong's nested fields: the first service lacks host.
	svcs, _ := b.Fields["services"].([]any)
	if len(svcs) == 0 {
		t.Fatalf("fields = %v", b.Fields)
	}
	if first, _ := svcs[0].(map[string]any); first["host"] != "required field missing" {
		t.Errorf("fields.services[0] = %v", svcs[0])
	}
	if e := b.Errors[0]; e.EntityType != "service" || e.EntityName != "no-host" || e.Field != "host" || e.Message != "required field missing" {
		t.Errorf("first error = %+v", e)
	}
	if s.Valid || s.SyntaxError == nil || s.SyntaxError.Line != 1 || s.SyntaxError.Column == 0 ||
		!strings.HasPrefix(s.Message, "failed parsing declarative configuration") {
		t.Errorf("syntax file: %+v", s)
	}
}

func TestConfigValidateMissingFileAndStdin(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.yaml")
	p, out, _ := testPrinter(ui.FormatText)
	err := configValidateRun(&configValidateOptions{Files: []string{"-", missing}, Printer: p, Stdin: strings.NewReader(validKongYAML)})
	if exitCode(err) != ExitFailure || !strings.Contains(err.Error(), "1 of 2 files are invalid") {
		t.Fatalf("err = %v", err)
	}
	got := out.String()
	if !strings.Contains(got, "<stdin>: valid (1 service, 1 route)\n") || !strings.Contains(got, missing+": open "+missing) {
		t.Errorf("output:\n%s", got)
	}
}

// TestConfigCommandsThroughMain runs the commands as the binary does, to
// check registration, flags and exit codes.
func TestConfigCommandsThroughMain(t *testing.T) {
	good := writeTestFile(t, "kong.yaml", validKongYAML)
	bad := writeTestFile(t, "bad.yaml", invalidKongYAML)
	raw := writeTestFile(t, "config.json", kongSpecDoc)
	cases := []struct {
		args   []string
		code   int
		stdout string // substring
		stderr string // substring
	}{
		{args: []string{"config", "validate", good}, code: 0, stdout: "valid (1 service, 1 route)"},
		{args: []string{"config", "validate", bad}, code: 1, stdout: "invalid (2 errors)", stderr: "Error: " + bad + " is invalid"},
		{args: []string{"config", "validate"}, code: 2, stderr: "requires at least 1 arg"},
		{args: []string{"config", "hash", "--raw", "-o", "json", raw}, code: 0, stdout: `"config_hash": "81aac97a81ad03c0cf0b36663806488e"`},
		{args: []string{"config", "hash", good}, code: 0, stdout: "config_hash  "},
		{args: []string{"config", "hash", bad}, code: 1, stderr: "required field missing"},
		{args: []string{"config", "hash", "--raw", good}, code: 2, stderr: "--raw hashes a JSON document"},
		{args: []string{"config", "hash"}, code: 2, stderr: "accepts 1 arg"},
		{args: []string{"config"}, code: 0, stdout: "validate"},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			code := Main(tc.args, strings.NewReader(""), &out, &errb)
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out.String(), errb.String())
			}
			if !strings.Contains(out.String(), tc.stdout) {
				t.Errorf("stdout %q lacks %q", out.String(), tc.stdout)
			}
			if !strings.Contains(errb.String(), tc.stderr) {
				t.Errorf("stderr %q lacks %q", errb.String(), tc.stderr)
			}
		})
	}
}
