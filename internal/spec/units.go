package spec

import (
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"
)

// Duration is a time span written the Prometheus way: "30s", "5m", "1h30m",
// "7d", "2w".
type Duration time.Duration

// D returns the duration as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats the duration the way it is written in specs.
func (d Duration) String() string { return model.Duration(d).String() }

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		return fmt.Errorf("expected a duration such as 5m or 30d, got %s", describe(n))
	}
	md, err := model.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("%q is not a duration (use a number and a unit: ms, s, m, h, d, w, y)", n.Value)
	}
	*d = Duration(md)
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// Percent is a share written in percent ("50", "50%", "0.5%") and held as
// a ratio in [0, 1]. Conversion from percent happens here and in Objective,
// nowhere else.
type Percent struct {
	ratio float64
	text  string
}

// NewPercent returns a Percent for a ratio in [0, 1].
func NewPercent(ratio float64) Percent {
	return Percent{ratio: ratio, text: formatFloat(ratio * 100)}
}

// Ratio returns the share as a ratio, e.g. 0.5 for "50%".
func (p Percent) Ratio() float64 { return p.ratio }

// String formats the share in percent.
func (p Percent) String() string { return p.text + "%" }

// IsZero reports whether the percentage is unset or zero.
func (p Percent) IsZero() bool { return p.ratio == 0 }

// UnmarshalYAML implements yaml.Unmarshaler.
func (p *Percent) UnmarshalYAML(n *yaml.Node) error {
	r, text, err := parsePercent(n)
	if err != nil {
		return err
	}
	if r.Sign() < 0 {
		return fmt.Errorf("percentage %s%% must not be negative", text)
	}
	f, _ := new(big.Rat).Quo(r, big.NewRat(100, 1)).Float64()
	*p = Percent{ratio: f, text: text}
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (p Percent) MarshalYAML() (any, error) { return p.String(), nil }

// parsePercent reads "99.9", 99.9 or "99.9%" as an exact rational number of
// percent, so that 100-99.9 is exactly 0.1 and never 0.09999999999999432.
func parsePercent(n *yaml.Node) (*big.Rat, string, error) {
	if n.Kind != yaml.ScalarNode {
		return nil, "", fmt.Errorf("expected a percentage such as 99.9, got %s", describe(n))
	}
	text := strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(n.Value), "%"))
	switch n.ShortTag() {
	case "!!int", "!!float":
	case "!!str":
		if !strings.HasSuffix(strings.TrimSpace(n.Value), "%") {
			return nil, "", fmt.Errorf("expected a percentage such as 99.9, got %s", describe(n))
		}
	default:
		return nil, "", fmt.Errorf("expected a percentage such as 99.9, got %s", describe(n))
	}
	r, ok := new(big.Rat).SetString(text)
	if !ok {
		return nil, "", fmt.Errorf("%q is not a number", n.Value)
	}
	return r, text, nil
}

// Objective is an SLO target, written in percent (99.9) and held as the
// ratio 0.999 together with its error budget 0.001, both derived from the
// exact decimal so neither carries float noise.
type Objective struct {
	ratio  float64
	budget float64
	text   string
}

// NewObjective returns the objective for a percentage in (0, 100).
func NewObjective(percent float64) Objective {
	text := formatFloat(percent)
	r, _ := new(big.Rat).SetString(text)
	return objectiveFromRat(r, text)
}

func objectiveFromRat(r *big.Rat, text string) Objective {
	ratio, _ := new(big.Rat).Quo(r, big.NewRat(100, 1)).Float64()
	budget, _ := new(big.Rat).Quo(new(big.Rat).Sub(big.NewRat(100, 1), r), big.NewRat(100, 1)).Float64()
	return Objective{ratio: ratio, budget: budget, text: text}
}

// Ratio returns the objective as a ratio in (0, 1), e.g. 0.999.
func (o Objective) Ratio() float64 { return o.ratio }

// Budget returns the error budget as a ratio, 1 - Ratio computed exactly.
func (o Objective) Budget() float64 { return o.budget }

// Percent returns the objective as written, e.g. "99.9".
func (o Objective) Percent() string { return o.text }

// IsZero reports whether the objective was never set.
func (o Objective) IsZero() bool { return o.text == "" }

// String formats the objective in percent.
func (o Objective) String() string { return o.text + "%" }

// UnmarshalYAML implements yaml.Unmarshaler.
func (o *Objective) UnmarshalYAML(n *yaml.Node) error {
	r, text, err := parsePercent(n)
	if err != nil {
		return err
	}
	if r.Sign() <= 0 || r.Cmp(big.NewRat(100, 1)) >= 0 {
		return fmt.Errorf("objective %s%% is out of range: it must be above 0 and below 100", text)
	}
	*o = objectiveFromRat(r, text)
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (o Objective) MarshalYAML() (any, error) { return numberNode(o.text), nil }

// numberNode writes a number as written: 99 stays 99, 99.9 stays 99.9.
func numberNode(text string) *yaml.Node {
	tag := "!!float"
	if _, err := strconv.Atoi(text); err == nil {
		tag = "!!int"
	}
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: text}
}

// Value is a threshold written as a plain number (0.7), a percentage
// ("70%", held as 0.7) or a duration ("30d", held in seconds, the unit of
// Prometheus time metrics).
type Value struct {
	v    float64
	text string
}

// NewValue returns a Value holding f.
func NewValue(f float64) Value { return Value{v: f, text: formatFloat(f)} }

// Float returns the value in base units.
func (v Value) Float() float64 { return v.v }

// String formats the value as written.
func (v Value) String() string { return v.text }

// UnmarshalYAML implements yaml.Unmarshaler.
func (v *Value) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected a number, percentage or duration, got %s", describe(n))
	}
	s := strings.TrimSpace(n.Value)
	switch n.ShortTag() {
	case "!!int", "!!float":
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("%q is not a finite number", s)
		}
		*v = Value{v: f, text: s}
		return nil
	case "!!str":
		if strings.HasSuffix(s, "%") {
			p := Percent{}
			if err := p.UnmarshalYAML(n); err != nil {
				return err
			}
			*v = Value{v: p.Ratio(), text: s}
			return nil
		}
		if d, err := model.ParseDuration(s); err == nil {
			*v = Value{v: time.Duration(d).Seconds(), text: s}
			return nil
		}
	}
	return fmt.Errorf("expected a number, percentage or duration, got %s", describe(n))
}

// MarshalYAML implements yaml.Marshaler.
func (v Value) MarshalYAML() (any, error) {
	if _, err := strconv.ParseFloat(v.text, 64); err == nil {
		return numberNode(v.text), nil
	}
	return v.text, nil
}

// formatFloat prints f with the fewest digits that read back to f after
// rounding away float noise (99.9, not 99.90000000000001).
func formatFloat(f float64) string {
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if short := strconv.FormatFloat(f, 'g', 12, 64); len(short) < len(s) {
		if g, err := strconv.ParseFloat(short, 64); err == nil {
			return strconv.FormatFloat(g, 'f', -1, 64)
		}
	}
	return s
}

// UnmarshalText reads a duration from flags and other plain text.
func (d *Duration) UnmarshalText(b []byte) error {
	md, err := model.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration (use a number and a unit: ms, s, m, h, d, w, y)", string(b))
	}
	*d = Duration(md)
	return nil
}
