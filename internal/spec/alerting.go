package spec

import "time"

// The multi-window, multi-burn-rate alerts of the Google SRE workbook
// ("Alerting on SLOs", table 5-8) for a 30-day window. Each long window
// spends a share of the budget at the given burn rate, and its short window
// (1/12 of the long) makes the alert reset quickly once the burn stops:
//
//	page:   2% of the budget in 1h  -> 0.02 * 720h / 1h  = 14.4x  (short 5m)
//	        5% of the budget in 6h  -> 0.05 * 720h / 6h  = 6x     (short 30m)
//	ticket: 10% of the budget in 1d -> 0.10 * 720h / 24h = 3x     (short 2h)
//	        10% of the budget in 3d -> 0.10 * 720h / 72h = 1x     (short 6h)
var (
	workbookWindow = 30 * 24 * time.Hour
	workbookPage   = []BurnWindow{
		{Long: Duration(time.Hour), Short: Duration(5 * time.Minute), Factor: 14.4},
		{Long: Duration(6 * time.Hour), Short: Duration(30 * time.Minute), Factor: 6},
	}
	workbookTicket = []BurnWindow{
		{Long: Duration(24 * time.Hour), Short: Duration(2 * time.Hour), Factor: 3},
		{Long: Duration(72 * time.Hour), Short: Duration(6 * time.Hour), Factor: 1},
	}
)

// DefaultAlertWindows returns the workbook's page and ticket windows for an
// SLO window of length w. For windows other than 30 days the durations are
// scaled by w/30d (rounded to whole minutes, at least one minute) and the
// factors kept, so each pair still means "this share of the budget is gone
// within this share of the window": a 7d SLO pages on 14.4x over 14m/1m.
func DefaultAlertWindows(w time.Duration) (page, ticket []BurnWindow) {
	return scaleWindows(workbookPage, w), scaleWindows(workbookTicket, w)
}

func scaleWindows(ws []BurnWindow, w time.Duration) []BurnWindow {
	out := make([]BurnWindow, len(ws))
	for i, bw := range ws {
		out[i] = BurnWindow{
			Long:   scaleDuration(bw.Long.D(), w),
			Short:  scaleDuration(bw.Short.D(), w),
			Factor: bw.Factor,
		}
	}
	return out
}

func scaleDuration(d, w time.Duration) Duration {
	if w == workbookWindow {
		return Duration(d)
	}
	scaled := time.Duration(float64(d) * float64(w) / float64(workbookWindow)).Round(time.Minute)
	return Duration(max(scaled, time.Minute))
}

// Alert tiers.
const (
	SeverityPage   = "page"
	SeverityTicket = "ticket"
)

// Defaults of the alerting block.
const (
	DefaultAlertName   = "SLOErrorBudgetBurn"
	DefaultTierLabel   = "severity"
	DefaultNoDataAfter = 10 * time.Minute
	DefaultMinEvents   = 1
)

// Tier returns the page or ticket tier; nil if disabled.
func (a Alerting) Tier(severity string) *AlertTier {
	var t *AlertTier
	switch severity {
	case SeverityPage:
		t = a.Page
	case SeverityTicket:
		t = a.Ticket
	}
	if t == nil || t.Disabled {
		return nil
	}
	return t
}
