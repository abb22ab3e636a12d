// Package playbook runs the Playbook objects of the spec: guarded
// remediation that acts on SLO trouble and never oscillates.
//
// It sits after the engine and the policy engine, beside alerting and
// gates: triggers come from the engine (alert transitions, delivered by
// OnTransitions, and the snapshot's states and burn rates), from the gate
// evaluations in the store and from schedules; every action is decided
// by the policy engine first; runs, hysteresis states and the kill
// switch live in the store, so a restart or a second replica continues
// where the first stopped; the API reads and approves runs through the
// Runner.
//
// # Pipeline
//
// A run goes through stages, each one exec that passes it on (recording
// why), stops it with a final state, or holds it:
//
//	trigger     an episode: an alert firing, resolved or without data; a
//	            burn rate above its level for `for` (hysteresis: armed →
//	            fires → disarmed until the burn falls to the clear level,
//	            persisted); a failed gate evaluation; a scheduled time
//	dedupe      the run is inserted under its idempotency key (playbook +
//	            SLO group + severity + the episode's time, or the gate
//	            evaluation, or the scheduled time): one run per episode
//	kill-switch suppressed while the kill switch is on
//	config      refused: exec without playbooks.exec, a template
//	            playbooks may not run, a URL not on the allowlist; records
//	            each action's rendered request, secrets as placeholders
//	in-flight   suppressed while an older run on the actuator is open
//	cooldown    suppressed within the cooldown (or settling wait) after
//	            the last act on the actuator
//	run-limit   suppressed at guards.maxRuns acts on the actuator per window
//	policy      denied when a policy denies any action, or when a decision
//	            could not be made (never act on an error)
//	approval    pending until approved or rejected (API) or expired
//	queue       admitted; the runner claims it
//	act         the cooldown and run limit checked again inside the
//	            store's lock on the actuator, and the act recorded
//	dry-run     dry_run: requests recorded, nothing sent
//	execute     each action in order, one attempt per claim, with its
//	            timeout; a retryable failure holds the run (retrying,
//	            exponential backoff) and any runner takes it up after
//	record      succeeded, or failed with the action's error
//
// One run per episode: a transition episode is the alert's (fired at,
// resolved at); a burn-rate episode ends when the trigger disarms. A
// burn-rate firing that a guard which lifts at a known time (cooldown,
// settling, run limit) suppressed is held, not lost: the trigger stays
// armed and fires again when the guard lifts, if the burn still holds, so
// a service that keeps burning gets its action as soon as the guards
// allow. The kill switch, a run in flight, policies and operators end
// the episode.
//
// An approved run goes through kill-switch, config and policy again
// before it acts: the facts may have changed while it waited. Every run,
// stopped or not, is kept with its trigger, plan, rendered requests,
// decisions, approval, attempts and events: the audit log.
//
// # Actuators, cooldowns and settling
//
// Guards count acts per actuator: the service and the kind of action
// (guards.kind). Scale-up and scale-down of one service both act on its
// replica count, so they share one cooldown and one run limit; kind other
// says nothing about what is acted on, so each such playbook is its own
// actuator. After an act on the actuator a playbook waits its cooldown.
// When the last act came from another playbook, acting again would
// reverse it, and the wait doubles for every reversal on the actuator in
// the last SettleWindow (24h): an oscillating pair with cooldown c acts at
// 0, c, 3c, 7c, 15c, ..., so it settles in one state instead of
// alternating, and the audit log says "settling".
//
// # Actions
//
// Webhooks render method, URL, headers and body as Go templates over
// Data; {{ secret "NAME" }} reads QSP_SECRET_NAME or SecretsDir/NAME at
// run time. The final URL must match the allowlist (scheme, host, port,
// path prefix; redirects too); every attempt carries the same
// Idempotency-Key. 2xx succeeds, 5xx and transport errors are retried,
// anything else is not. Exec actions run argv without a shell, with a
// minimal environment and a timeout, and only when the server allows
// them. Notify actions go through a Notifier.
//
// # Exactly once
//
// Triggers dedupe on the idempotency key (unique in the store). A run is
// executed only by whoever claims it (one conditional UPDATE), writes
// are version-checked, and an attempt is counted before it starts: a
// runner that dies mid-attempt leaves the run to the next claim after
// its lease, which retries with the same Idempotency-Key, so a receiver
// that honours the key acts once.
package playbook
