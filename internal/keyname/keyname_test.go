package keyname

import (
	"strings"
	"testing"
)

func TestQuote(t *testing.T) {
	long := strings.Repeat("k", 100)
	for _, tt := range []struct {
		key  any
		want string
	}{
		{"order-17", `"order-17"`},
		{"", `""`},
		{"a b\n", `"a b\n"`},
		{42, "42"},
		{long, `"` + long[:64] + `"... (100 bytes)`},
	} {
		if got := Quote(tt.key); got != tt.want {
			t.Errorf("Quote(%v) = %s; want %s", tt.key, got, tt.want)
		}
	}
}
