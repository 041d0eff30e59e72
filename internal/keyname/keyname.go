// Package keyname names a user's key in an error message, one way for
// every package of the module: a string quoted (shortened past 64 bytes),
// another key as fmt's %v. It imports nothing of the module, so that
// package mutex can use it too.
package keyname

import "fmt"

// Quote returns key as errors name it.
func Quote(key any) string {
	const max = 64
	s, ok := key.(string)
	switch {
	case !ok:
		return fmt.Sprint(key)
	case len(s) > max:
		return fmt.Sprintf("%q... (%d bytes)", s[:max], len(s))
	}
	return fmt.Sprintf("%q", s)
}
