package slo

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/prometheus/common/model"
)

// BurnCondition is one multi-window condition: the burn rate over both the
// long and the short window is at least Factor. The long window makes the
// alert significant; the short one makes it stop soon after the burn does.
type BurnCondition struct {
	Long, Short time.Duration
	Factor      float64
}

// String names the condition as alerts label it: "1h/5m".
func (c BurnCondition) String() string {
	return fmt.Sprintf("%s/%s", formatDuration(c.Long), formatDuration(c.Short))
}

// WindowResult is what the engine knows about one window.
type WindowResult struct {
	Counts Counts
	// NoData is true when no telemetry covered the window.
	NoData bool
}

// ConditionResult explains the evaluation of one condition.
type ConditionResult struct {
	Condition  BurnCondition `json:"condition"`
	LongBurn   float64       `json:"longBurn"`
	ShortBurn  float64       `json:"shortBurn"`
	Met        bool          `json:"met"`
	LowTraffic bool          `json:"lowTraffic,omitempty"` // a window had fewer events than the minimum
	NoData     bool          `json:"noData,omitempty"`     // a window had no telemetry at all
}

// MarshalJSON writes the condition as {"long": "1h", "short": "5m", "factor": 14.4}.
func (c BurnCondition) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Long   string  `json:"long"`
		Short  string  `json:"short"`
		Factor float64 `json:"factor"`
	}{formatDuration(c.Long), formatDuration(c.Short), c.Factor})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (c *BurnCondition) UnmarshalJSON(b []byte) error {
	var w struct {
		Long   string  `json:"long"`
		Short  string  `json:"short"`
		Factor float64 `json:"factor"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	long, err := model.ParseDuration(w.Long)
	if err != nil {
		return err
	}
	short, err := model.ParseDuration(w.Short)
	if err != nil {
		return err
	}
	*c = BurnCondition{Long: time.Duration(long), Short: time.Duration(short), Factor: w.Factor}
	return nil
}

// EvaluateConditions checks every condition of a tier. window returns the
// counts of a window ending now. minEvents is the least number of events a
// window needs to be judged; below it the condition is low traffic and
// cannot fire. A tier is active when any condition is met.
func EvaluateConditions(conds []BurnCondition, budget float64, minEvents float64, window func(time.Duration) WindowResult) (active bool, results []ConditionResult) {
	results = make([]ConditionResult, 0, len(conds))
	for _, c := range conds {
		long, short := window(c.Long), window(c.Short)
		r := ConditionResult{Condition: c}
		switch {
		case long.NoData || short.NoData:
			r.NoData = true
		case long.Counts.Total < minEvents || short.Counts.Total < minEvents || long.Counts.Total <= 0 || short.Counts.Total <= 0:
			r.LowTraffic = true
		default:
			r.LongBurn, _ = BurnRate(long.Counts, budget)
			r.ShortBurn, _ = BurnRate(short.Counts, budget)
			// A tolerance keeps 14.4 from failing to reach 14.4 because
			// of float rounding in the ratio.
			r.Met = r.LongBurn >= c.Factor-1e-9 && r.ShortBurn >= c.Factor-1e-9
		}
		active = active || r.Met
		results = append(results, r)
	}
	return active, results
}

func formatDuration(d time.Duration) string {
	switch {
	case d%(24*time.Hour) == 0:
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return d.String()
}
