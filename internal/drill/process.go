package drill

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// readyDoc is what `serve cp --ready-file` and `serve dp --ready-file`
// write once their listeners are bound.
type readyDoc struct {
	PID int `json:"pid"`
	// CP
	Admin   []string `json:"admin_listen"`
	Cluster string   `json:"cluster_listen"`
	// DP
	Proxy []string `json:"proxy_listen"`
	// Both: a list on the CP, one address on the DP.
	Status json.RawMessage `json:"status_listen"`
}

// statusAddr is the status listener of a DP's ready file.
func (d readyDoc) statusAddr() string {
	var s string
	if json.Unmarshal(d.Status, &s) == nil {
		return s
	}
	var l []string
	if json.Unmarshal(d.Status, &l) == nil && len(l) > 0 {
		return l[0]
	}
	return ""
}

// CommandFunc builds the command that runs `kongfb args...`. The default
// runs os.Executable(); tests substitute their own binary.
type CommandFunc func(args []string) (*exec.Cmd, error)

// DefaultCommand runs the current executable with args.
func DefaultCommand(args []string) (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the kongfb executable: %w", err)
	}
	return exec.Command(exe, args...), nil
}

// child is one kongfb process the drill started.
type child struct {
	name, role string
	args       []string
	cmd        *exec.Cmd
	logPath    string
	readyPath  string
	logFile    *os.File
	started    time.Time
	ready      readyDoc
	done       chan struct{} // closed once the process has been reaped
	ended      time.Time
	waitErr    error
}

// startChild starts `kongfb args... --ready-file <run>/<name>.ready.json`
// with its output in <logs>/<name>.log. The child runs in its own process
// group (a Ctrl-C at the terminal reaches the drill only, which stops the
// children itself) and, on Linux, is killed if the drill dies.
func startChild(command CommandFunc, dir, name, role string, args []string) (*child, error) {
	c := &child{
		name: name, role: role,
		logPath:   filepath.Join(dir, "logs", name+".log"),
		readyPath: filepath.Join(dir, "run", name+".ready.json"),
		done:      make(chan struct{}),
	}
	c.args = append(append([]string{}, args...), "--ready-file", c.readyPath)
	for _, d := range []string{filepath.Dir(c.logPath), filepath.Dir(c.readyPath)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	if err := os.Remove(c.readyPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: remove the old ready file: %w", name, err)
	}
	cmd, err := command(c.args)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	f, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%s: open log: %w", name, err)
	}
	c.logFile = f
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = childSysProcAttr()
	c.cmd = cmd
	c.started = time.Now()
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: start %s: %w", name, cmd.Path, err)
	}
	go func() {
		c.waitErr = cmd.Wait()
		c.ended = time.Now()
		c.logFile.Close()
		close(c.done)
	}()
	return c, nil
}

func (c *child) pid() int {
	if c.cmd == nil || c.cmd.Process == nil {
		return 0
	}
	return c.cmd.Process.Pid
}

// exited reports whether the process has been reaped.
func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// exitText says how the process ended ("" while it runs).
func (c *child) exitText() string {
	if !c.exited() {
		return ""
	}
	if c.cmd.ProcessState != nil {
		return c.cmd.ProcessState.String()
	}
	if c.waitErr != nil {
		return c.waitErr.Error()
	}
	return "exited"
}

// waitReady waits until the child's ready file appears (its listeners are
// bound) and reads it. It fails when the child exits first, or ctx ends.
func (c *child) waitReady(ctx context.Context) error {
	for {
		b, err := os.ReadFile(c.readyPath)
		if err == nil {
			if err := json.Unmarshal(b, &c.ready); err != nil {
				return fmt.Errorf("%s: ready file %s: %w", c.name, c.readyPath, err)
			}
			return nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%s: ready file: %w", c.name, err)
		}
		select {
		case <-c.done:
			return fmt.Errorf("%s exited before it was ready (%s); see %s", c.name, c.exitText(), c.logPath)
		case <-ctx.Done():
			return fmt.Errorf("%s: not ready: %w; see %s", c.name, context.Cause(ctx), c.logPath)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// kill sends SIGKILL and waits until the process is reaped.
func (c *child) kill(ctx context.Context) error {
	if c.exited() {
		return nil
	}
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil && !c.exited() {
		return fmt.Errorf("%s: SIGKILL: %w", c.name, err)
	}
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s: not reaped after SIGKILL: %w", c.name, context.Cause(ctx))
	}
}

// stop sends SIGTERM, waits up to grace for a clean exit, then SIGKILLs.
// It says what it did.
func (c *child) stop(grace time.Duration) (string, error) {
	if c.exited() {
		return "already exited (" + c.exitText() + ")", nil
	}
	start := time.Now()
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil && !c.exited() {
		return "", fmt.Errorf("%s: SIGTERM: %w", c.name, err)
	}
	select {
	case <-c.done:
		return fmt.Sprintf("SIGTERM, %s after %s", c.exitText(), time.Since(start).Round(time.Millisecond)), nil
	case <-time.After(grace):
	}
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil && !c.exited() {
		return "", fmt.Errorf("%s: SIGKILL after SIGTERM: %w", c.name, err)
	}
	select {
	case <-c.done:
		return fmt.Sprintf("SIGTERM ignored for %s, SIGKILL: %s", grace, c.exitText()), nil
	case <-time.After(10 * time.Second):
		return "", fmt.Errorf("%s (pid %d) still running after SIGTERM and SIGKILL", c.name, c.pid())
	}
}

// logTail returns the last n lines of the child's log.
func (c *child) logTail(n int) []string {
	return tailFile(c.logPath, n)
}

func tailFile(path string, n int) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		lines = append(lines, strings.TrimRight(sc.Text(), "\r"))
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return lines
}

// node describes the child for the report.
func (c *child) node() Node {
	n := Node{Name: c.name, Role: c.role, PID: c.pid(), Args: c.args, Log: c.logPath, Started: c.started.UTC(), Exit: c.exitText()}
	if c.exited() {
		t := c.ended.UTC()
		n.Ended = &t
	}
	n.Listen = append(n.Listen, c.ready.Admin...)
	if c.ready.Cluster != "" {
		n.Listen = append(n.Listen, c.ready.Cluster)
	}
	n.Listen = append(n.Listen, c.ready.Proxy...)
	if s := c.ready.statusAddr(); s != "" {
		n.Listen = append(n.Listen, s)
	}
	return n
}
