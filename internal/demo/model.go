package demo

import (
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
)

// latencyBuckets are the histogram bucket boundaries, in seconds. They
// include every latency threshold of the example SLOs and gates (200ms,
// 300ms, 500ms, 800ms), so threshold SLOs count exactly.
var latencyBuckets = []float64{0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1, 2.5, 5}

// Sizes of the simulated infrastructure.
const (
	workerMemoryLimit   = 1 << 30   // bytes, the auth worker's limit
	workerMemoryBase    = 480 << 20 // bytes after a start
	searchReplicaRPS    = 25.0      // requests/s one search replica serves at 100% CPU
	searchTargetCPU     = 0.5       // the autoscaler's target utilisation
	searchMinReplicas   = 3
	searchMaxReplicas   = 60 // the autoscaler's ceiling when it is configured right
	dollarsPerReplicaS  = 0.00012
	checkoutReplicas    = 8
	authReplicas        = 6
	authLoginShare      = 0.35 // of auth requests that are sign-ins
	searchCachedShare   = 0.7  // of search requests answered from the cache
	baseLoginFailure    = 0.015
	baseWAFBlock        = 0.003
	baseStaleRatio      = 0.0002
	probeFailure        = 0.0002
	botsFailure         = 0.98 // of bot sign-ins that fail (stolen credentials rarely work)
	botsWAFBlocked      = 0.5  // of bot requests the WAF's rules recognise
	botsTrickle         = 0.01 // of the bots left once the sign-in throttle is on
	throttleShedFactor  = 0.9  // search sheds load above this share of capacity
	canaryBaselineShare = 0.1  // of checkout traffic on the baseline track during a canary
)

// handlerModel is one endpoint: its share of the service's traffic and
// its latency distribution (log-normal).
type handlerModel struct {
	name   string
	share  float64
	median float64 // seconds
	sigma  float64
	err    float64 // 5xx ratio when healthy
}

// serviceModel is one simulated service. Rates follow a daily curve (low
// at 04:00 UTC, high at 16:00) and a weekly one, with slow noise.
type serviceModel struct {
	name     string
	peakRPS  float64
	weekend  float64 // traffic factor on Saturdays and Sundays
	handlers []handlerModel
	tenants  []tenantModel // search only
}

type tenantModel struct {
	name  string
	share float64
}

// models are the three services of the example shop; examples/ declares
// their SLOs.
var models = []serviceModel{
	{name: "checkout", peakRPS: 40, weekend: 1.15, handlers: []handlerModel{
		{name: "/cart", share: 0.5, median: 0.05, sigma: 0.45, err: 0.0002},
		{name: "/checkout", share: 0.3, median: 0.08, sigma: 0.45, err: 0.0003},
		{name: "/payment", share: 0.2, median: 0.1, sigma: 0.45, err: 0.0005},
	}},
	{name: "search", peakRPS: 150, weekend: 0.9, handlers: []handlerModel{
		{name: "/search", share: 1, median: 0.045, sigma: 0.6, err: 0.0004},
	}, tenants: []tenantModel{{"acme", 0.4}, {"globex", 0.25}, {"initech", 0.15}, {"umbrella", 0.12}, {"hooli", 0.08}}},
	{name: "auth", peakRPS: 60, weekend: 0.7, handlers: []handlerModel{
		{name: "/login", share: authLoginShare, median: 0.09, sigma: 0.5, err: 0.0001},
		{name: "/token", share: 1 - authLoginShare, median: 0.03, sigma: 0.5, err: 0.0001},
	}},
}

// Effects are the faults in force. The zero value is a healthy system.
// Scenarios set them; remediation (the fake rollout API) clears them.
type Effects struct {
	// Canary is a checkout rollout in progress, nil when none.
	Canary *Canary
	// CheckoutErrors is an extra 5xx ratio of every checkout request.
	CheckoutErrors float64
	// SearchSlow is the share of search requests that take 0.5s.
	SearchSlow float64
	// AuthThrottled is the share of auth requests answered 429.
	AuthThrottled float64
	// Bots is bot sign-in traffic as a multiple of the real sign-ins.
	Bots float64
	// BotsThrottled is set once the sign-in rate limit is on.
	BotsThrottled bool
	// Leak is the auth workers' memory growth in bytes per minute.
	Leak float64
	// SearchSurge multiplies search demand; SearchCap, when positive,
	// caps the autoscaler's replicas (a misconfigured ceiling).
	SearchSurge float64
	SearchCap   int
	// Stale is the share of cached search answers that are stale.
	Stale float64
	// CollectorDown stops every sample from reaching QSP.
	CollectorDown bool
}

// Canary is a checkout rollout: Weight of the traffic runs the new
// version (track="canary"), canaryBaselineShare the old one on fresh pods
// (track="baseline"), the rest the stable pods.
type Canary struct {
	Version string
	Weight  float64
	// Slow multiplies the new version's latency.
	Slow float64
}

// series is one simulated time series and its current value.
type series struct {
	labels labels.Labels
	value  float64
	// step is the last step that updated the series; only series updated
	// in a step are emitted (canary pods go away with their series).
	step int64
}

// Simulator produces the telemetry of the three services, one step at a
// time. History and the live stream use the same simulator, so counters
// continue across the two. Methods are safe for concurrent use.
type Simulator struct {
	mu      sync.Mutex
	rng     *rand.Rand
	effects Effects
	series  map[string]*series
	order   []*series // in creation order, so output is stable
	noise   []float64 // per service, an AR(1) log-factor

	memory      float64 // auth worker working set, bytes
	restarts    float64
	replicas    float64 // search replicas
	vulnerables map[string]vulnerability
	step        int64
	key         []byte // scratch for series keys
}

// vulnerability is the oldest open critical or high finding of a
// service: opened at Since, fixed every Every by a patch release.
type vulnerability struct {
	offset time.Duration
	every  time.Duration
	open   time.Duration
}

// NewSimulator returns a simulator seeded with seed.
func NewSimulator(seed uint64) *Simulator {
	return &Simulator{
		rng:      rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		series:   map[string]*series{},
		noise:    make([]float64, len(models)),
		memory:   workerMemoryBase,
		replicas: 10,
		vulnerables: map[string]vulnerability{
			// A high finding opens every 20 days and is patched after 12
			// (checkout) or 18 (auth): old, but within the 30-day SLO.
			"checkout": {offset: 3 * day, every: 20 * day, open: 12 * day},
			"auth":     {offset: 11 * day, every: 20 * day, open: 18 * day},
		},
	}
}

const day = 24 * time.Hour

// Effects returns the faults in force.
func (s *Simulator) Effects() Effects {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.effects
}

// Update changes the faults in force.
func (s *Simulator) Update(f func(e *Effects)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.effects)
}

// RestartWorkers restarts the auth workers: their memory starts afresh.
func (s *Simulator) RestartWorkers() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.memory = workerMemoryBase
	s.restarts++
}

// Sample is one sample of one series.
type Sample struct {
	Labels labels.Labels
	Value  float64
}

// Step advances the simulation by dt to time t and calls emit with the
// value at t of every series the step updated, in a stable order. id
// identifies the series for as long as the simulator lives.
func (s *Simulator) Step(t time.Time, dt time.Duration, emit func(id int, ls labels.Labels, v float64)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.step++
	sec := dt.Seconds()
	for i, m := range models {
		// Slow noise: about 5% deviation, correlated over tens of minutes.
		a := math.Exp(-sec / 1200)
		s.noise[i] = a*s.noise[i] + math.Sqrt(1-a*a)*0.05*s.rng.NormFloat64()
		rate := m.peakRPS * shape(t, m.weekend) * math.Exp(s.noise[i])
		switch m.name {
		case "checkout":
			s.stepCheckout(m, rate, sec)
		case "search":
			s.stepSearch(m, rate, sec)
		case "auth":
			s.stepAuth(m, rate, sec)
		}
	}
	s.stepVulnerabilities(t)
	for i, se := range s.order {
		if se.step == s.step {
			emit(i, se.labels, se.value)
		}
	}
}

// shape is the traffic factor at t: a daily curve between 0.3 and 1
// (lowest at 04:00 UTC) times the weekend factor.
func shape(t time.Time, weekend float64) float64 {
	h := float64(t.UTC().Hour()) + float64(t.UTC().Minute())/60
	d := 0.3 + 0.7*(0.5-0.5*math.Cos(2*math.Pi*(h-4)/24))
	if wd := t.UTC().Weekday(); wd == time.Saturday || wd == time.Sunday {
		d *= weekend
	}
	return d
}

func (s *Simulator) stepCheckout(m serviceModel, rate, sec float64) {
	e := s.effects
	type track struct {
		name  string
		share float64
		slow  float64
	}
	tracks := []track{{name: "stable", share: 1}}
	if c := e.Canary; c != nil {
		tracks = []track{
			{name: "stable", share: 1 - c.Weight - canaryBaselineShare},
			{name: "baseline", share: canaryBaselineShare},
			{name: "canary", share: c.Weight, slow: c.Slow},
		}
	}
	for _, tr := range tracks {
		for _, h := range m.handlers {
			n := s.poisson(rate * h.share * tr.share * sec)
			median := h.median
			if tr.slow > 0 {
				median *= tr.slow
			}
			s.requests(m.name, h.name, "", tr.name, n, h.err+e.CheckoutErrors, 0, 0)
			s.histogram(m.name, h.name, tr.name, n, median, h.sigma, 0)
		}
	}
	// The order queue follows the traffic; the synthetic probe checks
	// the order path every step.
	s.gauge("queue_depth", 6*rate*(1+0.1*s.rng.NormFloat64())+20, "service", m.name, "queue", "orders")
	probe := 1.0
	if s.rng.Float64() < probeFailure {
		probe = 0
	}
	s.gauge("probe_success", probe, "service", m.name, "probe", "place-order")
	s.gauge("service_cost_dollars_per_second", checkoutReplicas*dollarsPerReplicaS, "service", m.name)
}

func (s *Simulator) stepSearch(m serviceModel, rate, sec float64) {
	e := s.effects
	demand := rate * max(e.SearchSurge, 1)
	// The autoscaler aims at its target CPU once a minute of simulated
	// time, up by at most 4 replicas and down by 1 per minute.
	ceiling := float64(searchMaxReplicas)
	if e.SearchCap > 0 {
		ceiling = float64(e.SearchCap)
	}
	want := math.Ceil(demand / (searchReplicaRPS * searchTargetCPU))
	want = min(max(want, searchMinReplicas), ceiling)
	stepMin := sec / 60
	switch {
	case want > s.replicas:
		s.replicas = min(want, s.replicas+4*math.Max(stepMin, 0.25))
	case want < s.replicas:
		s.replicas = max(want, s.replicas-math.Max(stepMin, 0.25))
	}
	s.replicas = min(s.replicas, ceiling)
	capacity := math.Floor(s.replicas) * searchReplicaRPS
	shed := 0.0
	if demand > capacity*throttleShedFactor {
		shed = 1 - capacity*throttleShedFactor/demand
	}
	cpu := min(demand*(1-shed)/capacity, 1)
	s.gauge("container_cpu_utilization_ratio", clamp(cpu+0.02*s.rng.NormFloat64(), 0.01, 1), "service", m.name, "container", "search")
	s.gauge("service_cost_dollars_per_second", math.Floor(s.replicas)*dollarsPerReplicaS, "service", m.name)
	h := m.handlers[0]
	var served float64
	for _, tn := range m.tenants {
		n := s.poisson(demand * tn.share * sec)
		s.requests(m.name, h.name, tn.name, "", n, h.err, shed, 0)
		served += n
	}
	s.histogram(m.name, h.name, "", served, h.median, h.sigma, e.SearchSlow)
	cached := s.poisson(served * searchCachedShare)
	stale := s.binomial(cached, baseStaleRatio+e.Stale)
	s.counter("search_cache_responses_total", stale, "service", m.name, "freshness", "stale")
	s.counter("search_cache_responses_total", cached-stale, "service", m.name, "freshness", "fresh")
}

func (s *Simulator) stepAuth(m serviceModel, rate, sec float64) {
	e := s.effects
	var logins, failed, all float64
	for _, h := range m.handlers {
		n := s.poisson(rate * h.share * sec)
		unauthorized := 0.0
		if h.name == "/login" {
			// Real sign-ins mostly succeed; failures are typos (401).
			logins = n
			failed = s.binomial(n, baseLoginFailure)
			unauthorized = failed
		}
		all += n
		s.requests(m.name, h.name, "", "", n, h.err, e.AuthThrottled, unauthorized)
		s.histogram(m.name, h.name, "", n, h.median, h.sigma, 0)
	}
	// Bots: credential stuffing from many addresses. The WAF recognises
	// some (403 at the edge, never reaching the service); the rest reach
	// the sign-in and almost all fail.
	bots := s.poisson(rate * authLoginShare * e.Bots * sec)
	if e.BotsThrottled {
		bots = s.binomial(bots, botsTrickle)
	}
	blocked := s.binomial(bots, botsWAFBlocked)
	reached := bots - blocked
	botFailed := s.binomial(reached, botsFailure)
	s.requests(m.name, "/login", "", "", reached, 0, 0, botFailed)
	s.histogram(m.name, "/login", "", reached, 0.07, 0.4, 0)
	s.counter("auth_login_attempts_total", failed+botFailed, "service", m.name, "result", "failure")
	s.counter("auth_login_attempts_total", logins-failed+reached-botFailed, "service", m.name, "result", "success")
	wafBlocked := s.binomial(all, baseWAFBlock) + blocked
	s.counter("waf_requests_total", wafBlocked, "service", m.name, "action", "block")
	s.counter("waf_requests_total", all+bots-wafBlocked, "service", m.name, "action", "allow")

	// Background workers: a saw-tooth around the base (garbage
	// collection), plus the leak; at the limit the kernel kills them.
	s.memory += e.Leak*sec/60 + 8<<20*s.rng.NormFloat64()*math.Sqrt(sec/60)
	s.memory = max(s.memory, workerMemoryBase-40<<20)
	if e.Leak == 0 && s.memory > workerMemoryBase+80<<20 {
		s.memory -= 60 << 20 * (sec / 60) // a leak fixed: back to normal
	}
	if s.memory >= workerMemoryLimit {
		s.memory = workerMemoryBase
		s.restarts++
	}
	s.gauge("container_memory_working_set_bytes", math.Round(s.memory), "service", m.name, "container", "worker", "pod", "auth-worker-0")
	s.gauge("container_spec_memory_limit_bytes", workerMemoryLimit, "service", m.name, "container", "worker", "pod", "auth-worker-0")
	s.gauge("kube_pod_container_status_restarts_total", s.restarts, "service", m.name, "container", "worker", "pod", "auth-worker-0")
	s.gauge("service_cost_dollars_per_second", authReplicas*dollarsPerReplicaS, "service", m.name)
}

// stepVulnerabilities sets the age of the oldest open high finding.
func (s *Simulator) stepVulnerabilities(t time.Time) {
	for _, svc := range []string{"checkout", "auth"} {
		v := s.vulnerables[svc]
		since := time.Duration(t.UnixNano()) - v.offset
		age := since % v.every
		high := 0.0
		if age < v.open {
			high = age.Seconds()
		}
		s.gauge("vulnerability_oldest_age_seconds", math.Round(high), "service", svc, "severity", "high")
		s.gauge("vulnerability_oldest_age_seconds", 0, "service", svc, "severity", "critical")
	}
}

// requests counts n requests of one handler: a share throttled answered
// 429, a share err of the rest 5xx, unauthorized of them 401, the rest
// 200.
func (s *Simulator) requests(svc, handler, tenant, track string, n, err, throttled, unauthorized float64) {
	ls := []string{"service", svc, "handler", handler}
	if tenant != "" {
		ls = append(ls, "tenant", tenant)
	}
	if track != "" {
		ls = append(ls, "track", track)
	}
	code := func(c string) []string { return append(append([]string(nil), ls...), "code", c) }
	n429 := s.binomial(n, throttled)
	n5 := s.binomial(n-n429, err)
	s.counter("http_requests_total", n429, code("429")...)
	s.counter("http_requests_total", n5, code("500")...)
	n401 := 0.0
	if svc == "auth" && handler == "/login" {
		n401 = min(unauthorized, n-n429-n5)
		s.counter("http_requests_total", n401, code("401")...)
	}
	s.counter("http_requests_total", n-n429-n5-n401, code("200")...)
}

// histogram observes n requests with log-normal latencies (median,
// sigma), a share slow of them taking about 0.5s instead.
func (s *Simulator) histogram(svc, handler, track string, n, median, sigma, slow float64) {
	ls := []string{"service", svc, "handler", handler}
	if track != "" {
		ls = append(ls, "track", track)
	}
	cdf := func(x float64) float64 {
		fast := 0.5 * math.Erfc(-(math.Log(x)-math.Log(median))/(sigma*math.Sqrt2))
		if slow == 0 {
			return fast
		}
		slowP := 0.5 * math.Erfc(-(math.Log(x)-math.Log(0.5))/(0.3*math.Sqrt2))
		return (1-slow)*fast + slow*slowP
	}
	left, prevP := n, 0.0
	var cum, sum float64
	lo := 0.0
	for _, le := range latencyBuckets {
		p := cdf(le)
		// Sequential binomials draw a multinomial split of n.
		k := 0.0
		if rest := 1 - prevP; rest > 0 && left > 0 {
			k = s.binomial(left, (p-prevP)/rest)
		}
		left -= k
		cum += k
		sum += k * (lo + le) / 2
		prevP, lo = p, le
		// Buckets are cumulative: le="x" counts every request up to x.
		b := append(append([]string(nil), ls...), "le", strconv.FormatFloat(le, 'f', -1, 64))
		s.counter("http_request_duration_seconds_bucket", cum, b...)
	}
	sum += left * latencyBuckets[len(latencyBuckets)-1] * 1.5
	s.counter("http_request_duration_seconds_bucket", n, append(append([]string(nil), ls...), "le", "+Inf")...)
	s.counter("http_request_duration_seconds_count", n, ls...)
	s.counter("http_request_duration_seconds_sum", sum, ls...)
}

// get returns the series of name and label pairs, creating it.
func (s *Simulator) get(name string, kv ...string) *series {
	key := s.key[:0]
	key = append(key, name...)
	for _, p := range kv {
		key = append(key, 0xff)
		key = append(key, p...)
	}
	s.key = key
	se := s.series[string(key)] // no allocation: the compiler sees the lookup
	if se == nil {
		se = &series{labels: labels.FromStrings(append([]string{model.MetricNameLabel, name}, kv...)...)}
		s.series[string(key)] = se
		s.order = append(s.order, se)
	}
	return se
}

// counter adds v to a counter.
func (s *Simulator) counter(name string, v float64, kv ...string) {
	se := s.get(name, kv...)
	if se.step < s.step-1 {
		// A series that went away (a canary's pods) and came back is a
		// new process: its counter starts from zero.
		se.value = 0
	}
	se.value += v
	se.step = s.step
}

// gauge sets a gauge.
func (s *Simulator) gauge(name string, v float64, kv ...string) {
	se := s.get(name, kv...)
	se.value = v
	se.step = s.step
}

// poisson draws a Poisson count with mean lambda (normal approximation
// above 50).
func (s *Simulator) poisson(lambda float64) float64 {
	switch {
	case lambda <= 0:
		return 0
	case lambda > 50:
		return max(0, math.Round(lambda+math.Sqrt(lambda)*s.rng.NormFloat64()))
	}
	l, k, p := math.Exp(-lambda), 0.0, 1.0
	for {
		p *= s.rng.Float64()
		if p <= l {
			return k
		}
		k++
	}
}

// binomial draws how many of n trials succeed with probability p.
func (s *Simulator) binomial(n, p float64) float64 {
	switch {
	case n <= 0 || p <= 0:
		return 0
	case p >= 1:
		return n
	case n*p > 30 && n*(1-p) > 30:
		return clamp(math.Round(n*p+math.Sqrt(n*p*(1-p))*s.rng.NormFloat64()), 0, n)
	case n*p <= 30 && n > 100:
		return min(s.poisson(n*p), n)
	}
	k := 0.0
	for range int(n) {
		if s.rng.Float64() < p {
			k++
		}
	}
	return k
}

func clamp(v, lo, hi float64) float64 { return min(max(v, lo), hi) }
