package gate

import (
	"bytes"
	"encoding/xml"
	"strings"
	"testing"
)

// junitDoc is what CI systems read of a JUnit report.
type junitDoc struct {
	XMLName  xml.Name `xml:"testsuites"`
	Tests    int      `xml:"tests,attr"`
	Failures int      `xml:"failures,attr"`
	Errors   int      `xml:"errors,attr"`
	Suites   []struct {
		Name     string `xml:"name,attr"`
		Tests    int    `xml:"tests,attr"`
		Failures int    `xml:"failures,attr"`
		Errors   int    `xml:"errors,attr"`
		Skipped  int    `xml:"skipped,attr"`
		Props    []struct {
			Name  string `xml:"name,attr"`
			Value string `xml:"value,attr"`
		} `xml:"properties>property"`
		Cases []struct {
			Class   string `xml:"classname,attr"`
			Name    string `xml:"name,attr"`
			Failure *struct {
				Message string `xml:"message,attr"`
				Text    string `xml:",chardata"`
			} `xml:"failure"`
			Error *struct {
				Message string `xml:"message,attr"`
			} `xml:"error"`
			Skipped *struct {
				Message string `xml:"message,attr"`
			} `xml:"skipped"`
			Out string `xml:"system-out"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

func parseJUnit(t *testing.T, evs ...*Evaluation) junitDoc {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteJUnit(&buf, evs...); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(buf.String(), xml.Header) {
		t.Errorf("no XML header: %.80s", buf.String())
	}
	var doc junitDoc
	if err := xml.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatalf("junit does not parse: %v\n%s", err, buf.String())
	}
	return doc
}

// TestJUnit writes evaluations with every kind of check and reads the
// XML back: one testsuite per gate, one testcase per check item, failures
// carrying the policies' reasons.
func TestJUnit(t *testing.T) {
	f := canaryFixture(t)
	f.files["reports/trivy.json"] = testdata(t, "trivy-checkout.json")
	budget := f.evaluate("checkout-budget-and-security-canary", Request{
		Reports: []Report{{Name: "grype.json", Content: testdata(t, "grype-checkout.json")}}, Samples: samplesDoc(1.5)})
	mustState(t, budget, StateFail)
	broken := f.evaluate("canary-badquery", Request{})
	mustState(t, broken, StateError)

	doc := parseJUnit(t, budget, broken)
	if len(doc.Suites) != 2 {
		t.Fatalf("%d suites", len(doc.Suites))
	}
	s := doc.Suites[0]
	if s.Name != "gate/checkout-budget-and-security-canary" {
		t.Errorf("suite %s", s.Name)
	}
	cases := map[string]int{}
	for i, c := range s.Cases {
		cases[c.Class+"/"+c.Name] = i
	}
	for _, want := range []string{
		"checkout-budget-and-security-canary.budget/checkout-availability",
		"checkout-budget-and-security-canary.security/critical", "checkout-budget-and-security-canary.security/high",
		"checkout-budget-and-security-canary.security/medium", "checkout-budget-and-security-canary.security/low",
		"checkout-budget-and-security-canary.security/unknown",
		"checkout-budget-and-security-canary.canary/latency", "checkout-budget-and-security-canary.canary/errors",
		"checkout-budget-and-security-canary.canary/verdict",
		"checkout-budget-and-security-canary.policy/error-budget", "checkout-budget-and-security-canary.policy/trade-off",
		"checkout-budget-and-security-canary.policy/vulnerabilities",
	} {
		if _, ok := cases[want]; !ok {
			t.Errorf("no testcase %s in %v", want, cases)
		}
	}
	failed := func(name string) string {
		c := s.Cases[cases["checkout-budget-and-security-canary."+name]]
		if c.Failure == nil {
			return ""
		}
		return c.Failure.Message + "\n" + c.Failure.Text
	}
	if m := failed("budget/checkout-availability"); !strings.Contains(m, "SLO checkout-availability has consumed 500.0%") {
		t.Errorf("budget failure %q", m)
	}
	if m := failed("security/critical"); !strings.Contains(m, "2 critical findings, at most 1 allowed") || !strings.Contains(m, "CVE-2024-24790 (stdlib)") {
		t.Errorf("critical failure %q", m)
	}
	if m := failed("security/high"); m != "" {
		t.Errorf("high failed without a threshold: %q", m)
	}
	if m := failed("canary/latency"); !strings.Contains(m, "latency") {
		t.Errorf("latency failure %q", m)
	}
	if m := failed("canary/errors"); m != "" {
		t.Errorf("equal errors failed: %q", m)
	}
	if m := failed("policy/error-budget"); !strings.Contains(m, "may not deploy") {
		t.Errorf("error-budget failure %q", m)
	}
	if m := failed("policy/trade-off"); m != "" {
		t.Errorf("trade-off failed: %q", m)
	}
	if s.Failures < 5 || s.Tests != len(s.Cases) || doc.Tests != s.Tests+doc.Suites[1].Tests {
		t.Errorf("counts: suite %d tests %d failures; root %d tests", s.Tests, s.Failures, doc.Tests)
	}
	props := map[string]string{}
	for _, p := range s.Props {
		props[p.Name] = p.Value
	}
	if props["state"] != "fail" || props["evaluation"] != budget.ID || props["decision"] != budget.Decision.ID {
		t.Errorf("properties %v", props)
	}

	e := doc.Suites[1]
	if e.Errors != 1 || e.Failures != 0 || len(e.Cases) != 1 || e.Cases[0].Error == nil || !strings.Contains(e.Cases[0].Error.Message, "invalid regular expression") {
		t.Errorf("error suite %+v", e)
	}
}
