package distributed

import "testing"

// TestLockValue: holderID writes what parseLockValue reads back, and
// every other shape of lib.lua's values parses as lib.lua defines it.
func TestLockValue(t *testing.T) {
	tests := []struct {
		v    string
		want lockValue
	}{
		{holderID("ab12", ""), lockValue{raw: "ab12", owner: "ab12"}},
		{holderID("ab12", "host:1"), lockValue{raw: "ab12 host:1", owner: "ab12", label: "host:1"}},
		{holderID("ab12", "host:1") + valueQueued, lockValue{raw: "ab12 host:1", queued: true, owner: "ab12", label: "host:1"}},
		{"~1700000000000000", lockValue{raw: "~1700000000000000", marker: true, last: 1700000000000000}},
		{"~17*", lockValue{raw: "~17", queued: true, marker: true, last: 17}},
		{"~9007199254740992", lockValue{raw: "~9007199254740992", foreign: true}}, // 2^53
		{"precious", lockValue{raw: "precious", foreign: true}},
		{"ab12 a b", lockValue{raw: "ab12 a b", foreign: true}},
		{"", lockValue{foreign: true}},
	}
	for _, tt := range tests {
		if got := parseLockValue(tt.v); got != tt.want {
			t.Errorf("parseLockValue(%q) = %+v; want %+v", tt.v, got, tt.want)
		}
	}
}
