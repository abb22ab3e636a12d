# Vulnerability policy (gates with a security check). Enforces the gate's
# severity thresholds on the findings of its scan reports: too many
# findings of a severity, or findings of the age severity (or worse) open
# for too long, deny the deploy; findings without a fix are a warning.
# Messages list the worst findings first: most severe, then oldest.
package qsp.builtin.vulnerabilities

import data.qsp.builtin.format

severities := ["critical", "high", "medium", "low", "unknown"]

rank := {"critical": 0, "high": 1, "medium": 2, "low": 3, "unknown": 4}

sec := input.checks.security

# sorted are the findings, most severe then oldest first; every list below
# keeps this order by filtering it.
sorted := [sec.findings[t[3]] | some t in sort([[rank[f.severity], 0 - f.age_days, f.id, i] | some i, f in sec.findings])]

label(f) := sprintf("%s (%s)", [f.id, f.package]) if f.package != ""

label(f) := f.id if not f.package

label(f) := f.id if f.package == ""

# listing lists the worst of findings fs (in sorted order), labelling only
# those listed.
listing(fs) := format.list_n([label(f) | some f in array.slice(fs, 0, format.max_listed)], count(fs)) if count(fs) > 0

listing(fs) := "no IDs in the input" if count(fs) == 0

days(x) := sprintf("%d", [x]) if x == round(x)

days(x) := format.dec1(x) if x != round(x)

deny contains msg if {
	some sev, most in sec.max_findings
	n := object.get(sec.counts, sev, 0)
	n > most
	msg := sprintf("%d %s %s, at most %d allowed: %s", [
		n, sev, format.plural(n, "finding"), most, listing([f | some f in sorted; f.severity == sev]),
	])
}

# age_rank is the least severe rank the age check covers.
age_rank := rank[sec.age_severity] if sec.age_severity != ""

age_rank := count(severities) - 1 if sec.age_severity == ""

age_scope := "of any severity" if sec.age_severity == ""

age_scope := sprintf("of severity %s or worse", [sec.age_severity]) if sec.age_severity != ""

over_age := [f |
	some f in sorted
	rank[f.severity] <= age_rank
	f.age_days > sec.max_age_days
]

# aged labels a finding with its age: "CVE-2024-1 (openssl, 45 days)".
aged(f) := sprintf("%s (%s, %s days)", [f.id, f.package, days(round(f.age_days))]) if f.package != ""

aged(f) := sprintf("%s (%s days)", [f.id, days(round(f.age_days))]) if not f.package

aged(f) := sprintf("%s (%s days)", [f.id, days(round(f.age_days))]) if f.package == ""

deny contains msg if {
	sec.max_age_days > 0
	count(over_age) > 0
	labels := [aged(f) | some f in array.slice(over_age, 0, format.max_listed)]
	msg := sprintf("%d %s %s open for more than %s days: %s", [
		count(over_age), format.plural(count(over_age), "finding"), age_scope, days(sec.max_age_days), format.list_n(labels, count(over_age)),
	])
}

no_fix := [f | some f in sorted; not has_fix(f)]

has_fix(f) if f.fixed_version != ""

warn contains msg if {
	count(no_fix) > 0
	verb := {true: "finding has", false: "findings have"}[count(no_fix) == 1]
	msg := sprintf("%d %s no fix yet: %s", [count(no_fix), verb, listing(no_fix)])
}

total := sum([n | some n in sec.counts])

limits := [sprintf("%s %d of at most %d", [sev, object.get(sec.counts, sev, 0), sec.max_findings[sev]]) |
	some sev in severities
	sec.max_findings[sev]
]

info contains msg if {
	count(deny) + count(warn) == 0
	count(limits) > 0
	msg := sprintf("%d %s within thresholds (%s)", [total, format.plural(total, "finding"), concat(", ", limits)])
}

info contains msg if {
	count(deny) + count(warn) == 0
	sec
	count(limits) == 0
	msg := sprintf("%d %s, no severity threshold set", [total, format.plural(total, "finding")])
}

info contains "no security check at this gate" if {
	not input.checks.security
}
