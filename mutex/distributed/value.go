package distributed

import (
	"strconv"
	"strings"
)

// The lock key's value, defined once on the Go side (lib.lua defines it
// for the scripts; the two must agree):
//
//	"<owner> <label>"   held by owner; without " <label>" if the label is empty
//	the same + "*"      held, and the queue may be non-empty
//	"~<last>"           free, but tokens up to last were issued ahead of
//	                    the server clock (lives a few ms at most)
//	"~<last>*"          the same, with waiters still queued
//
// Go writes a held value (holderID) with SET NX on the uncontended path
// and passes it to the scripts; it reads values only to report them
// (Inspect).
const (
	valueQueued = "*" // suffix: the queue may be non-empty
	valueMarker = "~" // prefix of a free marker
)

// holderID is the value a holding writes, and the id it names itself by
// in the queue: the owner id and the label.
func holderID(owner, label string) string {
	if label == "" {
		return owner
	}
	return owner + " " + label
}

// lockValue is a lock key's value, parsed.
type lockValue struct {
	raw     string // the value without its queued flag
	queued  bool   // the queue may be non-empty
	marker  bool   // a free marker: last is set
	last    uint64 // the marker's last token
	foreign bool   // a value the library did not write
	owner   string // a holder's owner id
	label   string // a holder's label
}

// parseLockValue parses v, a value of a lock key.
func parseLockValue(v string) lockValue {
	raw, queued := strings.CutSuffix(v, valueQueued)
	lv := lockValue{raw: raw, queued: queued}
	if last, ok := strings.CutPrefix(raw, valueMarker); ok {
		// The scripts take no token at or past 2^53.
		if n, err := strconv.ParseUint(last, 10, 64); err == nil && n < 1<<53 {
			lv.marker, lv.last = true, n
		} else {
			lv.foreign = true
		}
		return lv
	}
	owner, label, _ := strings.Cut(raw, " ")
	if !isOwnerID(owner) || strings.Contains(label, " ") {
		lv.foreign = true
		return lv
	}
	lv.owner, lv.label = owner, label
	return lv
}

// isOwnerID reports whether s reads as an owner id: hex digits.
func isOwnerID(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
