package canary

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// The reference files are produced by the scripts next to them
// (testdata/gen_scipy.py with Debian's scipy 1.10, testdata/gen_r.R with
// R 4.2); the tests only read them.

type refSample struct {
	Name string    `json:"name"`
	X    []float64 `json:"x"`
	Y    []float64 `json:"y"`
}

type scipyRef struct {
	Samples []refSample `json:"samples"`
	MWU     []struct {
		Sample      string  `json:"sample"`
		Alternative string  `json:"alternative"`
		Method      string  `json:"method"`
		U           float64 `json:"u"`
		P           float64 `json:"p"`
	} `json:"mannwhitneyu"`
	Levene []struct {
		Sample string   `json:"sample"`
		W      *float64 `json:"w"`
		P      *float64 `json:"p"`
	} `json:"levene_median"`
	Tail []struct {
		Sample     string  `json:"sample"`
		Percentile float64 `json:"percentile"`
		R          int     `json:"r"`
		Threshold  float64 `json:"threshold"`
		Exceed     int     `json:"exceed"`
		P          float64 `json:"p"`
	} `json:"tail_betabinom"`
	Fisher []struct {
		Table       [2][2]int64 `json:"table"`
		Alternative string      `json:"alternative"`
		P           float64     `json:"p"`
	} `json:"fisher_exact"`
	Diffs []struct {
		Sample string    `json:"sample"`
		Median float64   `json:"median"`
		Ranks  []int     `json:"ranks"`
		Values []float64 `json:"values"`
	} `json:"pairwise_differences"`
}

func loadJSON(t *testing.T, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatalf("read reference: %v", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decode %s: %v", name, err)
	}
}

func loadScipy(t *testing.T) (scipyRef, map[string]refSample) {
	t.Helper()
	var ref scipyRef
	loadJSON(t, "scipy.json", &ref)
	byName := map[string]refSample{}
	for _, s := range ref.Samples {
		byName[s.Name] = s
	}
	return ref, byName
}

func parseAlt(t *testing.T, s string) Alternative {
	t.Helper()
	switch s {
	case "two-sided", "two.sided":
		return TwoSided
	case "less":
		return Less
	case "greater":
		return Greater
	}
	t.Fatalf("unknown alternative %q", s)
	return 0
}

func near(got, want, tol float64) bool {
	if math.IsInf(want, 0) || math.IsNaN(want) {
		return got == want || (math.IsNaN(got) && math.IsNaN(want))
	}
	return math.Abs(got-want) <= tol
}

func TestMannWhitneyUMatchesScipy(t *testing.T) {
	ref, samples := loadScipy(t)
	if len(ref.MWU) < 100 {
		t.Fatalf("only %d reference cases", len(ref.MWU))
	}
	methods := map[string]Method{"auto": MethodAuto, "exact": MethodExact, "asymptotic": MethodAsymptotic}
	for _, c := range ref.MWU {
		s := samples[c.Sample]
		got, err := MannWhitneyU(s.X, s.Y, parseAlt(t, c.Alternative), methods[c.Method])
		if err != nil {
			t.Errorf("%s %s %s: %v", c.Sample, c.Alternative, c.Method, err)
			continue
		}
		if !near(got.U, c.U, 1e-9) || !near(got.PValue, c.P, 1e-9) {
			t.Errorf("%s %s %s: got U=%v p=%.17g (%s), want U=%v p=%.17g", c.Sample, c.Alternative, c.Method,
				got.U, got.PValue, got.Method, c.U, c.P)
		}
	}
}

func TestBrownForsytheMatchesScipy(t *testing.T) {
	ref, samples := loadScipy(t)
	for _, c := range ref.Levene {
		s := samples[c.Sample]
		got, err := BrownForsythe(s.X, s.Y)
		if err != nil {
			t.Fatalf("%s: %v", c.Sample, err)
		}
		if c.P == nil {
			// scipy divides 0 by 0 when neither sample has any spread;
			// QSP reports no evidence of a spread change instead.
			if got.PValue != 1 {
				t.Errorf("%s: got p=%v, want 1 where scipy gives NaN", c.Sample, got.PValue)
			}
			continue
		}
		if !near(got.W, *c.W, 1e-9*math.Max(1, math.Abs(*c.W))) || !near(got.PValue, *c.P, 1e-9) {
			t.Errorf("%s: got W=%.17g p=%.17g, want W=%.17g p=%.17g", c.Sample, got.W, got.PValue, *c.W, *c.P)
		}
	}
}

func TestTailExceedanceMatchesScipy(t *testing.T) {
	ref, samples := loadScipy(t)
	for _, c := range ref.Tail {
		s := samples[c.Sample]
		got, err := TailExceedance(s.X, s.Y, c.Percentile)
		if err != nil {
			t.Fatalf("%s: %v", c.Sample, err)
		}
		if got.R != c.R || got.Threshold != c.Threshold || got.Exceed != c.Exceed || !near(got.PValue, c.P, 1e-9) {
			t.Errorf("%s p%v: got r=%d t=%v k=%d p=%.17g, want r=%d t=%v k=%d p=%.17g", c.Sample, c.Percentile,
				got.R, got.Threshold, got.Exceed, got.PValue, c.R, c.Threshold, c.Exceed, c.P)
		}
	}
}

func TestFisherExactMatchesScipy(t *testing.T) {
	ref, _ := loadScipy(t)
	for _, c := range ref.Fisher {
		tb := c.Table
		got, err := FisherExact(tb[0][0], tb[0][1], tb[1][0], tb[1][1], parseAlt(t, c.Alternative))
		if err != nil {
			t.Fatalf("%v: %v", tb, err)
		}
		if !near(got, c.P, 1e-9) || (c.P > 1e-300 && math.Abs(got-c.P)/c.P > 1e-6) {
			t.Errorf("%v %s: got p=%.17g, want %.17g", tb, c.Alternative, got, c.P)
		}
	}
}

func TestPairwiseDifferenceSelectionMatchesNumpy(t *testing.T) {
	ref, samples := loadScipy(t)
	for _, c := range ref.Diffs {
		s := samples[c.Sample]
		xs, ys := sortedCopy(s.X), sortedCopy(s.Y)
		sel := newDiffSelector(xs, ys, 7)
		for i, k := range c.Ranks {
			if got := sel.selectK(k); got != c.Values[i] {
				t.Errorf("%s: difference of rank %d = %.17g, want %.17g", c.Sample, k, got, c.Values[i])
			}
		}
		hl, err := HodgesLehmann(s.X, s.Y, 0.95, TwoSided)
		if err != nil {
			t.Fatalf("%s: %v", c.Sample, err)
		}
		if hl.Estimate != c.Median {
			t.Errorf("%s: HL estimate %.17g, want numpy median %.17g", c.Sample, hl.Estimate, c.Median)
		}
	}
}

type rRef struct {
	Cases   []refSample `json:"cases"`
	Results []struct {
		Case      string  `json:"case"`
		Alt       string  `json:"alternative"`
		ConfLevel float64 `json:"conf_level"`
		W         float64 `json:"w"`
		P         float64 `json:"p"`
		Estimate  float64 `json:"estimate"`
		Lower     rNum    `json:"lower"`
		Upper     rNum    `json:"upper"`
		Reported  float64 `json:"reported_conf_level"`
		Exact     bool    `json:"exact"`
	} `json:"results"`
}

// rNum reads R's numbers and the strings "+Inf" and "-Inf".
type rNum float64

func (n *rNum) UnmarshalJSON(b []byte) error {
	switch string(b) {
	case `"+Inf"`:
		*n = rNum(math.Inf(1))
		return nil
	case `"-Inf"`:
		*n = rNum(math.Inf(-1))
		return nil
	}
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	*n = rNum(f)
	return nil
}

func loadR(t *testing.T) (rRef, map[string]refSample) {
	t.Helper()
	var ref rRef
	loadJSON(t, "r_wilcox.json", &ref)
	byName := map[string]refSample{}
	for _, s := range ref.Cases {
		byName[s.Name] = s
	}
	if len(ref.Results) < 100 {
		t.Fatalf("only %d R reference results", len(ref.Results))
	}
	return ref, byName
}

func TestWilcoxTestRMatchesR(t *testing.T) {
	ref, cases := loadR(t)
	for _, c := range ref.Results {
		s := cases[c.Case]
		got, err := WilcoxTestR(s.X, s.Y, parseAlt(t, c.Alt), c.ConfLevel, 1e-4)
		if err != nil {
			t.Fatalf("%s %s %v: %v", c.Case, c.Alt, c.ConfLevel, err)
		}
		ok := got.Exact == c.Exact && got.W == c.W && near(got.PValue, c.P, 1e-9) &&
			near(got.Estimate, c.Estimate, 1e-6) && near(got.Lower, float64(c.Lower), 1e-6) &&
			near(got.Upper, float64(c.Upper), 1e-6) && near(got.ConfLevel, c.Reported, 1e-12)
		if !ok {
			t.Errorf("%s %s %v:\n got  exact=%v W=%v p=%.12g est=%.12g [%.12g, %.12g] conf=%v\n want exact=%v W=%v p=%.12g est=%.12g [%.12g, %.12g] conf=%v",
				c.Case, c.Alt, c.ConfLevel, got.Exact, got.W, got.PValue, got.Estimate, got.Lower, got.Upper, got.ConfLevel,
				c.Exact, c.W, c.P, c.Estimate, float64(c.Lower), float64(c.Upper), c.Reported)
		}
	}
}

// HodgesLehmann locates the crossings R's uniroot searches: exactly R's
// numbers in the exact case, within R's root tolerance otherwise.
func TestHodgesLehmannAgreesWithR(t *testing.T) {
	ref, cases := loadR(t)
	for _, c := range ref.Results {
		s := cases[c.Case]
		if c.Reported != c.ConfLevel {
			continue // R lowered the level; HodgesLehmann does not
		}
		got, err := HodgesLehmann(s.X, s.Y, c.ConfLevel, parseAlt(t, c.Alt))
		if err != nil {
			t.Fatalf("%s: %v", c.Case, err)
		}
		tol := 1e-9
		if !c.Exact {
			tol = 1e-4
		}
		estTol := tol
		if !c.Exact {
			// R's asymptotic estimate is the root of the uncorrected
			// statistic found to 1e-4; with an even number of
			// differences it may lie anywhere between the two middle
			// ones, where the statistic is zero.
			xs, ys := sortedCopy(s.X), sortedCopy(s.Y)
			sel := newDiffSelector(xs, ys, 3)
			mn := len(xs) * len(ys)
			lo, hi := sel.selectK((mn-1)/2), sel.selectK(mn/2)
			if c.Estimate < lo-1e-4 || c.Estimate > hi+1e-4 {
				t.Errorf("%s: R estimate %v outside the middle differences [%v, %v]", c.Case, c.Estimate, lo, hi)
			}
			estTol = hi - lo + 1e-4
		}
		if !near(got.Estimate, c.Estimate, estTol) || !near(got.Lower, float64(c.Lower), tol) || !near(got.Upper, float64(c.Upper), tol) {
			t.Errorf("%s %s %v: got est=%.12g [%.12g, %.12g], R est=%.12g [%.12g, %.12g]", c.Case, c.Alt, c.ConfLevel,
				got.Estimate, got.Lower, got.Upper, c.Estimate, float64(c.Lower), float64(c.Upper))
		}
	}
}
