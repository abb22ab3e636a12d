package spec

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
)

// Schedule says when a scheduled playbook runs.
type Schedule struct {
	every time.Duration // for "@every"
	// For cron lines: the allowed values of each field.
	minute, hour, dom, month, dow uint64
	domStar, dowStar              bool
}

// ParseSchedule reads "@every 1h", "@hourly", "@daily", "@weekly" or a
// five-field cron line ("*/15 * * * 1-5": minute, hour, day of month,
// month, day of week with 0 = Sunday), evaluated in UTC.
func ParseSchedule(s string) (*Schedule, error) {
	s = strings.TrimSpace(s)
	switch s {
	case "@hourly":
		s = "0 * * * *"
	case "@daily", "@midnight":
		s = "0 0 * * *"
	case "@weekly":
		s = "0 0 * * 0"
	case "@monthly":
		s = "0 0 1 * *"
	}
	if rest, ok := strings.CutPrefix(s, "@every "); ok {
		d, err := model.ParseDuration(strings.TrimSpace(rest))
		if err != nil || d < model.Duration(time.Minute) {
			return nil, fmt.Errorf("%q: @every needs a duration of at least 1m", s)
		}
		return &Schedule{every: time.Duration(d)}, nil
	}
	fields := strings.Fields(s)
	if len(fields) != 5 {
		return nil, fmt.Errorf("%q is not a schedule: use @every 1h, @hourly, @daily, @weekly or five cron fields (minute hour day-of-month month day-of-week)", s)
	}
	var sc Schedule
	var err error
	specs := []struct {
		name     string
		min, max int
		dst      *uint64
	}{
		{"minute", 0, 59, &sc.minute},
		{"hour", 0, 23, &sc.hour},
		{"day of month", 1, 31, &sc.dom},
		{"month", 1, 12, &sc.month},
		{"day of week", 0, 7, &sc.dow},
	}
	for i, f := range specs {
		if *f.dst, err = cronField(fields[i], f.min, f.max); err != nil {
			return nil, fmt.Errorf("%q: %s: %w", s, f.name, err)
		}
	}
	if sc.dow&(1<<7) != 0 { // 7 is Sunday too
		sc.dow |= 1
	}
	sc.domStar, sc.dowStar = fields[2] == "*", fields[4] == "*"
	return &sc, nil
}

func cronField(f string, lo, hi int) (uint64, error) {
	var bits uint64
	for _, part := range strings.Split(f, ",") {
		rng, stepText, hasStep := strings.Cut(part, "/")
		step := 1
		if hasStep {
			n, err := strconv.Atoi(stepText)
			if err != nil || n < 1 {
				return 0, fmt.Errorf("bad step %q", stepText)
			}
			step = n
		}
		from, to := lo, hi
		if rng != "*" {
			a, b, isRange := strings.Cut(rng, "-")
			x, err := strconv.Atoi(a)
			if err != nil {
				return 0, fmt.Errorf("bad value %q", a)
			}
			from, to = x, x
			if isRange {
				if to, err = strconv.Atoi(b); err != nil {
					return 0, fmt.Errorf("bad value %q", b)
				}
			} else if hasStep {
				to = hi
			}
		}
		if from < lo || to > hi || from > to {
			return 0, fmt.Errorf("%q out of range %d-%d", part, lo, hi)
		}
		for x := from; x <= to; x += step {
			bits |= 1 << uint(x)
		}
	}
	return bits, nil
}

// Next returns the first time after t that the schedule fires.
func (s *Schedule) Next(t time.Time) time.Time {
	if s.every > 0 {
		return t.Truncate(s.every).Add(s.every)
	}
	t = t.UTC().Truncate(time.Minute).Add(time.Minute)
	// A cron line fires at least once every 4 years; bound the search.
	for limit := 0; limit < 4*366*24*60; limit++ {
		if s.matches(t) {
			return t
		}
		t = t.Add(time.Minute)
	}
	return time.Time{}
}

func (s *Schedule) matches(t time.Time) bool {
	if s.minute&(1<<uint(t.Minute())) == 0 || s.hour&(1<<uint(t.Hour())) == 0 || s.month&(1<<uint(t.Month())) == 0 {
		return false
	}
	dom := s.dom&(1<<uint(t.Day())) != 0
	dow := s.dow&(1<<uint(t.Weekday())) != 0
	// Cron's rule: when both day fields are restricted, either may match.
	switch {
	case s.domStar && s.dowStar:
		return true
	case s.domStar:
		return dow
	case s.dowStar:
		return dom
	}
	return dom || dow
}
