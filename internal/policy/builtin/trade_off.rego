# Trade-off policy (gates and playbooks). Makes the priority between
# quality, security and performance explicit and logged. A change or
# action is for one category (a security mitigation, a performance tuning)
# and may cost others (latency, errors, disabled security controls):
#
#   - a cost to a category ranked above the change's own is denied;
#   - any cost is denied while a page of a category ranked above the
#     change's own is firing for the service (adding latency to a service
#     whose availability is paging makes the page worse);
#   - a cost to a category ranked below is allowed, with a warning that
#     its budget will burn.
#
# The order is data.qsp.config.priorities, quality > security >
# performance unless configured.
package qsp.builtin.trade_off

import data.qsp.builtin.format

default priorities := ["quality", "security", "performance"]

priorities := data.qsp.config.priorities

rank := {c: i | some i, c in priorities}

order := concat(" > ", priorities)

# category is what the change or action is for.
category := input.change.category if input.point == "gate"

category := input.trigger.category if input.point == "playbook"

subject := sprintf("%s %s", [category, format.change]) if input.point == "gate"

subject := sprintf("%s playbook action %s (%s)", [category, input.action.name, input.action.kind]) if {
	input.point == "playbook"
}

impact := object.get(input, ["change", "expected_impact"], {}) if input.point == "gate"

impact := object.get(input, ["action", "expected_impact"], {}) if input.point == "playbook"

# costs maps a category to what the change costs it.
costs["performance"] := sprintf("raises latency by %s", [format.pct(impact.latency)]) if raises_latency

# Throttling queues or rejects requests: it costs latency by nature.
costs["performance"] := "throttles traffic, which raises latency" if {
	input.point == "playbook"
	input.action.kind == "throttle"
	not raises_latency
}

# raises_latency is a helper because `not impact.latency > 0` would not
# hold when latency is absent.
raises_latency if impact.latency > 0

costs["quality"] := sprintf("raises the error rate by %s", [format.pct(impact.error_rate)]) if impact.error_rate > 0

costs["security"] := sprintf("disables security %s %s", [format.plural(count(controls), "control"), concat(", ", controls)]) if {
	controls := object.get(impact, "disables_security_controls", [])
	count(controls) > 0
}

cost_text := concat(" and ", [what | some what in costs])

# pages are the page alerts firing for the service, from the alert list
# and from the SLO states.
pages contains {"slo": a.slo, "category": a.category} if {
	some a in input.alerts
	a.service == input.service.name
	a.severity == "page"
	a.state == "firing"
}

pages contains {"slo": s.name, "category": s.category} if {
	some s in input.slos
	s.state == "firing"
	s.firing_severity == "page"
}

deny contains msg if {
	some c, what in costs
	rank[c] < rank[category]
	msg := sprintf("%s %s: %s outranks %s (priorities: %s)", [subject, what, c, category, order])
}

deny contains msg if {
	count(costs) > 0
	some p in pages
	rank[p.category] < rank[category]
	msg := sprintf("%s %s while %s page %s is firing for %s: %s outranks %s (priorities: %s)", [
		subject, cost_text, p.category, p.slo, input.service.name, p.category, category, order,
	])
}

warn contains msg if {
	count(deny) == 0
	some c, what in costs
	rank[c] > rank[category]
	msg := sprintf("%s allowed although it %s: %s (%s outranks %s)", [subject, what, burns(c), category, c])
}

# burns says whose budget a cost to category c burns.
burns(c) := sprintf("the %s budget of %s %s will burn", [c, format.plural(count(names), "SLO"), format.list(names)]) if {
	names := sort([s.name | some s in input.slos; s.category == c])
	count(names) > 0
}

burns(c) := sprintf("the %s budget will burn", [c]) if {
	count([s | some s in input.slos; s.category == c]) == 0
}

info contains "no category declared: no trade-off to weigh" if {
	count(deny) + count(warn) == 0
	not category
}

info contains msg if {
	count(deny) + count(warn) == 0
	category
	msg := sprintf("%s costs no other category (priorities: %s)", [subject, order])
}
