package cli

import (
	"strings"
	"testing"

	"github.com/qsp-dev/qsp/internal/engine"
)

func TestStatusTableWorstFirst(t *testing.T) {
	st := func(key string, s engine.State, left float64) *engine.Status {
		x := &engine.Status{Key: key, SLO: key, Service: "shop", State: s}
		x.Budget.RemainingRatio = left
		return x
	}
	in := []*engine.Status{
		st("a-ok", engine.StateOK, 0.9),
		st("b-pending", engine.StatePending, 0.5),
		st("c-firing-more-left", engine.StateFiring, 0.8),
		st("d-nodata", engine.StateNoData, 1),
		st("e-firing", engine.StateFiring, -0.2),
		st("f-ok-less-left", engine.StateOK, 0.1),
	}
	var b strings.Builder
	if err := printStatusTable(&b, in); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(b.String()), "\n")[1:] {
		got = append(got, strings.Fields(line)[0])
	}
	want := []string{"d-nodata", "e-firing", "c-firing-more-left", "b-pending", "f-ok-less-left", "a-ok"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("order %v, want %v", got, want)
	}
	if in[0].Key != "a-ok" {
		t.Error("the caller's slice was reordered")
	}
	// Not a terminal: no escape codes.
	if strings.Contains(b.String(), "\x1b[") {
		t.Errorf("colour on a non-terminal: %q", b.String())
	}
}

func TestPaintColumn(t *testing.T) {
	table := "SLO    STATE    X\nsvc-é  firing   1\nb      ok       2\nc      unknown  3\n"
	got := paintColumn(table, 7, []engine.State{engine.StateFiring, engine.StateOK, engine.StateUnknown})
	want := "SLO    STATE    X\nsvc-é  \x1b[31mfiring\x1b[0m   1\nb      \x1b[32mok\x1b[0m       2\nc      unknown  3\n"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	// With the escapes removed the table is unchanged: columns stay aligned.
	if strings.NewReplacer("\x1b[31m", "", "\x1b[32m", "", "\x1b[0m", "").Replace(got) != table {
		t.Error("painting moved text")
	}
}
