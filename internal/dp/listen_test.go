package dp

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseListen(t *testing.T) {
	tests := []struct {
		in   string
		want []Listen
	}{
		{"off", nil},
		{" OFF ", nil},
		{"0.0.0.0:8000", []Listen{{Addr: "0.0.0.0:8000"}}},
		{"0.0.0.0:8000 reuseport backlog=16384", []Listen{{Addr: "0.0.0.0:8000", Ignored: []string{"reuseport", "backlog=16384"}}}},
		{"127.0.0.1:8000, [::1]:8001 http2 deferred bind ipv6only=on so_keepalive=on",
			[]Listen{{Addr: "127.0.0.1:8000"}, {Addr: "[::1]:8001", Ignored: []string{"http2", "deferred", "bind", "ipv6only=on", "so_keepalive=on"}}}},
		{"*:8000", []Listen{{Addr: ":8000"}}},
		{"localhost:0", []Listen{{Addr: "localhost:0"}}},
	}
	for _, tc := range tests {
		got, err := ParseListen("proxy_listen", tc.in)
		if err != nil {
			t.Errorf("ParseListen(%q): %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseListen(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func TestParseListenErrors(t *testing.T) {
	tests := []struct{ in, wantSub string }{
		{"", "empty value"},
		{"8000", `invalid address "8000"`},
		{"0.0.0.0:http", "invalid port"},
		{"0.0.0.0:70000", "invalid port"},
		{"0.0.0.0:8443 ssl", "ssl flag is not supported"},
		{"0.0.0.0:8000 proxy_protocol", "proxy_protocol flag is not supported"},
		{"0.0.0.0:8000 backlog=abc", "backlog must be"},
		{"0.0.0.0:8000 backlog", "backlog must be"},
		{"0.0.0.0:8000 reuseport=1", "takes no value"},
		{"0.0.0.0:8000 ipv6only=yes", "ipv6only must be"},
		{"0.0.0.0:8000 fast", `unknown flag "fast"`},
		{"0.0.0.0:8000,", "entry 2 is empty"},
		{"off, 0.0.0.0:8000", "cannot be combined"},
	}
	for _, tc := range tests {
		_, err := ParseListen("proxy_listen", tc.in)
		if err == nil {
			t.Errorf("ParseListen(%q): no error, want one containing %q", tc.in, tc.wantSub)
			continue
		}
		if !strings.Contains(err.Error(), tc.wantSub) || !strings.HasPrefix(err.Error(), "proxy_listen: ") {
			t.Errorf("ParseListen(%q) error = %q, want it to start with the directive and contain %q", tc.in, err, tc.wantSub)
		}
	}
}
