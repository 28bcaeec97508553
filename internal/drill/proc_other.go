//go:build !linux

package drill

import "syscall"

// childSysProcAttr: outside Linux the children share the drill's process
// group (no parent-death signal to fall back on), so a Ctrl-C reaches them
// too and they stop on it; the drill stops the rest.
func childSysProcAttr() *syscall.SysProcAttr { return nil }
