package lockutil

// SetParkForTest replaces what a Locker's Lock does on a closed Keyed
// (block until the process ends) with f, for tests; restore puts it
// back.
func SetParkForTest(f func()) (restore func()) {
	old := park
	park = f
	return func() { park = old }
}
