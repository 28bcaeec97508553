//go:build unix

package drill

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// shCommand runs script with sh; the child's arguments follow as $1...,
// so "$3" is the ready file (after "x", "--ready-file").
func shCommand(script string) CommandFunc {
	return func(args []string) (*exec.Cmd, error) {
		return exec.Command("/bin/sh", append([]string{"-c", script, "sh"}, args...)...), nil
	}
}

func TestChildReadyAndStop(t *testing.T) {
	dir := t.TempDir()
	// Installs its SIGTERM handler, writes its ready file the way serve cp
	// does (temporary file, rename), then waits for SIGTERM. (With the trap
	// after the ready file, a SIGTERM sent at once killed the shell.)
	script := `echo starting; trap 'echo bye; exit 0' TERM; printf '{"pid":%d,"admin_listen":["127.0.0.1:1"],"status_listen":["127.0.0.1:2"],"cluster_listen":"127.0.0.1:3"}' $$ > "$3.tmp" && mv "$3.tmp" "$3"; while :; do sleep 0.01; done`
	c, err := startChild(shCommand(script), dir, "cp-1", "control_plane", []string{"x"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.waitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if c.ready.PID != c.pid() || c.ready.Cluster != "127.0.0.1:3" || c.ready.statusAddr() != "127.0.0.1:2" {
		t.Fatalf("ready %+v (pid %d)", c.ready, c.pid())
	}
	n := c.node()
	if strings.Join(n.Listen, ",") != "127.0.0.1:1,127.0.0.1:3,127.0.0.1:2" || n.Ended != nil || n.Exit != "" {
		t.Fatalf("node %+v", n)
	}
	res, err := c.stop(5 * time.Second)
	if err != nil || !strings.HasPrefix(res, "SIGTERM, exit status 0") {
		t.Fatalf("stop: %q %v", res, err)
	}
	if tail := c.logTail(1); len(tail) != 1 || tail[0] != "bye" {
		t.Fatalf("log tail %q", tail)
	}
	if n := c.node(); n.Ended == nil || n.Exit != "exit status 0" {
		t.Fatalf("node after stop %+v", n)
	}
	if res, err := c.stop(time.Second); err != nil || !strings.HasPrefix(res, "already exited") {
		t.Fatalf("second stop: %q %v", res, err)
	}
}

func TestChildExitsBeforeReady(t *testing.T) {
	c, err := startChild(shCommand(`echo "bad flag" >&2; exit 2`), t.TempDir(), "dp-1", "data_plane", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = c.waitReady(ctx)
	if err == nil || !strings.Contains(err.Error(), "exited before it was ready (exit status 2)") {
		t.Fatalf("waitReady: %v", err)
	}
	if tail := c.logTail(5); len(tail) != 1 || tail[0] != "bad flag" {
		t.Fatalf("log %q", tail)
	}
}

func TestChildStopEscalatesToKill(t *testing.T) {
	// The ready file ($2) says the trap is installed. It is renamed into
	// place like serve's: written in place, waitReady could read it empty.
	c, err := startChild(shCommand(`trap '' TERM; echo '{}' > "$2.tmp" && mv "$2.tmp" "$2"; while :; do sleep 0.01; done`), t.TempDir(), "dp-1", "data_plane", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.waitReady(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := c.stop(100 * time.Millisecond)
	if err != nil || !strings.Contains(res, "SIGKILL: signal: killed") {
		t.Fatalf("stop: %q %v", res, err)
	}
}
