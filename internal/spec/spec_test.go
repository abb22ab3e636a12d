package spec

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestExamplesValidate(t *testing.T) {
	set, diags := Load("../../examples")
	for _, d := range diags {
		t.Errorf("%s", d)
	}
	if len(set.Services) != 3 {
		t.Errorf("services: got %d, want 3", len(set.Services))
	}
	// The examples must use every kind and every indicator type, including
	// security and performance SLOs.
	types := map[string]bool{}
	cats := map[Category]bool{}
	for _, s := range set.SLOs {
		types[s.Spec.Indicator.Type()] = true
		cats[s.Spec.Category] = true
	}
	for _, want := range []string{IndicatorRatio, IndicatorLatency, IndicatorThreshold, IndicatorAvailability, IndicatorComposite} {
		if !types[want] {
			t.Errorf("no example SLO with a %s indicator", want)
		}
	}
	for _, c := range Categories {
		if !cats[c] {
			t.Errorf("no example SLO in category %s", c)
		}
	}
	if len(set.Policies) == 0 || len(set.Gates) == 0 || len(set.Playbooks) == 0 {
		t.Errorf("examples lack a kind: %d policies, %d gates, %d playbooks", len(set.Policies), len(set.Gates), len(set.Playbooks))
	}
}

// TestInvalidGolden checks that every file in testdata/invalid produces
// exactly the diagnostics in its golden file.
func TestInvalidGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/invalid/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no invalid specs: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			_, diags := Load(f)
			var b strings.Builder
			for _, d := range diags {
				fmt.Fprintln(&b, d)
			}
			golden(t, strings.TrimSuffix(f, ".yaml")+".golden", []byte(b.String()))
			if len(diags) == 0 {
				t.Errorf("%s produced no diagnostics", f)
			}
		})
	}
}

func TestImportGolden(t *testing.T) {
	for _, tc := range []struct {
		dir    string
		format Format
	}{{"testdata/import/openslo", FormatOpenSLO}, {"testdata/import/sloth", FormatSloth}, {"testdata/import/pyrra", FormatPyrra}} {
		files, _ := filepath.Glob(tc.dir + "/*.yaml")
		if len(files) == 0 {
			t.Fatalf("no files in %s", tc.dir)
		}
		for _, f := range files {
			t.Run(filepath.Base(tc.dir)+"/"+filepath.Base(f), func(t *testing.T) {
				out, diags, err := Import(tc.format, f)
				if err != nil {
					t.Fatal(err)
				}
				var b bytes.Buffer
				b.Write(out)
				b.WriteString("# diagnostics:\n")
				for _, d := range diags {
					fmt.Fprintf(&b, "# %s\n", d)
					if strings.Contains(d.Message, "does not validate") {
						t.Errorf("converted output does not validate: %s", d)
					}
				}
				golden(t, strings.TrimSuffix(f, ".yaml")+".golden", b.Bytes())
				if !diags.HasErrors() {
					// What import printed must load as qsp/v1 on its own.
					if _, again := LoadBytes("imported.yaml", out); again.HasErrors() {
						t.Errorf("imported output is invalid:\n%s", again.Error())
					}
				}
			})
		}
	}
}

func TestImportRejectsOtherFormats(t *testing.T) {
	_, diags, err := Import(FormatOpenSLO, "../../examples/services.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !diags.HasErrors() || !strings.Contains(diags.Error(), "a qsp/v1 document, not OpenSLO v1") {
		t.Errorf("got %q, want a format error", diags.Error())
	}
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/spec -run %s -update to create it)", err, t.Name())
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file\n--- got ---\n%s\n--- want ---\n%s", path, got, want)
	}
}

func TestObjectiveIsExact(t *testing.T) {
	for _, tc := range []struct {
		text          string
		ratio, budget string
	}{
		{"99.9", "0.999", "0.001"},
		{"99.99", "0.9999", "0.0001"},
		{"99.95", "0.9995", "0.0005"},
		{"99.5", "0.995", "0.005"},
		{"95", "0.95", "0.05"},
		{"99.999", "0.99999", "1e-05"},
		{"90%", "0.9", "0.1"},
	} {
		t.Run(tc.text, func(t *testing.T) {
			_, diags := LoadBytes("o.yaml", []byte(fmt.Sprintf(sloTemplate, tc.text)))
			if diags.HasErrors() {
				t.Fatal(diags.Error())
			}
			set, _ := LoadBytes("o.yaml", []byte(fmt.Sprintf(sloTemplate, tc.text)))
			o := set.SLOs[0].Spec.Objective
			if got := fmt.Sprint(o.Ratio()); got != tc.ratio {
				t.Errorf("ratio: got %s, want %s", got, tc.ratio)
			}
			// fmt prints the shortest representation: a float computed as
			// 1-0.999 would print 0.0010000000000000009.
			if got := fmt.Sprint(o.Budget()); got != tc.budget {
				t.Errorf("budget: got %s, want %s", got, tc.budget)
			}
		})
	}
}

const sloTemplate = `apiVersion: qsp/v1
kind: Service
metadata: {name: s}
spec: {owner: team}
---
apiVersion: qsp/v1
kind: SLO
metadata: {name: o}
spec:
  service: s
  category: quality
  objective: %s
  window: 30d
  indicator:
    availability: {query: up}
`

func TestDefaultAlertWindows(t *testing.T) {
	for _, tc := range []struct {
		window       time.Duration
		page, ticket string
	}{
		{30 * 24 * time.Hour, "1h/5m@14.4 6h/30m@6", "1d/2h@3 3d/6h@1"},
		{28 * 24 * time.Hour, "56m/5m@14.4 5h36m/28m@6", "22h24m/1h52m@3 2d19h12m/5h36m@1"},
		{7 * 24 * time.Hour, "14m/1m@14.4 1h24m/7m@6", "5h36m/28m@3 16h48m/1h24m@1"},
	} {
		page, ticket := DefaultAlertWindows(tc.window)
		if got := formatWindows(page); got != tc.page {
			t.Errorf("%s page: got %s, want %s", Duration(tc.window), got, tc.page)
		}
		if got := formatWindows(ticket); got != tc.ticket {
			t.Errorf("%s ticket: got %s, want %s", Duration(tc.window), got, tc.ticket)
		}
	}
}

func formatWindows(ws []BurnWindow) string {
	var parts []string
	for _, w := range ws {
		parts = append(parts, fmt.Sprintf("%s/%s@%v", w.Long, w.Short, w.Factor))
	}
	return strings.Join(parts, " ")
}

func TestSchedule(t *testing.T) {
	base := time.Date(2026, 11, 25, 10, 7, 30, 0, time.UTC) // a Wednesday
	for _, tc := range []struct {
		spec string
		want time.Time
	}{
		{"@every 1h", time.Date(2026, 11, 25, 11, 0, 0, 0, time.UTC)},
		{"@hourly", time.Date(2026, 11, 25, 11, 0, 0, 0, time.UTC)},
		{"@daily", time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)},
		{"*/15 * * * *", time.Date(2026, 11, 25, 10, 15, 0, 0, time.UTC)},
		{"30 9 * * 1-5", time.Date(2026, 11, 26, 9, 30, 0, 0, time.UTC)},
		{"0 0 1 * *", time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)},
		{"0 12 * * 0", time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)},
		{"0 12 * * 7", time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)},
	} {
		s, err := ParseSchedule(tc.spec)
		if err != nil {
			t.Errorf("%s: %v", tc.spec, err)
			continue
		}
		if got := s.Next(base); !got.Equal(tc.want) {
			t.Errorf("%s: got %s, want %s", tc.spec, got, tc.want)
		}
	}
	for _, bad := range []string{"", "@every 10s", "* * *", "61 * * * *", "*/0 * * * *", "5-1 * * * *", "@yearly"} {
		if _, err := ParseSchedule(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// FuzzLoad feeds arbitrary bytes to the loader: it may report anything,
// but must neither panic nor hang.
func FuzzLoad(f *testing.F) {
	for _, glob := range []string{"../../examples/*.yaml", "testdata/invalid/*.yaml", "testdata/import/*/*.yaml", "testdata/anchors/*/*.yaml"} {
		files, _ := filepath.Glob(glob)
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err == nil {
				f.Add(data)
			}
		}
	}
	f.Add([]byte("a: &a [*a, *a, *a]\nb: *a\n"))
	f.Add([]byte("apiVersion: qsp/v1\nkind: SLO\nmetadata: &m {name: x}\nspec: *m\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 {
			return
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, diags := LoadBytes("fuzz.yaml", data)
			for _, d := range diags {
				if d.Message == "" {
					t.Errorf("diagnostic without a message: %+v", d)
				}
			}
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("Load did not finish within 10s on %q", data)
		}
	})
}

// TestAnchorCorpus imports every published example file of Sloth,
// OpenSLO/oslo and Pyrra copied under testdata/anchors: each imports and
// validates, or each loss is named with file:line:col. The golden file of
// each holds its diagnostics; the output must load as qsp/v1 on its own
// and the generated Prometheus rules are checked by promtool in
// internal/rulegen.
func TestAnchorCorpus(t *testing.T) {
	for _, tc := range []struct {
		dir    string
		format Format
	}{{"sloth", FormatSloth}, {"openslo", FormatOpenSLO}, {"pyrra", FormatPyrra}} {
		files, _ := filepath.Glob("testdata/anchors/" + tc.dir + "/*.yaml")
		if len(files) == 0 {
			t.Fatalf("no files in testdata/anchors/%s", tc.dir)
		}
		clean, lossy := 0, 0
		for _, f := range files {
			t.Run(tc.dir+"/"+filepath.Base(f), func(t *testing.T) {
				out, diags, err := Import(tc.format, f)
				if err != nil {
					t.Fatal(err)
				}
				var b bytes.Buffer
				for _, d := range diags {
					fmt.Fprintln(&b, d)
					if !d.Warning && d.Line == 0 && d.File == f {
						t.Errorf("a loss without a position: %s", d)
					}
					if strings.Contains(d.Message, "does not validate:") {
						t.Errorf("converted output does not validate: %s", d)
					}
				}
				if diags.HasErrors() {
					lossy++
				} else {
					clean++
				}
				if len(out) > 0 {
					if _, again := LoadBytes("imported.yaml", out); again.HasErrors() {
						t.Errorf("imported output is invalid:\n%s", again.Error())
					}
				}
				golden(t, strings.TrimSuffix(f, ".yaml")+".diagnostics", b.Bytes())
			})
		}
		t.Logf("%s: %d files, %d imported clean, %d with named losses", tc.dir, len(files), clean, lossy)
	}
}
