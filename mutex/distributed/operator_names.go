package distributed

// LockKeyName returns the Redis name of the lock of the encoded key under
// prefix, as a [Mutex] with [WithPrefix](prefix) names it: prefix, then
// the key as a Cluster hash tag, with '%' and '}' in it percent-encoded
// ("%25", "%7D") so that the tag ends where the key does.
// [ParseKeyName] inverts it.
func LockKeyName(prefix, key string) string { return namesFor(prefix, key).lock }
