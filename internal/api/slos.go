package api

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"sync"

	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/spec"
)

// listCache holds the JSON of every status of a snapshot. Snapshots are
// immutable and change once a cycle, while the full list is read by every
// dashboard and `qsp status`: encoding each status once per snapshot
// instead of once per request keeps a list of 10,000 SLOs a copy of
// bytes. A new snapshot is encoded in the background while requests are
// still answered from the previous one, so no request pays for the
// encoding but the very first: the list lags the newest cycle by the
// encoding's time (milliseconds to a fraction of a second for 10,000
// SLOs), on top of the cycle interval every snapshot lags by anyway.
type listCache struct {
	mu       sync.Mutex
	cur      *encodedSnapshot // the newest complete encoding
	building *engine.Snapshot // the snapshot being encoded, if any
}

type encodedSnapshot struct {
	snap  *engine.Snapshot
	ready chan struct{}
	all   []int    // 0..n-1, the unfiltered selection
	items [][]byte // the JSON of snap.Statuses[i], without a newline
	// whole is `{"items":[` and every item: the start of the answer to
	// the common request for the whole list, written in one piece.
	whole []byte
}

// get returns the newest encoding: of snap when it is ready, else of the
// previous snapshot while snap is encoded in the background. Only the
// first request ever waits.
func (c *listCache) get(snap *engine.Snapshot) *encodedSnapshot {
	c.mu.Lock()
	cur := c.cur
	switch {
	case cur == nil:
		cur = &encodedSnapshot{snap: snap, ready: make(chan struct{})}
		c.cur, c.building = cur, snap
		c.mu.Unlock()
		cur.encode()
		close(cur.ready)
		c.mu.Lock()
		c.building = nil
		c.mu.Unlock()
		return cur
	case cur.snap != snap && c.building != snap:
		c.building = snap
		go c.build(snap)
	}
	c.mu.Unlock()
	<-cur.ready
	return cur
}

func (c *listCache) build(snap *engine.Snapshot) {
	e := &encodedSnapshot{snap: snap, ready: make(chan struct{})}
	e.encode()
	close(e.ready)
	c.mu.Lock()
	defer c.mu.Unlock()
	// A newer snapshot may have been encoded meanwhile: keep the newest.
	if c.cur == nil || !c.cur.snap.At.After(snap.At) {
		c.cur = e
	}
	if c.building == snap {
		c.building = nil
	}
}

func (e *encodedSnapshot) encode() {
	snap := e.snap
	n := len(snap.Statuses)
	e.all = make([]int, n)
	e.items = make([][]byte, n)
	for i := range e.all {
		e.all[i] = i
	}
	// Parallel: the first request after a cycle pays for the encoding.
	parts := min(runtime.GOMAXPROCS(0), max(1, n/256))
	var wg sync.WaitGroup
	for p := range parts {
		wg.Go(func() {
			for i := p; i < n; i += parts {
				b, err := json.Marshal(snap.Statuses[i])
				if err != nil {
					// A status always encodes; keep the list valid JSON if
					// it ever does not.
					b, _ = json.Marshal(map[string]string{"key": snap.Statuses[i].Key, "error": err.Error()})
				}
				e.items[i] = b
			}
		})
	}
	wg.Wait()
	size := 12
	for _, b := range e.items {
		size += len(b) + 1
	}
	e.whole = make([]byte, 0, size)
	e.whole = append(e.whole, `{"items":[`...)
	for i, b := range e.items {
		if i > 0 {
			e.whole = append(e.whole, ',')
		}
		start := len(e.whole)
		e.whole = append(e.whole, b...)
		// Items point into whole: the snapshot's JSON is kept once.
		e.items[i] = e.whole[start:len(e.whole):len(e.whole)]
	}
}

// writePage writes a page of statuses exactly as json.Encoder writes a
// page[*engine.Status].
func (e *encodedSnapshot) writePage(w io.Writer, p page[int]) {
	bw := bufio.NewWriterSize(w, 64<<10)
	if len(p.Items) == len(e.all) && p.Offset == 0 && len(e.all) > 0 && &p.Items[0] == &e.all[0] {
		// The whole list: one write of the prepared bytes.
		bw.Write(e.whole)
	} else {
		bw.WriteString(`{"items":[`)
		for i, idx := range p.Items {
			if i > 0 {
				bw.WriteByte(',')
			}
			bw.Write(e.items[idx])
		}
	}
	bw.WriteString(`],"total":`)
	bw.WriteString(strconv.Itoa(p.Total))
	bw.WriteString(`,"offset":`)
	bw.WriteString(strconv.Itoa(p.Offset))
	bw.WriteString(`,"limit":`)
	bw.WriteString(strconv.Itoa(p.Limit))
	if p.NextOffset != 0 {
		bw.WriteString(`,"nextOffset":`)
		bw.WriteString(strconv.Itoa(p.NextOffset))
	}
	bw.WriteString("}\n")
	_ = bw.Flush()
}

// stateRank orders SLO states from worst (0) to best, as the engine
// lists them: missing telemetry is never taken for health.
func stateRank(s engine.State) int {
	switch s {
	case engine.StateNoData:
		return 0
	case engine.StateFiring:
		return 1
	case engine.StatePending:
		return 2
	case engine.StateLowTraffic:
		return 3
	case engine.StateOK:
		return 4
	case engine.StateUnknown:
		return 5
	}
	return 6
}

// WorseState returns the worse of two states; "" is no state at all.
func WorseState(a, b engine.State) engine.State {
	if a == "" {
		return b
	}
	if b == "" {
		return a
	}
	if stateRank(b) < stateRank(a) {
		return b
	}
	return a
}

// StateRank orders states from worst (0) to best, for sorting.
func StateRank(s engine.State) int { return stateRank(s) }

// ServiceSummary is a service at a glance: its spec, the worst state of
// its SLOs and, per category, the worst state and the least budget left.
type ServiceSummary struct {
	Name        string            `json:"name"`
	DisplayName string            `json:"displayName,omitempty"`
	Description string            `json:"description,omitempty"`
	Owner       string            `json:"owner,omitempty"`
	Tier        int               `json:"tier,omitempty"`
	RunbookURL  string            `json:"runbookURL,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Journeys    []JourneyView     `json:"journeys"`
	// Declared is false for a service that only SLO statuses name (its
	// Service object is gone from the specs).
	Declared bool `json:"declared"`
	// HasCost says the service declares a cost query.
	HasCost bool `json:"hasCost"`
	// State is the worst state of its SLOs; empty without SLOs.
	State engine.State `json:"state,omitempty"`
	// SLOs counts SLO groups.
	SLOs       int               `json:"slos"`
	Categories []CategorySummary `json:"categories"`
}

// JourneyView is a user journey of a service.
type JourneyView struct {
	Name        string   `json:"name"`
	Description string   `json:"description,omitempty"`
	SLOs        []string `json:"slos"`
}

// CategorySummary is one category of a service's SLOs.
type CategorySummary struct {
	Category spec.Category `json:"category"`
	// State is the worst state; empty when the service has no SLO of the
	// category.
	State   engine.State `json:"state,omitempty"`
	SLOs    int          `json:"slos"`
	Firing  int          `json:"firing"`
	Pending int          `json:"pending"`
	NoData  int          `json:"noData"`
	// BudgetRemaining is the least remaining budget share of its SLO
	// groups that have events; nil when none has.
	BudgetRemaining *float64 `json:"budgetRemaining"`
	// Tightest is the key of the SLO group with the least budget left.
	Tightest string `json:"tightest,omitempty"`
}

// Summaries returns every declared service (in declaration order) and
// then every service only statuses name, each summarised from snap.
func Summaries(set *spec.Set, snap *engine.Snapshot) []ServiceSummary {
	declared := make(map[string]bool, len(set.Services))
	for _, s := range set.Services {
		declared[s.Name()] = true
	}
	byService := make(map[string][]*engine.Status, len(set.Services))
	var undeclared []string
	for _, st := range snap.Statuses {
		if _, ok := byService[st.Service]; !ok && !declared[st.Service] {
			undeclared = append(undeclared, st.Service)
		}
		byService[st.Service] = append(byService[st.Service], st)
	}
	out := make([]ServiceSummary, 0, len(set.Services)+len(undeclared))
	for _, s := range set.Services {
		out = append(out, summarize(s, s.Name(), byService[s.Name()]))
	}
	slices.Sort(undeclared)
	for _, name := range undeclared {
		out = append(out, summarize(nil, name, byService[name]))
	}
	return out
}

// Summary summarises one service, or returns false for a service neither
// the specs nor the statuses know.
func Summary(set *spec.Set, snap *engine.Snapshot, name string) (ServiceSummary, []*engine.Status, bool) {
	var sts []*engine.Status
	for _, st := range snap.Statuses {
		if st.Service == name {
			sts = append(sts, st)
		}
	}
	s := set.Service(name)
	if s == nil && len(sts) == 0 {
		return ServiceSummary{}, nil, false
	}
	return summarize(s, name, sts), sts, true
}

func summarize(s *spec.Service, name string, sts []*engine.Status) ServiceSummary {
	sum := ServiceSummary{Name: name, Journeys: []JourneyView{}, SLOs: len(sts)}
	if s != nil {
		sum.Declared = true
		sum.DisplayName, sum.Description, sum.Owner, sum.Tier = s.Metadata.DisplayName, s.Spec.Description, s.Spec.Owner, s.Spec.Tier
		sum.RunbookURL, sum.Labels, sum.HasCost = s.Spec.RunbookURL, s.Spec.Labels, s.Spec.Cost != nil
		for _, j := range s.Spec.Journeys {
			sum.Journeys = append(sum.Journeys, JourneyView{Name: j.Name, Description: j.Description, SLOs: emptyIfNil(j.SLOs)})
		}
	}
	sum.Categories = make([]CategorySummary, len(spec.Categories))
	for i, c := range spec.Categories {
		sum.Categories[i].Category = c
	}
	for _, st := range sts {
		sum.State = WorseState(sum.State, st.State)
		i := slices.Index(spec.Categories, st.Category)
		if i < 0 {
			continue
		}
		c := &sum.Categories[i]
		c.SLOs++
		c.State = WorseState(c.State, st.State)
		switch st.State {
		case engine.StateFiring:
			c.Firing++
		case engine.StatePending:
			c.Pending++
		case engine.StateNoData:
			c.NoData++
		}
		if st.Budget.Total > 0 && (c.BudgetRemaining == nil || st.Budget.RemainingRatio < *c.BudgetRemaining) {
			v := st.Budget.RemainingRatio
			c.BudgetRemaining, c.Tightest = &v, st.Key
		}
	}
	return sum
}

func (a *API) listServices(r *http.Request) (any, error) {
	q := r.URL.Query()
	state := engine.State(q.Get("state"))
	if state != "" && !slices.Contains(states, state) {
		return nil, badRequest(fmt.Sprintf("state %q: want one of ok, pending, firing, no_data, low_traffic, unknown", state))
	}
	tier := 0
	if v := q.Get("tier"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 4 {
			return nil, badRequest(fmt.Sprintf("tier %q: want 1 to 4", v))
		}
		tier = n
	}
	owner := q.Get("owner")
	all := Summaries(a.opts.Specs(), a.opts.Engine.Snapshot())
	out := all[:0:0]
	for _, s := range all {
		if (state != "" && s.State != state) || (tier != 0 && s.Tier != tier) || (owner != "" && s.Owner != owner) {
			continue
		}
		out = append(out, s)
	}
	return paginate(out, r)
}

// serviceDetail is a service with the status of each of its SLO groups.
type serviceDetail struct {
	Service ServiceSummary   `json:"service"`
	SLOs    []*engine.Status `json:"slos"`
}

func (a *API) getService(r *http.Request) (any, error) {
	name := r.PathValue("name")
	sum, sts, ok := Summary(a.opts.Specs(), a.opts.Engine.Snapshot(), name)
	if !ok {
		return nil, notFound(fmt.Sprintf("service %q not found", name))
	}
	return serviceDetail{Service: sum, SLOs: emptyIfNil(sts)}, nil
}
