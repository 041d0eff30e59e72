package keylock

import "reflect"

// EmptyKey reports whether key is the empty string of a string kind (a
// string, or a type whose underlying type is string): the key that
// every implementation refuses with mutex.ErrInvalidKey, since Redis
// cannot name it. Any other key costs one comparison with the zero value.
func EmptyKey[K comparable](key K) bool {
	var zero K
	return key == zero && reflect.TypeFor[K]().Kind() == reflect.String
}
