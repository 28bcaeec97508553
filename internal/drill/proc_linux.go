//go:build linux

package drill

import "syscall"

// childSysProcAttr puts a child in its own process group (a Ctrl-C at the
// terminal reaches the drill, which stops the children in order) and has
// the kernel SIGKILL it if the drill itself dies.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
