package slo

import "time"

// Calendar periods.
const (
	Week  = "week"
	Month = "month"
)

// CalendarPeriod returns the calendar week (Monday 00:00) or month (the 1st,
// 00:00) that contains t, in loc. Start and end are local midnights, so a
// period is not always a whole number of 24-hour days: a month with a DST
// change is an hour shorter or longer.
func CalendarPeriod(t time.Time, period string, loc *time.Location) (start, end time.Time) {
	lt := t.In(loc)
	switch period {
	case Week:
		// Weekday: Sunday = 0; ISO weeks start on Monday.
		back := (int(lt.Weekday()) + 6) % 7
		start = time.Date(lt.Year(), lt.Month(), lt.Day()-back, 0, 0, 0, 0, loc)
		end = time.Date(start.Year(), start.Month(), start.Day()+7, 0, 0, 0, 0, loc)
	default:
		start = time.Date(lt.Year(), lt.Month(), 1, 0, 0, 0, 0, loc)
		end = time.Date(lt.Year(), lt.Month()+1, 1, 0, 0, 0, 0, loc)
	}
	return start, end
}

// Minute is a point in time as whole minutes since the Unix epoch; minute
// m stands for the interval [m, m+1) and its events.
type Minute int64

// MinuteOf returns the minute that contains t.
func MinuteOf(t time.Time) Minute {
	s := t.Unix()
	if s < 0 && s%60 != 0 {
		return Minute(s/60 - 1)
	}
	return Minute(s / 60)
}

// Hour returns the hour that contains m, as hours since the Unix epoch.
func (m Minute) Hour() int64 {
	if m < 0 && m%60 != 0 {
		return int64(m)/60 - 1
	}
	return int64(m) / 60
}

// Time returns the start of minute m.
func (m Minute) Time() time.Time { return time.Unix(int64(m)*60, 0).UTC() }

// CeilMinute returns the first minute that starts at or after t.
func CeilMinute(t time.Time) Minute {
	m := MinuteOf(t)
	if m.Time().Before(t) {
		m++
	}
	return m
}

// Interval is the half-open time range [Start, End).
type Interval struct {
	Start, End time.Time
}

// Contains reports whether t is in the interval.
func (i Interval) Contains(t time.Time) bool { return !t.Before(i.Start) && t.Before(i.End) }

// Correction is a window of excluded events, possibly repeating.
type Correction struct {
	Start  time.Time
	Length time.Duration
	// Every repeats the window; zero means once.
	Every time.Duration
	// Until ends the repetition; zero means forever.
	Until time.Time
}

// Intervals returns the occurrences of the correction that overlap
// [from, to), in order.
func (c Correction) Intervals(from, to time.Time) []Interval {
	if c.Length <= 0 {
		return nil
	}
	if c.Every <= 0 {
		iv := Interval{c.Start, c.Start.Add(c.Length)}
		if iv.End.After(from) && iv.Start.Before(to) {
			return []Interval{iv}
		}
		return nil
	}
	// First occurrence that could overlap from.
	n := int64(0)
	if d := from.Sub(c.Start) - c.Length; d > 0 {
		n = int64(d / c.Every)
	}
	var out []Interval
	for s := c.Start.Add(time.Duration(n) * c.Every); s.Before(to); s = s.Add(c.Every) {
		if !c.Until.IsZero() && !s.Before(c.Until) {
			break
		}
		iv := Interval{s, s.Add(c.Length)}
		if iv.End.After(from) {
			out = append(out, iv)
		}
	}
	return out
}

// Corrections is the set of corrections that apply to one SLO.
type Corrections []Correction

// Excludes reports whether minute m lies (wholly or partly) in a
// correction window. A minute that a window touches is excluded as a whole:
// counts are per minute.
func (cs Corrections) Excludes(m Minute) bool {
	start := m.Time()
	end := start.Add(time.Minute)
	for _, c := range cs {
		if len(c.Intervals(start, end)) > 0 {
			return true
		}
	}
	return false
}
