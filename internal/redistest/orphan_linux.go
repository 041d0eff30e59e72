package redistest

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the kernel kill the server if the test binary dies
// without stopping it (a panic, a -timeout, a SIGKILL): no redis-server
// outlives its test. The signal follows the thread that started the
// server; Go keeps that thread alive as long as no goroutine locked to it
// exits, which no test here does.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
