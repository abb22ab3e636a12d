package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestReadmeExamples keeps the README (the spec documentation section)
// true: its input examples decode strictly into Input and are valid, and
// its Rego example is the module the tests run.
func TestReadmeExamples(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```json\n(.*?)```").FindAllSubmatch(readme, -1)
	if len(blocks) != 2 {
		t.Fatalf("README has %d json blocks, want 2 (gate input, playbook fields)", len(blocks))
	}
	decode := func(b []byte) Input {
		t.Helper()
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		var in Input
		if err := dec.Decode(&in); err != nil {
			t.Fatalf("README example does not decode into Input: %v\n%s", err, b)
		}
		return in
	}
	gate := decode(blocks[0][1])
	pb := decode(blocks[1][1])
	pb.Service, pb.SLOs, pb.Alerts, pb.Now = gate.Service, gate.SLOs, gate.Alerts, gate.Now

	e := newTestEngine(t, Options{})
	for _, in := range []Input{gate, pb} {
		if _, err := e.Evaluate(context.Background(), in); err != nil {
			t.Errorf("README example %s: %v", in.Point, err)
		}
	}

	for line := range strings.SplitSeq(strings.TrimSpace(fridayFeatures), "\n") {
		if line != "" && !bytes.Contains(readme, []byte("    "+line+"\n")) {
			t.Errorf("README's Rego example lacks the line %q of the tested module", line)
		}
	}
}
