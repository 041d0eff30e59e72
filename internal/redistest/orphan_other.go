//go:build !linux

package redistest

import "os/exec"

// dieWithParent has no portable equivalent outside Linux: a test binary
// that dies without stopping its servers leaves them running.
func dieWithParent(*exec.Cmd) {}
