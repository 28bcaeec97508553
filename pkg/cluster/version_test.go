package cluster

import (
	"errors"
	"log/slog"
	"testing"
)

func TestParseVersion(t *testing.T) {
	cases := []struct {
		in                         string
		major, minor, patch, build int
		ok                         bool
	}{
		{"3.9.1", 3, 9, 1, -1, true},
		{"3.6.0.0", 3, 6, 0, 0, true}, // Enterprise 4-part
		{"3.10.0.2", 3, 10, 0, 2, true},
		{"3.9.1-beta.1", 3, 9, 1, -1, true}, // Kong's pattern only anchors the start
		{"2.8.4", 2, 8, 4, -1, true},
		{"3.9", 0, 0, 0, 0, false},
		{"v3.9.1", 0, 0, 0, 0, false},
		{"3.9.x", 0, 0, 0, 0, false},
		{"", 0, 0, 0, 0, false},
		{"3..1", 0, 0, 0, 0, false},
		{"99999999999.0.0", 0, 0, 0, 0, false},
	}
	for _, tc := range cases {
		v, err := ParseVersion(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("ParseVersion(%q) err = %v, want ok=%v", tc.in, err, tc.ok)
			continue
		}
		if tc.ok && (v.Major != tc.major || v.Minor != tc.minor || v.Patch != tc.patch || v.Build != tc.build) {
			t.Errorf("ParseVersion(%q) = %+v", tc.in, v)
		}
	}
}

func TestVersionNum(t *testing.T) {
	// Kong's compat/version.lua string_to_number.
	for in, want := range map[string]int64{
		"3.9.1":        3009001000,
		"3.6.0.2":      3006000002,
		"3.10.0.0":     3010000000,
		"2.8.4":        2008004000,
		"3.9.1-beta.2": 3009001002, // Kong splits on dots: the 4th part is "2"
		"3.9":          3009000000,
	} {
		if got := VersionNum(in); got != want {
			t.Errorf("VersionNum(%q) = %d, want %d", in, got, want)
		}
	}
	v, _ := ParseVersion("3.6.0.2")
	if v.Num() != 3006000002 {
		t.Errorf("Num = %d", v.Num())
	}
}

// TestCheckCompatibility is Kong's connect-time table
// (compat/init.lua check_kong_version_compatibility; docs "Version
// compatibility"): same major; DP minor <= CP minor; patch ignored.
func TestCheckCompatibility(t *testing.T) {
	const cp = "3.9.1"
	cases := []struct {
		dp   string
		want string // "" = compatible
	}{
		{"3.9.1", ""},
		{"3.9.0", ""},   // older patch
		{"3.9.7", ""},   // newer patch: patch versions are ignored
		{"3.8.0", ""},   // older minor is allowed
		{"3.0.0", ""},   // any older minor of the same major
		{"3.9.1.0", ""}, // Enterprise 4-part version
		{"3.9.1-rc.1", ""},
		{"3.10.0", "data plane version 3.10.0 is incompatible with older control plane version 3.9.1"},
		{"3.10.0.0", "data plane version 3.10.0.0 is incompatible with older control plane version 3.9.1"},
		{"2.8.4", "data plane version 2.8.4 is incompatible with control plane version 3.9.1 (3.x.y are accepted)"},
		{"4.0.0", "data plane version 4.0.0 is incompatible with control plane version 3.9.1 (3.x.y are accepted)"},
		{"3.9", "data plane version is incompatible with control plane version 3.9.1 (3.x.y are accepted)"},
		{"garbage", "data plane version is incompatible with control plane version 3.9.1 (3.x.y are accepted)"},
		{"", "data plane version is incompatible with control plane version 3.9.1 (3.x.y are accepted)"},
	}
	for _, tc := range cases {
		st, err := CheckCompatibility(cp, tc.dp)
		if tc.want == "" {
			if err != nil || st != SyncStatusNormal {
				t.Errorf("dp %q: %v, %v; want normal", tc.dp, st, err)
			}
			continue
		}
		var ie *IncompatibleError
		if !errors.As(err, &ie) || err.Error() != tc.want {
			t.Errorf("dp %q: error %v\nwant %q", tc.dp, err, tc.want)
			continue
		}
		if st != SyncStatusKongVersionIncompatible || ie.Status != st {
			t.Errorf("dp %q: status %v / %v", tc.dp, st, ie.Status)
		}
	}
	_, err := CheckCompatibility("dev", "3.9.1")
	if err == nil || err.Error() != "data plane version 3.9.1 is incompatible with control plane version" {
		t.Errorf("unparseable CP: %v", err)
	}
}

func TestSyncStatuses(t *testing.T) {
	want := []string{"unknown", "normal", "kong_version_incompatible", "plugin_set_incompatible",
		"plugin_version_incompatible", "filter_set_incompatible"}
	if len(SyncStatuses) != len(want) {
		t.Fatalf("%d statuses", len(SyncStatuses))
	}
	for i, s := range SyncStatuses {
		if string(s) != want[i] || !s.Valid() {
			t.Errorf("status %d = %q", i, s)
		}
	}
	if SyncStatus("bogus").Valid() {
		t.Error("bogus status is valid")
	}
}

func TestCheckConfiguredPlugins(t *testing.T) {
	cp := []PluginInfo{{"acl", "3.9.1"}, {"cors", "3.9.1"}, {"custom", "dev"}, {"opentelemetry", "3.9.1"}, {"rate-limiting", "3.9.1"}}
	cases := []struct {
		name       string
		dp         []PluginInfo
		configured []string
		status     SyncStatus
		msg        string
	}{
		{"all present", []PluginInfo{{"acl", "3.9.1"}, {"cors", "3.9.0"}}, []string{"acl", "cors"}, SyncStatusNormal, ""},
		{"unconfigured plugin missing is fine", []PluginInfo{{"acl", "3.9.1"}}, []string{"acl"}, SyncStatusNormal, ""},
		{"older DP minor is fine", []PluginInfo{{"acl", "3.7.0"}}, []string{"acl"}, SyncStatusNormal, ""},
		{"missing", []PluginInfo{{"acl", "3.9.1"}}, []string{"acl", "rate-limiting"},
			SyncStatusPluginSetIncompatible, "configured rate-limiting plugin 3.9.1 is missing from data plane"},
		{"missing, CP version unparseable", nil, []string{"custom"},
			SyncStatusPluginSetIncompatible, "configured custom plugin is missing from data plane"},
		{"major differs", []PluginInfo{{"cors", "2.9.1"}}, []string{"cors"},
			SyncStatusPluginVersionIncompatible, "configured data plane cors plugin version 2.9.1 is different to control plane plugin version 3.9.1"},
		{"DP minor newer", []PluginInfo{{"cors", "3.10.0"}}, []string{"cors"},
			SyncStatusPluginVersionIncompatible, "configured data plane cors plugin version 3.10.0 is different to control plane plugin version 3.9.1"},
		{"DP version unparseable is not compared", []PluginInfo{{"cors", "x"}}, []string{"cors"}, SyncStatusNormal, ""},
		{"opentelemetry 0.1.x exempt", []PluginInfo{{"opentelemetry", "0.1.0"}}, []string{"opentelemetry"}, SyncStatusNormal, ""},
		{"first failure in CP order", []PluginInfo{{"cors", "4.0.0"}}, []string{"rate-limiting", "cors", "acl"},
			SyncStatusPluginSetIncompatible, "configured acl plugin 3.9.1 is missing from data plane"},
		{"configured plugin unknown to the CP", []PluginInfo{{"acl", "3.9.1"}}, []string{"acl", "zz-extra"},
			SyncStatusPluginSetIncompatible, "configured zz-extra plugin is missing from data plane"},
	}
	for _, tc := range cases {
		st, err := CheckConfiguredPlugins(cp, tc.dp, tc.configured)
		if st != tc.status {
			t.Errorf("%s: status %q, want %q (err %v)", tc.name, st, tc.status, err)
		}
		if tc.msg == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		var ie *IncompatibleError
		if !errors.As(err, &ie) || ie.Message != tc.msg || ie.Status != tc.status {
			t.Errorf("%s: error %v\nwant %q", tc.name, err, tc.msg)
		}
	}
}

func TestConnectNotes(t *testing.T) {
	cp := []PluginInfo{{"acl", "3.9.1"}, {"cors", "3.9.1"}, {"key-auth", "3.9.1"}, {"custom", ""}, {"jwt", "3.9.1"}}
	dp := []PluginInfo{{"cors", "2.0.0"}, {"key-auth", "3.8.0"}, {"custom", "1.0.0"}, {"jwt", "x"}}
	got := ConnectNotes("3.9.1", "3.8.2", cp, dp)
	want := []Note{
		{slog.LevelInfo, "data plane minor version 3.8.2 is different to control plane minor version 3.9.1"},
		{slog.LevelWarn, "acl plugin 3.9.1 is missing from data plane"},
		{slog.LevelWarn, "data plane cors plugin version 2.0.0 is different to control plane plugin version 3.9.1"},
		{slog.LevelInfo, "data plane key-auth plugin version 3.8.0 is different to control plane plugin version 3.9.1"},
		{slog.LevelInfo, "data plane custom plugin version 1.0.0 has unspecified version on control plane"},
		{slog.LevelInfo, "data plane jwt plugin version is unspecified, and is different to control plane plugin version 3.9.1"},
	}
	if len(got) != len(want) {
		t.Fatalf("notes:\n%v\nwant\n%v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("note %d = %v, want %v", i, got[i], want[i])
		}
	}
}
