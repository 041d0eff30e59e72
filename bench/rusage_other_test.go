//go:build !unix

package bench

import "time"

// processCPU is unknown here: client-cpu-us/op is left out.
func processCPU() time.Duration { return -1 }
