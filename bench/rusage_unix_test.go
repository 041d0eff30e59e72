//go:build unix

package bench

import (
	"syscall"
	"time"
)

// processCPU returns the CPU this process has used so far, user and
// system, every thread: getrusage(RUSAGE_SELF). The simulated processes
// of a row are goroutines of this one, so the difference over a row is
// their CPU (and the Go runtime's for them); a redis-server it started is
// a child, not counted. It returns -1 if getrusage fails.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return -1
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
