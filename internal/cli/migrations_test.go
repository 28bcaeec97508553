package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/kongfb/kongfb/internal/cp/store"
	"github.com/kongfb/kongfb/internal/cp/store/storetest"
)

func runKongfb(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errw bytes.Buffer
	code = Main(args, strings.NewReader(""), &out, &errw)
	return code, out.String(), errw.String()
}

func TestMigrationsSQLite(t *testing.T) {
	prefix := filepath.Join(t.TempDir(), "data")
	code, out, errOut := runKongfb(t, "migrations", "status", "--prefix", prefix)
	if code != exitNeedsBootstrap || !strings.Contains(out, "Database needs bootstrapping") || !strings.Contains(out, "pending") {
		t.Fatalf("status of a new database: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runKongfb(t, "migrations", "up", "--prefix", prefix)
	if code != ExitFailure || !strings.Contains(errOut, "kongfb migrations bootstrap") {
		t.Fatalf("up before bootstrap: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runKongfb(t, "migrations", "bootstrap", "--prefix", prefix)
	if code != ExitOK || !strings.Contains(out, "applied 0001_init") || !strings.Contains(out, filepath.Join(prefix, "kongfb.db")) {
		t.Fatalf("bootstrap: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runKongfb(t, "migrations", "bootstrap", "--prefix", prefix)
	if code != ExitOK || !strings.Contains(out, "already bootstrapped") {
		t.Fatalf("second bootstrap: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runKongfb(t, "migrations", "up", "--prefix", prefix)
	if code != ExitOK || !strings.Contains(out, "already up-to-date") {
		t.Fatalf("up: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runKongfb(t, "migrations", "list", "--prefix", prefix)
	if code != ExitOK || !strings.Contains(out, "executed") || !strings.Contains(out, "Database is up-to-date") {
		t.Fatalf("status: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runKongfb(t, "migrations", "status", "--prefix", prefix, "-o", "json")
	var st struct {
		Database     string `json:"database"`
		Location     string `json:"location"`
		Bootstrapped bool   `json:"bootstrapped"`
		UpToDate     bool   `json:"up_to_date"`
		Executed     []struct {
			Version int    `json:"version"`
			Name    string `json:"name"`
		} `json:"executed"`
		Pending []any `json:"pending"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || code != ExitOK {
		t.Fatalf("status json: exit %d %v\n%s%s", code, err, out, errOut)
	}
	if st.Database != "sqlite" || !st.Bootstrapped || !st.UpToDate || len(st.Executed) != 1 ||
		st.Executed[0].Name != "init" || st.Pending == nil || len(st.Pending) != 0 {
		t.Fatalf("status json: %+v", st)
	}
	// The store the CLI bootstrapped opens without migrating.
	s, err := store.Open(context.Background(), store.Config{Prefix: prefix})
	if err != nil {
		t.Fatalf("open bootstrapped store: %v", err)
	}
	s.Close()
}

func TestMigrationsKongEnv(t *testing.T) {
	prefix := filepath.Join(t.TempDir(), "kong-prefix")
	t.Setenv("KONG_PREFIX", prefix)
	t.Setenv("KONG_DATABASE", "sqlite")
	code, out, errOut := runKongfb(t, "migrations", "bootstrap", "-o", "json")
	var res store.MigrationResult
	if err := json.Unmarshal([]byte(out), &res); err != nil || code != ExitOK {
		t.Fatalf("bootstrap: exit %d %v\n%s%s", code, err, out, errOut)
	}
	if res.Location != filepath.Join(prefix, "kongfb.db") || len(res.Applied) != 1 {
		t.Fatalf("bootstrap with KONG_PREFIX: %+v", res)
	}
	// A flag beats the Kong environment name.
	other := filepath.Join(t.TempDir(), "flag-prefix")
	if code, out, _ := runKongfb(t, "migrations", "status", "--prefix", other); code != exitNeedsBootstrap {
		t.Fatalf("--prefix did not override KONG_PREFIX: exit %d\n%s", code, out)
	}
	t.Setenv("KONG_DATABASE", "off")
	if code, _, errOut := runKongfb(t, "migrations", "status"); code != ExitUsage || !strings.Contains(errOut, "database=off") {
		t.Fatalf("KONG_DATABASE=off: exit %d %s", code, errOut)
	}
	t.Setenv("KONG_DATABASE", "cassandra")
	if code, _, errOut := runKongfb(t, "migrations", "status"); code != ExitUsage || !strings.Contains(errOut, "cassandra") {
		t.Fatalf("KONG_DATABASE=cassandra: exit %d %s", code, errOut)
	}
}

func TestMigrationsPostgres(t *testing.T) {
	cfg := storetest.PostgresConfig(t)
	args := func(cmd string, extra ...string) []string {
		return append([]string{"migrations", cmd, "--database", "postgres", "--pg-dsn", cfg.Postgres.DSN,
			"--pg-schema", cfg.Postgres.Schema}, extra...)
	}
	code, out, errOut := runKongfb(t, args("status")...)
	if code != exitNeedsBootstrap {
		t.Fatalf("status of a new schema: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runKongfb(t, args("bootstrap")...)
	if code != ExitOK || !strings.Contains(out, "applied 0001_init") || !strings.Contains(out, "search_path="+cfg.Postgres.Schema) {
		t.Fatalf("bootstrap: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runKongfb(t, args("status", "-o", "json")...)
	if code != ExitOK || !strings.Contains(out, `"up_to_date": true`) {
		t.Fatalf("status: exit %d\n%s%s", code, out, errOut)
	}
	// A schema migrated by a newer kongfb: exit 1 and say so.
	storetest.AdminExec(t, `INSERT INTO "`+cfg.Postgres.Schema+`".kongfb_schema_migrations VALUES (9999, 'future', '2030-01-01T00:00:00Z')`)
	code, out, errOut = runKongfb(t, args("status")...)
	if code != ExitFailure || !strings.Contains(out, "newer than this kongfb") {
		t.Fatalf("status of a newer schema: exit %d\n%s%s", code, out, errOut)
	}
}

// The Kong environment names reach PostgreSQL, and the password shows up
// nowhere, even in the failure message.
func TestMigrationsPostgresEnvNoPasswordLeak(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	const secret = "Sup3r-s3cret-pw"
	t.Setenv("KONG_DATABASE", "postgres")
	t.Setenv("KONG_PG_HOST", "127.0.0.1")
	t.Setenv("KONG_PG_PORT", strconv.Itoa(port))
	t.Setenv("KONG_PG_USER", "someone")
	t.Setenv("KONG_PG_PASSWORD", secret)
	t.Setenv("KONG_PG_DATABASE", "somedb")
	for _, cmd := range []string{"bootstrap", "up", "status"} {
		code, out, errOut := runKongfb(t, "migrations", cmd, "--log-level", "debug")
		if code != ExitFailure {
			t.Fatalf("%s on a closed port: exit %d\n%s%s", cmd, code, out, errOut)
		}
		if strings.Contains(out+errOut, secret) {
			t.Fatalf("%s leaked the password:\n%s%s", cmd, out, errOut)
		}
		want := "someone@127.0.0.1:" + strconv.Itoa(port) + "/somedb"
		if !strings.Contains(errOut, want) || !strings.Contains(errOut, "unavailable") {
			t.Fatalf("%s error does not name the database %s:\n%s", cmd, want, errOut)
		}
	}
	if code, _, errOut := runKongfb(t, "migrations", "status", "--pg-port", "70000"); code != ExitUsage {
		t.Fatalf("bad port: exit %d %s", code, errOut)
	}
}
