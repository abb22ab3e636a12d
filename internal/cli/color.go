package cli

import (
	"io"
	"os"
	"strings"

	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/progress"
)

// colorOn reports whether output to w gets colour: on a terminal, unless
// NO_COLOR is set (https://no-color.org) or TERM is dumb. Piped or
// redirected output never has escape codes.
func colorOn(w io.Writer) bool {
	return progress.IsTerminal(w) && os.Getenv("NO_COLOR") == "" && os.Getenv("TERM") != "dumb"
}

// ANSI colours of the states, as on the web UI: red for firing, orange
// (yellow on a terminal) for pending, blue for no data, green for ok.
var stateColor = map[engine.State]string{
	engine.StateFiring:     "\x1b[31m",
	engine.StatePending:    "\x1b[33m",
	engine.StateNoData:     "\x1b[34m",
	engine.StateLowTraffic: "\x1b[36m",
	engine.StateOK:         "\x1b[32m",
}

const colorReset = "\x1b[0m"

// paintColumn colours, in each line of a table already aligned by
// tabwriter, the cell that starts at the rune offset col, with the colour
// of that line's state. Colouring after alignment keeps the columns
// straight: escape codes have no width.
func paintColumn(table string, col int, states []engine.State) string {
	lines := strings.SplitAfter(table, "\n")
	for i := range lines {
		if i == 0 || i-1 >= len(states) {
			continue // the header
		}
		c, ok := stateColor[states[i-1]]
		if !ok {
			continue
		}
		r := []rune(lines[i])
		if col >= len(r) {
			continue
		}
		end := col
		for end < len(r) && r[end] != ' ' && r[end] != '\n' {
			end++
		}
		lines[i] = string(r[:col]) + c + string(r[col:end]) + colorReset + string(r[end:])
	}
	return strings.Join(lines, "")
}
