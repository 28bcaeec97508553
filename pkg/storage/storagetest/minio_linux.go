package storagetest

import (
	"os/exec"
	"syscall"
)

// setChildAttrs makes the kernel kill MinIO if the test binary dies
// without running its cleanups (a panic in another test, a timeout), so no
// server outlives the test run.
func setChildAttrs(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
