package distributed

import (
	"strings"
	"testing"
)

// crc16 is the CRC16-CCITT (XMODEM) checksum Redis Cluster uses.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for b := 0; b < 8; b++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// slot is the Redis Cluster hash slot of key, with the hash tag rule: if
// key has a '{' followed later by a '}' with at least one byte between,
// only the bytes between the first '{' and the first '}' after it count.
func slot(key string) uint16 {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return crc16(key) % 16384
}

func TestSlot(t *testing.T) {
	// Values from the Redis Cluster specification and CLUSTER KEYSLOT.
	tests := []struct {
		key  string
		want uint16
	}{
		{"123456789", 0x31C3 % 16384},
		{"foo", 12182},
		{"{user1000}.following", slot("user1000")},
		{"foo{}{bar}", slot("foo{}{bar}")},
		{"foo{{bar}}zap", slot("{bar")},
	}
	for _, tt := range tests {
		if got := slot(tt.key); got != tt.want {
			t.Errorf("slot(%q) = %d; want %d", tt.key, got, tt.want)
		}
	}
}

// FuzzKeyNames checks that distinct keys never share a lock key, queue
// key or channel name, and that every name of one key has the same
// cluster hash slot, the one of its tag. Its seed corpus runs in every
// go test.
func FuzzKeyNames(f *testing.F) {
	seeds := [][2]string{
		{"a", "b"}, {"}", "%7D"}, {"%", "%25"}, {"a}b", "a%7Db"}, {"{", "}"},
		{"{}", "{"}, {"*", "?"}, {"[", "a*"}, {"\xff\xfe", "\xff"}, {"q:{a}", "a"},
		{"x}", "x%"}, {"%7D", "%257D"}, {"a{b}c", "b"}, {"grant:", "q:"}, {"a}:b", "a"},
	}
	for _, s := range seeds {
		f.Add(DefaultPrefix, s[0], s[1])
	}
	f.Add("", "a", "{a}")
	f.Add("app:locks:", "}}}", "%%%")
	f.Fuzz(func(t *testing.T, prefix, a, b string) {
		if strings.ContainsAny(prefix, "{}") {
			if err := WithPrefix(prefix)(&config{}); err == nil {
				t.Fatalf("WithPrefix(%q) accepted a brace", prefix)
			}
			return
		}
		if checkEncoded(a) != nil || checkEncoded(b) != nil {
			return
		}
		const mid = "0123456789abcdef"
		na, nb := namesFor(prefix, a), namesFor(prefix, b)
		for _, n := range []names{na, nb} {
			s := slot(n.lock)
			if slot(n.queue) != s || slot(n.channel(mid)) != s {
				t.Fatalf("names %+v hash to slots %d, %d, %d; want one slot", n, s, slot(n.queue), slot(n.channel(mid)))
			}
			if n.lock == n.queue || n.lock == n.channel(mid) || n.queue == n.channel(mid) {
				t.Fatalf("names %+v of one key collide", n)
			}
			// A grant message names its channel only: the names of the
			// key must come back from it.
			if back, ok := namesOfChannel(prefix, n.channel(mid), mid); !ok || back != n {
				t.Fatalf("namesOfChannel(%q) = %+v, %v; want %+v", n.channel(mid), back, ok, n)
			}
		}
		if slot(na.lock) != crc16(escapeTag(a))%16384 {
			t.Fatalf("lock key %q does not hash by its tag %q", na.lock, escapeTag(a))
		}
		if a == b {
			if na != nb {
				t.Fatalf("one key %q, two names: %+v, %+v", a, na, nb)
			}
			return
		}
		all := map[string]bool{}
		for _, s := range []string{na.lock, na.queue, na.channel(mid), nb.lock, nb.queue, nb.channel(mid)} {
			if all[s] {
				t.Fatalf("keys %q and %q share the name %q", a, b, s)
			}
			all[s] = true
		}
	})
}
