package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

func openAlertingStore(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "qsp.db")
	s, err := Open(context.Background(), Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func notification(target, key, status string, at time.Time) Notification {
	return Notification{
		Target: target, Key: key, Severity: "page", Fingerprint: "fp-" + key, Status: status,
		DedupeKey: fmt.Sprintf("%s|fp-%s|%s|%d", target, key, status, at.UnixMilli()),
		Payload:   []byte(`{"status":"` + status + `"}`), CreatedAt: at, NextAttemptAt: at, ExpiresAt: at.Add(24 * time.Hour),
	}
}

func TestOutbox(t *testing.T) {
	ctx := context.Background()
	s, path := openAlertingStore(t)
	t0 := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	alert := NotifiedAlert{Key: "a", Severity: "page", Fingerprint: "fp-a", Name: "SLOErrorBudgetBurn", SLO: "a", Service: "shop",
		Labels: map[string]string{"slo": "a", "severity": "page"}, Annotations: map[string]string{"summary": "burning"},
		State: AlertFiring, StartsAt: t0, GeneratorURL: "http://qsp/slos/a", UpdatedAt: t0}
	ns := []Notification{notification("am1", "a", "firing", t0), notification("am2", "a", "firing", t0), notification("am1", "b", "firing", t0)}
	n, err := s.EnqueueAlerts(ctx, []NotifiedAlert{alert}, ns)
	if err != nil || n != 3 {
		t.Fatalf("enqueue: got %d, %v; want 3 rows", n, err)
	}
	// The same events again: the dedupe key keeps one row each.
	if n, err := s.EnqueueAlerts(ctx, nil, ns); err != nil || n != 0 {
		t.Fatalf("re-enqueue: got %d, %v; want 0 new rows", n, err)
	}

	got, err := s.NotifiedAlerts(ctx, NotifiedAlertFilter{State: AlertFiring})
	if err != nil || len(got) != 1 || got[0].Labels["slo"] != "a" || !got[0].StartsAt.Equal(t0) || got[0].Annotations["summary"] != "burning" {
		t.Fatalf("notified alerts: got %+v, %v", got, err)
	}
	if got, _ := s.NotifiedAlerts(ctx, NotifiedAlertFilter{Keys: []string{"zzz"}}); len(got) != 0 {
		t.Errorf("filter by unknown key: got %d alerts", len(got))
	}

	pending, err := s.PendingNotifications(ctx, "am1", 10)
	if err != nil || len(pending) != 2 || pending[0].Key != "a" || pending[1].Key != "b" || string(pending[0].Payload) != `{"status":"firing"}` {
		t.Fatalf("pending am1: got %+v, %v", pending, err)
	}
	if err := s.MarkRetry(ctx, []int64{pending[0].ID, pending[1].ID}, t0.Add(time.Second), "connection refused"); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkDelivered(ctx, []int64{pending[0].ID}, t0.Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkFailed(ctx, []int64{pending[1].ID}, "400 bad request"); err != nil {
		t.Fatal(err)
	}
	all, err := s.Notifications(ctx, NotificationFilter{Target: "am1"})
	if err != nil {
		t.Fatal(err)
	}
	if all[0].State != NotificationDelivered || all[0].Attempts != 2 || all[0].LastError != "" || !all[0].DeliveredAt.Equal(t0.Add(2*time.Second)) {
		t.Errorf("delivered row: got %+v", all[0])
	}
	if all[1].State != NotificationFailed || all[1].Attempts != 2 || all[1].LastError != "400 bad request" {
		t.Errorf("failed row: got %+v", all[1])
	}
	// A settled row does not change again.
	if err := s.MarkRetry(ctx, []int64{all[0].ID}, t0, "late"); err != nil {
		t.Fatal(err)
	}
	if again, _ := s.Notifications(ctx, NotificationFilter{Target: "am1", State: NotificationDelivered}); len(again) != 1 || again[0].Attempts != 2 {
		t.Errorf("delivered row changed by a later retry: %+v", again)
	}

	// Expiry and the survival of pending rows across a reopen.
	s.Close()
	s2, err := Open(ctx, Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if p, _ := s2.PendingNotifications(ctx, "am2", 10); len(p) != 1 {
		t.Fatalf("after reopen: %d pending for am2, want 1", len(p))
	}
	expired, err := s2.ExpireNotifications(ctx, t0.Add(25*time.Hour))
	if err != nil || expired["am2"] != 1 || len(expired) != 1 {
		t.Fatalf("expire: got %v, %v; want am2:1", expired, err)
	}
	counts, err := s2.NotificationCounts(ctx)
	if err != nil || counts["am1"][NotificationDelivered] != 1 || counts["am1"][NotificationFailed] != 1 || counts["am2"][NotificationExpired] != 1 {
		t.Errorf("counts: got %v, %v", counts, err)
	}
	latest, err := s2.LatestNotifications(ctx)
	if err != nil || len(latest) != 3 {
		t.Errorf("latest: got %d rows, %v; want one per target and alert (3)", len(latest), err)
	}
	if n, err := s2.PruneNotifications(ctx, t0.Add(time.Hour)); err != nil || n != 3 {
		t.Errorf("prune: got %d, %v; want 3 settled rows", n, err)
	}
}

func TestIncidents(t *testing.T) {
	ctx := context.Background()
	s, _ := openAlertingStore(t)
	t0 := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	id, err := s.CreateIncident(ctx, Incident{
		Service: "shop", Title: "shop-availability pages", Severity: "page", OpenedAt: t0, FirstBadAt: t0.Add(-2 * time.Minute), DetectedAt: t0, UpdatedAt: t0,
		Alerts: []IncidentAlert{{Key: "shop-availability", Severity: "page", Fingerprint: "f1", Name: "SLOErrorBudgetBurn", SLO: "shop-availability", Labels: map[string]string{"severity": "page"}, State: AlertFiring, FiredAt: t0}},
		Events: []IncidentEvent{{At: t0.Add(-2 * time.Minute), Kind: "first_bad"}, {At: t0, Kind: "detected", Key: "shop-availability", Severity: "page"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	open, err := s.OpenIncidentsWithAlert(ctx, "shop-availability", "page")
	if err != nil || len(open) != 1 || open[0].ID != id || len(open[0].Alerts) != 1 {
		t.Fatalf("open incidents with alert: got %+v, %v", open, err)
	}

	inc, changed, err := s.AckIncident(ctx, id, "alice", "looking", t0.Add(time.Minute))
	if err != nil || !changed || inc.AckedBy != "alice" || inc.AckNote != "looking" || !inc.AckedAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("ack: got %+v, %v, %v", inc, changed, err)
	}
	inc, changed, err = s.AckIncident(ctx, id, "bob", "me too", t0.Add(2*time.Minute))
	if err != nil || changed || inc.AckedBy != "alice" {
		t.Fatalf("second ack must be a no-op: got %+v, changed %v, %v", inc, changed, err)
	}
	if _, _, err := s.AckIncident(ctx, 999, "x", "", t0); !errors.Is(err, ErrNotFound) {
		t.Errorf("ack of an unknown incident: got %v, want ErrNotFound", err)
	}

	err = s.UpdateIncident(ctx, IncidentUpdate{ID: id, UpdatedAt: t0.Add(3 * time.Minute),
		Alerts: []IncidentAlert{{Key: "shop-latency", Severity: "ticket", Fingerprint: "f2", Name: "SLOErrorBudgetBurn", SLO: "shop-latency", State: AlertFiring, FiredAt: t0.Add(3 * time.Minute)}},
		Events: []IncidentEvent{{At: t0.Add(3 * time.Minute), Kind: "alert_fired", Key: "shop-latency", Severity: "ticket"}}})
	if err != nil {
		t.Fatal(err)
	}
	err = s.UpdateIncident(ctx, IncidentUpdate{ID: id, Close: true, ResolvedAt: t0.Add(30 * time.Minute), UpdatedAt: t0.Add(30 * time.Minute),
		Alerts: []IncidentAlert{
			{Key: "shop-availability", Severity: "page", Fingerprint: "f1", Name: "SLOErrorBudgetBurn", SLO: "shop-availability", State: AlertResolved, FiredAt: t0, ResolvedAt: t0.Add(20 * time.Minute)},
			{Key: "shop-latency", Severity: "ticket", Fingerprint: "f2", Name: "SLOErrorBudgetBurn", SLO: "shop-latency", State: AlertResolved, FiredAt: t0.Add(3 * time.Minute), ResolvedAt: t0.Add(30 * time.Minute)},
		},
		Events: []IncidentEvent{{At: t0.Add(30 * time.Minute), Kind: "resolved"}}})
	if err != nil {
		t.Fatal(err)
	}
	inc, err = s.Incident(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if inc.State != IncidentClosed || !inc.ResolvedAt.Equal(t0.Add(30*time.Minute)) || len(inc.Alerts) != 2 || inc.AckedBy != "alice" {
		t.Errorf("closed incident: got %+v", inc)
	}
	var kinds []string
	for _, e := range inc.Events {
		kinds = append(kinds, e.Kind)
	}
	if want := "[first_bad detected acknowledged alert_fired resolved]"; fmt.Sprint(kinds) != want {
		t.Errorf("timeline: got %v, want %s", kinds, want)
	}
	if _, _, err := s.AckIncident(ctx, id, "carol", "", t0.Add(time.Hour)); !errors.Is(err, ErrConflict) {
		t.Errorf("ack of a closed incident: got %v, want ErrConflict", err)
	}
	if err := s.UpdateIncident(ctx, IncidentUpdate{ID: id, UpdatedAt: t0}); !errors.Is(err, ErrConflict) {
		t.Errorf("update of a closed incident: got %v, want ErrConflict", err)
	}
	if _, err := s.Incident(ctx, 12345); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown incident: got %v, want ErrNotFound", err)
	}

	// A second, open incident of the telemetry source (no service).
	id2, err := s.CreateIncident(ctx, Incident{Service: "", Title: "source down", Severity: "page", OpenedAt: t0.Add(time.Hour), DetectedAt: t0.Add(time.Hour), FirstBadAt: t0.Add(59 * time.Minute), UpdatedAt: t0.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		f    IncidentFilter
		want []int64
	}{
		{"all, newest first", IncidentFilter{}, []int64{id2, id}},
		{"open", IncidentFilter{State: IncidentOpen}, []int64{id2}},
		{"service shop", IncidentFilter{Service: "shop"}, []int64{id}},
		{"no service", IncidentFilter{HasService: true}, []int64{id2}},
		{"opened in the first hour", IncidentFilter{OpenedFrom: t0, OpenedTo: t0.Add(time.Hour)}, []int64{id}},
		{"limit", IncidentFilter{Limit: 1}, []int64{id2}},
		{"second page", IncidentFilter{Limit: 1, Offset: 1}, []int64{id}},
		{"past the end", IncidentFilter{Offset: 2}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := s.Incidents(ctx, c.f)
			if err != nil {
				t.Fatal(err)
			}
			// The count ignores paging: every incident the filter matches.
			f := c.f
			f.Limit, f.Offset = 0, 0
			all, _ := s.Incidents(ctx, f)
			if n, err := s.CountIncidents(ctx, c.f); err != nil || n != len(all) {
				t.Errorf("count: %d, %v; want %d", n, err, len(all))
			}
			var ids []int64
			for _, inc := range got {
				ids = append(ids, inc.ID)
			}
			if fmt.Sprint(ids) != fmt.Sprint(c.want) {
				t.Errorf("got %v, want %v", ids, c.want)
			}
		})
	}
	withParts, err := s.Incidents(ctx, IncidentFilter{Service: "shop", WithAlerts: true, WithEvents: true})
	if err != nil || len(withParts) != 1 || len(withParts[0].Alerts) != 2 || len(withParts[0].Events) != 5 {
		t.Errorf("list with parts: got %+v, %v", withParts, err)
	}
}

func TestTruncateUTF8(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{
		{"hello", 10, "hello"},
		{"hello", 3, "hel"},
		{"héllo", 2, "h"}, // é is two bytes: do not cut it in half
		{"ééé", 4, "éé"},
	} {
		if got := truncateUTF8(c.in, c.n); got != c.want {
			t.Errorf("truncateUTF8(%q, %d): got %q, want %q", c.in, c.n, got, c.want)
		}
	}
}
