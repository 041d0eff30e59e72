package bench

import (
	"math"
	"math/bits"
)

// Histogram records durations in nanoseconds with a relative error below
// 1/64 (values below 128 are exact), in constant memory, so that tens of
// millions of waits cost no more than a few thousand counters.
//
// The zero value is an empty histogram ready to use. A Histogram is not
// safe for concurrent use: keep one per goroutine and Merge them.
type Histogram struct {
	counts [histBuckets]uint64
	n      uint64
}

const (
	histSub     = 64                     // sub-buckets per power of two
	histExact   = 128                    // values below this have a bucket each
	histBuckets = histExact + 56*histSub // up to MaxInt64
)

func histIndex(v int64) int {
	if v < 0 {
		v = 0
	}
	u := uint64(v)
	if u < histExact {
		return int(u)
	}
	shift := bits.Len64(u) - 7 // u>>shift is in [64, 128)
	return histExact + (shift-1)*histSub + int(u>>shift) - histSub
}

// histLow and histHigh bound the values of bucket i: [low, high].
func histLow(i int) int64 {
	if i < histExact {
		return int64(i)
	}
	j := i - histExact
	shift := j/histSub + 1
	return int64((uint64(j%histSub) + histSub) << shift)
}

func histHigh(i int) int64 {
	if i < histExact {
		return int64(i)
	}
	j := i - histExact
	shift := j/histSub + 1
	return int64((uint64(j%histSub)+histSub+1)<<shift) - 1
}

// Record adds one value.
func (h *Histogram) Record(ns int64) {
	h.counts[histIndex(ns)]++
	h.n++
}

// Count is the number of values recorded.
func (h *Histogram) Count() uint64 { return h.n }

// Merge adds o's values to h.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
}

// Quantile returns the q-quantile (0 ≤ q ≤ 1) by the nearest-rank method:
// the smallest recorded value v such that at least q of the values are
// ≤ v, reported as the midpoint of its bucket. It returns 0 for an empty
// histogram.
func (h *Histogram) Quantile(q float64) int64 {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, hi := histLow(i), histHigh(i)
			return lo + (hi-lo)/2
		}
	}
	return histHigh(histBuckets - 1)
}

// Jain returns Jain's fairness index of xs, (Σx)² / (n·Σx²): 1 when every
// x is equal, 1/n when one takes everything. It returns 1 for no values or
// all zeros (nobody was treated worse than anybody else).
func Jain(xs []float64) float64 {
	var sum, sq float64
	for _, x := range xs {
		sum += x
		sq += x * x
	}
	if len(xs) == 0 || sq == 0 {
		return 1
	}
	return sum * sum / (float64(len(xs)) * sq)
}
