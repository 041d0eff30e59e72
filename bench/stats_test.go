package bench

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestJain(t *testing.T) {
	for _, tc := range []struct {
		xs   []float64
		want float64
	}{
		{[]float64{5, 5, 5, 5}, 1},
		{[]float64{8, 0, 0, 0}, 0.25},
		{[]float64{1, 2, 3, 4}, 100.0 / (4 * 30)},
		{[]float64{3, 1}, 16.0 / (2 * 10)},
		{nil, 1},
		{[]float64{0, 0}, 1},
	} {
		if got := Jain(tc.xs); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("Jain(%v) = %v; want %v", tc.xs, got, tc.want)
		}
	}
}

func TestHistogramExactSmallValues(t *testing.T) {
	var h Histogram
	for v := int64(1); v <= 100; v++ {
		h.Record(v)
	}
	for _, tc := range []struct {
		q    float64
		want int64
	}{{0.5, 50}, {0.99, 99}, {1, 100}, {0, 1}, {0.001, 1}, {0.011, 2}} {
		if got := h.Quantile(tc.q); got != tc.want {
			t.Errorf("Quantile(%v) = %d; want %d", tc.q, got, tc.want)
		}
	}
	if h.Count() != 100 {
		t.Errorf("Count() = %d; want 100", h.Count())
	}
}

func TestHistogramBuckets(t *testing.T) {
	// Every value falls in a bucket whose bounds contain it, buckets are
	// contiguous, and a bucket is never wider than 1/64 of its low bound.
	for i := 0; i < histBuckets-1; i++ {
		if histHigh(i)+1 != histLow(i+1) {
			t.Fatalf("bucket %d ends at %d, bucket %d starts at %d", i, histHigh(i), i+1, histLow(i+1))
		}
		if lo, hi := histLow(i), histHigh(i); lo >= histExact && float64(hi-lo+1) > float64(lo)/64 {
			t.Fatalf("bucket %d = [%d, %d] is wider than 1/64", i, lo, hi)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		v := r.Int64N(1 << 40)
		i := histIndex(v)
		if v < histLow(i) || v > histHigh(i) {
			t.Fatalf("histIndex(%d) = %d = [%d, %d]", v, i, histLow(i), histHigh(i))
		}
	}
	if i := histIndex(math.MaxInt64); i != histBuckets-1 {
		t.Errorf("histIndex(MaxInt64) = %d; want %d", i, histBuckets-1)
	}
}

func TestHistogramQuantilesMatchSort(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var a, b Histogram
	var all []int64
	for i := range 20000 {
		v := int64(r.ExpFloat64() * 1e6) // waits around 1ms
		all = append(all, v)
		if i%2 == 0 {
			a.Record(v)
		} else {
			b.Record(v)
		}
	}
	a.Merge(&b)
	slices.Sort(all)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		want := all[int(math.Ceil(q*float64(len(all))))-1]
		got := a.Quantile(q)
		if math.Abs(float64(got-want)) > float64(want)/64+1 {
			t.Errorf("Quantile(%v) = %d; want %d within 1/64", q, got, want)
		}
	}
}
