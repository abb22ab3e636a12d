package team.change_freeze

# Feature and config changes are denied inside the freeze window; fixes and
# rollbacks still ship.
deny contains msg if {
	input.change.kind in {"feature", "config"}
	now := time.parse_rfc3339_ns(input.now)
	now >= time.parse_rfc3339_ns(data.qsp.params.freeze_start)
	now < time.parse_rfc3339_ns(data.qsp.params.freeze_end)
	msg := sprintf("change freeze until %s: only fixes and rollbacks may ship", [data.qsp.params.freeze_end])
}
