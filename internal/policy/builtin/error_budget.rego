# Error-budget policy (gates). While an SLO of the service has spent its
# error budget, risky deploys (features, config changes) wait; fixes,
# rollbacks and mitigations go ahead with a warning, because they are how a
# budget recovers. An SLO without data cannot vouch for its budget: that
# is a warning, never a silent pass.
package qsp.builtin.error_budget

import data.qsp.builtin.format

risky := {"feature", "config"}

risky_change if input.change.kind in risky

# scope names the SLOs the gate's budget check covers; empty means all.
scope := {name | some name in object.get(input, ["checks", "budget", "slos"], [])}

in_scope(s) if count(scope) == 0

in_scope(s) if s.name in scope

# slos are the SLOs in scope, known those whose budget is known. (Arrays,
# not sets: sets of objects cost a hash of every object.)
slos := [s | some s in input.slos; in_scope(s)]

known := [s | some s in slos; s.state != "no_data"]

# blockers say why risky deploys must wait, one per SLO and cause.
blockers contains msg if {
	some s in known
	s.policy_step.action == "freeze"
	msg := sprintf("SLO %s has consumed %s of its error budget (budget policy: freeze at %s%s)", [
		s.name, format.pct(s.budget_consumed), format.pct(s.policy_step.consumed), note(s.policy_step),
	])
}

# Without budget policy steps, an exhausted budget freezes.
blockers contains msg if {
	some s in known
	not s.has_budget_policy
	s.policy_step == null
	s.budget_remaining <= 0
	msg := sprintf("SLO %s has exhausted its error budget (%s consumed)", [s.name, format.pct(s.budget_consumed)])
}

min_remaining := object.get(input, ["checks", "budget", "min_remaining"], 0)

blockers contains msg if {
	min_remaining > 0
	some s in known
	s.budget_remaining < min_remaining
	msg := sprintf("SLO %s has %s of its error budget left, the gate requires %s", [
		s.name, format.pct(s.budget_remaining), format.pct(min_remaining),
	])
}

max_burn_rate := object.get(input, ["checks", "budget", "max_burn_rate"], 0)

blockers contains msg if {
	max_burn_rate > 0
	some s in known
	rate := s.burn_rates["1h"]
	rate > max_burn_rate
	msg := sprintf("SLO %s burns its error budget at %sx over 1h, the gate allows at most %sx", [
		s.name, format.dec1(rate), format.dec1(max_burn_rate),
	])
}

note(step) := sprintf(", %q", [step.message]) if step.message != ""

note(step) := "" if not step.message

note(step) := "" if step.message == ""

deny contains msg if {
	risky_change
	some why in blockers
	msg := sprintf("%s may not deploy: %s; only fixes, rollbacks and mitigations may deploy now", [format.change, why])
}

warn contains msg if {
	not risky_change
	some why in blockers
	msg := sprintf("%s allowed despite the freeze: %s", [format.change, why])
}

warn contains msg if {
	some s in known
	s.policy_step.action == "warn"
	msg := sprintf("SLO %s has consumed %s of its error budget (budget policy: warn at %s%s)", [
		s.name, format.pct(s.budget_consumed), format.pct(s.policy_step.consumed), note(s.policy_step),
	])
}

warn contains msg if {
	some s in slos
	s.state == "no_data"
	msg := sprintf("SLO %s has no data: its error budget cannot be checked", [s.name])
}

warn contains msg if {
	some name in scope
	not name in {s.name | some s in input.slos}
	msg := sprintf("SLO %s named by the budget check has no evaluation: its error budget cannot be checked", [name])
}

# overspent SLOs whose budget policy does not freeze (yet) pass, said so.
overspent := sort([s.name | some s in known; s.budget_remaining <= 0])

info contains msg if {
	count(deny) + count(warn) == 0
	count(slos) > 0
	count(overspent) == 0
	msg := sprintf("every SLO within budget (%d checked)", [count(slos)])
}

info contains msg if {
	count(deny) + count(warn) == 0
	count(overspent) > 0
	msg := sprintf("%s %s spent the error budget, but no budget policy step freezes deploys (%d checked)", [
		format.plural(count(overspent), "SLO"), format.list(overspent), count(slos),
	])
}

info contains "no SLO to check" if {
	count(deny) + count(warn) == 0
	count(slos) == 0
}
