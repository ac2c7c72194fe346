package nri

import (
	"fmt"
	"math"
	"slices"
	"testing"
	"time"
)

// warmUpRounds are run before the measured rounds and dropped: the first pods of a fresh
// containerd (and the first runs of a freshly built binary) pay for cold caches.
const warmUpRounds = 3

// arm is one of the set-ups a benchmark compares. run does one measured operation and returns
// how long it took; round makes names unique.
type arm struct {
	name string
	run  func(b *testing.B, round int) time.Duration
}

// measureInterleaved runs the arms round-robin: every round runs each arm once, so all arms see
// the same machine conditions (on this noisy 2-core machine, drift between sequential blocks is
// as large as the differences measured). Rounds cycle through every order of the arms, so each
// arm runs in each position, and right after each other arm, equally often: neither the slot in
// a round nor the residue of the previous operation favours any arm. warmUpRounds rounds come
// first and are dropped; then one round per b.Loop iteration (-benchtime=21x: 21 rounds).
// It returns samples[arm][round], rounds aligned across arms for paired differences.
func measureInterleaved(b *testing.B, arms []arm) [][]time.Duration {
	orders := permutations(len(arms))
	samples := make([][]time.Duration, len(arms))
	round := 0
	runRound := func(keep bool) {
		for _, a := range orders[round%len(orders)] {
			d := arms[a].run(b, round)
			if keep {
				samples[a] = append(samples[a], d)
			}
		}
		round++
	}
	for range warmUpRounds {
		runRound(false)
	}
	for b.Loop() {
		runRound(true)
	}
	return samples
}

// permutations returns every order of 0..n-1, lexicographically.
func permutations(n int) [][]int {
	if n == 0 {
		return [][]int{{}}
	}
	var out [][]int
	for _, rest := range permutations(n - 1) {
		// Insert n-1 at every position of each order of the others, then sort the result.
		for i := 0; i <= len(rest); i++ {
			p := slices.Insert(slices.Clone(rest), i, n-1)
			out = append(out, p)
		}
	}
	slices.SortFunc(out, slices.Compare)
	return out
}

// armSummary is what the benchmarks report for one arm; the paired fields compare it with the
// first arm (the baseline) and are zero for the baseline itself.
type armSummary struct {
	name        string
	median, p90 time.Duration
	// ratio is this arm's median over the baseline's median.
	ratio float64
	// pairedMedian is the median of the per-round differences to the baseline (this arm's
	// sample minus the baseline's in the same round): pairing cancels drift that hits both, so
	// it is more robust than the difference of the medians. pairedLow..pairedHigh is a
	// confidence interval of at least 95% for it (see medianInterval); pairedKnown is false
	// when there are too few rounds for one.
	pairedMedian, pairedLow, pairedHigh time.Duration
	pairedKnown                         bool
}

// summarize computes each arm's summary from samples[arm][round].
func summarize(names []string, samples [][]time.Duration) []armSummary {
	out := make([]armSummary, len(names))
	base := samples[0]
	baseMedian := quantile(base, 0.5)
	for i, s := range samples {
		out[i] = armSummary{name: names[i], median: quantile(s, 0.5), p90: quantile(s, 0.9)}
		if i == 0 {
			out[i].ratio = 1
			continue
		}
		out[i].ratio = float64(out[i].median) / float64(baseMedian)
		diffs := make([]time.Duration, min(len(s), len(base)))
		for r := range diffs {
			diffs[r] = s[r] - base[r]
		}
		out[i].pairedMedian = quantile(diffs, 0.5)
		out[i].pairedLow, out[i].pairedHigh, out[i].pairedKnown = medianInterval(diffs)
	}
	return out
}

// medianInterval returns a distribution-free confidence interval of at least 95% for the median
// of xs: the order statistics x(k) and x(n+1-k) (1-based, sorted), with k the largest for which
// the chance that at most k-1 of n samples fall below the median, 2·P(Binomial(n, ½) ≤ k-1),
// is still at most 5%. It assumes only independent rounds, no distribution. With fewer than 6
// samples no such interval exists and ok is false.
func medianInterval(xs []time.Duration) (low, high time.Duration, ok bool) {
	n := len(xs)
	k, tail := 0, 0.0
	for j := 0; j < n; j++ {
		// tail becomes P(Binomial(n, ½) ≤ j); computed in logs so large n cannot underflow.
		lc, _ := math.Lgamma(float64(n + 1))
		lj, _ := math.Lgamma(float64(j + 1))
		lr, _ := math.Lgamma(float64(n - j + 1))
		tail += math.Exp(lc - lj - lr - float64(n)*math.Ln2)
		if 2*tail > 0.05 {
			break
		}
		k = j + 1
	}
	if k == 0 {
		return 0, 0, false
	}
	sorted := slices.Clone(xs)
	slices.Sort(sorted)
	return sorted[k-1], sorted[n-k], true
}

// quantile returns the q-quantile of xs, interpolating linearly between the two nearest ranks
// (so the median of an even count is the mean of the middle two); 0 for no samples.
func quantile(xs []time.Duration, q float64) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	sorted := slices.Clone(xs)
	slices.Sort(sorted)
	h := q * float64(len(sorted)-1)
	lo := int(math.Floor(h))
	if lo+1 >= len(sorted) {
		return sorted[lo]
	}
	return sorted[lo] + time.Duration((h-float64(lo))*float64(sorted[lo+1]-sorted[lo]))
}

// reportInterleaved reports each arm's summary as benchmark metrics named "<arm>:<metric>",
// which bench/nri/run.sh turns into a table (and benchstat can compare). ns/op is suppressed:
// an op is a whole round of all arms, so its mean means nothing here.
func reportInterleaved(b *testing.B, arms []arm, samples [][]time.Duration) {
	names := make([]string, len(arms))
	for i, a := range arms {
		names[i] = a.name
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(warmUpRounds, "warm-up-rounds")
	for i, s := range summarize(names, samples) {
		b.ReportMetric(ms(s.median), s.name+":ms-median")
		b.ReportMetric(ms(s.p90), s.name+":ms-p90")
		if i == 0 {
			continue
		}
		b.ReportMetric(s.ratio, s.name+":median-ratio")
		b.ReportMetric(ms(s.pairedMedian), s.name+":ms-paired-diff-median")
		if s.pairedKnown {
			b.ReportMetric(ms(s.pairedLow), s.name+":ms-paired-diff-ci95-low")
			b.ReportMetric(ms(s.pairedHigh), s.name+":ms-paired-diff-ci95-high")
		}
	}
}

// benchInterleaved measures arms with measureInterleaved and reports them.
func benchInterleaved(b *testing.B, arms []arm) {
	reportInterleaved(b, arms, measureInterleaved(b, arms))
}

func TestPermutationsBalanceOrders(t *testing.T) {
	for n := 1; n <= 4; n++ {
		perms := permutations(n)
		if want := int(math.Gamma(float64(n + 1))); len(perms) != want {
			t.Fatalf("permutations(%d): %d orders, want %d", n, len(perms), want)
		}
		// Over one cycle, every arm sits in every position equally often, and every ordered pair
		// (a right after b within a round) occurs equally often.
		position := map[[2]int]int{}
		follows := map[[2]int]int{}
		seen := map[string]bool{}
		for _, p := range perms {
			if seen[fmt.Sprint(p)] {
				t.Fatalf("permutations(%d) repeats %v", n, p)
			}
			seen[fmt.Sprint(p)] = true
			for i, a := range p {
				position[[2]int{a, i}]++
				if i > 0 {
					follows[[2]int{p[i-1], a}]++
				}
			}
		}
		for a := range n {
			for i := range n {
				if got, want := position[[2]int{a, i}], len(perms)/n; got != want {
					t.Errorf("permutations(%d): arm %d in position %d %d times, want %d", n, a, i, got, want)
				}
				if a == i || n < 2 {
					continue
				}
				if got, want := follows[[2]int{i, a}], len(perms)/n; got != want {
					t.Errorf("permutations(%d): arm %d right after arm %d %d times, want %d", n, a, i, got, want)
				}
			}
		}
	}
}

func TestSummarizePairsRounds(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	// The baseline drifts upwards by 100 ms a round; the other arm is always 10 ms slower in the
	// same round, except one outlier. The difference of medians (20 ms) blurs what pairing sees.
	base := ms(100, 200, 300, 400)
	other := ms(110, 210, 310, 500)
	got := summarize([]string{"base", "other"}, [][]time.Duration{base, other})
	if got[0].median != 250*time.Millisecond || got[0].ratio != 1 || got[0].pairedMedian != 0 {
		t.Errorf("baseline summary %+v, want median 250ms, ratio 1, no paired difference", got[0])
	}
	if got[1].median != 260*time.Millisecond {
		t.Errorf("median %v, want 260ms", got[1].median)
	}
	if got[1].pairedMedian != 10*time.Millisecond {
		t.Errorf("median paired difference %v, want 10ms", got[1].pairedMedian)
	}
	if got[1].pairedKnown {
		t.Errorf("4 rounds gave a 95%% interval %v..%v; none exists below 6", got[1].pairedLow, got[1].pairedHigh)
	}
	if want := 260.0 / 250.0; math.Abs(got[1].ratio-want) > 1e-9 {
		t.Errorf("ratio %v, want %v", got[1].ratio, want)
	}
	// p90 of 100..400 by linear interpolation: rank 2.7 -> 370 ms.
	if got[0].p90 != 370*time.Millisecond {
		t.Errorf("p90 %v, want 370ms", got[0].p90)
	}
}

func TestMedianIntervalOrderStatistics(t *testing.T) {
	// Expected k from binomial tables: n=6 -> 1 (2·P(X≤0) = 3.1%), n=24 -> 7 (2·P(X≤6) = 2.3%,
	// 2·P(X≤7) = 6.4%), n=100 -> 40 (2·P(X≤39) = 3.5%, 2·P(X≤40) = 5.7%).
	for _, tc := range []struct{ n, k int }{{5, 0}, {6, 1}, {24, 7}, {100, 40}} {
		xs := make([]time.Duration, tc.n)
		for i := range xs {
			xs[i] = time.Duration(tc.n-i) * time.Millisecond // reversed: the interval must sort
		}
		low, high, ok := medianInterval(xs)
		if tc.k == 0 {
			if ok {
				t.Errorf("n=%d: interval %v..%v, want none", tc.n, low, high)
			}
			continue
		}
		if want := time.Duration(tc.k) * time.Millisecond; !ok || low != want {
			t.Errorf("n=%d: low %v (ok %t), want %v", tc.n, low, ok, want)
		}
		if want := time.Duration(tc.n+1-tc.k) * time.Millisecond; high != want {
			t.Errorf("n=%d: high %v, want %v", tc.n, high, want)
		}
	}
}
