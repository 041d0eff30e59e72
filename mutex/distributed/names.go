package distributed

import (
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
)

// MaxKeyLen is the longest encoded key, in bytes, that a Mutex accepts.
// Longer keys are rejected by Lock and TryLock with an error naming the
// limit: they would be stored several times over in Redis (lock, queue
// and channel names) and sent with every command.
const MaxKeyLen = 64 << 10

// names are the Redis names of one key's lock. All of them carry the
// same hash tag, so in Redis Cluster they live in one slot and every
// script touches one slot.
type names struct {
	lock    string // prefix + "{" + tag + "}"
	queue   string // prefix + "q:{" + tag + "}"
	grants  string // prefix + "grant:{" + tag + "}:"; + a Mutex id is its grant channel
	readers string // an RWMutex's only: its readers (see rw.go); "" for a Mutex
}

// channel is the grant channel of the Mutex with id mid for this key.
func (nm names) channel(mid string) string { return nm.grants + mid }

// namesFor derives the names of an encoded key. The hash tag is the
// encoded key with '%' and '}' percent-encoded: injective (distinct keys
// never share a name), never empty for a non-empty key, and free of '}',
// so a '}' in a user key can never end the tag early. The prefix has no
// braces (New checks), so the '{' after it opens the tag.
func namesFor(prefix, encoded string) names {
	tag := escapeTag(encoded)
	return names{
		lock:   prefix + "{" + tag + "}",
		queue:  prefix + "q:{" + tag + "}",
		grants: prefix + "grant:{" + tag + "}:",
	}
}

// namesOfChannel returns the names of the key whose grant channel of the
// Mutex with id mid is channel.
func namesOfChannel(prefix, channel, mid string) (names, bool) {
	const open = "grant:{"
	grants, ok := strings.CutSuffix(channel, mid)
	if !ok || !strings.HasPrefix(grants, prefix+open) || !strings.HasSuffix(grants, "}:") {
		return names{}, false
	}
	tag := grants[len(prefix)+len(open) : len(grants)-len("}:")]
	return names{lock: prefix + "{" + tag + "}", queue: prefix + "q:{" + tag + "}", grants: grants}, true
}

func escapeTag(s string) string {
	if !strings.ContainsAny(s, "%}") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '%':
			b.WriteString("%25")
		case '}':
			b.WriteString("%7D")
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

var textMarshalerType = reflect.TypeFor[encoding.TextMarshaler]()

// defaultEncode is the key encoding used without [WithKeyEncoder].
func defaultEncode[K comparable](key K) (string, error) {
	switch k := any(key).(type) {
	case string:
		return k, nil
	case encoding.TextMarshaler:
		b, err := k.MarshalText()
		if err != nil {
			return "", fmt.Errorf("distributed: encode key of type %T: %w", key, err)
		}
		return string(b), nil
	}
	v := reflect.ValueOf(key)
	switch v.Kind() {
	case reflect.String:
		return v.String(), nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(v.Int(), 10), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return strconv.FormatUint(v.Uint(), 10), nil
	case reflect.Bool:
		return strconv.FormatBool(v.Bool()), nil
	}
	t := reflect.TypeOf(any(key)) // the dynamic type, where K is an interface
	if t == nil {
		t = reflect.TypeFor[K]()
	}
	return "", fmt.Errorf("distributed: no default encoding for keys of type %s: use WithKeyEncoder", t)
}

// defaultEncodable reports whether the default encoding can encode keys
// of type t: for an interface type, whether it might (the dynamic type
// decides at Lock).
func defaultEncodable(t reflect.Type) bool {
	if t.Kind() == reflect.Interface || t.Implements(textMarshalerType) {
		return true
	}
	switch t.Kind() {
	case reflect.String, reflect.Bool,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return true
	}
	return false
}

var errEmptyKey = errors.New("distributed: empty key: it would leave the Redis Cluster hash tag empty")

// checkEncoded validates an encoded key.
func checkEncoded(s string) error {
	if s == "" {
		return errEmptyKey
	}
	if len(s) > MaxKeyLen {
		return fmt.Errorf("distributed: encoded key is %d bytes, longer than the limit of %d bytes (64 KiB)", len(s), MaxKeyLen)
	}
	return nil
}
