package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/qsp-dev/qsp/internal/policy"
)

var gatesT0 = time.Date(2026, 3, 6, 10, 0, 0, 0, time.UTC)

func TestDecisionLog(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		mk := func(id string, at time.Duration, point, subject, service string, result policy.Result) *policy.Decision {
			return &policy.Decision{ID: id, Time: gatesT0.Add(at), Point: point, Subject: subject, Service: service, Result: result,
				Reasons:  []policy.Reason{{Policy: "error-budget", Level: "deny", Message: "frozen " + id}},
				Policies: []string{"error-budget", "trade-off"},
				Input:    json.RawMessage(fmt.Sprintf(`{"point":%q,"gate":%q,"service":{"name":%q}}`, point, subject, service))}
		}
		ds := []*policy.Decision{
			mk("d1", 0, policy.PointGate, "checkout-deploy", "checkout", policy.Deny),
			mk("d2", time.Minute, policy.PointPlaybook, "shed-load", "checkout", policy.Allow),
			mk("d3", 2*time.Minute, policy.PointGate, "search-deploy", "search", policy.Warn),
		}
		for _, d := range ds {
			if err := s.RecordDecision(ctx, d); err != nil {
				t.Fatal(err)
			}
		}
		// A retried record keeps the first.
		again := *ds[0]
		again.Result = policy.Allow
		if err := s.RecordDecision(ctx, &again); err != nil {
			t.Fatal(err)
		}
		if err := s.RecordDecision(ctx, &policy.Decision{}); err == nil {
			t.Error("a decision without ID was recorded")
		}
		for _, tc := range []struct {
			name  string
			f     DecisionFilter
			want  []string
			total int
		}{
			{"all newest first", DecisionFilter{}, []string{"d3", "d2", "d1"}, 3},
			{"point", DecisionFilter{Point: policy.PointGate}, []string{"d3", "d1"}, 2},
			{"service and result", DecisionFilter{Service: "checkout", Result: "deny"}, []string{"d1"}, 1},
			{"subject", DecisionFilter{Subject: "shed-load"}, []string{"d2"}, 1},
			{"range", DecisionFilter{From: gatesT0.Add(time.Minute), To: gatesT0.Add(2 * time.Minute)}, []string{"d2"}, 1},
			{"page", DecisionFilter{Limit: 2, Offset: 1}, []string{"d2", "d1"}, 3},
			{"past the end", DecisionFilter{Offset: 5}, []string{}, 3},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got, total, err := s.Decisions(ctx, tc.f)
				if err != nil {
					t.Fatal(err)
				}
				ids := []string{}
				for _, d := range got {
					ids = append(ids, d.ID)
					if d.Input != nil {
						t.Errorf("%s: list carries the input", d.ID)
					}
				}
				if !slices.Equal(ids, tc.want) || total != tc.total {
					t.Errorf("got %v total %d, want %v total %d", ids, total, tc.want, tc.total)
				}
			})
		}
		d, err := s.Decision(ctx, "d1")
		if err != nil {
			t.Fatal(err)
		}
		if d.Result != policy.Deny || !d.Time.Equal(gatesT0) || string(d.Input) != string(ds[0].Input) ||
			!slices.Equal(d.Policies, ds[0].Policies) || len(d.Reasons) != 1 || d.Reasons[0] != ds[0].Reasons[0] {
			t.Errorf("got %+v", d)
		}
		if _, err := s.Decision(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("unknown decision: %v", err)
		}
	})
}

func TestGateEvaluations(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		ev := func(id, gate, service, state string, at time.Duration) GateEvaluation {
			return GateEvaluation{ID: id, Gate: gate, Service: service, State: state, ChangeKind: "feature", Version: "1." + id,
				CreatedAt: gatesT0.Add(at), UpdatedAt: gatesT0.Add(at), Data: json.RawMessage(fmt.Sprintf(`{"id":%q,"state":%q}`, id, state))}
		}
		for _, e := range []GateEvaluation{
			ev("e1", "checkout-deploy", "checkout", "running", 0),
			ev("e2", "checkout-deploy", "checkout", "fail", time.Minute),
			ev("e3", "search-deploy", "search", "pass", 2*time.Minute),
		} {
			if err := s.SaveGateEvaluation(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		// The running one finishes: the same ID is replaced.
		done := ev("e1", "checkout-deploy", "checkout", "pass", 0)
		done.UpdatedAt, done.FinishedAt, done.DecisionID = gatesT0.Add(5*time.Minute), gatesT0.Add(5*time.Minute), "d9"
		if err := s.SaveGateEvaluation(ctx, done); err != nil {
			t.Fatal(err)
		}
		got, err := s.GateEvaluation(ctx, "e1")
		if err != nil {
			t.Fatal(err)
		}
		if got.State != "pass" || got.DecisionID != "d9" || !got.FinishedAt.Equal(done.FinishedAt) || !got.CreatedAt.Equal(gatesT0) ||
			string(got.Data) != string(done.Data) {
			t.Errorf("got %+v", got)
		}
		for _, tc := range []struct {
			name  string
			f     GateEvaluationFilter
			want  []string
			total int
		}{
			{"all", GateEvaluationFilter{}, []string{"e3", "e2", "e1"}, 3},
			{"gate", GateEvaluationFilter{Gate: "checkout-deploy"}, []string{"e2", "e1"}, 2},
			{"state", GateEvaluationFilter{State: "pass"}, []string{"e3", "e1"}, 2},
			{"service and state", GateEvaluationFilter{Service: "checkout", State: "fail"}, []string{"e2"}, 1},
			{"range", GateEvaluationFilter{From: gatesT0.Add(time.Minute)}, []string{"e3", "e2"}, 2},
			{"page", GateEvaluationFilter{Limit: 1, Offset: 1}, []string{"e2"}, 3},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got, total, err := s.GateEvaluations(ctx, tc.f)
				if err != nil {
					t.Fatal(err)
				}
				ids := []string{}
				for _, e := range got {
					ids = append(ids, e.ID)
				}
				if !slices.Equal(ids, tc.want) || total != tc.total {
					t.Errorf("got %v total %d, want %v total %d", ids, total, tc.want, tc.total)
				}
			})
		}
		if _, err := s.GateEvaluation(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("unknown evaluation: %v", err)
		}
		if err := s.SaveGateEvaluation(ctx, GateEvaluation{}); err == nil {
			t.Error("an evaluation without ID was saved")
		}
	})
}

// TestFirstSeen: the first time a key is seen is recorded once and never
// moves, whoever asks and in whatever order.
func TestFirstSeen(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		got, err := s.FirstSeenAll(ctx, []string{"a", "b", "a"}, gatesT0)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || !got["a"].Equal(gatesT0) || !got["b"].Equal(gatesT0) {
			t.Fatalf("first call %v", got)
		}
		t1 := gatesT0.Add(40 * 24 * time.Hour)
		got, err = s.FirstSeenAll(ctx, []string{"b", "c"}, t1)
		if err != nil {
			t.Fatal(err)
		}
		if !got["b"].Equal(gatesT0) || !got["c"].Equal(t1) {
			t.Errorf("second call %v", got)
		}
		one, err := s.FirstSeen(ctx, "a", t1)
		if err != nil || !one.Equal(gatesT0) {
			t.Errorf("FirstSeen a: %v %v", one, err)
		}
		if got, err := s.FirstSeenAll(ctx, nil, t1); err != nil || len(got) != 0 {
			t.Errorf("no keys: %v %v", got, err)
		}

		// Concurrent first sightings of the same keys agree on one time.
		var wg sync.WaitGroup
		results := make([]map[string]time.Time, 8)
		errs := make([]error, 8)
		for i := range results {
			wg.Go(func() {
				keys := []string{"x", "y", fmt.Sprintf("own-%d", i)}
				results[i], errs[i] = s.FirstSeenAll(ctx, keys, gatesT0.Add(time.Duration(i)*time.Hour))
			})
		}
		wg.Wait()
		for i := range results {
			if errs[i] != nil {
				t.Fatal(errs[i])
			}
			if !results[i]["x"].Equal(results[0]["x"]) || !results[i]["y"].Equal(results[0]["y"]) {
				t.Errorf("goroutine %d saw x=%v y=%v, goroutine 0 x=%v y=%v", i, results[i]["x"], results[i]["y"], results[0]["x"], results[0]["y"])
			}
			if !results[i][fmt.Sprintf("own-%d", i)].Equal(gatesT0.Add(time.Duration(i) * time.Hour)) {
				t.Errorf("goroutine %d: own key %v", i, results[i])
			}
		}
	})
}

// TestFirstSeenSurvivesRestart: an age that restarted with the process
// would never fail a gate.
func TestFirstSeenSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "qsp.db")
	s, err := Open(ctx, Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.FirstSeenAll(ctx, []string{"checkout|CVE-2024-0727|libcrypto3|3.1.4-r2"}, gatesT0); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(ctx, Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.FirstSeen(ctx, "checkout|CVE-2024-0727|libcrypto3|3.1.4-r2", gatesT0.Add(90*24*time.Hour))
	if err != nil || !got.Equal(gatesT0) {
		t.Fatalf("after reopening: %v %v, want %v", got, err, gatesT0)
	}
}

func TestDeploys(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		ev := Deploy{At: gatesT0, Service: "checkout", Version: "1.4.2", Source: DeploySourceEvents, Description: "from CD",
			Labels: map[string]string{"env": "prod"}}
		// The events API may deliver the same marker twice (a client
		// retry): one marker.
		for range 2 {
			if err := s.RecordDeploy(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
		gate := Deploy{Key: "gate|e1", At: gatesT0.Add(time.Minute), Service: "checkout", Version: "1.4.3", Source: DeploySourceGate,
			Gate: "checkout-deploy", EvaluationID: "e1", Verdict: "running"}
		if err := s.RecordDeploy(ctx, gate); err != nil {
			t.Fatal(err)
		}
		gate.Verdict = "fail"
		if err := s.RecordDeploy(ctx, gate); err != nil {
			t.Fatal(err)
		}
		other := Deploy{At: gatesT0.Add(2 * time.Minute), Service: "search", Version: "7", Source: DeploySourceEvents}
		if err := s.RecordDeploy(ctx, other); err != nil {
			t.Fatal(err)
		}
		all, total, err := s.Deploys(ctx, DeployFilter{})
		if err != nil {
			t.Fatal(err)
		}
		if total != 3 || len(all) != 3 || all[0].Service != "search" || all[2].Version != "1.4.2" {
			t.Fatalf("all %+v total %d", all, total)
		}
		if got := all[1]; got.Verdict != "fail" || got.Gate != "checkout-deploy" || got.EvaluationID != "e1" || !got.At.Equal(gate.At) {
			t.Errorf("gate marker %+v", got)
		}
		if got := all[2]; !maps.Equal(got.Labels, ev.Labels) || got.Description != "from CD" || got.Source != DeploySourceEvents {
			t.Errorf("events marker %+v", got)
		}
		if got := all[0]; got.Labels == nil {
			t.Error("labels are null, want {}")
		}
		got, total, err := s.Deploys(ctx, DeployFilter{Service: "checkout", From: gatesT0.Add(30 * time.Second), To: gatesT0.Add(time.Hour)})
		if err != nil || total != 1 || got[0].Version != "1.4.3" {
			t.Errorf("filtered %+v %d %v", got, total, err)
		}
		got, total, err = s.Deploys(ctx, DeployFilter{Limit: 1, Offset: 2})
		if err != nil || total != 3 || len(got) != 1 || got[0].Version != "1.4.2" {
			t.Errorf("page %+v %d %v", got, total, err)
		}
		for _, bad := range []Deploy{{At: gatesT0}, {Service: "x"}} {
			if err := s.RecordDeploy(ctx, bad); err == nil {
				t.Errorf("recorded %+v", bad)
			}
		}
	})
}
